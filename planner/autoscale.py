"""Autoscaling over the day: every ``auto`` stage sized window by window (``vlmplan plan --autoscale``).

A deployment sized for its peak pays for the peak all day. When traffic
follows a daily curve, the cheapest replicas that meet the SLO change hour by
hour; ``autoscale`` sizes every window of the day (an hour by default), each
on that window's traffic alone (the scenario's arrivals from the window's
start), and prices the schedule against the static alternative: the plan's
own sizing for its horizon (the peak the scenario describes) all day.

The windows are not searched one by one: SLO attainment is assumed to fall
with offered load (the requests in the window) as the search already assumes
it rises with replicas. Each deployment climbs its windows from the least
loaded (``_climb``): the capacity search of ``planner.capacity`` sizes the
lowest window not yet sized, and since every cheaper configuration misses
there, and so at every busier window, that answer is the cheapest wherever it
still meets the SLO; a bisection over the busier windows finds the last one.
A window between two simulated at its size is not simulated itself: it
reports its own requests, the costs of the busier window that vouches for it
and no attainment of its own (``Window.inferred_from_s``). Simulations are
shared with the plan's (one cache).

Scaling up takes time: a new replica loads its weights over the GPU's host
link and warms up (``load_s``) before it serves. The schedule starts loading
that long before the window that needs the replica, so the old size serves
the end of the previous window (the size that window was sized at),
and the new replicas are paid from the moment they start loading. Scaling
down is at the boundary. Each window starts with empty queues. Seconds, USD.
"""

from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace

from planner.capacity import (
    CapacityPlan,
    DeploymentEvaluator,
    auto_bounds,
    cache_key,
    plan_capacity,
    sized,
    sizes_text,
)
from planner.search import Bounds, is_feasible
from profiles.catalog import Catalog, load_catalog
from profiles.errors import ScenarioError
from profiles.perf.memory import weights_bytes_per_gpu
from sim.api import SimulationJob, SimulationResult, default_drain_s
from sim.build import single_gpu
from sim.deployment import DeploymentSpec, ModelStage
from sim.limits import MIN_AUTOSCALE_WINDOW_S
from sim.traffic import TrafficSource
from sim.traffic.arrivals import SECONDS_PER_DAY, DiurnalArrivals
from sim.traffic.spec import TrafficSpec

DEFAULT_WINDOW_S = 3600.0
# Weights cross the host link (PCIe) one way at this share of the datasheet figure: PCIe gen4 x16 moves
# ~25 of its 32 GB/s per direction in practice, gen5 ~50 of 64 (the figures; unverified).
HOST_LINK_EFFICIENCY = 0.78
# After its weights are in, an engine profiles memory and captures CUDA graphs before serving; vLLM
# start-ups of tens of seconds are commonly reported (recalled, unverified): 30 s.
WARMUP_S = 30.0
AUTOSCALE_ASSUMPTION = (
    "auto stages sized separately for each window of the day, each window simulated alone on its own "
    "traffic (empty queues at its start); SLO attainment assumed to fall with a window's requests (as it rises "
    "with replicas): windows are sized in order of requests, a size that meets the SLO at a window is taken to "
    "meet it at every window with fewer requests, and a window not simulated at its size says which busier "
    "window, simulated at the same size, vouches for it (its costs taken from that window: GPUs the same, other "
    "spend an upper bound); a replica added at a window boundary starts loading (weights per GPU "
    f"over the GPU's host link at {HOST_LINK_EFFICIENCY:.0%} of one direction of its PCIe figure, then "
    f"{WARMUP_S:g} s of warm-up; unverified) that long before the window and is paid from then, the old size "
    "serving meanwhile; scaling down at the boundary; static cost = the plan's own sizing for its horizon, all day")


@dataclass(frozen=True)
class Window:
    """One window of the day: the sizes found for it and how they did."""

    start_s: float
    replicas: Mapping[str, int]
    gpus: int
    feasible: bool
    reason: str
    requests: int
    slo_attainment: float | None
    e2e_p99_s: float | None
    cost_per_day_usd: float  # at this window's sizes and traffic, as if they held all day
    gpu_cost_by_stage: Mapping[str, float]  # USD/day of each GPU stage at this window's sizes
    # Not simulated at its size: start of the busier window whose simulation at the same sizes vouches for it
    # (attainment and p99 then None; cost that window's: GPUs the same, other spend an upper bound).
    inferred_from_s: float | None = None


