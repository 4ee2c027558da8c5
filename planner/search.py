"""The search of one deployment variant: the cheapest sizes (USD/day) of its searched stages that meet the SLO.

1. **Grow**: simulate from each stage's lower bound; while the SLO is
   missed, grow the bottleneck stages of the request classes that miss it
   (to bring their utilisation to ``BUSY_TARGET``, between one more and
   twice as many; when overloaded, by the power of two covering offered over
   served load), up to ``max_replicas``. The search gives up when every
   stage is at its maximum, when more replicas stop raising attainment (a
   latency floor), or when the sizes already cost more than a cap (another
   GPU choice's answer).
2. **Cheapest**: every configuration cheaper than the best feasible one is
   decided, by what the simulations showed or by simulating it. Requests of
   classes whose routes share no stage are served independently (a route's
   latency depends only on its own stages), so each simulation tells, per
   group of stages, how many requests missed; assuming a group misses no
   fewer requests with fewer replicas in each of its stages, the misses of
   untried configurations are bounded from below and above by tried ones.
   Each round bisects the undecided sizes of every group at once (one
   simulation informs every group); when every cheaper configuration is
   ruled out, the best one found is the cheapest.

Search generators yield candidate configurations and receive their
simulation results (``planner.capacity`` runs them on an executor).
"""

import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass

from planner.bounds import DeploymentBounds
from profiles.catalog import Catalog
from profiles.costs import HOURS_PER_DAY, pools_cost_usd
from sim.api import SimulationResult
from sim.build import classifier_stage, stage_gpu_pools
from sim.deployment import DeploymentSpec, ModelStage, PrefillDecodeDisaggregation, SyntheticStage
from sim.metrics import OVERLOAD_UNFINISHED_SHARE

# A doubling that raises SLO attainment (0..1) by less than this, or by less than this share of
# the gap to the target, brings no gain.
PLATEAU_GAIN = 0.001
PLATEAU_SHARE = 0.1
# A stage that misses without overload grows to bring its GPU utilisation (0..1) down to this.
BUSY_TARGET = 0.8
# Stages this close (in utilisation, 0..1) to the busiest one that carries missed requests grow together.
HOT_MARGIN = 0.05
# Configurations simulated per round of the cheapest-first phase: fixed (not the worker count) so the
# plan never depends on the machine.
DEFAULT_PROBES = 2
# Most configurations the cheapest-first phase lists at once (only zero-priced stages come near it).
MAX_CANDIDATES = 50_000

Replicas = dict[str, int]
Bounds = Mapping[str, tuple[int, int]]


def is_feasible(result: SimulationResult) -> bool:
    """Meets the SLO attainment target and is not overloaded."""
    return bool(result.metrics.get("slo_met")) and not result.metrics.get("overloaded")


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
                # What its pools rent, each at its GPU's price: the part a replica adds, and the part no
                # replica count changes (an encoder pool, the pools of a prefill/decode split)
                unscaled = _pools_usd_per_day(stage_gpu_pools(stage, catalog, 0))
                per_replica[stage.name] = _pools_usd_per_day(stage_gpu_pools(stage, catalog, 1)) - unscaled
                fixed += unscaled
            elif isinstance(stage, SyntheticStage):
                per_replica[stage.name] = stage.usd_per_server_hour * HOURS_PER_DAY
            elif stage.kind == "on_device":
                fixed += getattr(stage, "device_usd_per_day", 0.0)
        classifier = deployment.router.classifier if deployment.router else None
        if classifier is not None:
            fixed += _pools_usd_per_day(stage_gpu_pools(classifier_stage(classifier), catalog, classifier.replicas))
        return cls(per_replica, fixed)

    def usd_per_day(self, sizes: Mapping[str, int]) -> float:
        """Rental cost of ``sizes`` (every sizeable stage) plus the fixed stages: a lower bound of the total."""
        return self.fixed_usd_per_day + sum(self.per_replica.get(name, 0.0) * n for name, n in sizes.items())

    def key(self, sizes: Mapping[str, int]) -> tuple[float, int, tuple]:
        """Order of configurations: dollars, then fewer replicas, then by name (a total, stable order)."""
        return round(self.usd_per_day(sizes), 9), sum(sizes.values()), config_key(sizes)


