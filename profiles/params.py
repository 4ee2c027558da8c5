"""Parameter, FLOP and byte counting for model components.

Counts come from the dimensions of the Hugging Face configs (FACTS.md section 3):
parameters are plain counts (not bytes), FLOPs are floating-point operations
(one multiply-add = 2 FLOPs), bytes are bytes. Biases of attention projections
are omitted (FACTS.md: negligible); norms are counted.

Worked checks (FACTS.md, derived): Llama-3-8B 8.03B; Mixtral-8x7B 46.70B total
/ 12.88B active; CLIP ViT-L/14-336 ~303M; Qwen2.5-VL ViT + merger ~676M.
"""

import math
from typing import TYPE_CHECKING, NamedTuple

from profiles.components import AudioEncoder, Connector, Decoder, MoeSpec, VisionEncoder

if TYPE_CHECKING:  # models imports tokens and components; params needs only the type
    from profiles.models import ResolvedModel

# Whisper-style encoders take 128 mel bins (Qwen2.5-Omni, Whisper-large-v3) into
# two kernel-3 convolutions.
AUDIO_MEL_BINS = 128
AUDIO_CONV_KERNEL = 3
# FFN width multiplier of a Q-Former block (BERT-base style, 4x hidden).
QFORMER_FFN_MULT = 4


class DecoderParams(NamedTuple):
    """Parameter counts of a decoder by part; ``total`` and ``active`` sum them."""

    attention: int  # Q, K, V, O over all layers
    dense_mlp: int  # FFN of dense layers (all layers when not MoE)
    routed_experts: int  # all routed experts of all MoE layers
    routed_active: int  # the top_k routed experts a token uses, all MoE layers
    shared_experts: int  # always-on shared experts + routers, all MoE layers
    norms: int
    embedding: int
    lm_head: int  # 0 when tied to the embedding

    @property
    def total(self) -> int:
        """Every stored parameter."""
        return (self.attention + self.dense_mlp + self.routed_experts + self.shared_experts
                + self.norms + self.embedding + self.lm_head)

    @property
    def active(self) -> int:
        """Parameters one token touches (published 'active' counts include embeddings)."""
        return self.total - self.routed_experts + self.routed_active

    @property
    def layer_matmul_active(self) -> int:
        """Weights one token multiplies through in the transformer layers (no embedding, no LM head)."""
        return self.attention + self.dense_mlp + self.routed_active + self.shared_experts

    @property
    def lm_head_matmul(self) -> int:
        """Weights of the output projection (the tied embedding when tied)."""
        return self.lm_head or self.embedding


def _mlp_params(hidden: int, intermediate: int, mlp: str) -> int:
    """A gated (SwiGLU: gate, up, down) or plain (GELU: up, down) feed-forward block."""
    return (3 if mlp == "swiglu" else 2) * hidden * intermediate


def _attention_params(decoder: Decoder) -> int:
    """Q and O of ``heads*head_dim``, K and V of ``kv_heads*head_dim``, one layer."""
    q_o = 2 * decoder.hidden * decoder.heads * decoder.head_dim
    k_v = 2 * decoder.hidden * decoder.kv_heads * decoder.head_dim
    return q_o + k_v


def _moe_layer_parts(decoder: Decoder, moe: MoeSpec) -> tuple[int, int, int]:
    """(all routed, active routed, shared + router) parameters of one MoE layer."""
    expert = _mlp_params(decoder.hidden, moe.expert_intermediate, decoder.mlp)
    shared = moe.shared_experts * _mlp_params(decoder.hidden, moe.shared_intermediate, decoder.mlp)
    router = decoder.hidden * moe.experts
    return moe.experts * expert, moe.top_k * expert, shared + router


def decoder_breakdown(decoder: Decoder) -> DecoderParams:
    """Parameters of ``decoder`` by part, derived from its dimensions (``params_b`` ignored)."""
    layers = decoder.layers
    dense_mlp_one = _mlp_params(decoder.hidden, decoder.intermediate, decoder.mlp)
    routed = routed_active = shared = 0
    dense_layers = layers
    if decoder.moe is not None:
        dense_layers = decoder.moe.dense_layers
        moe_layers = layers - dense_layers
        all_one, active_one, shared_one = _moe_layer_parts(decoder, decoder.moe)
        routed, routed_active, shared = (moe_layers * all_one, moe_layers * active_one,
                                         moe_layers * shared_one)
    embedding = decoder.vocab * decoder.hidden
    return DecoderParams(
        attention=layers * _attention_params(decoder),
        dense_mlp=dense_layers * dense_mlp_one,
        routed_experts=routed,
        routed_active=routed_active,
        shared_experts=shared,
        norms=(2 * layers + 1) * decoder.hidden,
        embedding=embedding,
        lm_head=0 if decoder.tied_embeddings else embedding,
    )


def decoder_params(decoder: Decoder) -> tuple[int, int]:
    """(total, active) parameters; ``total`` is the published ``params_b`` when given.

    When ``params_b`` is given, ``active`` is scaled by the same ratio so the
    two stay consistent (a dense decoder has active == total).
    """
    parts = decoder_breakdown(decoder)
    if decoder.params_b is None:
        return parts.total, parts.active
    total = round(decoder.params_b * 1e9)
    return total, round(parts.active * total / parts.total)


def _vit_layer_params(hidden: int, intermediate: int, mlp: str) -> int:
    """One pre-norm ViT block: attention (4 h^2 + biases), MLP, two LayerNorms."""
    attention = 4 * hidden * hidden + 4 * hidden
    return attention + _mlp_params(hidden, intermediate, mlp) + 4 * hidden


def vision_params(encoder: VisionEncoder) -> int:
    """Parameters of a ViT (no connector); the published ``params_b`` when given."""
    if encoder.params_b is not None:
        return round(encoder.params_b * 1e9)
    blocks = encoder.layers * _vit_layer_params(encoder.hidden, encoder.intermediate, encoder.mlp)
    patch_embed = 3 * encoder.patch_px**2 * encoder.hidden
    positions = (encoder.image_px // encoder.patch_px) ** 2 * encoder.hidden
    return blocks + patch_embed + positions


def audio_params(encoder: AudioEncoder) -> int:
    """Parameters of a Whisper-style audio encoder: two convolutions + transformer blocks."""
    convs = AUDIO_CONV_KERNEL * (AUDIO_MEL_BINS * encoder.hidden + encoder.hidden * encoder.hidden)
    blocks = encoder.layers * _vit_layer_params(encoder.hidden, encoder.intermediate, "gelu")
    return convs + blocks


def connector_params(connector: Connector | None, encoder_hidden: int, decoder_hidden: int) -> int:
    """Parameters of the vision-to-LLM connector.

    MLP connectors are two linear layers (LLaVA ``mlp2x_gelu``, InternVL and
    SmolVLM after pixel shuffle: input ``encoder_hidden * merge^2``). A Q-Former
    has self-attention + FFN per layer, cross-attention every other layer
    (BLIP-2), learned queries and a projection to the LLM width.
    """
    if connector is None:
        return 0
    width_in = encoder_hidden * connector.merge**2
    if connector.kind == "linear":
        return width_in * decoder_hidden
    if connector.kind in ("mlp", "pixel_shuffle_mlp"):
        return width_in * decoder_hidden + decoder_hidden * decoder_hidden
    return _qformer_params(connector, encoder_hidden, decoder_hidden)


def encoder_params(model: "ResolvedModel") -> int:
    """Parameters outside the decoder: vision encoder + connector + audio encoder."""
    total = 0
    if model.vision is not None:
        total += vision_params(model.vision)
        total += connector_params(model.connector, model.vision.hidden, model.decoder.hidden)
    if model.audio is not None:
        total += audio_params(model.audio)
    return total


def _qformer_params(connector: Connector, encoder_hidden: int, decoder_hidden: int) -> int:
    """BLIP-2 Q-Former: BERT-style blocks with cross-attention to the ViT every 2 layers."""
    hidden = connector.qformer_hidden or 0
    layers = connector.qformer_layers or 0
    block = 4 * hidden * hidden + 2 * hidden * hidden * QFORMER_FFN_MULT
    cross = 2 * hidden * hidden + 2 * hidden * encoder_hidden
    queries = (connector.queries or 0) * hidden
    return layers * block + (layers // 2) * cross + queries + hidden * decoder_hidden


# ---------------------------------------------------------------- FLOPs


def attention_flops_per_pair(decoder: Decoder) -> float:
    """FLOPs of QK^T and softmax(.)V for one (query, key) pair over all layers and heads.

    2 FLOPs per head dimension for QK^T and 2 for AV.
    """
    return 4.0 * decoder.layers * decoder.heads * decoder.head_dim


def causal_pairs(new_tokens: int, context_tokens: int) -> float:
    """(query, key) pairs when ``new_tokens`` attend causally after ``context_tokens`` cached ones."""
    return new_tokens * context_tokens + new_tokens * (new_tokens + 1) / 2.0


class EncoderFlops(NamedTuple):
    """FLOPs of an encoder pass split by kernel kind (they reach different fractions of peak)."""

    dense: float  # weight GEMMs: 2 * params * tokens
    attention: float  # QK^T and AV


class AttentionGroup(NamedTuple):
    """``layers`` encoder blocks whose attention runs within ``sequences`` sequences of ``seq_len`` tokens."""

    layers: int
    sequences: int
    seq_len: int


def vision_attention_groups(encoder: VisionEncoder, patches: int, sequences: int) -> tuple[AttentionGroup, ...]:
    """How ``encoder``'s blocks split ``patches`` patches in ``sequences`` tiles/frames for attention.

    Full attention: every block over each tile. A windowed ViT (Qwen2.5-VL:
    112 px windows, 8x8 = 64 patches, in 28 of 32 blocks; FACTS.md section 3)
    attends within windows in all but its ``full_attention_layers`` blocks;
    a tile's partial windows are counted as windows of the mean size.
    """
    count = max(1, sequences)
    seq_len = -(-patches // count)
    window = encoder.window_patches
    if window is None or window >= seq_len or encoder.full_attention_layers >= encoder.layers:
        return (AttentionGroup(encoder.layers, count, seq_len),)
    windows = -(-patches // window)
    windowed = AttentionGroup(encoder.layers - encoder.full_attention_layers, windows, -(-patches // windows))
    if encoder.full_attention_layers == 0:
        return (windowed,)
    return AttentionGroup(encoder.full_attention_layers, count, seq_len), windowed


def audio_attention_groups(encoder: AudioEncoder, audio_s: float) -> tuple[AttentionGroup, ...]:
    """The encoder's blocks over ``audio_s`` seconds: every block attends within ``attention_window_s`` blocks."""
    sequences = max(1, math.ceil(audio_s / encoder.attention_window_s))
    return (AttentionGroup(encoder.layers, sequences, max(1, math.ceil(audio_tokens(encoder, audio_s) / sequences))),)


def grouped_attention_flops(hidden: int, groups: tuple[AttentionGroup, ...]) -> float:
    """QK^T and AV FLOPs of ``groups``: 4 * hidden * seq_len^2 per sequence and block."""
    return sum(4.0 * g.layers * hidden * g.seq_len * g.seq_len * g.sequences for g in groups)


def vit_layer_params(encoder: VisionEncoder) -> int:
    """Parameters of one block of ``encoder``."""
    return _vit_layer_params(encoder.hidden, encoder.intermediate, encoder.mlp)


def vision_flops(encoder: VisionEncoder, patches: int, sequences: int) -> EncoderFlops:
    """FLOPs of a ViT pass over ``patches`` patch tokens in ``sequences`` tiles/frames (windows as the encoder has them)."""
    if patches <= 0:
        return EncoderFlops(0.0, 0.0)
    return EncoderFlops(dense=2.0 * encoder.layers * vit_layer_params(encoder) * patches,
                        attention=grouped_attention_flops(encoder.hidden,
                                                          vision_attention_groups(encoder, patches, sequences)))


def audio_tokens(encoder: AudioEncoder, audio_s: float) -> int:
    """Sequence length inside the audio encoder for ``audio_s`` seconds."""
    return round(audio_s * encoder.encoder_tokens_per_s)


def audio_flops(encoder: AudioEncoder, audio_s: float) -> EncoderFlops:
    """FLOPs of the audio encoder over ``audio_s`` seconds of audio (attention within its windows)."""
    tokens = audio_tokens(encoder, audio_s)
    layer = _vit_layer_params(encoder.hidden, encoder.intermediate, "gelu")
    frames = audio_s * encoder.frames_per_s
    conv = 2.0 * AUDIO_CONV_KERNEL * (AUDIO_MEL_BINS * encoder.hidden * frames
                                      + encoder.hidden * encoder.hidden * tokens)
    return EncoderFlops(dense=conv + 2.0 * encoder.layers * layer * tokens,
                        attention=grouped_attention_flops(encoder.hidden, audio_attention_groups(encoder, audio_s)))


def connector_flops(connector: Connector | None, encoder_hidden: int, decoder_hidden: int,
                    patches: int) -> float:
    """FLOPs of the connector: 2 * params * tokens it processes.

    MLP connectors see ``patches / merge^2`` merged tokens; a Q-Former runs
    its queries through its blocks and cross-attends to all patches.
    """
    if connector is None or patches <= 0:
        return 0.0
    params = connector_params(connector, encoder_hidden, decoder_hidden)
    if connector.kind != "qformer":
        return 2.0 * params * patches / connector.merge**2
    hidden = connector.qformer_hidden or 0
    layers = connector.qformer_layers or 0
    queries = connector.queries or 0
    kv_projection = 2.0 * 2 * hidden * encoder_hidden * patches * (layers // 2)
    return 2.0 * params * queries + kv_projection
