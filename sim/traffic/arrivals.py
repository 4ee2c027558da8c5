"""How requests arrive: arrival processes tagged by ``kind``, and burst modulation.

Open loop: ``poisson`` (constant mean rate) and ``diurnal`` (a 24-hour curve),
both optionally ``bursts`` (on/off or Markov-modulated; multipliers are
normalised so the stated mean holds); ``offline`` (all at t=0);
``trace`` (replay a file). Closed loop: ``closed_loop`` (fixed users, think
time). Units: seconds, requests per second (``_rps``) or per day.
"""

from typing import Annotated, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from sim.limits import (
    MAX_CLOSED_LOOP_USERS,
    MAX_IMAGE_SIDE_PX,
    MAX_OFFLINE_REQUESTS,
    MAX_RATE_RPS,
    MIN_BURST_PERIOD_S,
    SECONDS_PER_DAY,
)
from sim.traffic.sizes import Size, TrafficModel, Uniform


class OnOffBursts(TrafficModel):
    """Alternating calm and burst periods (exponential lengths); bursts run ``burst_multiplier`` x faster."""

    kind: Literal["onoff"] = "onoff"
    burst_multiplier: float = Field(gt=1.0, le=1000.0, description="Burst rate / calm rate")
    mean_burst_s: float = Field(ge=MIN_BURST_PERIOD_S)
    mean_gap_s: float = Field(ge=MIN_BURST_PERIOD_S, description="Mean calm period between bursts, seconds")


class MmppState(TrafficModel):
    """One state of a Markov-modulated Poisson process: a relative rate and a mean stay."""

    rate_multiplier: NonNegativeFloat = Field(le=1000.0)
    mean_sojourn_s: float = Field(ge=MIN_BURST_PERIOD_S)


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


def _per_second(rate_rps: float | None, requests_per_day: float | None) -> float:
    """A rate given per second or per day, in requests/s (the validators require exactly one)."""
    if rate_rps is not None:
        return rate_rps
    assert requests_per_day is not None
    return requests_per_day / SECONDS_PER_DAY


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
        return _per_second(self.rate_rps, self.requests_per_day)


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
        return _per_second(self.mean_rate_rps, self.requests_per_day)


# The benchmark client's own time between one response and the next request reaching
# the server: its event loop hands the freed concurrency slot to the next task, which
# builds and sends the HTTP request (vLLM `vllm bench serve --max-concurrency`: an
# asyncio semaphore around each request, vllm/benchmarks/serve.py; AIPerf: a credit
# returned to the timing manager and issued to a worker). Sub-millisecond on a
# loopback connection; an estimate, not a measurement. Drawn per request, so users
# that finish in the same engine step do not all arrive at the same instant.
CLIENT_OVERHEAD_S = Uniform(low=0.0, high=1e-3)


class ClosedLoopArrivals(TrafficModel):
    """A fixed number of users; each sends its next request when the last returns, after a think time.

    This is how benchmark tools run a fixed concurrency (vLLM's ``bench serve
    --max-concurrency``, AIPerf ``--concurrency``). ``ramp_up_s`` starts the users
    evenly over that time (AIPerf ``--concurrency-ramp-duration`` raises the
    concurrency in steps from 1 to ``users``); 0, the tools' default, starts them
    all at once. ``client_overhead_s`` is drawn before every request (the first
    included) on top of the think time.

    Why all at once by default, as the tools do: ``vllm bench serve``
    (vllm/benchmarks/serve.py) creates one task per prompt at the default
    ``--request-rate inf`` (no delay between them), each waiting on an
    ``asyncio.Semaphore(max_concurrency)``, after a single ready-check prompt and
    ``--num-warmups`` 0; AIPerf's concurrency mode issues its credits back to back
    (timing/strategies/request_rate.py, zero interval) and ramps only when asked
    (docs/tutorials/ramping.md: "Default: No ramping"); both finish their
    warm-up requests before the timed ones start. Users that start together with
    fixed lengths then finish together and come back together (lock step);
    lengths drawn per request (``vllm bench serve --random-range-ratio``) spread
    them apart. Replaying AIConfigurator's silicon runs with each run's own
    client settings (README, "Closed loops as benchmark tools run them") gives
    a dense median TTFT error of 18.9 %, against 70.0 % before those settings.
    """

    kind: Literal["closed_loop"] = "closed_loop"
    users: PositiveInt = Field(le=MAX_CLOSED_LOOP_USERS)
    think_time_s: Size = 0.0
    ramp_up_s: NonNegativeFloat = Field(0.0, description="Users start evenly over this time, seconds")
    client_overhead_s: Size = Field(CLIENT_OVERHEAD_S, description="Client time before each request, seconds")


class OfflineArrivals(TrafficModel):
    """All ``requests`` at time zero (a batch job: measures maximum throughput)."""

    kind: Literal["offline"] = "offline"
    requests: PositiveInt = Field(le=MAX_OFFLINE_REQUESTS)


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
    format: Literal["vlmplan", "azure", "burstgpt", "mooncake", "azure_lmm", "servegen"] = "vlmplan"
    time_scale: PositiveFloat = 1.0
    window_s: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    rate_multiplier: PositiveFloat = Field(1.0, le=1000.0)
    class_name: str = Field("trace", min_length=1)
    image_px: tuple[Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE_PX)],
                    Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE_PX)]] | None = Field(
        None, description="Width and height of each image of a trace that counts images without sizes "
                          "(azure_lmm: required); for servegen, instead of a square of its image tokens")

    @field_validator("window_s")
    @classmethod
    def _window_ordered(cls, window: tuple[float, float] | None) -> tuple[float, float] | None:
        if window is not None and window[1] <= window[0]:
            raise ValueError(f"window end {window[1]} is not after start {window[0]}")
        return window

    @model_validator(mode="after")
    def _image_size_known(self) -> "TraceArrivals":
        if self.format == "azure_lmm" and self.image_px is None:
            raise ValueError("format azure_lmm counts images without sizes: set image_px: [WIDTH, HEIGHT]")
        return self


Arrivals = Annotated[
    PoissonArrivals | DiurnalArrivals | ClosedLoopArrivals | OfflineArrivals | TraceArrivals,
    Field(discriminator="kind"),
]
