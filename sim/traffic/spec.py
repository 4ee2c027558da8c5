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

from pydantic import Field, NonNegativeFloat, NonNegativeInt, model_validator

from sim.limits import listed
from sim.traffic.arrivals import SECONDS_PER_DAY, Arrivals
from sim.traffic.sizes import ImageSpec, Size, TrafficModel, VideoSpec

MAX_TURNS = 1000  # turns of one conversation (a longer draw is cut here)


class FollowUp(TrafficModel):
    """What each turn after a conversation's first sends besides the history (default: no images, no audio)."""

    images: ImageSpec | None = None
    audio_s: Size = 0.0
    text_tokens: Size = Field(description="New text tokens of the turn (the user's next message)")
    output_tokens: Size | None = Field(None, description="Answer tokens; default: the class's output_tokens")


class SessionSpec(TrafficModel):
    """A conversation: ``turns`` requests, each prompt the whole history plus the new input.

    A turn is sent ``think_time_s`` after the previous answer came back;
    turns that would start after the horizon are not sent. The class's rate
    counts requests (turns): conversations start at rate / mean turns.
    Earlier turns' images, audio and text are re-sent; a video clip is not.

    An agent task (seed 001) is a conversation too: each step's prompt is the
    task, every earlier step's output and tool result; ``think_time_s`` is the
    tool's latency and ``follow_up.text_tokens`` its result. A task succeeds
    with ``success_probability``; a failed one is tried again from its first
    request, up to ``max_retries`` times.
    """

    turns: Size = Field(description="Turns per conversation (at least 1 is drawn, at most 1,000)")
    think_time_s: Size = Field(0.0, description="User's time between an answer and the next turn, seconds")
    follow_up: FollowUp | None = Field(None, description="Inputs of later turns; default: the first turn's kind")
    success_probability: float = Field(1.0, ge=0.0, le=1.0, description="Share of tasks (conversations) that "
                                                                          "succeed; agents: 0.70-0.85 (seed 001)")
    max_retries: NonNegativeInt = Field(0, le=100, description="A failed task is tried again up to this many times")

    @property
    def is_task(self) -> bool:
        """Whether conversations are tasks that can fail (success and retries are reported)."""
        return self.success_probability < 1.0 or self.max_retries > 0


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
    system_prompt_tokens: NonNegativeInt = Field(
        0, description="Tokens of a system prompt every request of the class starts with (the same text: "
                       "prefix caching can reuse it), before text_tokens")
    session: SessionSpec | None = Field(None, description="Requests are turns of conversations")
    description: str = ""

    @property
    def has_context(self) -> bool:
        """Whether requests carry context before their own input (a system prompt, conversation history)."""
        return self.system_prompt_tokens > 0 or self.session is not None


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
