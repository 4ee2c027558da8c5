"""Memory measured on the device: weights, activation peak per batched token and per sequence, KV per token.

The whole model (calibrate.composed.ComposedModel) is loaded and run:

- weight bytes: memory the loaded model holds;
- activation peak per batched token: the slope of the peak above the resident
  memory over prefill passes of several lengths (every decoder layer, KV cache
  preallocated), as an engine profiles a forward pass at its token budget;
- activation peak per sequence: the slope over decode steps of several batch
  sizes, LM head and its logits included (an engine holds logits per sequence);
- KV bytes per token: a KV cache of every layer, filled, over its tokens.

Readings: on CUDA ``torch.cuda.memory_allocated`` / ``max_memory_allocated``
after ``reset_peak_memory_stats``; on a (Linux) CPU the process's resident set,
``VmRSS``, and its high-water mark ``VmHWM`` reset by writing 5 to
``/proc/self/clear_refs``, with glibc's mmap threshold held at its 128 KiB
default (``mallopt``): every large tensor is then mapped and unmapped whole
and the resident set follows the tensors (by default glibc raises the
threshold after the first large free and keeps later ones in its heap). Bytes.
"""

import ctypes
import ctypes.util
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import torch

from calibrate.components import KvCache, init_weights
from calibrate.composed import ComposedModel
from calibrate.measure import SEED
from calibrate.timing import gc_paused
from profiles.calibration import MeasuredMemory
from profiles.errors import CalibrationError
from profiles.models import ResolvedModel

PREFILL_TOKENS = (64, 128, 256)
DECODE_BATCHES = (1, 8, 32)
KV_TOKENS = 512
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, kept fixed
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def _libc() -> ctypes.CDLL | None:
    """The C library (glibc's mallopt and malloc_trim), or None."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


class Meter:
    """The process's resident bytes now, and the peak since ``reset_peak()`` (a Linux CPU).

    The C library's free memory is returned to the system (``malloc_trim``)
    before each reading, so that a tensor reusing it shows as new resident memory.
    """

    memory_method = "process resident set (VmRSS) and its high-water mark (VmHWM, reset via clear_refs)"

    def __init__(self) -> None:
        self.libc = _libc()

    def allocated_bytes(self) -> int:
        """Bytes resident now."""
        if self.libc is not None:
            self.libc.malloc_trim(0)
        return _status_bytes("VmRSS:")

    def reset_peak(self) -> None:
        """Start a new peak."""
        CLEAR_REFS.write_text("5")

    def peak_bytes(self) -> int:
        """The peak since ``reset_peak()``."""
        return _status_bytes("VmHWM:")


class Counters(Protocol):
    """Memory readings: a GPU's allocator (calibrate.cuda.Cuda) or the CPU process's ``Meter``."""

    memory_method: str

    def allocated_bytes(self) -> int:
        """Bytes held now."""
        ...

    def reset_peak(self) -> None:
        """Start a new peak."""
        ...

    def peak_bytes(self) -> int:
        """The peak since ``reset_peak()``."""
        ...


def cpu_memory_unreadable() -> str | None:
    """Why the CPU meter cannot work here (not Linux with glibc, or no right to reset the peak), or None.

    Holds glibc's mmap threshold fixed for the rest of the process (see the module docstring).
    """
    if not STATUS.exists() or not CLEAR_REFS.exists():
        return "no /proc/self/status and clear_refs (not Linux)"
    try:
        CLEAR_REFS.write_text("5")
    except OSError as error:
        return f"cannot reset the peak resident set: {error.strerror}"
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return "the C library has no mallopt and malloc_trim (not glibc)"
    if not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        return "the C library refused to fix its mmap threshold"
    return None


def _status_bytes(field: str) -> int:
    """A kB field of /proc/self/status in bytes."""
    for line in STATUS.read_text(encoding="utf-8").splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise CalibrationError(f"{STATUS} has no {field} line")


def measure_memory(model: ResolvedModel, device: torch.device, dtype: torch.dtype,
                   meter: Counters) -> MeasuredMemory:
    """Load the whole model on ``device`` in ``dtype`` and measure its memory with ``meter``
    (the GPU's allocator counters, or the CPU process's ``Meter``; see the module docstring)."""
    with torch.inference_mode(), gc_paused():
        before = meter.allocated_bytes()
        net = cast(ComposedModel, init_weights(ComposedModel(model), SEED).to(device=device, dtype=dtype).eval())
        weights = meter.allocated_bytes() - before
        like = torch.zeros((), device=device, dtype=dtype)
        kv_per_token = _kv_bytes(net, meter, like) / KV_TOKENS
        per_token = _slope(PREFILL_TOKENS, lambda tokens: _prefill_peak(net, meter, tokens, like))
        per_sequence = _slope(DECODE_BATCHES, lambda batch: _decode_peak(net, meter, batch, like))
    return MeasuredMemory(weight_bytes=weights, activation_bytes_per_token=per_token,
                          activation_bytes_per_sequence=per_sequence, kv_bytes_per_token=kv_per_token,
                          method=meter.memory_method, precision=str(dtype).removeprefix("torch."))


def _slope(sizes: tuple[int, ...], peak_of: Callable[[int], int]) -> float:
    """Bytes per unit of size: the least-squares slope of the peaks over ``sizes`` (the first run warms up)."""
    peak_of(sizes[0])  # the first pass grows the allocator's pools; it is not counted
    peaks = [peak_of(size) for size in sizes]
    slope = float(np.polyfit(np.array(sizes, dtype=float), np.array(peaks, dtype=float), 1)[0])
    return max(0.0, slope)


def _caches(net: ComposedModel, sequences: int, capacity: int, like: torch.Tensor) -> list[KvCache]:
    """A KV cache per decoder layer, filled (an untouched CPU allocation holds no memory yet)."""
    caches = [KvCache.empty(net.model.decoder, sequences, capacity, like) for _ in net.layers]
    for cache in caches:
        cache.keys.fill_(1.0)
        cache.values.fill_(1.0)
    return caches


def _prefill_peak(net: ComposedModel, meter: Counters, tokens: int, like: torch.Tensor) -> int:
    """Peak above the resident memory of a ``tokens``-long prefill through every layer."""
    caches = _caches(net, 1, tokens, like)
    prompt = torch.randn((1, tokens, net.model.decoder.hidden), generator=torch.Generator().manual_seed(SEED)
                         ).to(device=like.device, dtype=like.dtype)
    base = meter.allocated_bytes()
    meter.reset_peak()
    net.prefill(prompt, caches)
    return meter.peak_bytes() - base


def _decode_peak(net: ComposedModel, meter: Counters, batch: int, like: torch.Tensor) -> int:
    """Peak above the resident memory of one decode step of ``batch`` sequences, logits included."""
    context = 64
    caches = _caches(net, batch, context + 1, like)
    tokens = torch.zeros(batch, dtype=torch.long, device=like.device)
    base = meter.allocated_bytes()
    meter.reset_peak()
    net.decode(tokens, caches, context, 1)
    return meter.peak_bytes() - base


def _kv_bytes(net: ComposedModel, meter: Counters, like: torch.Tensor) -> int:
    """Bytes a filled KV cache of ``KV_TOKENS`` tokens in every layer holds."""
    before = meter.allocated_bytes()
    caches = _caches(net, 1, KV_TOKENS, like)
    held = meter.allocated_bytes() - before
    del caches
    return held
