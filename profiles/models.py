"""Model architectures assembled from components, and hosted APIs.

A ``ModelSpec`` names its components by catalog id or defines them inline;
``profiles.catalog.Catalog.model`` turns it into a ``ResolvedModel`` whose
components are all objects. Quality scores carry their source so plans can
weigh quality against cost.
"""

import math
from collections.abc import Callable
from typing import Literal, NamedTuple, Self

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from profiles.base import StrictModel
from profiles.components import AudioEncoder, Connector, Decoder, VisionEncoder
from profiles.costs import api_cost_usd
from profiles.tokens import ImagePolicy, VideoPolicy, api_image_tokens

Precision = Literal["bf16", "fp8", "int4"]
# How an FP8 checkpoint scales its weights and activations (what serving it at ``fp8`` runs):
# per_tensor_static: one scale per weight tensor, activation scales calibrated into the checkpoint
#   (NVIDIA ModelOpt FP8; aiconfigurator's fp8_static, its default for a per-tensor FP8 checkpoint
#   that does not mark its activations dynamic);
# per_tensor_dynamic: activation scales computed every step (vLLM's online ``--quantization fp8``,
#   ``activation_scheme: dynamic``; aiconfigurator's fp8);
# block: 128 x 128 weight blocks with per-token-group activation scales (``weight_block_size`` in
#   the checkpoint's quantization_config, e.g. Qwen's and DeepSeek's FP8 releases; aiconfigurator's
#   fp8_block for the GEMMs and the MoE experts).
Fp8Scaling = Literal["per_tensor_static", "per_tensor_dynamic", "block"]
FP8_SCALING_HELP = ("How the model's FP8 checkpoint is scaled (used when served at precision fp8): "
                    "per_tensor_static, per_tensor_dynamic or block")


class QualityScore(StrictModel):
    """A published benchmark score (0-100) for one task."""

    benchmark: str = Field(description="e.g. DocVQA, MMMU, ChartQA, OCRBench")
    score: float = Field(ge=0, le=100)
    source: str
    unverified: bool = False


class CpuPreprocess(StrictModel):
    """CPU-side cost per request before the GPU sees it: decode, resize, tile, normalise, tokenise.

    FACTS.md section 1: for compact VLMs at batch 1 this dominates TTFT.
    """

    ms_per_image: NonNegativeFloat = Field(description="Fixed cost per image (decode set-up, transforms)")
    ms_per_megapixel: NonNegativeFloat = Field(description="Cost that scales with decoded pixels")
    ms_per_1k_text_tokens: NonNegativeFloat = 0.5
    source: str = "estimate"


class ModelSpec(StrictModel):
    """One servable model: optional encoders + connector + image/video policy + decoder."""

    id: str
    name: str = ""
    kind: Literal["vlm", "omni", "ocr", "llm", "classifier"]
    vision: str | VisionEncoder | None = None
    connector: Connector | None = None
    image_policy: ImagePolicy | None = None
    video: VideoPolicy | None = None
    audio: str | AudioEncoder | None = None
    decoder: str | Decoder
    precision: Precision = "bf16"
    fp8_scaling: Fp8Scaling = Field("per_tensor_static", description=FP8_SCALING_HELP)
    preprocess: CpuPreprocess | None = None
    quality: tuple[QualityScore, ...] = ()
    source: str = "inline"
    unverified: tuple[str, ...] = ()


class ResolvedModel(StrictModel):
    """A ``ModelSpec`` whose component references have been looked up in the catalog."""

    id: str
    name: str
    kind: Literal["vlm", "omni", "ocr", "llm", "classifier"]
    vision: VisionEncoder | None
    connector: Connector | None
    image_policy: ImagePolicy | None
    video: VideoPolicy | None
    audio: AudioEncoder | None
    decoder: Decoder
    precision: Precision
    fp8_scaling: Fp8Scaling = Field("per_tensor_static", description=FP8_SCALING_HELP)
    preprocess: CpuPreprocess | None
    quality: tuple[QualityScore, ...]
    source: str
    unverified: tuple[str, ...]


class LatencyDistribution(StrictModel):
    """Lognormal latency given by its median and p99, seconds."""

    p50_s: PositiveFloat
    p99_s: PositiveFloat

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.p99_s < self.p50_s:
            raise ValueError(f"p99_s ({self.p99_s}) is below p50_s ({self.p50_s})")
        return self


# ---------------------------------------------------------------- hosted APIs

# Assumptions, not vendor rules (none in FACTS.md): a video is billed as 1 frame/s of
# images of the frame size, audio as 25 tokens/s like Qwen2.5-Omni's encoder (FACTS.md section 2).
API_VIDEO_FPS = 1.0
API_AUDIO_TOKENS_PER_S = 25.0


class ApiInput(NamedTuple):
    """What one call sends to a hosted API: text tokens, images (width_px, height_px), video, audio seconds."""

    text_tokens: int
    images: tuple[tuple[int, int], ...] = ()
    video_s: float = 0.0
    video_frame_px: tuple[int, int] = (0, 0)
    audio_s: float = 0.0


class ApiBill(NamedTuple):
    """What the vendor charges for one call: billed input and output tokens, and USD."""

    input_tokens: int
    output_tokens: int
    usd: float


class ApiRateLimits(StrictModel):
    """Requests and tokens an account may send per minute; ``None``: not limited (or not known)."""

    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = Field(
        None, description="Billed input tokens plus output tokens per minute (one budget for both)")
    tier: str = Field("", description="The account tier the limits are those of, e.g. 'OpenAI usage tier 5'")
    source: str = ""
    unverified: bool = True


