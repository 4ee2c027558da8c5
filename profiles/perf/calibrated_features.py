"""Cost features of each calibrated component: the quantities a measured time is linear in.

A calibrated time is ``sum_i coefficient_i * feature_i`` seconds, per layer for
layered components (vision/audio blocks, decoder layers). Both calibrate/fit.py
(to fit the coefficients) and profiles/perf/calibrated.py (to predict) call
``component_features``, so the two can never disagree on the form.

Features, all plain counts:
- ``const``: 1 per call (kernel launches, framework overhead);
- ``gemm_flops``: FLOPs of the weight matrix multiplies (2 per multiply-add); per-token
  element-wise work (norms, activations) is proportional to it and folded in;
- ``attn_flops``: FLOPs of QK^T and AV (4 * width * query-key pairs);
- ``weight_elems``: weight elements read (varies with the experts an MoE layer touches);
  with ``gemm_flops`` it forms the roofline term (see profiles.calibration.ComponentFit);
- ``rows``: rows of the weight GEMMs (tokens); few rows run as matrix-vector products;
- ``kv_elems``: KV-cache elements read by attention;
- ``images``, ``input_mp``, ``resample_mp``, ``output_mp``: CPU preprocessing per
  image, per decoded megapixel, per megapixel of resampling work and per
  megapixel normalised.
"""

import math
from typing import NamedTuple

from profiles.components import AudioEncoder, Connector, Decoder, VisionEncoder
from profiles.models import ResolvedModel
from profiles.params import audio_attention_groups, causal_pairs, connector_params, vit_layer_params
from profiles.tokens import NativeResolution, closest_grid, image_tokens, smart_resize

COMPONENTS = ("vision_block", "connector", "audio_block", "decoder_prefill", "decoder_decode",
              "lm_head", "preprocess")

# Aspect ratio assumed for an image known only by its megapixels (the common camera/screen 4:3).
ASSUMED_ASPECT = 4 / 3
Features = dict[str, float]


def encoder_block_features(hidden: int, layer_params: int, sequences: int, seq_len: int) -> Features:
    """One bidirectional transformer block over ``sequences`` sequences of ``seq_len`` tokens."""
    tokens = sequences * seq_len
    return {
        "const": 1.0,
        "gemm_flops": 2.0 * layer_params * tokens,
        "attn_flops": 4.0 * hidden * seq_len * seq_len * sequences,
        "weight_elems": float(layer_params),
    }


def vision_block_features(encoder: VisionEncoder, sequences: int, seq_len: int) -> Features:
    """One ViT block of ``encoder``."""
    return encoder_block_features(encoder.hidden, vit_layer_params(encoder), sequences, seq_len)


def audio_block_features(encoder: AudioEncoder, sequences: int, seq_len: int) -> Features:
    """One block of a Whisper-style audio encoder (GELU MLP)."""
    layer_params = 4 * encoder.hidden**2 + 2 * encoder.hidden * encoder.intermediate
    return encoder_block_features(encoder.hidden, layer_params, sequences, seq_len)


def audio_shape(encoder: AudioEncoder, audio_s: float) -> tuple[int, int]:
    """(sequences, seq_len) of ``audio_s`` seconds: blocks of the encoder's ``attention_window_s``."""
    (group,) = audio_attention_groups(encoder, audio_s)
    return group.sequences, group.seq_len


def connector_features(connector: Connector, vision: VisionEncoder, decoder_hidden: int,
                       sequences: int, seq_len: int) -> Features:
    """The connector over ``sequences`` tiles of ``seq_len`` patches (dims as in profiles.params)."""
    patches = sequences * seq_len
    params = connector_params(connector, vision.hidden, decoder_hidden)
    if connector.kind != "qformer":
        return {"const": 1.0, "gemm_flops": 2.0 * params * patches / connector.merge**2,
                "attn_flops": 0.0, "weight_elems": float(params)}
    hidden = connector.qformer_hidden or 0
    queries = (connector.queries or 0) * sequences
    cross_layers = (connector.qformer_layers or 0) // 2
    kv_projection = 2.0 * 2 * hidden * vision.hidden * patches * cross_layers
    self_pairs = (connector.queries or 0) * queries * (connector.qformer_layers or 0)
    cross_pairs = queries * seq_len * cross_layers
    return {"const": 1.0, "gemm_flops": 2.0 * params * queries + kv_projection,
            "attn_flops": 4.0 * hidden * (self_pairs + cross_pairs), "weight_elems": float(params)}


