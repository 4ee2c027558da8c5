"""Timing a callable on a device: CUDA events on a GPU, wall clock on a CPU. Seconds, bytes.

On CUDA each sample is bracketed by ``torch.cuda.Event(enable_timing=True)``
and synchronised; the peak allocation comes from
``torch.cuda.max_memory_allocated`` after resetting the peak counter. On a CPU
``time.perf_counter`` brackets the call and no memory reading exists (None).
With ``clock="thread"`` a CPU sample is the calling thread's CPU time
(``time.thread_time``) instead: equal to wall-clock for single-threaded torch
on an idle machine, and immune to other processes' time slices on a shared one.
Warm-up runs are discarded; the median of the samples is the result, since
other processes on the machine add one-sided noise.
"""

import math
import statistics
import time
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch


class Timing(NamedTuple):
    """Median seconds of ``samples_s`` and the peak device memory (None on CPU)."""

    median_s: float
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
Sampler = Callable[[Callable[[], object], torch.device], float]


def time_call(fn: Callable[[], object], device: torch.device, plan: TimingPlan,
              cpu_clock: CpuClock = "wall") -> Timing:
    """Time ``fn()`` on ``device``: warm up, size the repeats with one probe, then sample.

    Samples run back to back, as a server repeats similar batches, so buffers
    and caches reach a serving loop's steady state (interleaving shapes was
    measured 20% slower on CPU than the same layers in a whole-model pass,
    from allocator churn).
    """
    sample = sampler(device, cpu_clock)
    with torch.inference_mode():
        for _ in range(plan.warmup):
            fn()
        probe_s, peak = _probe(fn, device, sample)
        count = max(1, math.ceil(plan.min_sample_s / max(probe_s, 1e-9)))
        repeated = _repeated(fn, count)
        samples: list[float] = []
        while len(samples) < plan.min_samples or (
            sum(samples) * count < plan.min_total_s and len(samples) < plan.max_samples
        ):
            samples.append(sample(repeated, device) / count)
    return Timing(statistics.median(samples), tuple(samples), peak)


def _probe(fn: Callable[[], object], device: torch.device, sample: Sampler) -> tuple[float, int | None]:
    """One timed call (to size the repeats) and its peak device memory (None on CPU)."""
    if device.type != "cuda":
        return sample(fn, device), None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    seconds = sample(fn, device)
    return seconds, torch.cuda.max_memory_allocated(device)


def _repeated(fn: Callable[[], object], count: int) -> Callable[[], None]:
    """``fn`` called ``count`` times in a row."""
    def run() -> None:
        for _ in range(count):
            fn()
    return run


def sampler(device: torch.device, cpu_clock: CpuClock) -> Sampler:
    """The function timing one call on ``device``: CUDA events, wall clock or thread CPU time."""
    if device.type == "cuda":
        return _cuda_sample
    return _thread_sample if cpu_clock == "thread" else _wall_sample


def _thread_sample(fn: Callable[[], object], device: torch.device) -> float:
    """CPU seconds the calling thread spent in one call."""
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def _wall_sample(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call (CPU work is synchronous)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cuda_sample(fn: Callable[[], object], device: torch.device) -> float:
    """GPU seconds of one call between two CUDA events, after synchronising."""
    begin = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    begin.record()
    fn()
    end.record()
    torch.cuda.synchronize(device)
    return begin.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds
