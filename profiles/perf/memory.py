"""GPU memory of one replica: weights, activation reserve, KV cache, as each engine sizes it. Units: bytes.

Every engine starts the same way: load the weights (decoder split over
tensor-parallel GPUs, encoders and connector likewise), profile one forward
pass at the engine's token budget to find the activation peak, and turn a
fraction of what is left into KV cache. The fraction differs:

- vLLM: ``gpu_memory_utilization`` (0.9) of the *total* memory holds weights,
  activations and KV (vllm-project/vllm ``vllm/v1/worker/gpu_worker.py``
  ``determine_available_memory``: requested memory minus the profiled peak);
- TensorRT-LLM: ``kv_cache_config.free_gpu_memory_fraction`` (0.9) of the
  memory *free* after weights and activations (NVIDIA/TensorRT-LLM
  ``KvCacheConfig`` docs);
- SGLang: ``mem_fraction_static`` of the total holds weights and KV, the rest
  is left to activations (sgl-project/sglang ``server_args.py``).

The total is what the driver reports (``Gpu.memory_bytes``: an "80 GB" H100
has 81,559 MiB), the activation peak follows the stage's own
``max_batched_tokens`` and ``max_batch_size``, and the KV element size its
``kv_cache_dtype``. A configuration that leaves too little raises
``ConfigurationError`` saying by how much and what would fit.

Where a calibration profile measured the model's memory on the device
(``MeasuredMemory``: weights, activation peak per batched token and per
sequence, KV per token), the plan takes those figures instead of counting
them from the dimensions; the fixed reserve (CUDA context, graphs, NCCL)
stays, except on a host CPU, which has none of them.
"""

import math
from typing import NamedTuple

from profiles.calibration import MeasuredMemory
from profiles.components import Decoder
from profiles.errors import ConfigurationError
from profiles.hardware import Gpu
from profiles.models import Precision, ResolvedModel
from profiles.params import decoder_breakdown, encoder_params
from profiles.perf.base import MemoryPlan
from profiles.perf.efficiency import ACTIVATION_BYTES

BF16_BYTES = 2.0
# INT4 weight-only (AWQ/GPTQ): 4-bit weights plus, per group of 128, an FP16
# scale and a 4-bit zero point.
INT4_GROUP_SIZE = 128
INT4_GROUP_OVERHEAD_BYTES = 2.5
WEIGHT_BYTES: dict[str, float] = {
    "bf16": BF16_BYTES,
    "fp8": 1.0,  # per-tensor/per-channel scales are negligible
    "int4": 0.5 + INT4_GROUP_OVERHEAD_BYTES / INT4_GROUP_SIZE,
}
# KV cache element size under kv_cache_dtype "auto": FP8 KV with FP8 weights (as FP8
# checkpoints ship KV scales), else BF16. An explicit kv_cache_dtype overrides it.
KV_BYTES: dict[str, int] = {"bf16": 2, "fp8": 1, "int4": 2}
KV_DTYPE_BYTES: dict[str, int] = {"bf16": 2, "fp8": 1}
# Each engine's default share of memory for its static pools (see the module docstring).
ENGINE_MEMORY_FRACTION: dict[str, float] = {"vllm": 0.9, "trtllm": 0.9}
# SGLang's mem_fraction_static when none is set (sgl-project/sglang python/sglang/srt/server_args.py
# ``_handle_gpu_memory_settings``, its form since PRs #10975 and #11076, September 2025): the GPU's
# memory less a reserve for activations and CUDA graphs, in MiB, 512 + 1.5 x max(chunked_prefill_size,
# 2048) + 2 x cuda_graph_max_bs + 1,024 x TP / 8, at least 10 GiB on a GPU of more than 60 GiB.
# Its defaults by the GPU's memory: (below this many GiB, chunked_prefill_size, cuda_graph_max_bs at
# TP < 4, at TP >= 4).
SGLANG_GPU_DEFAULTS: tuple[tuple[float, int, int, int], ...] = (
    (20, 2048, 8, 8), (35, 2048, 24, 80), (60, 4096, 32, 160), (160, 8192, 256, 512), (math.inf, 16384, 512, 512))

