"""Fixed-width time bins over the simulated horizon, for load and utilisation over the day.

Memory stays bounded whatever the traffic: one float per bin. Intervals
(GPU-busy iterations) are spread over the bins they overlap. Seconds.
"""

import math


class TimeBins:
    """``count`` bins of ``width_s`` seconds covering [0, horizon); later times (the drain) are not binned."""

    __slots__ = ("_per_s", "count", "values", "width_s")

    def __init__(self, horizon_s: float, count: int) -> None:
        self.count = max(1, count)
        self.width_s = horizon_s / self.count if horizon_s > 0 else 1.0
        self._per_s = 1.0 / self.width_s
        self.values = [0.0] * self.count

    def index(self, t_s: float) -> int:
        """Bin of time ``t_s`` (clamped to the last bin)."""
        i = int(t_s * self._per_s)
        return i if i < self.count else self.count - 1

    def add(self, t_s: float, amount: float = 1.0) -> None:
        """Add ``amount`` to the bin holding ``t_s``; nothing after the horizon."""
        i = int(t_s * self._per_s)
        if i < self.count:
            self.values[i] += amount

    def add_interval(self, start_s: float, end_s: float) -> None:
        """Add the seconds of [start_s, end_s) to the bins they overlap."""
        first = int(start_s * self._per_s)
        if first == int(end_s * self._per_s) and first < self.count:  # the usual case: within one bin
            self.values[first] += end_s - start_s
            return
        end_s = min(end_s, self.count * self.width_s)  # the drain after the horizon is not binned
        if end_s <= start_s:
            return
        first, last = self.index(start_s), self.index(end_s)
        if first == last:
            self.values[first] += end_s - start_s
            return
        width = self.width_s
        for i in range(first, last + 1):
            lo = max(start_s, i * width)
            hi = end_s if i == last else min(end_s, (i + 1) * width)
            self.values[i] += max(0.0, hi - lo)

    def starts_s(self) -> list[float]:
        """Start time of each bin."""
        return [i * self.width_s for i in range(self.count)]


def default_bin_count(horizon_s: float) -> int:
    """About one bin per 15 simulated minutes for a day, at least 60 and at most 288 bins."""
    return int(min(288, max(60, math.ceil(horizon_s / 900.0))))
