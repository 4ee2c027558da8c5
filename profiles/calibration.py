"""A calibration profile: latencies measured on a real device, the fit, and where they came from.

calibrate/ writes it (``vlmplan calibrate``); profiles/perf/calibrated.py reads
it and prefers its numbers over the roofline. Times are seconds (per layer for
layered components, see profiles/perf/calibrated_features.py), memory bytes,
power watts, clocks MHz. A reading that could not be taken is ``None`` with
the reason in a ``status`` of ``"unavailable: <reason>"``; nothing is faked.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, NonNegativeFloat, ValidationError, model_validator

from profiles.base import StrictModel
from profiles.catalog import Catalog, load_catalog
from profiles.errors import CalibrationError
from profiles.files import atomic_write_text, line_of, read_json
from profiles.models import ResolvedModel

Component = Literal["vision_block", "connector", "audio_block", "decoder_prefill", "decoder_decode",
                    "lm_head", "preprocess"]

PROFILE_SCHEMA_VERSION: Literal[1] = 1
# Fit quality a profile must reach to be trusted without a mark: mean absolute error over held-out
# shapes (overall and per component), and the composed whole-model pass against its prediction.
HOLDOUT_LIMIT_PCT = 10.0
COMPOSED_LIMIT_PCT = 15.0
# Device id of the host CPU a CPU profile was measured on: a stage names it as its GPU or device.
HOST_CPU_ID = "cpu"


class NvmlReading(StrictModel):
    """What NVML said about the GPU at one moment; fields are None when it could not be read."""

    status: str = Field(description="'ok' or 'unavailable: <reason>'")
    name: str | None = None
    driver: str | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_w: float | None = None
    sm_clock_mhz: int | None = None
    memory_clock_mhz: int | None = None


class DeviceInfo(StrictModel):
    """The device measured and the software stack that measured it."""

    kind: Literal["cuda", "cpu"]
    name: str = Field(description="GPU name (NVML/torch) or CPU model")
    gpu_id: str | None = Field(description="Catalog GPU id the name matched; None for a CPU or no match")
    driver: str = Field(description="NVIDIA driver version or 'unavailable: <reason>'")
    cuda: str = Field(description="CUDA version torch was built with or 'unavailable: <reason>'")
    torch: str
    threads: int = Field(description="torch intra-op threads used")
    timing_clock: Literal["cuda_events", "wall", "thread"] = Field(
        description="CUDA events; CPU wall clock; or the calling thread's CPU time (single-threaded runs)")
    nvml_before: NvmlReading
    nvml_after: NvmlReading
    memory_total_bytes: int | None = Field(
        None, description="The device's memory: host RAM for a CPU (MemTotal), the GPU's for CUDA; "
                          "None in profiles written before it was recorded")

    @property
    def device_id(self) -> str | None:
        """The id a stage names this device by: the catalog GPU id, ``cpu`` for the host CPU, None when
        a GPU's name matched no catalog GPU."""
        return HOST_CPU_ID if self.kind == "cpu" else self.gpu_id

    @property
    def label(self) -> str:
        """'CPU AMD EPYC 7B13 (cpu)', 'NVIDIA L4 (l4)' or 'NVIDIA X (no catalog GPU id)'."""
        return f"{self.name} ({self.device_id or 'no catalog GPU id'})"


class Measurement(StrictModel):
    """One timed shape of one component: the median of ``samples_s`` on CUDA, the fastest on a CPU.

    A CPU shared with other processes only ever slows a sample down, so there
    the fastest sample estimates the work itself (calibrate/timing.py).
    """

    component: Component
    shape: dict[str, int]
    seconds: NonNegativeFloat = Field(
        description="Seconds per call (CUDA: median sample, CPU: fastest), per layer for layered components")
    samples_s: tuple[NonNegativeFloat, ...]
    layers_timed: int = Field(1, ge=1, description="Distinct layers run back to back per sample")
    peak_memory_bytes: int | None = Field(description="torch.cuda.max_memory_allocated; None on CPU")
    holdout: bool = Field(description="Kept out of the fit to measure its error")

    @property
    def key(self) -> str:
        """Identity of the shape, used to skip it when a run resumes."""
        return measurement_key(self.component, self.shape)


