"""Seeded random streams and vectorised draws of request sizes.

Every random stream is a numpy ``Generator`` derived from the scenario seed and
a stable name (``zlib.crc32``, never Python's salted ``hash``), so each class
has its own streams: adding, removing or reordering classes leaves the other
classes' draws unchanged. Units as in ``spec``: pixels, seconds, tokens.
"""

import zlib
from typing import NamedTuple

import numpy as np

from sim.traffic.sizes import (
    Empirical,
    Fixed,
    ImageSpec,
    LogNormal,
    Normal,
    Size,
    Uniform,
    VideoSpec,
)
from sim.traffic.spec import RequestClass

# Purposes of the streams a class owns; separate so that changing a class's
# sizes does not move its arrival times and vice versa.
# Upper bound of any drawn size (a lognormal tail must not overflow integer tokens).
MAX_SIZE = 1e12
ARRIVALS, SIZES, CLOSED_LOOP, THINK, MODULATOR, OFFLINE, TRACE, CLIENT, SESSIONS = range(9)


def stream(seed: int, name: str, purpose: int, index: int = 0, *more: int) -> np.random.Generator:
    """The generator for (``seed``, ``name``, ``purpose``, ``index``, ``more``...), identical in any process."""
    key = (zlib.crc32(name.encode("utf-8")), purpose, index, *more)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def draw(size: Size, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` float draws of ``size`` (a number or a distribution), within [0, ``MAX_SIZE``]."""
    if isinstance(size, int | float):
        return np.full(n, min(float(size), MAX_SIZE))
    return np.clip(_draw_distribution(size, rng, n), 0.0, MAX_SIZE)


def _draw_distribution(size: Fixed | Uniform | Normal | LogNormal | Empirical,
                       rng: np.random.Generator, n: int) -> np.ndarray:
    """Raw draws of one distribution, clipped to its own ``min``/``max`` where it has them."""
    if isinstance(size, Fixed):
        return np.full(n, size.value)
    if isinstance(size, Uniform):
        return rng.uniform(size.low, size.high, n)
    if isinstance(size, Empirical):
        weights = None if size.weights is None else np.asarray(size.weights) / sum(size.weights)
        return rng.choice(np.asarray(size.values, dtype=float), size=n, p=weights)
    if isinstance(size, Normal):
        values = rng.normal(size.mean, size.std, n)
    else:
        values = size.median * np.exp(rng.normal(0.0, size.sigma, n))
    return np.clip(values, size.min, size.max) if size.min is not None or size.max is not None else values


def draw_int(size: Size, rng: np.random.Generator, n: int, floor: int) -> np.ndarray:
    """``n`` integer draws (rounded to nearest), at least ``floor``."""
    return np.maximum(np.rint(draw(size, rng, n)), floor).astype(np.int64)


def size_mean(size: Size) -> float:
    """Mean of ``size`` before clipping (used for offered-load summaries)."""
    if isinstance(size, int | float):
        return float(size)
    if isinstance(size, Fixed):
        return size.value
    if isinstance(size, Uniform):
        return (size.low + size.high) / 2
    if isinstance(size, Normal):
        return size.mean
    if isinstance(size, LogNormal):
        return size.median * float(np.exp(size.sigma**2 / 2))
    weights = size.weights or [1.0] * len(size.values)
    return float(np.average(size.values, weights=weights))


def size_range(size: Size) -> tuple[float, float]:
    """The smallest and largest values ``size`` can draw, capped at ``MAX_SIZE`` (the smallest before a
    field's own floor; the largest ``MAX_SIZE`` for an unbounded tail without ``max``)."""
    if isinstance(size, int | float):
        low = high = float(size)
    elif isinstance(size, Fixed):
        low = high = size.value
    elif isinstance(size, Uniform):
        low, high = size.low, size.high
    elif isinstance(size, Empirical):
        low, high = min(size.values), max(size.values)
    else:
        low = 0.0 if size.min is None else size.min
        high = MAX_SIZE if size.max is None else size.max
    return min(low, MAX_SIZE), min(high, MAX_SIZE)


def size_max(size: Size) -> float:
    """The largest value ``size`` can draw (``size_range``)."""
    return size_range(size)[1]


def size_min(size: Size) -> float:
    """The smallest value ``size`` can draw (``size_range``)."""
    return size_range(size)[0]


class ClassSample(NamedTuple):
    """Sizes for ``n`` requests of one class, as plain Python lists (fast to read one by one)."""

    text_tokens: list[int]
    output_tokens: list[int]
    audio_s: list[float]
    images: list[tuple[tuple[int, int], ...]]
    video_s: list[float]
    video_fps: list[float]
    frame_px: list[tuple[int, int]]


def sample_class(request_class: RequestClass, rng: np.random.Generator, n: int) -> ClassSample:
    """Draw every size of ``n`` requests of ``request_class`` from ``rng``, in a fixed order."""
    text_tokens = draw_int(request_class.text_tokens, rng, n, 0).tolist()
    output_tokens = draw_int(request_class.output_tokens, rng, n, 1).tolist()
    audio_s = draw(request_class.audio_s, rng, n).tolist()
    images = draw_images(request_class.images, rng, n)
    video_s, video_fps, frame_px = _draw_video(request_class.video, rng, n)
    return ClassSample(text_tokens, output_tokens, audio_s, images, video_s, video_fps, frame_px)


def draw_images(spec: ImageSpec | None, rng: np.random.Generator,
                 n: int) -> list[tuple[tuple[int, int], ...]]:
    """Per request, a tuple of (width_px, height_px) images."""
    if spec is None or n == 0:
        return [()] * n
    counts = draw_int(spec.count, rng, n, 0)
    total = int(counts.sum())
    widths = draw_int(spec.width_px, rng, total, 1).tolist()
    heights = draw_int(spec.height_px, rng, total, 1).tolist()
    sizes = list(zip(widths, heights, strict=True))
    ends = np.cumsum(counts).tolist()
    starts = [0, *ends[:-1]]
    return [tuple(sizes[a:b]) for a, b in zip(starts, ends, strict=True)]


def _draw_video(spec: VideoSpec | None, rng: np.random.Generator,
                n: int) -> tuple[list[float], list[float], list[tuple[int, int]]]:
    """Per request: clip seconds, fps, and (width_px, height_px) of its frames."""
    if spec is None:
        return [0.0] * n, [0.0] * n, [(0, 0)] * n
    seconds = draw(spec.seconds, rng, n).tolist()
    widths = draw_int(spec.width_px, rng, n, 1).tolist()
    heights = draw_int(spec.height_px, rng, n, 1).tolist()
    return seconds, [spec.fps] * n, list(zip(widths, heights, strict=True))
