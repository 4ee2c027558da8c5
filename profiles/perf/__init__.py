"""Performance models: how long each stage of serving takes, and how much memory it uses.

``perf_model`` is the one entry point; the engine calls the ``PerfModel``
interface of ``profiles.perf.base`` and nothing else. Three sources stand
behind it, tried in this order for each stage:

1. a calibration profile measured on the user's own device, when one is given
   and applies: its component fits for the model it measured
   (``calibrated.CalibratedPerfModel``), and its kernel timings for any model
   on the device (``calibrated_kernels.DeviceKernelPerfModel``, composed as 2.);
2. kernel timings measured by NVIDIA on the GPU under the stage's engine
   (``measured.MeasuredKernelPerfModel``, tables of the aiconfigurator-core
   package read by ``kernel_tables``), when the package is installed and
   covers the GPU and engine;
3. the roofline (``roofline.RooflinePerfModel``): datasheet rates with
   documented efficiency factors, for every other GPU.

Each source implements only ``iteration_s`` and the encoder/preprocessing
calls; ``base.StepModel`` derives the prefill-only and decode-only steps from
``iteration_s`` once. A source that lacks a component (a calibration without
an audio fit, tables without a W4A16 GEMM) asks the next source for that
component only: the calibrated model holds the measured-or-roofline model,
the measured model holds the roofline. Memory (weights, KV capacity) always
comes from the roofline's plan: counted from the dimensions, or, where the
calibration profile measured it on the device, its measured figures. Every model's
``provenance`` names its source and the parts the next one serves.
``sim.perfcache.CachedPerf`` memoises whichever model comes out, per shape.
Times are seconds, sizes bytes.
"""

from dataclasses import replace
from typing import TYPE_CHECKING

from profiles.errors import ConfigurationError
from profiles.hardware import Gpu
from profiles.models import Precision, ResolvedModel
from profiles.perf.base import MemoryPlan, PerfModel
from profiles.perf.kernel_tables import (
    AIC_SYSTEMS,
    ENGINE_NAMES,
    KernelDataUnavailable,
    kernel_tables,
)
from profiles.perf.measured import MeasuredKernelPerfModel
from profiles.perf.memory import EngineMemory, kv_bytes_per_token, memory_plan
from profiles.perf.roofline import RooflinePerfModel, decoder_cost, rates

if TYPE_CHECKING:  # calibration is H5's module; imported lazily below
    from profiles.calibration import CalibrationProfile, MeasuredMemory

__all__ = ["MeasuredKernelPerfModel", "MemoryPlan", "PerfModel", "RooflinePerfModel", "perf_model", "roofline_model"]


def roofline_model(model: ResolvedModel, gpu: Gpu, tensor_parallel: int = 1, *,  # noqa: PLR0913
                   precision: Precision | None = None, hot_expert_factor: float = 1.0,
                   expert_replication: int = 1, gpu_memory_utilization: float = 0.9,
                   memory: EngineMemory | None = None,
                   measured_memory: "MeasuredMemory | None" = None) -> RooflinePerfModel:
    """The roofline model of ``model`` on ``tensor_parallel`` GPUs of type ``gpu`` (arguments as ``perf_model``).

    ``measured_memory`` (a calibration profile's, for this model on this
    device) sizes the memory plan instead of the counted weights and KV.

    Raises ``ConfigurationError`` when the configuration cannot run (does not
    fit, no FP8 on the GPU, bad TP degree), whatever source then times it.
    """
    precision = precision or model.precision
    memory = memory or EngineMemory(memory_fraction=gpu_memory_utilization)
    _check(model, gpu, tensor_parallel, hot_expert_factor, expert_replication, memory.memory_fraction)
    rate = rates(gpu, precision)  # raises for fp8 on a GPU without FP8
    plan = memory_plan(model, gpu, tensor_parallel, precision, expert_replication=expert_replication, engine=memory,
                       measured=measured_memory)
    cost = decoder_cost(model.decoder, tensor_parallel, precision,
                        kv_bytes_per_token(model.decoder, precision))
    return RooflinePerfModel(model=model, gpu=gpu, tensor_parallel=tensor_parallel,
                             precision=precision, hot_expert_factor=hot_expert_factor,
                             expert_replication=expert_replication, memory_plan=plan,
                             cost=cost, rate=rate)


