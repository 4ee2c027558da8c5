"""Open-loop arrivals: Poisson, diurnal and bursty, by thinning (Lewis-Shedler).

Per class, a homogeneous Poisson process at the class's peak rate is thinned
to its time-varying rate ``share x mean x diurnal(t) x burst(t)``. Each class
draws from its own streams in chunks whose length depends only on its own
peak rate (``CHUNK_S``, halved for busy classes), so a class's arrivals depend
only on the seed, its name and its own rate: adding a class whose load is
added on top leaves the others' arrivals unchanged. Chunks are merged by time
in steps of the shortest chunk. Units: seconds, requests per second.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sim.request import Request
from sim.traffic import sampling
from sim.traffic.arrivals import DiurnalArrivals, PoissonArrivals
from sim.traffic.assembly import ClassBlock, merge_by_time, size_rows
from sim.traffic.rates import BurstPath, DiurnalCurve, burst_chain, diurnal_curve
from sim.traffic.sessions import mean_turns
from sim.traffic.spec import RequestClass, TrafficSpec

CHUNK_S = 60.0  # longest generation chunk, simulated seconds
CHUNK_ARRIVALS = 8192  # a class's chunk is halved until it expects at most this many candidates
BURST_STREAM = "<bursts>"  # stream name of the burst chain shared by all classes


@dataclass(frozen=True, slots=True)
class Intensity:
    """Offered rate of the whole mix: ``mean_rps`` x diurnal factor x burst factor."""

    mean_rps: float
    curve: DiurnalCurve | None
    bursts_peak: float  # largest normalised burst multiplier (1 without bursts)

    @property
    def peak_rps(self) -> float:
        """Highest instantaneous rate: the diurnal peak in the top burst state."""
        curve_peak = 1.0 if self.curve is None else self.curve.peak_factor
        return self.mean_rps * curve_peak * self.bursts_peak


def intensity(spec: TrafficSpec) -> Intensity | None:
    """The open-loop intensity of ``spec``, or None when arrivals are not an offered rate."""
    arrivals = spec.arrivals
    if isinstance(arrivals, PoissonArrivals):
        curve, mean_rps = None, arrivals.mean_rate_rps
    elif isinstance(arrivals, DiurnalArrivals):
        curve, mean_rps = diurnal_curve(arrivals, spec.start_s), arrivals.daily_mean_rps
    else:
        return None
    bursts_peak = 1.0 if arrivals.bursts is None else burst_chain(arrivals.bursts).peak_factor
    return Intensity(mean_rps, curve, bursts_peak)


def chunk_length_s(peak_rps: float) -> float:
    """A class's generation chunk: ``CHUNK_S`` halved until it expects <= ``CHUNK_ARRIVALS`` candidates."""
    expected = peak_rps * CHUNK_S / CHUNK_ARRIVALS
    return CHUNK_S / 2 ** max(0, math.ceil(math.log2(expected))) if expected > 1 else CHUNK_S


def open_loop_requests(spec: TrafficSpec, seed: int, horizon_s: float) -> Iterator[Request]:
    """Poisson/diurnal/bursty arrivals in [0, ``horizon_s``), time-ordered, numbered from 0."""
    rate = intensity(spec)
    arrivals = spec.arrivals
    assert rate is not None  # TrafficSource sends only Poisson and diurnal arrivals here
    assert isinstance(arrivals, PoissonArrivals | DiurnalArrivals)
    bursts = arrivals.bursts
    path = None if bursts is None else BurstPath(
        burst_chain(bursts), sampling.stream(seed, BURST_STREAM, sampling.MODULATOR))
    shares = spec.shares()
    # A conversational class's share counts its turns: its conversations start at share / mean turns.
    classes = [_ClassArrivals(c, shares[c.name] / mean_turns(c), rate, path, seed)
               for c in spec.classes if shares[c.name] > 0]
    step_s = min(c.chunk_s for c in classes)
    next_id, step = 0, 0
    while step * step_s < horizon_s:
        blocks = [c.take(step, step_s, horizon_s) for c in classes]
        yield from merge_by_time(blocks, next_id)
        next_id += sum(len(b.times_s) for b in blocks)
        if path is not None:
            path.forget_before(step * step_s)
        step += 1


class _ClassArrivals:
    """One class's arrivals, drawn chunk by chunk from its own streams and handed out by merge step."""

    def __init__(self, request_class: RequestClass, share: float, rate: Intensity,
                 path: BurstPath | None, seed: int) -> None:
        """Name the class's streams; nothing is drawn yet."""
        self.request_class = request_class
        self.chunk_s = chunk_length_s(share * rate.peak_rps)
        self._share = share
        self._rate = rate
        self._path = path
        self._arrival_rng = sampling.stream(seed, request_class.name, sampling.ARRIVALS)
        self._size_rng = sampling.stream(seed, request_class.name, sampling.SIZES)
        self._block: ClassBlock | None = None
        self._cursor = 0

    def take(self, step: int, step_s: float, horizon_s: float) -> ClassBlock:
        """Arrivals in [step * step_s, (step + 1) * step_s); a new chunk is drawn when one starts."""
        if step % round(self.chunk_s / step_s) == 0:
            start_s = step * step_s
            times = _thinned_times(self._arrival_rng, self._share, self._rate, self._path,
                                   start_s, min(start_s + self.chunk_s, horizon_s))
            sizes = sampling.sample_class(self.request_class, self._size_rng, len(times))
            self._block, self._cursor = ClassBlock(self.request_class, times, size_rows(sizes)), 0
        block = self._block
        assert block is not None  # step 0 drew the first chunk
        end = int(np.searchsorted(block.times_s, (step + 1) * step_s, side="left"))
        taken = ClassBlock(self.request_class, block.times_s[self._cursor:end], block.rows, self._cursor)
        self._cursor = end
        return taken


def _thinned_times(rng: np.random.Generator, share: float, rate: Intensity,
                   path: BurstPath | None, start_s: float, end_s: float) -> np.ndarray:
    """Sorted arrival times of one class in [start_s, end_s): a peak-rate Poisson process, thinned."""
    peak_rps = share * rate.peak_rps
    # Always the same three draws, whatever the rate shape, so a class's stream stays aligned.
    count = rng.poisson(peak_rps * (end_s - start_s))
    times = np.sort(rng.uniform(start_s, end_s, count))
    accept = rng.uniform(0.0, peak_rps, count)
    level = np.full(count, share * rate.mean_rps)
    if rate.curve is not None:
        level *= rate.curve.factor(times)
    if path is not None:
        level *= path.factor(times)
    return times[accept < level]