def measurement_key(component: str, shape: dict[str, int]) -> str:
    """``component:k=v,...`` with keys sorted."""
    return component + ":" + ",".join(f"{k}={shape[k]}" for k in sorted(shape))


class ComponentFit(StrictModel):
    """Fitted time of one component: linear terms plus a roofline with a soft knee.

    seconds = sum(linear[f] * feature f) + weights term, where the weights term is
      rows * gemv_s_per_elem * weight_elems            when rows < gemv_below_rows
      softmax_n(weight_s_per_elem * weight_elems, s_per_gemm_flop * gemm_flops)  otherwise
    BLAS libraries run a GEMM of very few rows as one matrix-vector product per
    row (each streams the weights); above that the time is the larger of the
    weight-streaming and the compute time, blended near the knee by
    softmax_n(a, b) = (a^n + b^n)^(1/n), n = ``knee_exponent`` (n = 1 adds
    them, n -> infinity is the hard roofline maximum).
    """

    component: Component
    linear: dict[str, NonNegativeFloat] = Field(description="Seconds per unit of each linear feature")
    weight_s_per_elem: NonNegativeFloat = 0.0
    s_per_gemm_flop: NonNegativeFloat = 0.0
    knee_exponent: float = Field(1.0, ge=1.0)
    gemv_s_per_elem: NonNegativeFloat = 0.0
    gemv_below_rows: int = Field(2, ge=1, description="GEMMs of fewer rows run as matrix-vector products")
    train_points: int
    holdout_points: int
    train_mape_pct: float
    holdout_mape_pct: float | None

    def predict_s(self, features: dict[str, float]) -> float:
        """Seconds for one call with ``features`` (missing features count as 0)."""
        linear = sum(c * features.get(name, 0.0) for name, c in self.linear.items())
        rows = features.get("rows", float("inf"))
        if rows < self.gemv_below_rows:
            return linear + rows * self.gemv_s_per_elem * features.get("weight_elems", 0.0)
        memory_s = self.weight_s_per_elem * features.get("weight_elems", 0.0)
        compute_s = self.s_per_gemm_flop * features.get("gemm_flops", 0.0)
        return linear + soft_max(memory_s, compute_s, self.knee_exponent)


def soft_max(a: float, b: float, exponent: float) -> float:
    """(a^n + b^n)^(1/n) for non-negative a, b, computed without underflow."""
    top = max(a, b)
    if top <= 0.0:
        return 0.0
    return top * ((a / top) ** exponent + (b / top) ** exponent) ** (1.0 / exponent)


class ComposedCheck(StrictModel):
    """A whole-model forward pass timed for real against the fit's prediction."""

    description: str
    measured_s: float
    predicted_s: float
    error_pct: float = Field(description="100 * (predicted - measured) / measured")
    parts_measured_s: dict[str, float]
    parts_predicted_s: dict[str, float]


class MeasuredMemory(StrictModel):
    """Memory of the whole model as loaded and run on the device (calibrate/memory.py says how). Bytes."""

    weight_bytes: int = Field(ge=0, description="Memory the loaded model holds")
    activation_bytes_per_token: NonNegativeFloat = Field(
        description="Activation peak per batched prefill token (slope over prefill lengths)")
    activation_bytes_per_sequence: NonNegativeFloat = Field(
        description="Activation peak per decoding sequence, logits included (slope over batch sizes)")
    kv_bytes_per_token: NonNegativeFloat = Field(description="K and V of one token over every layer")
    method: str = Field(description="What was read: CUDA allocator counters, or the process's resident set")
    precision: str = Field(description="dtype the model was loaded in")


KernelKind = Literal["gemm", "context_attention", "generation_attention", "encoder_attention"]


class KernelTiming(StrictModel):
    """One kernel shape timed on the device, in the form of the measured-kernel tables.

    Shape keys: a GEMM ``m, n, k`` ((m x k) activations times a k x n weight);
    attention ``batch, length, heads, kv_heads, head_dim``, where ``length`` is
    each sequence's prompt (context: causal over it; encoder: bidirectional) or
    the KV tokens each decoding sequence reads (generation). Seconds per call
    for the whole batch (the fastest sample on a CPU, the median on CUDA).
    """

    kind: KernelKind
    shape: dict[str, int]
    seconds: NonNegativeFloat
    samples_s: tuple[NonNegativeFloat, ...]


