"""Bounds the capacity search gets without simulating: latency at zero load, and replicas by throughput.

Both walk the very requests a simulation of the job would see (same
traffic, seed and horizon) through the deployment's own stage runtimes
(``sim.build``): token accounting is the stages' ``WorkCounter`` and
durations their performance model, so no token rule or timing is derived
a second time here.

**Zero load.** A request alone in the deployment spends, on each model stage
of its route, CPU preprocessing + its encoder pass(es) + the prefill of its
whole prompt in one step + ``output - 1`` decode steps at batch 1 (each
reading at least the prompt's KV). Under load every one of these can only
take longer (queues, batch-mates in the same step, smaller prefill chunks,
longer KV), so the sum is a lower bound of the request's TTFT, end-to-end
latency and time per output token. Stages whose time we cannot bound the
same way (hosted APIs, devices, synthetic servers, disaggregated pools)
count as zero, and a stage after one of them reads no text from it: the
bound stays a lower bound. A request whose bound already exceeds one of its
class's targets (``SloSpec.targets``) misses the SLO at any size; when such
requests outnumber what the attainment target allows, the deployment is
infeasible without a simulation.

**Throughput.** A replica of a model stage is busy at most for the horizon
plus the drain time. Each request visiting the stage costs it at least its
tokens (prompt + decode) at the engine's cheapest per-token rate (a full
``max_batched_tokens`` prefill chunk or a full ``max_batch_size`` decode step,
whichever is cheaper per token), discounted by ``THROUGHPUT_MARGIN``, plus its
share of a full encoder batch; its CPU preprocessing needs the replica's
``cpu_workers``. Every request but the misses the target allows must be
served, so the stage needs at least that work over one replica's time.
Seconds, tokens.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import simpy

from profiles.catalog import load_catalog
from profiles.errors import ConfigurationError
from sim.api import SimulationJob, default_drain_s
from sim.build import BuildContext, build_stages
from sim.deployment import DeploymentSpec
from sim.journey import Journey
from sim.request import Request
from sim.router import route_image_policy
from sim.slo import SloTargets
from sim.stages.base import StageRuntime
from sim.stages.model import ModelPool
from sim.traffic import TrafficSource
from sim.workload import Work

# The cheapest per-token cost measured on one full prefill chunk or one full decode step still includes a
# term a mixed batch may not pay (the chunk's own causal attention, a logit per decode token: up to ~10 %
# on a 7B model); the throughput bound takes 80 % of it, so it stays below what the engine can do.
THROUGHPUT_MARGIN = 0.8
# A bound must exceed its target by more than float noise (the simulator sums the same terms in another order).
TOLERANCE = 1e-9


@dataclass(frozen=True)
class ZeroLoad:
    """Lower bounds of one request's latencies (seconds; ``tpot_s`` None with one output token)."""

    ttft_s: float
    e2e_s: float
    tpot_s: float | None

    def missed(self, targets: SloTargets) -> tuple[str, float, float] | None:
        """The first target this bound already misses: (metric, bound, target), else None."""
        for metric, bound, target in (("e2e", self.e2e_s, targets.e2e_s), ("TTFT", self.ttft_s, targets.ttft_s),
                                      ("TPOT", self.tpot_s, targets.tpot_s)):
            if bound is not None and target is not None and bound > target * (1 + TOLERANCE):
                return metric, bound, target
        return None


@dataclass(frozen=True)
class ClassBound:
    """One request class under the zero-load bound."""

    request_class: str
    requests: int  # in the simulated horizon
    doomed: int  # of them, those that miss a target even alone in the deployment
    text: str  # why, e.g. "camera: e2e at zero load 0.19 s > target 0.1 s on smolvlm-256m / h100-sxm"


@dataclass(frozen=True)
class DeploymentBounds:
    """What one job's deployment can never do, and the fewest replicas each model stage needs."""

    requests: int
    classes: tuple[ClassBound, ...]
    fewest_replicas: Mapping[str, int]  # model stage -> throughput bound (at least 1)
    target: float  # the SLO attainment target

    @property
    def doomed(self) -> int:
        """Requests that miss their targets at any size."""
        return sum(c.doomed for c in self.classes)

    @property
    def infeasible(self) -> bool:
        """More requests miss at zero load than the attainment target allows."""
        return bool(self.requests) and (self.requests - self.doomed) / self.requests < self.target

    @property
    def reason(self) -> str:
        """Why the deployment is infeasible at any size (the failing classes), for the plan."""
        failing = [c.text for c in self.classes if c.doomed]
        return (f"{'; '.join(failing)}: {self.doomed / self.requests:.1%} of requests miss their targets even at "
                f"zero load, at most {1 - self.target:.1%} may (latency without queueing, any number of replicas)")


