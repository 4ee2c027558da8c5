"""profiles/perf/measured.py and kernel_tables.py: step times from aiconfigurator-core's measured kernels."""

import sys

import numpy as np
import pytest

from profiles.calibration import CalibrationProfile, ComponentFit, DeviceInfo, NvmlReading
from profiles.catalog import load_catalog
from profiles.errors import ConfigurationError
from profiles.perf import MeasuredKernelPerfModel, RooflinePerfModel, perf_model, roofline_model
from profiles.perf.calibrated import CalibratedPerfModel
from profiles.perf.kernel_tables import (
    _read,
    kernel_tables,
    newest_table,
    package_data_root,
    rising,
)
from profiles.perf.measured import layer_gemm_shapes

pytest.importorskip("aiconfigurator_core")
CATALOG = load_catalog()
H100 = CATALOG.gpu("h100-sxm")


def _gemm_rows(m: int, n: int, k: int) -> float:
    """Seconds of the BF16 GEMM (m, n, k) in the h100_sxm vLLM table, read straight from the parquet."""
    path, _version = newest_table(package_data_root() / "h100_sxm", "gemm", "vllm", "gemm_perf.parquet")
    rows = _read(path, ["gemm_dtype", "m", "n", "k", "latency", "kernel_source"])
    hit = ((rows["gemm_dtype"] == "bfloat16") & (rows["m"] == m) & (rows["n"] == n) & (rows["k"] == k)
           & (rows["kernel_source"] == "torch.nn.functional.linear"))
    (latency_ms,) = rows["latency"][hit]
    return latency_ms / 1000


def test_a_gemm_at_a_measured_shape_is_the_table_row():
    table = kernel_tables("h100_sxm", "vllm").gemm["bfloat16"]
    m_index = table.ms.index(1024.0)
    assert table.curve(4096, 8192)[m_index] == pytest.approx(_gemm_rows(1024, 4096, 8192), rel=1e-12)


def test_a_step_whose_gemms_are_all_measured_sums_the_table_rows():
    """A dense decoder whose per-GPU GEMMs all sit on the grid: the step's GEMM time is layers x the rows."""
    llama = CATALOG.model("llama-3-8b")
    decoder = llama.decoder.model_copy(update={"intermediate": 8192, "layers": 4})
    model = llama.model_copy(update={"decoder": decoder})
    pm = perf_model(model, H100)
    assert isinstance(pm, MeasuredKernelPerfModel)
    shapes = layer_gemm_shapes(decoder, 1, dense_ffn=False)
    assert [(shape.n, shape.k) for shape in shapes] == [(6144, 4096), (4096, 4096), (16384, 4096), (4096, 8192)]
    expected = 4 * sum(_gemm_rows(512, n, k) for n, k, _quantized_input in shapes)
    assert pm.step_breakdown(((512, 0),), 0, 0).gemm_s == pytest.approx(expected, rel=1e-12)
    # the LM head at one sampling row (vocab 128,256 beyond the largest measured n: scaled by n / 65,536):
    # the least time measured at one row or more (the table's m = 1 row is slower than some larger m)
    table = kernel_tables("h100_sxm", "vllm").gemm["bfloat16"]
    head = min(_gemm_rows(int(m), 65536, 4096) for m in table.ms) * 128256 / 65536
    assert pm.step_breakdown(((512, 0),), 0, 0).lm_head_s == pytest.approx(head, rel=1e-12)


def test_curves_are_the_lower_monotone_envelope_of_the_measurements():
    # Each point is the least time measured at it or beyond: a spike is noise, never carried forward.
    assert rising(np.array([3.0, 1.0, 2.0, 5.0, 4.0])).tolist() == [1.0, 1.0, 2.0, 4.0, 4.0]
    grid = np.array([[2.0, 1.0], [1.0, 3.0]])
    assert rising(grid, axis=1).tolist() == [[1.0, 1.0], [1.0, 3.0]]
    assert rising(grid, axis=0).tolist() == [[1.0, 1.0], [1.0, 3.0]]


