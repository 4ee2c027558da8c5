"""Token accounting against the worked examples of FACTS.md section 2 and 4."""

import pytest

from profiles.catalog import load_catalog
from profiles.errors import ConfigurationError
from profiles.tokens import (
    DeepSeekOcrMode,
    FixedResize,
    NativeResolution,
    PanAndScan,
    QFormerQueries,
    SmolVlmSplitting,
    Tiling,
    VideoPolicy,
    api_image_tokens,
    audio_tokens,
    closest_grid,
    image_tokens,
    prompt_tokens,
    smart_resize,
    video_frames,
    video_tokens,
)

INVOICE = (1700, 2200)
SCREENSHOT = (1920, 1080)
QWEN = NativeResolution(special_tokens=0)


# ---------------------------------------------------------------- Qwen2-VL native resolution


def test_qwen_448_square_is_256_tokens_of_4_patches():
    assert image_tokens(QWEN, 448, 448, 14) == (256, 1024, 1)


def test_qwen_1024_square_rounds_to_1036_and_1369_tokens():
    assert smart_resize(1024, 1024, 28, 3136, 12_845_056) == (1036, 1036)
    assert image_tokens(QWEN, 1024, 1024, 14).llm_tokens == 1369


def test_qwen_special_tokens_are_added():
    assert image_tokens(NativeResolution(), 448, 448, 14).llm_tokens == 258


def test_qwen_code_default_max_pixels_caps_at_1280_tokens():
    capped = NativeResolution(special_tokens=0, max_pixels=28 * 28 * 1280)
    tokens = image_tokens(capped, 4000, 3000, 14).llm_tokens
    assert 1100 < tokens <= 1280


def test_qwen_shipped_max_pixels_caps_at_16384_tokens():
    assert image_tokens(QWEN, 8000, 8000, 14).llm_tokens <= 16_384
    assert image_tokens(QWEN, 8000, 8000, 14).llm_tokens > 16_000


def test_qwen_tiny_image_is_scaled_up_to_min_pixels():
    assert image_tokens(QWEN, 20, 20, 14).llm_tokens == 4  # min_pixels 56^2


def test_qwen_rejects_extreme_aspect_ratio():
    with pytest.raises(ConfigurationError, match="aspect ratio"):
        image_tokens(QWEN, 20_100, 100, 14)


# ---------------------------------------------------------------- InternVL tiling


def test_internvl_max_is_13_tiles_of_256():
    # 3x4 grid (12 tiles) + thumbnail, the FACTS.md maximum.
    assert image_tokens(Tiling(), *INVOICE, 14) == (3328, 13 * 1024, 13)


def test_internvl_square_small_image_is_one_tile_without_thumbnail():
    assert image_tokens(Tiling(), 448, 448, 14) == (256, 1024, 1)


def test_internvl_tie_break_prefers_larger_grid_for_large_images():
    # 1:1 ratio ties between 1x1, 2x2 and 3x3; a 1344 px image has > half of 3x3 tiles' pixels.
    assert closest_grid(1344, 1344, 1, 12, 448) == (3, 3)
    assert closest_grid(448, 448, 1, 12, 448) == (1, 1)


def test_internvl_screenshot_uses_16_by_9_like_grid():
    cols, rows = closest_grid(*SCREENSHOT, 1, 12, 448)
    assert cols > rows
    assert image_tokens(Tiling(), *SCREENSHOT, 14).llm_tokens == (cols * rows + 1) * 256


# ---------------------------------------------------------------- SmolVLM, Gemma 3, DeepSeek-OCR, fixed


def test_smolvlm_max_is_17_tiles_of_64():
    assert image_tokens(SmolVlmSplitting(), 1024, 1024, 16) == (1088, 17 * 1024, 17)


def test_smolvlm_upscales_small_images_to_the_longest_edge():
    assert image_tokens(SmolVlmSplitting(), 100, 100, 16).llm_tokens == 1088


def test_smolvlm_screenshot_is_4x3_tiles_plus_global():
    assert image_tokens(SmolVlmSplitting(), *SCREENSHOT, 16).llm_tokens == 13 * 64


def test_gemma_default_is_one_256_token_image():
    assert image_tokens(PanAndScan(), *SCREENSHOT, 14) == (256, 4096, 1)


def test_gemma_pan_and_scan_max_is_1280():
    assert image_tokens(PanAndScan(enabled=True), 4096, 512, 14).llm_tokens == 1280


def test_gemma_pan_and_scan_needs_elongated_images():
    assert image_tokens(PanAndScan(enabled=True), 1100, 1000, 14).llm_tokens == 256
    assert image_tokens(PanAndScan(enabled=True), *SCREENSHOT, 14).llm_tokens == 3 * 256


def test_deepseek_base_is_273_tokens():
    assert image_tokens(DeepSeekOcrMode(mode="base"), 1024, 1024, 16) == (273, 4096, 1)


def test_deepseek_modes_grow_with_resolution():
    counts = [image_tokens(DeepSeekOcrMode(mode=m), *INVOICE, 16).llm_tokens for m in ("tiny", "small", "base", "large")]
    assert counts == sorted(counts)
    assert counts[0] < 100 < counts[3]  # README: 64 ... 400 before newline/separator tokens


def test_deepseek_gundam_small_image_has_no_local_crops():
    assert image_tokens(DeepSeekOcrMode(), 640, 600, 16).llm_tokens == 273


def test_deepseek_gundam_invoice_is_2x3_crops_plus_global():
    # aspect 0.77 -> 2 cols x 3 rows of 640 px: (10*2+1)*10*3 = 630 local + 273 global.
    assert image_tokens(DeepSeekOcrMode(), *INVOICE, 16) == (903, 4096 + 6 * 1600, 7)


def test_llava_fixed_576():
    assert image_tokens(FixedResize(image_px=336, tokens=576), *INVOICE, 14) == (576, 576, 1)


def test_blip2_qformer_32():
    assert image_tokens(QFormerQueries(), *SCREENSHOT, 14).llm_tokens == 32


@pytest.mark.parametrize(
    ("policy", "patch_px"),
    [(QWEN, 14), (Tiling(), 14), (DeepSeekOcrMode(), 16), (PanAndScan(enabled=True), 14)],
)
def test_invoice_and_screenshot_cost_at_least_a_square_thumbnail(policy, patch_px):
    # A square: InternVL's grid follows the aspect ratio, not the pixel count (320x240 -> 4x3
    # tiles); SmolVLM upscales everything to 2048 px, so only its aspect ratio matters (tested above).
    small = image_tokens(policy, 224, 224, patch_px).llm_tokens
    assert image_tokens(policy, *INVOICE, patch_px).llm_tokens >= small
    assert image_tokens(policy, *SCREENSHOT, patch_px).llm_tokens >= small


