"""Autoscaling over the day: every ``auto`` stage sized window by window (``vlmplan plan --autoscale``).

A deployment sized for its peak pays for the peak all day. When traffic
follows a daily curve, the cheapest replicas that meet the SLO change hour by
hour; ``autoscale`` sizes every window of the day (an hour by default), each
on that window's traffic alone (the scenario's arrivals from the window's
start), and prices the schedule against the static alternative: the plan's
own sizing for its horizon (the peak the scenario describes) all day.

The windows are not searched one by one: SLO attainment is assumed to fall
with offered load (the requests in the window) as the search already assumes
it rises with replicas, so a size that meets the SLO at a window meets it at
every quieter one, and one that misses misses at every busier one. With a
single searched stage on one GPU (``_staircase``), the size a window needs
then only rises with its requests: the busiest window is sized first (the
plan's own search when its horizon is that window), and each smaller size
needs only the last window it still serves, found for every size at once,
two windows per size and round, aimed where requests per replica say that
step should be. With several searched stages or a GPU choice, sizes are not
ordered by cost alone, and each deployment climbs its windows from the
least loaded (``_climb``): the capacity search of ``planner.capacity`` sizes
the lowest window not yet sized, that answer is the cheapest wherever it
still meets the SLO, and a bisection over the busier windows finds the last
one. A window not simulated at its size reports its own requests, the costs
of the busier window simulated at that size that vouches for it and no
attainment of its own (``Window.inferred_from_s``). Simulations are shared
with the plan's (one cache).

Scaling up takes time: a new replica loads its weights over the GPU's host
link and warms up (``load_s``) before it serves. The schedule starts loading
that long before the window that needs the replica, so the old size serves
the end of the previous window (the size that window was sized at),
and the new replicas are paid from the moment they start loading. Scaling
down is at the boundary. Each window starts with empty queues. Seconds, USD.
"""

from collections.abc import Callable, Collection, Generator, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace

from planner.capacity import (
    CapacityPlan,
    DeploymentEvaluator,
    auto_bounds,
    cache_key,
    fixed_sizes,
    plan_capacity,
    sized,
    sizes_text,
)
from planner.search import Bounds, is_feasible
from profiles.catalog import Catalog, load_catalog
from profiles.costs import HOURS_PER_DAY, pools_cost_usd
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
    "meet it at every window with fewer requests (and one that misses, to miss at every busier window), and a "
    "window not simulated at its size says which busier window, simulated at the same size, vouches for it (its "
    "costs taken from that window: GPUs the same, other spend an upper bound); a replica added at a window "
    "boundary starts loading (weights per GPU over the GPU's host link at "
    f"{HOST_LINK_EFFICIENCY:.0%} of one direction of its PCIe figure, then "
    f"{WARMUP_S:g} s of warm-up; unverified) that long before the window and is paid from then, the old size "
    "serving meanwhile; scaling down at the boundary; static cost = the plan's own sizing for its horizon, all day")


GpuPool = tuple[str, int, float]  # GPU id, GPUs, USD per GPU-hour: one pool of a stage (prefill, decode, ...)


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
    gpu_pools: Mapping[str, tuple[GpuPool, ...]]  # what each GPU stage rents at this window's sizes, as simulated
    # Not simulated at its size: start of the busier window whose simulation at the same sizes vouches for it
    # (attainment and p99 then None; cost that window's: GPUs the same, other spend an upper bound).
    inferred_from_s: float | None = None

    @property
    def gpu_cost_by_stage(self) -> dict[str, float]:
        """USD/day of each GPU stage at this window's sizes: each of its pools all day at the pool's own price
        (an hour's rent times 24, as the simulator adds it up, so the two agree to the cent and beyond)."""
        return {stage: float(pools_cost_usd((float(gpus), price) for _, gpus, price in pools)) * HOURS_PER_DAY
                for stage, pools in self.gpu_pools.items()}


