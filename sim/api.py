"""The simulator's front door: ``simulate(job) -> SimulationResult``, in-process.

A ``SimulationJob`` holds everything one run needs (deployment, traffic,
horizon, seed, SLO, catalog, trace, calibration profiles) as plain picklable
values, so the planner can send jobs to worker processes or a Dask cluster
and the GUI can run one in a background thread with a progress callback
and a cancel flag checked between chunks of simulated time. Same job, same
result, in any process (only ``sim_wall_s`` differs).
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import simpy

from profiles.catalog import Catalog, load_catalog
from sim.build import BuildContext, build_stages
from sim.deployment import DeploymentSpec
from sim.driver import Driver, SimulationCancelled
from sim.metrics import OVERLOAD_UNFINISHED_SHARE, SimulationResult, summarise
from sim.recorder import Recorder
from sim.replica import engine_replicas
from sim.request import Request
from sim.router import Router
from sim.slo import SloSpec
from sim.stages.base import StageRuntime
from sim.timeseries import TimeBins, default_bin_count
from sim.traffic import TrafficSource, TrafficSpec

__all__ = ["SimulationCancelled", "SimulationJob", "SimulationResult", "default_drain_s", "prepare", "simulate"]


def default_drain_s(horizon_s: float) -> float:
    """Time in-flight requests get after the last arrival: a quarter of the horizon, 60 to 600 s."""
    return min(600.0, max(60.0, 0.25 * horizon_s))


@dataclass(frozen=True)
class SimulationJob:
    """One simulation run: a deployment under a traffic mix for ``horizon_s`` simulated seconds."""

    deployment: DeploymentSpec
    traffic: TrafficSpec
    horizon_s: float
    seed: int = 0
    # Without an SLO, a job is judged against MLPerf v4.1's Llama-2-70B server limits, written out here.
    slo: SloSpec = field(default_factory=lambda: SloSpec(ttft_s=2.0, tpot_s=0.2))
    catalog: Catalog | None = None  # None: the bundled catalog
    trace: tuple[Request, ...] | None = None  # for traffic with ``arrivals: {kind: trace}``
    calibrations: tuple = ()  # CalibrationProfile objects (matched by model_id and gpu_id)
    drain_s: float | None = None  # None: default_drain_s(horizon_s)
    timeseries_bins: int | None = None  # None: default_bin_count(horizon_s)
    # Stop at the first progress check where the overload is beyond doubt (``overload_beyond_doubt``): the
    # result then covers the arrivals up to that time (``stopped_early_s``). False: always run to the end.
    stop_when_overloaded: bool = True


@dataclass
class PreparedRun:
    """A job built into a SimPy environment, ready to run."""

    env: simpy.Environment
    stages: list
    recorder: Recorder
    driver: Driver
    busy: TimeBins


def prepare(job: SimulationJob) -> PreparedRun:
    """Build the deployment and traffic of ``job``; raises a ``VlmplanError`` for any bad setting."""
    if job.horizon_s <= 0:
        raise ValueError(f"horizon_s must be positive, got {job.horizon_s}")
    catalog = job.catalog or load_catalog()
    bins = job.timeseries_bins or default_bin_count(job.horizon_s)
    env = simpy.Environment()
    busy = TimeBins(job.horizon_s, bins)
    source = TrafficSource(job.traffic, job.seed, job.trace)
    recorder = Recorder(source.class_names, job.horizon_s, bins)
    ctx = BuildContext(catalog=catalog, env=env, seed=job.seed, busy_bins=busy, calibrations=job.calibrations)
    stages, classifier = build_stages(job.deployment, ctx)
    drain_s = default_drain_s(job.horizon_s) if job.drain_s is None else job.drain_s
    driver = Driver(env, source, recorder, job.horizon_s, drain_s)
    router = Router(job.deployment, stages, classifier, recorder.index_of, driver.finished, driver.rejected)
    driver.router = router
    runtimes = list(stages.values()) + ([classifier] if classifier is not None else [])
    for stage in runtimes:
        stage.bind(router)
    for name in source.class_names:  # a class without a route is a configuration error, found now
        router.route_of(name)
    for replica in engine_replicas(runtimes):  # what cannot start before the end is counted, not queued
        replica.serve_until_s = job.horizon_s + drain_s
    for stage in runtimes:
        stage.serve_until_s = job.horizon_s + drain_s
    if job.stop_when_overloaded:
        driver.stop_early = lambda t_s: overload_beyond_doubt(runtimes, recorder, router, source.class_names, t_s)
    return PreparedRun(env, runtimes, recorder, driver, busy)


# A stage keeping more requests queued than this (about 1 kB each) is judged by the rate it has served
# so far (``unservable``): far above any queue a deployment that keeps up builds.
LONG_STAGE_QUEUE = 100_000


def unservable(stage: StageRuntime, t_s: float) -> int:
    """Requests at ``stage`` that will not be served before the run's end, as far as can be told at ``t_s``:
    those counted (their work ahead exceeds the whole run at twice the fastest rates; ``Replica``, the FIFO
    stages), plus, when more than ``LONG_STAGE_QUEUE`` wait in its replicas, those beyond what it would serve
    by the end at twice the rate it has served so far."""
    replicas = engine_replicas([stage])
    counted = stage.beyond_end + sum(replica.beyond_end for replica in replicas)
    queued = sum(replica.queued for replica in replicas)
    if queued > LONG_STAGE_QUEUE and t_s > 0:
        servable = 2 * len(stage.sojourn_s) / t_s * (stage.serve_until_s - t_s)
        counted += max(0, int(queued - servable))
    return counted


def overload_beyond_doubt(stages: list, recorder: Recorder, router: Router, class_names: Sequence[str],
                          t_s: float) -> bool:
    """Whether simulating on would only confirm an overload, at the cost of time and memory (asked between
    chunks).

    True when the requests that will not be served before the run's end (``unservable``) are more than
    ``OVERLOAD_UNFINISHED_SHARE`` of the requests arrived, so what was simulated is overloaded by the
    verdict's own rule, and most requests arrived (over half) belong to classes whose route crosses a
    stage with such requests: more arrivals would add more requests that are never served than served ones.
    """
    hopeless = {id(stage): unservable(stage, t_s) for stage in stages}
    arrived = sum(recorder.offered)
    if sum(hopeless.values()) <= OVERLOAD_UNFINISHED_SHARE * max(1, arrived):
        return False
    behind = {name for name in class_names if any(hopeless[id(stage)] for stage in router.route_of(name)[0])}
    return 2 * sum(offered for name, offered in zip(recorder.class_names, recorder.offered, strict=True)
                   if name in behind) > arrived


def simulate(job: SimulationJob, progress: Callable[[float], None] | None = None,
             cancel: Callable[[], bool] | None = None) -> SimulationResult:
    """Run ``job`` and measure it.

    ``progress(fraction)`` is called between chunks of simulated time;
    when ``cancel()`` returns True the run stops there with
    ``SimulationCancelled``.
    """
    wall_start = time.perf_counter()
    run = prepare(job)
    run.driver.start()
    span_s = run.driver.run(progress, cancel)
    result = summarise(job.deployment.name, run.recorder, run.stages, job.slo, job.horizon_s, span_s, run.busy,
                       time.perf_counter() - wall_start, job.seed, run.driver.stopped_s)
    missed = [name for name, figures in result.per_class.items() if figures.get("rejected") or figures.get("unfinished")]
    if missed:  # say which classes no replica could ever take, and why
        from sim.preflight import unservable_reasons  # sim.preflight builds on this module

        for name, reason in unservable_reasons(run, job, missed).items():
            result.per_class[name]["cannot_be_served"] = reason
    return result


def simulate_many(jobs: Sequence[SimulationJob]) -> list[SimulationResult]:
    """Run ``jobs`` one after another in this process (executors map ``simulate`` themselves)."""
    return [simulate(job) for job in jobs]