def _ffn_elems(decoder: Decoder, dense_ffn: bool, new_tokens: int,
               experts_available: int | None) -> tuple[float, float]:
    """(weight elements each token multiplies, weight elements read) of one layer's FFN.

    An MoE layer reads the experts its ``new_tokens * top_k`` uniform routing
    draws touch: E * (1 - (1 - k/E)^n) in expectation.
    """
    gated = 3 if decoder.mlp == "swiglu" else 2
    if decoder.moe is None or dense_ffn:
        elems = gated * decoder.hidden * decoder.intermediate
        return elems, elems
    moe = decoder.moe
    experts = experts_available or moe.experts
    expert = gated * decoder.hidden * moe.expert_intermediate
    always = moe.shared_experts * gated * decoder.hidden * moe.shared_intermediate + decoder.hidden * experts
    touched = experts * (1.0 - (1.0 - moe.top_k / experts) ** new_tokens)
    return always + moe.top_k * expert, always + touched * expert


def decoder_layer_features(decoder: Decoder, new_tokens: int, pairs: float, kv_read_tokens: int,
                           dense_ffn: bool = False, experts_available: int | None = None) -> Features:
    """One decoder layer: ``new_tokens`` rows, ``pairs`` causal query-key pairs, ``kv_read_tokens`` read.

    ``dense_ffn`` marks the leading dense layers of an MoE decoder;
    ``experts_available`` the experts built when calibrating (fewer than the
    model's when memory is short), so fit and prediction count the same reads.
    """
    attention = 2 * decoder.hidden * decoder.head_dim * (decoder.heads + decoder.kv_heads)
    ffn_active, ffn_read = _ffn_elems(decoder, dense_ffn, new_tokens, experts_available)
    return {
        "const": 1.0,
        "rows": float(new_tokens),
        "gemm_flops": 2.0 * new_tokens * (attention + ffn_active),
        "attn_flops": 4.0 * decoder.heads * decoder.head_dim * pairs,
        "weight_elems": attention + ffn_read,
        "kv_elems": 2.0 * decoder.kv_heads * decoder.head_dim * kv_read_tokens,
    }


def prefill_layer_features(decoder: Decoder, tokens: int, context: int, dense_ffn: bool = False,
                           experts_available: int | None = None) -> Features:
    """One layer prefilling ``tokens`` of one sequence after ``context`` cached tokens."""
    return decoder_layer_features(decoder, tokens, causal_pairs(tokens, context), context + tokens,
                                  dense_ffn, experts_available)


def decode_layer_features(decoder: Decoder, batch: int, kv_tokens: int, dense_ffn: bool = False,
                          experts_available: int | None = None) -> Features:
    """One layer decoding one token for each of ``batch`` sequences holding ``kv_tokens`` in total."""
    return decoder_layer_features(decoder, batch, float(kv_tokens), kv_tokens, dense_ffn, experts_available)


def lm_head_features(decoder: Decoder, rows: int) -> Features:
    """Final norm + output projection for ``rows`` positions (one per sequence that samples)."""
    weights = decoder.hidden * decoder.vocab
    return {"const": 1.0, "rows": float(rows), "gemm_flops": 2.0 * rows * weights, "weight_elems": float(weights)}


class Resize(NamedTuple):
    """One resize of the decoded image to ``width`` x ``height`` px, then cut into ``tiles`` of ``tile_px``."""

    width: int
    height: int
    tile_px: int
    tiles: int