def test_a_slow_outlier_at_one_row_does_not_slow_every_decode_step():
    """B200's FP8 GEMMs under vLLM measure 1.9x slower at m = 1 than at m = 8 (70B, TP4 shapes).

    A running maximum carried that m = 1 time to every batch up to a few hundred
    (a 70B TP4 decode step of 14.8 ms where the runs measure 8.2 ms); the lower
    envelope reads each batch at the table's own time or a larger batch's.
    """
    # dynamic activation scales: the GEMMs as the table times them (a static checkpoint subtracts the scale work)
    model = CATALOG.model("llama-3-70b").model_copy(update={"fp8_scaling": "per_tensor_dynamic"})
    pm = perf_model(model, CATALOG.gpu("b200"), 4, precision="fp8", engine="vllm")
    assert isinstance(pm, MeasuredKernelPerfModel)
    table = kernel_tables("b200_sxm", "vllm").gemm["fp8"]  # per-shape curves as measured (bilinear in n, k)

    def layer_rows_s(m: int) -> float:
        shapes = layer_gemm_shapes(model.decoder, 4, dense_ffn=True)
        return model.decoder.layers * sum(float(table.curve(n, k)[table.ms.index(m)]) for n, k, _ in shapes)

    assert layer_rows_s(1) > 1.5 * layer_rows_s(8)  # the outlier in the table
    decode_gemm_s = pm.step_breakdown((), 8, 8 * 1024).gemm_s
    assert 0.9 * layer_rows_s(8) <= decode_gemm_s <= layer_rows_s(8)


def test_context_attention_at_a_measured_shape_is_the_table_row():
    """Llama-3-8B (32 heads, 8 KV heads, head_dim 128): 8 prompts of 2,048 tokens = the row (8, 2048) per layer."""
    path, _version = newest_table(package_data_root() / "h100_sxm", "attention", "vllm",
                                  "context_attention_perf.parquet")
    rows = _read(path, ["batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "kv_cache_dtype",
                        "kernel_source", "window_size", "latency"])
    hit = ((rows["batch_size"] == 8) & (rows["isl"] == 2048) & (rows["num_heads"] == 32)
           & (rows["num_key_value_heads"] == 8) & (rows["head_dim"] == 128) & (rows["window_size"] == 0)
           & (rows["kv_cache_dtype"] == "bfloat16") & (rows["kernel_source"] == "vllm_flash_attn_fa3"))
    (latency_ms,) = rows["latency"][hit]
    pm = perf_model(CATALOG.model("llama-3-8b"), H100)
    attention = pm.step_breakdown(((2048, 0),) * 8, 0, 0).attention_s
    assert attention == pytest.approx(32 * latency_ms / 1000, rel=1e-12)


@pytest.mark.parametrize(("model_id", "tp", "precision"), [("llama-3-8b", 1, "bf16"), ("llama-3-70b", 4, "bf16"),
                                                            ("llama-2-70b", 2, "fp8"), ("mixtral-8x7b", 2, "bf16")])
def test_steps_grow_with_tokens_batch_and_context(model_id, tp, precision):
    pm = perf_model(CATALOG.model(model_id), H100, tp, precision=precision)
    assert isinstance(pm, MeasuredKernelPerfModel)
    prefill = [pm.prefill_s(tokens) for tokens in range(1, 40_000, 97)]
    assert np.all(np.diff(prefill) >= 0)
    assert prefill[-1] > 10 * prefill[0]
    decode_by_batch = [pm.decode_step_s(batch, batch * 2000) for batch in range(1, 3000, 7)]
    assert np.all(np.diff(decode_by_batch) >= 0)
    decode_by_context = [pm.decode_step_s(32, 32 * context) for context in range(1, 200_000, 301)]
    assert np.all(np.diff(decode_by_context) >= 0)
    chunked = [pm.prefill_s(512, cached) for cached in range(0, 100_000, 257)]
    assert np.all(np.diff(chunked) >= 0)


def test_a_catalog_model_on_h100_under_vllm_is_served_by_measured_kernels():
    pm = perf_model(CATALOG.model("llama-3-8b"), H100)
    version = kernel_tables("h100_sxm", "vllm").version
    assert pm.provenance == f"measured kernels (h100_sxm, vLLM {version})"