@dataclass(frozen=True)
class Schedule:
    """A deployment's sizes for every window of the day, and what they cost against static sizing."""

    deployment: str
    window_s: float
    windows: tuple[Window, ...]
    peak_replicas: Mapping[str, int]  # the plan's sizing for its horizon: the static alternative
    peak_gpu_cost_per_day_usd: float  # GPUs of that sizing, all day
    load_s: Mapping[str, float] = field(default_factory=dict)  # scaled stage -> time a new replica takes to serve
    simulations: int = 0  # simulations the windows' searches ran (those the plan had run not counted)
    spec: DeploymentSpec | None = None  # the plan's deployment: how its sizes read (a prefill/decode stage's pools)

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
        return float(pools_cost_usd((hours, price) for (_, price), hours in self.loading_gpu_hours().items()))

    def loading_gpu_hours(self) -> dict[tuple[str, float], float]:
        """GPU-hours a day that GPUs added at window boundaries rent for their stage's ``load_s`` before they
        serve, by (GPU id, USD per GPU-hour): what each of the stage's pools gains over the window before. A
        new replica's own GPUs load; an encoder pool, whose size ``replicas`` does not set, gains none."""
        hours: dict[tuple[str, float], float] = {}
        for before, after in zip(self.windows[-1:] + self.windows[:-1], self.windows, strict=True):
            for name, seconds in self.load_s.items():
                held = _gpus_by_pool(before.gpu_pools.get(name, ()))
                for pool, gpus in _gpus_by_pool(after.gpu_pools.get(name, ())).items():
                    added = gpus - held.get(pool, 0)
                    if added > 0:
                        hours[pool] = hours.get(pool, 0.0) + added * seconds / SECONDS_PER_DAY * HOURS_PER_DAY
        return hours

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


def _gpus_by_pool(pools: Iterable[GpuPool]) -> dict[tuple[str, float], int]:
    """A stage's GPUs by (GPU id, USD per GPU-hour): an encoder pool on the LLM's GPU adds to the LLM's."""
    gpus: dict[tuple[str, float], int] = {}
    for gpu, count, price in pools:
        gpus[(gpu, price)] = gpus.get((gpu, price), 0) + count
    return gpus


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
              cache: dict | None = None, counted: Future | None = None) -> tuple[Schedule, ...]:
    """Size the ``auto`` stages of each job's deployment for every window of the day.

    ``jobs`` are a scenario's (``planner.run.scenario_jobs``); ``target`` is
    its SLO attainment target; ``peak`` the plan's own capacity plans of the
    same jobs (the static alternative). ``cache`` is the plan's simulation
    cache: a window and configuration the plan simulated is not simulated
    again. ``counted`` is ``count_windows`` of the same jobs and windows
    already submitted (``plan_scenario`` counts while its own search runs).
    Deployments without ``auto`` stages are left out (their sizes
    cannot change). Raises ``ScenarioError`` when the traffic does not
    follow a daily curve (there is nothing to scale to) or no deployment has
    an ``auto`` stage.

    Each deployment's windows are sized in order of offered load
    (``_day_climb``); the deployments' climbs run side by side, one round of
    simulations at a time on ``executor``, so the schedules do not depend on
    the workers.
    """
    check_autoscalable(jobs[0].traffic, window_s)
    starts = window_starts(window_s)
    jobs = scalable_jobs(jobs)
    cache = {} if cache is None else cache
    peak_by_name = {plan.name: plan for plan in peak}
    evaluators = [[DeploymentEvaluator(window_job(job, start_s, window_s)) for start_s in starts] for job in jobs]
    counted = counted or executor.submit(count_windows, jobs, window_s)
    loads = counted.result()
    found: dict[int, list[Window]] = {}
    climbs = {index: _day_climb(job, evaluators[index], loads[index], cache,
                                alone=lambda: len(jobs) - len(found) == 1)  # no other climb still running
              for index, job in enumerate(jobs)}
    simulations = dict.fromkeys(climbs, 0)
    tasks: dict[int, list[Task]] = {}

    def advance(index: int, answers: list | None) -> None:
        """Feed a climb its round's answers (None: start it); it asks for more, or is done."""
        try:
            tasks[index] = next(climbs[index]) if answers is None else climbs[index].send(answers)
        except StopIteration as done:
            found[index] = done.value
            tasks.pop(index, None)
            if progress:
                progress(len(found) / len(jobs))

    for index in climbs:
        advance(index, None)
    while tasks:
        answers = _run_round(jobs, evaluators, tasks, executor, target, cache, simulations, loads)
        for index in list(tasks):
            advance(index, answers[index])
    schedules = []
    for index, job in enumerate(jobs):
        windows = tuple(replace(window, start_s=start_s) for start_s, window in zip(starts, found[index], strict=True))
        static = peak_by_name[job.deployment.name]
        schedules.append(Schedule(job.deployment.name, window_s, windows, dict(static.replicas),
                                  _gpu_cost_per_day_usd(static),
                                  load_times_s(static.deployment, job.catalog, scaled=auto_bounds(job.deployment)),
                                  simulations[index], static.deployment))
    return tuple(schedules)


