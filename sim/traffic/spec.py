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

from typing import Annotated, Literal

from pydantic import (
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from profiles.base import StrictModel

SECONDS_PER_DAY = 86_400.0
MAX_RATE_RPS = 1e6  # far above any deployment; keeps a chunk's draws bounded
MAX_REQUESTS = 10_000_000  # offline batch size, closed-loop users


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
    fps: PositiveFloat = 2.0
    width_px: Size = 640
    height_px: Size = 360


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


class OnOffBursts(TrafficModel):
    """Alternating calm and burst periods (exponential lengths); bursts run ``burst_multiplier`` x faster."""

    kind: Literal["onoff"] = "onoff"
    burst_multiplier: float = Field(gt=1.0, le=1000.0, description="Burst rate / calm rate")
    mean_burst_s: PositiveFloat
    mean_gap_s: PositiveFloat = Field(description="Mean calm period between bursts, seconds")


class MmppState(TrafficModel):
    """One state of a Markov-modulated Poisson process: a relative rate and a mean stay."""

    rate_multiplier: NonNegativeFloat = Field(le=1000.0)
    mean_sojourn_s: PositiveFloat


class MmppBursts(TrafficModel):
    """Markov-modulated Poisson: the rate follows a continuous-time Markov chain over ``states``.

    ``transitions[i][j]`` is the probability that state i jumps to j (rows sum to
    1, zero diagonal); omitted means "to any other state, equally likely".
    """

    kind: Literal["mmpp"] = "mmpp"
    states: list[MmppState] = Field(min_length=2)
    transitions: list[list[NonNegativeFloat]] | None = None

    @model_validator(mode="after")
    def _valid_chain(self) -> "MmppBursts":
        if sum(s.rate_multiplier for s in self.states) <= 0:
            raise ValueError("every state has rate_multiplier 0")
        if self.transitions is None:
            return self
        size = len(self.states)
        if len(self.transitions) != size or any(len(row) != size for row in self.transitions):
            raise ValueError(f"transitions must be a {size}x{size} matrix")
        for i, row in enumerate(self.transitions):
            if row[i] != 0:
                raise ValueError(f"transitions[{i}][{i}] must be 0 (a jump leaves its state)")
            if abs(sum(row) - 1.0) > 1e-6:
                raise ValueError(f"transitions[{i}] sums to {sum(row):g}, not 1")
        return self


Bursts = Annotated[OnOffBursts | MmppBursts, Field(discriminator="kind")]


def _one_rate(per_s: float | None, per_day: float | None, names: str) -> None:
    """Exactly one of a per-second and a per-day rate must be given."""
    if (per_s is None) == (per_day is None):
        raise ValueError(f"give exactly one of {names}")


class PoissonArrivals(TrafficModel):
    """Open-loop Poisson arrivals at a constant mean rate, optionally bursty."""

    kind: Literal["poisson"] = "poisson"
    rate_rps: PositiveFloat | None = Field(None, le=MAX_RATE_RPS)
    requests_per_day: PositiveFloat | None = Field(None, le=MAX_RATE_RPS * SECONDS_PER_DAY)
    bursts: Bursts | None = None

    @model_validator(mode="after")
    def _rate_given(self) -> "PoissonArrivals":
        _one_rate(self.rate_rps, self.requests_per_day, "rate_rps, requests_per_day")
        return self

    @property
    def mean_rate_rps(self) -> float:
        """Mean offered rate of the whole mix, requests/s."""
        return self.rate_rps or self.requests_per_day / SECONDS_PER_DAY


class DiurnalArrivals(TrafficModel):
    """Non-homogeneous Poisson arrivals following a 24-hour curve, optionally bursty.

    The curve is either ``hourly_weights`` (24 relative weights, hour 0 = midnight,
    interpolated linearly between hour centres) or a sinusoid with
    ``peak_to_trough`` ratio peaking at ``peak_hour``. The daily mean is the given rate.
    """

    kind: Literal["diurnal"] = "diurnal"
    requests_per_day: PositiveFloat | None = Field(None, le=MAX_RATE_RPS * SECONDS_PER_DAY)
    mean_rate_rps: PositiveFloat | None = Field(None, le=MAX_RATE_RPS)
    hourly_weights: list[NonNegativeFloat] | None = Field(None, min_length=24, max_length=24)
    peak_to_trough: float | None = Field(None, ge=1.0, le=1000.0)
    peak_hour: float = Field(14.0, ge=0.0, lt=24.0)
    bursts: Bursts | None = None

    @model_validator(mode="after")
    def _curve_given(self) -> "DiurnalArrivals":
        _one_rate(self.mean_rate_rps, self.requests_per_day, "mean_rate_rps, requests_per_day")
        if (self.hourly_weights is None) == (self.peak_to_trough is None):
            raise ValueError("give exactly one of hourly_weights, peak_to_trough")
        if self.hourly_weights is not None and sum(self.hourly_weights) <= 0:
            raise ValueError("hourly_weights sum to 0")
        return self

    @property
    def daily_mean_rps(self) -> float:
        """Mean offered rate over the day, requests/s."""
        return self.mean_rate_rps or self.requests_per_day / SECONDS_PER_DAY


class ClosedLoopArrivals(TrafficModel):
    """A fixed number of users; each sends its next request when the last returns, after a think time."""

    kind: Literal["closed_loop"] = "closed_loop"
    users: PositiveInt = Field(le=MAX_REQUESTS)
    think_time_s: Size = 0.0


class OfflineArrivals(TrafficModel):
    """All ``requests`` at time zero (a batch job: measures maximum throughput)."""

    kind: Literal["offline"] = "offline"
    requests: PositiveInt = Field(le=MAX_REQUESTS)


class TraceArrivals(TrafficModel):
    """Replay a trace file (see planner/traces.py for the formats).

    ``time_scale`` 10 replays ten times faster (timestamps divided by 10);
    ``window_s`` keeps [start, end) seconds from the trace's first record
    (before scaling); ``rate_multiplier`` thins (< 1) or duplicates (> 1)
    requests reproducibly. Formats without a class column put every request in
    ``class_name``. A relative ``path`` is relative to the scenario file.
    """

    kind: Literal["trace"] = "trace"
    path: str = Field(min_length=1)
    format: Literal["vlmplan", "azure", "burstgpt"] = "vlmplan"
    time_scale: PositiveFloat = 1.0
    window_s: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    rate_multiplier: PositiveFloat = Field(1.0, le=1000.0)
    class_name: str = Field("trace", min_length=1)

    @field_validator("window_s")
    @classmethod
    def _window_ordered(cls, window: tuple[float, float] | None) -> tuple[float, float] | None:
        if window is not None and window[1] <= window[0]:
            raise ValueError(f"window end {window[1]} is not after start {window[0]}")
        return window


Arrivals = Annotated[
    PoissonArrivals | DiurnalArrivals | ClosedLoopArrivals | OfflineArrivals | TraceArrivals,
    Field(discriminator="kind"),
]


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
        names = [c.name for c in self.classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate class names: {', '.join(duplicates)}")
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
