"""Resize, tiling and billing arithmetic of the reference processors, on plain integers.

Each function mirrors one upstream routine so token counts match what a
server prefills (FACTS.md sections 2 and 4): Qwen2-VL ``smart_resize``,
InternVL ``find_closest_aspect_ratio`` (also used by DeepSeek-OCR's Gundam
crops in vLLM), Idefics3/SmolVLM resizing, Gemma 3 pan-and-scan, DeepSeek-OCR
view tokens, Qwen2.5-Omni audio lengths, and hosted-API image billing.
Sizes in pixels, audio in seconds, results in tokens or (height, width) px.
``profiles.tokens`` applies them per image policy.
"""

import math
from functools import lru_cache
from typing import Literal

from profiles.errors import ConfigurationError

# DeepSeek-OCR (vLLM processor, FACTS.md section 2): 16 px patches, a 16x
# compressor (4x4) before the LLM, 640 px local tiles and a 1024 px global view.
DEEPSEEK_MODE_PX = {"tiny": 512, "small": 640, "base": 1024, "large": 1280, "gundam": 1024}
DEEPSEEK_TILE_PX = 640
DEEPSEEK_DOWNSAMPLE = 4
DEEPSEEK_PATCH_PX = 16
# Qwen2-VL's processor rejects images more extreme than this aspect ratio.
QWEN_MAX_ASPECT_RATIO = 200
# Idefics3 (SmolVLM) never lets an image side exceed this after resizing.
IDEFICS3_MAX_IMAGE_SIZE = 4096


@lru_cache(maxsize=64)
def target_ratios(min_num: int, max_num: int) -> tuple[tuple[int, int], ...]:
    """Tile grids (cols, rows) with min_num <= cols*rows <= max_num, in InternVL's order."""
    ratios = {
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    }
    # Same sort as InternVL (stable over set order; int-tuple hashes are not randomised).
    return tuple(sorted(ratios, key=lambda r: r[0] * r[1]))


def closest_grid(width_px: int, height_px: int, min_num: int, max_num: int, tile_px: int) -> tuple[int, int]:
    """InternVL ``find_closest_aspect_ratio``: the (cols, rows) grid nearest the image's aspect ratio.

    Ties go to the larger grid when the image has more than half its pixels.
    """
    aspect_ratio = width_px / height_px
    area = width_px * height_px
    best_diff = float("inf")
    best = (1, 1)
    for cols, rows in target_ratios(min_num, max_num):
        diff = abs(aspect_ratio - cols / rows)
        if diff < best_diff:
            best_diff, best = diff, (cols, rows)
        elif diff == best_diff and area > 0.5 * tile_px * tile_px * cols * rows:
            best = (cols, rows)
    return best


