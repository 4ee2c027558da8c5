"""Token accounting: pixels, audio seconds and video seconds to tokens.

Each image policy is a pydantic model tagged by ``kind``; ``image_tokens``
dispatches on it. Rules and worked examples are in FACTS.md section 2.
Returned counts are what the LLM prefills (``llm_tokens``) and what the
vision encoder processes (``encoder_patches`` in ``encoder_sequences``
independent attention sequences: tiles, crops or temporal groups).
Units: pixels for image sizes, seconds for audio/video, counts for tokens.
The resize and tiling arithmetic follows the reference processors
(InternVL ``dynamic_preprocess``, Qwen2-VL ``smart_resize``, Idefics3/SmolVLM
splitting, Gemma 3 pan-and-scan, vLLM's DeepSeek-OCR processor) so counts
match what a server actually prefills; that integer arithmetic lives in
``profiles.resize_rules`` and is re-exported here.
"""

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple

from pydantic import Field, PositiveInt

from profiles.base import StrictModel
from profiles.errors import ConfigurationError
from profiles.resize_rules import (
    DEEPSEEK_MODE_PX,
    DEEPSEEK_PATCH_PX,
    DEEPSEEK_TILE_PX,
    IDEFICS3_MAX_IMAGE_SIZE,
    ApiImageRule,
    api_image_tokens,
    audio_tokens,
    ceil_to_tiles,
    closest_grid,
    deepseek_local_tokens,
    deepseek_view_tokens,
    pan_and_scan_crop_count,
    rescale_to_longest,
    smart_resize,
)

if TYPE_CHECKING:
    from profiles.models import ResolvedModel

# The upstream arithmetic is re-exported: callers use profiles.tokens as the one entry point.
__all__ = [
    "DEEPSEEK_PATCH_PX", "ApiImageRule", "DeepSeekOcrMode", "FixedResize", "ImagePolicy", "NativeResolution",
    "PanAndScan", "PromptTokens", "QFormerQueries", "SmolVlmSplitting", "Tiling", "VideoPolicy", "VisualTokens",
    "api_image_tokens", "audio_tokens", "closest_grid", "image_tokens", "prompt_tokens", "smart_resize",
    "video_frames", "video_tokens",
]


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
    """DeepSeek-OCR resolution modes (tiny/small/base/large) or Gundam tiling.

    Counts follow vLLM's processor: a q x q view adds q row-newlines and one
    separator, (q+1)q+1 tokens (base 1024 px: 273; tiny 73, small 111, large
    421, against the README's 64/100/256/400 without those tokens).
    """

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
    min_tokens_per_group: PositiveInt = Field(128, description="VIDEO_MIN_PIXELS / 28^2 in qwen-vl-utils")
    max_total_tokens: PositiveInt | None = Field(
        None, description="VIDEO_TOTAL_PIXELS / 28^2: whole-video budget shrinking each group (qwen-vl-utils)"
    )


class PromptTokens(NamedTuple):
    """Everything one request costs a model before decoding.

    ``total`` is the LLM prefill length (text + image + audio + video tokens);
    ``encoder_patches``/``encoder_sequences`` are the vision encoder's work for
    the images and the video together; ``audio_seconds`` is what the audio
    encoder hears.
    """

    text: int
    image: int
    audio: int
    video: int
    total: int
    encoder_patches: int
    encoder_sequences: int
    audio_seconds: float


