"""Roofline performance model: datasheet FLOPS and bandwidth with efficiency factors.

Each kernel group of an engine step (weight GEMMs, routed experts, LM head,
attention) takes max(FLOPs / achievable FLOPS, bytes / achievable bandwidth);
the groups run one after another, so their times add, plus tensor-parallel
all-reduces and fixed per-step and per-kernel overheads. Efficiency factors
live in ``profiles.perf.efficiency``. All times are seconds, sizes bytes,
rates per second and per GPU (every count below is already divided over the
``tensor_parallel`` GPUs of the replica).
"""

from dataclasses import dataclass
from typing import NamedTuple

from profiles.components import Decoder
from profiles.errors import ConfigurationError
from profiles.hardware import Gpu
from profiles.models import CpuPreprocess, Precision, ResolvedModel
from profiles.params import (
    EncoderFlops,
    attention_flops_per_pair,
    audio_flops,
    audio_params,
    audio_tokens,
    connector_flops,
    connector_params,
    decoder_breakdown,
    vision_flops,
    vision_params,
)
from profiles.perf import efficiency as eff
from profiles.perf.base import (
    MemoryPlan,
    PrefillChunk,
    StepModel,
    causal_prefill_pairs,
    prefill_kv_read_tokens,
)
from profiles.perf.memory import BF16_BYTES, WEIGHT_BYTES, kv_replication

PROVENANCE = "roofline (estimated)"
# Used when a model has no CpuPreprocess of its own: the fast (torchvision)
# image-processor path measured at 6.6-18.2 ms per typical image on 8 CPU
# threads (FACTS.md section 1, cs348k calibration point); tokenisation 0.5 ms/1k.
DEFAULT_PREPROCESS = CpuPreprocess(
    ms_per_image=4.0, ms_per_megapixel=12.0, ms_per_1k_text_tokens=0.5,
    source="default estimate from FACTS.md section 1 (fast image-processor path)",
)


class Rates(NamedTuple):
    """Achievable per-GPU rates: FLOP/s for each kernel kind, bytes/s for memory and link."""

    gemm_flops_s: float  # decoder weight GEMMs at the serving precision
    bf16_gemm_flops_s: float  # LM head and encoders (kept BF16)
    attention_flops_s: float
    memory_bytes_s: float
    link_bytes_s: float  # one direction, all-reduce bus bandwidth
    hop_latency_s: float


class DecoderCost(NamedTuple):
    """Per-GPU counts of one decoder, evaluated per step by ``RooflinePerfModel``."""

    dense_params: float  # attention projections, dense FFN, shared experts, router
    dense_weight_bytes: float
    lm_head_params: float
    expert_params: float  # one routed expert over all MoE layers (0 for dense models)
    expert_weight_bytes: float
    experts: int
    top_k: int
    attention_flops_per_pair: float
    kv_bytes_per_token: float  # per GPU, with KV-head replication when tp > kv_heads
    activation_bytes_per_token: float
    allreduces_per_step: int
    allreduce_bytes_per_token: float
    fixed_step_s: float
    causal: bool  # False: a classifier that never decodes


class StepBreakdown(NamedTuple):
    """Seconds of one engine step by kernel group."""

    gemm_s: float
    experts_s: float
    lm_head_s: float
    attention_s: float
    allreduce_s: float
    overhead_s: float

    @property
    def total_s(self) -> float:
        """The step time: groups run one after another."""
        return sum(self)


