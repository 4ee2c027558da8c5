"""Capacity search: the cheapest sizes (USD/day) of a deployment's ``auto`` stages that meet the SLO.

The objective is dollars: GPUs x the stage's GPU price x 24 h summed over
every searched stage at once (API spend does not depend on the sizes). A
stage may leave its GPU open (``gpu: [l4, l40s]`` or ``gpu: auto``): each
combination of GPUs is a variant of the deployment, searched in order of
its cheapest possible cost (a variant that cannot beat the best found is
not simulated), and the cheapest feasible one wins; the plan records what
the others cost or why they fail (``CapacityPlan.alternatives``).

Before any simulation, ``planner.bounds`` walks the run's requests through
each variant: one whose requests miss their targets even at zero load, more
than the attainment target allows, is infeasible as it stands (not
simulated); otherwise each stage starts at its throughput bound.
``planner.search`` then sizes the variant (grow, then decide every cheaper
configuration).

``plan_capacity`` runs the searches of several deployments side by side:
each round it collects every search's next candidates, simulates those not
in its cache (no configuration is simulated twice, also across calls
sharing a ``cache``) on an ``Executor`` (processes, or a Dask cluster) and
feeds the results back in candidate order, so the plan is the same whatever
the number of workers or the order they finish in. ``evaluate`` must be
picklable for a process pool (``DeploymentEvaluator`` is).

Synthetic stages size by ``servers``; a caller may search them too by
passing ``bounds`` (used by the queueing-theory checks).
"""

import itertools
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace

from planner.bounds import DeploymentBounds, bounds_under
from planner.search import (
    Bounds,
    Knowledge,
    Prices,
    Replicas,
    Search,
    closest,
    config_key,
    is_feasible,
    search,
    sizes_text,
)
from planner.search import (
    miss_reason as miss_reason,  # re-exported: the plan names why a deployment as written misses
)
from profiles.catalog import Catalog, load_catalog
from profiles.errors import ConfigurationError, ScenarioError
from sim.api import SimulationJob, SimulationResult, simulate
from sim.build import gpu_options
from sim.deployment import DeploymentSpec, ModelStage, PrefillDecodeDisaggregation

# Stage kind -> the field that sizes it.
SIZE_FIELDS = {"model": "replicas", "synthetic": "servers"}
Evaluate = Callable[[DeploymentSpec], SimulationResult]


@dataclass(frozen=True)
class Probe:
    """One configuration the search simulated, and its verdict."""

    replicas: Mapping[str, int]
    slo_attainment: float | None
    overloaded: bool
    feasible: bool
    gpus: Mapping[str, str] = field(default_factory=dict)  # stage -> GPU, for stages with a GPU choice


@dataclass(frozen=True)
class Alternative:
    """One GPU combination of a deployment whose stages leave the GPU open, and what it came to."""

    gpus: Mapping[str, str]  # stage -> GPU id
    feasible: bool
    cost_per_day_usd: float | None  # the cheapest feasible cost; for one not searched, its lowest possible cost
    note: str  # why infeasible, or why not searched; "" for a feasible one

    @property
    def label(self) -> str:
        """"ocr on l4, text on h100-sxm"."""
        return ", ".join(f"{stage} on {gpu}" for stage, gpu in self.gpus.items())

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"gpus": dict(self.gpus), "feasible": self.feasible, "cost_per_day_usd": self.cost_per_day_usd,
                "note": self.note}


@dataclass(frozen=True)
class CapacityPlan:
    """The outcome of one deployment's search.

    ``replicas`` sizes every sizeable stage (searched or fixed); ``result``
    is the simulation of that configuration: the cheapest feasible one, or
    for an infeasible deployment the cheapest of those that came closest to
    the SLO (``closest``). A deployment the zero-load bound rules out is not
    simulated: ``result`` then holds only its requests and the GPUs and cost
    at its smallest sizes (``simulated`` False).
    """

    deployment: DeploymentSpec
    replicas: Mapping[str, int]
    auto_stages: tuple[str, ...]
    feasible: bool
    reason: str
    result: SimulationResult
    probes: tuple[Probe, ...]
    alternatives: tuple[Alternative, ...] = ()  # other GPU combinations (only when a stage leaves its GPU open)
    simulations: int = 0  # simulations this search ran (configurations found in a shared cache not counted)

    @property
    def name(self) -> str:
        """The deployment's name."""
        return self.deployment.name

    @property
    def simulated(self) -> bool:
        """Whether ``result`` comes from a simulation (False: ruled out by the zero-load bound)."""
        return bool(self.probes)


