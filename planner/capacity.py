"""Capacity search: the cheapest sizes (USD/day) of a deployment's ``auto`` stages that meet the SLO.

The objective is dollars: GPUs x the stage's GPU price x 24 h summed over
every searched stage at once (API spend does not depend on the sizes). A
stage may leave its GPU open (``gpu: [l4, l40s]`` or ``gpu: auto``): each
combination of GPUs is a variant of the deployment, searched in order of
its cheapest possible cost, and the cheapest feasible one wins; the plan
records what the others cost or why they fail (``CapacityPlan.alternatives``).

Before any simulation, ``planner.bounds`` walks the run's requests through
the deployment: a variant whose requests miss their targets even at zero
load, more than the attainment target allows, is infeasible as it stands;
otherwise each stage starts at its throughput bound (the fewest replicas
that can do the offered work). Then, per variant:

1. **Grow**: simulate; while the SLO is missed, grow the bottleneck stages
   of the request classes that miss it (double; when overloaded, by the
   power of two covering offered over served load), up to ``max_replicas``.
   The search gives up when every stage is at its maximum, when more
   replicas stop raising attainment (a latency floor), or when the sizes
   already cost more than another variant's answer.
2. **Cheapest**: every configuration cheaper than the best feasible one is
   either ruled out by what the simulations showed or simulated, probing
   the cost-ordered list of undecided ones at its thirds (a bisection over
   cost). What rules one out: requests of classes whose routes share no
   stage are served independently (a route's latency depends only on its
   own stages), so each simulation tells, per group of stages, how many
   requests missed; assuming a group misses no fewer requests with fewer
   replicas in each of its stages, the misses of untried configurations are
   bounded from below (and above) by tried ones. When every cheaper
   configuration is ruled out, the best one found is the cheapest.

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
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace

from planner.bounds import DeploymentBounds, bounds_under
from profiles.catalog import Catalog, load_catalog
from profiles.errors import ConfigurationError, ScenarioError
from sim.api import SimulationJob, SimulationResult, simulate
from sim.build import CLASSIFIER_STAGE, gpu_options, usd_per_gpu_hour
from sim.deployment import DeploymentSpec, ModelStage, PrefillDecodeDisaggregation, SyntheticStage
from sim.metrics import OVERLOAD_UNFINISHED_SHARE

# Stage kind -> the field that sizes it.
SIZE_FIELDS = {"model": "replicas", "synthetic": "servers"}
# A doubling that raises SLO attainment (0..1) by less than this, or by less than this share of
# the gap to the target, brings no gain.
PLATEAU_GAIN = 0.001
PLATEAU_SHARE = 0.1
# Stages this close (in utilisation, 0..1) to the busiest one that carries missed requests grow together.
HOT_MARGIN = 0.05
# Configurations simulated per round of the cheapest-first phase: fixed (not the worker count) so the
# plan never depends on the machine.
DEFAULT_PROBES = 2
# Most configurations the cheapest-first phase lists at once (only zero-priced stages come near it).
MAX_CANDIDATES = 50_000
HOURS_PER_DAY = 24.0

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


# ---------------------------------------------------------------- dollars


@dataclass(frozen=True)
class Prices:
    """USD per day of one replica (or server) of each sizeable stage, and of the stages the search cannot size."""

    per_replica: Mapping[str, float]
    fixed_usd_per_day: float

    @classmethod
    def of(cls, deployment: DeploymentSpec, catalog: Catalog) -> "Prices":
        """Prices of ``deployment``'s stages (one GPU each: a variant)."""
        per_replica, fixed = {}, 0.0
        for stage in deployment.stages:
            if isinstance(stage, ModelStage) and isinstance(stage.gpu, str):
                gpu_usd = usd_per_gpu_hour(catalog.gpu(stage.gpu), stage.usd_per_gpu_hour, stage.name)
                per_replica[stage.name] = stage.tensor_parallel * gpu_usd * HOURS_PER_DAY
            elif isinstance(stage, SyntheticStage):
                per_replica[stage.name] = stage.usd_per_server_hour * HOURS_PER_DAY
            elif stage.kind == "on_device":
                fixed += getattr(stage, "device_usd_per_day", 0.0)
        classifier = deployment.router.classifier if deployment.router else None
        if classifier is not None:
            gpu_usd = usd_per_gpu_hour(catalog.gpu(classifier.gpu), classifier.usd_per_gpu_hour, CLASSIFIER_STAGE)
            fixed += classifier.replicas * classifier.tensor_parallel * gpu_usd * HOURS_PER_DAY
        return cls(per_replica, fixed)

    def usd_per_day(self, sizes: Mapping[str, int]) -> float:
        """Rental cost of ``sizes`` (every sizeable stage) plus the fixed stages: a lower bound of the total."""
        return self.fixed_usd_per_day + sum(self.per_replica.get(name, 0.0) * n for name, n in sizes.items())

    def key(self, sizes: Mapping[str, int]) -> tuple[float, int, tuple]:
        """Order of configurations: dollars, then fewer replicas, then by name (a total, stable order)."""
        return round(self.usd_per_day(sizes), 9), sum(sizes.values()), _config_key(sizes)


def _config_key(replicas: Mapping[str, int]) -> tuple:
    return tuple(sorted(replicas.items()))


# ---------------------------------------------------------------- what the simulations showed


class Knowledge:
    """Every configuration of one variant simulated so far, read per group of independent stages.

    Requests of classes whose routes share a searched stage form one group;
    groups share no searched stage, so a group's misses and unfinished
    requests depend only on its own stages' sizes. Assumed monotone: a group
    misses no fewer requests when none of its stages has more replicas.
    """

    def __init__(self, deployment: DeploymentSpec, searched: Sequence[str], target: float,
                 zero_load: DeploymentBounds | None) -> None:
        self.deployment = deployment
        self.searched = list(searched)
        self.target = target
        self.zero_load = zero_load
        self.tried: list[tuple[Replicas, SimulationResult]] = []
        self.verdicts: dict[tuple, bool] = {}
        self.groups: list[tuple[tuple[str, ...], tuple[str, ...]]] | None = None  # (searched stages, classes)
        self.records: list[list[tuple[tuple[int, ...], int, int]]] = []  # per group: (sizes, misses, unfinished)
        self.requests = 0

    def add(self, replicas: Replicas, result: SimulationResult) -> None:
        """Record a simulated configuration."""
        key = _config_key(replicas)
        if key in self.verdicts:
            return
        self.verdicts[key] = is_feasible(result)
        self.tried.append((dict(replicas), result))
        if self.groups is None:
            self.groups = self._groups(result)
            self.records = [[] for _ in self.groups]
            self.requests = int(result.metrics.get("requests") or 0)
        for index, (stages, classes) in enumerate(self.groups):
            misses, unfinished = _group_counts(result, classes)
            self.records[index].append((tuple(replicas[s] for s in stages), misses, unfinished))

    def _groups(self, result: SimulationResult) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """Classes joined when their routes share a searched stage; one group when classes are not reported."""
        complete = result.per_class and all("requests" in c and "slo_attainment" in c for c in result.per_class.values())
        if not complete:
            return [(tuple(self.searched), ())]
        owner = {stage.name: stage.name for stage in self.deployment.stages}

        def root(stage: str) -> str:
            while owner[stage] != stage:
                stage = owner[stage]
            return stage

        paths = {name: list(self.deployment.route_for(name).path) for name in result.per_class}
        for path in paths.values():  # a shared stage, searched or not, couples the classes through it
            for stage in path[1:]:
                owner[root(stage)] = root(path[0])
        groups: dict[str, tuple[list[str], list[str]]] = {}
        for stage in self.searched:
            groups.setdefault(root(stage), ([], []))[0].append(stage)
        constant: list[str] = []
        for name, path in paths.items():
            (groups[root(path[0])][1] if root(path[0]) in groups else constant).append(name)
        found = [(tuple(stages), tuple(classes)) for stages, classes in groups.values()]
        return found + ([((), tuple(constant))] if constant else [])

    def verdict(self, replicas: Mapping[str, int]) -> bool | None:
        """True: feasible, False: infeasible (simulated, or bounded by simulated ones); None: undecided."""
        known = self.verdicts.get(_config_key(replicas))
        if known is not None or self.groups is None:
            return known
        low_misses = low_unfinished = high_misses = high_unfinished = 0
        bounded_above = True
        for (stages, _classes), records in zip(self.groups, self.records, strict=True):
            sizes = tuple(replicas[s] for s in stages)
            above = [(m, u) for r, m, u in records if all(a >= b for a, b in zip(r, sizes, strict=True))]
            below = [(m, u) for r, m, u in records if all(a <= b for a, b in zip(r, sizes, strict=True))]
            low_misses += max((m for m, _u in above), default=0)
            low_unfinished += max((u for _m, u in above), default=0)
            if below:
                high_misses += min(m for m, _u in below)
                high_unfinished += min(u for _m, u in below)
            else:
                bounded_above = False
        if self.zero_load is not None:
            low_misses = max(low_misses, self.zero_load.doomed)
        if not self._passes(low_misses, low_unfinished):
            return False
        return True if bounded_above and self._passes(high_misses, high_unfinished) else None

    def bisecting(self, undecided: Sequence[Replicas], probes: int) -> list[Replicas]:
        """Up to ``probes`` configurations to simulate next (``undecided`` in cost order, not empty).

        In each group, the sizes among ``undecided`` whose misses are not
        known exactly, at fixed quantiles of their cost order; a
        group with none keeps the sizes of the cheapest undecided configuration.
        """
        cheapest_one = undecided[0]
        picks: list[Replicas] = [{} for _ in range(probes)]
        for (stages, _classes), records in zip(self.groups or [(tuple(self.searched), ())], self.records or [[]],
                                               strict=True):
            seen: dict[tuple[int, ...], None] = {}
            for candidate in undecided:
                sizes = tuple(candidate[s] for s in stages)
                if sizes not in seen and not _known_exactly(sizes, records):
                    seen[sizes] = None
            options = list(seen) or [tuple(cheapest_one[s] for s in stages)]
            for probe, position in zip(picks, _probe_points_fixed(len(options), probes), strict=True):
                probe.update(zip(stages, options[position], strict=True))
        unique = {_config_key(p): p for p in picks if _config_key(p) not in self.verdicts}
        return list(unique.values()) or [cheapest_one]

    def _passes(self, misses: int, unfinished: int) -> bool:
        """The simulator's rule: attainment >= target and no overload."""
        requests = self.requests
        return (requests > 0 and (requests - misses) / requests >= self.target
                and unfinished <= OVERLOAD_UNFINISHED_SHARE * max(1, requests))


