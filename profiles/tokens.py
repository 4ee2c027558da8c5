"""Token accounting: pixels, audio seconds and video seconds to tokens.

Each image policy is a pydantic model tagged by ``kind``; ``image_tokens``
dispatches on it. Rules and worked examples are in FACTS.md section 2.
Returned counts are what the LLM prefills (``llm_tokens``) and what the
vision encoder processes (``encoder_patches`` in ``encoder_sequences``
independent attention sequences: tiles, crops or temporal groups).
"""

from typing import Annotated, Literal, NamedTuple

from pydantic import Field, PositiveInt

from profiles.base import StrictModel


class VisualTokens(NamedTuple):
    """Cost of one image (or one video) for the encoder and the LLM."""

    llm_tokens: int
    encoder_patches: int
    encoder_sequences: int


class FixedResize(StrictModel):
    """Resize every image to ``image_px`` square (LLaVA-1.5: 336 px, 576 tokens)."""

    kind: Literal["fixed"] = "fixed"
    image_px: PositiveInt
    tokens: PositiveInt


class Tiling(StrictModel):
    """InternVL dynamic tiling: an aspect-matched grid of ``tile_px`` tiles plus a thumbnail."""

    kind: Literal["tiling"] = "tiling"
    tile_px: PositiveInt = 448
    min_tiles: PositiveInt = 1
    max_tiles: PositiveInt = 12
    thumbnail: bool = True
    tokens_per_tile: PositiveInt = 256


class NativeResolution(StrictModel):
    """Qwen2-VL native resolution: 28x28 px per token within [min_pixels, max_pixels]."""

    kind: Literal["native"] = "native"
    px_per_token_side: PositiveInt = 28
    min_pixels: PositiveInt = 3136
    max_pixels: PositiveInt = 12_845_056
    special_tokens: int = Field(2, ge=0, description="<vision_start>/<vision_end>")


class QFormerQueries(StrictModel):
    """BLIP-2 Q-Former: a fixed number of query tokens whatever the image size."""

    kind: Literal["qformer"] = "qformer"
    image_px: PositiveInt = 224
    queries: PositiveInt = 32


class DeepSeekOcrMode(StrictModel):
    """DeepSeek-OCR resolution modes (tiny/small/base/large) or Gundam tiling."""

    kind: Literal["deepseek_ocr"] = "deepseek_ocr"
    mode: Literal["tiny", "small", "base", "large", "gundam"] = "gundam"
    min_crops: PositiveInt = 2
    max_crops: PositiveInt = 6


class SmolVlmSplitting(StrictModel):
    """SmolVLM image splitting: longest edge capped, ``tile_px`` tiles plus one global image."""

    kind: Literal["smolvlm"] = "smolvlm"
    tile_px: PositiveInt = 512
    longest_edge_px: PositiveInt = 2048
    tokens_per_tile: PositiveInt = 64


class PanAndScan(StrictModel):
    """Gemma 3: one 896 px image of 256 soft tokens, optionally plus pan-and-scan crops."""

    kind: Literal["pan_and_scan"] = "pan_and_scan"
    image_px: PositiveInt = 896
    tokens_per_crop: PositiveInt = 256
    enabled: bool = False
    min_crop_px: PositiveInt = 256
    max_crops: PositiveInt = 4
    min_ratio_to_activate: float = Field(1.2, gt=1.0)


ImagePolicy = Annotated[
    FixedResize | Tiling | NativeResolution | QFormerQueries | DeepSeekOcrMode | SmolVlmSplitting | PanAndScan,
    Field(discriminator="kind"),
]


class VideoPolicy(StrictModel):
    """Frames sampled at ``fps`` (capped), ``temporal_merge`` frames folded into one token group."""

    fps: float = Field(2.0, gt=0)
    min_frames: PositiveInt = 4
    max_frames: PositiveInt = 768
    temporal_merge: PositiveInt = Field(2, description="Qwen2-VL temporal_patch_size")
    max_tokens_per_group: PositiveInt | None = Field(768, description="VIDEO_MAX_PIXELS / 28^2 in qwen-vl-utils")
