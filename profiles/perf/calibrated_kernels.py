"""Any model on a calibrated device, timed from the device's own kernels (a profile's ``kernels``).

A calibration profile holds GEMM and attention timings by shape
(calibrate/kernels.py) in the form of NVIDIA's measured-kernel tables.
``device_tables`` reads them into ``kernel_tables.KernelTables`` grids, and
``DeviceKernelPerfModel`` composes a model's steps and ViT passes from them
exactly as ``measured.MeasuredKernelPerfModel`` composes a GPU's from NVIDIA's
(it is that class, with the tables passed in), interpolating between the
grid points. So a profile taken on a laptop CPU or an L4 times every model
on that device, shape by shape, with provenance ``calibrated on <device>``.

What the kernels do not time, the same profile measured on its own model
and the kernel composition carries over by its form:
- the rest of a layer (norms, rotary embeddings, KV writes, activations,
  residuals, framework dispatch): the profile's decoder-layer and ViT-block
  measurements minus the kernels' composition of the same shapes, fitted per
  layer as ``const + per_element * tokens * hidden`` (``LayerRest``) and
  applied at the target model's layers and width;
- CPU image preprocessing: the profile's fit over the pixels each resize
  makes, under the target model's own image policy.
Connectors, audio encoders and the per-request overhead stay the fallback's
(the roofline on the device's rates); the calibrated model itself keeps its
component fits (``calibrated.CalibratedPerfModel``), which fall back to this
model for anything they lack. Seconds.
"""

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from profiles.calibration import CalibrationProfile, DeviceKernels
from profiles.errors import ConfigurationError
from profiles.hardware import Gpu
from profiles.perf.base import PrefillChunk
from profiles.perf.calibrated import calibrated_preprocess_s
from profiles.perf.kernel_tables import AttentionRows, KernelTables, _gemm_table
from profiles.perf.measured import MeasuredKernelPerfModel, provenance_label
from profiles.perf.roofline import RooflinePerfModel, StepBreakdown

# The dtype keys a model's precision reads its GEMMs and attention under (measured.GEMM_DTYPE, KV_DTYPE): a
# profile's kernels serve the BF16 path, whatever they ran in (a CPU runs a BF16 model's weights in fp32).
SERVED_DTYPE = "bfloat16"


@dataclass(frozen=True)
class DeviceKernelTables(KernelTables):
    """A profile's kernel timings as the grids ``MeasuredKernelPerfModel`` reads."""

    # 'calibrated on <device>, <date>: float32 kernels' (a default only because the parent's last fields have them)
    source: str = "calibrated"

    @property
    def provenance(self) -> str:
        """Where the timings come from."""
        return self.source

    def __reduce__(self) -> tuple[object, tuple]:  # type: ignore[override]
        """Pickled by value (the NVIDIA tables pickle by name and reread their files)."""
        return DeviceKernelTables, tuple(getattr(self, field.name) for field in fields(self))


def device_tables(profile: CalibrationProfile) -> DeviceKernelTables | None:
    """The profile's kernels as lookup grids; None when it has none."""
    kernels = profile.kernels
    if kernels is None or not kernels.of("gemm"):
        return None
    gemm = kernels.of("gemm")
    m, n, k = (np.array([t.shape[axis] for t in gemm]) for axis in ("m", "n", "k"))
    table = _gemm_table(m, n, k, np.array([t.seconds for t in gemm]))
    context, generation = _rows(kernels, "context_attention"), _rows(kernels, "generation_attention")
    device_id = profile.device.device_id or profile.device.name
    return DeviceKernelTables(
        system=device_id, framework="vllm", version=profile.created[:10],
        gemm={SERVED_DTYPE: table},
        context={SERVED_DTYPE: context} if context is not None else {},
        generation={SERVED_DTYPE: generation} if generation is not None else {},
        encoder=_rows(kernels, "encoder_attention"), allreduce={}, moe=None,
        source=f"{profile.provenance}: {kernels.dtype} kernels")


def _rows(kernels: DeviceKernels, kind: str) -> AttentionRows | None:
    """The attention timings of ``kind`` as table rows (None when none were timed)."""
    timings = kernels.of(kind)
    if not timings:
        return None
    column = {key: np.array([t.shape[key] for t in timings]) for key in ("batch", "length", "heads", "kv_heads",
                                                                         "head_dim")}
    return AttentionRows(column["batch"], column["length"], column["heads"], column["kv_heads"], column["head_dim"],
                         np.array([t.seconds for t in timings]))


class LayerRest(NamedTuple):
    """Seconds per layer the kernels do not time: ``const_s + s_per_element * tokens * width``."""

    const_s: float
    s_per_element: float
    points: int
    mape_pct: float  # of the composed layer (kernels + this) against the measured one, over ``points`` shapes

    def at(self, elements: float) -> float:
        """The rest of one layer over ``elements`` = tokens x width activations."""
        return self.const_s + self.s_per_element * elements


class Rest(NamedTuple):
    """The per-layer rest of decoder layers and of ViT blocks (None: not measured, roofline estimate kept)."""

    decoder: LayerRest | None
    vision: LayerRest | None


