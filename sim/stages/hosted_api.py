"""A hosted-API stage: per-token prices and a latency distribution, no GPUs of our own.

Latency: TTFT lognormal with the catalog's p50/p99, then ``tpot_s`` per
further output token; ``max_concurrency`` (a rate limit) queues requests
FIFO. Spend: input tokens (text, images by the vendor's billing rule,
video frames sampled at 1 fps and audio at 25 tokens/s, both assumptions)
and output tokens at the per-million prices. Seconds, USD.
"""

import math
from typing import cast

import simpy

from profiles.models import HostedApi
from profiles.tokens import api_image_tokens
from sim.deployment import HostedApiStage
from sim.draws import Draws, lognormal_from_p50_p99
from sim.fifo import FifoServers
from sim.journey import Journey
from sim.request import Request
from sim.stages.base import StageRuntime

# Assumptions (no vendor rule in FACTS.md): video billed as 1 frame/s of images,
# audio as 25 tokens/s like Qwen2.5-Omni's encoder (FACTS.md section 2).
API_VIDEO_FPS = 1.0
API_AUDIO_TOKENS_PER_S = 25.0


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
        self.mu, self.sigma = lognormal_from_p50_p99(api.ttft.p50_s, api.ttft.p99_s)
        self.input_tokens = 0
        self.output_tokens = 0
        self._image_cache: dict[tuple[int, int], int] = {}

    def submit(self, journey: Journey, now_s: float) -> None:
        """Bill the call, draw its latency, queue it behind the rate limit."""
        output = self.spec.output_tokens or journey.request.output_tokens
        tokens_in = self.billed_input_tokens(journey)
        self.input_tokens += tokens_in
        self.output_tokens += output
        self.api_usd += (tokens_in * self.api.usd_per_m_input_tokens + output * self.api.usd_per_m_output_tokens) / 1e6
        ttft_s = math.exp(self.mu + self.sigma * self.draws.normal())
        total_s = ttft_s + self.api.tpot_s * (output - 1)
        start_s, finish_s = self.calls.admit(now_s, total_s)
        journey.queue_s += start_s - now_s
        event = self.env.timeout(finish_s - now_s, (journey, start_s + ttft_s, output))
        event.callbacks.append(self._answered)

    def _answered(self, event: simpy.Event) -> None:
        journey, first_token_s, output = cast(tuple[Journey, float, int], event.value)
        self.first_token_at(journey, first_token_s)
        self.depart(journey, self.env.now, output)

    def billed_input_tokens(self, journey: Journey) -> int:
        """Input tokens the vendor bills for the request at this hop."""
        request: Request = journey.request
        tokens = request.text_tokens + journey.prev_output_tokens
        if self.spec.text_only_input:
            return tokens
        tokens += sum(self._image_tokens(size) for size in request.images)
        if request.video_s > 0:
            frames = max(1, math.ceil(request.video_s * API_VIDEO_FPS))
            tokens += frames * self._image_tokens(request.video_frame_px)
        return tokens + math.ceil(request.audio_s * API_AUDIO_TOKENS_PER_S)

    def _image_tokens(self, size: tuple[int, int]) -> int:
        found = self._image_cache.get(size)
        if found is None:
            found = self._image_cache[size] = api_image_tokens(self.api.image_tokens, size[0], size[1])
        return found

    def stage_metrics(self, span_s: float) -> dict:
        """Tokens billed and the spend over the simulated span."""
        return {"api": self.api.id, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "api_usd": self.api_usd}