@dataclass(frozen=True)
class Schedule:
    """A deployment's sizes for every window of the day, and what they cost against static sizing."""

    deployment: str
    window_s: float
    windows: tuple[Window, ...]
    peak_replicas: Mapping[str, int]  # the plan's sizing for its horizon: the static alternative
    peak_gpu_cost_per_day_usd: float  # GPUs of that sizing, all day
    load_s: Mapping[str, float] = field(default_factory=dict)  # GPU stage -> time a new replica takes to serve
    simulations: int = 0  # simulations the windows' searches ran (those the plan had run not counted)

    @property
    def feasible(self) -> bool:
        """Every window meets the SLO."""
        return all(window.feasible for window in self.windows)

    @property
    def autoscaled_cost_per_day_usd(self) -> float:
        """Each window's cost for the share of the day it lasts, plus the replicas loading before they serve."""
        share = self.window_s / SECONDS_PER_DAY
        return sum(window.cost_per_day_usd for window in self.windows) * share + self.loading_cost_per_day_usd

    @property
    def loading_cost_per_day_usd(self) -> float:
        """Every replica added at a window boundary (the day repeats: midnight too), paid ``load_s`` early."""
        usd = 0.0
        for before, after in zip(self.windows[-1:] + self.windows[:-1], self.windows, strict=True):
            for name, seconds in self.load_s.items():
                added = after.replicas.get(name, 0) - before.replicas.get(name, 0)
                if added > 0 and after.replicas.get(name):
                    usd_per_replica_s = after.gpu_cost_by_stage.get(name, 0.0) / after.replicas[name] / SECONDS_PER_DAY
                    usd += added * seconds * usd_per_replica_s
        return usd

    @property
    def static_cost_per_day_usd(self) -> float:
        """The plan's own sizing all day (GPUs); API and device spend as autoscaled."""
        share = self.window_s / SECONDS_PER_DAY
        other_usd = sum(window.cost_per_day_usd - sum(window.gpu_cost_by_stage.values())
                        for window in self.windows) * share
        return self.peak_gpu_cost_per_day_usd + other_usd

    @property
    def saving_share(self) -> float:
        """Share of the static cost that autoscaling saves."""
        static = self.static_cost_per_day_usd
        return 1.0 - self.autoscaled_cost_per_day_usd / static if static > 0 else 0.0

    def totals(self) -> dict[str, float] | None:
        """Autoscaled, loading and static cost per day and the saving; None when some window misses the SLO
        at every size tried: then no schedule is a plan, and nothing is priced as if it were one."""
        if not self.feasible:
            return None
        return {"autoscaled_cost_per_day_usd": self.autoscaled_cost_per_day_usd,
                "loading_cost_per_day_usd": self.loading_cost_per_day_usd,
                "static_cost_per_day_usd": self.static_cost_per_day_usd, "saving_share": self.saving_share}

    @property
    def missed_windows(self) -> int:
        """Windows that miss the SLO at every size tried."""
        return sum(not window.feasible for window in self.windows)

    def to_dict(self) -> dict:
        """JSON-ready: totals (null when the schedule is INFEASIBLE) and one entry per window."""
        totals = self.totals()
        return {
            "name": self.deployment,
            "window_s": self.window_s,
            "feasible": self.feasible,
            **{key: None if totals is None else totals[key] for key in
               ("autoscaled_cost_per_day_usd", "static_cost_per_day_usd", "loading_cost_per_day_usd", "saving_share")},
            "static_replicas": dict(self.peak_replicas),
            "load_s": dict(self.load_s),
            "simulations": self.simulations,
            "windows": [{"start_s": w.start_s, "replicas": dict(w.replicas), "gpus": w.gpus, "feasible": w.feasible,
                         "reason": w.reason, "requests": w.requests, "slo_attainment": w.slo_attainment,
                         "e2e_p99_s": w.e2e_p99_s, "cost_per_day_usd": w.cost_per_day_usd,
                         "inferred_from_s": w.inferred_from_s}
                        for w in self.windows],
        }