def test_qwen_tokens_are_monotone_in_pixels():
    sizes = [(w, w * 3 // 4) for w in range(100, 4000, 97)]
    counts = [image_tokens(QWEN, w, h, 14).llm_tokens for w, h in sizes]
    assert counts == sorted(counts)


def test_non_positive_image_size_is_an_error():
    with pytest.raises(ConfigurationError, match="0x10"):
        image_tokens(QWEN, 0, 10, 14)


# ---------------------------------------------------------------- audio and video


def test_one_second_of_audio_is_25_tokens():
    assert audio_tokens(100, 50, 25, 1.0) == 25


def test_audio_conv_formula_on_odd_lengths():
    # 0.37 s = 37 mel frames -> (36//2+1)=19 -> (17//2+1)=9
    assert audio_tokens(100, 50, 25, 0.37) == 9
    assert audio_tokens(100, 50, 25, 0.0) == 0


def test_omni_video_448_at_2fps_is_256_tokens_per_second():
    video = VideoPolicy(max_total_tokens=None)
    tokens = video_tokens(QWEN, video, 10.0, 30.0, (448, 448), 14)
    assert tokens == (2560, 10 * 1024, 10)


def test_video_frames_clamped_and_even():
    video = VideoPolicy()
    assert video_frames(video, 1.0, 30.0) == 4  # min_frames
    assert video_frames(video, 1000.0, 30.0) == 768  # max_frames
    assert video_frames(video, 3.3, 30.0) == 6
    assert video_frames(video, 2.0, 1.5) == 2  # only 3 source frames exist; rounded down to 2


def test_long_video_shrinks_frames_to_the_total_budget():
    video = VideoPolicy(max_total_tokens=115_200)
    tokens = video_tokens(QWEN, video, 600.0, 30.0, (1280, 720), 14)
    assert tokens.encoder_sequences == 384  # 1,200 frames at 2 fps capped at 768, 2 per group
    assert tokens.llm_tokens <= 115_200 + 2
    assert tokens.llm_tokens >= 384 * 128  # never below min_tokens_per_group


def test_tiled_model_encodes_each_frame_as_one_tile():
    video = VideoPolicy(fps=1.0, min_frames=8, max_frames=32, temporal_merge=1, max_tokens_per_group=None)
    assert video_tokens(Tiling(), video, 20.0, 30.0, (1920, 1080), 14) == (20 * 256, 20 * 1024, 20)


# ---------------------------------------------------------------- whole prompts


def test_prompt_tokens_for_omni_with_image_audio_video():
    model = load_catalog().model("qwen2.5-omni-7b")
    prompt = prompt_tokens(model, [(448, 448)], 30.0, 10.0, 30.0, (448, 448), 500)
    assert prompt.image == 258
    assert prompt.audio == 750
    assert prompt.video == 2562
    assert prompt.total == 500 + 258 + 750 + 2562
    assert prompt.encoder_sequences == 11
    assert prompt.audio_seconds == 30.0


def test_prompt_image_policy_override_for_request_tiering():
    model = load_catalog().model("qwen2.5-vl-7b")
    full = prompt_tokens(model, [INVOICE], 0, 0, 0, (0, 0), 100)
    low = prompt_tokens(model, [INVOICE], 0, 0, 0, (0, 0), 100, image_policy=NativeResolution(max_pixels=256 * 784))
    assert low.image <= 258 < full.image


def test_prompt_rejects_inputs_the_model_cannot_take():
    catalog = load_catalog()
    with pytest.raises(ConfigurationError, match="llama-3-8b.*images"):
        prompt_tokens(catalog.model("llama-3-8b"), [INVOICE], 0, 0, 0, (0, 0), 10)
    with pytest.raises(ConfigurationError, match="qwen2.5-vl-7b.*audio"):
        prompt_tokens(catalog.model("qwen2.5-vl-7b"), [], 5.0, 0, 0, (0, 0), 10)
    with pytest.raises(ConfigurationError, match="deepseek-ocr.*video"):
        prompt_tokens(catalog.model("deepseek-ocr"), [], 0, 5.0, 30.0, (640, 480), 10)


def test_text_only_prompt():
    prompt = prompt_tokens(load_catalog().model("llama-3-8b"), [], 0, 0, 0, (0, 0), 290)
    assert prompt.total == 290
    assert prompt.encoder_patches == 0


# ---------------------------------------------------------------- hosted APIs


def test_openai_1024_high_detail_is_765():
    assert api_image_tokens("openai_tiles", 1024, 1024) == 765


def test_openai_fits_2048_then_768_shortest_side():
    # 4096x2048 -> 2048x1024 -> 1536x768 -> 3x2 tiles
    assert api_image_tokens("openai_tiles", 4096, 2048) == 85 + 170 * 6
    assert api_image_tokens("openai_tiles", 500, 400) == 85 + 170


def test_claude_pixels_per_750_and_gemini_fixed():
    assert api_image_tokens("pixels_per_750", 750, 100) == 100
    assert api_image_tokens("pixels_per_750", *INVOICE) == 1600  # resized above ~1.15 MP
    assert api_image_tokens("fixed_258", *SCREENSHOT) == 258


def test_gpt4o_mini_bills_the_large_multiplier():
    mini = load_catalog().api("gpt-4o-mini")
    assert mini.billed_image_tokens(1024, 1024) == round(765 * 33.33)
