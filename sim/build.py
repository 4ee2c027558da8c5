"""Turns a ``DeploymentSpec`` into stage runtimes: looks up models and GPUs, builds performance models.

One builder per stage kind, chosen by the spec's ``kind`` from a plain dict.
Everything that can be wrong with a deployment (unknown ids, a model that
does not fit its GPUs, a GPU without a price) raises a ``VlmplanError``
here, before any simulated time passes. USD per GPU-hour, GB/s.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import simpy

from profiles.calibration import CalibrationProfile
from profiles.catalog import Catalog
from profiles.errors import ConfigurationError, StageError
from profiles.hardware import Gpu
from profiles.models import ResolvedModel
from profiles.perf import perf_model
from profiles.perf.base import PerfModel
from profiles.perf.memory import EngineMemory, default_memory_fraction
from sim.deployment import (
    AUTO_GPU,
    ClassifierSpec,
    DeploymentSpec,
    EncodeDisaggregation,
    HostedApiStage,
    ModelStage,
    OnDeviceStage,
    PrefillDecodeDisaggregation,
    SyntheticStage,
)
from sim.draws import Draws, stream
from sim.perfcache import CachedPerf
from sim.stages.base import StageRuntime
from sim.stages.disaggregated import EncodeSplitPool, PrefillDecodePool
from sim.stages.hosted_api import HostedApiRuntime
from sim.stages.model import ModelPool, batch_settings
from sim.stages.on_device import OnDeviceRuntime
from sim.stages.synthetic import SyntheticServers
from sim.timeseries import TimeBins
from sim.workload import WorkCounter

CLASSIFIER_STAGE = "router.classifier"
DRAW_STREAM = 1000  # stream key offset of stage draws (traffic uses its own streams)


@dataclass
class BuildContext:
    """What every stage builder needs."""

    catalog: Catalog
    env: simpy.Environment
    seed: int
    busy_bins: TimeBins | None = None
    calibrations: Sequence[CalibrationProfile] = ()
    stage_index: int = 0
    perf_cache: dict = field(default_factory=dict)
    step_time_scale: float = 1.0  # every GPU pass this much slower (SimulationJob.step_time_scale)


def stage_gpu_pools(spec: ModelStage, catalog: Catalog, replicas: int) -> list[tuple[str, int, float]]:
    """What a model stage (one GPU chosen) rents at ``replicas`` replicas, pool by pool as its runtime's
    ``gpu_pools`` reports it: (GPU id, GPUs, USD per GPU-hour). The replicas' GPUs; beside them an encoder
    pool of its own size and GPU; or, split into prefill and decode, the two pools of their written sizes,
    each on its GPU (``replicas`` does not size them)."""
    assert isinstance(spec.gpu, str)
    tp = spec.tensor_parallel
    split = spec.disaggregation

    def pool(gpu_id: str, gpus: int) -> tuple[str, int, float]:
        return gpu_id, gpus, usd_per_gpu_hour(catalog.gpu(gpu_id), spec.usd_per_gpu_hour, spec.name)

    if isinstance(split, PrefillDecodeDisaggregation):
        return [pool(split.prefill_gpu or spec.gpu, split.prefill_replicas * tp),
                pool(split.decode_gpu or spec.gpu, split.decode_replicas * tp)]
    pools = [pool(spec.gpu, replicas * tp)]
    if isinstance(split, EncodeDisaggregation):
        pools.append(pool(split.encoder_gpu or spec.gpu, split.encoder_replicas))
    return pools


def usd_per_gpu_hour(gpu: Gpu, override: float | None, stage: str) -> float:
    """The stage's price override, else the catalog price; a GPU without a price is an error."""
    if override is not None:
        return override
    if gpu.price is None:
        raise ConfigurationError(f"stage {stage!r}: GPU {gpu.id!r} has no catalog price; set usd_per_gpu_hour")
    return gpu.price.usd_per_gpu_hour


def calibration_for(calibrations: Sequence[CalibrationProfile], model: ResolvedModel, gpu: Gpu,
                    tensor_parallel: int) -> CalibrationProfile | None:
    """The first calibration profile that times this model on one GPU of this type (else None: the tables
    or the roofline): one measured on this very model first, else one holding the device's kernel timings."""
    serving = [p for p in calibrations if p.applies_to(model.id, gpu.id, tensor_parallel)]
    return next((p for p in serving if p.model_id == model.id), serving[0] if serving else None)


def engine_memory(spec: ModelStage | OnDeviceStage, tensor_parallel: int, gpu: Gpu) -> EngineMemory:
    """The engine settings that size a stage's memory on ``gpu`` (an on-device stage runs vLLM's defaults)."""
    if not isinstance(spec, ModelStage):
        return EngineMemory()
    fraction = spec.gpu_memory_utilization or default_memory_fraction(spec.engine, tensor_parallel, gpu.memory_bytes,
                                                                      spec.max_batched_tokens)
    return EngineMemory(engine=spec.engine, memory_fraction=fraction, max_batched_tokens=spec.max_batched_tokens,
                        max_num_seqs=spec.max_batch_size, kv_cache_dtype=spec.kv_cache_dtype)


def model_perf(ctx: BuildContext, model: ResolvedModel, gpu: Gpu, tensor_parallel: int,
               spec: ModelStage | OnDeviceStage) -> PerfModel:
    """``perf_model`` for a stage's settings (shared between pools with the same settings).

    The memory plan is the stage engine's own (``EngineMemory``): its check
    runs first, so a stage that does not fit is refused with its engine's
    accounting.
    """
    moe = spec if isinstance(spec, ModelStage) else None
    memory = engine_memory(spec, tensor_parallel, gpu)
    precision = spec.precision or model.precision
    key = (model.id, id(model), gpu.id, tensor_parallel, precision,
           moe.hot_expert_factor if moe else 1.0, moe.expert_replication if moe else 1, memory)
    found = ctx.perf_cache.get(key)
    if found is None:
        found = ctx.perf_cache[key] = CachedPerf(perf_model(
            model, gpu, tensor_parallel, precision=spec.precision,
            hot_expert_factor=key[5], expert_replication=key[6],
            calibration=calibration_for(ctx.calibrations, model, gpu, tensor_parallel),
            engine=memory.engine, memory=memory), ctx.step_time_scale)
    return found


def encoder_only(model: ResolvedModel) -> ResolvedModel:
    """The model with a one-layer dense decoder: what an encoder-pool GPU holds (E/PD split).

    The decoder keeps its width so the connector into it costs the same.
    """
    decoder = model.decoder.model_copy(update={"layers": 1, "moe": None, "params_b": None})
    return model.model_copy(update={"decoder": decoder})


def link_gbs(override: float | None, *gpus: Gpu) -> float:
    """One direction of the slowest GPU's interconnect (datasheets quote both directions)."""
    return override if override is not None else min(g.interconnect_gbs for g in gpus) / 2


def gpu_options(spec: ModelStage, catalog: Catalog) -> list[str]:
    """The GPU ids a stage may run on: its one GPU, its list, or for ``auto`` every catalog GPU with a
    price (or a price override) that holds the model at the stage's settings, in catalog order.

    Raises ``ConfigurationError`` when ``auto`` finds none.
    """
    if isinstance(spec.gpu, list):
        return list(spec.gpu)
    if spec.gpu != AUTO_GPU:
        return [spec.gpu]
    model = catalog.model(spec.model)
    fitting = [gpu.id for gpu in catalog.gpus.values()  # a profile's host CPU only where a stage names it
               if gpu.kind != "cpu" and (gpu.price is not None or spec.usd_per_gpu_hour is not None)
               and _holds(spec, model, gpu)]
    if not fitting:
        raise ConfigurationError(f"stage {spec.name!r}: gpu `auto` found no priced catalog GPU that holds "
                                 f"{model.id} on {spec.tensor_parallel} GPU(s)")
    return fitting


