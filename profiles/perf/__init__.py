"""Performance models: how long each stage of serving takes, and how much memory it uses.

``perf_model`` is the one entry point. It checks the configuration (tensor
parallelism, precision, MoE imbalance, memory fit), then returns the roofline
model, or the calibrated model (falling back to the roofline) when a
calibration profile is given. Times are seconds, sizes bytes.
"""

from typing import TYPE_CHECKING

from profiles.errors import ConfigurationError
from profiles.hardware import Gpu
from profiles.models import Precision, ResolvedModel
from profiles.perf.base import MemoryPlan, PerfModel
from profiles.perf.memory import kv_bytes_per_token, memory_plan
from profiles.perf.roofline import RooflinePerfModel, decoder_cost, rates

if TYPE_CHECKING:  # calibration is H5's module; imported lazily below
    from profiles.calibration import CalibrationProfile

__all__ = ["MemoryPlan", "PerfModel", "RooflinePerfModel", "perf_model"]


def perf_model(model: ResolvedModel, gpu: Gpu, tensor_parallel: int = 1, *,
               precision: Precision | None = None, hot_expert_factor: float = 1.0,
               expert_replication: int = 1, gpu_memory_utilization: float = 0.9,
               calibration: "CalibrationProfile | None" = None) -> PerfModel:
    """The performance model of ``model`` served on ``tensor_parallel`` GPUs of type ``gpu``.

    ``precision`` defaults to the model's own. ``hot_expert_factor`` is the
    busiest expert's load over the mean (MoE only); ``expert_replication``
    copies of the hot expert share it. Raises ``ConfigurationError`` when the
    configuration cannot run (does not fit, no FP8 on the GPU, bad TP degree).
    """
    precision = precision or model.precision
    _check(model, gpu, tensor_parallel, hot_expert_factor, expert_replication, gpu_memory_utilization)
    rate = rates(gpu, precision)  # raises for fp8 on a GPU without FP8
    plan = memory_plan(model, gpu, tensor_parallel, precision, gpu_memory_utilization, expert_replication)
    cost = decoder_cost(model.decoder, tensor_parallel, precision,
                        kv_bytes_per_token(model.decoder, precision))
    roofline = RooflinePerfModel(model=model, gpu=gpu, tensor_parallel=tensor_parallel,
                                 precision=precision, hot_expert_factor=hot_expert_factor,
                                 expert_replication=expert_replication, memory_plan=plan,
                                 cost=cost, rate=rate)
    if calibration is None:
        return roofline
    if not calibration.applies_to(model.id, gpu.id, tensor_parallel):
        raise ConfigurationError(
            f"calibration profile of {calibration.model_id!r} on {calibration.device.name} "
            f"(gpu id {calibration.device.gpu_id}) does not apply to {model.id!r} on {tensor_parallel}x {gpu.id}")
    from profiles.perf.calibrated import CalibratedPerfModel

    return CalibratedPerfModel(calibration, fallback=roofline)


def _check(model: ResolvedModel, gpu: Gpu, tensor_parallel: int, hot_expert_factor: float,
           expert_replication: int, gpu_memory_utilization: float) -> None:
    """Reject configurations no engine would start, with the reason."""
    where = f"{model.id} on {tensor_parallel}x {gpu.id}"
    if tensor_parallel < 1 or model.decoder.heads % tensor_parallel:
        raise ConfigurationError(f"{where}: tensor_parallel must be >= 1 and divide the "
                                 f"{model.decoder.heads} attention heads")
    if gpu.kind == "edge" and tensor_parallel > 1:
        raise ConfigurationError(f"{where}: an edge device ({gpu.name}) runs on its one GPU: "
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
