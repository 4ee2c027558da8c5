"""The simulator's front door: ``simulate(job) -> SimulationResult``, in-process.

A ``SimulationJob`` holds everything one run needs (deployment, traffic,
horizon, seed, SLO, catalog, trace, calibration profiles) as plain picklable
values, so the planner can send jobs to worker processes or a Dask cluster
and the GUI can run one in a background thread with a progress callback
and a cancel flag checked between chunks of simulated time. Same job, same
result, in any process (only ``sim_wall_s`` differs).
"""

import gc
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    # Stop at the first progress check where the overload is beyond doubt (``OverloadWatch``): the
    # result then covers the arrivals up to that time (``stopped_early_s``). False: always run to the end.
    stop_when_overloaded: bool = True
    # Every GPU pass (engine steps, encoder passes) this much slower than the performance model says: how
    # a result moves with the model's own error (``vlmplan plan --sensitivity``). 1: as modelled.
    step_time_scale: float = 1.0


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
    ctx = BuildContext(catalog=catalog, env=env, seed=job.seed, busy_bins=busy, calibrations=job.calibrations,
                       step_time_scale=job.step_time_scale)
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
        driver.stop_early = OverloadWatch(runtimes, recorder, router, source.class_names).beyond_doubt
    return PreparedRun(env, runtimes, recorder, driver, busy)


# A stage with more requests bound for it than this (queued at it or still upstream on their route, about 1 kB
# each) is judged by the rate it serves while so loaded: far above any backlog a deployment that keeps up builds.
LONG_STAGE_QUEUE = 100_000


def counted_beyond_end(stage: StageRuntime) -> int:
    """Requests at ``stage`` counted, not kept: their work ahead exceeds the whole run at twice the fastest rates
    (``Replica``, the FIFO stages). No request is counted at two stages (it never leaves the first)."""
    return stage.beyond_end + sum(replica.beyond_end for replica in engine_replicas([stage]))


class OverloadWatch:
    """Whether simulating on would only confirm an overload, at the cost of time and memory (``beyond_doubt``,
    asked at the driver's progress checks, and every few thousand arrivals).

    A stage's requests that will not be served before the run's end are those counted (``counted_beyond_end``)
    and, once more than ``LONG_STAGE_QUEUE`` requests are bound for it (``StageRuntime.pending``: at it or
    upstream), those beyond what it would serve by the end at twice the rate it has served since that backlog
    was first seen at a check (it has been loaded all that time: a rate from before, when little came, would
    say nothing of what it can do). Counted requests are at one stage each and add up over stages; the
    requests one stage cannot serve may be counted at another, so the run's figure is the larger of the counts'
    sum and the largest stage's figure.
    """

    def __init__(self, stages: list, recorder: Recorder, router: Router, class_names: Sequence[str]) -> None:
        self._stages = stages
        self._recorder = recorder
        self._router = router
        self._class_names = list(class_names)
        self._loaded_since: dict[int, tuple[float, int]] = {}  # id(stage) -> (check time, departures then)

    def unservable(self, stage: StageRuntime, t_s: float, judge_rates: bool = True) -> int:
        """Requests bound for ``stage`` that will not be served before the run's end, as far as can be told at
        ``t_s`` (``judge_rates`` False: only those counted)."""
        counted = counted_beyond_end(stage)
        served = len(stage.sojourn_s)
        if stage.pending <= LONG_STAGE_QUEUE:
            self._loaded_since.pop(id(stage), None)
            return counted
        since_s, served_then = self._loaded_since.setdefault(id(stage), (t_s, served))
        if not judge_rates or t_s <= since_s:
            return counted
        servable = 2 * (served - served_then) / (t_s - since_s) * (stage.serve_until_s - t_s)
        return max(counted, int(stage.pending - servable))

    def beyond_doubt(self, t_s: float, judge_rates: bool = True) -> bool:
        """True when the requests that will not be served before the run's end are more than
        ``OVERLOAD_UNFINISHED_SHARE`` of the requests arrived, so what was simulated is overloaded by the
        verdict's own rule, and most requests arrived (over half) belong to classes whose route crosses a
        stage with such requests: more arrivals would add more requests that are never served than served ones.
        ``judge_rates`` False (between progress checks, perhaps a millisecond into the run, when no rate means
        anything yet): only the counted requests."""
        hopeless = {id(stage): self.unservable(stage, t_s, judge_rates) for stage in self._stages}
        counted = sum(counted_beyond_end(stage) for stage in self._stages)
        recorder = self._recorder
        arrived = sum(recorder.offered)
        if max(counted, *hopeless.values()) <= OVERLOAD_UNFINISHED_SHARE * max(1, arrived):
            return False
        route_of = self._router.route_of
        behind = {name for name in self._class_names if any(hopeless[id(stage)] for stage in route_of(name)[0])}
        return 2 * sum(offered for name, offered in zip(recorder.class_names, recorder.offered, strict=True)
                       if name in behind) > arrived


