"""The performance model fitted from measurements on a real device (a calibration profile).

Each measured component's time is the profile's non-negative fit over the
features of profiles/perf/calibrated_features.py, multiplied by the layer
count for layered components. Whatever the profile did not measure (an audio
encoder, a component of another kind) and the memory plan are delegated to
the ``fallback`` model, normally the roofline. Seconds throughout.
"""

import math

from profiles.calibration import HOST_CPU_ID, CalibrationProfile, ComponentFit
from profiles.hardware import Gpu
from profiles.models import ResolvedModel
from profiles.params import vision_attention_groups
from profiles.perf import efficiency as eff
from profiles.perf.base import (
    MemoryPlan,
    PerfModel,
    PrefillChunk,
    StepModel,
    causal_prefill_pairs,
    prefill_kv_read_tokens,
    prefill_tokens,
)
from profiles.perf.calibrated_features import (
    Features,
    audio_block_features,
    audio_shape,
    component_features,
    connector_features,
    decoder_layer_features,
    image_size_for,
    lm_head_features,
    preprocess_features,
    vision_block_features,
)

PRECISION_BYTES = {"fp32": 4, "bf16": 2}


def host_cpu(profile: CalibrationProfile) -> Gpu | None:
    """The host CPU a CPU profile measured, as a device a stage can name (``cpu``); None for a GPU
    profile, or one written before the device memory was recorded.

    Its memory is the host's RAM. Its rates are the best the profile achieved
    (GEMM FLOP/s over the decoder and ViT shapes, weight bytes/s over batch-1
    decode), scaled up by the roofline's efficiency factors so that the
    roofline, which serves whatever the profile did not measure, runs at the
    measured rates. It has no price (a stage on it sets ``usd_per_gpu_hour``
    or is on-device) and no power reading.
    """
    device = profile.device
    if device.kind != "cpu" or not device.memory_total_bytes:
        return None
    model, element_bytes = profile.model, PRECISION_BYTES.get(profile.precision, 4)
    flops_s, bytes_s = 0.0, 0.0
    for measurement in profile.measurements:
        if measurement.seconds <= 0 or measurement.component == "preprocess":
            continue
        features = component_features(model, measurement.component, measurement.shape)
        if measurement.component in ("decoder_prefill", "vision_block"):
            flops_s = max(flops_s, features["gemm_flops"] / measurement.seconds)
        if measurement.component == "decoder_decode" and measurement.shape["batch"] == 1:
            bytes_s = max(bytes_s, features["weight_elems"] * element_bytes / measurement.seconds)
    if flops_s <= 0 or bytes_s <= 0:
        return None
    bandwidth_gbs = bytes_s / 1e9 / eff.MEMORY_EFFICIENCY
    return Gpu(id=HOST_CPU_ID, name=device.name, kind="cpu", bf16_tflops=flops_s / 1e12 / eff.GEMM_EFFICIENCY,
               memory_gb=device.memory_total_bytes / 1e9, bandwidth_gbs=bandwidth_gbs,
               pcie_gbs=bandwidth_gbs,  # data moves between processes through the same RAM
               tdp_w=None, price=None,
               source=f"{profile.provenance}: RAM from the host, rates the best the profile achieved")


def calibrated_preprocess_s(profile: CalibrationProfile, model: ResolvedModel, fallback: PerfModel,  # noqa: PLR0913
                            images: int, megapixels: float, text_tokens: int) -> float:
    """CPU preprocessing of one request for ``model``: the profile's measured image pipeline (decode,
    resize, tile, normalise) over the resizes ``model``'s own image policy makes, tokenisation from
    ``fallback``; all from ``fallback`` when the profile did not measure preprocessing or the model
    takes no images. The pipeline's cost features are model-agnostic, so any model on the device uses it."""
    fit = profile.fit("preprocess")
    if fit is None or model.image_policy is None or model.vision is None:
        return fallback.preprocess_s(images, megapixels, text_tokens)
    text_s = fallback.preprocess_s(0, 0.0, text_tokens)
    if images <= 0:
        return text_s
    width, height = image_size_for(megapixels / images)
    features = preprocess_features(model, width, height, images)
    features["input_mp"] = megapixels
    return fit.predict_s(features) + text_s