def _group_counts(result: SimulationResult, classes: tuple[str, ...]) -> tuple[int, int]:
    """(requests that missed the SLO, unfinished) of ``classes``; of the whole run when ``classes`` is empty."""
    if not classes:
        metrics = result.metrics
        requests = int(metrics.get("requests") or 0)
        return requests - round((metrics.get("slo_attainment") or 0.0) * requests), int(metrics.get("unfinished") or 0)
    misses = unfinished = 0
    for name in classes:
        summary = result.per_class[name]
        requests = int(summary["requests"])
        misses += requests - round((summary["slo_attainment"] or 0.0) * requests)
        unfinished += int(summary.get("unfinished") or 0)
    return misses, unfinished


# ---------------------------------------------------------------- the search of one variant

# Search generators yield candidate sizes and receive their results; they return what they found.
Search = Generator[list[Replicas], list[SimulationResult], tuple[Replicas | None, str]]
Growth = Generator[list[Replicas], list[SimulationResult], str | None]  # None: feasible, else why not
Cheapest = Generator[list[Replicas], list[SimulationResult], Replicas]


def search(deployment: DeploymentSpec, bounds: Bounds, target: float, start: Mapping[str, int] | None = None,
           prices: Prices | None = None, knowledge: Knowledge | None = None,
           cost_cap_usd: float | None = None) -> Search:
    """The search of one variant as a generator: yields candidate lists, receives results, returns the verdict.

    Starts at ``start`` (default: each stage's minimum). Returns
    ``(replicas, "")`` with the cheapest feasible sizes (one of the
    candidates), or ``(None, reason)`` when no size allowed is feasible or
    every feasible one costs at least ``cost_cap_usd``.
    """
    prices = prices or Prices({}, 0.0)
    knowledge = knowledge or Knowledge(deployment, list(bounds), target, None)
    current = {name: low for name, (low, _high) in bounds.items()}
    current.update({name: n for name, n in (start or {}).items() if name in bounds})
    low = dict(current)  # a lower bound of every stage's answer (its minimum, or its throughput bound)
    [result] = yield [dict(current)]
    knowledge.add(current, result)
    if not bounds:
        return (current, "") if is_feasible(result) else (None, miss_reason(result, target))
    reason = yield from grow(deployment, bounds, current, result, target, knowledge, prices, cost_cap_usd)
    if reason is not None:
        return None, reason
    best = yield from cheapest(bounds, low, current, knowledge, prices)
    return best, ""