class DeviceKernels(StrictModel):
    """The device's own kernel timings: what lets one profile time every model on its device."""

    dtype: str = Field(description="torch dtype the kernels ran in (float32 on a CPU, bfloat16 on CUDA)")
    timings: tuple[KernelTiming, ...]

    def of(self, kind: str) -> list[KernelTiming]:
        """The timings of one kind, in file order."""
        return [timing for timing in self.timings if timing.kind == kind]


class CalibrationProfile(StrictModel):
    """Everything one ``vlmplan calibrate`` run measured, fitted and checked."""

    schema_version: Literal[1] = PROFILE_SCHEMA_VERSION
    model_id: str
    model: ResolvedModel
    precision: str = Field(description="dtype the components ran in (bf16, fp32)")
    created: str = Field(description="ISO 8601 UTC time the profile was written")
    quick: bool
    device: DeviceInfo
    measurements: tuple[Measurement, ...]
    fits: tuple[ComponentFit, ...]
    holdout_mape_pct: float | None = Field(description="Mean absolute % error over every held-out shape")
    composed: ComposedCheck | None
    memory: MeasuredMemory | None = Field(None, description="None when the whole model did not fit, or "
                                                            "the device's memory could not be read (see notes)")
    kernels: DeviceKernels | None = Field(
        None, description="GEMM and attention timings by shape: any model on this device is timed from them "
                          "(None in profiles written before they were measured)")
    notes: tuple[str, ...] = ()
    fit_warnings: tuple[str, ...] = Field(
        (), description=f"Where the fit misses its bounds (held-out error > {HOLDOUT_LIMIT_PCT:g}%, composed error > "
                        f"{COMPOSED_LIMIT_PCT:g}%); recomputed from the errors whenever a profile is read")

    @model_validator(mode="after")
    def _mark_poor_fit(self) -> "CalibrationProfile":
        """Set ``fit_warnings`` from the errors themselves, so an edited file cannot hide a poor fit."""
        object.__setattr__(self, "fit_warnings", poor_fit_reasons(self.fits, self.holdout_mape_pct, self.composed))
        return self

    @property
    def provenance(self) -> str:
        """'calibrated on <device>, <date>', and '[POOR FIT: <reasons>]' when the fit misses its bounds."""
        marked = f" [POOR FIT: {'; '.join(self.fit_warnings)}]" if self.fit_warnings else ""
        return f"calibrated on {self.device.name}, {self.created[:10]}{marked}"

    def fit_lines(self) -> list[str]:
        """Held-out error per component and over all, the composed pass, and any poor-fit mark, as text lines."""
        lines = [f"{'component':16s} {'train':>6s} {'held-out':>9s}  mean abs. error % (shapes)"]
        for fit in self.fits:
            held = f"{fit.holdout_mape_pct:.1f}" if fit.holdout_mape_pct is not None else "-"
            lines.append(f"{fit.component:16s} {fit.train_mape_pct:6.1f} {held:>9s}  "
                         f"({fit.train_points} + {fit.holdout_points})")
        overall = f"{self.holdout_mape_pct:.1f}%" if self.holdout_mape_pct is not None else "-"
        lines.append(f"held-out error over all components: {overall} (bound {HOLDOUT_LIMIT_PCT:g}%)")
        if self.composed is None:
            lines.append("composed pass: not run")
        else:
            lines.append(f"composed pass ({self.composed.description}): measured {self.composed.measured_s:.3f} s, "
                         f"predicted {self.composed.predicted_s:.3f} s, error {self.composed.error_pct:+.1f}% "
                         f"(bound {COMPOSED_LIMIT_PCT:g}%)")
        lines += [f"POOR FIT: {reason}" for reason in self.fit_warnings]
        return lines

    @property
    def measured_components(self) -> tuple[str, ...]:
        """Components that have a fit (the rest fall back to the roofline)."""
        return tuple(fit.component for fit in self.fits)

    def fit(self, component: str) -> ComponentFit | None:
        """The fit of ``component``, or None when it was not measured."""
        return next((fit for fit in self.fits if fit.component == component), None)

    def applies_to(self, model_id: str, device_id: str, tensor_parallel: int) -> bool:
        """Whether this profile times ``model_id`` on one device ``device_id`` (a catalog GPU id, or ``cpu``):
        the model it measured, or any model when it holds the device's kernel timings."""
        return self.why_not(model_id, device_id, tensor_parallel) is None

    def why_not(self, model_id: str, device_id: str, tensor_parallel: int) -> str | None:
        """Why this profile cannot time ``model_id`` on ``tensor_parallel`` x ``device_id``; None when it can.

        A profile with kernel timings times any model on its device; one without
        only the model it measured.
        Layers are measured on one device, so a profile says nothing about
        tensor-parallel replicas (their all-reduces and split GEMMs).
        """
        reasons = []
        if model_id != self.model_id and self.kernels is None:
            reasons.append(f"model {model_id}, the profile measured {self.model_id} (and no kernels: "
                           "re-run vlmplan calibrate to time any model on this device)")
        if device_id != self.device.device_id:
            measured = self.device.device_id or f"{self.device.name}, which matched no catalog GPU"
            reasons.append(f"device {device_id}, the profile measured {measured}")
        if tensor_parallel != 1:
            reasons.append(f"{tensor_parallel} GPUs per replica, the profile measured one")
        return "; ".join(reasons) or None

    def coverage(self) -> dict:
        """What the profile covers: model, device, one device per replica, precision, and per component
        the range of every shape key it was fitted on (plain values, for the catalog and its JSON)."""
        components: dict[str, dict[str, list[int]]] = {}
        for measurement in self.measurements:
            ranges = components.setdefault(measurement.component, {})
            for key, value in measurement.shape.items():
                low, high = ranges.get(key, [value, value])
                ranges[key] = [min(low, value), max(high, value)]
        return {"model": self.model_id, "device": self.device.name, "device_id": self.device.device_id,
                "devices_per_replica": 1, "precision": self.precision, "components": components,
                "kernels": self._kernel_coverage(), "kernel_dtype": self.kernels.dtype if self.kernels else None,
                "holdout_mape_pct": self.holdout_mape_pct,
                "composed_error_pct": self.composed.error_pct if self.composed else None}

    def _kernel_coverage(self) -> dict[str, dict[str, list[int]]] | None:
        """Per kernel kind, the range of every shape key timed (None without kernel timings)."""
        if self.kernels is None:
            return None
        kinds = dict.fromkeys(timing.kind for timing in self.kernels.timings)
        return {kind: _ranges(self.kernels.of(kind)) for kind in kinds}


