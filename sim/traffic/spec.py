"""What traffic looks like: request classes, their input sizes, and how requests arrive.

A ``TrafficSpec`` is a mix of ``RequestClass``es (each with a ``share``) and
one arrival process (``arrivals``, tagged by ``kind``). Every size is either a
plain number or a distribution tagged by ``kind`` (fixed, uniform, normal,
lognormal, empirical). Units: pixels, seconds, tokens, requests per second
(``_rps``) or per day.

Rates are offered load for the whole mix; class ``c`` receives
``share_c / sum(shares)`` of it. Bursts redistribute load in time but keep
the stated mean (their multipliers are normalised to a stationary mean of 1).
"""

from collections import Counter

from pydantic import Field, NonNegativeFloat, model_validator

from sim.limits import listed
from sim.traffic.arrivals import SECONDS_PER_DAY, Arrivals
from sim.traffic.sizes import ImageSpec, Size, TrafficModel, VideoSpec


class RequestClass(TrafficModel):
    """One kind of request in the mix and the raw inputs it carries."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    share: NonNegativeFloat = Field(1.0, description="Relative weight in the mix (normalised)")
    images: ImageSpec | None = None
    audio_s: Size = 0.0
    video: VideoSpec | None = None
    text_tokens: Size = Field(description="Prompt text tokens (instructions, chat history)")
    output_tokens: Size = Field(description="Generated tokens; at least 1 is drawn")
    tier: str = Field("default", description='What the router may read, e.g. "high_res"')
    description: str = ""


class TrafficSpec(TrafficModel):
    """The request mix and its arrival process.

    ``start_s`` is the time of day (seconds after midnight) at simulated time 0;
    it positions the diurnal curve so a short horizon can cover the peak hours.
    """

    classes: list[RequestClass] = Field(default_factory=list)
    arrivals: Arrivals
    start_s: float = Field(0.0, ge=0.0, lt=SECONDS_PER_DAY)

    @model_validator(mode="after")
    def _consistent_mix(self) -> "TrafficSpec":
        duplicates = sorted(name for name, count in Counter(c.name for c in self.classes).items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate class names: {listed(duplicates)}")
        if self.arrivals.kind == "trace":
            return self
        if not self.classes:
            raise ValueError(f"arrivals of kind '{self.arrivals.kind}' need at least one class")
        if sum(c.share for c in self.classes) <= 0:
            raise ValueError("class shares sum to 0")
        return self

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the declared classes, in file order."""
        return tuple(c.name for c in self.classes)

    def shares(self) -> dict[str, float]:
        """Normalised share of each class (sums to 1)."""
        total = sum(c.share for c in self.classes)
        return {c.name: c.share / total for c in self.classes}