def count_windows(jobs: Sequence[SimulationJob], window_s: float) -> list[list[int]]:
    """Requests in each window of the day (``window_starts``) of each job, a traffic window shared by several jobs
    counted once. One task (picklable, for executors): submitted before the plan's own search, it runs beside
    that search's bounds, a single task too."""
    counts: dict[tuple, int] = {}
    found = []
    for job in jobs:
        row = []
        for start_s in window_starts(window_s):
            window = window_job(job, start_s, window_s)
            key = (window.traffic.model_dump_json(), window.seed, window.horizon_s)
            if key not in counts:
                counts[key] = count_requests(window)
            row.append(counts[key])
        found.append(row)
    return found


def count_requests(job: SimulationJob) -> int:
    """Requests ``simulate(job)`` sees: those arriving within its horizon, every turn of a conversation and every
    retry of an agent task included (as its ``throughput_rps`` counts them). Picklable, for executors."""
    return sum(1 for _request in TrafficSource(job.traffic, job.seed, job.trace).every_request(job.horizon_s))


# A climb asks for a search of a window ("search", window, searched-stage bounds or None for the stages' own)
# or a simulation of a sized deployment in a window ("probe", window, deployment); it receives the
# CapacityPlan or the SimulationResult of each.
Task = tuple[str, int, object]
Climb = Generator[list[Task], list, list[Window]]


def _day_climb(job: SimulationJob, evaluators: Sequence[DeploymentEvaluator], requests: Sequence[int],
               cache: Mapping, alone: Callable[[], bool] = lambda: False) -> Climb:
    """The staircase (``_staircase``) when a single stage on one GPU is searched, else ``_climb``."""
    stage = _single_stage(job.deployment)
    if stage is None:
        return (yield from _climb(job, evaluators, requests, cache, alone))
    return (yield from _staircase(job, evaluators, requests, cache, stage, alone))


def _climb(job: SimulationJob, evaluators: Sequence[DeploymentEvaluator], requests: Sequence[int],
           cache: Mapping, alone: Callable[[], bool] = lambda: False) -> Climb:
    """One deployment's sizes for every window, assuming SLO attainment falls with offered load.

    Windows are taken in order of requests (then of the day). The lowest
    window not yet sized is searched (``plan_capacity``): every
    configuration cheaper than its answer misses there, so misses at every
    busier window too, and the answer is the cheapest wherever it still
    meets the SLO. Bisecting the busier windows for the last one where it
    does sizes all of those (``alone()``: no other climb is running, so a
    round may simulate two windows); the next window is searched, and so on.
    With one searched stage and one GPU (here only when the busiest window
    misses at every size, see ``_staircase``), the next window first tries
    one more replica than the size that just missed (the search would start
    there: feasible, it is the answer). Once a search finds no feasible
    size, every busier window is searched on its own (each reports its own
    closest try). Returns the windows in order of the day (their
    ``start_s`` left for the caller).
    """
    order = sorted(range(len(evaluators)), key=lambda w: (requests[w], w))
    stage = _single_stage(job.deployment)
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
        while misses - meets > 1:
            middle = (meets + misses) // 2
            # Alone on the executor, both halves are bisected in the same round.
            wider = (meets + middle) // 2 if middle - meets > misses - middle else (middle + misses) // 2
            probes = sorted({middle, wider} if alone() and meets < wider < misses else {middle})
            results = yield [("probe", order[p], plan.deployment) for p in probes]
            misses = min([misses] + [p for p, r in zip(probes, results, strict=True) if not is_feasible(r)])
            for p, result in zip(probes, results, strict=True):
                if is_feasible(result) and meets < p < misses:
                    meets, simulated[order[p]] = p, result
        for later in range(position + 1, meets + 1):
            w = order[later]
            if w in simulated:
                windows[w] = _simulated_window(plan.replicas, simulated[w])
            else:  # vouched for by the next busier window simulated at this size
                voucher = next(order[k] for k in range(later + 1, meets + 1) if order[k] in simulated)
                windows[w] = _inferred_window(plan, simulated[voucher], evaluators[voucher].job.traffic.start_s,
                                              requests[w])
        position = meets + 1
    return [windows[w] for w in range(len(evaluators))]