def perf_model(model: ResolvedModel, gpu: Gpu, tensor_parallel: int = 1, *,
               precision: Precision | None = None, hot_expert_factor: float = 1.0,
               expert_replication: int = 1, gpu_memory_utilization: float = 0.9,
               calibration: "CalibrationProfile | None" = None, engine: str = "vllm",
               memory: EngineMemory | None = None) -> PerfModel:
    """The performance model of ``model`` served by ``engine`` on ``tensor_parallel`` GPUs of type ``gpu``.

    ``precision`` defaults to the model's own. ``hot_expert_factor`` is the
    busiest expert's load over the mean (MoE only); ``expert_replication``
    copies of the hot expert share it. ``engine`` (vllm, sglang, trtllm)
    picks the measured kernel tables; ``memory``, the engine's settings that
    size the replica's memory (default: vLLM's with ``gpu_memory_utilization``).
    Raises ``ConfigurationError`` when the configuration cannot run or
    ``calibration`` was measured on another setup.
    """
    if engine not in ENGINE_NAMES:
        raise ConfigurationError(f"engine {engine!r} is not one of {', '.join(ENGINE_NAMES)}")
    why_not = calibration.why_not(model.id, gpu.id, tensor_parallel) if calibration is not None else None
    if calibration is not None and why_not is not None:
        raise ConfigurationError(f"calibration profile of {calibration.model_id} on {calibration.device.label} "
                                 f"does not apply to {model.id} on {tensor_parallel}x {gpu.id}: {why_not}")
    own_model = calibration is not None and calibration.model_id == model.id
    roofline = roofline_model(model, gpu, tensor_parallel, precision=precision,
                              hot_expert_factor=hot_expert_factor, expert_replication=expert_replication,
                              gpu_memory_utilization=gpu_memory_utilization, memory=memory,
                              measured_memory=calibration.memory if calibration is not None and own_model else None)
    if calibration is None:
        return measured_or_roofline(roofline, engine)
    from profiles.perf.calibrated import CalibratedPerfModel
    from profiles.perf.calibrated_kernels import device_kernel_model

    # The device's own kernels time any model on it; the profile's own model keeps its component fits.
    kernels = device_kernel_model(calibration, roofline, gpu)
    if not own_model and kernels is not None:
        return kernels
    return CalibratedPerfModel(calibration, fallback=kernels or measured_or_roofline(roofline, engine))


def measured_or_roofline(roofline: RooflinePerfModel, engine: str) -> MeasuredKernelPerfModel | RooflinePerfModel:
    """Measured kernels where aiconfigurator-core covers the GPU and engine, else the roofline (saying why)."""
    system = AIC_SYSTEMS.get(roofline.gpu.id)
    if system is None:  # no tables for this GPU under any engine: the plain roofline
        return roofline
    try:
        tables = kernel_tables(system, engine)
    except KernelDataUnavailable as reason:
        return replace(roofline, why=str(reason))
    return MeasuredKernelPerfModel(tables, roofline)


def _check(model: ResolvedModel, gpu: Gpu, tensor_parallel: int, hot_expert_factor: float,
           expert_replication: int, gpu_memory_utilization: float) -> None:
    """Reject configurations no engine would start, with the reason."""
    where = f"{model.id} on {tensor_parallel}x {gpu.id}"
    if tensor_parallel < 1 or model.decoder.heads % tensor_parallel:
        raise ConfigurationError(f"{where}: tensor_parallel must be >= 1 and divide the "
                                 f"{model.decoder.heads} attention heads")
    if gpu.kind in ("edge", "cpu") and tensor_parallel > 1:
        raise ConfigurationError(f"{where}: an edge device or host CPU ({gpu.name}) is one device: "
                                 "tensor_parallel must be 1")
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigurationError(f"{where}: gpu_memory_utilization {gpu_memory_utilization} "
                                 "must be in (0, 1]")
    if expert_replication < 1:
        raise ConfigurationError(f"{where}: expert_replication {expert_replication} must be >= 1")
    moe = model.decoder.moe
    if moe is None and (hot_expert_factor != 1.0 or expert_replication != 1):
        raise ConfigurationError(f"{where}: hot_expert_factor and expert_replication apply to "
                                 "mixture-of-experts models only")
    top_share = moe.experts / moe.top_k if moe else 1.0  # every token picking the hot expert
    if not 1.0 <= hot_expert_factor <= top_share:
        raise ConfigurationError(f"{where}: hot_expert_factor {hot_expert_factor} must be between 1 "
                                 f"and experts/top_k = {top_share:g}")
