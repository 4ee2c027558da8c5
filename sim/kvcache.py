"""KV-cache accounting of one replica, in tokens.

Capacity comes from the performance model's ``MemoryPlan`` (VRAM left after
weights and the activation reserve, divided by KV bytes per token). The
cache also integrates its use over time, for the mean and peak use metrics.
"""


class KvCache:
    """Token slots of one replica's KV cache with time-weighted use statistics."""

    __slots__ = ("_last_s", "capacity_tokens", "peak_tokens", "token_seconds", "used_tokens")

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity_tokens = capacity_tokens
        self.used_tokens = 0
        self.peak_tokens = 0
        self.token_seconds = 0.0
        self._last_s = 0.0

    @property
    def free_tokens(self) -> int:
        """Slots not in use."""
        return self.capacity_tokens - self.used_tokens

    def observe(self, now_s: float) -> None:
        """Integrate use up to ``now_s`` (call before every change)."""
        self.token_seconds += self.used_tokens * (now_s - self._last_s)
        self._last_s = now_s

    def allocate(self, tokens: int) -> None:
        """Take ``tokens`` slots; the caller has checked ``free_tokens``."""
        self.used_tokens += tokens
        if self.used_tokens > self.peak_tokens:
            self.peak_tokens = self.used_tokens

    def release(self, tokens: int) -> None:
        """Give back ``tokens`` slots."""
        self.used_tokens -= tokens

    def mean_use(self, span_s: float) -> float:
        """Time-weighted mean share of capacity in use over ``span_s`` seconds."""
        if span_s <= 0 or self.capacity_tokens <= 0:
            return 0.0
        return self.token_seconds / span_s / self.capacity_tokens