def _staircase(job: SimulationJob, evaluators: Sequence[DeploymentEvaluator], requests: Sequence[int],
               cache: Mapping, stage: str, alone: Callable[[], bool] = lambda: False) -> Climb:
    """One deployment's sizes for every window when a single stage on one GPU is searched (sizes order by cost).

    With windows in order of requests (then of the day), the size a window
    needs never falls as its requests rise, so the day is a staircase:
    ``size`` replicas serve every window up to the last one they meet the
    SLO at, ``B(size)``. The busiest window is sized first: what the cache
    already holds (the plan's own search, when the plan's horizon is that
    window), else its capacity search. Each size below it then needs its
    ``B``: a window simulated meeting the SLO at that size, the next one up
    missing (or any simulation bracketing it the same way: a miss at a size
    misses at every smaller size and busier window, a meet at every larger
    size and quieter window). Each round simulates, for every size not yet
    bracketed, the window where its ``B`` should be if requests per replica
    held (``_boundary``), and the next busier one once that side is known,
    or in the same round when no other climb keeps a worker busy
    (``alone()``): a step in one round when the estimate is right, and
    every try at least quarters the requests/s left to decide when it is
    not. Sizes whose steps fall between the same two windows share those
    tries. A window is then sized at the
    smallest size whose ``B`` reaches it; not simulated at that size, it is
    vouched for by the next busier window that was. When the busiest window
    misses at every size, ``_climb`` sizes the day instead (window by window,
    each with its own closest try).
    """
    order = sorted(range(len(evaluators)), key=lambda w: (requests[w], w))
    top = len(order) - 1
    low, high = auto_bounds(job.deployment)[stage]
    deployments = {size: sized(job.deployment, {stage: size}) for size in range(low, high + 1)}
    specs = {size: deployment.model_dump_json() for size, deployment in deployments.items()}
    known: dict[tuple[int, int], SimulationResult] = {}  # (position, replicas) -> that window's simulation

    def recall(positions: Iterable[int]) -> None:  # what the cache holds (the plan's own simulations too)
        for p in positions:
            job_key = cache_key(evaluators[order[p]], job.deployment)[0]
            for size, spec in specs.items():
                found = cache.get((job_key, spec))
                if found is not None:
                    known[p, size] = found

    recall(range(len(order)))
    top_size = _sized_by(known, top, low)
    if top_size is None:  # the busiest window's own search, from above the sizes known to miss
        floor = max([low] + [size + 1 for (_p, size), result in known.items() if not is_feasible(result)])
        plan = (yield from _search(order[top], {stage: (floor, high)})) if floor <= high else None
        if plan is None or not plan.feasible:
            return (yield from _climb(job, evaluators, requests, cache, alone))
        recall([top])
        top_size = plan.replicas[stage]
        known[top, top_size] = plan.result

    def first_missed(size: int) -> int:
        """The quietest position known to miss at ``size`` (the busiest one for sizes below the top's)."""
        if size >= top_size:
            return top + 1
        return min([top] + [p for (p, t), result in known.items() if t >= size and not is_feasible(result)])

    def last_met(size: int) -> int:
        """The busiest position known to meet at ``size``, below the first miss (-1: none)."""
        if size >= top_size:
            return top
        missed = first_missed(size)
        return max([-1] + [p for (p, t), result in known.items() if t <= size and p < missed and is_feasible(result)])

    while True:
        open_sizes = [size for size in range(low, top_size) if first_missed(size) - last_met(size) > 1]
        if not open_sizes:
            break
        seen = [(t, requests[order[p]] / evaluators[order[p]].job.horizon_s, is_feasible(result), _served_rps(result))
                for (p, t), result in sorted(known.items())]
        rates = [requests[w] / evaluators[w].job.horizon_s for w in order]
        pairs = alone()  # the window past each step in the same round too: no other climb keeps a worker busy
        expect_met: dict[int, int] = {}  # position -> the fewest replicas expected to meet there
        expect_missed: dict[int, int] = {}  # position -> the most replicas expected to miss there
        for size in open_sizes:
            meets, misses = last_met(size), first_missed(size)
            step = _boundary(size, seen, rates, meets, misses)
            if step > meets:
                expect_met[step] = min(size, expect_met.get(step, size))
            if step + 1 < misses and (step == meets or pairs):
                expect_missed[step + 1] = max(size, expect_missed.get(step + 1, size))
        # Sizes whose steps fall between the same two windows share their tries there (a meet at the fewest
        # replicas is a meet at more, a miss at the most is a miss at fewer): a jump of several replicas between
        # two windows costs two simulations, not two per size.
        asked = sorted({*expect_met.items(), *expect_missed.items()})
        results = yield [("probe", order[p], deployments[size]) for p, size in asked]
        for (p, size), result in zip(asked, results, strict=True):
            known[p, size] = result

    windows: dict[int, Window] = {}
    for p, w in enumerate(order):
        size = next(t for t in range(low, top_size + 1) if last_met(t) >= p)
        voucher = next(q for q in range(p, top + 1) if (q, size) in known and is_feasible(known[q, size]))
        window = _simulated_window(_replicas(job.deployment, stage, size), known[voucher, size])
        if voucher != p:
            window = replace(window, requests=requests[w], slo_attainment=None, e2e_p99_s=None,
                             inferred_from_s=evaluators[order[voucher]].job.traffic.start_s)
        windows[w] = window
    return [windows[w] for w in range(len(evaluators))]


