"""Capacity search: the fewest replicas per ``auto`` stage that meet the SLO without overload.

A deployment whose model stages say ``replicas: auto`` is simulated at
``min_replicas``; while it misses the SLO (attainment below target) or is
overloaded, the bottleneck stages (the busiest of those that requests
missing the SLO pass through) double (or, when overloaded, grow by the
power of two covering offered over served load), up to ``max_replicas``. The first
configuration that passes is then trimmed stage by stage by bisection,
each probe a full simulation. Feasibility is assumed monotone in each stage's replica count.
The search gives up, and says why, when every auto stage is at its maximum
or when more replicas stop raising SLO attainment (the latency without
queueing misses the targets: a bigger pool cannot help). Every step is
bounded, so the search always ends.

``plan_capacity`` runs the searches of several deployments side by side:
each round it collects every search's next candidate configurations,
evaluates the new ones on an ``Executor`` (processes, or a Dask cluster)
and feeds the results back in candidate order, so the plan is the same
whatever the number of workers or the order they finish in. ``evaluate``
must be picklable for a process pool (``DeploymentEvaluator`` is).

Synthetic stages size by ``servers``; a caller may search them too by
passing ``bounds`` (used by the queueing-theory checks).
"""

import math
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace

from profiles.errors import ScenarioError
from sim.api import SimulationJob, SimulationResult, simulate
from sim.deployment import DeploymentSpec, ModelStage, PrefillDecodeDisaggregation

# Stage kind -> the field that sizes it.
SIZE_FIELDS = {"model": "replicas", "synthetic": "servers"}
# A doubling that raises SLO attainment (0..1) by less than this, or by less than this share of
# the gap to the target, brings no gain.
PLATEAU_GAIN = 0.001
PLATEAU_SHARE = 0.1
# Stages this close (in utilisation, 0..1) to the busiest one that carries missed requests grow together.
HOT_MARGIN = 0.05
# Probes per bisection round: fixed (not the worker count) so the plan never depends on the machine.
DEFAULT_PROBES = 2

Replicas = dict[str, int]
Bounds = Mapping[str, tuple[int, int]]
Evaluate = Callable[[DeploymentSpec], SimulationResult]


@dataclass(frozen=True)
class Probe:
    """One configuration the search simulated, and its verdict."""

    replicas: Mapping[str, int]
    slo_attainment: float | None
    overloaded: bool
    feasible: bool


@dataclass(frozen=True)
class CapacityPlan:
    """The outcome of one deployment's search.

    ``replicas`` sizes every sizeable stage (searched or fixed); ``result``
    is the simulation of that configuration: the cheapest feasible one, or
    for an infeasible deployment the cheapest of those that came closest to
    the SLO (``closest``).
    """

    deployment: DeploymentSpec
    replicas: Mapping[str, int]
    auto_stages: tuple[str, ...]
    feasible: bool
    reason: str
    result: SimulationResult
    probes: tuple[Probe, ...]

    @property
    def name(self) -> str:
        """The deployment's name."""
        return self.deployment.name


@dataclass(frozen=True)
class DeploymentEvaluator:
    """A picklable ``evaluate``: the job's simulation with its deployment swapped.

    ``cancel`` (None to pickle it for worker processes) is asked between
    chunks of simulated time, as ``simulate`` does; the GUI sizes on threads.
    """

    job: SimulationJob
    cancel: Callable[[], bool] | None = None

    def __call__(self, deployment: DeploymentSpec) -> SimulationResult:
        """Simulate ``deployment`` under the job's traffic, SLO, horizon and seed."""
        return simulate(replace(self.job, deployment=deployment), cancel=self.cancel)


# ---------------------------------------------------------------- configurations


