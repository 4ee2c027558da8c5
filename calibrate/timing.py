"""Timing a callable on a device: CUDA events on a GPU, wall clock on a CPU. Seconds, bytes.

On a GPU (``calibrate.cuda.Cuda``, which makes every CUDA call) each sample is
bracketed by CUDA events and synchronised; the peak allocation comes from the
allocator's peak counter, reset first. On a CPU
``time.perf_counter`` brackets the call and no memory reading exists (None).
With ``clock="thread"`` a CPU sample is the calling thread's CPU time
(``time.thread_time``) instead: equal to wall-clock for single-threaded torch
on an idle machine, and immune to other processes' time slices on a shared one.
Warm-up runs are discarded. On CUDA the shapes are timed one after the other
and the median sample is the result. On a CPU the shapes of one component are
timed interleaved, a sample of each per round (``time_interleaved``), and the
fastest sample is the result: other processes on a shared machine only ever
slow a sample down (cache, memory bandwidth, page faults, preemption), so the
minimum is the estimate of the work itself, and interleaving spreads a burst
of load over every shape instead of biasing the few timed during it.
"""

import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, NamedTuple

import torch

from calibrate.cuda import Cuda


class Timing(NamedTuple):
    """Seconds per call (CUDA: median of ``samples_s``; CPU: fastest), and the peak device memory (None on CPU)."""

    seconds: float
    samples_s: tuple[float, ...]
    peak_memory_bytes: int | None


class TimingPlan(NamedTuple):
    """How hard to time one shape.

    ``warmup`` discarded calls; then at least ``min_samples`` samples, more
    until they took ``min_total_s``, at most ``max_samples``. A short call is
    repeated inside one sample until the sample lasts about ``min_sample_s``.
    """

    warmup: int
    min_samples: int
    max_samples: int
    min_total_s: float
    min_sample_s: float


CpuClock = Literal["wall", "thread"]
Sampler = Callable[[Callable[[], object]], float]


def time_call(fn: Callable[[], object], gpu: Cuda, plan: TimingPlan) -> Timing:
    """Time ``fn()`` on ``gpu``: warm up, size the repeats with one probe, then sample; the median wins.

    Samples run back to back, as a server repeats similar batches, so buffers
    and caches reach a serving loop's steady state. The GPU path; a CPU
    calibration times its shapes with ``time_interleaved``.
    """
    with torch.inference_mode():
        for _ in range(plan.warmup):
            fn()
        gpu.reset_peak()
        probe_s = gpu.timed_s(fn)
        peak = gpu.peak_bytes()
        count = max(1, math.ceil(plan.min_sample_s / max(probe_s, 1e-9)))
        repeated = _repeated(fn, count)
        samples: list[float] = []
        while len(samples) < plan.min_samples or (
            sum(samples) * count < plan.min_total_s and len(samples) < plan.max_samples
        ):
            samples.append(gpu.timed_s(repeated) / count)
    return Timing(statistics.median(samples), tuple(samples), peak)


def time_interleaved(fns: Sequence[Callable[[], object]], plan: TimingPlan,
                     cpu_clock: CpuClock = "wall") -> list[Timing]:
    """Time each of ``fns`` on the CPU in rounds (one sample of every call per round); fastest sample wins.

    Each call is probed once: the probe sizes its repeats and, when it needs
    none, is its first sample (a cold first call is slower, so it never wins
    and needs no separate warm-up). A call shorter than ``min_sample_s`` is
    warmed up ``warmup`` times and probed again, so its repeat count is sized
    on a warm call. Rounds continue until every call has ``min_samples``
    samples and the rounds took ``min_total_s`` per call, at most
    ``max_samples``. The garbage collector is off while timing so a collection
    never lands in one shape's sample.
    """
    sample = sampler(cpu_clock)
    with torch.inference_mode(), gc_paused():
        probes_s = [_warm_probe(fn, plan, sample) for fn in fns]
        counts = [max(1, math.ceil(plan.min_sample_s / max(p, 1e-9))) for p in probes_s]
        samples: list[list[float]] = [[p] if c == 1 else [] for p, c in zip(probes_s, counts, strict=True)]
        repeated = [_repeated(fn, count) for fn, count in zip(fns, counts, strict=True)]
        budget_s, spent_s = plan.min_total_s * len(fns), 0.0
        while min(map(len, samples)) < plan.min_samples or (
                spent_s < budget_s and max(map(len, samples)) < plan.max_samples):
            for index, (run, count) in enumerate(zip(repeated, counts, strict=True)):
                seconds = sample(run)
                spent_s += seconds
                samples[index].append(seconds / count)
    return [Timing(min(s), tuple(s), None) for s in samples]


def _warm_probe(fn: Callable[[], object], plan: TimingPlan, sample: Sampler) -> float:
    """Seconds of one call of ``fn``; a short call is warmed up first and timed again."""
    probe_s = sample(fn)
    if probe_s >= plan.min_sample_s:
        return probe_s
    for _ in range(plan.warmup):
        fn()
    return sample(fn)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Garbage collection off inside the block, restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _repeated(fn: Callable[[], object], count: int) -> Callable[[], None]:
    """``fn`` called ``count`` times in a row."""
    def run() -> None:
        for _ in range(count):
            fn()
    return run


def sampler(cpu_clock: CpuClock) -> Sampler:
    """The function timing one call on the CPU: wall clock or thread CPU time."""
    return _thread_sample if cpu_clock == "thread" else _wall_sample


def clock_of(cpu_clock: CpuClock) -> Callable[[], float]:
    """The CPU clock read in seconds: the calling thread's CPU time or the wall clock."""
    return time.thread_time if cpu_clock == "thread" else time.perf_counter


def _thread_sample(fn: Callable[[], object]) -> float:
    """CPU seconds the calling thread spent in one call."""
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def _wall_sample(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call (CPU work is synchronous)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
