"""Reusable model components: vision and audio encoders, connectors, LLM decoders.

A model (profiles.models) is assembled from these, either by catalog id or
inline, so a user can put a 300M, 1.8B or 6B encoder in front of the same
decoder. Dimensions are those of the Hugging Face configs cited in FACTS.md.
"""

from typing import Literal, Self

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from profiles.base import StrictModel


class EncoderDims(StrictModel):
    """What every transformer encoder has: ``layers`` blocks of width ``hidden``, an MLP of ``intermediate``."""

    id: str
    name: str = ""
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    intermediate: PositiveInt

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> Self:
        if self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        return self


class VisionEncoder(EncoderDims):
    """A ViT: ``layers`` blocks of width ``hidden`` over patch tokens."""

    mlp: Literal["gelu", "swiglu"] = "gelu"
    patch_px: PositiveInt
    image_px: PositiveInt = Field(description="Native input resolution (one tile), px")
    params_b: float | None = Field(None, gt=0, description="Published parameter count, billions; derived from dims when absent")
    attention_window_px: PositiveInt | None = Field(
        None, description="Side of the square window most blocks attend within, px (Qwen2.5-VL: 112); None: full")
    full_attention_layers: NonNegativeInt = Field(
        0, description="Blocks that attend over the whole tile despite the window (Qwen2.5-VL: 4 of 32)")
    source: str = "inline"
    unverified: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _window_fits(self) -> Self:
        if self.full_attention_layers > self.layers:
            raise ValueError(f"full_attention_layers ({self.full_attention_layers}) exceeds layers ({self.layers})")
        if self.attention_window_px is not None and self.attention_window_px % self.patch_px:
            raise ValueError(f"attention_window_px ({self.attention_window_px}) must be a multiple of "
                             f"patch_px ({self.patch_px})")
        return self

    @property
    def window_patches(self) -> int | None:
        """Patches in one attention window, or None for full attention in every block."""
        if self.attention_window_px is None:
            return None
        return (self.attention_window_px // self.patch_px) ** 2


class AudioEncoder(EncoderDims):
    """A Whisper-style audio encoder: mel frames -> conv stride -> transformer -> pooled tokens."""

    frames_per_s: PositiveInt = Field(100, description="Mel frames per second of audio")
    encoder_tokens_per_s: PositiveInt = Field(50, description="Sequence length per second inside the encoder (after conv stride)")
    llm_tokens_per_s: PositiveInt = Field(25, description="Tokens per second handed to the LLM (after pooling)")
    attention_window_s: PositiveFloat = Field(
        30.0, description="Audio each block attends within, s (Whisper: its 30 s input; Qwen2.5-Omni: 2 s blocks)")
    source: str = "inline"
    unverified: tuple[str, ...] = ()


class Connector(StrictModel):
    """Maps encoder features to LLM embeddings.

    ``merge`` is the side of the square of patches folded into one token
    (Qwen2-VL 2x2 merge: 2; InternVL pixel shuffle 0.5: 2; SmolVLM: 4).
    A Q-Former replaces the patch grid by ``queries`` learned queries.
    """

    kind: Literal["linear", "mlp", "pixel_shuffle_mlp", "qformer"]
    merge: PositiveInt = 1
    queries: PositiveInt | None = None
    qformer_layers: PositiveInt | None = None
    qformer_hidden: PositiveInt | None = None

    @model_validator(mode="after")
    def _qformer_has_queries(self) -> Self:
        if self.kind == "qformer" and not (self.queries and self.qformer_layers and self.qformer_hidden):
            raise ValueError("a qformer connector needs queries, qformer_layers and qformer_hidden")
        return self


class MoeSpec(StrictModel):
    """Mixture-of-experts feed-forward: ``top_k`` of ``experts`` routed experts per token, plus shared experts."""

    experts: PositiveInt
    top_k: PositiveInt
    expert_intermediate: PositiveInt
    shared_experts: int = Field(0, ge=0)
    shared_intermediate: int = Field(0, ge=0, description="FFN width of each shared expert")
    dense_layers: int = Field(0, ge=0, description="Leading layers with a dense FFN of the decoder's `intermediate`")

    @model_validator(mode="after")
    def _top_k_within_experts(self) -> Self:
        if self.top_k > self.experts:
            raise ValueError(f"top_k ({self.top_k}) exceeds experts ({self.experts})")
        if self.shared_experts and not self.shared_intermediate:
            raise ValueError("shared_experts needs shared_intermediate")
        return self


class Decoder(StrictModel):
    """A transformer LLM decoder (GQA attention, gated MLP or MoE).

    ``causal=False`` with no generation describes an encoder-only text
    classifier (BERT class) used as a router.
    """

    id: str
    name: str = ""
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    kv_heads: PositiveInt
    head_dim: PositiveInt
    intermediate: PositiveInt
    vocab: PositiveInt
    tied_embeddings: bool = False
    mlp: Literal["swiglu", "gelu"] = "swiglu"
    causal: bool = True
    moe: MoeSpec | None = None
    params_b: float | None = Field(None, gt=0, description="Published total parameter count, billions; derived when absent")
    source: str = "inline"
    unverified: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _attention_shape(self) -> Self:
        if self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads ({self.kv_heads}) must divide heads ({self.heads})")
        if self.moe and self.moe.dense_layers > self.layers:
            raise ValueError(f"moe.dense_layers ({self.moe.dense_layers}) exceeds layers ({self.layers})")
        return self

    @property
    def kv_bytes_per_token_bf16(self) -> int:
        """K and V for every layer at 2 bytes: 2 * layers * kv_heads * head_dim * 2."""
        return 2 * self.layers * self.kv_heads * self.head_dim * 2