def auto_bounds(deployment: DeploymentSpec, where: str = "stages") -> dict[str, tuple[int, int]]:
    """``{stage: (min_replicas, max_replicas)}`` of the stages that say ``replicas: auto``."""
    bounds = {}
    for index, stage in enumerate(deployment.stages):
        if not isinstance(stage, ModelStage) or stage.replicas != "auto":
            continue
        if isinstance(stage.disaggregation, PrefillDecodeDisaggregation):
            raise ScenarioError(f"{where}.{index}.replicas: `auto` does not size a prefill_decode stage; "
                                f"set disaggregation.prefill_replicas and decode_replicas")
        bounds[stage.name] = (stage.min_replicas, stage.max_replicas)
    return bounds


def searching_every_stage(deployment: DeploymentSpec) -> DeploymentSpec:
    """``deployment`` with every model stage searched, as if it said ``replicas: auto`` (from 1 to its
    ``max_replicas``); prefill/decode-split stages keep their written sizes, which the search does not set."""
    stages = [stage.model_copy(update={"replicas": "auto", "min_replicas": 1})
              if stage.kind == "model" and not isinstance(stage.disaggregation, PrefillDecodeDisaggregation)
              else stage
              for stage in deployment.stages]
    return deployment.model_copy(update={"stages": stages})


def sized(deployment: DeploymentSpec, replicas: Mapping[str, int]) -> DeploymentSpec:
    """``deployment`` with the given stages resized (``replicas`` or ``servers`` by kind)."""
    stages = [
        stage.model_copy(update={SIZE_FIELDS[stage.kind]: replicas[stage.name]}) if stage.name in replicas else stage
        for stage in deployment.stages
    ]
    return deployment.model_copy(update={"stages": stages})


def fixed_sizes(deployment: DeploymentSpec, searched: Bounds) -> Replicas:
    """The size of every sizeable stage the search does not touch (auto stages: their minimum)."""
    sizes = {}
    for stage in deployment.stages:
        size_field = SIZE_FIELDS.get(stage.kind)
        if size_field is None or stage.name in searched:
            continue
        value = getattr(stage, size_field)
        sizes[stage.name] = stage.fixed_replicas if isinstance(stage, ModelStage) and value == "auto" else value
    return sizes


def is_feasible(result: SimulationResult) -> bool:
    """Meets the SLO attainment target and is not overloaded."""
    return bool(result.metrics.get("slo_met")) and not result.metrics.get("overloaded")


# ---------------------------------------------------------------- the search of one deployment

# Search generators yield candidate sizes and receive their results; they return what they found.
Search = Generator[list[Replicas], list[SimulationResult], tuple[Replicas | None, str]]
Growth = Generator[list[Replicas], list[SimulationResult], str | None]  # None: feasible, else why not
Trim = Generator[list[Replicas], list[SimulationResult], Replicas]


def search(deployment: DeploymentSpec, bounds: Bounds, target: float) -> Search:
    """The search as a generator: yields candidate lists, receives their results, returns the verdict.

    Returns ``(replicas, "")`` with the cheapest feasible sizes found (one of
    the candidates), or ``(None, reason)`` when no size allowed is feasible.
    """
    current = {name: low for name, (low, _high) in bounds.items()}
    [result] = yield [dict(current)]
    if not bounds:
        return (current, "") if is_feasible(result) else (None, miss_reason(result, target))
    seen = {_config_key(current): is_feasible(result)}
    reason = yield from grow(deployment, bounds, current, result, target, seen)
    if reason is not None:
        return None, reason
    best = yield from trim(bounds, current, seen)
    return best, ""


def _config_key(replicas: Mapping[str, int]) -> tuple:
    return tuple(sorted(replicas.items()))