# The full collections' threshold while runs go on: never reached (young ones go on at Python's own thresholds).
NO_FULL_COLLECTIONS = 1_000_000_000
_collector_lock = threading.Lock()
_runs_holding_off = 0  # runs in this process (the GUI runs one in a thread) holding off full collections
_full_threshold = 10  # the full collections' threshold before the first of them began


@contextmanager
def young_collections_only() -> Iterator[None]:
    """Hold off the cyclic garbage collector's full collections while a run's state grows.

    Python collects everything each time the objects that survived two young
    collections grow by a quarter: a million requests queued in the first
    millisecond of a closed loop took some 25 full passes over all of them,
    half of the run's CPU time. A run frees its requests by reference
    counting alone (it makes no reference cycles per request:
    tests/test_hostile_input.py checks), so only the young collections (which
    still free any short-lived cycle) go on; the last run to end restores the threshold.
    """
    global _runs_holding_off, _full_threshold
    with _collector_lock:
        young, middle, full = gc.get_threshold()
        if _runs_holding_off == 0:
            _full_threshold = full
            gc.set_threshold(young, middle, NO_FULL_COLLECTIONS)
        _runs_holding_off += 1
    try:
        yield
    finally:
        with _collector_lock:
            _runs_holding_off -= 1
            if _runs_holding_off == 0:
                young, middle, _ = gc.get_threshold()
                gc.set_threshold(young, middle, _full_threshold)


def simulate(job: SimulationJob, progress: Callable[[float], None] | None = None,
             cancel: Callable[[], bool] | None = None) -> SimulationResult:
    """Run ``job`` and measure it.

    ``progress(fraction)`` is called between chunks of simulated time;
    when ``cancel()`` returns True the run stops there with
    ``SimulationCancelled``.
    """
    wall_start = time.perf_counter()
    with young_collections_only():
        run = prepare(job)
        run.driver.start()
        span_s = run.driver.run(progress, cancel)
        result = summarise(job.deployment.name, run.recorder, run.stages, job.slo, job.horizon_s, span_s, run.busy,
                           time.perf_counter() - wall_start, job.seed, run.driver.stopped_s)
        result.metrics["stopped_because"] = None if run.driver.stopped_s is None else run.driver.stopped_because
        missed = [name for name, figures in result.per_class.items()
                  if figures.get("rejected") or figures.get("unfinished")]
        if missed:  # say which classes no replica could ever take, and why
            from sim.preflight import unservable_reasons  # sim.preflight builds on this module

            for name, reason in unservable_reasons(run, job, missed).items():
                result.per_class[name]["cannot_be_served"] = reason
        # Free what the run still holds per request by reference counting, before full collections resume.
        run.driver.let_go()
        for replica in engine_replicas(run.stages):
            replica.let_go()
    return result


def simulate_many(jobs: Sequence[SimulationJob]) -> list[SimulationResult]:
    """Run ``jobs`` one after another in this process (executors map ``simulate`` themselves)."""
    return [simulate(job) for job in jobs]