@dataclass
class _Tally:
    """Per-request figures collected on one model stage."""

    gpu_s: list[float]
    cpu_s: list[float]


def deployment_bounds(job: SimulationJob, shapes: "Sequence[tuple[Request, int]] | None" = None) -> DeploymentBounds | None:
    """The bounds of ``job`` (its deployment on its traffic); None for closed-loop traffic (no fixed requests).

    ``shapes`` (``request_shapes(job)``) may be passed when several deployments share the traffic.
    Raises what ``simulate`` would raise for a deployment that cannot be built.
    """
    if job.traffic.arrivals.kind == "closed_loop":
        return None
    catalog = job.catalog or load_catalog()
    ctx = BuildContext(catalog=catalog, env=simpy.Environment(), seed=job.seed, calibrations=job.calibrations)
    stages, classifier = build_stages(job.deployment, ctx)
    walker = _Walker(job, stages, classifier)
    for request, count in request_shapes(job) if shapes is None else shapes:
        walker.add(request, count)
    return walker.bounds()


def bounds_under(job: SimulationJob, deployments: Sequence[DeploymentSpec]) -> list[DeploymentBounds | str | None]:
    """``deployment_bounds`` of each of ``deployments`` under ``job``'s traffic, its requests counted once; the
    error text for one that cannot be built (e.g. its model does not fit that GPU). Picklable, for executors."""
    shapes = request_shapes(job)
    found: list[DeploymentBounds | str | None] = []
    for deployment in deployments:
        try:
            found.append(deployment_bounds(replace(job, deployment=deployment), shapes))
        except ConfigurationError as err:
            found.append(str(err))
    return found


def request_shapes(job: SimulationJob) -> list[tuple[Request, int]]:
    """The requests ``simulate(job)`` would see, every turn of a conversation and every retry of an agent task
    included (``TrafficSource.every_request``), as (one request of each distinct shape, how many): requests of
    the same class, tier, sizes and context sizes cost every stage the same."""
    counts: dict[tuple, list] = {}
    for request in TrafficSource(job.traffic, job.seed, job.trace).every_request(job.horizon_s):
        key = (request.request_class, request.tier, request.images, request.audio_s, request.video_s,
               request.video_fps, request.video_frame_px, request.text_tokens, request.output_tokens,
               context_shape(request))
        found = counts.get(key)
        if found is None:
            counts[key] = [request, 1]
        else:
            found[1] += 1
    return [(request, count) for request, count in counts.values()]


def context_shape(request: Request) -> tuple:
    """The sizes of ``request``'s context parts (images, audio, text), without the keys that name them."""
    return tuple(part[1:] for part in request.context)