# Memory outside the profiled activations: CUDA context, CUDA graphs, NCCL
# buffers, allocator slack (vLLM start-up logs show 1-2 GB per GPU).
FIXED_RESERVE_BYTES = 1_500_000_000
# The engine profiles the activation peak with a dummy batch of its token budget
# (vLLM max_num_batched_tokens, 8192 the V1 default for online serving; TensorRT-LLM
# max_num_tokens; SGLang chunked_prefill_size) ...
MAX_BATCHED_TOKENS = 8192
# ... and holds FP32 logits for up to its batch limit of sequences (vLLM max_num_seqs, default 256).
MAX_NUM_SEQS = 256
# Hidden-width tensors alive at the activation peak (residual, normed input,
# attention output, QKV), besides the FFN intermediate (gate and up).
PEAK_HIDDEN_TENSORS = 4
# A replica must hold at least this many KV tokens to serve a request with a
# large image (vLLM refuses to start if max_model_len does not fit).
MIN_KV_TOKENS = 4096
GB = 1e9
TP_CHOICES = (1, 2, 4, 8)


class EngineMemory(NamedTuple):
    """The engine settings that size a replica's memory (defaults: vLLM's, as before engines were named)."""

    engine: str = "vllm"
    memory_fraction: float = 0.9  # vLLM gpu_memory_utilization / SGLang mem_fraction_static / TRT-LLM free fraction
    max_batched_tokens: int = MAX_BATCHED_TOKENS
    max_num_seqs: int = MAX_NUM_SEQS
    kv_cache_dtype: str = "auto"


def default_memory_fraction(engine: str, tensor_parallel: int, gpu_memory_bytes: int,
                            max_batched_tokens: int = MAX_BATCHED_TOKENS) -> float:
    """The engine's own default memory fraction (SGLang's follows the GPU's memory, the TP degree and
    its chunked prefill size, the stage's ``max_batched_tokens``)."""
    if engine == "sglang":
        return sglang_memory_fraction(gpu_memory_bytes, tensor_parallel, max_batched_tokens)
    return ENGINE_MEMORY_FRACTION[engine]


def _sglang_gpu_defaults(gpu_memory_bytes: int) -> tuple[int, int, int]:
    """SGLang's (chunked_prefill_size, cuda_graph_max_bs at TP < 4, at TP >= 4) on a GPU of this memory."""
    mib = gpu_memory_bytes / 2**20
    return next(defaults[1:] for defaults in SGLANG_GPU_DEFAULTS if mib < defaults[0] * 1024)


def sglang_chunked_prefill_size(gpu_memory_bytes: int) -> int:
    """SGLang's default chunked_prefill_size on a GPU of this memory (see ``SGLANG_GPU_DEFAULTS``)."""
    return _sglang_gpu_defaults(gpu_memory_bytes)[0]


def sglang_memory_fraction(gpu_memory_bytes: int, tensor_parallel: int, chunked_prefill_tokens: int | None = None,
                           cuda_graph_max_bs: int | None = None) -> float:
    """SGLang's default mem_fraction_static on this GPU (see ``SGLANG_GPU_DEFAULTS``); None: SGLang's own
    chunked prefill size and CUDA-graph batch on this GPU."""
    mib = gpu_memory_bytes / 2**20
    chunk, small_tp, large_tp = _sglang_gpu_defaults(gpu_memory_bytes)
    chunk = chunked_prefill_tokens or chunk
    graph_batch = cuda_graph_max_bs or (small_tp if tensor_parallel < 4 else large_tp)
    reserved = 512 + 1.5 * max(chunk, 2048) + 2 * graph_batch + 1024 * tensor_parallel / 8
    if mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((mib - reserved) / mib, 3)


class WeightBytes(NamedTuple):
    """Weight bytes of a whole replica (not per GPU), by part."""

    decoder_layers: float  # transformer layers at the serving precision
    embeddings: float  # input embedding + LM head, kept BF16
    encoders: float  # vision + connector + audio, kept BF16

    @property
    def total(self) -> float:
        """All weight bytes of the replica."""
        return self.decoder_layers + self.embeddings + self.encoders