def rates(gpu: Gpu, precision: Precision) -> Rates:
    """Achievable rates of ``gpu`` at ``precision``; ConfigurationError if it lacks FP8."""
    bf16 = gpu.bf16_tflops * 1e12
    if precision == "fp8":
        if gpu.fp8_tflops is None:
            raise ConfigurationError(f"precision fp8 needs FP8 tensor cores, which {gpu.id} "
                                     f"({gpu.name}) does not have: use bf16 or int4")
        gemm = gpu.fp8_tflops * 1e12 * eff.FP8_GEMM_EFFICIENCY
    elif precision == "int4":
        gemm = bf16 * eff.GEMM_EFFICIENCY * eff.INT4_DEQUANT_COMPUTE_FACTOR
    else:
        gemm = bf16 * eff.GEMM_EFFICIENCY
    link_gbs = gpu.interconnect_gbs / 2  # datasheets give bidirectional GB/s
    return Rates(
        gemm_flops_s=gemm,
        bf16_gemm_flops_s=bf16 * eff.GEMM_EFFICIENCY,
        attention_flops_s=bf16 * eff.ATTENTION_EFFICIENCY,
        memory_bytes_s=gpu.bandwidth_gbs * 1e9 * eff.MEMORY_EFFICIENCY,
        link_bytes_s=link_gbs * 1e9 * eff.INTERCONNECT_EFFICIENCY,
        hop_latency_s=eff.NVLINK_HOP_LATENCY_S if gpu.nvlink_gbs else eff.PCIE_HOP_LATENCY_S,
    )


def decoder_cost(decoder: Decoder, tensor_parallel: int, precision: Precision,
                 kv_bytes_per_token: int) -> DecoderCost:
    """Per-GPU FLOP and byte coefficients of ``decoder`` split over ``tensor_parallel`` GPUs."""
    tp = tensor_parallel
    parts = decoder_breakdown(decoder)
    dense = parts.attention + parts.dense_mlp + parts.shared_experts
    experts = decoder.moe.experts if decoder.moe else 1
    expert = parts.routed_experts / experts if decoder.moe else 0.0
    weight_bytes = WEIGHT_BYTES[precision]
    return DecoderCost(
        dense_params=dense / tp,
        dense_weight_bytes=(dense + parts.norms) * weight_bytes / tp,
        lm_head_params=parts.lm_head_matmul / tp if decoder.causal else 0.0,
        expert_params=expert / tp,
        expert_weight_bytes=expert * weight_bytes / tp,
        experts=experts,
        top_k=decoder.moe.top_k if decoder.moe else 0,
        attention_flops_per_pair=attention_flops_per_pair(decoder) / tp,
        kv_bytes_per_token=kv_bytes_per_token * kv_replication(decoder, tp) / tp,
        activation_bytes_per_token=(eff.ACTIVATION_TENSORS_PER_LAYER * decoder.layers
                                    * decoder.hidden * eff.ACTIVATION_BYTES),
        allreduces_per_step=2 * decoder.layers if tp > 1 else 0,
        allreduce_bytes_per_token=decoder.hidden * eff.ACTIVATION_BYTES,
        fixed_step_s=eff.STEP_OVERHEAD_S + _kernel_floor_s(decoder.layers),
        causal=decoder.causal,
    )


def _kernel_floor_s(layers: int) -> float:
    """Launch-to-tail latency of the small kernels of ``layers`` transformer layers."""
    return layers * eff.KERNELS_PER_LAYER * eff.KERNEL_LATENCY_S


def roofline_s(flops: float, flops_s: float, nbytes: float, bytes_s: float) -> float:
    """A kernel's time: bound by compute or by memory, whichever is slower."""
    return max(flops / flops_s, nbytes / bytes_s)


def allreduce_s(nbytes: float, count: int, tensor_parallel: int, rate: Rates) -> float:
    """``count`` ring all-reduces of ``nbytes`` each: 2(tp-1)/tp of the data per GPU plus 2(tp-1) hops."""
    if tensor_parallel <= 1 or count == 0:
        return 0.0
    hops = 2 * (tensor_parallel - 1)
    one = hops / tensor_parallel * nbytes / rate.link_bytes_s + hops * rate.hop_latency_s
    return count * one


def expected_experts_touched(experts: int, top_k: int, tokens: int) -> float:
    """Distinct experts a step's ``tokens`` route to, each picking ``top_k`` of ``experts`` uniformly.

    E * (1 - (1 - k/E)^tokens): 2 of 8 at 1 token, 7.2 of 8 at 8 tokens (Mixtral).
    """
    if experts == 0 or tokens <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - top_k / experts) ** tokens)