def window_starts(window_s: float) -> list[float]:
    """Start times of the windows that tile one day."""
    count = round(SECONDS_PER_DAY / window_s) if window_s > 0 else 0
    most = round(SECONDS_PER_DAY / MIN_AUTOSCALE_WINDOW_S)  # each window is simulated
    if not 2 <= count <= most or abs(count * window_s - SECONDS_PER_DAY) > 1e-6:
        raise ScenarioError(f"--autoscale-window: {window_s:g} s must divide a day (86,400 s) into 2 to {most} "
                            f"windows, e.g. 3600 or 7200")
    return [k * window_s for k in range(count)]


def check_autoscalable(traffic: TrafficSpec, window_s: float, where: str = "traffic.arrivals") -> None:
    """Raise ``ScenarioError`` unless ``traffic`` follows a daily curve and ``window_s`` tiles a day.

    The CLI calls it before any simulation, with the scenario file in ``where``.
    """
    arrivals = traffic.arrivals
    if not isinstance(arrivals, DiurnalArrivals):
        raise ScenarioError(f"{where}: autoscaling over the day needs `kind: diurnal` arrivals "
                            f"(a daily curve to follow); `{arrivals.kind}` has none")
    window_starts(window_s)


def window_job(job: SimulationJob, start_s: float, window_s: float) -> SimulationJob:
    """``job`` limited to the window of the day that starts at ``start_s``."""
    traffic = job.traffic.model_copy(update={"start_s": start_s})
    # A job that drains for its horizon's default keeps None (the window's default): the same simulation, and
    # the same cache key, as the plan's own run when the window is its horizon.
    drain_s = None if job.drain_s is None else default_drain_s(window_s)
    return replace(job, traffic=traffic, horizon_s=window_s, drain_s=drain_s, timeseries_bins=None)


def scalable_jobs(jobs: Sequence[SimulationJob]) -> list[SimulationJob]:
    """The jobs whose deployment has an ``auto`` stage; ``ScenarioError`` when none has."""
    scalable = [job for job in jobs if auto_bounds(job.deployment)]
    if not scalable:
        raise ScenarioError("--autoscale: no deployment has a `replicas: auto` stage to scale")
    return scalable


def autoscale(jobs: Sequence[SimulationJob], executor: Executor, *, target: float, peak: Sequence[CapacityPlan],
              window_s: float = DEFAULT_WINDOW_S, progress: Callable[[float], None] | None = None,
              cache: dict | None = None) -> tuple[Schedule, ...]:
    """Size the ``auto`` stages of each job's deployment for every window of the day.

    ``jobs`` are a scenario's (``planner.run.scenario_jobs``); ``target`` is
    its SLO attainment target; ``peak`` the plan's own capacity plans of the
    same jobs (the static alternative). ``cache`` is the plan's simulation
    cache: a window and configuration the plan simulated is not simulated
    again. Deployments without ``auto`` stages are left out (their sizes
    cannot change). Raises ``ScenarioError`` when the traffic does not
    follow a daily curve (there is nothing to scale to) or no deployment has
    an ``auto`` stage.

    Each deployment climbs its windows in order of offered load (``_climb``);
    the deployments' climbs run side by side, one round of simulations at a
    time on ``executor``, so the schedules do not depend on the workers.
    """
    check_autoscalable(jobs[0].traffic, window_s)
    starts = window_starts(window_s)
    jobs = scalable_jobs(jobs)
    cache = {} if cache is None else cache
    peak_by_name = {plan.name: plan for plan in peak}
    evaluators = [[DeploymentEvaluator(window_job(job, start_s, window_s)) for start_s in starts] for job in jobs]
    requests = _window_requests([e.job for row in evaluators for e in row], executor)
    loads = [requests[index * len(starts):(index + 1) * len(starts)] for index in range(len(jobs))]
    tasks: dict[int, list[Task]] = {}
    climbs = {index: _climb(job, evaluators[index], loads[index], cache, _seen(peak_by_name[job.deployment.name]),
                            alone=lambda: len(tasks) == 1)
              for index, job in enumerate(jobs)}
    simulations = dict.fromkeys(climbs, 0)
    found: dict[int, list[Window]] = {}
    tasks.update({index: next(climb) for index, climb in climbs.items()})
    while tasks:
        answers = _run_round(jobs, evaluators, tasks, executor, target, cache, simulations)
        for index in list(tasks):
            try:
                tasks[index] = climbs[index].send(answers[index])
            except StopIteration as done:
                found[index] = done.value
                del tasks[index]
                if progress:
                    progress(len(found) / len(jobs))
    schedules = []
    for index, job in enumerate(jobs):
        windows = tuple(replace(window, start_s=start_s) for start_s, window in zip(starts, found[index], strict=True))
        static = peak_by_name[job.deployment.name]
        schedules.append(Schedule(job.deployment.name, window_s, windows, dict(static.replicas),
                                  _gpu_cost_per_day_usd(static), load_times_s(static.deployment, job.catalog),
                                  simulations[index]))
    return tuple(schedules)