def weight_bytes(model: ResolvedModel, precision: Precision, expert_replication: int = 1) -> WeightBytes:
    """Weight bytes of ``model``: layers at ``precision``, embeddings and encoders in BF16.

    vLLM's FP8 and AWQ/GPTQ paths quantise the decoder's linear layers and
    leave the LM head, embeddings and (in most VLM checkpoints) the vision
    tower in BF16. ``expert_replication`` r stores r-1 extra copies of one
    (the hot) expert in every MoE layer.
    """
    parts = decoder_breakdown(model.decoder)
    layers: float = parts.attention + parts.dense_mlp + parts.routed_experts + parts.shared_experts + parts.norms
    layers += (expert_replication - 1) * _one_expert_all_layers(model.decoder, parts.routed_experts)
    embeddings = parts.embedding + parts.lm_head
    scale = _published_scale(model.decoder, parts.total)
    return WeightBytes(decoder_layers=scale * layers * WEIGHT_BYTES[precision],
                       embeddings=scale * embeddings * BF16_BYTES,
                       encoders=encoder_params(model) * BF16_BYTES)


def _one_expert_all_layers(decoder: Decoder, routed_experts: int) -> float:
    """Parameters of one routed expert summed over the MoE layers."""
    return routed_experts / decoder.moe.experts if decoder.moe else 0.0


def _published_scale(decoder: Decoder, derived_total: int) -> float:
    """Ratio of a published ``params_b`` to the count derived from dims (1 when absent)."""
    return decoder.params_b * 1e9 / derived_total if decoder.params_b else 1.0


def kv_bytes_per_token(decoder: Decoder, precision: Precision, kv_cache_dtype: str = "auto") -> int:
    """K and V of one token over all layers, whole replica: 2 * layers * kv_heads * head_dim * bytes.

    ``kv_cache_dtype`` "auto" follows the weights (FP8 KV with FP8 weights,
    else BF16); "bf16" or "fp8" set it apart from the weight precision.
    """
    if not decoder.causal:
        return 0
    element = KV_BYTES[precision] if kv_cache_dtype == "auto" else KV_DTYPE_BYTES[kv_cache_dtype]
    return 2 * decoder.layers * decoder.kv_heads * decoder.head_dim * element


def kv_replication(decoder: Decoder, tensor_parallel: int) -> float:
    """How many times each KV head is stored: vLLM replicates KV heads when tp > kv_heads."""
    return max(1.0, tensor_parallel / decoder.kv_heads)


def activation_reserve_bytes(decoder: Decoder, tensor_parallel: int, max_batched_tokens: int = MAX_BATCHED_TOKENS,
                             max_num_seqs: int = MAX_NUM_SEQS) -> int:
    """Per-GPU activation peak of a ``max_batched_tokens`` forward pass with ``max_num_seqs`` logits rows,
    plus the fixed reserve."""
    if decoder.moe is not None:
        ffn = decoder.moe.top_k * decoder.moe.expert_intermediate
        ffn += decoder.moe.shared_experts * decoder.moe.shared_intermediate
        ffn = max(ffn, decoder.intermediate if decoder.moe.dense_layers else 0)
    else:
        ffn = decoder.intermediate
    per_token = ACTIVATION_BYTES * (PEAK_HIDDEN_TENSORS * decoder.hidden + 2 * ffn / tensor_parallel)
    logits = max_num_seqs * decoder.vocab * 4 / tensor_parallel
    return int(FIXED_RESERVE_BYTES + max_batched_tokens * per_token + logits)


def _inflight_bytes_per_token(decoder: Decoder) -> float:
    """Memory one in-flight token holds in a classifier (no KV cache): its live hidden-width activations.

    Reported as the classifier's ``kv_capacity_tokens`` so a simulator admits
    prompts against it the same way; in practice it never binds.
    """
    return ACTIVATION_BYTES * PEAK_HIDDEN_TENSORS * decoder.hidden


def _required_kv_tokens(decoder: Decoder) -> int:
    """KV tokens a replica must hold to be worth starting (0 for a classifier)."""
    return MIN_KV_TOKENS if decoder.causal else 0