class _Walker:
    """Walks requests through the stages of their routes, collecting bounds."""

    def __init__(self, job: SimulationJob, stages: dict, classifier: StageRuntime | None) -> None:
        self.job = job
        self.stages = stages
        self.classifier = classifier
        self.counts: dict[str, int] = {}
        self.doomed: dict[str, list[tuple[str, float, float, int]]] = {}
        self.timings: dict[tuple[str, Work], tuple[float, float, float]] = {}
        self.paths: dict[tuple[str, str], tuple[list, object]] = {}
        self.bases: dict[tuple, tuple[ZeroLoad, tuple[tuple[str, float, float], ...], float]] = {}
        self.targets = {name: job.slo.targets(name)
                        for name in TrafficSource(job.traffic, job.seed, job.trace).class_names}
        self.tallies: dict[str, list[tuple[float, float, int]]] = {
            name: [] for name, stage in stages.items() if type(stage) is ModelPool}  # (GPU s, CPU s, requests)
        self.token_s = {name: _cheapest_token_s(stage) for name, stage in stages.items() if type(stage) is ModelPool}

    def add(self, request: Request, count: int) -> None:
        """Count ``count`` requests shaped as ``request``: their zero-load verdict, their work on each model stage."""
        zero_load, work = self._bounded(request)
        name = request.request_class
        self.counts[name] = self.counts.get(name, 0) + count
        miss = zero_load.missed(self.targets.get(name) or self.job.slo.targets(name))
        if miss is not None:
            self.doomed.setdefault(name, []).append((*miss, count))
        for stage, gpu_s, cpu_s in work:
            self.tallies[stage].append((gpu_s, cpu_s, count))

    def _bounded(self, request: Request) -> tuple[ZeroLoad, tuple[tuple[str, float, float], ...]]:
        """``_walk`` of ``request``; when only the last stage reads its output length (the usual case), walked once
        per input shape and the last stage's decoding added per output length."""
        path, _policy = self._path(request)
        last = path[-1]
        if not self._output_free(request, path) or not isinstance(last, ModelPool) or last.spec.output_tokens:
            zero_load, work, _step_s = self._walk(request)
            return zero_load, work
        key = (request.request_class, request.tier, request.images, request.audio_s, request.video_s,
               request.video_fps, request.video_frame_px, request.text_tokens, context_shape(request))
        found = self.bases.get(key)
        if found is None:
            found = self.bases[key] = self._walk(replace(request, output_tokens=1))
        zero_load, work, step_s = found
        extra = request.output_tokens - 1
        if extra <= 0:
            return zero_load, work
        if last.name in self.tallies:
            work = tuple((stage, gpu_s + extra * self.token_s[stage] if stage == last.name else gpu_s, cpu_s)
                         for stage, gpu_s, cpu_s in work)
        return ZeroLoad(zero_load.ttft_s, zero_load.e2e_s + extra * step_s, step_s), work

    def _output_free(self, request: Request, path: list) -> bool:
        """Whether no stage before the last passes the request's own output length on (an OCR stage's fixed
        ``output_tokens``, the classifier's label)."""
        return all(not isinstance(stage, ModelPool) or stage.spec.output_tokens or not stage.final_output
                   for stage in path[:-1])

    def _path(self, request: Request) -> tuple[list, object]:
        """The stage runtimes of the request's route and its image policy (once per class and tier)."""
        key = (request.request_class, request.tier)
        found = self.paths.get(key)
        if found is None:
            route = self.job.deployment.route_for(request.request_class)
            path = [self.stages[name] for name in route.path]
            found = self.paths[key] = (([self.classifier] if self.classifier is not None else []) + path,
                                       route_image_policy(route, request.tier))
        return found

    def _walk(self, request: Request) -> tuple[ZeroLoad, tuple[tuple[str, float, float], ...], float]:
        """Zero-load latencies of ``request``, its (stage, GPU s, CPU s) on each model stage, and the last
        stage's decode step at batch 1."""
        path, policy = self._path(request)
        journey = Journey(request, 0, tuple(path), policy, -1)  # type: ignore[arg-type]
        elapsed_s, ttft_s, decode_s, outputs, step_s = 0.0, 0.0, 0.0, 1, 0.0
        work: list[tuple[str, float, float]] = []
        for hop, stage in enumerate(path):
            journey.hop = hop
            if type(stage) is not ModelPool:  # not bounded here: counts zero, passes no text on
                journey.prev_output_tokens = 0
                ttft_s, decode_s, outputs, step_s = elapsed_s, 0.0, 1, 0.0
                continue
            # With prefix caching a request's context (system prompt, earlier turns) may be all cached:
            # its own input alone keeps the bound a lower bound.
            counted = stage.work.own_work(journey) if stage.spec.prefix_caching_on else stage.work.work(journey)
            prompt, preprocess_s = counted.prompt_tokens, counted.preprocess_s
            outputs = stage.output_tokens(journey)
            prefill_s, step_s, shared_encoder_s = self._timings(stage, counted)
            ttft_s = elapsed_s + preprocess_s + prefill_s
            decode_s = (outputs - 1) * step_s if outputs > 1 else 0.0
            elapsed_s = ttft_s + decode_s
            journey.prev_output_tokens = outputs if stage.final_output else 0
            if stage.name in self.tallies:
                tokens = prompt + max(0, outputs - 1)
                work.append((stage.name, tokens * self.token_s[stage.name] + shared_encoder_s, preprocess_s))
        tpot_s = decode_s / (outputs - 1) if outputs > 1 else None
        return ZeroLoad(ttft_s, elapsed_s, tpot_s), tuple(work), step_s

    def _timings(self, stage: ModelPool, counted: Work) -> tuple[float, float, float]:
        """(encoders + whole-prompt prefill, one decode step at batch 1, the request's share of a full encoder
        batch) of one request's work on ``stage``; memoised (requests differ mostly in output length)."""
        key = (stage.name, counted)
        found = self.timings.get(key)
        if found is None:
            perf, batch = stage.perf, stage.spec.encoder_max_batch
            prompt, patches, sequences, audio_s = counted[:4]
            encoder_s = perf.encoder_s(patches, sequences) if patches else 0.0
            encoder_s += perf.audio_encoder_s(audio_s) if audio_s > 0 else 0.0
            shared_s = perf.encoder_s(patches * batch, sequences * batch) / batch if patches else 0.0
            shared_s += perf.audio_encoder_s(audio_s * batch) / batch if audio_s > 0 else 0.0
            step_s = perf.decode_step_s(1, prompt) if stage.work.model.decoder.causal else 0.0
            found = self.timings[key] = (encoder_s + perf.prefill_s(prompt), step_s, shared_s)
        return found

    def bounds(self) -> DeploymentBounds:
        """The bounds of every request added."""
        job = self.job
        requests = sum(self.counts.values())
        allowed_misses = math.floor((1 - job.slo.attainment) * requests)
        span_s = job.horizon_s + (default_drain_s(job.horizon_s) if job.drain_s is None else job.drain_s)
        fewest = {}
        for name, tally in self.tallies.items():
            served = max(0, sum(count for _g, _c, count in tally) - allowed_misses)
            gpu_s = _cheapest_total([(g, count) for g, _c, count in tally], served)  # the cheapest may be served
            cpu_s = _cheapest_total([(c, count) for _g, c, count in tally], served)
            workers = self.stages[name].spec.cpu_workers
            fewest[name] = max(1, math.ceil(gpu_s / span_s), math.ceil(cpu_s / (workers * span_s)))
        classes = tuple(ClassBound(name, count, sum(m[3] for m in self.doomed.get(name, ())), self._miss_text(name))
                        for name, count in sorted(self.counts.items()))
        return DeploymentBounds(requests, classes, fewest, job.slo.attainment)

    def _miss_text(self, name: str) -> str:
        misses = self.doomed.get(name)
        if not misses:
            return ""
        metric, _bound, target, _count = misses[0]
        bounds = sorted(bound for m, bound, _t, _c in misses if m == metric)
        share = sum(m[3] for m in misses) / self.counts[name]
        where = " -> ".join(f"{_model_id(stage)} / {stage.spec.gpu}" for stage in self._route_pools(name))
        quantity = f"{metric} at zero load {bounds[len(bounds) // 2]:.3g} s > target {target:g} s"
        return f"{name}: {quantity} on {where}" + ("" if share == 1 else f" ({share:.0%} of its requests)")

    def _route_pools(self, request_class: str) -> Sequence[ModelPool]:
        route = self.job.deployment.route_for(request_class)
        return [self.stages[n] for n in route.path if type(self.stages[n]) is ModelPool]


def _model_id(stage: ModelPool) -> str:
    return stage.work.model.id


def _cheapest_token_s(stage: ModelPool) -> float:
    """Seconds per token at the engine's best batching, with the margin (see the module docstring)."""
    perf, spec = stage.perf, stage.spec
    chunk = spec.max_batched_tokens
    per_token = perf.prefill_s(chunk) / chunk
    if stage.work.model.decoder.causal:  # a classifier never decodes
        batch = min(spec.max_batch_size, chunk)
        per_token = min(per_token, perf.decode_step_s(batch, batch) / batch)
    return THROUGHPUT_MARGIN * per_token


def _cheapest_total(costs: list[tuple[float, int]], served: int) -> float:
    """The total of the ``served`` smallest of ``costs`` ((value, how many) pairs)."""
    total = 0.0
    for value, count in sorted(costs):
        if served <= 0:
            break
        total += value * min(count, served)
        served -= count
    return total
