"""The device's kernels timed by shape, in the form of the measured-kernel tables (GEMMs, attention).

What ``profiles.perf.kernel_tables`` reads from NVIDIA's tables for a GPU,
measured here on the user's own device: weight GEMMs by (m, n, k); context
(prefill) attention by (batch, prompt length), generation (decode) attention
by (batch, KV tokens per sequence), and ViT (encoder) attention by (batch,
patches per sequence), each at a few head configurations.
``profiles.perf.calibrated_kernels`` composes any model's steps from them as
``profiles.perf.measured`` composes a GPU's, interpolating between the grid
points, so one calibration serves every model on the device.

The grid spans the shapes small and mid-size models ask for; beyond it the
lookups extrapolate as the tables' do (GEMM time proportional to m, n and k;
attention quadratic in length). The quick grid keeps a one-thread CPU run to
about a minute and a half: GEMMs of 256 to 4,096 by 256 to 4,096 weights
(and 32,768 wide, a vocabulary, at k up to 1,024) at 1 to 1,024 rows;
attention up to 1,024 prompt tokens and 4,096 KV tokens. Timing as the
components' (calibrate.timing): on a CPU the shapes of one kind interleaved,
fastest sample; on CUDA each shape on its own, median. GEMMs of few rows run
over distinct weight copies so their weights come from memory, not a cache
(``COLD_BELOW_ROWS``). Seconds.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from calibrate.cuda import Cuda
from calibrate.measure import STACK_TARGET_BYTES
from calibrate.timing import CpuClock, TimingPlan, time_call, time_interleaved
from profiles.calibration import KernelTiming

SEED = 20_260_622
# A GEMM of fewer rows streams its weight from memory in a model's step (each layer's weights are
# read once, after the other layers' evicted them), so it is timed over distinct weight copies spanning
# STACK_TARGET_BYTES, as the decoder components are; from this many rows on the GEMM is compute-bound
# (every weight element serves as many rows) and one weight is timed.
COLD_BELOW_ROWS = 128


class KernelGrid(NamedTuple):
    """The shapes of each kernel kind to time."""

    gemm_m: tuple[int, ...]
    gemm_nk: tuple[int, ...]  # both n and k take each of these
    # Wide weights (an LM head's vocabulary) at the narrower k only: n x k beyond the caches, streamed from
    # memory as a vocabulary projection is (bilinear extrapolation from cache-resident n would be too fast).
    gemm_wide_n: tuple[int, ...]
    context_batch: tuple[int, ...]
    context_length: tuple[int, ...]
    generation_batch: tuple[int, ...]
    generation_length: tuple[int, ...]
    encoder_batch: tuple[int, ...]
    encoder_length: tuple[int, ...]
    # (query heads, KV heads, head dim) for decoder attention; the encoder's run with KV heads = heads.
    # A model's heads are matched to the nearest and scaled (kernel_tables.AttentionRows.closest_heads).
    heads: tuple[tuple[int, int, int], ...]


QUICK_GRID = KernelGrid(gemm_m=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024), gemm_nk=(256, 1024, 4096),
                        gemm_wide_n=(32768,),
                        context_batch=(1, 4), context_length=(16, 64, 256, 1024),
                        generation_batch=(1, 4, 16), generation_length=(64, 256, 1024, 4096),
                        encoder_batch=(1, 4), encoder_length=(64, 256, 1024),
                        heads=((8, 2, 64), (8, 2, 128)))
FULL_GRID = KernelGrid(gemm_m=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
                       gemm_nk=(256, 512, 1024, 2048, 4096, 8192, 16384), gemm_wide_n=(65536, 131072),
                       context_batch=(1, 2, 4, 8, 16), context_length=(16, 64, 256, 1024, 4096),
                       generation_batch=(1, 4, 16, 64, 128), generation_length=(64, 256, 1024, 4096, 8192),
                       encoder_batch=(1, 2, 4, 8, 16), encoder_length=(64, 256, 1024, 4096),
                       heads=((8, 2, 64), (32, 8, 128), (16, 16, 64), (8, 1, 128)))
KINDS = ("gemm", "context_attention", "generation_attention", "encoder_attention")
# The full grid's timing: a kernel call is microseconds on a GPU, so 0.2 s of samples per shape (not the
# components' 2 s) keeps its ~1,000 shapes to a few minutes. The quick grid times as the quick components.
KERNEL_FULL_TIMING = TimingPlan(warmup=3, min_samples=7, max_samples=50, min_total_s=0.2, min_sample_s=0.01)


def kernel_shapes(grid: KernelGrid, kind: str) -> list[dict[str, int]]:
    """Every shape of ``kind`` in ``grid``."""
    if kind == "gemm":
        narrow_k = [k for k in grid.gemm_nk if k <= 2048]
        pairs = [(n, k) for n in grid.gemm_nk for k in grid.gemm_nk] + [(n, k) for n in grid.gemm_wide_n
                                                                         for k in narrow_k]
        return [{"m": m, "n": n, "k": k} for m in grid.gemm_m for n, k in pairs]
    batches, lengths = {"context_attention": (grid.context_batch, grid.context_length),
                        "generation_attention": (grid.generation_batch, grid.generation_length),
                        "encoder_attention": (grid.encoder_batch, grid.encoder_length)}[kind]
    configs = sorted({(h, h, d) for h, _, d in grid.heads}) if kind == "encoder_attention" else list(grid.heads)
    return [{"batch": b, "length": length, "heads": h, "kv_heads": kv, "head_dim": d}
            for h, kv, d in configs for b in batches for length in lengths]


class KernelBench:
    """Builds each kernel's inputs (seeded random) and times them on ``device`` in ``dtype``."""

    def __init__(self, device: torch.device, dtype: torch.dtype, plan: TimingPlan, cpu_clock: CpuClock,  # noqa: PLR0913
                 gpu: Cuda | None = None, cold_bytes: int = STACK_TARGET_BYTES) -> None:
        self.device = device
        self.cold_bytes = cold_bytes  # weight bytes a GEMM of few rows streams through per call
        self.dtype = dtype
        self.plan = plan
        self.cpu_clock = cpu_clock
        self.gpu = gpu
        self._generator = torch.Generator().manual_seed(SEED)
        self._weights: dict[tuple[int, int], list[torch.Tensor]] = {}

    def measure(self, kind: str, shapes: list[dict[str, int]]) -> list[KernelTiming]:
        """Time ``shapes`` of ``kind``: interleaved on a CPU (fastest sample), one by one on a GPU (median)."""
        if self.gpu is not None:  # each shape's inputs built in turn and dropped after (large on a GPU grid)
            gpu = self.gpu
            timed = []
            for shape in shapes:
                call, count = self._call(kind, shape)
                timed.append((time_call(call, gpu, self.plan), count))
        else:
            calls = [self._call(kind, shape) for shape in shapes]
            timings = time_interleaved([call for call, _ in calls], self.plan, self.cpu_clock)
            timed = [(timing, count) for timing, (_, count) in zip(timings, calls, strict=True)]
        self._weights.clear()
        return [KernelTiming(kind=kind, shape=shape, seconds=timing.seconds / count,  # type: ignore[arg-type]
                             samples_s=tuple(sample / count for sample in timing.samples_s))
                for shape, (timing, count) in zip(shapes, timed, strict=True)]

    def _call(self, kind: str, shape: dict[str, int]) -> tuple[Callable[[], object], int]:
        """(the call of one shape, its inputs built now; the kernels it runs back to back)."""
        if kind == "gemm":  # as nn.Linear runs it: x (m, k) times a weight stored (n, k)
            x = self._random((shape["m"], shape["k"]))
            copies = self._weight_copies(shape["n"], shape["k"]) if shape["m"] < COLD_BELOW_ROWS else [
                self._weight_copies(shape["n"], shape["k"])[0]]

            def run() -> None:
                for weight in copies:
                    F.linear(x, weight)

            return run, len(copies)
        return self._attention_call(kind, shape), 1

    def _weight_copies(self, n: int, k: int) -> list[torch.Tensor]:
        """Distinct (n, k) weights spanning ``cold_bytes`` (one when a weight alone does), built once."""
        copies = self._weights.get((n, k))
        if copies is None:
            count = max(1, math.ceil(self.cold_bytes / (n * k * self.dtype.itemsize)))
            first = self._random((n, k))
            copies = self._weights[(n, k)] = [first] + [first.clone() for _ in range(count - 1)]
        return copies

    def _attention_call(self, kind: str, shape: dict[str, int]) -> Callable[[], object]:
        """The attention call of one shape, its inputs built now."""
        batch, length, heads, kv_heads, dim = (shape[key] for key in ("batch", "length", "heads", "kv_heads",
                                                                      "head_dim"))
        keys = self._random((batch, kv_heads, length, dim))
        values = self._random((batch, kv_heads, length, dim))
        if kind == "generation_attention":  # one new token per sequence over its whole cache
            query = self._random((batch, heads, 1, dim))
            return lambda: F.scaled_dot_product_attention(query, keys, values, enable_gqa=True)
        query = self._random((batch, heads, length, dim))
        causal = kind == "context_attention"
        return lambda: F.scaled_dot_product_attention(query, keys, values, is_causal=causal, enable_gqa=True)

    def _random(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Seeded standard-normal tensor on the device, in the dtype."""
        return torch.randn(shape, generator=self._generator).to(device=self.device, dtype=self.dtype)
