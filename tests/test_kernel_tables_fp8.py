"""FP8 checkpoints as they are scaled: block-scaled models read the block tables, static ones drop the scale work.

aiconfigurator's mapping (sdk/models/helpers.py ``_infer_quant_modes_from_raw_config``):
``weight_block_size`` -> fp8_block GEMMs and MoE; per-tensor without dynamic activations -> fp8_static.
"""

import numpy as np
import pytest

from profiles.catalog import load_catalog, parse_inline_catalog
from profiles.errors import CatalogError
from profiles.models import ModelSpec
from profiles.perf import MeasuredKernelPerfModel, perf_model
from profiles.perf.kernel_tables import _read, kernel_tables, newest_table, package_data_root
from profiles.perf.measured import layer_gemm_shapes, weight_dtype

pytest.importorskip("aiconfigurator_core")
CATALOG = load_catalog()
H200 = CATALOG.gpu("h200")


def _row_s(family: str, framework: str, filename: str, columns: list[str], **where: object) -> float:
    """Seconds of the one row of an h200_sxm table matching ``where``, read straight from the parquet."""
    path, _version = newest_table(package_data_root() / "h200_sxm", family, framework, filename)
    rows = _read(path, [*columns, "latency"])
    hit = np.ones(rows["latency"].size, dtype=bool)
    for column, value in where.items():
        hit &= rows[column] == value
    (latency_ms,) = rows["latency"][hit]
    return latency_ms / 1000


def test_the_catalog_says_how_each_fp8_checkpoint_is_scaled():
    # Qwen/Qwen3-235B-A22B-FP8: quantization_config weight_block_size [128, 128]
    assert CATALOG.model("qwen3-235b-a22b").fp8_scaling == "block"
    # no scaling given: a per-tensor checkpoint with calibrated activation scales (ModelOpt), aiconfigurator's default
    assert CATALOG.model("llama-3-70b").fp8_scaling == "per_tensor_static"
    with pytest.raises(ValueError, match="fp8_scaling"):
        ModelSpec.model_validate({"id": "x", "kind": "llm", "decoder": "llama-3-8b", "fp8_scaling": "per_channel"})


def test_a_bad_fp8_scaling_in_a_scenario_catalog_names_the_field():
    with pytest.raises(CatalogError, match=r"scenario.yaml: catalog.*models.0.fp8_scaling"):
        parse_inline_catalog({"models": [{"id": "mine", "kind": "llm", "decoder": "llama-3-8b",
                                          "fp8_scaling": "blockwise"}]}, "scenario.yaml: catalog")


def test_weight_dtype_follows_the_scaling_only_at_fp8():
    assert weight_dtype("fp8", "block") == "fp8_block"
    assert weight_dtype("fp8", "per_tensor_static") == weight_dtype("fp8", "per_tensor_dynamic") == "fp8"
    assert weight_dtype("bf16", "block") == "bfloat16"
    assert weight_dtype("int4", "block") is None


def test_a_block_fp8_moe_reads_the_block_expert_table():
    """Qwen3-235B at TP4 on H200 under vLLM, 8 decode tokens: 94 layers x the fp8_block MoE row (Triton
    block-FP8 experts, 0.12 ms), not the per-tensor ModelOpt row (0.67 ms) the old lookup read."""
    model = CATALOG.model("qwen3-235b-a22b")
    pm = perf_model(model, H200, 4, precision="fp8", engine="vllm")
    assert isinstance(pm, MeasuredKernelPerfModel)
    columns = ["moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size",
               "moe_ep_size", "distribution"]
    shape = {"num_tokens": 8, "hidden_size": 4096, "inter_size": 1536, "topk": 8, "num_experts": 128,
             "moe_tp_size": 4, "moe_ep_size": 1, "distribution": "balanced"}
    block = _row_s("moe", "vllm", "moe_perf.parquet", columns, moe_dtype="fp8_block", **shape)
    per_tensor = _row_s("moe", "vllm", "moe_perf.parquet", columns, moe_dtype="fp8", **shape)
    assert per_tensor > 4 * block
    assert pm.step_breakdown((), 8, 8 * 1024).experts_s == pytest.approx(94 * block, rel=1e-9)
    assert "routed experts" not in pm.provenance


def test_a_block_fp8_gemm_reads_every_kernel_the_engine_dispatches():
    """vLLM's block-FP8 linear runs FlashInfer below 32 tokens and DeepGEMM above: each shape is timed once,
    with its own kernel, and both ranges are read (the old lookup kept DeepGEMM's rows only)."""
    table = kernel_tables("h200_sxm", "vllm").gemm["fp8_block"]
    columns = ["gemm_dtype", "m", "n", "k", "kernel_source"]
    for m, kernel in ((8, "FlashInferFp8BlockScaledMMKernel"), (64, "DeepGemmFp8BlockScaledMMKernel")):
        row = _row_s("gemm", "vllm", "gemm_perf.parquet", columns, gemm_dtype="fp8_block", m=m, n=4096, k=4096,
                     kernel_source=kernel)
        assert table.curve(4096, 4096)[table.ms.index(float(m))] == pytest.approx(row, rel=1e-12)


def test_a_static_fp8_gemm_drops_the_scale_work_the_table_times():
    """TensorRT-LLM's FP8 GEMM table computes activation scales every call; a static checkpoint does not:
    each GEMM is the row less the computescale row (and the scale_matrix row where its input is FP8
    already), floored at its speed of light. Llama-3-70B, TP8 on H200, 8 decode tokens."""
    llama = CATALOG.model("llama-3-70b")
    static = perf_model(llama, H200, 8, precision="fp8", engine="trtllm")
    dynamic = perf_model(llama.model_copy(update={"fp8_scaling": "per_tensor_dynamic"}), H200, 8, precision="fp8",
                         engine="trtllm")
    tables = kernel_tables("h200_sxm", "trtllm")
    gemm, compute_scale, scale_matrix = tables.gemm["fp8"], tables.compute_scale, tables.scale_matrix
    assert compute_scale is not None
    assert scale_matrix is not None
    quantize = ["quant_dtype", "m", "k"]
    assert compute_scale.curve(8192, [8.0])[0] == pytest.approx(
        _row_s("quantize", "trtllm", "computescale_perf.parquet", quantize, quant_dtype="fp8", m=8, k=8192))
    assert scale_matrix.curve(1024, [8.0])[0] == pytest.approx(
        _row_s("quantize", "trtllm", "scale_matrix_perf.parquet", quantize, quant_dtype="fp8", m=8, k=1024))
    shapes = layer_gemm_shapes(llama.decoder, 8, dense_ffn=True)
    assert [shape.quantized_input for shape in shapes] == [False, True, False, True]  # output and down projections
    composed = np.zeros(len(gemm.ms))
    for shape in shapes:
        saved = compute_scale.curve(shape.k, gemm.ms) + (scale_matrix.curve(shape.k, gemm.ms)
                                                          if shape.quantized_input else 0.0)
        composed += llama.decoder.layers * (gemm.curve(shape.n, shape.k) - saved)
    at_8 = gemm.ms.index(8.0)
    # the step is the lower monotone envelope of the composed curve (no floor fires at these sizes)
    assert static.step_breakdown((), 8, 8 * 1024).gemm_s == pytest.approx(min(composed[at_8:]), rel=1e-9)
    assert static.step_breakdown((), 8, 8 * 1024).gemm_s < 0.75 * dynamic.step_breakdown((), 8, 8 * 1024).gemm_s