def image_tokens(policy: ImagePolicy, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    """Tokens and encoder work of one ``width_px`` x ``height_px`` image under ``policy``.

    ``patch_px`` is the vision encoder's patch side (14 for CLIP/InternViT/Qwen, 16 for SigLIP-B/16).
    """
    if width_px <= 0 or height_px <= 0:
        raise ConfigurationError(f"image size must be positive, got {width_px}x{height_px} px")
    return _cached_image_tokens(policy, width_px, height_px, patch_px)


@lru_cache(maxsize=8192)
def _cached_image_tokens(policy: ImagePolicy, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    # Pure function of frozen (hashable) inputs; the simulator asks the same sizes millions of times.
    return _POLICY_RULES[policy.kind](policy, width_px, height_px, patch_px)


def _patches(side_px: int, patch_px: int) -> int:
    """Patches of one square view of ``side_px``."""
    return (side_px // patch_px) ** 2


def _fixed_tokens(policy: FixedResize, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    """LLaVA-1.5: one ``image_px`` square view, a fixed token count."""
    return VisualTokens(policy.tokens, _patches(policy.image_px, patch_px), 1)


def _qformer_tokens(policy: QFormerQueries, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    """BLIP-2: the ViT sees one ``image_px`` view; the LLM sees ``queries`` tokens."""
    return VisualTokens(policy.queries, _patches(policy.image_px, patch_px), 1)


def _tiling_tokens(policy: Tiling, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    """InternVL: an aspect-matched grid of tiles, plus a thumbnail tile when the grid has >1 tile."""
    cols, rows = closest_grid(width_px, height_px, policy.min_tiles, policy.max_tiles, policy.tile_px)
    tiles = cols * rows
    if policy.thumbnail and tiles != 1:
        tiles += 1
    return VisualTokens(tiles * policy.tokens_per_tile, tiles * _patches(policy.tile_px, patch_px), tiles)


def _native_grid(policy: NativeResolution, width_px: int, height_px: int, max_pixels: int, min_pixels: int) -> int:
    """Merged tokens of one frame: (H/28)(W/28) after ``smart_resize``."""
    side = policy.px_per_token_side
    h_bar, w_bar = smart_resize(height_px, width_px, side, min_pixels, max_pixels)
    return (h_bar // side) * (w_bar // side)


def _native_tokens(policy: NativeResolution, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    """Qwen2-VL: one token per 28x28 px; the ViT sees (side/patch)^2 patches per token, one sequence."""
    grid = _native_grid(policy, width_px, height_px, policy.max_pixels, policy.min_pixels)
    patches_per_token = (policy.px_per_token_side // patch_px) ** 2
    return VisualTokens(grid + policy.special_tokens, grid * patches_per_token, 1)


def _deepseek_tokens(policy: DeepSeekOcrMode, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    """DeepSeek-OCR: one global view (mode size); Gundam adds 640 px local crops above 640x640 px."""
    view_px = DEEPSEEK_MODE_PX[policy.mode]
    tokens = deepseek_view_tokens(view_px)
    patches, sequences = _patches(view_px, patch_px), 1
    if policy.mode == "gundam" and (width_px > DEEPSEEK_TILE_PX or height_px > DEEPSEEK_TILE_PX):
        cols, rows = closest_grid(width_px, height_px, policy.min_crops, policy.max_crops, DEEPSEEK_TILE_PX)
        tokens += deepseek_local_tokens(cols, rows)
        patches += cols * rows * _patches(DEEPSEEK_TILE_PX, patch_px)
        sequences += cols * rows
    return VisualTokens(tokens, patches, sequences)


def _smolvlm_tokens(policy: SmolVlmSplitting, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    """SmolVLM: longest edge to ``longest_edge_px``, split into tiles, plus one global tile if split."""
    longest = min(policy.longest_edge_px, IDEFICS3_MAX_IMAGE_SIZE)
    height, width = rescale_to_longest(height_px, width_px, longest)
    height, width = ceil_to_tiles(height, width, policy.tile_px)
    tiles = (height // policy.tile_px) * (width // policy.tile_px)
    if tiles > 1:
        tiles += 1  # the downscaled global image
    return VisualTokens(tiles * policy.tokens_per_tile, tiles * _patches(policy.tile_px, patch_px), tiles)


def _pan_and_scan_tokens(policy: PanAndScan, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    """Gemma 3: the whole image plus any pan-and-scan crops (when enabled), each ``tokens_per_crop`` tokens."""
    crops = 0
    if policy.enabled:
        crops = pan_and_scan_crop_count(
            width_px, height_px, policy.min_crop_px, policy.max_crops, policy.min_ratio_to_activate
        )
    views = 1 + crops
    return VisualTokens(views * policy.tokens_per_crop, views * _patches(policy.image_px, patch_px), views)


_POLICY_RULES: dict[str, Callable[..., VisualTokens]] = {
    "fixed": _fixed_tokens,
    "tiling": _tiling_tokens,
    "native": _native_tokens,
    "qformer": _qformer_tokens,
    "deepseek_ocr": _deepseek_tokens,
    "smolvlm": _smolvlm_tokens,
    "pan_and_scan": _pan_and_scan_tokens,
}


# ---------------------------------------------------------------- video


def video_frames(video: VideoPolicy, video_s: float, source_fps: float) -> int:
    """Frames sampled from a clip (qwen-vl-utils ``smart_nframes``), a multiple of ``temporal_merge``.

    ``source_fps`` bounds the frames that exist; 0 means unknown (no bound).
    """
    if video_s <= 0:
        return 0
    merge = video.temporal_merge
    frames = min(max(video_s * video.fps, video.min_frames), video.max_frames)
    if source_fps > 0:
        frames = min(frames, video_s * source_fps)
    return max(merge, math.floor(frames / merge) * merge)


def _single_view(policy: ImagePolicy, width_px: int, height_px: int, patch_px: int) -> VisualTokens:
    """A video frame for a non-native policy: one tile/view, never split (InternVL, SmolVLM2, LLaVA)."""
    if isinstance(policy, Tiling | SmolVlmSplitting):
        return VisualTokens(policy.tokens_per_tile, _patches(policy.tile_px, patch_px), 1)
    if isinstance(policy, DeepSeekOcrMode):
        return image_tokens(policy.model_copy(update={"mode": "base"}), width_px, height_px, patch_px)
    if isinstance(policy, PanAndScan):
        return VisualTokens(policy.tokens_per_crop, _patches(policy.image_px, patch_px), 1)
    return image_tokens(policy, width_px, height_px, patch_px)


def video_tokens(
    policy: ImagePolicy, video: VideoPolicy, video_s: float, source_fps: float, frame_px: tuple[int, int], patch_px: int
) -> VisualTokens:
    """Tokens of a clip: ``frames / temporal_merge`` groups, each the tokens of one frame.

    Native (Qwen) frames are resized within [min, max] tokens per group, the
    max shrunk so the whole clip fits ``max_total_tokens``; other policies
    encode each frame as a single tile. One encoder sequence per group.
    """
    groups = video_frames(video, video_s, source_fps) // video.temporal_merge
    if groups == 0:
        return VisualTokens(0, 0, 0)
    width_px, height_px = frame_px
    if width_px <= 0 or height_px <= 0:
        raise ConfigurationError(f"video frame size must be positive, got {width_px}x{height_px} px")
    if not isinstance(policy, NativeResolution):
        one = _single_view(policy, width_px, height_px, patch_px)
        return VisualTokens(groups * one.llm_tokens, groups * one.encoder_patches, groups)
    per_group = _native_video_group(policy, video, groups, width_px, height_px)
    # A Qwen patch is temporal_merge x 14 x 14 px: the frames of a group share one patch grid.
    patches_per_group = per_group * (policy.px_per_token_side // patch_px) ** 2
    return VisualTokens(groups * per_group + policy.special_tokens, groups * patches_per_group, groups)


def _native_video_group(policy: NativeResolution, video: VideoPolicy, groups: int, width_px: int, height_px: int) -> int:
    """Tokens of one temporal group of a native-resolution video (qwen-vl-utils ``fetch_video`` bounds)."""
    px_per_token = policy.px_per_token_side**2
    min_pixels = video.min_tokens_per_group * px_per_token
    max_tokens: float = video.max_tokens_per_group or policy.max_pixels // px_per_token
    if video.max_total_tokens is not None:
        max_tokens = min(max_tokens, video.max_total_tokens / groups)
    max_pixels = max(int(max_tokens * px_per_token), int(min_pixels * 1.05))
    return _native_grid(policy, width_px, height_px, max_pixels, min_pixels)


# ---------------------------------------------------------------- whole prompt


def prompt_tokens(
    model: "ResolvedModel",
    images: Sequence[tuple[int, int]],
    audio_s: float,
    video_s: float,
    video_fps: float,
    video_frame_px: tuple[int, int],
    text_tokens: int,
    image_policy: ImagePolicy | None = None,
) -> PromptTokens:
    """Prefill tokens and encoder work of one request on ``model``.

    ``images`` are (width_px, height_px); ``image_policy`` overrides the
    model's (request tiering: e.g. a low-resolution policy for some classes).
    Raises ``ConfigurationError`` when the request has an input the model cannot take.
    """
    image = _images_cost(model, images, image_policy)
    video = _video_cost(model, video_s, video_fps, video_frame_px, image_policy)
    audio = _audio_cost(model, audio_s)
    total = text_tokens + image.llm_tokens + audio + video.llm_tokens
    return PromptTokens(
        text=text_tokens,
        image=image.llm_tokens,
        audio=audio,
        video=video.llm_tokens,
        total=total,
        encoder_patches=image.encoder_patches + video.encoder_patches,
        encoder_sequences=image.encoder_sequences + video.encoder_sequences,
        audio_seconds=audio_s if audio else 0.0,
    )


def _vision_parts(model: "ResolvedModel", policy: ImagePolicy | None, what: str) -> tuple[ImagePolicy, int]:
    """The image policy and patch size to use, or a ``ConfigurationError`` for a model without vision."""
    policy = policy or model.image_policy
    if model.vision is None or policy is None:
        raise ConfigurationError(f"model {model.id!r} has no vision encoder: it cannot take {what}")
    return policy, model.vision.patch_px


def _images_cost(model: "ResolvedModel", images: Sequence[tuple[int, int]], policy: ImagePolicy | None) -> VisualTokens:
    """Sum of ``image_tokens`` over the request's images."""
    if not images:
        return VisualTokens(0, 0, 0)
    policy, patch_px = _vision_parts(model, policy, "images")
    llm = patches = sequences = 0
    for width_px, height_px in images:
        one = image_tokens(policy, width_px, height_px, patch_px)
        llm, patches, sequences = llm + one.llm_tokens, patches + one.encoder_patches, sequences + one.encoder_sequences
    return VisualTokens(llm, patches, sequences)


def _video_cost(
    model: "ResolvedModel", video_s: float, video_fps: float, frame_px: tuple[int, int], policy: ImagePolicy | None
) -> VisualTokens:
    """``video_tokens`` with the model's video policy."""
    if video_s <= 0:
        return VisualTokens(0, 0, 0)
    policy, patch_px = _vision_parts(model, policy, "video")
    if model.video is None:
        raise ConfigurationError(f"model {model.id!r} has no video policy: it cannot take video")
    return video_tokens(policy, model.video, video_s, video_fps, frame_px, patch_px)


def _audio_cost(model: "ResolvedModel", audio_s: float) -> int:
    """Audio tokens, or a ``ConfigurationError`` for a model without an audio encoder."""
    if audio_s <= 0:
        return 0
    if model.audio is None:
        raise ConfigurationError(f"model {model.id!r} has no audio encoder: it cannot take audio")
    enc = model.audio
    return audio_tokens(enc.frames_per_s, enc.encoder_tokens_per_s, enc.llm_tokens_per_s, audio_s)