def memory_plan(model: ResolvedModel, gpu: Gpu, tensor_parallel: int, precision: Precision,  # noqa: PLR0913
                gpu_memory_utilization: float = 0.9, expert_replication: int = 1, *,
                engine: EngineMemory | None = None, measured: MeasuredMemory | None = None) -> MemoryPlan:
    """Memory of one replica on ``tensor_parallel`` GPUs of type ``gpu``, as ``engine`` sizes it.

    ``engine`` defaults to vLLM's settings with ``gpu_memory_utilization``;
    ``measured``, the model's memory measured on this device (one GPU per
    replica, its own KV dtype), replaces the counted weights, activations and KV.
    ``MemoryPlan.gpu_bytes`` is the budget the engine divides (weights +
    activation reserve + KV), so ``free_bytes_per_gpu`` is the KV space.
    Raises ``ConfigurationError`` when weights, activations and ``MIN_KV_TOKENS``
    of KV do not fit.
    """
    settings = engine or EngineMemory(memory_fraction=gpu_memory_utilization)
    plan = (_plan(model, gpu, tensor_parallel, precision, settings, expert_replication) if measured is None
            else measured_plan(measured, gpu, settings))
    need = _need_bytes_per_gpu(plan, model.decoder, tensor_parallel)
    if need > plan.gpu_bytes:
        raise ConfigurationError(_shortfall_message(model, gpu, tensor_parallel, precision,
                                                    settings, expert_replication, plan))
    return plan


def _kv_budget_bytes(settings: EngineMemory, total: int, weights: int, reserve: int) -> int:
    """KV bytes per GPU as the engine computes them (may be negative: does not fit)."""
    fraction = settings.memory_fraction
    if settings.engine == "trtllm":  # a fraction of what weights and activations left free
        free = total - weights - reserve
        return int(fraction * free) if free > 0 else free
    if settings.engine == "sglang":  # the static pool holds weights + KV; activations live outside it
        return min(int(fraction * total) - weights, total - weights - reserve)
    return int(fraction * total) - weights - reserve  # vLLM: a fraction of the total holds everything


def weights_bytes_per_gpu(model: ResolvedModel, precision: Precision, tensor_parallel: int,
                          expert_replication: int = 1) -> int:
    """Bytes of weights each of the replica's ``tensor_parallel`` GPUs holds (what a new replica loads)."""
    return math.ceil(weight_bytes(model, precision, expert_replication).total / tensor_parallel)