def _seen(plan: CapacityPlan) -> list[tuple[int, int, bool]]:
    """(replicas, requests, met the SLO) of each try of the plan's own search, for a single searched stage."""
    if len(plan.auto_stages) != 1:
        return []
    requests = int(plan.result.metrics.get("requests") or 0)
    return [(probe.replicas[plan.auto_stages[0]], requests, probe.feasible) for probe in plan.probes]


def _window_requests(jobs: Sequence[SimulationJob], executor: Executor) -> list[int]:
    """Requests each job's simulation will see (its window's offered load), counted on ``executor``; a traffic
    window shared by several jobs is counted once."""
    keys = [(job.traffic.model_dump_json(), job.seed, job.horizon_s) for job in jobs]
    futures: dict[tuple, Future] = {}
    for key, job in zip(keys, jobs, strict=True):
        if key not in futures:
            futures[key] = executor.submit(count_requests, job)
    return [int(futures[key].result()) for key in keys]


def count_requests(job: SimulationJob) -> int:
    """Requests ``simulate(job)`` sees: those arriving within its horizon. Picklable, for executors."""
    return sum(1 for _request in TrafficSource(job.traffic, job.seed, job.trace).requests(job.horizon_s))


# A climb asks for a search of a window ("search", window, searched-stage bounds or None for the stages' own)
# or a simulation of a sized deployment in a window ("probe", window, deployment); it receives the
# CapacityPlan or the SimulationResult of each.
Task = tuple[str, int, object]
Climb = Generator[list[Task], list, list[Window]]