def _ranges(timings: list[KernelTiming]) -> dict[str, list[int]]:
    """[lowest, highest] of every shape key over ``timings``."""
    ranges: dict[str, list[int]] = {}
    for timing in timings:
        for key, value in timing.shape.items():
            low, high = ranges.get(key, [value, value])
            ranges[key] = [min(low, value), max(high, value)]
    return ranges


def poor_fit_reasons(fits: tuple[ComponentFit, ...], holdout_mape_pct: float | None,
                     composed: ComposedCheck | None) -> tuple[str, ...]:
    """Each way the fit misses its bounds, as text (empty when it meets them)."""
    reasons = []
    if holdout_mape_pct is not None and holdout_mape_pct > HOLDOUT_LIMIT_PCT:
        reasons.append(f"held-out error {holdout_mape_pct:.1f}% > {HOLDOUT_LIMIT_PCT:g}%")
    reasons += [f"{fit.component} held-out error {fit.holdout_mape_pct:.1f}% > {HOLDOUT_LIMIT_PCT:g}%"
                for fit in fits if fit.holdout_mape_pct is not None and fit.holdout_mape_pct > HOLDOUT_LIMIT_PCT]
    if composed is not None and abs(composed.error_pct) > COMPOSED_LIMIT_PCT:
        reasons.append(f"composed error {composed.error_pct:+.1f}% > {COMPOSED_LIMIT_PCT:g}%")
    return tuple(reasons)


MAX_PLAUSIBLE_S = 3600.0  # one measured call of a component taking an hour is a broken file, not a GPU


