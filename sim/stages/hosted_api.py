"""A hosted-API stage: calls priced and timed by the API's catalog entry, no GPUs of our own.

The catalog's ``HostedApi`` is the one rule for both: ``billed_input_tokens``
and ``price_usd`` give a call's billed tokens and USD (images by the vendor's
rule and multiplier), ``median_ttft_s`` its median time to first token, which
grows with the input; a lognormal draw around it with the catalog's p99/p50
shape keeps the tail, then ``tpot_s`` per further output token. The
account's rate limits (requests and tokens per minute, the catalog's or the
stage's own) make a call wait for room or fail, as ``on_rate_limit`` says
(a call needing more tokens than a minute allows always fails);
``max_concurrency`` queues calls FIFO on the client side. A call is billed
once, when it is accepted; a failed call is rejected (an SLO miss) and not
billed. Seconds, USD.
"""

import math
from typing import cast

import simpy

from profiles.models import ApiInput, ApiRateLimits, HostedApi
from sim.deployment import HostedApiStage
from sim.draws import Draws, lognormal_from_p50_p99
from sim.fifo import FifoServers
from sim.journey import Journey
from sim.ratelimit import RateLimiter
from sim.stages.base import StageRuntime


class HostedApiRuntime(StageRuntime):
    """Calls to one hosted model."""

    kind = "hosted_api"

    def __init__(self, spec: HostedApiStage, api: HostedApi, env: simpy.Environment, draws: Draws) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.api = api
        self.env = env
        self.draws = draws
        self.calls = FifoServers(spec.max_concurrency)
        self.ttft_sigma = lognormal_from_p50_p99(api.ttft.p50_s, api.ttft.p99_s)[1]
        self.limits = spec.rate_limits if spec.rate_limits is not None else api.rate_limits
        self.limiter = (RateLimiter(self.limits.requests_per_minute, self.limits.tokens_per_minute)
                        if self.limits is not None else None)
        self.input_tokens = 0
        self.output_tokens = 0
        self.rate_limit_waits = 0  # calls that waited for the rate limits
        self.rate_limit_wait_s = 0.0
        self.rate_limit_failures = 0  # calls refused (on_rate_limit: fail, or too large for a minute's tokens)
        self._quotes: dict[ApiInput, tuple[int, float]] = {}

    def submit(self, journey: Journey, now_s: float) -> None:
        """Pass the rate limits, bill the call, draw its latency, queue it behind ``max_concurrency``."""
        output = self.spec.output_tokens or journey.request.output_tokens
        input_tokens, median_ttft_s = self._quote(self.call_of(journey))
        sent_s = self._pass_rate_limits(now_s, input_tokens + output)
        if sent_s is None:
            self.rate_limit_failures += 1
            self.reject(journey, now_s)
            return
        self.input_tokens += input_tokens
        self.output_tokens += output
        self.api_usd += self.api.price_usd(input_tokens, output)
        ttft_s = median_ttft_s * math.exp(self.ttft_sigma * self.draws.normal())
        start_s, finish_s = self.calls.admit(sent_s, ttft_s + self.api.generation_s(output))
        journey.queue_s += start_s - now_s
        if finish_s > self.serve_until_s:  # answered after the run ends: unfinished, without an event in memory
            self.beyond_end += 1
            return
        event = self.env.timeout(finish_s - now_s, (journey, start_s + ttft_s, output))
        event.callbacks.append(self._answered)

    def _quote(self, call: ApiInput) -> tuple[int, float]:
        """The API's billed input tokens and median TTFT for ``call`` (remembered: calls repeat)."""
        found = self._quotes.get(call)
        if found is None:
            found = self._quotes[call] = (self.api.billed_input_tokens(call), self.api.median_ttft_s(call))
        return found

    def _pass_rate_limits(self, now_s: float, tokens: int) -> float | None:
        """When the call may be sent (``now_s`` or later), or None when it fails."""
        limiter = self.limiter
        if limiter is None:
            return now_s
        if not limiter.fits(tokens):
            return None  # more tokens than a whole minute's allowance: an error whatever the mode
        if self.spec.on_rate_limit == "fail":
            return now_s if limiter.admit_now(now_s, tokens) else None
        sent_s = limiter.start_s(now_s, tokens)
        if sent_s > now_s:
            self.rate_limit_waits += 1
            self.rate_limit_wait_s += sent_s - now_s
        return sent_s

    def _answered(self, event: simpy.Event) -> None:
        journey, first_token_s, output = cast(tuple[Journey, float, int], event.value)
        self.first_token_at(journey, first_token_s)
        self.depart(journey, self.env.now, output)

    def call_of(self, journey: Journey) -> ApiInput:
        """What the request sends at this hop: its text (and the previous stage's output), and its media,
        after its context (a system prompt, a conversation's earlier turns), which the API bills again."""
        request = journey.request
        context = request.context
        text_tokens = request.text_tokens + journey.prev_output_tokens
        if not context:  # most calls: no generator objects per request (this runs once per call)
            if self.spec.text_only_input:
                return ApiInput(text_tokens)
            return ApiInput(text_tokens, request.images, request.video_s, request.video_frame_px, request.audio_s)
        text_tokens += sum(part[3] for part in context)
        if self.spec.text_only_input:
            return ApiInput(text_tokens)
        images = tuple(image for part in context for image in part[1]) + request.images
        audio_s = request.audio_s + sum(part[2] for part in context)
        return ApiInput(text_tokens, images, request.video_s, request.video_frame_px, audio_s)

    def stage_metrics(self, span_s: float) -> dict:
        """Tokens billed, the spend, and the rate limits in force with what they did."""
        limits = self.limits or ApiRateLimits()
        return {"api": self.api.id, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "api_usd": self.api_usd, "usd_per_m_input_tokens": self.api.usd_per_m_input_tokens,
                "usd_per_m_output_tokens": self.api.usd_per_m_output_tokens,
                "requests_per_minute": limits.requests_per_minute,
                "tokens_per_minute": limits.tokens_per_minute, "rate_limit_tier": limits.tier or None,
                "on_rate_limit": self.spec.on_rate_limit, "rate_limit_waits": self.rate_limit_waits,
                "rate_limit_wait_s": self.rate_limit_wait_s, "rate_limit_failures": self.rate_limit_failures}