def _climb(job: SimulationJob, evaluators: Sequence[DeploymentEvaluator], requests: Sequence[int],
           cache: Mapping, seen_at_peak: Sequence[tuple[int, int, bool]] = (),
           alone: Callable[[], bool] = lambda: False) -> Climb:
    """One deployment's sizes for every window, assuming SLO attainment falls with offered load.

    Windows are taken in order of requests (then of the day). The lowest
    window not yet sized is searched (``plan_capacity``): every
    configuration cheaper than its answer misses there, so misses at every
    busier window too, and the answer is the cheapest wherever it still
    meets the SLO. Bisecting the busier windows for the last one where it
    does sizes all of those; the next window is searched, and so on. With
    one searched stage and one GPU, the next window first tries one more
    replica than the size that just missed (the search would start there:
    feasible, it is the answer), and the bisection aims at the load the size should carry
    if requests per replica held (``_next_probe``; ``seen_at_peak``: the
    plan's own tries of the horizon): an aim only picks which window to
    simulate, never a size (``alone()``: no other climb is running, so a
    round may simulate two windows). Once a search finds no feasible size, every busier window
    is searched on its own (each reports its own closest try). Returns the
    windows in order of the day (their ``start_s`` left for the caller).
    """
    order = sorted(range(len(evaluators)), key=lambda w: (requests[w], w))
    stage = _single_stage(job.deployment)
    seen = list(seen_at_peak) if stage is not None else []  # (replicas, requests, met the SLO)
    windows: dict[int, Window] = {}
    position = 0
    plan: CapacityPlan | None = None
    while position < len(order):
        one_more = _one_more(stage, job.deployment, plan)
        if one_more is not None:  # one stage: the next size up first, as the search (starting there) would
            assert plan is not None
            assert stage is not None
            [result] = yield [("probe", order[position], one_more)]
            if is_feasible(result):
                plan = replace(plan, deployment=one_more, replicas={**plan.replicas, stage: plan.replicas[stage] + 1},
                               result=result, probes=(), simulations=0)
            else:
                plan = yield from _search(order[position], _above(stage, job.deployment, plan, 2))
        else:
            plan = yield from _search(order[position], None)
        if not plan.feasible:  # busier windows miss too: search each alone, for its own closest try
            rest = order[position + 1:]
            plans = (yield [("search", w, None) for w in rest]) if rest else []
            for w, each in zip([order[position], *rest], [plan, *plans], strict=True):
                windows[w] = _window(evaluators[w].job.traffic.start_s, each)
            break
        windows[order[position]] = _window(evaluators[order[position]].job.traffic.start_s, plan)
        meets, misses = position, len(order)  # the last position known to meet the SLO, the first known to miss
        for later in range(position + 1, len(order)):  # what the cache already knows
            known = cache.get(cache_key(evaluators[order[later]], plan.deployment))
            if known is not None and not is_feasible(known):
                misses = min(misses, later)
        for later in range(position + 1, misses):
            known = cache.get(cache_key(evaluators[order[later]], plan.deployment))
            if known is not None:
                meets = later
        simulated = {order[position]: plan.result}
        for later in range(position + 1, meets + 1):
            known = cache.get(cache_key(evaluators[order[later]], plan.deployment))
            if known is not None:
                simulated[order[later]] = known
        size = plan.replicas[stage] if stage is not None else 0
        seen.append((size, requests[order[position]], True))
        while misses - meets > 1:
            aimed = _next_probe(size, seen, requests, order, meets, misses)
            # Alone on the executor, the larger side of the aim is bisected in the same round.
            wider = (meets + aimed) // 2 if aimed - meets > misses - aimed else (aimed + misses) // 2
            probes = sorted({aimed, wider} if alone() and meets < wider < misses else {aimed})
            results = yield [("probe", order[p], plan.deployment) for p in probes]
            for p, result in zip(probes, results, strict=True):
                seen.append((size, requests[order[p]], is_feasible(result)))
            misses = min([misses] + [p for p, r in zip(probes, results, strict=True) if not is_feasible(r)])
            for p, result in zip(probes, results, strict=True):
                if is_feasible(result) and meets < p < misses:
                    meets, simulated[order[p]] = p, result
        for later in range(position + 1, meets + 1):
            w = order[later]
            if w in simulated:
                windows[w] = _simulated_window(plan, simulated[w])
            else:  # vouched for by the next busier window simulated at this size
                voucher = next(order[k] for k in range(later + 1, meets + 1) if order[k] in simulated)
                windows[w] = _inferred_window(plan, simulated[voucher], evaluators[voucher].job.traffic.start_s,
                                              requests[w])
        position = meets + 1
    return [windows[w] for w in range(len(evaluators))]


def _single_stage(deployment: DeploymentSpec) -> str | None:
    """The searched stage when there is one only and its GPU is set, so sizes order by cost; else None."""
    searched = auto_bounds(deployment)
    open_gpu = any(isinstance(stage, ModelStage) and stage.gpu_choice for stage in deployment.stages)
    return next(iter(searched)) if len(searched) == 1 and not open_gpu else None


def _above(stage: str | None, deployment: DeploymentSpec, plan: CapacityPlan, step: int = 1) -> Bounds | None:
    """Searched-stage bounds that start ``step`` above ``plan``'s size of the single searched ``stage`` (None:
    the stages' own bounds, with several stages or GPU choices, or when that is above the stage's maximum)."""
    if stage is None:
        return None
    low, high = auto_bounds(deployment)[stage]
    above = max(low, plan.replicas[stage] + step)
    return {stage: (above, high)} if above <= high else None


