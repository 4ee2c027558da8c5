"""A hosted API's rate limits: requests and tokens per minute as token buckets, solved without events.

Vendors meter an account's requests per minute (RPM) and tokens per minute
(TPM) with token buckets that refill continuously up to one minute's
allowance (Anthropic's rate-limit page describes this algorithm; not in
FACTS.md, recalled [unverified]). A call takes one request and its tokens.
Calls that find a bucket short either wait, first come first served, until
both buckets hold enough (``start_s``), or are refused on the spot, as an
HTTP 429 would refuse them (``admit_now``). As in ``sim.fifo``, start times
follow from the arrival order, so no event is scheduled. Times in seconds.
"""

SECONDS_PER_MINUTE = 60.0


class Bucket:
    """One budget of ``per_minute`` units, full at the start, refilled at ``per_minute / 60`` per second."""

    __slots__ = ("at_s", "capacity", "level", "per_s")

    def __init__(self, per_minute: float) -> None:
        self.capacity = per_minute
        self.per_s = per_minute / SECONDS_PER_MINUTE
        self.level = per_minute  # units left at ``at_s``
        self.at_s = 0.0

    def level_at(self, now_s: float) -> float:
        """Units available at ``now_s`` (no later take between ``at_s`` and ``now_s``)."""
        level = self.level + (now_s - self.at_s) * self.per_s
        return level if level < self.capacity else self.capacity

    def ready_s(self, now_s: float, amount: float) -> float:
        """The earliest time from ``now_s`` on when ``amount`` units are available."""
        short = amount - self.level - (now_s - self.at_s) * self.per_s  # the refill is capped above amount
        return now_s if short <= 0 else now_s + short / self.per_s

    def take(self, now_s: float, amount: float) -> None:
        """Spend ``amount`` units at ``now_s``."""
        self.level = self.level_at(now_s) - amount
        self.at_s = now_s


class RateLimiter:
    """An account's request and token buckets (either may be ``None``: not limited)."""

    __slots__ = ("_last_start_s", "requests", "tokens")

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self.requests = Bucket(requests_per_minute) if requests_per_minute else None
        self.tokens = Bucket(tokens_per_minute) if tokens_per_minute else None
        self._last_start_s = 0.0

    def fits(self, tokens: int) -> bool:
        """Whether a call of ``tokens`` can ever pass (it fits one minute's token allowance)."""
        return self.tokens is None or tokens <= self.tokens.capacity

    def start_s(self, now_s: float, tokens: int) -> float:
        """Queue a call arriving at ``now_s``; return when it is sent (after every earlier call).

        The call must ``fit``; its request and tokens are spent at the returned time.
        """
        start_s = now_s if now_s > self._last_start_s else self._last_start_s
        requests, token_bucket = self.requests, self.tokens
        if requests is not None:
            start_s = requests.ready_s(start_s, 1)
        if token_bucket is not None:
            start_s = token_bucket.ready_s(start_s, tokens)
        self._spend(start_s, tokens)
        return start_s

    def admit_now(self, now_s: float, tokens: int) -> bool:
        """Send a call at ``now_s`` if both buckets hold enough (and spend them); else refuse it."""
        if self.requests is not None and self.requests.level_at(now_s) < 1:
            return False
        if self.tokens is not None and self.tokens.level_at(now_s) < tokens:
            return False
        self._spend(now_s, tokens)
        return True

    def _spend(self, now_s: float, tokens: int) -> None:
        if self.requests is not None:
            self.requests.take(now_s, 1)
        if self.tokens is not None:
            self.tokens.take(now_s, tokens)
        self._last_start_s = now_s