@dataclass(frozen=True)
class DeploymentEvaluator:
    """A picklable ``evaluate``: the job's simulation with its deployment swapped.

    ``cancel`` (None to pickle it for worker processes) is asked between
    chunks of simulated time, as ``simulate`` does; the GUI sizes on threads.
    ``progress(deployment, fraction)`` (None for worker processes too) hears
    each simulation's progress from inside the run, chunk by chunk.
    """

    job: SimulationJob
    cancel: Callable[[], bool] | None = None
    progress: Callable[[DeploymentSpec, float], None] | None = None

    def __call__(self, deployment: DeploymentSpec) -> SimulationResult:
        """Simulate ``deployment`` under the job's traffic, SLO, horizon and seed, to the end: the search reads
        an overloaded size's served rate over the whole run (a run stopped early skipped sizes that meet it)."""
        report = self.progress
        return simulate(replace(self.job, deployment=deployment, stop_when_overloaded=False), cancel=self.cancel,
                        progress=None if report is None else (lambda fraction: report(deployment, fraction)))


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


def gpu_variants(deployment: DeploymentSpec, catalog: Catalog) -> list[DeploymentSpec]:
    """``deployment`` once per combination of its stages' GPU options (itself when no stage has a choice)."""
    choices = [(stage.name, gpu_options(stage, catalog)) for stage in deployment.stages
               if isinstance(stage, ModelStage) and stage.gpu_choice]
    if not choices:
        return [deployment]
    variants = []
    for picked in itertools.product(*(options for _name, options in choices)):
        chosen = dict(zip((name for name, _options in choices), picked, strict=True))
        stages = [stage.model_copy(update={"gpu": chosen[stage.name]}) if stage.name in chosen else stage
                  for stage in deployment.stages]
        variants.append(deployment.model_copy(update={"stages": stages}))
    return variants


def chosen_gpus(variant: DeploymentSpec, original: DeploymentSpec) -> dict[str, str]:
    """Stage -> GPU of the variant's stages that had a choice in ``original``."""
    open_stages = {s.name for s in original.stages if isinstance(s, ModelStage) and s.gpu_choice}
    return {s.name: str(s.gpu) for s in variant.stages if s.name in open_stages and isinstance(s, ModelStage)}


# ---------------------------------------------------------------- the search of one deployment, every GPU choice

# Candidates name the variant they size: (variant index, sizes of its searched stages).
Candidate = tuple[int, Replicas]
DeploymentSearch = Generator[list[Candidate], list[SimulationResult], "CapacityPlan"]


@dataclass
class _Variant:
    """One GPU combination of a deployment, prepared for its search."""

    deployment: DeploymentSpec
    prices: Prices
    start: Replicas  # each searched stage's throughput bound (at least its minimum)
    bounds: DeploymentBounds | None
    error: str = ""  # it cannot be built (e.g. the model does not fit that GPU)

    @property
    def lowest_usd_per_day(self) -> float:
        """The cost at the throughput bound: no configuration of this variant costs less."""
        return self.prices.usd_per_day(self.start)


def size_deployment(deployment: DeploymentSpec, searched: Bounds, target: float, variants: Sequence[_Variant],
                    fixed: Replicas) -> DeploymentSearch:
    """Search every variant, cheapest possible first; stop at variants that cannot beat the best found.

    Returns the deployment's ``CapacityPlan`` (``simulations`` left for the caller to fill in).
    """
    order = sorted(range(len(variants)), key=lambda i: variants[i].lowest_usd_per_day)
    answers: dict[int, tuple[Replicas | None, str, Knowledge]] = {}
    best: tuple[float, int] | None = None  # (simulated USD/day, variant)
    for index in order:
        variant = variants[index]
        if searched and _why_not_searched(variant, searched):  # ruled out without a simulation
            continue
        if variant.error:
            continue
        cap = best[0] if best is not None else None
        if cap is not None and variant.lowest_usd_per_day >= cap:
            continue
        knowledge = Knowledge(variant.deployment, list(searched), target, variant.bounds)
        steps = search(variant.deployment, searched, target, variant.start, variant.prices, knowledge, cap)
        replicas, reason = yield from _tagged(index, steps)
        if replicas is None and variant.bounds is not None and variant.bounds.infeasible:
            reason += f"; at any size: {variant.bounds.reason}"  # a fixed deployment, simulated as written
        answers[index] = (replicas, reason, knowledge)
        if replicas is not None:
            usd = _cost(knowledge, replicas)
            if best is None or usd < best[0]:
                best = (usd, index)
    return _plan(deployment, searched, target, variants, fixed, answers, best)