def _sized_by(known: Mapping[tuple[int, int], SimulationResult], position: int, low: int) -> int | None:
    """The size the window at ``position`` needs by its own simulations in ``known`` (the smallest that meets,
    the one below it missing), else None."""
    met = [size for (p, size), result in known.items() if p == position and is_feasible(result)]
    if not met:
        return None
    size = min(met)
    below = known.get((position, size - 1))
    return size if size == low or (below is not None and not is_feasible(below)) else None


def _served_rps(result: SimulationResult) -> float:
    """Requests/s a simulation served (below the offered rate once the configuration saturates)."""
    return float(result.metrics.get("throughput_rps") or 0.0)


def _boundary(size: int, seen: Sequence[tuple[int, float, bool, float]], rates: Sequence[float], meets: int,
              misses: int) -> int:
    """The position (in ``rates``, the windows' requests/s in ascending order) of the last window ``size``
    replicas should carry, between ``meets`` and ``misses`` (positions known to meet and to miss at ``size``).

    The rate they should carry is midway between the most requests/s per replica seen met and the fewest seen
    missed, or served by a configuration that missed (``seen``: (replicas, offered requests/s, met, served
    requests/s)); the middle of the two positions' rates without a consistent estimate. It is kept to the middle
    half of those rates (from the quietest window's when none is known to meet, unless the estimate is below
    even that one: then -1, the quietest window to try as a miss), so that the window there and the next one at
    least quarter the rates left to decide whatever the simulations say, however wrong the estimate.
    """
    lowest, highest = rates[max(meets, 0)], rates[misses]
    met = [offered / n for n, offered, ok, _served in seen if ok and n > 0]
    missed = [min(offered, served) / n for n, offered, ok, served in seen if not ok and n > 0 and served > 0]
    if met and missed and max(met) < min(missed):
        carried = size * (max(met) + min(missed)) / 2
        if meets < 0 and carried < lowest:  # not even the quietest window: trying it settles the size if right
            return meets
    else:
        carried = (lowest + highest) / 2
    quarter = (highest - lowest) / 4
    carried = min(max(carried, lowest + quarter), highest - quarter)
    return max((p for p in range(meets + 1, misses) if rates[p] <= carried), default=meets)


