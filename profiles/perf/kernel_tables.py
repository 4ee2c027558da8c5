"""Measured kernel timings shipped by NVIDIA's ``aiconfigurator-core`` package, as lookup grids.

The package (pip, Apache-2.0, pinned in pyproject.toml) holds parquet tables
under ``aiconfigurator_core/systems/data/<system>/<family>/<framework>/<version>/``
with latencies in ms measured on real GPUs under vLLM, SGLang and TensorRT-LLM.
This module reads the few tables a dense decoder step needs (GEMMs, context and
generation attention, ViT attention, all-reduce, fused MoE, FP8 activation
quantisation) into numpy grids
once per (system, framework); ``profiles.perf.measured`` composes steps from
them. We read the tables rather than call aiconfigurator's engine: our catalog
models are not aiconfigurator model configs, and a numpy grid lookup is
microseconds in pure Python (README "Measured kernels" gives the figures).

Choices, each deterministic:
- version: the newest version directory of each family that has the table
  (PEP 440 order), so the pinned package fixes every number;
- kernel: where an attention, MoE or all-reduce table holds several kernels
  for one dtype, the one measured at the most shapes (ties by name), i.e. the
  engine's main kernel, not a partial alternative collection. A GEMM table
  times each shape once, with the kernel the engine dispatches for that shape
  (vLLM's block-FP8 linear: FlashInfer below 32 tokens, DeepGEMM above,
  CUTLASS where DeepGEMM does not take the shape), so all its rows of a dtype
  are read, as aiconfigurator's own loader does;
- all-reduce: the CUDA-graph variant where one exists (serving engines capture
  their steps in CUDA graphs).
Times here are seconds (the tables' ms / 1000).
"""

import math
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow

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

    schema = pq.read_schema(path)
    present = set(schema.names)
    strings = [name for name in columns if name in present and schema.field(name).type == "string"]
    table = pq.ParquetFile(path, read_dictionary=strings).read(columns=[name for name in columns if name in present])
    rows = {name: _as_numpy(table.column(name)) for name in columns if name in present}
    for name, value in (defaults or {}).items():
        if name not in rows:
            rows[name] = np.full(table.num_rows, value)
    return rows


def _as_numpy(column: "pyarrow.ChunkedArray") -> np.ndarray:
    """A parquet column as numpy; strings (read as dictionaries) as an array of the strings."""
    import pyarrow as pa

    parts = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            names = np.array(chunk.dictionary.to_pylist(), dtype=object)
            parts.append(names[chunk.indices.to_numpy(zero_copy_only=False)])
        else:
            parts.append(chunk.to_numpy(zero_copy_only=False))
    return np.concatenate(parts)


