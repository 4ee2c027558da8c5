"""Step times composed from kernel timings measured on real GPUs (NVIDIA aiconfigurator-core).

A continuous-batching step is composed as AIConfigurator composes one (its
``sdk/models/llama.py``): per decoder layer the QKV, output, gate/up and down
GEMMs at m = every token in the step, attention per prefilling sequence
(context attention) and for the decode batch (generation attention), two
all-reduces under tensor parallelism; then the LM head at m = sequences that
sample. Each kernel's time is read from ``profiles.perf.kernel_tables`` with
interpolation, FP8 weights from the tables of their checkpoint's scaling
(``weight_dtype``, ``static_fp8_curve``: aiconfigurator's fp8_block, fp8,
fp8_static); all lookup grids of a model are built once at construction, so
a step is a few bisections in pure Python.

A vision encoder is composed the same way: each ViT block's GEMMs at m = all
patches, ViT attention per group of blocks (windows or whole tiles).

What the tables do not measure comes from the roofline (``fallback``) for that
part only, and the provenance names it: routed MoE experts of an unmeasured
configuration or with a hot expert, the vision
connector, audio encoders, CPU preprocessing, int4 weight GEMMs (no W4A16
table), a ViT where no ViT attention was measured. Element-wise kernels
(norms, rotary, activations, residuals) and the per-step CPU overhead are
roofline estimates in every source (no table times them). Seconds.
"""

import math
from typing import NamedTuple

import numpy as np

from profiles.components import Decoder
from profiles.models import Fp8Scaling, Precision
from profiles.params import vision_attention_groups
from profiles.perf import efficiency as eff
from profiles.perf.base import MemoryPlan, PrefillChunk, StepModel
from profiles.perf.kernel_tables import (
    AttentionRows,
    GemmTable,
    Grid2D,
    KernelTables,
    QuantizeTable,
    attention_grid,
    interpolate,
    moe_curve,
    rising,
)
from profiles.perf.roofline import (
    RooflinePerfModel,
    StepBreakdown,
    allreduce_s,
    effective_hot_factor,
)

KV_DTYPE: dict[Precision, str] = {"bf16": "bfloat16", "fp8": "fp8", "int4": "bfloat16"}


def weight_dtype(precision: Precision, fp8_scaling: Fp8Scaling) -> str | None:
    """The tables' dtype of the weight GEMMs and MoE experts at ``precision`` (None: int4, no W4A16 table).

    aiconfigurator's mapping from a checkpoint (``sdk/models/helpers.py``,
    ``_infer_quant_modes_from_raw_config``): block-scaled FP8 reads the
    ``fp8_block`` GEMM and MoE tables; per-tensor FP8 the ``fp8`` ones (a static
    checkpoint then drops the dynamic-scale work, see ``static_fp8_curve``).
    """
    if precision == "fp8":
        return "fp8_block" if fp8_scaling == "block" else "fp8"
    return "bfloat16" if precision == "bf16" else None


# Kernels of a layer the tables time (4 GEMMs and attention) out of the roofline's
# KERNELS_PER_LAYER; the others (norms, rotary/KV write, activation, residual add)
# keep the roofline's per-kernel floor.
MEASURED_KERNELS_PER_LAYER = 5


class VisionTables(NamedTuple):
    """A ViT's measured lookups: all blocks' GEMMs over m = patches, and one block's attention grid."""

    gemm_ms: list[float]
    gemm_s: list[float]
    attention: Grid2D  # (sequences, patches per sequence) -> seconds of one block


def provenance_label(tables: KernelTables, fallback_parts: list[str]) -> str:
    """'measured kernels (h100_sxm, vLLM 0.24.0)' plus the parts the roofline serves."""
    label = tables.provenance
    return f"{label} + roofline for {', '.join(fallback_parts)}" if fallback_parts else label


class GemmShape(NamedTuple):
    """One weight GEMM (y = x W, W is k x n) and whether its input comes out of the kernel before
    already in FP8 (the attention output into the output projection, the activation into the down
    projection: aiconfigurator's ``low_precision_input``), so a static FP8 GEMM skips quantising it."""

    n: int
    k: int
    quantized_input: bool = False