def _replicas(deployment: DeploymentSpec, stage: str, size: int) -> dict[str, int]:
    """Every sizeable stage's replicas with ``stage`` at ``size`` (the others as written), in stage order."""
    sizes = {**fixed_sizes(deployment, {stage: (size, size)}), stage: size}
    return {s.name: sizes[s.name] for s in deployment.stages if s.name in sizes}


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


def _run_round(jobs: Sequence[SimulationJob], evaluators: Sequence[Sequence[DeploymentEvaluator]],
               tasks: Mapping[int, list[Task]], executor: Executor, target: float, cache: dict,
               simulations: dict[int, int], loads: Sequence[Sequence[int]]) -> dict[int, list]:
    """Every climb's tasks at once: the probes not in ``cache`` on ``executor``, alongside the searches."""
    probes = sorted(((index, w, deployment) for index, asked in tasks.items() for kind, w, deployment in asked
                     if kind == "probe"), key=lambda probe: -loads[probe[0]][probe[1]])
    futures: dict[tuple, Future] = {}
    for index, w, deployment in probes:  # the busiest windows first: the round ends soonest (the order decides nothing)
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


def load_times_s(deployment: DeploymentSpec, catalog: Catalog | None = None,
                 scaled: Collection[str] | None = None) -> dict[str, float]:
    """Seconds a new replica of each model stage (of those named in ``scaled``, when given: the stages a
    schedule scales) takes to serve: its weights per GPU over the GPU's host link (one direction of
    ``pcie_gbs`` at ``HOST_LINK_EFFICIENCY``), plus ``WARMUP_S``."""
    catalog = catalog or load_catalog()
    times = {}
    for stage in deployment.stages:
        if not isinstance(stage, ModelStage) or (scaled is not None and stage.name not in scaled):
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
    return replace(_simulated_window(plan.replicas, plan.result), start_s=start_s, feasible=plan.feasible,
                   reason=plan.reason)


def _simulated_window(replicas: Mapping[str, int], result: SimulationResult) -> Window:
    """A window at sizes ``replicas``, from ``result``: that configuration's simulation of the window (feasible)."""
    metrics, per_stage = result.metrics, result.per_stage
    return Window(
        start_s=0.0, replicas=dict(replicas), gpus=int(metrics.get("gpus") or 0), feasible=True,
        reason="", requests=int(metrics.get("requests") or 0),
        slo_attainment=metrics.get("slo_attainment"), e2e_p99_s=metrics.get("e2e_p99_s"),
        cost_per_day_usd=float(metrics.get("cost_per_day_usd") or 0.0),
        gpu_pools={name: tuple((pool["gpu"], int(pool["gpus"]), float(pool["usd_per_gpu_hour"]))
                               for pool in stage.get("gpu_pools") or ())
                   for name, stage in per_stage.items() if stage.get("gpus")},
    )


def _inferred_window(plan: CapacityPlan, voucher: SimulationResult, voucher_start_s: float, requests: int) -> Window:
    """A window not simulated at ``plan``'s sizes: it meets the SLO because the busier window ``voucher``
    (same sizes) does; its own requests, the voucher's costs."""
    return replace(_simulated_window(plan.replicas, voucher), requests=requests, slo_attainment=None, e2e_p99_s=None,
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
            sizes = sizes_text(window.replicas, schedule.spec)
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
                     f"{sizes_text(schedule.peak_replicas, schedule.spec)}, all day): saves {totals['saving_share']:.0%}")
    return "\n".join(lines)
