"""Turning vectorised draws into ``Request`` objects, merged across classes in time order."""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sim.request import Request
from sim.traffic.sampling import ClassSample
from sim.traffic.spec import RequestClass


@dataclass(frozen=True, slots=True)
class ClassBlock:
    """Arrival times of some requests of one class; request ``i`` has sizes ``rows[first + i]``."""

    request_class: RequestClass
    times_s: np.ndarray
    rows: list[tuple]  # ``size_rows`` of the class's chunk
    first: int = 0


def size_rows(sizes: ClassSample) -> list[tuple]:
    """Per request, its size fields in ``Request``'s positional order (``images`` to ``output_tokens``)."""
    return list(zip(sizes.images, sizes.audio_s, sizes.video_s, sizes.video_fps, sizes.frame_px,
                    sizes.text_tokens, sizes.output_tokens, strict=True))


def merge_by_time(blocks: list[ClassBlock], first_id: int) -> Iterator[Request]:
    """Requests of all ``blocks`` in time order (ties: block order), numbered from ``first_id``."""
    times = np.concatenate([b.times_s for b in blocks]) if blocks else np.empty(0)
    return emit(blocks, np.argsort(times, kind="stable"), first_id)


def emit(blocks: list[ClassBlock], order: np.ndarray, first_id: int) -> Iterator[Request]:
    """Requests of ``blocks`` (concatenated) in ``order``, numbered from ``first_id``."""
    if not blocks:
        return
    times = np.concatenate([b.times_s for b in blocks])
    owner = np.concatenate([np.full(len(b.times_s), k) for k, b in enumerate(blocks)])
    local = np.concatenate([np.arange(len(b.times_s)) + b.first for b in blocks])
    names = [b.request_class.name for b in blocks]
    tiers = [b.request_class.tier for b in blocks]
    rows = [b.rows for b in blocks]
    ordered = zip(times[order].tolist(), owner[order].tolist(), local[order].tolist(), strict=True)
    # NOTE: positional arguments from prepared rows: a third of the cost of build_request.
    for offset, (time_s, k, i) in enumerate(ordered):
        yield Request(first_id + offset, time_s, names[k], *rows[k][i], tiers[k])  # type: ignore[call-arg]


def build_request(request_id: int, arrival_s: float, request_class: RequestClass,
                  sizes: ClassSample, i: int) -> Request:
    """The ``i``-th sampled request of a class as a ``Request``."""
    return Request(
        id=request_id,
        arrival_s=arrival_s,
        request_class=request_class.name,
        images=sizes.images[i],
        audio_s=sizes.audio_s[i],
        video_s=sizes.video_s[i],
        video_fps=sizes.video_fps[i],
        video_frame_px=sizes.frame_px[i],
        text_tokens=sizes.text_tokens[i],
        output_tokens=sizes.output_tokens[i],
        tier=request_class.tier,
    )