def _holds(spec: ModelStage, model: ResolvedModel, gpu: Gpu) -> bool:
    """Whether the model runs on ``gpu`` at the stage's settings: fits as the stage's engine sizes memory,
    precision and TP accepted."""
    try:
        perf_model(model, gpu, spec.tensor_parallel, precision=spec.precision,
                   hot_expert_factor=spec.hot_expert_factor, expert_replication=spec.expert_replication,
                   engine=spec.engine, memory=engine_memory(spec, spec.tensor_parallel, gpu))
    except ConfigurationError:
        return False
    return True


def single_gpu(spec: ModelStage, catalog: Catalog) -> ModelStage:
    """``spec`` on one GPU, as ``simulate`` runs it: the first listed, for ``auto`` the cheapest that holds it
    (the planner searches every option and hands the simulator one)."""
    if not spec.gpu_choice:
        return spec
    options = gpu_options(spec, catalog)
    if spec.gpu == AUTO_GPU:
        options.sort(key=lambda gpu_id: usd_per_gpu_hour(catalog.gpu(gpu_id), spec.usd_per_gpu_hour, spec.name))
    return spec.model_copy(update={"gpu": options[0]})


def build_model(spec: ModelStage, ctx: BuildContext) -> ModelPool:
    """A model stage: colocated, or split by its ``disaggregation``."""
    spec = single_gpu(spec, ctx.catalog)
    assert isinstance(spec.gpu, str)  # single_gpu chose one
    model = ctx.catalog.model(spec.model)
    gpu = ctx.catalog.gpu(spec.gpu)
    rented = stage_gpu_pools(spec, ctx.catalog, spec.fixed_replicas)  # also checks every pool's GPU has a price
    split = spec.disaggregation
    if isinstance(split, PrefillDecodeDisaggregation):
        prefill_gpu = ctx.catalog.gpu(split.prefill_gpu or spec.gpu)
        decode_gpu = ctx.catalog.gpu(split.decode_gpu or spec.gpu)
        prefill = model_perf(ctx, model, prefill_gpu, spec.tensor_parallel, spec)
        decode = model_perf(ctx, model, decode_gpu, spec.tensor_parallel, spec)
        return PrefillDecodePool(spec, prefill, decode, WorkCounter(model, prefill, spec.text_only_input, spec.block_tokens),
                                 ctx.env, rented, link_gbs(split.link_gbs, prefill_gpu, decode_gpu), ctx.busy_bins)
    perf = model_perf(ctx, model, gpu, spec.tensor_parallel, spec)
    work = WorkCounter(model, perf, spec.text_only_input, spec.block_tokens)
    if isinstance(split, EncodeDisaggregation):
        if model.vision is None and model.audio is None:
            raise ConfigurationError(f"stage {spec.name!r}: {model.id} has no encoder to disaggregate")
        encoder_gpu = ctx.catalog.gpu(split.encoder_gpu or spec.gpu)
        encoder_perf = model_perf(ctx, encoder_only(model), encoder_gpu, 1, spec)
        return EncodeSplitPool(spec, perf, encoder_perf, work, ctx.env, rented,
                               link_gbs(split.link_gbs, encoder_gpu, gpu), ctx.busy_bins)
    return ModelPool(spec, perf, work, ctx.env, rented, ctx.busy_bins,
                     settings=batch_settings(spec, model, swap=swap_settings(spec, gpu, perf)))


VLLM_SWAP_SPACE_BYTES_PER_GPU = 4 * 2**30  # vLLM V0's default swap_space, 4 GiB per GPU [recalled, unverified]