def _tagged(index: int, steps: Search) -> Generator[list[Candidate], list[SimulationResult], tuple[Replicas | None, str]]:
    """Run one variant's search, tagging its candidates with the variant."""
    try:
        candidates = next(steps)
        while True:
            results = yield [(index, c) for c in candidates]
            candidates = steps.send(results)
    except StopIteration as done:
        return done.value


def _cost(knowledge: Knowledge, replicas: Replicas) -> float:
    result = next(r for c, r in knowledge.tried if config_key(c) == config_key(replicas))
    return float(result.metrics.get("cost_per_day_usd") or 0.0)


def _plan(deployment: DeploymentSpec, searched: Bounds, target: float, variants: Sequence[_Variant],
          fixed: Replicas, answers: Mapping[int, tuple[Replicas | None, str, Knowledge]],
          best: tuple[float, int] | None) -> "CapacityPlan":
    """The plan of the chosen variant, with the alternatives when a stage had a GPU choice."""
    if best is not None:
        chosen = best[1]
        replicas, _reason, knowledge = answers[chosen]
        assert replicas is not None
        result = next(r for c, r in knowledge.tried if config_key(c) == config_key(replicas))
        feasible, reason = True, ""
    else:
        chosen, replicas, result, reason = _closest_variant(searched, target, variants, answers)
        feasible = False
    variant = variants[chosen]
    sizes = {**fixed, **(replicas or {})}
    ordered = {stage.name: sizes[stage.name] for stage in deployment.stages if stage.name in sizes}
    probes = tuple(Probe({**fixed, **c}, r.metrics.get("slo_attainment"), bool(r.metrics.get("overloaded")),
                         is_feasible(r), chosen_gpus(variants[i].deployment, deployment))
                   for i in sorted(answers) for c, r in answers[i][2].tried)
    alternatives = _alternatives(deployment, searched, variants, answers, chosen, best) if len(variants) > 1 else ()
    if alternatives and not feasible:
        reason = "no GPU choice meets the SLO: " + "; ".join(f"{a.label}: {a.note}" for a in alternatives)
    return CapacityPlan(sized(variant.deployment, replicas or {}), ordered, tuple(searched), feasible, reason,
                        result, probes, alternatives)


def _closest_variant(searched: Bounds, target: float, variants: Sequence[_Variant],
                     answers: Mapping[int, tuple[Replicas | None, str, Knowledge]]
                     ) -> tuple[int, Replicas | None, SimulationResult, str]:
    """For an infeasible deployment: the simulated variant that came closest, or the first ruled out unsimulated."""
    simulated = [(i, closest(k.tried, target)) for i, (_r, _why, k) in answers.items() if k.tried]
    if simulated:
        index, (replicas, result) = max(simulated, key=lambda item: (
            item[1][1].metrics.get("slo_attainment") or 0.0, -(item[1][1].metrics.get("cost_per_day_usd") or 0.0)))
        reason = answers[index][1]
        if len(answers[index][2].tried) > 1:
            reason += f". Shown: {sizes_text(replicas)}, the cheapest as close to the SLO"
        return index, replicas, result, reason
    index = min(range(len(variants)), key=lambda i: (bool(variants[i].error), variants[i].lowest_usd_per_day))
    variant = variants[index]
    return index, dict(variant.start), _unsimulated(variant), _why_not_searched(variant, searched)


def _why_not_searched(variant: _Variant, searched: Bounds) -> str:
    if variant.error:
        return variant.error
    if variant.bounds is not None and variant.bounds.infeasible:
        return variant.bounds.reason
    too_low = {name: n for name, n in variant.start.items() if n > searched[name][1]}
    if too_low:
        return "; ".join(f"{name} needs at least {n} replicas to keep up with the offered work "
                         f"(max_replicas {searched[name][1]})" for name, n in too_low.items())
    return ""


