"""A synthetic stage: ``servers`` FIFO servers with service times from a named distribution.

Used to check the simulator against queueing theory (M/M/c, M/D/1): the
first token is the last, so TTFT equals the time in the stage. Seconds.
"""

import math
from typing import cast

import simpy

from sim.deployment import SyntheticStage
from sim.draws import Draws, lognormal_from_mean_cv
from sim.fifo import FifoServers
from sim.journey import Journey
from sim.stages.base import StageRuntime


class ServiceSampler:
    """Service times of a ``ServiceTime`` spec drawn from seeded streams."""

    def __init__(self, distribution: str, mean_s: float, cv: float, draws: Draws) -> None:
        self.distribution = distribution
        self.mean_s = mean_s
        self.draws = draws
        self.mu, self.sigma = lognormal_from_mean_cv(mean_s, cv)

    def sample(self) -> float:
        """One service time, seconds."""
        if self.distribution == "deterministic":
            return self.mean_s
        if self.distribution == "exponential":
            return self.mean_s * self.draws.exponential()
        return math.exp(self.mu + self.sigma * self.draws.normal())


class SyntheticServers(StageRuntime):
    """FIFO multi-server queue; one event per request (its departure)."""

    kind = "synthetic"

    def __init__(self, spec: SyntheticStage, env: simpy.Environment, draws: Draws) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.env = env
        self.servers = FifoServers(spec.servers)
        self.service = ServiceSampler(spec.service.distribution, spec.service.mean_s, spec.service.cv, draws)

    def submit(self, journey: Journey, now_s: float) -> None:
        """Queue for the first free server; depart when served."""
        start_s, finish_s = self.servers.admit(now_s, self.service.sample())
        journey.queue_s += start_s - now_s
        if finish_s > self.serve_until_s:  # served after the run ends: unfinished, without an event in memory
            self.beyond_end += 1
            return
        event = self.env.timeout(finish_s - now_s, journey)
        event.callbacks.append(self._served)

    def _served(self, event: simpy.Event) -> None:
        journey = cast(Journey, event.value)
        now_s = self.env.now
        self.first_token_at(journey, now_s)
        self.depart(journey, now_s, journey.request.output_tokens)

    def gpu_pools(self) -> list[tuple[str, int, float]]:
        """The servers at their hourly price (a server counts as one GPU)."""
        return [(f"{self.name} server", self.spec.servers, self.spec.usd_per_server_hour)]

    def stage_metrics(self, span_s: float) -> dict:
        """Server utilisation."""
        busy = self.servers.busy_s / (self.spec.servers * span_s) if span_s > 0 else 0.0
        return {"servers": self.spec.servers, "server_utilization": busy}