def _plan(model: ResolvedModel, gpu: Gpu, tensor_parallel: int, precision: Precision,
          settings: EngineMemory, expert_replication: int) -> MemoryPlan:
    """The plan without the fit check (free memory may be negative)."""
    weights = weights_bytes_per_gpu(model, precision, tensor_parallel, expert_replication)
    reserve = activation_reserve_bytes(model.decoder, tensor_parallel, settings.max_batched_tokens,
                                       settings.max_num_seqs)
    kv_token = kv_bytes_per_token(model.decoder, precision, settings.kv_cache_dtype)
    kv_per_gpu = kv_token * kv_replication(model.decoder, tensor_parallel) / tensor_parallel
    free = _kv_budget_bytes(settings, gpu.memory_bytes, weights, reserve)
    capacity = int(free // (kv_per_gpu or _inflight_bytes_per_token(model.decoder))) if free > 0 else 0
    return MemoryPlan(gpu_bytes=weights + reserve + free, weights_bytes_per_gpu=weights,
                      activation_reserve_bytes_per_gpu=reserve,
                      kv_bytes_per_token=kv_token, kv_capacity_tokens=capacity, device_bytes=gpu.memory_bytes)


def measured_plan(measured: MeasuredMemory, gpu: Gpu, settings: EngineMemory) -> MemoryPlan:
    """The plan of one device holding the model as measured: its weights, its activation peak at the
    engine's token and sequence budgets (plus the fixed reserve on a GPU), the rest as KV of its measured size."""
    fixed = 0 if gpu.kind == "cpu" else FIXED_RESERVE_BYTES
    reserve = int(fixed + settings.max_batched_tokens * measured.activation_bytes_per_token
                  + settings.max_num_seqs * measured.activation_bytes_per_sequence)
    weights = measured.weight_bytes
    free = _kv_budget_bytes(settings, gpu.memory_bytes, weights, reserve)
    kv_token = math.ceil(measured.kv_bytes_per_token)
    capacity = int(free // kv_token) if free > 0 and kv_token else 0
    return MemoryPlan(gpu_bytes=weights + reserve + free, weights_bytes_per_gpu=weights,
                      activation_reserve_bytes_per_gpu=reserve, kv_bytes_per_token=kv_token,
                      kv_capacity_tokens=capacity, device_bytes=gpu.memory_bytes,
                      source=f"measured ({measured.precision})")


def _need_bytes_per_gpu(plan: MemoryPlan, decoder: Decoder, tensor_parallel: int) -> float:
    """Weights + reserve + ``MIN_KV_TOKENS`` of KV, per GPU."""
    kv_per_gpu = plan.kv_bytes_per_token * kv_replication(decoder, tensor_parallel) / tensor_parallel
    return plan.weights_bytes_per_gpu + plan.activation_reserve_bytes_per_gpu + (
        _required_kv_tokens(decoder) * kv_per_gpu)


def _fits(model: ResolvedModel, gpu: Gpu, tensor_parallel: int, precision: Precision,
          settings: EngineMemory, expert_replication: int) -> bool:
    """Whether the configuration would fit."""
    plan = _plan(model, gpu, tensor_parallel, precision, settings, expert_replication)
    return _need_bytes_per_gpu(plan, model.decoder, tensor_parallel) <= plan.gpu_bytes


def _shortfall_message(model: ResolvedModel, gpu: Gpu, tensor_parallel: int, precision: Precision,
                       settings: EngineMemory, expert_replication: int, plan: MemoryPlan) -> str:
    """'needs X GB per GPU, has Y: short by Z GB; try ...'."""
    need = _need_bytes_per_gpu(plan, model.decoder, tensor_parallel)
    weights_gb = plan.weights_bytes_per_gpu / GB
    text = (f"{model.id} {precision} needs {need / GB:.1f} GB per GPU ({weights_gb:.1f} GB of weights, "
            f"{plan.activation_reserve_bytes_per_gpu / GB:.1f} GB activations, KV for "
            f"{_required_kv_tokens(model.decoder)} tokens) on {tensor_parallel}x {gpu.id} "
            f"({gpu.memory_bytes / GB:.1f} GB, {settings.engine} memory fraction {settings.memory_fraction:.0%}: "
            f"{plan.gpu_bytes / GB:.1f} GB usable): short by {(need - plan.gpu_bytes) / GB:.1f} GB")
    hints = _hints(model, gpu, tensor_parallel, precision, settings, expert_replication)
    return f"{text}; {hints}"


def _hints(model: ResolvedModel, gpu: Gpu, tensor_parallel: int, precision: Precision,
           settings: EngineMemory, expert_replication: int) -> str:
    """What would fit: a larger tensor_parallel, a smaller precision, or a bigger GPU."""
    hints = []
    for tp in TP_CHOICES if gpu.kind not in ("edge", "cpu") else ():
        if tp > tensor_parallel and model.decoder.heads % tp == 0 and _fits(
                model, gpu, tp, precision, settings, expert_replication):
            hints.append(f"tensor_parallel >= {tp}")
            break
    for smaller in _smaller_precisions(precision, gpu):
        if _fits(model, gpu, tensor_parallel, smaller, settings, expert_replication):
            hints.append(smaller)
            break
    if not hints:
        return f"no tensor_parallel <= {TP_CHOICES[-1]} or precision fits: use a GPU with more memory"
    return "try " + " or ".join(hints)


def _smaller_precisions(precision: Precision, gpu: Gpu) -> list[Precision]:
    """Precisions with smaller weights than ``precision`` that ``gpu`` can run."""
    order: list[Precision] = ["fp8", "int4"] if gpu.fp8_tflops else ["int4"]
    if precision == "bf16":
        return order
    return ["int4"] if precision == "fp8" else []
