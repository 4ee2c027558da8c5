"""Input sizes of requests: a number, or a distribution tagged by ``kind``.

Distributions: fixed, uniform, normal, lognormal (median and log-space sigma)
and empirical (values with weights). ``ImageSpec``/``VideoSpec`` group the
sizes of a request's images and video. Units: pixels, seconds, tokens.
"""

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, NonNegativeFloat, PositiveFloat, model_validator

from profiles.base import StrictModel
from sim.limits import MAX_VIDEO_FPS


class TrafficModel(StrictModel):
    """Base of the traffic schemas: strict, frozen, and numbers must be finite."""

    model_config = ConfigDict(allow_inf_nan=False)


class Fixed(TrafficModel):
    """Always ``value``."""

    kind: Literal["fixed"] = "fixed"
    value: NonNegativeFloat


class Uniform(TrafficModel):
    """Uniform on [``low``, ``high``] (integer fields round the draw)."""

    kind: Literal["uniform"] = "uniform"
    low: NonNegativeFloat
    high: NonNegativeFloat

    @model_validator(mode="after")
    def _ordered(self) -> "Uniform":
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        return self


class Normal(TrafficModel):
    """Normal(``mean``, ``std``), clipped to [``min``, ``max``] and to the field's own floor."""

    kind: Literal["normal"] = "normal"
    mean: NonNegativeFloat
    std: NonNegativeFloat
    min: NonNegativeFloat | None = None
    max: NonNegativeFloat | None = None


class LogNormal(TrafficModel):
    """Lognormal with the given ``median`` and log-space ``sigma``; p99 = median * exp(2.326 sigma)."""

    kind: Literal["lognormal"] = "lognormal"
    median: PositiveFloat
    sigma: NonNegativeFloat = Field(le=10.0)
    min: NonNegativeFloat | None = None
    max: NonNegativeFloat | None = None


class Empirical(TrafficModel):
    """One of ``values``, with probabilities proportional to ``weights`` (equal if omitted)."""

    kind: Literal["empirical"] = "empirical"
    values: list[NonNegativeFloat] = Field(min_length=1)
    weights: list[NonNegativeFloat] | None = None

    @model_validator(mode="after")
    def _weights_match(self) -> "Empirical":
        if self.weights is None:
            return self
        if len(self.weights) != len(self.values):
            raise ValueError(f"{len(self.weights)} weights for {len(self.values)} values")
        if sum(self.weights) <= 0:
            raise ValueError("weights sum to 0")
        return self


Distribution = Annotated[Fixed | Uniform | Normal | LogNormal | Empirical, Field(discriminator="kind")]
# A size is a plain number (fixed) or a distribution.
Size = NonNegativeFloat | Distribution


class ImageSpec(TrafficModel):
    """``count`` images per request, each ``width_px`` x ``height_px`` (each drawn per image)."""

    count: Size = 1
    width_px: Size
    height_px: Size


class VideoSpec(TrafficModel):
    """A video clip of ``seconds``, offered at ``fps`` frames per second, frames ``width_px`` x ``height_px``."""

    seconds: Size
    fps: PositiveFloat = Field(2.0, le=MAX_VIDEO_FPS)
    width_px: Size = 640
    height_px: Size = 360