def test_a_vlm_names_the_parts_the_roofline_serves():
    pm = perf_model(CATALOG.model("qwen2.5-vl-7b"), H100)
    assert pm.provenance.startswith("measured kernels (h100_sxm, vLLM ")
    assert pm.provenance.endswith(" + roofline for CPU preprocessing, vision connector")
    # A100 tables (vLLM 0.14.0) have no ViT attention: the whole encoder comes from the roofline there.
    a100 = perf_model(CATALOG.model("qwen2.5-vl-7b"), CATALOG.gpu("a100-80gb"))
    assert a100.provenance.endswith(" + roofline for CPU preprocessing, vision encoder")
    roofline = roofline_model(CATALOG.model("qwen2.5-vl-7b"), CATALOG.gpu("a100-80gb"))
    assert a100.encoder_s(1024, 1) == roofline.encoder_s(1024, 1)


def test_the_vision_encoder_sums_measured_blocks_and_grows_with_patches():
    """Qwen2.5-VL's ViT attends within 64-patch windows in 28 of its 32 blocks: more tiles, more time."""
    pm = perf_model(CATALOG.model("qwen2.5-vl-7b"), H100)
    times = [pm.encoder_s(patches, 1) for patches in range(64, 20_000, 64)]
    assert np.all(np.diff(times) >= 0)
    assert pm.encoder_s(4096, 4) > pm.encoder_s(1024, 1)


@pytest.mark.parametrize(("engine", "name"), [("sglang", "SGLang"), ("trtllm", "TensorRT-LLM")])
def test_the_engine_picks_its_own_tables(engine, name):
    vllm = perf_model(CATALOG.model("llama-3-8b"), H100)
    other = perf_model(CATALOG.model("llama-3-8b"), H100, engine=engine)
    assert other.provenance.startswith(f"measured kernels (h100_sxm, {name} ")
    assert other.prefill_s(4096) != vllm.prefill_s(4096)


def test_an_unknown_engine_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="engine 'tgi' is not one of vllm, sglang, trtllm"):
        perf_model(CATALOG.model("llama-3-8b"), H100, engine="tgi")


def test_a_gpu_without_tables_falls_back_to_the_roofline():
    pm = perf_model(CATALOG.model("llama-3-8b"), CATALOG.gpu("l4"))
    assert isinstance(pm, RooflinePerfModel)
    assert pm.provenance == "roofline (estimated)"


def test_without_the_package_the_roofline_serves_and_says_why(monkeypatch):
    kernel_tables.cache_clear()
    monkeypatch.setitem(sys.modules, "aiconfigurator_core", None)  # `import aiconfigurator_core` raises ImportError
    try:
        pm = perf_model(CATALOG.model("llama-3-8b"), H100)
        assert isinstance(pm, RooflinePerfModel)
        assert pm.provenance == "roofline (estimated: aiconfigurator-core is not installed)"
        assert pm.prefill_s(1000) == roofline_model(CATALOG.model("llama-3-8b"), H100).prefill_s(1000)
    finally:
        kernel_tables.cache_clear()


def test_int4_weight_gemms_fall_back_to_the_roofline_and_say_so():
    model = CATALOG.model("llama-3-70b")
    pm = perf_model(model, H100, 2, precision="int4")
    roofline = roofline_model(model, H100, 2, precision="int4")
    assert pm.provenance.endswith(" + roofline for int4 weight GEMMs")
    step = (((1024, 0),), 16, 16_000)
    assert pm.step_breakdown(*step).gemm_s == roofline.step_breakdown(*step).gemm_s


def _h100_profile(fits: tuple[ComponentFit, ...]) -> CalibrationProfile:
    """A calibration profile of Llama-3-8B measured on one H100 with the given fits."""
    reading = NvmlReading(status="unavailable: test")
    device = DeviceInfo(kind="cuda", name="NVIDIA H100", gpu_id="h100-sxm", driver="550", cuda="12.4",
                        torch="2.13.0", threads=8, timing_clock="cuda_events", nvml_before=reading,
                        nvml_after=reading)
    model = CATALOG.model("llama-3-8b")
    return CalibrationProfile(model_id=model.id, model=model, precision="bf16", created="2026-06-22T10:00:00+00:00",
                              quick=True, device=device, measurements=(), fits=fits, holdout_mape_pct=2.0,
                              composed=None)