def preprocess_resizes(model: ResolvedModel, width_px: int, height_px: int) -> list[Resize]:
    """The resizes the model's image policy makes of one image (calibrate/preprocess.py runs them).

    Native resolution: one ``smart_resize``. Otherwise the views of
    ``image_tokens``: the tile grid (InternVL ``closest_grid``) when the image
    is split, and the whole image at tile size (the global view or the only one).
    """
    policy, vision = model.image_policy, model.vision
    if policy is None or vision is None:
        return []
    if isinstance(policy, NativeResolution):
        side = policy.px_per_token_side
        height, width = smart_resize(height_px, width_px, side, policy.min_pixels, policy.max_pixels)
        return [Resize(width, height, 0, 1)]
    views = image_tokens(policy, width_px, height_px, vision.patch_px)
    tile_px = math.isqrt(views.encoder_patches // views.encoder_sequences) * vision.patch_px
    resizes = [Resize(tile_px, tile_px, tile_px, 1)]
    local = views.encoder_sequences - 1
    if local > 0:
        cols, rows = closest_grid(width_px, height_px, local, local, tile_px)
        resizes.insert(0, Resize(cols * tile_px, rows * tile_px, tile_px, cols * rows))
    return resizes


def resample_mp(width_px: int, height_px: int, resize: Resize) -> float:
    """Work of a separable resample, megapixels: each pass costs output length x max(in, out) support.

    An identity resize is free (Pillow returns a copy).
    """
    if (resize.width, resize.height) == (width_px, height_px):
        return 0.0
    horizontal = height_px * max(width_px, resize.width)
    vertical = resize.width * max(height_px, resize.height)
    return (horizontal + vertical) / 1e6


def preprocess_features(model: ResolvedModel, width_px: int, height_px: int, images: int) -> Features:
    """CPU preprocessing of ``images`` images of ``width_px`` x ``height_px``.

    ``input_mp`` is decoded, ``resample_mp`` the resizes' work, ``output_mp``
    the pixels normalised (what the vision encoder sees).
    """
    resizes = preprocess_resizes(model, width_px, height_px)
    output_mp = sum(r.width * r.height for r in resizes) / 1e6
    resample = sum(resample_mp(width_px, height_px, r) for r in resizes)
    return {"images": float(images), "input_mp": images * width_px * height_px / 1e6,
            "resample_mp": images * resample, "output_mp": images * output_mp}


def image_size_for(megapixels: float) -> tuple[int, int]:
    """(width, height) px of a 4:3 image of ``megapixels`` (all a caller knows of it)."""
    height = max(1, round(math.sqrt(megapixels * 1e6 / ASSUMED_ASPECT)))
    return max(1, round(height * ASSUMED_ASPECT)), height


def component_features(model: ResolvedModel, component: str, shape: dict[str, int]) -> Features:
    """Features of one measured ``shape`` of ``component`` (the keys calibrate/sweep.py writes)."""
    decoder = model.decoder
    if component == "vision_block" and model.vision is not None:
        return vision_block_features(model.vision, shape["sequences"], shape["seq_len"])
    if component == "connector" and model.connector is not None and model.vision is not None:
        return connector_features(model.connector, model.vision, decoder.hidden,
                                  shape["sequences"], shape["seq_len"])
    if component == "audio_block" and model.audio is not None:
        return audio_block_features(model.audio, shape["sequences"], shape["seq_len"])
    if component == "decoder_prefill":
        return prefill_layer_features(decoder, shape["tokens"], shape["context"],
                                      experts_available=shape.get("experts"))
    if component == "decoder_decode":
        return decode_layer_features(decoder, shape["batch"], shape["batch"] * shape["kv_per_seq"],
                                     experts_available=shape.get("experts"))
    if component == "lm_head":
        return lm_head_features(decoder, shape["rows"])
    if component == "preprocess":
        return preprocess_features(model, shape["width"], shape["height"], 1)
    raise ValueError(f"component {component!r} does not apply to model {model.id!r}")