class CalibratedPerfModel(StepModel):
    """PerfModel answering from ``profile``'s fits, ``fallback`` for anything unmeasured."""

    def __init__(self, profile: CalibrationProfile, fallback: PerfModel) -> None:
        self._profile = profile
        self._fallback = fallback
        self._model = profile.model

    @property
    def profile(self) -> CalibrationProfile:
        """The calibration profile the numbers come from."""
        return self._profile

    @property
    def provenance(self) -> str:
        """'calibrated on <device>, <date>', and where memory comes from when the profile measured it."""
        memory = self._profile.memory
        if memory is None:
            return self._profile.provenance
        return f"{self._profile.provenance}; memory measured ({memory.precision}: weights, activations, KV)"

    @property
    def memory(self) -> MemoryPlan:
        """The fallback's plan: counted, or sized from the profile's measured memory (perf_model passes it)."""
        return self._fallback.memory

    def preprocess_s(self, images: int, megapixels: float, text_tokens: int) -> float:
        """Measured image pipeline (decode, resize, tile, normalise); tokenisation from the fallback."""
        return calibrated_preprocess_s(self._profile, self._model, self._fallback, images, megapixels, text_tokens)

    def encoder_s(self, patches: int, sequences: int) -> float:
        """Vision blocks times the layer count, plus the connector."""
        vision, connector = self._model.vision, self._model.connector
        block_fit = self._profile.fit("vision_block")
        connector_fit = self._profile.fit("connector")
        if vision is None or block_fit is None or (connector is not None and connector_fit is None):
            return self._fallback.encoder_s(patches, sequences)
        if patches <= 0:
            return 0.0
        count = max(1, sequences)
        seq_len = math.ceil(patches / count)
        total = sum(group.layers * block_fit.predict_s(vision_block_features(vision, group.sequences, group.seq_len))
                    for group in vision_attention_groups(vision, patches, sequences))
        if connector is not None and connector_fit is not None:
            features = connector_features(connector, vision, self._model.decoder.hidden, count, seq_len)
            total += connector_fit.predict_s(features)
        return total

    def audio_encoder_s(self, audio_s: float) -> float:
        """Audio blocks over 30 s windows times the layer count."""
        audio, fit = self._model.audio, self._profile.fit("audio_block")
        if audio is None or fit is None:
            return self._fallback.audio_encoder_s(audio_s)
        if audio_s <= 0:
            return 0.0
        sequences, seq_len = audio_shape(audio, audio_s)
        return audio.layers * fit.predict_s(audio_block_features(audio, sequences, seq_len))

    def iteration_s(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int, decode_kv_tokens: int) -> float:
        """One continuous-batching step.

        A step with prefill work is one wide GEMM pass: the prefill fit over
        all rows (chunks + decode tokens) and every sequence's own attention;
        a decode-only step uses the decode fit. Every sequence in the step
        samples one token (LM head rows).
        """
        fits = self._decoder_fits(bool(prefill))
        if fits is None:
            return self._fallback.iteration_s(prefill, decode_seqs, decode_kv_tokens)
        layer_fit, head_fit = fits
        new_tokens = prefill_tokens(prefill)
        if new_tokens <= 0 and decode_seqs <= 0:
            return 0.0
        rows = new_tokens + decode_seqs
        pairs = causal_prefill_pairs(prefill) + decode_kv_tokens
        kv_read = prefill_kv_read_tokens(prefill) + decode_kv_tokens
        layers_s = self._layers_s(layer_fit, rows, pairs, kv_read)
        samplers = decode_seqs + len(prefill)
        return layers_s + head_fit.predict_s(lm_head_features(self._model.decoder, samplers))

    def _decoder_fits(self, has_prefill: bool) -> tuple[ComponentFit, ComponentFit] | None:
        """(layer fit for this kind of step, LM-head fit), or None when either was not measured."""
        layer_fit = self._profile.fit("decoder_prefill" if has_prefill else "decoder_decode")
        head_fit = self._profile.fit("lm_head")
        if layer_fit is None or head_fit is None:
            return None
        return layer_fit, head_fit

    def _layers_s(self, fit: ComponentFit, rows: int, pairs: float, kv_read: int) -> float:
        """All decoder layers: MoE layers and the leading dense layers of an MoE model."""
        decoder = self._model.decoder
        dense_layers = decoder.moe.dense_layers if decoder.moe is not None else 0

        def layer_s(dense_ffn: bool) -> float:
            features: Features = decoder_layer_features(decoder, rows, pairs, kv_read, dense_ffn)
            return fit.predict_s(features)

        total = (decoder.layers - dense_layers) * layer_s(False)
        if dense_layers:
            total += dense_layers * layer_s(True)
        return total