def grow(deployment: DeploymentSpec, bounds: Bounds, current: Replicas, result: SimulationResult,
         target: float, seen: dict[tuple, bool]) -> Growth:
    """Double the bottleneck stages until feasible; mutates ``current``, records verdicts in ``seen``.

    When a doubling brings (almost) no gain, every growable stage doubles
    once; when that brings none either, the search stops. Returns None once
    ``current`` is feasible, else the reason it never will be.
    """
    previous, grew_all = None, False
    while not is_feasible(result):
        growable = [name for name in bounds if current[name] < bounds[name][1]]
        if not growable:
            return f"even at the most replicas allowed ({sizes_text(current)}): {miss_reason(result, target)}"
        stalled = previous is not None and _no_gain(previous, result, target)
        if stalled and grew_all:
            return (f"more replicas stop helping (at {sizes_text(current)}: {_attainment(result)}, hardly more than "
                    f"before the last doubling): the latency without queueing misses the targets; "
                    f"{miss_reason(result, target)}")
        grew_all = stalled
        factor = growth_factor(result)
        for name in growable if stalled else bottlenecks(deployment, result, growable):
            current[name] = min(bounds[name][1], factor * current[name])
        previous = result
        [result] = yield [dict(current)]
        seen[_config_key(current)] = is_feasible(result)
    return None


def growth_factor(result: SimulationResult) -> int:
    """2, or when overloaded the power of two that covers offered over served load (skips hopeless sizes)."""
    metrics = result.metrics
    served, offered = metrics.get("throughput_rps") or 0.0, metrics.get("offered_rps") or 0.0
    if not metrics.get("overloaded") or served <= 0 or offered <= 2 * served:
        return 2
    return 2 ** math.ceil(math.log2(offered / served))


def trim(bounds: Bounds, best: Replicas, seen: dict[tuple, bool], probes: int = DEFAULT_PROBES) -> Trim:
    """Bisect each auto stage down from the feasible ``best`` (others held); returns the trimmed sizes.

    Sizes already simulated with the same other stages (``seen``) narrow the range first.
    """
    best = dict(best)
    for name, (low, _high) in bounds.items():
        known = {v: seen.get(_config_key({**best, name: v})) for v in range(low, best[name])}
        failing = max([low - 1] + [v for v, ok in known.items() if ok is False])  # low - 1: assumed failing
        passing = min([best[name]] + [v for v, ok in known.items() if ok and v > failing])
        while passing - failing > 1:
            values = _probe_points(failing, passing, probes)
            results = yield [{**best, name: value} for value in values]
            seen.update({_config_key({**best, name: v}): is_feasible(r) for v, r in zip(values, results, strict=True)})
            for value, result in zip(values, results, strict=True):
                if is_feasible(result):
                    passing = min(passing, value)
            failing = max([failing] + [v for v, r in zip(values, results, strict=True)
                                       if v < passing and not is_feasible(r)])
        best[name] = passing
    return best


def _probe_points(failing: int, passing: int, probes: int) -> list[int]:
    """Up to ``probes`` distinct sizes strictly between ``failing`` and ``passing``, evenly spread."""
    span = passing - failing
    points = {failing + max(1, round(span * k / (probes + 1))) for k in range(1, probes + 1)}
    return sorted(p for p in points if failing < p < passing)


def bottlenecks(deployment: DeploymentSpec, result: SimulationResult, names: Sequence[str]) -> list[str]:
    """The stages among ``names`` to grow: those missed requests pass through that run hot.

    Busy engines batch more, so utilisation nears 1 on every loaded stage;
    every stage within ``HOT_MARGIN`` of the busiest one that carries missed
    requests grows (trimming later takes back what was not needed). With no
    missed request on any of them, the busiest stage (then longest p99 queue).
    """
    missed = _missed_per_stage(deployment, result)
    carrying = [name for name in names if missed.get(name, 0) > 0] or list(names)
    busiest = max(_utilisation(result, name) for name in carrying)
    hot = [name for name in carrying if _utilisation(result, name) >= busiest - HOT_MARGIN]
    return hot if len(hot) > 1 else [max(carrying, key=lambda name: (_utilisation(result, name),
                                                                      _queue_p99_s(result, name)))]


