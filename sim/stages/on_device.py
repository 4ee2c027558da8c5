"""An on-device stage: every user runs the model on their own device, one request at a time.

No queue across users and no server cost; each request takes CPU
preprocessing + encoder + prefill at batch 1, then ``output - 1`` decode
steps at batch 1 (timed at the mean KV length). The model must fit the
device memory (``perf_model`` raises ``ConfigurationError`` otherwise); a
request whose prompt and output exceed the device's KV capacity is
rejected. Seconds.
"""

from typing import cast

import simpy

from profiles.perf.base import PerfModel
from sim.deployment import OnDeviceStage
from sim.journey import Journey
from sim.stages.base import StageRuntime
from sim.workload import Work, WorkCounter


class OnDeviceRuntime(StageRuntime):
    """Unlimited independent devices of one kind."""

    kind = "on_device"

    def __init__(self, spec: OnDeviceStage, perf: PerfModel, work: WorkCounter, env: simpy.Environment) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.perf = perf
        self.work = work
        self.env = env
        self.busy_s = 0.0
        self._timing: dict[tuple, tuple[float, float] | None] = {}

    def submit(self, journey: Journey, now_s: float) -> None:
        """Run the request on the user's device."""
        output = self.spec.output_tokens or journey.request.output_tokens
        work = self.work.work(journey)
        key = (work, output)
        if key not in self._timing:
            self._timing[key] = self._time(work.prompt_tokens, output, work)
        timing = self._timing[key]
        if timing is None:
            self.reject(journey, now_s)
            return
        ttft_s, total_s = timing
        self.busy_s += total_s
        self.first_token_at(journey, now_s + ttft_s)
        event = self.env.timeout(total_s, (journey, output))
        event.callbacks.append(self._done)

    def _time(self, prompt: int, output: int, work: Work) -> tuple[float, float] | None:
        """(TTFT, total) seconds at batch 1, or None when the KV cache cannot hold the request."""
        if prompt + output > self.perf.memory.kv_capacity_tokens:
            return None
        ttft_s = (work.preprocess_s + self.perf.encoder_s(work.encoder_patches, work.encoder_sequences)
                  + self.perf.audio_encoder_s(work.audio_s) + self.perf.prefill_s(prompt))
        decode_s = (output - 1) * self.perf.decode_step_s(1, prompt + output // 2) if output > 1 else 0.0
        return ttft_s, ttft_s + decode_s

    def _done(self, event: simpy.Event) -> None:
        journey, output = cast(tuple[Journey, int], event.value)
        self.depart(journey, self.env.now, output)

    @property
    def fixed_usd_per_day(self) -> float:
        """The fleet's amortised device cost per day, as given."""
        return self.spec.device_usd_per_day

    def stage_metrics(self, span_s: float) -> dict:
        """Device-seconds used and where the timings come from."""
        return {"device_busy_s": self.busy_s, "provenance": self.perf.provenance}