def _one_more(stage: str | None, deployment: DeploymentSpec, plan: CapacityPlan | None) -> DeploymentSpec | None:
    """``plan``'s deployment with one more replica of the single searched ``stage``; None without one, or at
    its maximum."""
    if plan is None or _above(stage, deployment, plan) is None:
        return None
    assert stage is not None
    return sized(plan.deployment, {stage: plan.replicas[stage] + 1})


def _search(window: int, lowest: Bounds | None) -> Generator[list[Task], list, CapacityPlan]:
    """The capacity search of one window (``lowest``: its searched stages' bounds, None: their own)."""
    [plan] = yield [("search", window, lowest)]
    return plan


def _next_probe(size: int, seen: Sequence[tuple[int, int, bool]], requests: Sequence[int], order: Sequence[int],
                meets: int, misses: int) -> int:
    """The position to simulate between ``meets`` and ``misses``: the last window within the requests ``size``
    replicas should carry, midway between the most requests per replica seen met and the fewest seen missed
    (``seen``: (replicas, requests, met)), kept to the middle half of the range so every probe at least quarters
    it; the midpoint without a single searched stage (``size`` 0) or a consistent estimate."""
    middle = (meets + misses) // 2
    met = [load / n for n, load, ok in seen if ok and n > 0]
    missed = [load / n for n, load, ok in seen if not ok and n > 0]
    if size <= 0 or not met or not missed or max(met) >= min(missed):
        return middle
    carried = size * (max(met) + min(missed)) / 2
    aimed = max((p for p in range(meets + 1, misses) if requests[order[p]] <= carried), default=meets + 1)
    quarter = (misses - meets) // 4
    return min(max(aimed, meets + max(1, quarter)), misses - max(1, quarter))


def _run_round(jobs: Sequence[SimulationJob], evaluators: Sequence[Sequence[DeploymentEvaluator]],
               tasks: Mapping[int, list[Task]], executor: Executor, target: float, cache: dict,
               simulations: dict[int, int]) -> dict[int, list]:
    """Every climb's tasks at once: the probes not in ``cache`` on ``executor``, alongside the searches."""
    futures: dict[tuple, Future] = {}
    for index, asked in tasks.items():
        for kind, w, deployment in asked:
            if kind == "probe":
                assert isinstance(deployment, DeploymentSpec)
                key = cache_key(evaluators[index][w], deployment)
                if key not in cache and key not in futures:
                    futures[key] = executor.submit(evaluators[index][w], deployment)
                    simulations[index] += 1
    searches = [(index, w, lowest) for index, asked in tasks.items() for kind, w, lowest in asked if kind == "search"]
    plans = iter(plan_capacity([jobs[index].deployment for index, _w, _lowest in searches],
                               [evaluators[index][w] for index, w, _lowest in searches], executor, target=target,
                               bounds=[lowest for _index, _w, lowest in searches],  # type: ignore[misc]
                               cache=cache) if searches else [])
    try:
        for key, future in futures.items():  # submission order: deterministic
            cache[key] = future.result()
    finally:
        for future in futures.values():
            future.cancel()
    answers: dict[int, list] = {}
    for index, asked in tasks.items():
        answers[index] = []
        for kind, w, deployment in asked:
            if kind == "search":
                plan = next(plans)
                simulations[index] += plan.simulations
                answers[index].append(plan)
            else:
                answers[index].append(cache[cache_key(evaluators[index][w], deployment)])  # type: ignore[arg-type]
    return answers


def _gpu_cost_per_day_usd(plan: CapacityPlan) -> float:
    """USD/day of the GPU stages of a plan's configuration."""
    stages = plan.result.per_stage
    if not stages:  # not simulated (ruled out by its zero-load bound): its GPU cost as the plan states it
        return float(plan.result.metrics.get("gpu_cost_per_day_usd") or 0.0)
    return sum(float(stage.get("cost_per_day_usd") or 0.0) for stage in stages.values() if stage.get("gpus"))