def smart_resize(height_px: int, width_px: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL ``smart_resize``: (height, width) rounded to multiples of ``factor`` within the pixel bounds."""
    if max(height_px, width_px) / min(height_px, width_px) > QWEN_MAX_ASPECT_RATIO:
        raise ConfigurationError(
            f"image {width_px}x{height_px} px: aspect ratio above {QWEN_MAX_ASPECT_RATIO} is rejected by Qwen2-VL"
        )
    h_bar = max(factor, round(height_px / factor) * factor)
    w_bar = max(factor, round(width_px / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height_px * width_px / max_pixels)
        h_bar = max(factor, math.floor(height_px / beta / factor) * factor)
        w_bar = max(factor, math.floor(width_px / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height_px * width_px))
        h_bar = math.ceil(height_px * beta / factor) * factor
        w_bar = math.ceil(width_px * beta / factor) * factor
    return h_bar, w_bar


def deepseek_view_tokens(view_px: int) -> int:
    """One DeepSeek-OCR view: q rows of q tokens + a newline each, + 1 separator (q = view/16/4)."""
    queries = math.ceil(view_px // DEEPSEEK_PATCH_PX / DEEPSEEK_DOWNSAMPLE)
    return (queries + 1) * queries + 1


def deepseek_local_tokens(cols: int, rows: int) -> int:
    """Gundam local crops on a cols x rows grid of 640 px: (q*cols + 1) * q*rows, q = 640/16/4 = 10."""
    queries = math.ceil(DEEPSEEK_TILE_PX // DEEPSEEK_PATCH_PX / DEEPSEEK_DOWNSAMPLE)
    return (queries * cols + 1) * queries * rows


def rescale_to_longest(height_px: int, width_px: int, longest_px: int) -> tuple[int, int]:
    """Idefics3: scale (up or down) so the longest edge is ``longest_px``; the other side made even."""
    aspect = width_px / height_px
    if width_px >= height_px:
        width, height = longest_px, int(longest_px / aspect)
        height += height % 2
    else:
        height, width = longest_px, int(longest_px * aspect)
        width += width % 2
    return max(height, 1), max(width, 1)


def ceil_to_tiles(height_px: int, width_px: int, tile_px: int) -> tuple[int, int]:
    """Idefics3 ``resize_for_vision_encoder``: the long side, then the short side, up to whole tiles."""
    aspect = width_px / height_px
    if width_px >= height_px:
        width = math.ceil(width_px / tile_px) * tile_px
        height = math.ceil(int(width / aspect) / tile_px) * tile_px
    else:
        height = math.ceil(height_px / tile_px) * tile_px
        width = math.ceil(int(height * aspect) / tile_px) * tile_px
    return max(height, tile_px), max(width, tile_px)


def pan_and_scan_crop_count(
    width_px: int, height_px: int, min_crop_px: int, max_crops: int, min_ratio_to_activate: float
) -> int:
    """Gemma 3 ``pan_and_scan``: extra crops along the long side (0 when the image is not elongated enough)."""
    long_px, short_px = max(width_px, height_px), min(width_px, height_px)
    if long_px / short_px < min_ratio_to_activate:
        return 0
    crops = int(math.floor(long_px / short_px + 0.5))  # half rounds up
    crops = min(long_px // min_crop_px, crops)
    crops = min(max_crops, max(2, crops))
    crop_long_px = math.ceil(long_px / crops)
    if min(crop_long_px, short_px) < min_crop_px:
        return 0
    return crops


def audio_tokens(frames_per_s: int, encoder_tokens_per_s: int, llm_tokens_per_s: int, audio_s: float) -> int:
    """LLM tokens of ``audio_s`` seconds: mel frames through a stride-s1 conv, then stride-s2 pooling.

    Qwen2.5-Omni ``_get_feat_extract_output_lengths`` with s1 = s2 = 2:
    ``L1 = (L - 1) // 2 + 1``; ``L_out = (L1 - 2) // 2 + 1`` (1 s -> 100 -> 50 -> 25).
    """
    mel_frames = int(round(audio_s * frames_per_s))
    if mel_frames <= 0:
        return 0
    conv_stride = max(1, frames_per_s // encoder_tokens_per_s)
    pool_stride = max(1, encoder_tokens_per_s // llm_tokens_per_s)
    after_conv = (mel_frames - 1) // conv_stride + 1
    return max(0, (after_conv - pool_stride) // pool_stride + 1)


# ---------------------------------------------------------------- hosted APIs

ApiImageRule = Literal["openai_tiles", "pixels_per_750", "fixed_258"]
# OpenAI high detail (FACTS.md section 4): fit 2048x2048, shortest side to 768, 85 + 170 per 512 px tile.
OPENAI_FIT_PX, OPENAI_SHORT_PX, OPENAI_TILE_PX = 2048, 768, 512
OPENAI_BASE_TOKENS, OPENAI_TILE_TOKENS = 85, 170
# Anthropic resizes images above ~1.15 MP (about 1,600 tokens) before billing.
# Not in FACTS.md; recalled from Anthropic's vision docs [unverified].
CLAUDE_PX_PER_TOKEN, CLAUDE_MAX_TOKENS = 750, 1600
GEMINI_IMAGE_TOKENS = 258


@lru_cache(maxsize=1024)  # the simulator asks once per image; a run has few distinct sizes
def api_image_tokens(rule: ApiImageRule, width_px: int, height_px: int) -> int:
    """Input tokens of one image by a hosted API's rule (FACTS.md section 4, recalled vendor rules).

    The rule's count before any price multiplier: ``HostedApi.billed_image_tokens`` applies that.
    """
    if width_px <= 0 or height_px <= 0:
        raise ConfigurationError(f"image size must be positive, got {width_px}x{height_px} px")
    if rule == "openai_tiles":
        return _openai_tiles(width_px, height_px)
    if rule == "pixels_per_750":
        return min(CLAUDE_MAX_TOKENS, math.ceil(width_px * height_px / CLAUDE_PX_PER_TOKEN))
    return GEMINI_IMAGE_TOKENS


def _openai_tiles(width_px: int, height_px: int) -> int:
    """High detail: downscale to fit 2048 px, then shortest side to 768 px; 85 + 170 per 512 px tile."""
    scale = min(1.0, OPENAI_FIT_PX / max(width_px, height_px))
    width, height = width_px * scale, height_px * scale
    scale = min(1.0, OPENAI_SHORT_PX / min(width, height))
    width, height = width * scale, height * scale
    tiles = math.ceil(width / OPENAI_TILE_PX) * math.ceil(height / OPENAI_TILE_PX)
    return OPENAI_BASE_TOKENS + OPENAI_TILE_TOKENS * tiles