def _fit(component: str, const_s: float) -> ComponentFit:
    return ComponentFit(component=component, linear={"const": const_s}, weight_s_per_elem=1e-12,
                        s_per_gemm_flop=1e-15, knee_exponent=2.0, gemv_s_per_elem=0.0, gemv_below_rows=1,
                        train_points=5, holdout_points=2, train_mape_pct=1.0, holdout_mape_pct=2.0)


def test_a_calibration_profile_wins_over_measured_kernels():
    profile = _h100_profile((_fit("decoder_prefill", 1e-4), _fit("decoder_decode", 5e-5), _fit("lm_head", 1e-5)))
    pm = perf_model(CATALOG.model("llama-3-8b"), H100, calibration=profile)
    measured = perf_model(CATALOG.model("llama-3-8b"), H100)
    assert isinstance(pm, CalibratedPerfModel)
    assert pm.provenance == "calibrated on NVIDIA H100, 2026-06-22"
    assert pm.decode_step_s(8, 8000) != measured.decode_step_s(8, 8000)


def test_what_a_calibration_did_not_measure_comes_from_measured_kernels():
    profile = _h100_profile((_fit("preprocess", 1e-3),))  # no decoder fits
    pm = perf_model(CATALOG.model("llama-3-8b"), H100, calibration=profile)
    measured = perf_model(CATALOG.model("llama-3-8b"), H100)
    assert pm.iteration_s(((300, 0),), 8, 8000) == measured.iteration_s(((300, 0),), 8, 8000)


def test_routed_experts_at_a_measured_token_count_are_the_table_row():
    """Mixtral on 2x H200: 32 MoE layers x the fused-MoE row (4096, 14336, top-2 of 8, TP2, balanced)."""
    path, _version = newest_table(package_data_root() / "h200_sxm", "moe", "vllm", "moe_perf.parquet")
    rows = _read(path, ["moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts",
                        "moe_tp_size", "moe_ep_size", "distribution", "kernel_source", "latency"])
    hit = ((rows["moe_dtype"] == "bfloat16") & (rows["num_tokens"] == 512) & (rows["hidden_size"] == 4096)
           & (rows["inter_size"] == 14336) & (rows["topk"] == 2) & (rows["num_experts"] == 8)
           & (rows["moe_tp_size"] == 2) & (rows["moe_ep_size"] == 1) & (rows["distribution"] == "balanced"))
    (latency_ms,) = rows["latency"][hit]
    pm = perf_model(CATALOG.model("mixtral-8x7b"), CATALOG.gpu("h200"), 2)
    assert pm.provenance.startswith("measured kernels (h200_sxm, vLLM ")
    assert "roofline" not in pm.provenance
    assert pm.step_breakdown(((512, 0),), 0, 0).experts_s == pytest.approx(32 * latency_ms / 1000, rel=1e-12)


def test_a_hot_expert_is_the_roofline_s_and_says_so():
    model, gpu = CATALOG.model("mixtral-8x7b"), CATALOG.gpu("h200")
    pm = perf_model(model, gpu, 2, hot_expert_factor=2.0)
    assert pm.provenance.endswith(" + roofline for routed experts (hot expert)")
    roofline = roofline_model(model, gpu, 2, hot_expert_factor=2.0)
    assert pm.step_breakdown(((2048, 0),), 0, 0).experts_s == roofline.experts_s(2048)


def test_a_measured_model_pickles_without_its_tables():
    """Worker processes get the model by name of its tables (read once per process), not megabytes per job."""
    import pickle

    pm = perf_model(CATALOG.model("qwen2.5-vl-7b"), H100)
    data = pickle.dumps(pm)
    assert len(data) < 200_000
    copy = pickle.loads(data)
    assert copy.iteration_s(((100, 0),), 3, 3000) == pm.iteration_s(((100, 0),), 3, 3000)
    assert copy.encoder_s(1024, 1) == pm.encoder_s(1024, 1)