def _utilisation(result: SimulationResult, name: str) -> float:
    stage = result.per_stage.get(name, {})
    return stage.get("gpu_utilization", stage.get("server_utilization", 0.0)) or 0.0


def _queue_p99_s(result: SimulationResult, name: str) -> float:
    return result.per_stage.get(name, {}).get("queue_p99_s") or 0.0


def _missed_per_stage(deployment: DeploymentSpec, result: SimulationResult) -> dict[str, float]:
    """Requests that missed their SLO, summed over the stages of their class's route."""
    missed: dict[str, float] = {}
    for name, summary in result.per_class.items():
        attainment = summary.get("slo_attainment")
        count = summary.get("requests", 0) * (1.0 - attainment) if attainment is not None else 0.0
        for stage in deployment.route_for(name).path:
            missed[stage] = missed.get(stage, 0.0) + count
    return missed


def _no_gain(before: SimulationResult, after: SimulationResult, target: float) -> bool:
    """Both runs drained their queues and attainment closed too little of the gap to ``target``."""
    if before.metrics.get("overloaded") or after.metrics.get("overloaded"):
        return False
    was = before.metrics.get("slo_attainment") or 0.0
    gain = (after.metrics.get("slo_attainment") or 0.0) - was
    return gain < max(PLATEAU_GAIN, PLATEAU_SHARE * (target - was))


def closest(tried: Sequence[tuple[Replicas, SimulationResult]], target: float) -> tuple[Replicas, SimulationResult]:
    """For an infeasible deployment: the cheapest run whose attainment is as good as the best, within the
    tolerance that counts as no gain (more replicas than that buy nothing).

    Runs that were overloaded count only when every run was.
    """
    drained = [(c, r) for c, r in tried if not r.metrics.get("overloaded")] or list(tried)
    best = max(r.metrics.get("slo_attainment") or 0.0 for _c, r in drained)
    tolerance = max(PLATEAU_GAIN, PLATEAU_SHARE * (target - best))
    near = [(c, r) for c, r in drained if (r.metrics.get("slo_attainment") or 0.0) >= best - tolerance]
    return min(near, key=lambda item: (item[1].metrics.get("cost_per_day_usd") or 0.0, sum(item[0].values())))


def miss_reason(result: SimulationResult, target: float) -> str:
    """Why ``result`` is not feasible, naming the worst request class."""
    metrics = result.metrics
    if metrics.get("overloaded"):
        text = (f"overloaded: {metrics.get('unfinished', '?')} of {metrics.get('requests', '?')} requests "
                f"unfinished at the end (offered load exceeds capacity)")
    else:
        text = f"{_attainment(result)} of requests met their targets (needs {target:.1%})"
    worst = _worst_class(result)
    return f"{text}; worst class {worst[0]!r} {worst[1]:.1%}" if worst else text


def _worst_class(result: SimulationResult) -> tuple[str, float] | None:
    """The request class with the lowest SLO attainment."""
    scored = [(name, c["slo_attainment"]) for name, c in result.per_class.items()
              if c.get("slo_attainment") is not None]
    return min(scored, key=lambda item: item[1]) if scored else None


def _attainment(result: SimulationResult) -> str:
    value = result.metrics.get("slo_attainment")
    return "no request" if value is None else f"{value:.1%}"


def sizes_text(replicas: Mapping[str, int]) -> str:
    """Replicas per stage as people read them: "ocr x4, text7b x1"."""
    return ", ".join(f"{name} x{n}" for name, n in replicas.items())


# ---------------------------------------------------------------- many searches on an executor


@dataclass
class _Running:
    """One deployment's search in progress."""

    deployment: DeploymentSpec
    evaluate: Evaluate
    bounds: Bounds
    fixed: Replicas
    steps: Search
    pending: list[Replicas]
    tried: list[tuple[Replicas, SimulationResult]] = field(default_factory=list)


