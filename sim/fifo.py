"""First-come-first-served pools of ``c`` identical servers, solved without events.

When jobs enter a FIFO pool in arrival order, each starts on the server that
frees first, at ``max(arrival, free time)``: the start and finish of every job
follow from a heap of server free times (the Lindley recursion for ``c``
servers). CPU preprocessing workers, synthetic servers, rate-limited hosted
APIs and transfer links use it, so the simulator schedules one event per job
(its finish) instead of a request/release pair. Times in seconds.
"""

import heapq


class FifoServers:
    """``servers`` FIFO servers; ``servers=None`` means unlimited (no waiting)."""

    __slots__ = ("_free_at", "busy_s", "servers")

    def __init__(self, servers: int | None) -> None:
        self.servers = servers
        self._free_at: list[float] = [0.0] * servers if servers else []
        self.busy_s = 0.0

    def admit(self, now_s: float, service_s: float) -> tuple[float, float]:
        """Queue a job arriving at ``now_s`` needing ``service_s``; return its (start_s, finish_s)."""
        self.busy_s += service_s
        if not self.servers:
            return now_s, now_s + service_s
        free_at = self._free_at[0]
        start_s = free_at if free_at > now_s else now_s
        finish_s = start_s + service_s
        heapq.heapreplace(self._free_at, finish_s)
        return start_s, finish_s

    def backlog_s(self, now_s: float) -> float:
        """Work still queued or in service at ``now_s``, summed over servers (seconds)."""
        return sum(t - now_s for t in self._free_at if t > now_s)