def effective_hot_factor(hot_expert_factor: float, expert_replication: int) -> float:
    """Load of the busiest expert copy relative to the mean: max(1, f / r).

    Replicating the hot expert r times splits its tokens evenly over r copies;
    it cannot fall below the mean load the other experts carry. (1 + (f-1)/r
    would only split the excess, underrating what replication achieves when
    the copies sit on separate GPUs as in expert-parallel load balancers.)
    """
    return max(1.0, hot_expert_factor / expert_replication)


@dataclass(frozen=True)
class RooflinePerfModel(StepModel):
    """``PerfModel`` from datasheet FLOPS/bandwidth; build it with ``profiles.perf.perf_model``."""

    model: ResolvedModel
    gpu: Gpu
    tensor_parallel: int
    precision: Precision
    hot_expert_factor: float
    expert_replication: int
    memory_plan: MemoryPlan
    cost: DecoderCost
    rate: Rates
    why: str = ""  # why no measured source serves this configuration, when one was expected to

    @property
    def provenance(self) -> str:
        """'roofline (estimated)', with the reason when measured kernels were expected but unavailable."""
        return f"{PROVENANCE[:-1]}: {self.why})" if self.why else PROVENANCE

    @property
    def memory(self) -> MemoryPlan:
        """Weights, activation reserve and KV capacity of the replica."""
        return self.memory_plan

    def preprocess_s(self, images: int, megapixels: float, text_tokens: int) -> float:
        """CPU work of one request before the GPU: front-end overhead, image decode/resize/normalise
        of ``images`` totalling ``megapixels``, and tokenisation of ``text_tokens``."""
        spec = self.model.preprocess or DEFAULT_PREPROCESS
        ms = images * spec.ms_per_image + megapixels * spec.ms_per_megapixel
        ms += text_tokens / 1000 * spec.ms_per_1k_text_tokens
        return eff.REQUEST_OVERHEAD_S + ms / 1000

    def encoder_s(self, patches: int, sequences: int) -> float:
        """Vision encoder + connector over ``patches`` patches in ``sequences`` tiles, on the replica's GPUs."""
        if patches <= 0:
            return 0.0
        vision = self.model.vision
        if vision is None:
            raise ConfigurationError(f"{self.model.id} has no vision encoder but was given {patches} patches")
        flops = vision_flops(vision, patches, sequences)
        link = connector_flops(self.model.connector, vision.hidden, self.model.decoder.hidden, patches)
        params = vision_params(vision) + connector_params(self.model.connector, vision.hidden,
                                                          self.model.decoder.hidden)
        return self._encoder_pass_s(EncoderFlops(flops.dense + link, flops.attention), params,
                                    vision.layers, vision.hidden, patches)

    def connector_s(self, patches: int) -> float:
        """The vision-to-LLM connector alone over ``patches`` patches (BF16, split over the TP GPUs)."""
        vision = self.model.vision
        if vision is None or patches <= 0:
            return 0.0
        tp, decoder_hidden = self.tensor_parallel, self.model.decoder.hidden
        flops = connector_flops(self.model.connector, vision.hidden, decoder_hidden, patches)
        params = connector_params(self.model.connector, vision.hidden, decoder_hidden)
        return roofline_s(flops / tp, self.rate.bf16_gemm_flops_s, params * BF16_BYTES / tp, self.rate.memory_bytes_s)

    def audio_encoder_s(self, audio_s: float) -> float:
        """Audio encoder over ``audio_s`` seconds of audio."""
        if audio_s <= 0:
            return 0.0
        audio = self.model.audio
        if audio is None:
            raise ConfigurationError(f"{self.model.id} has no audio encoder but was given {audio_s:g} s of audio")
        return self._encoder_pass_s(audio_flops(audio, audio_s), audio_params(audio), audio.layers,
                                    audio.hidden, audio_tokens(audio, audio_s))

    def _encoder_pass_s(self, flops: EncoderFlops, params: int, layers: int, hidden: int,
                        tokens: int) -> float:
        """A BF16 encoder pass split over the TP GPUs (vLLM shards ViTs like the decoder)."""
        tp = self.tensor_parallel
        activations = eff.ACTIVATION_TENSORS_PER_LAYER * layers * hidden * eff.ACTIVATION_BYTES * tokens
        gemm = roofline_s(flops.dense / tp, self.rate.bf16_gemm_flops_s,
                          params * BF16_BYTES / tp + activations, self.rate.memory_bytes_s)
        attention = flops.attention / tp / self.rate.attention_flops_s
        reduce = allreduce_s(hidden * eff.ACTIVATION_BYTES * tokens, 2 * layers, tp, self.rate)
        return gemm + attention + reduce + _kernel_floor_s(layers)

    def iteration_s(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int, decode_kv_tokens: int) -> float:
        """One continuous-batching step (see ``PerfModel.iteration_s``)."""
        return self.step_breakdown(prefill, decode_seqs, decode_kv_tokens).total_s

    def step_breakdown(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int,
                       decode_kv_tokens: int) -> StepBreakdown:
        """Seconds of one step by kernel group.

        Each prefill chunk attends causally within its own sequence, after
        that sequence's cached tokens; the LM head runs for every decode
        sequence plus the last token of each prefilling chunk.
        """
        prefill_tokens = sum(new for new, _cached in prefill)
        if decode_seqs and not self.cost.causal:
            raise ConfigurationError(f"{self.model.id} is a classifier (causal: false): it prefills, never decodes")
        tokens = prefill_tokens + decode_seqs
        if tokens <= 0:
            return StepBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        cost, rate = self.cost, self.rate
        logits = decode_seqs + len(prefill)
        return StepBreakdown(
            gemm_s=roofline_s(2 * cost.dense_params * tokens, rate.gemm_flops_s,
                              cost.dense_weight_bytes + cost.activation_bytes_per_token * tokens,
                              rate.memory_bytes_s),
            experts_s=self.experts_s(tokens),
            lm_head_s=roofline_s(2 * cost.lm_head_params * logits, rate.bf16_gemm_flops_s,
                                 cost.lm_head_params * BF16_BYTES, rate.memory_bytes_s),
            attention_s=self._attention_s(prefill, decode_seqs, decode_kv_tokens),
            allreduce_s=allreduce_s(cost.allreduce_bytes_per_token * tokens, cost.allreduces_per_step,
                                    self.tensor_parallel, rate),
            overhead_s=cost.fixed_step_s,
        )

    def experts_s(self, tokens: int) -> float:
        """Routed experts: compute slowed by the hot expert, weights of the experts touched."""
        cost = self.cost
        if cost.top_k == 0:
            return 0.0
        hot = effective_hot_factor(self.hot_expert_factor, self.expert_replication)
        flops = 2 * cost.expert_params * cost.top_k * tokens * hot
        touched = expected_experts_touched(cost.experts, cost.top_k, tokens)
        return roofline_s(flops, self.rate.gemm_flops_s, touched * cost.expert_weight_bytes,
                          self.rate.memory_bytes_s)

    def _attention_s(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int, decode_kv_tokens: int) -> float:
        """Attention scores: FLOPs quadratic in each sequence's context, bytes of the KV read and written."""
        cost = self.cost
        if cost.causal:
            pairs = causal_prefill_pairs(prefill) + decode_kv_tokens
        else:
            pairs = float(sum(new * new for new, _cached in prefill))  # bidirectional, within each sequence
        kv_tokens = prefill_kv_read_tokens(prefill) + decode_kv_tokens + decode_seqs
        return roofline_s(pairs * cost.attention_flops_per_pair, self.rate.attention_flops_s,
                          kv_tokens * cost.kv_bytes_per_token, self.rate.memory_bytes_s)
