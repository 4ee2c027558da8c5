"""Measured kernel timings shipped by NVIDIA's ``aiconfigurator-core`` package, as lookup grids.

The package (pip, Apache-2.0, pinned in pyproject.toml) holds parquet tables
under ``aiconfigurator_core/systems/data/<system>/<family>/<framework>/<version>/``
with latencies in ms measured on real GPUs under vLLM, SGLang and TensorRT-LLM.
This module reads the few tables a dense decoder step needs (GEMMs, context and
generation attention, ViT attention, all-reduce, fused MoE) into numpy grids
once per (system, framework); ``profiles.perf.measured`` composes steps from
them. We read the tables rather than call aiconfigurator's engine: our catalog
models are not aiconfigurator model configs, and a numpy grid lookup is
microseconds in pure Python (README "Measured kernels" gives the figures).

Choices, each deterministic:
- version: the newest version directory of each family that has the table
  (PEP 440 order), so the pinned package fixes every number;
- kernel: where a table holds several kernels for one dtype, the one measured
  at the most shapes (ties by name), i.e. the engine's main kernel, not a
  partial alternative collection;
- all-reduce: the CUDA-graph variant where one exists (serving engines capture
  their steps in CUDA graphs).
Times here are seconds (the tables' ms / 1000).
"""

import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

PACKAGE = "aiconfigurator-core"
MS = 1e-3

# vlmplan GPU id -> aiconfigurator system directory. GPUs not listed (L4, A10G,
# RTX 4090, Jetson, H100 PCIe: aiconfigurator ships no tables for them) use the roofline.
AIC_SYSTEMS = {"h100-sxm": "h100_sxm", "h200": "h200_sxm", "a100-80gb": "a100_sxm", "l40s": "l40s",
               "b200": "b200_sxm", "gb200": "gb200"}
ENGINE_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}


class KernelDataUnavailable(Exception):
    """Why measured kernels cannot serve a configuration (the provenance says it)."""


def package_data_root() -> Path:
    """``aiconfigurator_core/systems/data``; KernelDataUnavailable when the package is not installed."""
    try:
        import aiconfigurator_core
    except ImportError as error:
        raise KernelDataUnavailable(f"{PACKAGE} is not installed") from error
    return Path(aiconfigurator_core.__file__).parent / "systems" / "data"


def _version_key(version: str) -> tuple[int, object]:
    """PEP 440 order of a version directory name (unparseable names sort first)."""
    from packaging.version import InvalidVersion, Version  # a dependency of aiconfigurator-core

    try:
        return 1, Version(version)
    except InvalidVersion:
        return 0, version


def newest_table(system_dir: Path, family: str, framework: str, filename: str) -> tuple[Path, str] | None:
    """(path, version) of ``filename`` in the newest version directory of ``family/framework`` holding it."""
    framework_dir = system_dir / family / framework
    if not framework_dir.is_dir():
        return None
    versions = sorted((d.name for d in framework_dir.iterdir() if (d / filename).is_file()), key=_version_key)
    return (framework_dir / versions[-1] / filename, versions[-1]) if versions else None


def _read(path: Path, columns: list[str], defaults: dict[str, object] | None = None) -> dict[str, np.ndarray]:
    """Columns of a parquet table as numpy arrays; a column older tables lack takes its ``defaults`` value."""
    import pyarrow.parquet as pq  # a dependency of aiconfigurator-core

    present = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[name for name in columns if name in present])
    rows = {name: table.column(name).to_numpy(zero_copy_only=False) for name in columns if name in present}
    for name, value in (defaults or {}).items():
        if name not in rows:
            rows[name] = np.full(table.num_rows, value)
    return rows