def _main_kernel(rows: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """``mask`` narrowed to the kernel measured at the most shapes (ties: first name)."""
    counts = Counter(rows["kernel_source"][mask].tolist())
    if not counts:
        return mask
    best = min(counts, key=lambda name: (-counts[name], name))
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
    """``ys`` at ``x``: linear between grid points, extended as ``axis_weights`` says (the hot path: no lists)."""
    last = xs[-1]
    if x >= last:
        return ys[-1] * (x / last) ** power
    upper = bisect_right(xs, x)
    if upper == 0:
        return ys[0]
    lower = upper - 1
    start = xs[lower]
    return ys[lower] + (x - start) / (xs[upper] - start) * (ys[upper] - ys[lower])


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


def rising(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """``values`` made non-decreasing along ``axis``: each point is the least time measured at it or beyond.

    Measured times are not monotone everywhere: a run's noise is a few percent,
    and some points are outliers (B200's FP8 GEMMs under vLLM measure 1.9x
    slower at m = 1 than at m = 8). A step with more work must not come out
    faster (the scheduler would prefer bigger batches for it), and a kernel on
    less work can always run as the kernel measured on more (padded rows, a
    masked tail), so a point is bounded by every point after it: the curve is
    its running minimum from the far end (the lower monotone envelope). Timing
    noise is mostly positive (clock ramp-up, interference, cold caches), so a
    spike is read as noise. A running maximum from the near end would carry a
    spike at the smallest size across every larger one (it made B200's 70B
    decode GEMMs 1.9x the table's own m = 8 time).
    """
    flipped = np.flip(values, axis=axis)
    return np.flip(np.minimum.accumulate(flipped, axis=axis), axis=axis)


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
    row_power: float  # how a row beyond the last grid row scales (see ``axis_weights``)
    _blended: dict[int, list[float]] = field(default_factory=dict, compare=False, repr=False)

    def row(self, row: int) -> list[float]:
        """The grid's curve over the columns at ``row`` (interpolated between grid rows, remembered)."""
        found = self._blended.get(row)
        if found is None:
            weights = axis_weights(self.rows, float(row), self.row_power)
            found = self._blended[row] = [sum(self.seconds[index][column] * weight for index, weight in weights)
                                          for column in range(len(self.columns))]
        return found


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
    grid = rising(grid, axis=1)  # longer sequences never faster
    if not per_sequence:
        grid = rising(grid * batches[:, None], axis=0)  # nor larger batches
    # Beyond the largest measured batch a sequence costs what it costs there: per-sequence
    # times hold (power 0), total times grow with the batch (power 1).
    return Grid2D(batches.astype(float).tolist(), lengths.astype(float).tolist(), grid.tolist(),
                  0.0 if per_sequence else 1.0)


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


# ---------------------------------------------------------------- FP8 activation quantisation


@dataclass(frozen=True)
class QuantizeTable:
    """Seconds of an FP8 activation-quantisation kernel on a full (m, k) grid (aiconfigurator's
    ``quantize`` tables: ``computescale`` is what a dynamic scale adds over a static one,
    ``scale_matrix`` the static quantisation of a BF16 input itself)."""

    ms: list[float]
    ks: list[float]
    seconds: np.ndarray  # [m, k]

    def curve(self, k: int, ms: list[float]) -> np.ndarray:
        """Seconds at each of ``ms`` rows of width ``k``: linear between grid points, held flat
        beyond the grid (a quantisation delta is not extrapolated, as aiconfigurator clamps it)."""
        per_m = np.array([np.interp(float(k), self.ks, self.seconds[index]) for index in range(len(self.ms))])
        return np.interp(ms, self.ms, per_m)



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
    encoder: AttentionRows | None  # ViT attention: multi-head, bidirectional, length = patches per sequence
    allreduce: dict[int, tuple[list[float], list[float]]]  # GPUs -> (message elements, seconds)
    moe: dict[str, np.ndarray] | None  # fused MoE expert rows (see ``moe_curve``)
    compute_scale: QuantizeTable | None = None  # dynamic over static FP8 activation scaling
    scale_matrix: QuantizeTable | None = None  # static FP8 quantisation of a BF16 activation

    @property
    def label(self) -> str:
        """'h100_sxm, vLLM 0.24.0'."""
        return f"{self.system}, {ENGINE_NAMES[self.framework]} {self.version}"

    @property
    def provenance(self) -> str:
        """Where the timings come from, as a step's provenance starts (a calibration profile's tables say theirs)."""
        return f"measured kernels ({self.label})"

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        """Pickled as its name: a worker process reads the tables once itself (megabytes not copied per job)."""
        return kernel_tables, (self.system, self.framework)


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
        moe=_moe_rows(system_dir, framework),
        compute_scale=_quantize_table(system_dir, framework, "computescale_perf.parquet"),
        scale_matrix=_quantize_table(system_dir, framework, "scale_matrix_perf.parquet"),
    )


# GEMM dtypes our precisions run their weight GEMMs in: BF16, per-tensor FP8 (dynamic
# activation scales, as the collectors time it) and block-scaled FP8 (128 x 128 weight blocks).
GEMM_DTYPES = ("bfloat16", "fp8", "fp8_block")


def _gemm_tables(path: Path) -> dict[str, GemmTable]:
    """The GEMM grids by dtype; every row of a dtype (each shape is timed once, see the module doc)."""
    rows = _read(path, ["gemm_dtype", "m", "n", "k", "latency"])
    tables = {}
    for dtype in GEMM_DTYPES:
        mask = rows["gemm_dtype"] == dtype
        if mask.any():
            tables[dtype] = _gemm_table(rows["m"][mask], rows["n"][mask], rows["k"][mask],
                                        rows["latency"][mask] * MS)
    return tables


def _quantize_table(system_dir: Path, framework: str, filename: str) -> QuantizeTable | None:
    """One FP8 quantisation table of the framework, when measured (a complete (m, k) grid)."""
    found = newest_table(system_dir, "quantize", framework, filename)
    if found is None:
        return None
    rows = _read(found[0], ["quant_dtype", "m", "k", "latency"])
    mask = rows["quant_dtype"] == "fp8"
    m, k = rows["m"][mask], rows["k"][mask]
    ms, ks = np.unique(m), np.unique(k)
    grid = np.full((ms.size, ks.size), np.nan)
    grid[np.searchsorted(ms, m), np.searchsorted(ks, k)] = rows["latency"][mask] * MS
    if np.isnan(grid).any():  # every shipped table is a full grid; a partial one is not guessed at
        return None
    return QuantizeTable(ms.astype(float).tolist(), ks.astype(float).tolist(), grid)


def _encoder_rows(system_dir: Path, framework: str) -> AttentionRows | None:
    """The ViT attention table, when measured (multi-head: KV heads = heads)."""
    found = newest_table(system_dir, "encoder_attention", framework, "encoder_attention_perf.parquet")
    if found is None:
        return None
    rows = _read(found[0], ["kernel_source", "batch_size", "isl", "num_heads", "head_dim", "latency"])
    mask = _main_kernel(rows, np.ones(rows["latency"].size, dtype=bool))
    heads = rows["num_heads"][mask]
    return AttentionRows(rows["batch_size"][mask], rows["isl"][mask], heads, heads, rows["head_dim"][mask],
                         rows["latency"][mask] * MS)


MOE_COLUMNS = ["kernel_source", "moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts",
               "moe_tp_size", "moe_ep_size", "distribution", "latency"]


def _moe_rows(system_dir: Path, framework: str) -> dict[str, np.ndarray] | None:
    """The fused-MoE table (routed experts of one layer), when measured."""
    found = newest_table(system_dir, "moe", framework, "moe_perf.parquet")
    return _read(found[0], MOE_COLUMNS) if found is not None else None


def moe_curve(tables: KernelTables, dtype: str, hidden: int, expert_width: int, top_k: int, experts: int,
              tensor_parallel: int) -> tuple[list[float], list[float]] | None:
    """(tokens, seconds) of one MoE layer's routed experts with balanced routing, experts split by
    tensor parallelism (no expert parallelism); None when this exact configuration was not measured."""
    rows = tables.moe
    if rows is None:
        return None
    mask = ((rows["moe_dtype"] == dtype) & (rows["hidden_size"] == hidden) & (rows["inter_size"] == expert_width)
            & (rows["topk"] == top_k) & (rows["num_experts"] == experts) & (rows["moe_tp_size"] == tensor_parallel)
            & (rows["moe_ep_size"] == 1) & (rows["distribution"] == "balanced"))
    mask = _main_kernel(rows, mask)
    if not mask.any():
        return None
    order = np.argsort(rows["num_tokens"][mask])
    return (rows["num_tokens"][mask][order].astype(float).tolist(),
            rising(rows["latency"][mask][order] * MS).tolist())


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