def grow(deployment: DeploymentSpec, bounds: Bounds, current: Replicas, result: SimulationResult,
         target: float, knowledge: Knowledge, prices: Prices, cost_cap_usd: float | None = None) -> Growth:
    """Double the bottleneck stages until feasible; mutates ``current``, records what it sees in ``knowledge``.

    When a doubling brings (almost) no gain, every growable stage doubles
    once; when that brings none either, the search stops. Returns None once
    ``current`` is feasible, else the reason it never will be (at an
    acceptable cost).
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
        if cost_cap_usd is not None and prices.usd_per_day(current) >= cost_cap_usd:
            return (f"not met below ${cost_cap_usd:,.0f}/day, the cost of a cheaper GPU choice "
                    f"(at {sizes_text(current)} it would cost ${prices.usd_per_day(current):,.0f}/day or more)")
        previous = result
        [result] = yield [dict(current)]
        knowledge.add(current, result)
    return None


def growth_factor(result: SimulationResult) -> int:
    """2, or when overloaded the power of two that covers offered over served load (skips hopeless sizes)."""
    metrics = result.metrics
    served, offered = metrics.get("throughput_rps") or 0.0, metrics.get("offered_rps") or 0.0
    if not metrics.get("overloaded") or served <= 0 or offered <= 2 * served:
        return 2
    return 2 ** math.ceil(math.log2(offered / served))


def cheapest(bounds: Bounds, low: Mapping[str, int], best: Replicas, knowledge: Knowledge, prices: Prices,
             probes: int = DEFAULT_PROBES) -> Cheapest:
    """From the feasible ``best``: decide every cheaper configuration; the cheapest feasible one.

    A configuration whose groups' misses are all known from simulations
    (exactly, or bounded by a larger and a smaller tried one) is decided
    without a simulation. Each round simulates ``probes`` configurations
    that bisect, in every group of stages at once, the cost-ordered sizes
    still undecided (at a quarter and half way); the answer is simulated at the end if it was not.
    """
    best = dict(best)
    while True:
        candidates = [c for c in _cheaper(bounds, low, best, prices) if knowledge.verdict(c) is not False]
        decided = next((c for c in candidates if knowledge.verdict(c)), None)
        undecided = [c for c in candidates if knowledge.verdict(c) is None
                     and (decided is None or prices.key(c) < prices.key(decided))]
        if not undecided:
            if decided is None:
                return best
            if _config_key(decided) in knowledge.verdicts:  # simulated: the answer
                return decided
            [result] = yield [decided]  # feasible by what the simulations showed: simulate it for its figures
            knowledge.add(decided, result)
            if is_feasible(result):
                return decided
            continue  # the groups were not as independent as assumed: decide again with this result
        chosen = knowledge.bisecting(undecided, probes)
        results = yield chosen
        for candidate, result in zip(chosen, results, strict=True):
            knowledge.add(candidate, result)
            if is_feasible(result) and prices.key(candidate) < prices.key(best):
                best = dict(candidate)


def _cheaper(bounds: Bounds, low: Mapping[str, int], best: Replicas, prices: Prices) -> list[Replicas]:
    """Every configuration within ``bounds`` (from ``low``) that comes before ``best`` in cost order, in order."""
    names = list(bounds)
    limit = prices.key(best)
    usd_limit = limit[0] + 1e-6
    unit = [prices.per_replica.get(name, 0.0) for name in names]
    floor = [sum(unit[j] * low[names[j]] for j in range(i, len(names))) for i in range(len(names) + 1)]
    found: list[Replicas] = []

    def extend(index: int, sizes: list[int], usd: float) -> None:
        if len(found) >= MAX_CANDIDATES:
            return
        if index == len(names):
            candidate = dict(zip(names, sizes, strict=True))
            if prices.key(candidate) < limit:
                found.append(candidate)
            return
        name = names[index]
        for n in range(low[name], bounds[name][1] + 1):
            spent = usd + unit[index] * n
            if spent + floor[index + 1] > usd_limit:
                break
            extend(index + 1, [*sizes, n], spent)

    extend(0, [], prices.fixed_usd_per_day)
    return sorted(found, key=prices.key)


def _probe_points_fixed(count: int, probes: int) -> list[int]:
    """``probes`` positions in a list of ``count`` (> 0): k / (2 probes) for k = 1..probes (a quarter and the
    middle for two), leaning to the cheap end where the growth's doubling leaves the answer; repeats when short."""
    return [min(count - 1, count * k // (2 * probes)) for k in range(1, probes + 1)]


def _known_exactly(sizes: tuple[int, ...], records: Sequence[tuple[tuple[int, ...], int, int]]) -> bool:
    """Whether the group's misses at ``sizes`` are pinned by tried sizes above and below with equal counts."""
    above = [(m, u) for r, m, u in records if all(a >= b for a, b in zip(r, sizes, strict=True))]
    below = [(m, u) for r, m, u in records if all(a <= b for a, b in zip(r, sizes, strict=True))]
    return bool(above and below) and max(m for m, _u in above) == min(m for m, _u in below) \
        and max(u for _m, u in above) == min(u for _m, u in below)


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
    result = next(r for c, r in knowledge.tried if _config_key(c) == _config_key(replicas))
    return float(result.metrics.get("cost_per_day_usd") or 0.0)


def _plan(deployment: DeploymentSpec, searched: Bounds, target: float, variants: Sequence[_Variant],
          fixed: Replicas, answers: Mapping[int, tuple[Replicas | None, str, Knowledge]],
          best: tuple[float, int] | None) -> "CapacityPlan":
    """The plan of the chosen variant, with the alternatives when a stage had a GPU choice."""
    if best is not None:
        chosen = best[1]
        replicas, _reason, knowledge = answers[chosen]
        assert replicas is not None
        result = next(r for c, r in knowledge.tried if _config_key(c) == _config_key(replicas))
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
