"""What a run would refuse, found before it runs: the simulator's own build, then probe requests.

``preflight(job)`` builds the job's deployment exactly as ``simulate`` does
(``sim.api.prepare``: catalog lookups, memory plans, every stage), then hands
every stage on each class's route a few probe requests of that class
(``probe_requests``: drawn from the class's sizes, plus its widest and tallest
image and video frame) through the stage's own ``submit``, where tokens are
counted: an image sent to a text-only model, audio to a model without an
audio encoder, an aspect ratio the model's processor rejects fail here, as
they would mid-run. Problems are ``StageError``s naming the stage's field
path in the deployment, the stage and the class. A stage that lists GPUs
passes when one of them holds its model (the planner chooses among them;
``simulate`` runs the first). ``validate`` runs it, so it
finds what ``simulate`` would refuse by the same code.

``unservable_reasons`` says, after a run, why a class's requests were
rejected when no replica could ever take them: the same probes, counted by
each engine stage on the route and held against a replica's whole KV cache
and the stage's ``max_seq_len``. Pixels, seconds, tokens.
"""

from collections.abc import Sequence
from dataclasses import replace

from profiles.errors import ConfigurationError, StageError
from sim.api import PreparedRun, SimulationJob, prepare
from sim.build import CLASSIFIER_STAGE, stage_named
from sim.deployment import ModelStage, Route
from sim.journey import Journey
from sim.replica import engine_replicas
from sim.request import Request
from sim.router import route_image_policy
from sim.traffic import sampling
from sim.traffic.assembly import build_request
from sim.traffic.sizes import Size
from sim.traffic.spec import RequestClass, TrafficSpec

PROBES_PER_CLASS = 8  # drawn requests per class, besides its extreme shapes
PROBE_STREAM = "<probe>"  # stream name prefix: the probes never move the run's own draws


def preflight(job: SimulationJob) -> None:
    """Build ``job`` as ``simulate`` would and submit probe requests of every class to every stage on its route.

    Raises ``StageError`` (or another ``ConfigurationError``) for the first problem found.
    """
    try:
        run = prepare(job)
    except StageError as err:  # a stage listing GPUs runs on the first; the planner may choose another
        for alternative in _other_gpus(job, err):
            try:
                preflight(alternative)
            except ConfigurationError:
                continue
            return
        raise
    router = run.driver.router
    field_paths = {stage.name: f"stages.{index}" for index, stage in enumerate(job.deployment.stages)}
    probes = probe_requests(job.traffic, job.seed, job.trace)
    for class_name, requests in probes.items():
        path, route = router.route_of(class_name)
        for stage in path:
            field_path = field_paths.get(stage.name, CLASSIFIER_STAGE)
            for request in requests:
                with stage_named(field_path, stage.name, class_name):
                    stage.submit(Journey(request, 0, (stage,), route_image_policy(route, request.tier), -1), 0.0)


def _other_gpus(job: SimulationJob, err: StageError) -> list[SimulationJob]:
    """``job`` with the failing stage on each other GPU it lists (none when it lists no other)."""
    index = int(err.field_path.split(".")[1]) if err.field_path.startswith("stages.") else -1
    spec = job.deployment.stages[index] if index >= 0 else None
    if not isinstance(spec, ModelStage) or not isinstance(spec.gpu, list):
        return []
    jobs = []
    for gpu in spec.gpu[1:]:
        stages = list(job.deployment.stages)
        stages[index] = spec.model_copy(update={"gpu": gpu})
        jobs.append(replace(job, deployment=job.deployment.model_copy(update={"stages": stages})))
    return jobs


def unservable_reasons(run: PreparedRun, job: SimulationJob, classes: Sequence[str]) -> dict[str, str]:
    """For each of ``classes`` whose every probe request some engine stage on its route can never take,
    why: "cannot be served by stage 'vlm': needs 2,000,001 KV tokens, a replica holds 1,000,000"."""
    probes = probe_requests(job.traffic, job.seed, job.trace)
    reasons = {}
    for class_name in classes:
        requests = probes.get(class_name, [])
        path, route = run.driver.router.route_of(class_name)
        for stage in path:
            reason = _never_taken(stage, requests, route)
            if reason:
                reasons[class_name] = f"cannot be served by stage {stage.name!r}: {reason}"
                break
    return reasons


def _never_taken(stage: object, requests: list[Request], route: Route) -> str:
    """Why no replica of ``stage`` can take any of ``requests`` (the largest need quoted), or ''."""
    replicas, work = engine_replicas([stage]), getattr(stage, "work", None)
    if not replicas or work is None or not requests:
        return ""
    replica, max_seq_len = replicas[0], getattr(stage, "max_seq_len", 0)
    needs = []
    for request in requests:
        seq = work.sequence(Journey(request, 0, (stage,), route_image_policy(route, request.tier), -1),
                            request.output_tokens)
        if max_seq_len and seq.prompt_tokens > max_seq_len:
            needs.append((seq.prompt_tokens, f"a prompt of {{:,}} tokens, over the stage's max_seq_len {max_seq_len:,}"))
        elif replica.batcher.policy.never_fits(seq, replica.kv.capacity_tokens):
            needs.append((seq.prompt_tokens + 1, f"needs {{:,}} KV tokens, a replica holds "
                                                 f"{replica.kv.capacity_tokens:,}"))
        else:
            return ""
    tokens, text = min(needs)
    return text.format(tokens)


def probe_requests(traffic: TrafficSpec, seed: int, trace: Sequence[Request] | None) -> dict[str, list[Request]]:
    """A few requests of every class: drawn ones and the extreme shapes (a trace: its first of each class)."""
    if trace is not None:
        found: dict[str, list[Request]] = {}
        for request in trace:
            kept = found.setdefault(request.request_class, [])
            if len(kept) < PROBES_PER_CLASS:
                kept.append(request)
        return found
    return {c.name: _class_probes(c, seed) for c in traffic.classes}


def _class_probes(request_class: RequestClass, seed: int) -> list[Request]:
    """``PROBES_PER_CLASS`` drawn requests, then the widest and the tallest image and video frame."""
    rng = sampling.stream(seed, PROBE_STREAM + request_class.name, sampling.SIZES)
    sizes = sampling.sample_class(request_class, rng, PROBES_PER_CLASS)
    drawn = [build_request(0, 0.0, request_class, sizes, i) for i in range(PROBES_PER_CLASS)]
    extremes = []
    images, video = request_class.images, request_class.video
    if images is not None and sampling.size_max(images.count) >= 1:
        wide, tall = _extreme_shapes(images.width_px, images.height_px)
        extremes += [replace(drawn[0], images=(wide,)), replace(drawn[0], images=(tall,))]
    if video is not None and sampling.size_max(video.seconds) > 0:
        wide, tall = _extreme_shapes(video.width_px, video.height_px)
        seconds = max(sampling.size_max(video.seconds), 1e-3)
        extremes += [replace(drawn[0], video_s=seconds, video_fps=video.fps, video_frame_px=shape)
                     for shape in (wide, tall)]
    return drawn + extremes


def _extreme_shapes(width: Size, height: Size) -> tuple[tuple[int, int], tuple[int, int]]:
    """(widest, tallest) (width_px, height_px) the two sizes can draw together."""
    low_w, high_w = (max(1, round(f(width))) for f in (sampling.size_min, sampling.size_max))
    low_h, high_h = (max(1, round(f(height))) for f in (sampling.size_min, sampling.size_max))
    return (high_w, low_h), (low_w, high_h)