def layer_gemm_shapes(decoder: Decoder, tensor_parallel: int, dense_ffn: bool) -> list[GemmShape]:
    """One decoder layer's weight GEMMs on one of ``tensor_parallel`` GPUs.

    QKV is one fused GEMM (KV heads replicated when tp > kv_heads, as vLLM
    does); a SwiGLU FFN fuses gate and up. An MoE layer keeps its router and
    shared experts here; its routed experts are timed separately.
    """
    tp, hidden, head_dim = tensor_parallel, decoder.hidden, decoder.head_dim
    kv_heads = max(1, decoder.kv_heads // tp)
    shapes = [GemmShape(head_dim * (decoder.heads // tp + 2 * kv_heads), hidden),
              GemmShape(hidden, decoder.heads * head_dim // tp, quantized_input=True)]
    gated = 2 if decoder.mlp == "swiglu" else 1

    def ffn(width: int) -> list[GemmShape]:
        return [GemmShape(gated * width // tp, hidden), GemmShape(hidden, width // tp, quantized_input=True)]

    moe = decoder.moe
    if moe is None or dense_ffn:
        return shapes + ffn(decoder.intermediate)
    shapes.append(GemmShape(moe.experts, hidden))  # router, replicated on every GPU
    if moe.shared_experts:
        shapes += ffn(moe.shared_experts * moe.shared_intermediate)
    return shapes


def static_fp8_curve(dynamic: np.ndarray, ms: list[float], shape: GemmShape, compute_scale: QuantizeTable,
                     scale_matrix: QuantizeTable, peak_flops: float, peak_bytes_s: float) -> np.ndarray:
    """A per-tensor FP8 GEMM with static activation scales, from the table's dynamic one, over ``ms``.

    The collectors time per-tensor FP8 GEMMs with dynamic activation scales
    (TensorRT-LLM's FP8 linear without an ``input_scale`` computes the scale
    every call: aiconfigurator's collector/trtllm/collect_gemm.py). A static
    checkpoint does not: aiconfigurator's ``fp8_static`` (operators/gemm.rs)
    subtracts the ``computescale`` table, and the ``scale_matrix`` table too
    where the input arrives in FP8 already, and floors the result at the
    GEMM's speed of light (datasheet peak FP8 math and memory bandwidth).
    """
    saved = compute_scale.curve(shape.k, ms)
    if shape.quantized_input:
        saved = saved + scale_matrix.curve(shape.k, ms)
    m = np.asarray(ms)
    n, k = float(shape.n), float(shape.k)
    floor = np.maximum(2.0 * m * n * k / peak_flops, (m * n + m * k + n * k) / peak_bytes_s)  # 1 byte per FP8 value
    return np.maximum(dynamic - saved, floor)


class MeasuredKernelPerfModel(StepModel):
    """``PerfModel`` from measured kernels; ``fallback`` (the roofline) for what they do not cover.

    Build it with ``profiles.perf.perf_model``.
    """

    def __init__(self, tables: KernelTables, fallback: RooflinePerfModel) -> None:
        self._tables = tables
        self._fallback = fallback
        model, precision, tp = fallback.model, fallback.precision, fallback.tensor_parallel
        decoder = model.decoder
        self._decoder = decoder
        self._fallback_parts: list[str] = []
        if model.vision is not None or model.audio is not None:
            self._fallback_parts.append("CPU preprocessing")
        if model.audio is not None:
            self._fallback_parts.append("audio encoder")
        dtype = weight_dtype(precision, model.fp8_scaling)
        self._experts = self._experts_curve(dtype)

        # Weight GEMMs of every layer as one curve over the table's m grid: a sum of
        # piecewise-linear curves on one grid is the piecewise-linear curve of the sum.
        bf16 = tables.gemm.get("bfloat16")
        weights = tables.gemm.get(dtype or "")
        self._gemm_ms: list[float] = []
        self._gemm_s: list[float] = []
        if weights is not None:
            static = self._static_fp8(precision, model.fp8_scaling)
            dense_layers = decoder.moe.dense_layers if decoder.moe else 0
            total = np.zeros(len(weights.ms))
            for layers, dense_ffn in ((decoder.layers - dense_layers, decoder.moe is None), (dense_layers, True)):
                for shape in layer_gemm_shapes(decoder, tp, dense_ffn) if layers else ():
                    curve = weights.curve(shape.n, shape.k)
                    if static is not None:
                        curve = static_fp8_curve(curve, weights.ms, shape, *static)
                    total += layers * curve
            self._gemm_ms, self._gemm_s = weights.ms, rising(total).tolist()
        else:
            self._fallback_parts.append(f"{precision} weight GEMMs")
        # LM head: BF16 in every engine, m = sequences sampling a token.
        self._head_ms: list[float] = []
        self._head_s: list[float] = []
        if bf16 is not None and decoder.causal:
            self._head_ms, self._head_s = bf16.ms, rising(bf16.curve(decoder.vocab // tp, decoder.hidden)).tolist()
        elif decoder.causal:
            self._fallback_parts.append("LM head")

        self._context, self._generation = self._attention_grids(KV_DTYPE[precision])
        self._vision = self._vision_tables(bf16) if model.vision is not None else None
        self._allreduce = tables.allreduce.get(tp) if tp > 1 else None
        if tp > 1 and self._allreduce is None:
            self._fallback_parts.append(f"all-reduce over {tp} GPUs")
        self._allreduces = 2 * decoder.layers
        self._elementwise_s_per_token = fallback.cost.activation_bytes_per_token / fallback.rate.memory_bytes_s
        self._overhead_s = (eff.STEP_OVERHEAD_S + decoder.layers * (eff.KERNELS_PER_LAYER - MEASURED_KERNELS_PER_LAYER)
                            * eff.KERNEL_LATENCY_S)
        self._all_measured = (bool(self._gemm_s) and (bool(self._head_s) or not decoder.causal)
                              and self._context is not None and (tp == 1 or self._allreduce is not None))
        self._provenance = provenance_label(tables, self._fallback_parts)

    def _static_fp8(self, precision: Precision, fp8_scaling: Fp8Scaling
                    ) -> tuple[QuantizeTable, QuantizeTable, float, float] | None:
        """What ``static_fp8_curve`` needs for a static per-tensor FP8 checkpoint, None otherwise
        (or when the framework's quantisation tables are missing: the dynamic time stands)."""
        compute_scale, scale_matrix = self._tables.compute_scale, self._tables.scale_matrix
        gpu = self._fallback.gpu
        if (precision != "fp8" or fp8_scaling != "per_tensor_static" or compute_scale is None
                or scale_matrix is None or gpu.fp8_tflops is None):
            return None
        return compute_scale, scale_matrix, gpu.fp8_tflops * 1e12, gpu.bandwidth_gbs * 1e9

    def _experts_curve(self, dtype: str | None) -> tuple[list[float], list[float]] | None:
        """All MoE layers' routed experts over the step's tokens, or None (roofline) when not measured.

        The tables route tokens evenly (``balanced``); a hot expert
        (``hot_expert_factor`` above what replication absorbs) is the roofline's.
        """
        moe, fallback = self._decoder.moe, self._fallback
        if moe is None:
            return None
        hot = effective_hot_factor(fallback.hot_expert_factor, fallback.expert_replication) > 1.0
        curve = None if hot or dtype is None else moe_curve(
            self._tables, dtype, self._decoder.hidden, moe.expert_intermediate, moe.top_k, moe.experts,
            fallback.tensor_parallel)
        if curve is None:
            self._fallback_parts.append("routed experts (hot expert)" if hot else "routed experts")
            return None
        layers = self._decoder.layers - moe.dense_layers
        return curve[0], [layers * seconds for seconds in curve[1]]

    def _attention_grids(self, kv_dtype: str) -> tuple[Grid2D | None, Grid2D | None]:
        """(per-sequence context attention over all layers, decode attention over all layers) grids."""
        decoder, tp = self._decoder, self._fallback.tensor_parallel
        context, generation = self._tables.context.get(kv_dtype), self._tables.generation.get(kv_dtype)
        if not decoder.causal or context is None or generation is None:
            self._fallback_parts.append("attention")
            return None, None
        heads, kv_heads = decoder.heads // tp, max(1, decoder.kv_heads // tp)

        def grid(rows: AttentionRows, by_kv: bool, per_sequence: bool) -> Grid2D:
            mask, scale = rows.closest_heads(heads, kv_heads, decoder.head_dim, by_kv)
            return attention_grid(rows, mask, scale * decoder.layers, per_sequence)

        return grid(context, False, True), grid(generation, True, False)

    def _vision_tables(self, bf16: GemmTable | None) -> VisionTables | None:
        """The ViT's measured GEMMs and attention (BF16), or None (roofline) when not measured here."""
        vision, tp = self._fallback.model.vision, self._fallback.tensor_parallel
        assert vision is not None
        attention = self._tables.encoder
        if bf16 is None or attention is None or vision.heads % tp:
            self._fallback_parts.append("vision encoder")
            return None
        if self._fallback.model.connector is not None:
            self._fallback_parts.append("vision connector")
        gated = 2 if vision.mlp == "swiglu" else 1
        hidden, width = vision.hidden, vision.intermediate
        shapes = [(3 * hidden // tp, hidden), (hidden, hidden // tp), (gated * width // tp, hidden), (hidden, width // tp)]
        gemm = sum((bf16.curve(n, k) for n, k in shapes), np.zeros(len(bf16.ms)))
        heads = vision.heads // tp
        mask, scale = attention.closest_heads(heads, heads, hidden // vision.heads, by_kv=False)
        return VisionTables(bf16.ms, (vision.layers * rising(gemm)).tolist(),
                            attention_grid(attention, mask, scale, per_sequence=False))

    @property
    def tables(self) -> KernelTables:
        """The measured tables this model reads."""
        return self._tables

    @property
    def provenance(self) -> str:
        """'measured kernels (<system>, <framework> <version>)' [+ roofline for <parts>]."""
        return self._provenance

    @property
    def memory(self) -> MemoryPlan:
        """Weights and KV capacity are counted, not timed: the roofline's plan."""
        return self._fallback.memory

    def preprocess_s(self, images: int, megapixels: float, text_tokens: int) -> float:
        """CPU work: the roofline's estimate (no GPU kernel to measure)."""
        return self._fallback.preprocess_s(images, megapixels, text_tokens)

    def encoder_s(self, patches: int, sequences: int) -> float:
        """Vision encoder over ``patches`` patches in ``sequences`` tiles: measured GEMMs and attention.

        Every block's GEMMs run at m = all patches; attention per group of
        blocks (a windowed ViT attends within windows in most blocks) at a
        batch of its sequences; the connector, element-wise kernels and
        all-reduces as in the roofline, all-reduces measured where the tables have them.
        """
        tables, fallback = self._vision, self._fallback
        vision = fallback.model.vision
        if tables is None or vision is None or patches <= 0:
            return fallback.encoder_s(patches, sequences)
        attention = tables.attention
        total = interpolate(tables.gemm_ms, tables.gemm_s, float(patches))
        for group in vision_attention_groups(vision, patches, sequences):
            total += group.layers * interpolate(attention.columns, attention.row(group.sequences),
                                                float(group.seq_len), 2.0)
        total += fallback.connector_s(patches)
        total += vision.layers * (eff.ACTIVATION_TENSORS_PER_LAYER * vision.hidden * eff.ACTIVATION_BYTES * patches
                                  / fallback.rate.memory_bytes_s
                                  + (eff.KERNELS_PER_LAYER - MEASURED_KERNELS_PER_LAYER) * eff.KERNEL_LATENCY_S)
        if fallback.tensor_parallel > 1:
            reduce_elements = float(patches * vision.hidden)
            total += 2 * vision.layers * (interpolate(*self._allreduce, reduce_elements) if self._allreduce
                                          else allreduce_s(reduce_elements * eff.ACTIVATION_BYTES, 1,
                                                           fallback.tensor_parallel, fallback.rate))
        return total

    def audio_encoder_s(self, audio_s: float) -> float:
        """Audio encoder: the roofline's estimate."""
        return self._fallback.audio_encoder_s(audio_s)

    def iteration_s(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int, decode_kv_tokens: int) -> float:
        """One continuous-batching step (see ``PerfModel.iteration_s``)."""
        return self.step_breakdown(prefill, decode_seqs, decode_kv_tokens).total_s

    def step_breakdown(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int,
                       decode_kv_tokens: int) -> StepBreakdown:
        """Seconds of one step by kernel group, measured where the tables cover the group.

        ``overhead_s`` holds what no table times: the per-step CPU work, the
        floor of the unmeasured small kernels and the element-wise kernels'
        activation traffic (roofline estimates).
        """
        tokens = sum(new for new, _cached in prefill) + decode_seqs
        if tokens <= 0:
            return StepBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        fallback = self._fallback
        # The roofline's groups, for the parts not measured (also raises for a classifier asked to decode).
        rest = None if self._all_measured else fallback.step_breakdown(prefill, decode_seqs, decode_kv_tokens)
        context, generation, allreduce = self._context, self._generation, self._allreduce
        return StepBreakdown(
            gemm_s=_lookup(self._gemm_ms, self._gemm_s, tokens) if self._gemm_s or rest is None else rest.gemm_s,
            experts_s=(interpolate(*self._experts, float(tokens)) if self._experts is not None
                       else fallback.experts_s(tokens) if self._decoder.moe is not None else 0.0),
            lm_head_s=(_lookup(self._head_ms, self._head_s, decode_seqs + len(prefill))
                       if self._head_s or rest is None else rest.lm_head_s),
            attention_s=(self._attention_s(context, generation, prefill, decode_seqs, decode_kv_tokens)
                         if context is not None and generation is not None or rest is None else rest.attention_s),
            allreduce_s=(self._allreduces * interpolate(allreduce[0], allreduce[1], float(tokens * self._decoder.hidden))
                         if allreduce is not None else rest.allreduce_s if rest is not None else 0.0),
            overhead_s=self._overhead_s + tokens * self._elementwise_s_per_token,
        )

    @staticmethod
    def _attention_s(context: Grid2D | None, generation: Grid2D | None, prefill: tuple[PrefillChunk, ...], decode_seqs: int,
                     decode_kv_tokens: int) -> float:
        """Context attention per prefilling sequence plus generation attention for the decode batch.

        The step's prefill chunks run as one varlen kernel: each costs the
        per-sequence time measured at a batch of as many sequences. A chunk of
        ``new`` tokens after ``cached`` ones costs what a whole prompt with as
        many causal (query, key) pairs costs (new x cached + new (new + 1) / 2):
        the same work, so a chunk never gets cheaper as its cache grows.
        """
        total = 0.0
        if context is None or generation is None:
            return total
        if prefill:
            columns, per_sequence = context.columns, context.row(len(prefill))
            for new, cached in prefill:
                pairs = new * cached + new * (new + 1) / 2
                equivalent_prompt = (math.sqrt(8 * pairs + 1) - 1) / 2  # L with L (L + 1) / 2 = pairs
                total += interpolate(columns, per_sequence, equivalent_prompt, 2.0)
        if decode_seqs:
            total += interpolate(generation.columns, generation.row(decode_seqs), decode_kv_tokens / decode_seqs)
        return total


def _lookup(ms: list[float], seconds: list[float], m: int) -> float:
    """A GEMM curve at ``m`` rows: linear between measured m; beyond the largest, proportional to m
    (the kernel is compute-bound there, so time grows with the rows)."""
    return interpolate(ms, seconds, float(m), 1.0)