def swap_settings(spec: ModelStage, gpu: Gpu, perf: PerfModel) -> tuple[float, int]:
    """(KV tokens per second over the host link, host memory in KV tokens) of a stage that swaps or keeps a host
    prefix-cache tier; (0, 0) otherwise.

    The replica's GPUs each move their share of every token's KV over their own link.
    """
    kv_bytes = perf.memory.kv_bytes_per_token
    if (spec.preemption != "swap" and not spec.host_prefix_cache) or kv_bytes <= 0:
        return 0.0, 0
    link_bytes_s = spec.tensor_parallel * (spec.host_link_gbs or gpu.pcie_gbs / 2) * 1e9
    host_bytes = spec.host_kv_gb * 1e9 if spec.host_kv_gb else spec.tensor_parallel * VLLM_SWAP_SPACE_BYTES_PER_GPU
    return link_bytes_s / kv_bytes, int(host_bytes // kv_bytes)


def build_hosted_api(spec: HostedApiStage, ctx: BuildContext) -> StageRuntime:
    """A hosted API stage with its own latency draws."""
    return HostedApiRuntime(spec, ctx.catalog.api(spec.api), ctx.env, Draws(stream(ctx.seed, DRAW_STREAM + ctx.stage_index)))


def build_on_device(spec: OnDeviceStage, ctx: BuildContext) -> StageRuntime:
    """An on-device stage (the device must hold the model: ``perf_model`` checks)."""
    model = ctx.catalog.model(spec.model)
    device = ctx.catalog.gpu(spec.device)
    perf = model_perf(ctx, model, device, 1, spec)
    return OnDeviceRuntime(spec, perf, WorkCounter(model, perf, spec.text_only_input), ctx.env)


def build_synthetic(spec: SyntheticStage, ctx: BuildContext) -> StageRuntime:
    """A synthetic FIFO server pool."""
    return SyntheticServers(spec, ctx.env, Draws(stream(ctx.seed, DRAW_STREAM + ctx.stage_index)))


# Each builder takes the stage spec of its kind.
STAGE_BUILDERS: dict[str, Callable[[Any, BuildContext], StageRuntime]] = {
    "model": build_model,
    "hosted_api": build_hosted_api,
    "on_device": build_on_device,
    "synthetic": build_synthetic,
}


def classifier_stage(spec: ClassifierSpec) -> ModelStage:
    """The router's classifier as a model stage: text only, one output token."""
    return ModelStage(name=CLASSIFIER_STAGE, model=spec.model, gpu=spec.gpu, tensor_parallel=spec.tensor_parallel,
                      replicas=spec.replicas, load_balancer=spec.load_balancer,
                      usd_per_gpu_hour=spec.usd_per_gpu_hour, output_tokens=1, text_only_input=True)


def build_stages(deployment: DeploymentSpec, ctx: BuildContext) -> tuple[dict[str, StageRuntime], StageRuntime | None]:
    """Every stage runtime by name, and the classifier stage (or None)."""
    stages: dict[str, StageRuntime] = {}
    for index, spec in enumerate(deployment.stages):
        ctx.stage_index = index
        with stage_named(f"stages.{index}", spec.name):
            stages[spec.name] = STAGE_BUILDERS[spec.kind](spec, ctx)
    classifier = None
    router = deployment.router
    if router is not None and router.classifier is not None:
        ctx.stage_index = len(deployment.stages)
        with stage_named(CLASSIFIER_STAGE, CLASSIFIER_STAGE):
            classifier = build_model(classifier_stage(router.classifier), ctx)
        classifier.final_output = False  # its label is not text for the next stage
    return stages, classifier


@contextmanager
def stage_named(field_path: str, stage: str, request_class: str = "") -> Iterator[None]:
    """Turn a ``ConfigurationError`` raised inside into a ``StageError`` naming the stage (and class)."""
    try:
        yield
    except StageError:
        raise
    except ConfigurationError as err:
        raise StageError(field_path, stage, str(err), request_class) from None
