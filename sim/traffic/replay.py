"""Replay of a loaded trace, with a reproducible rate multiplier.

A multiplier m < 1 keeps each request with probability m. A multiplier m > 1
keeps every request and adds ``floor(m) - 1`` copies plus one more with
probability ``frac(m)``; each copy arrives at a uniform time between its
original and the next original arrival, so the trace's shape over time is
kept without stacking copies on the same instant. Units: seconds.
"""

from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from sim.request import Request
from sim.traffic.spec import TrafficSpec

BUSIEST_WINDOW_S = 60.0  # the peak rate of a trace is its busiest minute


def replay_trace(trace: Sequence[Request], spec: TrafficSpec, rate_multiplier: float,
                 rng: np.random.Generator, horizon_s: float) -> Iterator[Request]:
    """Requests of ``trace`` arriving in [0, ``horizon_s``), time-ordered, renumbered from 0.

    A request of a declared class takes that class's ``tier``.
    """
    ordered = sorted(trace, key=lambda r: r.arrival_s)
    source, times = _multiplied(np.array([r.arrival_s for r in ordered]), rate_multiplier, rng)
    tiers = {c.name: c.tier for c in spec.classes}
    for new_id, (index, time_s) in enumerate(zip(source.tolist(), times.tolist(), strict=True)):
        if time_s >= horizon_s:
            return
        original = ordered[index]
        tier = tiers.get(original.request_class, original.tier)
        yield replace(original, id=new_id, arrival_s=time_s, tier=tier)


def _multiplied(times_s: np.ndarray, multiplier: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(index of the original request, arrival time) of every replayed request, time-ordered."""
    count = len(times_s)
    if multiplier == 1.0 or count == 0:
        return np.arange(count), times_s
    whole, fraction = divmod(multiplier, 1.0)
    copies = np.full(count, int(whole)) + (rng.uniform(size=count) < fraction)
    source = np.repeat(np.arange(count), copies)
    if not len(source):
        return source, times_s[source]
    gaps = np.diff(times_s, append=times_s[-1] + _mean_gap_s(times_s))
    first_copy = np.concatenate(([True], source[1:] != source[:-1]))
    # A request's first copy (when m >= 1) keeps its time; the others spread over the gap.
    offset = np.where(first_copy & (whole >= 1), 0.0, rng.uniform(size=len(source)))
    times = times_s[source] + offset * gaps[source]
    order = np.argsort(times, kind="stable")
    return source[order], times[order]


def _mean_gap_s(times_s: np.ndarray) -> float:
    """Mean time between arrivals (0 for a single request)."""
    return float((times_s[-1] - times_s[0]) / (len(times_s) - 1)) if len(times_s) > 1 else 0.0


def trace_rates(trace: Sequence[Request], rate_multiplier: float) -> tuple[float, float]:
    """(mean, peak) offered rate of a trace, requests/s; the peak is its busiest minute.

    Both are nan for a trace whose arrivals all share one instant.
    """
    times = np.array([r.arrival_s for r in trace])
    span_s = float(times.max() - times.min()) if len(times) else 0.0
    if span_s <= 0:
        return float("nan"), float("nan")
    mean_rps = len(times) * rate_multiplier / span_s
    if span_s <= BUSIEST_WINDOW_S:
        return mean_rps, mean_rps
    bins = np.arange(times.min(), times.max() + BUSIEST_WINDOW_S, BUSIEST_WINDOW_S)
    counts, _ = np.histogram(times, bins=bins)
    return mean_rps, float(counts.max()) * rate_multiplier / BUSIEST_WINDOW_S