def _unsimulated(variant: _Variant) -> SimulationResult:
    """What is known of a variant without simulating it: requests, and GPUs and cost at its smallest sizes."""
    requests = variant.bounds.requests if variant.bounds is not None else None
    sizes = sized(variant.deployment, variant.start)
    gpus = sum(s.fixed_replicas * s.tensor_parallel for s in sizes.stages if isinstance(s, ModelStage))
    usd = variant.lowest_usd_per_day
    return SimulationResult(variant.deployment.name, {
        "requests": requests, "gpus": gpus, "cost_per_day_usd": usd, "gpu_cost_per_day_usd": usd,
        "slo_attainment": None, "slo_met": False, "overloaded": False, "simulated": False})


def _alternatives(deployment: DeploymentSpec, searched: Bounds, variants: Sequence[_Variant],
                  answers: Mapping[int, tuple[Replicas | None, str, Knowledge]], chosen: int,
                  best: tuple[float, int] | None) -> tuple[Alternative, ...]:
    """Every GPU combination but the chosen one: its cheapest feasible cost, or why not."""
    rows = []
    for index, variant in enumerate(variants):
        if index == chosen and best is not None:
            continue
        gpus = chosen_gpus(variant.deployment, deployment)
        if index in answers and answers[index][0] is not None:
            replicas, _why, knowledge = answers[index]
            assert replicas is not None
            rows.append(Alternative(gpus, True, _cost(knowledge, replicas), ""))
        elif index in answers:
            rows.append(Alternative(gpus, False, None, answers[index][1]))
        elif (why := _why_not_searched(variant, searched)):
            rows.append(Alternative(gpus, False, None, why))
        else:
            rows.append(Alternative(gpus, False, variant.lowest_usd_per_day,
                                    f"not simulated: at least ${variant.lowest_usd_per_day:,.0f}/day at its "
                                    f"throughput bound, no cheaper than the choice"))
    return tuple(rows)


# ---------------------------------------------------------------- many searches on an executor


@dataclass
class _Running:
    """One deployment's search in progress."""

    job_key: tuple
    evaluate: Evaluate
    variants: list[_Variant]
    steps: DeploymentSearch
    pending: list[Candidate]
    simulations: int = 0
    plan: CapacityPlan | None = None  # once the search has finished


def plan_capacity(deployments: Sequence[DeploymentSpec], evaluate: Evaluate | Sequence[Evaluate],
                  executor: Executor, *, target: float, bounds: Sequence[Bounds | None] | None = None,
                  progress: Callable[[float], None] | None = None,
                  cache: dict | None = None) -> list[CapacityPlan]:
    """Search every deployment (fixed ones are simulated once); plans in the order given.

    ``evaluate`` simulates a sized deployment: one for all, or one per
    deployment (the same deployment under different traffic, as autoscaling
    sizes it window by window). When it is a ``DeploymentEvaluator`` the
    search also uses its job for the bounds of ``planner.bounds`` and the
    catalog's prices. ``target`` is the SLO attainment target.
    ``bounds[i]`` overrides deployment i's searched stages (default: its
    ``auto`` stages). ``cache`` (shared between calls on the same scenario)
    holds every simulation by job and configuration. ``progress(fraction)``
    is called as searches finish.
    """
    bounds = list(bounds) if bounds is not None else [None] * len(deployments)
    evaluators = list(evaluate) if isinstance(evaluate, Sequence) else [evaluate] * len(deployments)
    cache = {} if cache is None else cache
    searched = [auto_bounds(deployment, f"deployment {deployment.name!r}: stages") if given is None else dict(given)
                for deployment, given in zip(deployments, bounds, strict=True)]
    prepared = _prepare(deployments, searched, evaluators, executor)
    running: dict[int, _Running] = {}
    for index, deployment in enumerate(deployments):
        variants = prepared[index]
        steps = size_deployment(deployment, searched[index], target, variants, fixed_sizes(deployment, searched[index]))
        running[index] = _Running(_job_key(index, evaluators[index]), evaluators[index], variants, steps, [])
    plans: dict[int, CapacityPlan] = {}
    results: dict[int, list[SimulationResult] | None] = dict.fromkeys(running)
    while running:
        for index in list(running):
            run = running[index]
            if _advance(run, results[index]):
                plans[index] = _finish(running.pop(index))
                if progress:
                    progress(len(plans) / len(deployments))
        _evaluate_round(running, executor, cache)
        results = {index: [cache[_key(run, c)] for c in run.pending] for index, run in running.items()}
    return [plans[index] for index in range(len(deployments))]


