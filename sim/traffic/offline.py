"""Offline traffic: every request at t=0, for maximum-throughput (batch job) runs.

The ``requests`` are split between classes by share (largest remainder, so the
mix is exact), shuffled by a seeded permutation, and their sizes drawn from
each class's own stream in blocks, so memory stays flat for large batches.
"""

from collections.abc import Iterator

import numpy as np

from sim.request import Request
from sim.traffic import sampling
from sim.traffic.assembly import build_request
from sim.traffic.spec import TrafficSpec

OFFLINE_STREAM = "<offline>"  # stream name of the shuffle
BLOCK = 4096  # sizes drawn at once per class


def offline_requests(spec: TrafficSpec, seed: int, total: int) -> Iterator[Request]:
    """``total`` requests at t=0 in a seeded order, ids 0..total-1."""
    counts = split_by_share(spec.shares(), total)
    owners = np.repeat(np.arange(len(spec.classes)), [counts[c.name] for c in spec.classes])
    order = sampling.stream(seed, OFFLINE_STREAM, sampling.OFFLINE).permutation(owners)
    rngs = [sampling.stream(seed, c.name, sampling.SIZES) for c in spec.classes]
    blocks: list[sampling.ClassSample | None] = [None] * len(spec.classes)
    used = [BLOCK] * len(spec.classes)
    for request_id, k in enumerate(order.tolist()):
        if used[k] == BLOCK:
            blocks[k], used[k] = sampling.sample_class(spec.classes[k], rngs[k], BLOCK), 0
        yield build_request(request_id, 0.0, spec.classes[k], blocks[k], used[k])
        used[k] += 1


def split_by_share(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts summing to ``total`` in proportion to ``shares`` (largest remainder)."""
    exact = {name: share * total for name, share in shares.items()}
    counts = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: counts[name] - exact[name])
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts
