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
fastest sample; on CUDA each shape on its own, median. Seconds.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from calibrate.cuda import Cuda
from calibrate.timing import CpuClock, Timing, TimingPlan, time_call, time_interleaved
from profiles.calibration import KernelTiming

SEED = 20_260_622


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

    def __init__(self, device: torch.device, dtype: torch.dtype, plan: TimingPlan, cpu_clock: CpuClock,
                 gpu: Cuda | None = None) -> None:
        self.device = device
        self.dtype = dtype
        self.plan = plan
        self.cpu_clock = cpu_clock
        self.gpu = gpu
        self._generator = torch.Generator().manual_seed(SEED)
        self._weights: dict[tuple[int, int], torch.Tensor] = {}

    def measure(self, kind: str, shapes: list[dict[str, int]]) -> list[KernelTiming]:
        """Time ``shapes`` of ``kind``: interleaved on a CPU (fastest sample), one by one on a GPU (median)."""
        if self.gpu is not None:  # each shape's inputs built in turn and dropped after (large on a GPU grid)
            gpu = self.gpu
            timings: list[Timing] = [time_call(self._call(kind, shape), gpu, self.plan) for shape in shapes]
        else:
            timings = time_interleaved([self._call(kind, shape) for shape in shapes], self.plan, self.cpu_clock)
        self._weights.clear()
        return [KernelTiming(kind=kind, shape=shape, seconds=timing.seconds, samples_s=timing.samples_s)  # type: ignore[arg-type]
                for shape, timing in zip(shapes, timings, strict=True)]

    def _call(self, kind: str, shape: dict[str, int]) -> Callable[[], object]:
        """The kernel call of one shape, its inputs built now."""
        if kind == "gemm":  # as nn.Linear runs it: x (m, k) times a weight stored (n, k)
            x = self._random((shape["m"], shape["k"]))
            key = (shape["n"], shape["k"])
            weight = self._weights.get(key)
            if weight is None:
                weight = self._weights[key] = self._random(key)
            return lambda: F.linear(x, weight)
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