def plan_capacity(deployments: Sequence[DeploymentSpec], evaluate: Evaluate | Sequence[Evaluate],
                  executor: Executor, *, target: float, bounds: Sequence[Bounds | None] | None = None,
                  progress: Callable[[float], None] | None = None) -> list[CapacityPlan]:
    """Search every deployment (fixed ones are simulated once); plans in the order given.

    ``evaluate`` simulates a sized deployment: one for all, or one per
    deployment (the same deployment under different traffic, as autoscaling
    sizes it window by window). ``target`` is the SLO attainment target (for
    messages; feasibility is the result's ``slo_met``). ``bounds[i]``
    overrides deployment i's searched stages (default: its ``auto`` stages).
    ``progress(fraction)`` is called as searches finish.
    """
    bounds = list(bounds) if bounds is not None else [None] * len(deployments)
    evaluators = list(evaluate) if isinstance(evaluate, Sequence) else [evaluate] * len(deployments)
    running: dict[int, _Running] = {}
    for index, deployment in enumerate(deployments):
        given = bounds[index]
        chosen = auto_bounds(deployment, f"deployment {deployment.name!r}: stages") if given is None else dict(given)
        steps = search(deployment, chosen, target)
        running[index] = _Running(deployment, evaluators[index], chosen, fixed_sizes(deployment, chosen), steps,
                                  next(steps))
    plans: dict[int, CapacityPlan] = {}
    cache: dict[tuple[int, tuple], SimulationResult] = {}
    while running:
        _evaluate_round(running, executor, cache)
        for index in list(running):
            plan = _advance(index, running[index], cache, target)
            if plan is not None:
                plans[index] = plan
                del running[index]
                if progress:
                    progress(len(plans) / len(deployments))
    return [plans[index] for index in range(len(deployments))]


def _key(index: int, replicas: Mapping[str, int]) -> tuple[int, tuple]:
    return index, tuple(sorted(replicas.items()))


def _evaluate_round(running: dict[int, _Running], executor: Executor,
                    cache: dict[tuple[int, tuple], SimulationResult]) -> None:
    """Simulate every pending candidate not yet in ``cache``, all at once on ``executor``."""
    futures: dict[tuple[int, tuple], Future] = {}
    for index, run in running.items():
        for candidate in run.pending:
            key = _key(index, candidate)
            if key not in cache and key not in futures:
                futures[key] = executor.submit(run.evaluate, sized(run.deployment, candidate))
    try:
        for key, future in futures.items():  # submission order: deterministic
            cache[key] = future.result()
    finally:
        for future in futures.values():
            future.cancel()  # after an error, do not leave the others queued


def _advance(index: int, run: _Running, cache: dict, target: float) -> CapacityPlan | None:
    """Feed the round's results to the search; the finished plan, or None while it goes on."""
    results = [cache[_key(index, candidate)] for candidate in run.pending]
    logged = {_config_key(c) for c, _r in run.tried}
    run.tried.extend((c, r) for c, r in zip(run.pending, results, strict=True) if _config_key(c) not in logged)
    try:
        run.pending = run.steps.send(results)
    except StopIteration as done:
        replicas, reason = done.value
        feasible = replicas is not None
        if feasible:
            result = cache[_key(index, replicas)]
        else:
            replicas, result = closest(run.tried, target)
            if len(run.tried) > 1:
                reason += f". Shown: {sizes_text({**run.fixed, **replicas})}, the cheapest as close to the SLO"
        sizes = {**run.fixed, **replicas}
        ordered = {stage.name: sizes[stage.name] for stage in run.deployment.stages if stage.name in sizes}
        probes = tuple(Probe({**run.fixed, **c}, r.metrics.get("slo_attainment"), bool(r.metrics.get("overloaded")),
                             is_feasible(r)) for c, r in run.tried)
        return CapacityPlan(sized(run.deployment, replicas), ordered, tuple(run.bounds), feasible, reason,
                            result, probes)
    return None