def _prepare(deployments: Sequence[DeploymentSpec], searched: Sequence[Bounds], evaluators: Sequence[Evaluate],
             executor: Executor) -> list[list[_Variant]]:
    """Each deployment's GPU variants with their prices and bounds, the bounds computed on ``executor`` (one
    task per traffic window: its requests are counted once for every deployment under it)."""
    jobs = [job if isinstance(job := getattr(e, "job", None), SimulationJob) else None for e in evaluators]
    variants = []
    for deployment, job in zip(deployments, jobs, strict=True):
        variants.append(gpu_variants(deployment, (job.catalog if job is not None else None) or load_catalog()))
    groups: dict[tuple, list[int]] = {}
    for index, job in enumerate(jobs):
        if job is not None and job.traffic.arrivals.kind != "closed_loop":
            groups.setdefault(_job_key(index, job), []).append(index)
    futures = {key: executor.submit(bounds_under, jobs[members[0]],  # type: ignore[arg-type]  # grouped: a job
                                    [v for i in members for v in variants[i]])
               for key, members in groups.items()}
    found: dict[int, list] = {}
    for key, members in groups.items():
        results = iter(futures[key].result())  # submission order: deterministic
        for index in members:
            found[index] = [next(results) for _ in variants[index]]
    return [[_variant(variant, searched[index], jobs[index], bound, len(variants[index]) == 1)
             for variant, bound in zip(variants[index], found.get(index, [None] * len(variants[index])),
                                       strict=True)]
            for index in range(len(deployments))]


def _variant(variant: DeploymentSpec, searched: Bounds, job: object, bound: DeploymentBounds | str | None,
             alone: bool) -> _Variant:
    """One variant prepared: its prices and bounds, or why it cannot run (raised when it is the only one)."""
    catalog = (job.catalog if isinstance(job, SimulationJob) else None) or load_catalog()
    low = {name: n for name, (n, _high) in searched.items()}
    try:
        if isinstance(bound, str):
            raise ConfigurationError(bound)
        prices = Prices.of(variant, catalog)
    except ConfigurationError as err:
        if alone:
            raise
        return _Variant(variant, Prices({}, 0.0), low, None, str(err))
    if bound is not None:
        low = {name: max(n, bound.fewest_replicas.get(name, n)) for name, n in low.items()}
    return _Variant(variant, prices, low, bound)


def _job_key(index: int, evaluate: object) -> tuple:
    """What identifies an evaluator's simulations across calls: its traffic window, horizon and seed."""
    job = evaluate if isinstance(evaluate, SimulationJob) else getattr(evaluate, "job", None)
    if not isinstance(job, SimulationJob):
        return ("evaluator", index, id(evaluate))
    return (job.traffic.model_dump_json(), job.horizon_s, job.seed, job.drain_s, job.slo.model_dump_json())


def _key(run: _Running, candidate: Candidate) -> tuple:
    variant, replicas = candidate
    spec = sized(run.variants[variant].deployment, replicas)
    return run.job_key, spec.model_dump_json()


def cache_key(evaluate: "DeploymentEvaluator", deployment: DeploymentSpec) -> tuple:
    """The key under which ``plan_capacity`` caches ``evaluate(deployment)`` (``deployment`` fully sized, e.g. a
    plan's ``deployment``): a caller simulating a configuration itself shares the searches' cache."""
    return _job_key(0, evaluate), deployment.model_dump_json()


def _evaluate_round(running: dict[int, _Running], executor: Executor, cache: dict) -> None:
    """Simulate every pending candidate not yet in ``cache``, all at once on ``executor``."""
    futures: dict[tuple, Future] = {}
    for run in running.values():
        for candidate in run.pending:
            key = _key(run, candidate)
            if key not in cache and key not in futures:
                variant, replicas = candidate
                futures[key] = executor.submit(run.evaluate, sized(run.variants[variant].deployment, replicas))
                run.simulations += 1
    try:
        for key, future in futures.items():  # submission order: deterministic
            cache[key] = future.result()
    finally:
        for future in futures.values():
            future.cancel()  # after an error, do not leave the others queued


def _advance(run: _Running, results: list[SimulationResult] | None) -> bool:
    """Feed the round's results to the search (None: start it); True when it has finished."""
    try:
        run.pending = next(run.steps) if results is None else run.steps.send(results)
    except StopIteration as done:
        run.pending = []
        run.plan = done.value
        return True
    return False


def _finish(run: _Running) -> CapacityPlan:
    assert run.plan is not None  # _advance returned True
    return replace(run.plan, simulations=run.simulations)