class HostedApi(StrictModel):
    """A hosted model priced per token, for build-versus-buy comparisons.

    The one place an API call is priced (``billed_input_tokens`` and
    ``price_usd``; ``bill`` gives both) and timed (``median_ttft_s``, ``ttft``'s
    shape, ``generation_s``); the simulator asks these methods.
    Latency: TTFT is lognormal around a median that grows with the input,
    ``base + prefill rate x input tokens + per-image cost``, where the base is
    set so the median at ``ttft_reference_input_tokens`` of text is ``ttft.p50_s``
    (the published figure); ``ttft.p99_s / ttft.p50_s`` keeps the tail at every size.
    Then ``tpot_s`` per further output token. Seconds, tokens, USD.
    """

    id: str
    name: str
    usd_per_m_input_tokens: NonNegativeFloat
    usd_per_m_output_tokens: NonNegativeFloat
    image_tokens: Literal["openai_tiles", "pixels_per_750", "fixed_258"] = Field(
        description="How the vendor bills an image in input tokens (FACTS.md section 4)"
    )
    image_token_multiplier: PositiveFloat = Field(
        1.0, description="Billed image tokens per rule token (GPT-4o mini bills ~33.33x the GPT-4o count)"
    )
    ttft: LatencyDistribution = Field(description="TTFT at the reference input (text only), seconds")
    ttft_reference_input_tokens: PositiveInt = Field(
        1000, description="Text input tokens at which ``ttft`` was measured (latency leaderboards use ~1k)")
    prefill_s_per_1k_input_tokens: NonNegativeFloat = Field(
        description="TTFT added per 1,000 input tokens the model reads (text, and images by the rule, "
                    "without the price multiplier), seconds")
    ttft_s_per_image: NonNegativeFloat = Field(description="TTFT added per image or video frame, seconds")
    tpot_s: PositiveFloat = Field(description="Mean time per output token, seconds")
    rate_limits: ApiRateLimits | None = Field(None, description="Per-account limits; None: not known (unlimited)")
    quality: tuple[QualityScore, ...] = ()
    source: str
    unverified: bool = True

    @model_validator(mode="after")
    def _positive_base_ttft(self) -> Self:
        if self.base_ttft_s <= 0:
            raise ValueError(
                f"ttft.p50_s ({self.ttft.p50_s} s) must exceed the prefill of the reference input "
                f"({self.ttft_reference_input_tokens} tokens x {self.prefill_s_per_1k_input_tokens} s per 1k)")
        return self

    def billed_image_tokens(self, width_px: int, height_px: int) -> int:
        """Input tokens this API bills for one ``width_px`` x ``height_px`` image."""
        return round(self.read_image_tokens(width_px, height_px) * self.image_token_multiplier)

    def read_image_tokens(self, width_px: int, height_px: int) -> int:
        """Tokens the model reads for one image: the vendor's rule without the price multiplier."""
        return api_image_tokens(self.image_tokens, width_px, height_px)

    def billed_input_tokens(self, call: ApiInput) -> int:
        """Input tokens the vendor bills for ``call``."""
        return self._input_tokens(call, self.billed_image_tokens)

    def price_usd(self, billed_input_tokens: int, output_tokens: int) -> float:
        """USD for billed input tokens and output tokens at the list prices."""
        return api_cost_usd(billed_input_tokens, output_tokens, self.usd_per_m_input_tokens,
                            self.usd_per_m_output_tokens)

    def bill(self, call: ApiInput, output_tokens: int) -> ApiBill:
        """Billed tokens and USD of one call producing ``output_tokens``."""
        input_tokens = self.billed_input_tokens(call)
        return ApiBill(input_tokens, output_tokens, self.price_usd(input_tokens, output_tokens))

    @property
    def base_ttft_s(self) -> float:
        """Median TTFT of an empty call: the published p50 less the reference input's prefill."""
        return self.ttft.p50_s - self.prefill_s_per_1k_input_tokens * self.ttft_reference_input_tokens / 1000

    def median_ttft_s(self, call: ApiInput) -> float:
        """Median TTFT of ``call``: base + prefill of the tokens read + per-image cost (frames count as images)."""
        read_tokens = self._input_tokens(call, self.read_image_tokens)
        images = len(call.images) + video_frames(call.video_s)
        return (self.base_ttft_s + self.prefill_s_per_1k_input_tokens * read_tokens / 1000
                + self.ttft_s_per_image * images)

    def generation_s(self, output_tokens: int) -> float:
        """Time from the first output token to the last."""
        return self.tpot_s * max(0, output_tokens - 1)

    def _input_tokens(self, call: ApiInput, per_image: Callable[[int, int], int]) -> int:
        """Text + images + video frames + audio, images counted by ``per_image``."""
        tokens = call.text_tokens
        for width_px, height_px in call.images:
            tokens += per_image(width_px, height_px)
        frames = video_frames(call.video_s)
        if frames:
            tokens += frames * per_image(*call.video_frame_px)
        if call.audio_s > 0:
            tokens += math.ceil(call.audio_s * API_AUDIO_TOKENS_PER_S)
        return tokens


def video_frames(video_s: float) -> int:
    """Frames an API call sends for ``video_s`` seconds of video (at least one for any video)."""
    return max(1, math.ceil(video_s * API_VIDEO_FPS)) if video_s > 0 else 0
