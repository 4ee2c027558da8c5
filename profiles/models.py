"""Model architectures assembled from components, and hosted APIs.

A ``ModelSpec`` names its components by catalog id or defines them inline;
``profiles.catalog.Catalog.model`` turns it into a ``ResolvedModel`` whose
components are all objects. Quality scores carry their source so plans can
weigh quality against cost.
"""

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat

from profiles.base import StrictModel
from profiles.components import AudioEncoder, Connector, Decoder, VisionEncoder
from profiles.tokens import ImagePolicy, VideoPolicy, api_image_tokens

Precision = Literal["bf16", "fp8", "int4"]


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
    preprocess: CpuPreprocess | None
    quality: tuple[QualityScore, ...]
    source: str
    unverified: tuple[str, ...]


class LatencyDistribution(StrictModel):
    """Lognormal latency given by its median and p99, seconds."""

    p50_s: PositiveFloat
    p99_s: PositiveFloat


class HostedApi(StrictModel):
    """A hosted model priced per token, for build-versus-buy comparisons."""

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
    ttft: LatencyDistribution
    tpot_s: PositiveFloat = Field(description="Mean time per output token, seconds")
    quality: tuple[QualityScore, ...] = ()
    source: str
    unverified: bool = True

    def billed_image_tokens(self, width_px: int, height_px: int) -> int:
        """Input tokens this API bills for one ``width_px`` x ``height_px`` image."""
        return round(api_image_tokens(self.image_tokens, width_px, height_px) * self.image_token_multiplier)