def _pools_usd_per_day(pools: Sequence[tuple[str, int, float]]) -> float:
    """A stage's pools (GPU id, GPUs, USD per GPU-hour) rented all day, each at its own price."""
    return float(pools_cost_usd((gpus * HOURS_PER_DAY, price) for _, gpus, price in pools))


def config_key(replicas: Mapping[str, int]) -> tuple:
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
        key = config_key(replicas)
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
        known = self.verdicts.get(config_key(replicas))
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

        The cheapest undecided one; then, in each group at once, the sizes
        among ``undecided`` whose misses are not known exactly at fixed
        fractions of their cost order (a bisection per group; a group with
        none keeps the cheapest one's sizes).
        """
        cheapest_one = undecided[0]
        picks: list[Replicas] = [dict(cheapest_one)] + [{} for _ in range(probes - 1)]
        for (stages, _classes), records in zip(self.groups or [(tuple(self.searched), ())], self.records or [[]],
                                               strict=True):
            seen: dict[tuple[int, ...], None] = {}
            for candidate in undecided:
                sizes = tuple(candidate[s] for s in stages)
                if sizes not in seen and not _known_exactly(sizes, records):
                    seen[sizes] = None
            options = list(seen) or [tuple(cheapest_one[s] for s in stages)]
            for k, probe in enumerate(picks[1:], start=1):
                probe.update(zip(stages, options[min(len(options) - 1, len(options) * k // probes)], strict=True))
        unique = {config_key(p): p for p in picks if config_key(p) not in self.verdicts}
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
    """Grow the bottleneck stages until feasible; mutates ``current``, records what it sees in ``knowledge``.

    When a growth brings (almost) no gain, every growable stage doubles
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
        factor = 2 if stalled else growth_factor(result)
        for name in growable if stalled else bottlenecks(deployment, result, growable):
            grown = factor * current[name] if factor > 2 or stalled else _busy_size(result, name, current[name])
            current[name] = min(bounds[name][1], grown)
        if cost_cap_usd is not None and prices.usd_per_day(current) >= cost_cap_usd:
            return (f"not met below ${cost_cap_usd:,.0f}/day, the cost of a cheaper GPU choice "
                    f"(at {sizes_text(current)} it would cost ${prices.usd_per_day(current):,.0f}/day or more)")
        previous = result
        [result] = yield [dict(current)]
        knowledge.add(current, result)
    return None


def _busy_size(result: SimulationResult, name: str, replicas: int) -> int:
    """A stage's next size when it misses without overload: enough replicas to bring its utilisation down to
    ``BUSY_TARGET``, at least one more and at most twice as many (a doubling overshoots a pool one short)."""
    needed = math.ceil(replicas * _utilisation(result, name) / BUSY_TARGET)
    return min(2 * replicas, max(replicas + 1, needed))


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
    still undecided; the answer is simulated at the end if it was not.
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
            if config_key(decided) in knowledge.verdicts:  # simulated: the answer
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
    text = f"{text}; worst class {worst[0]!r} {worst[1]:.1%}" if worst else text
    unservable = [f"{name} {figures['cannot_be_served']}" for name, figures in sorted(result.per_class.items())
                  if figures.get("cannot_be_served")]  # first: no size of the deployment helps them
    return "; ".join([*unservable, text])


def _worst_class(result: SimulationResult) -> tuple[str, float] | None:
    """The request class with the lowest SLO attainment."""
    scored = [(name, c["slo_attainment"]) for name, c in result.per_class.items()
              if c.get("slo_attainment") is not None]
    return min(scored, key=lambda item: item[1]) if scored else None


def _attainment(result: SimulationResult) -> str:
    value = result.metrics.get("slo_attainment")
    return "no request" if value is None else f"{value:.1%}"


def sizes_text(replicas: Mapping[str, int], deployment: DeploymentSpec | None = None) -> str:
    """Replicas per stage as people read them: "ocr x4, text7b x1"; a prefill/decode stage of ``deployment``
    by its two pools, which its ``replicas`` does not size ("llm prefill x1 + decode x2", not "llm x1")."""
    split = {stage.name: stage.disaggregation for stage in (deployment.stages if deployment else ())
             if isinstance(stage, ModelStage) and isinstance(stage.disaggregation, PrefillDecodeDisaggregation)}
    return ", ".join(f"{name} prefill x{split[name].prefill_replicas} + decode x{split[name].decode_replicas}"
                     if name in split else f"{name} x{n}" for name, n in replicas.items())