def load_profile(path: Path | str, catalog: Catalog | None = None) -> CalibrationProfile:
    """Read and validate a profile; ``CalibrationError`` as ``file: line N: field: reason``.

    Beyond the schema: every timing is plausible (above 0, at most ``MAX_PLAUSIBLE_S``), and ``model_id``
    is a model of ``catalog`` (default: the bundled one) with the dimensions the measurements were taken on.
    """
    path = Path(path)
    data, text = read_json(path, "calibration profile", CalibrationError)
    try:
        profile = CalibrationProfile.model_validate(data)
    except ValidationError as error:
        raise CalibrationError(_located(error, path, text)) from None
    problem = _implausible(profile) or _wrong_model(profile, catalog)
    if problem is not None:
        loc, reason = problem
        raise CalibrationError(f"{path}: line {line_of(text, loc) or 1}: {'.'.join(map(str, loc))}: {reason}")
    return profile


def _located(error: ValidationError, path: Path, text: str, most: int = 5) -> str:
    """The schema's problems, one line each: ``file: line N: field.path: message`` (the first ``most``)."""
    lines = []
    for problem in error.errors()[:most]:
        loc = problem["loc"]
        lines.append(f"{path}: line {line_of(text, loc) or 1}: {'.'.join(map(str, loc)) or '(top level)'}: "
                     f"{problem['msg']}")
    return "\n".join(lines)


def _implausible(profile: CalibrationProfile) -> tuple[tuple[str | int, ...], str] | None:
    """The first timing no device can have measured: 0 s, or more than ``MAX_PLAUSIBLE_S`` for one call."""
    for index, measurement in enumerate(profile.measurements):
        reason = implausible_timing(measurement)
        if reason is not None:
            return ("measurements", index, "seconds"), reason
    for index, timing in enumerate(profile.kernels.timings if profile.kernels else ()):
        reason = implausible_timing(timing)
        if reason is not None:
            return ("kernels", "timings", index, "seconds"), reason
    for index, fit in enumerate(profile.fits):
        coefficients = [*fit.linear.values(), fit.weight_s_per_elem, fit.s_per_gemm_flop, fit.gemv_s_per_elem]
        if not any(coefficients):
            return ("fits", index), f"the {fit.component} fit predicts 0 s for every shape"
        if max(coefficients) > MAX_PLAUSIBLE_S:
            return ("fits", index), f"the {fit.component} fit has a coefficient of {max(coefficients):g} s per unit"
    return None


def implausible_timing(measurement: Measurement | KernelTiming) -> str | None:
    """Why ``measurement`` cannot have been measured (a time of 0 s, or over ``MAX_PLAUSIBLE_S``), or None."""
    what = measurement.component if isinstance(measurement, Measurement) else measurement.kind
    for seconds in (measurement.seconds, *measurement.samples_s):
        if not 0.0 < seconds <= MAX_PLAUSIBLE_S:
            return (f"{seconds:g} s for one {what} call is not a measurement "
                    f"(expected above 0 and at most {MAX_PLAUSIBLE_S:g} s)")
    return None


def _wrong_model(profile: CalibrationProfile, catalog: Catalog | None) -> tuple[tuple[str, ...], str] | None:
    """Why ``model_id`` is not the model the measurements were taken on, or None when it is."""
    if profile.model.id != profile.model_id:
        return ("model_id",), f"{profile.model_id!r} but the measured model is {profile.model.id!r}"
    models = (catalog or load_catalog()).resolved
    known = models.get(profile.model_id)
    if known is None:
        return ("model_id",), f"unknown model {profile.model_id!r} (not in the catalog)"
    differing = [part for part in ("vision", "connector", "audio", "decoder")
                 if getattr(known, part) != getattr(profile.model, part)]
    if differing:
        return ("model", differing[0]), (f"the measurements were taken on a model whose {differing[0]} differs "
                                         f"from catalog model {profile.model_id!r}")
    return None


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def save_profile(profile: CalibrationProfile, path: Path) -> None:
    """Write ``profile`` as indented JSON, atomically."""
    write_atomically(path, profile.model_dump_json(indent=1) + "\n")