def load_times_s(deployment: DeploymentSpec, catalog: Catalog | None = None) -> dict[str, float]:
    """Seconds a new replica of each model stage takes to serve: its weights per GPU over the GPU's host link
    (one direction of ``pcie_gbs`` at ``HOST_LINK_EFFICIENCY``), plus ``WARMUP_S``."""
    catalog = catalog or load_catalog()
    times = {}
    for stage in deployment.stages:
        if not isinstance(stage, ModelStage):
            continue
        spec = single_gpu(stage, catalog)
        gpu = catalog.gpu(str(spec.gpu))
        model = catalog.model(spec.model)
        weights = weights_bytes_per_gpu(model, spec.precision or model.precision, spec.tensor_parallel,
                                        spec.expert_replication)
        host_link_bytes_s = gpu.pcie_gbs / 2 * HOST_LINK_EFFICIENCY * 1e9
        times[stage.name] = weights / host_link_bytes_s + WARMUP_S
    return times


def _window(start_s: float, plan: CapacityPlan) -> Window:
    """A window its own search sized: the plan's simulation of it."""
    return replace(_simulated_window(plan, plan.result), start_s=start_s, feasible=plan.feasible, reason=plan.reason)


def _simulated_window(plan: CapacityPlan, result: SimulationResult) -> Window:
    """A window at ``plan``'s sizes, from ``result``: that configuration's simulation of the window (feasible)."""
    metrics, per_stage = result.metrics, result.per_stage
    return Window(
        start_s=0.0, replicas=dict(plan.replicas), gpus=int(metrics.get("gpus") or 0), feasible=True,
        reason="", requests=int(metrics.get("requests") or 0),
        slo_attainment=metrics.get("slo_attainment"), e2e_p99_s=metrics.get("e2e_p99_s"),
        cost_per_day_usd=float(metrics.get("cost_per_day_usd") or 0.0),
        gpu_cost_by_stage={name: float(stage.get("cost_per_day_usd") or 0.0)
                           for name, stage in per_stage.items() if stage.get("gpus")},
    )


def _inferred_window(plan: CapacityPlan, voucher: SimulationResult, voucher_start_s: float, requests: int) -> Window:
    """A window not simulated at ``plan``'s sizes: it meets the SLO because the busier window ``voucher``
    (same sizes) does; its own requests, the voucher's costs."""
    return replace(_simulated_window(plan, voucher), requests=requests, slo_attainment=None, e2e_p99_s=None,
                   inferred_from_s=voucher_start_s)


def clock(start_s: float) -> str:
    """"14:00": a time of day in seconds after midnight."""
    hour = start_s / 3600
    return f"{int(hour):02d}:{int(round(hour % 1 * 60)):02d}"


def render_schedules(schedules: Sequence[Schedule]) -> str:
    """Per deployment: GPUs window by window, then autoscaled against static cost per day."""
    lines = []
    for schedule in schedules:
        lines.append(f"\nautoscaled over the day: {schedule.deployment!r} ({schedule.window_s / 3600:g} h windows, "
                     f"{schedule.simulations} simulations)")
        for window in schedule.windows:
            sizes = sizes_text(window.replicas)
            if window.inferred_from_s is not None:
                met = f"inferred from {clock(window.inferred_from_s)} (a busier window, simulated at these sizes)"
            else:
                met = "no request" if window.slo_attainment is None else f"{window.slo_attainment:.1%}"
            verdict = "" if window.feasible else f"  MISSES THE SLO: {window.reason}"
            lines.append(f"  {clock(window.start_s)}  {window.gpus:>4} GPUs  {sizes:<40} "
                         f"{window.requests:>8,} req  SLO met {met:>7}{verdict}")
        loading = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in schedule.load_s.items())
        totals = schedule.totals()
        if totals is None:
            lines.append(f"  INFEASIBLE: {schedule.missed_windows} of {len(schedule.windows)} windows miss the SLO "
                         "at every size tried: no schedule meets it, so none is priced")
            continue
        lines.append(f"  cost per day: autoscaled ${totals['autoscaled_cost_per_day_usd']:,.0f} (of which "
                     f"${totals['loading_cost_per_day_usd']:,.2f} for replicas loading before they serve: {loading}) "
                     f"vs static ${totals['static_cost_per_day_usd']:,.0f} (the plan's sizing, "
                     f"{sizes_text(schedule.peak_replicas)}, all day): saves {totals['saving_share']:.0%}")
    return "\n".join(lines)