class DeviceKernelPerfModel(MeasuredKernelPerfModel):
    """``MeasuredKernelPerfModel`` on a profile's kernels, plus the measured rest of a layer and preprocessing."""

    def __init__(self, tables: DeviceKernelTables, fallback: RooflinePerfModel, profile: CalibrationProfile,
                 rest: Rest | None) -> None:
        super().__init__(tables, fallback)
        self._profile = profile
        self._rest = rest or Rest(None, None)
        if profile.fit("preprocess") is not None and fallback.model.image_policy is not None:
            self._fallback_parts = [part for part in self._fallback_parts if part != "CPU preprocessing"]
            self._provenance = provenance_label(tables, self._fallback_parts)

    @property
    def rest(self) -> Rest:
        """The measured rest of a layer this model adds to the kernels."""
        return self._rest

    def step_breakdown(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int,
                       decode_kv_tokens: int) -> StepBreakdown:
        """The kernels' step, its overhead plus every layer's measured rest (never below zero)."""
        step = super().step_breakdown(prefill, decode_seqs, decode_kv_tokens)
        rest = self._rest.decoder
        tokens = sum(new for new, _cached in prefill) + decode_seqs
        if rest is None or tokens <= 0:
            return step
        decoder = self._fallback.model.decoder
        added = decoder.layers * rest.at(tokens * decoder.hidden)
        return step._replace(overhead_s=max(0.0, step.overhead_s + added))

    def encoder_s(self, patches: int, sequences: int) -> float:
        """The kernels' ViT pass plus every block's measured rest."""
        total = super().encoder_s(patches, sequences)
        rest, vision = self._rest.vision, self._fallback.model.vision
        if rest is None or vision is None or patches <= 0 or self._vision is None:
            return total
        return max(0.0, total + vision.layers * rest.at(patches * vision.hidden))

    def preprocess_s(self, images: int, megapixels: float, text_tokens: int) -> float:
        """The profile's measured image pipeline under this model's image policy."""
        return calibrated_preprocess_s(self._profile, self._fallback.model, self._fallback, images, megapixels,
                                       text_tokens)


def fit_rest(profile: CalibrationProfile, tables: DeviceKernelTables, roofline: RooflinePerfModel) -> Rest:
    """The rest of a layer: the profile's measured layers minus the kernels' composition of the same shapes.

    ``roofline`` is the profile's own model on its device. Decoder layers of a
    dense model and blocks of a ViT without windows (whose one measured block
    is one composed block); an MoE decoder or a windowed ViT keeps the roofline's estimate.
    """
    bare = DeviceKernelPerfModel(tables, roofline, profile, None)
    model = profile.model
    decoder, vision = model.decoder, model.vision
    decoder_points: list[tuple[float, float, float]] = []  # (elements, measured s, composed kernels s)
    vision_points: list[tuple[float, float, float]] = []
    for measurement in profile.measurements:
        shape = measurement.shape
        if measurement.component in ("decoder_prefill", "decoder_decode") and decoder.moe is None:
            if measurement.component == "decoder_prefill":
                rows, step = shape["tokens"], bare.step_breakdown(((shape["tokens"], shape["context"]),), 0, 0)
            else:
                batch = rows = shape["batch"]
                step = bare.step_breakdown((), batch, batch * (shape["kv_per_seq"] + 1))
            composed = (step.total_s - step.lm_head_s) / decoder.layers
            decoder_points.append((rows * decoder.hidden, measurement.seconds, composed))
        elif (measurement.component == "vision_block" and vision is not None and vision.window_patches is None
              and bare._vision is not None):
            patches = shape["sequences"] * shape["seq_len"]
            composed = (bare.encoder_s(patches, shape["sequences"]) - roofline.connector_s(patches)) / vision.layers
            vision_points.append((patches * vision.hidden, measurement.seconds, composed))
    return Rest(_line(decoder_points), _line(vision_points))


def _line(points: list[tuple[float, float, float]]) -> LayerRest | None:
    """Least-squares ``const + slope * elements`` through measured minus composed; None under 3 points.

    Weighted by 1 / measured so each shape counts by its relative error, as the held-out errors are read.
    """
    if len(points) < 3:
        return None
    elements, measured, composed = (np.array(column, dtype=float) for column in zip(*points, strict=True))
    weight = 1.0 / measured
    design = np.column_stack([np.ones_like(elements), elements]) * weight[:, None]
    (const_s, slope), *_ = np.linalg.lstsq(design, (measured - composed) * weight, rcond=None)
    predicted = np.maximum(0.0, composed + const_s + slope * elements)
    mape = float(np.mean(np.abs(predicted - measured) / measured) * 100)
    return LayerRest(float(const_s), float(slope), len(points), mape)


def device_kernel_model(profile: CalibrationProfile, roofline: RooflinePerfModel,
                        device: Gpu) -> DeviceKernelPerfModel | None:
    """The profile's kernels timing ``roofline``'s model on ``device``; None when the profile has no kernels.

    The rest of a layer is fitted on the profile's own model on the same
    device; when that model cannot be set up there (it does not fit under
    these settings), the kernels run with the roofline's estimate of the rest.
    """
    from profiles.perf import roofline_model  # the package imports this module lazily

    tables = device_tables(profile)
    if tables is None:
        return None
    try:
        own = roofline_model(profile.model, device)
    except ConfigurationError:
        rest = None
    else:
        rest = fit_rest(profile, tables, own)
    return DeviceKernelPerfModel(tables, roofline, profile, rest)