def _main_kernel(rows: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """``mask`` narrowed to the kernel measured at the most shapes (ties: first name)."""
    sources = rows["kernel_source"][mask]
    if sources.size == 0:
        return mask
    names, counts = np.unique(sources, return_counts=True)
    best = names[int(np.argmax(counts))]  # np.unique sorts names, argmax takes the first maximum
    return mask & (rows["kernel_source"] == best)


# ---------------------------------------------------------------- axis lookups


def axis_weights(values: list[float], x: float, power: float) -> list[tuple[int, float]]:
    """Linear-interpolation weights of ``x`` on the sorted grid ``values``.

    Below the grid the first point holds (small shapes are launch-bound: a
    smaller one is not faster); beyond it the last point scales as
    (x / last)^power: 1 for GEMM dimensions (a compute-bound kernel's time
    grows in proportion to the work), 2 for a causal attention length.
    """
    if x >= values[-1]:
        return [(len(values) - 1, (x / values[-1]) ** power)]
    if x <= values[0]:
        return [(0, 1.0)]
    upper = bisect_right(values, x)
    lower = upper - 1
    weight = (x - values[lower]) / (values[upper] - values[lower])
    return [(lower, 1.0 - weight), (upper, weight)]


def interpolate(xs: list[float], ys: list[float], x: float, power: float = 1.0) -> float:
    """``ys`` at ``x``: linear between grid points, extended as ``axis_weights`` says."""
    return sum(ys[index] * weight for index, weight in axis_weights(xs, x, power))


# ---------------------------------------------------------------- GEMMs


@dataclass(frozen=True)
class GemmTable:
    """Seconds of one GEMM kernel on a full (m, n, k) grid; gaps filled as ``_fill_gaps`` says."""

    ms: list[float]
    ns: list[float]
    ks: list[float]
    seconds: np.ndarray  # [m, n, k]

    def curve(self, n: int, k: int) -> np.ndarray:
        """Seconds at every grid m of an (m x k) @ (k x n) GEMM: bilinear in (n, k), scaled beyond the grid."""
        total = np.zeros(len(self.ms))
        for n_index, n_weight in axis_weights(self.ns, n, 1.0):
            for k_index, k_weight in axis_weights(self.ks, k, 1.0):
                total += n_weight * k_weight * self.seconds[:, n_index, k_index]
        return total


def _gemm_table(m: np.ndarray, n: np.ndarray, k: np.ndarray, seconds: np.ndarray) -> GemmTable:
    """The dense grid of one kernel's rows."""
    ms, ns, ks = (np.unique(axis) for axis in (m, n, k))
    grid = np.full((ms.size, ns.size, ks.size), np.nan)
    grid[np.searchsorted(ms, m), np.searchsorted(ns, n), np.searchsorted(ks, k)] = seconds
    _fill_gaps(grid, ms, ns)
    return GemmTable(ms.astype(float).tolist(), ns.astype(float).tolist(), ks.astype(float).tolist(), grid)


def _fill_gaps(grid: np.ndarray, ms: np.ndarray, ns: np.ndarray) -> None:
    """Unmeasured grid points: interpolated along m within an (n, k) column when it has points,
    else the nearest measured n of the same k scaled by n / n' (GEMM time ~ proportional to n)."""
    for n_index in range(ns.size):
        for k_index in range(grid.shape[2]):
            column = grid[:, n_index, k_index]
            known = ~np.isnan(column)
            if known.all() or not known.any():
                continue
            column[~known] = np.interp(ms[~known], ms[known], column[known])
    for n_index in range(ns.size):
        for k_index in range(grid.shape[2]):
            if not np.isnan(grid[0, n_index, k_index]):
                continue
            measured = [j for j in range(ns.size) if not np.isnan(grid[0, j, k_index])]
            if measured:
                nearest = min(measured, key=lambda j: abs(math.log(ns[j] / ns[n_index])))
                grid[:, n_index, k_index] = grid[:, nearest, k_index] * ns[n_index] / ns[nearest]


# ---------------------------------------------------------------- attention


@dataclass(frozen=True)
class AttentionRows:
    """One attention table narrowed to one kernel and KV dtype: shapes and seconds per row."""

    batch: np.ndarray
    length: np.ndarray  # context: new tokens per sequence; generation: KV tokens per sequence
    heads: np.ndarray
    kv_heads: np.ndarray
    head_dim: np.ndarray
    seconds: np.ndarray

    def closest_heads(self, heads: int, kv_heads: int, head_dim: int, by_kv: bool) -> tuple[np.ndarray, float]:
        """Rows of the measured head configuration closest to ours and the factor scaling them to ours.

        Context attention is compute-bound: its time scales with query heads,
        so the query-head count is matched first and the time scaled by
        heads / heads'. Decode attention reads the KV cache: KV heads are
        matched first and the time scaled by kv_heads / kv_heads'. Both scale
        by head_dim / head_dim' when no table has ours.
        """
        configs = sorted(set(zip(self.heads.tolist(), self.kv_heads.tolist(), self.head_dim.tolist(), strict=True)))

        def distance(config: tuple[int, int, int]) -> tuple[float, float, float]:
            h, kv, dim = config
            query_gap, kv_gap = abs(math.log(h / heads)), abs(math.log(kv / kv_heads))
            return (abs(math.log(dim / head_dim)), *((kv_gap, query_gap) if by_kv else (query_gap, kv_gap)))

        h, kv, dim = min(configs, key=distance)
        scale = (kv_heads / kv if by_kv else heads / h) * head_dim / dim
        return (self.heads == h) & (self.kv_heads == kv) & (self.head_dim == dim), scale


@dataclass(frozen=True)
class Grid2D:
    """Seconds on a (rows x columns) grid, e.g. (batch, length), every point filled."""

    rows: list[float]
    columns: list[float]
    seconds: list[list[float]]

    def at(self, row: float, column: float, row_power: float, column_power: float) -> float:
        """Bilinear lookup, extended beyond the grid with the given powers (see ``axis_weights``)."""
        return sum(row_weight * interpolate(self.columns, self.seconds[index], column, column_power)
                   for index, row_weight in axis_weights(self.rows, row, row_power))


def attention_grid(rows: AttentionRows, mask: np.ndarray, scale: float, per_sequence: bool) -> Grid2D:
    """(batch, length) grid of the masked rows times ``scale``; per sequence (divided by the batch) if asked.

    Large batches of long sequences are not measured (they exceed memory):
    such a point takes the per-sequence time of the nearest measured batch at
    that length (the kernel is saturated there), i.e. grows with the batch.
    """
    batches, lengths = np.unique(rows.batch[mask]), np.unique(rows.length[mask])
    grid = np.full((batches.size, lengths.size), np.nan)
    grid[np.searchsorted(batches, rows.batch[mask]), np.searchsorted(lengths, rows.length[mask])] = (
        rows.seconds[mask] * scale / rows.batch[mask])
    for column in range(lengths.size):
        values = grid[:, column]
        known = ~np.isnan(values)
        values[~known] = np.interp(np.log(batches[~known]), np.log(batches[known]), values[known])
    if not per_sequence:
        grid *= batches[:, None]
    return Grid2D(batches.astype(float).tolist(), lengths.astype(float).tolist(), grid.tolist())


def _attention_rows(path: Path, kv_dtype: str, length_column: str) -> AttentionRows | None:
    """The full-attention (no sliding window) rows of the main kernel for ``kv_dtype``."""
    columns = ["kernel_source", "batch_size", length_column, "num_heads", "num_key_value_heads", "head_dim",
               "kv_cache_dtype", "window_size", "latency"]
    rows = _read(path, columns, {"window_size": 0})  # tables older than sliding-window data: full attention
    mask = _main_kernel(rows, (rows["window_size"] == 0) & (rows["kv_cache_dtype"] == kv_dtype))
    if not mask.any():
        return None
    length = rows[length_column][mask]
    if length_column == "step":  # generation: the step-th decode token attends over step + 1 tokens (isl 1)
        length = length + 1
    return AttentionRows(rows["batch_size"][mask], length, rows["num_heads"][mask],
                         rows["num_key_value_heads"][mask], rows["head_dim"][mask], rows["latency"][mask] * MS)


@dataclass(frozen=True)
class EncoderAttentionRows:
    """ViT (bidirectional) attention: batch of sequences x length, heads, head_dim -> seconds."""

    batch: np.ndarray
    length: np.ndarray
    heads: np.ndarray
    head_dim: np.ndarray
    seconds: np.ndarray


# ---------------------------------------------------------------- the tables of one system and framework


@dataclass(frozen=True)
class KernelTables:
    """What aiconfigurator measured on one system under one framework (None: not measured)."""

    system: str
    framework: str
    version: str  # of the GEMM table, the one every step uses
    gemm: dict[str, GemmTable]  # by dtype: "bfloat16", "fp8"
    context: dict[str, AttentionRows]  # by KV dtype
    generation: dict[str, AttentionRows]
    encoder: EncoderAttentionRows | None
    allreduce: dict[int, tuple[list[float], list[float]]]  # GPUs -> (message elements, seconds)

    @property
    def label(self) -> str:
        """'h100_sxm, vLLM 0.24.0'."""
        return f"{self.system}, {ENGINE_NAMES[self.framework]} {self.version}"


@cache
def kernel_tables(system: str, framework: str) -> KernelTables:
    """The tables of ``system`` under ``framework``, read once per process.

    Raises KernelDataUnavailable when the package is absent or has no GEMM
    and attention tables for this pair.
    """
    system_dir = package_data_root() / system
    gemm_found = newest_table(system_dir, "gemm", framework, "gemm_perf.parquet")
    context_found = newest_table(system_dir, "attention", framework, "context_attention_perf.parquet")
    generation_found = newest_table(system_dir, "attention", framework, "generation_attention_perf.parquet")
    if gemm_found is None or context_found is None or generation_found is None:
        raise KernelDataUnavailable(f"{PACKAGE} has no GEMM and attention tables for {system} "
                                    f"under {ENGINE_NAMES[framework]}")
    return KernelTables(
        system=system, framework=framework, version=gemm_found[1],
        gemm=_gemm_tables(gemm_found[0]),
        context={dtype: rows for dtype in ("bfloat16", "fp8")
                 if (rows := _attention_rows(context_found[0], dtype, "isl")) is not None},
        generation={dtype: rows for dtype in ("bfloat16", "fp8")
                    if (rows := _attention_rows(generation_found[0], dtype, "step")) is not None},
        encoder=_encoder_rows(system_dir, framework),
        allreduce=_allreduce_curves(system_dir, framework),
    )


def _gemm_tables(path: Path) -> dict[str, GemmTable]:
    """BF16 and per-tensor FP8 GEMMs (the dtypes our precisions run their weight GEMMs in)."""
    rows = _read(path, ["kernel_source", "gemm_dtype", "m", "n", "k", "latency"])
    tables = {}
    for dtype in ("bfloat16", "fp8"):
        mask = _main_kernel(rows, rows["gemm_dtype"] == dtype)
        if mask.any():
            tables[dtype] = _gemm_table(rows["m"][mask], rows["n"][mask], rows["k"][mask],
                                        rows["latency"][mask] * MS)
    return tables


def _encoder_rows(system_dir: Path, framework: str) -> EncoderAttentionRows | None:
    """The ViT attention table, when measured."""
    found = newest_table(system_dir, "encoder_attention", framework, "encoder_attention_perf.parquet")
    if found is None:
        return None
    rows = _read(found[0], ["kernel_source", "batch_size", "isl", "num_heads", "head_dim", "latency"])
    mask = _main_kernel(rows, np.ones(rows["latency"].size, dtype=bool))
    return EncoderAttentionRows(rows["batch_size"][mask], rows["isl"][mask], rows["num_heads"][mask],
                                rows["head_dim"][mask], rows["latency"][mask] * MS)


def _allreduce_curves(system_dir: Path, framework: str) -> dict[int, tuple[list[float], list[float]]]:
    """The framework's all-reduce (BF16) by GPU count: message size in elements -> seconds."""
    found = newest_table(system_dir, "comm", framework, "custom_allreduce_perf.parquet")
    if found is None:
        return {}
    rows = _read(found[0], ["kernel_source", "num_gpus", "message_size", "latency"])
    graph = np.char.find(rows["kernel_source"].astype(str), "graph") >= 0
    mask = _main_kernel(rows, graph if graph.any() else np.ones(graph.size, dtype=bool))
    curves = {}
    for gpus in np.unique(rows["num_gpus"][mask]).tolist():
        chosen = mask & (rows["num_gpus"] == gpus)
        order = np.argsort(rows["message_size"][chosen])
        curves[int(gpus)] = (rows["message_size"][chosen][order].astype(float).tolist(),
                             (rows["latency"][chosen][order] * MS).tolist())
    return curves
