"""One profile per device: its kernel timings time any model on the device, shape by shape.

Profiles here carry hand-made kernel timings of a known form (no torch timing
in the assertions), so each test checks the composition exactly; one test
times a tiny grid for real to check the bench's shapes and the partial file.
"""

import json

import pytest
import torch

from calibrate.kernels import KINDS, KernelBench, KernelGrid, kernel_shapes
from calibrate.partial import Partial, PartialHeader
from calibrate.timing import TimingPlan
from planner.run import simulate_scenario
from planner.scenario import load_scenario, scenario_catalog
from profiles.calibration import (
    CalibrationProfile,
    DeviceKernels,
    KernelTiming,
    MeasuredMemory,
    load_profile,
    save_profile,
)
from profiles.catalog import load_catalog
from profiles.errors import CalibrationError, ConfigurationError
from profiles.perf import perf_model, roofline_model
from profiles.perf.calibrated import CalibratedPerfModel, host_cpu
from profiles.perf.calibrated_kernels import DeviceKernelPerfModel, device_tables, fit_rest
from profiles.perf.measured import layer_gemm_shapes
from sim.build import calibration_for
from tests.test_calibration_use import (
    _measurement,
    _scenario,
    cpu_profile,  # noqa: F401  (a fixture: SmolVLM-256M's component fits)
)

FLOP_S = 4e10  # the made-up device: GEMMs at 40 GFLOP/s, nothing else
GRID_M, GRID_NK = (1, 4, 16, 64, 256, 1024), (256, 1024, 4096)
HEADS = ((8, 2, 64),)


def _gemm_s(m: int, n: int, k: int) -> float:
    return 2.0 * m * n * k / FLOP_S


def _attention_s(batch: int, length: int, heads: int, causal: bool) -> float:
    pairs = length * (length + 1) / 2 if causal else length * length
    return 1e-5 + batch * heads * pairs * 64 * 4 / FLOP_S


def _kernels() -> DeviceKernels:
    timings = [KernelTiming(kind="gemm", shape={"m": m, "n": n, "k": k}, seconds=_gemm_s(m, n, k),
                            samples_s=(_gemm_s(m, n, k),))
               for m in GRID_M for n in GRID_NK for k in GRID_NK]
    for kind, lengths, causal in (("context_attention", (16, 64, 256, 1024), True),
                                  ("generation_attention", (64, 256, 1024, 4096), False),
                                  ("encoder_attention", (64, 256, 1024), False)):
        for heads, kv_heads, dim in HEADS:
            kv = heads if kind == "encoder_attention" else kv_heads
            for batch in (1, 4):
                for length in lengths:
                    seconds = (_attention_s(batch, length, heads, causal) if kind != "generation_attention"
                               else 1e-5 + batch * kv * length * dim * 2 * 4 / 1e10)
                    timings.append(KernelTiming(kind=kind, shape={"batch": batch, "length": length, "heads": heads,
                                                                  "kv_heads": kv, "head_dim": dim},
                                                seconds=seconds, samples_s=(seconds,)))
    return DeviceKernels(dtype="float32", timings=tuple(timings))


@pytest.fixture(scope="module")
def device_profile(cpu_profile) -> CalibrationProfile:  # noqa: F811
    """SmolVLM-256M's component profile of the test laptop, with the device's kernel timings added."""
    return cpu_profile.model_copy(update={"kernels": _kernels()})


@pytest.fixture(scope="module")
def laptop(device_profile):
    return host_cpu(device_profile)


def test_a_profile_with_kernels_times_any_model_on_its_device_and_only_there(device_profile, cpu_profile):  # noqa: F811
    assert device_profile.why_not("smolvlm-500m-like", "cpu", 1) is None
    assert device_profile.applies_to("qwen2.5-vl-7b", "cpu", 1)
    assert "device l4" in device_profile.why_not("qwen2.5-vl-7b", "l4", 1)
    assert "2 GPUs" in device_profile.why_not("qwen2.5-vl-7b", "cpu", 2)
    # without kernels a profile serves only the model it measured, and says how to get more
    assert "re-run vlmplan calibrate" in cpu_profile.why_not("qwen2.5-vl-7b", "cpu", 1)


def test_another_models_decoder_gemms_are_the_devices_kernels_shape_by_shape(device_profile, laptop):
    """SmolLM2-360M's layer GEMMs (widths 960 to 5,120) from the grid: bilinear in n and k, scaled beyond it."""
    other = load_catalog().model("internvl3-2b")
    perf = perf_model(other, laptop, calibration=device_profile)
    assert isinstance(perf, DeviceKernelPerfModel)
    assert perf.provenance.startswith("calibrated on CPU Test Laptop 8840U, 2026-12-01: float32 kernels")
    decoder = other.decoder
    for rows in (1, 64, 256):  # grid rows: exact, as time is bilinear in (n, k) here
        expected = decoder.layers * sum(_gemm_s(rows, shape.n, shape.k) for shape in layer_gemm_shapes(decoder, 1, True))
        step = perf.step_breakdown(((rows, 0),), 0, 0)
        assert step.gemm_s == pytest.approx(expected, rel=1e-9)
        assert step.lm_head_s == pytest.approx(_gemm_s(1, decoder.vocab, decoder.hidden), rel=1e-9)
    # between grid rows: linear in m
    mid = perf.step_breakdown(((160, 0),), 0, 0).gemm_s
    low, high = perf.step_breakdown(((64, 0),), 0, 0).gemm_s, perf.step_breakdown(((256, 0),), 0, 0).gemm_s
    assert mid == pytest.approx(low + (high - low) * (160 - 64) / (256 - 64), rel=1e-9)


def test_attention_and_the_vit_come_from_the_profiles_kernels(device_profile, laptop):
    other = load_catalog().model("internvl3-2b")
    perf = perf_model(other, laptop, calibration=device_profile)
    decoder = other.decoder
    step = perf.step_breakdown(((256, 0),), 0, 0)
    # context attention at a grid length, heads scaled from the measured 8 by query heads, head dim by 128/64
    scale = decoder.heads / 8 * decoder.head_dim / 64
    assert step.attention_s == pytest.approx(decoder.layers * scale * _attention_s(1, 256, 8, True), rel=1e-9)
    # the ViT: doubling the kernels' speed would halve its GEMM part; here it is simply well below the roofline's
    roofline = roofline_model(other, laptop)
    assert perf.encoder_s(1024, 1) != pytest.approx(roofline.encoder_s(1024, 1), rel=0.01)
    assert "vision encoder" not in perf.provenance
    assert "attention" not in perf.provenance


def test_the_calibrated_model_keeps_its_component_fits_over_the_kernels(device_profile, laptop):
    own = perf_model(load_catalog().model("smolvlm-256m"), laptop, calibration=device_profile)
    assert isinstance(own, CalibratedPerfModel)
    assert own.iteration_s(((64, 0),), 0, 0) == pytest.approx(
        perf_model(load_catalog().model("smolvlm-256m"), laptop,
                   calibration=device_profile.model_copy(update={"kernels": None})).iteration_s(((64, 0),), 0, 0))


def test_the_rest_of_a_layer_is_measured_minus_kernels_and_carries_to_another_width(device_profile, laptop):
    """Measurements made of kernels plus a known rest (40 us + 2 ns per activation element) give that rest back."""
    const_s, per_element = 4e-5, 2e-9
    model = device_profile.model
    tables = device_tables(device_profile)
    bare = DeviceKernelPerfModel(tables, roofline_model(model, laptop), device_profile, None)
    decoder, measurements = model.decoder, []
    for tokens, context in ((16, 0), (64, 0), (256, 512), (128, 0)):
        step = bare.step_breakdown(((tokens, context),), 0, 0)
        layer = (step.total_s - step.lm_head_s) / decoder.layers + const_s + per_element * tokens * decoder.hidden
        measurements.append(_measurement("decoder_prefill", {"tokens": tokens, "context": context}, layer))
    for batch, kv in ((1, 64), (8, 1024)):
        step = bare.step_breakdown((), batch, batch * (kv + 1))
        layer = (step.total_s - step.lm_head_s) / decoder.layers + const_s + per_element * batch * decoder.hidden
        measurements.append(_measurement("decoder_decode", {"batch": batch, "kv_per_seq": kv}, layer))
    profile = device_profile.model_copy(update={"measurements": tuple(measurements)})
    rest = fit_rest(profile, tables, roofline_model(model, laptop)).decoder
    assert rest is not None
    assert rest.const_s == pytest.approx(const_s, rel=1e-6)
    assert rest.s_per_element == pytest.approx(per_element, rel=1e-6)
    assert rest.mape_pct < 1e-6
    # another model adds its own layers' rest at its own width
    other = load_catalog().model("internvl3-2b")
    with_rest = perf_model(other, laptop, calibration=profile)
    without = DeviceKernelPerfModel(tables, roofline_model(other, laptop), profile, None)
    added = with_rest.iteration_s(((100, 0),), 0, 0) - without.iteration_s(((100, 0),), 0, 0)
    assert added == pytest.approx(other.decoder.layers * (const_s + per_element * 100 * other.decoder.hidden),
                                  rel=1e-6)


def test_measured_memory_is_the_calibrated_models_only(device_profile, laptop):
    memory = MeasuredMemory(weight_bytes=123_456_789, activation_bytes_per_token=1000.0,
                            activation_bytes_per_sequence=2000.0, kv_bytes_per_token=50_000.0,
                            method="resident set", precision="float32")
    profile = device_profile.model_copy(update={"memory": memory})
    own = perf_model(load_catalog().model("smolvlm-256m"), laptop, calibration=profile)
    other = perf_model(load_catalog().model("internvl3-2b"), laptop, calibration=profile)
    assert own.memory.weights_bytes_per_gpu == 123_456_789
    assert other.memory.weights_bytes_per_gpu != 123_456_789
    assert other.memory == roofline_model(load_catalog().model("internvl3-2b"), laptop).memory


def test_the_simulator_prefers_the_profile_of_the_very_model(device_profile, cpu_profile, laptop):  # noqa: F811
    catalog = load_catalog()
    kernels_only = device_profile.model_copy(update={"model_id": "smolvlm-256m-optimized",
                                                     "model": catalog.model("smolvlm-256m-optimized")})
    chosen = calibration_for([kernels_only, cpu_profile], catalog.model("smolvlm-256m"), laptop, 1)
    assert chosen is cpu_profile
    assert calibration_for([kernels_only, cpu_profile], catalog.model("internvl3-2b"), laptop, 1) \
        is kernels_only
    with pytest.raises(ConfigurationError, match="does not apply"):
        perf_model(catalog.model("internvl3-2b"), laptop, calibration=cpu_profile)


def test_one_profile_plans_a_model_it_never_measured(tmp_path, device_profile):
    """A scenario listing SmolVLM-256M's profile runs another model on device cpu, timed from its kernels
    (SmolVLM-256M with other preprocessing: a model id the profile never measured, small enough to finish)."""
    path = _scenario(tmp_path, device_profile, [
        {"name": "laptop", "kind": "on_device", "model": "smolvlm-256m-optimized", "device": "cpu"}])
    scenario = load_scenario(path)
    result = simulate_scenario(scenario).results[0]
    provenance = result.per_stage["laptop"]["provenance"]
    assert provenance.startswith("calibrated on CPU Test Laptop 8840U, 2026-12-01: float32 kernels")
    assert "cpu" in scenario_catalog(scenario).gpus
    assert result.metrics["e2e_p50_s"] > 0


def test_a_profile_with_kernels_round_trips_and_rejects_an_impossible_kernel_time(tmp_path, device_profile):
    save_profile(device_profile, tmp_path / "p.json")
    assert load_profile(tmp_path / "p.json").kernels == device_profile.kernels
    data = json.loads((tmp_path / "p.json").read_text())
    data["kernels"]["timings"][3]["seconds"] = 0.0
    (tmp_path / "b.json").write_text(json.dumps(data, indent=1))
    with pytest.raises(CalibrationError, match=r"kernels\.timings\.3\.seconds: 0 s for one gemm call"):
        load_profile(tmp_path / "b.json")


def test_the_bench_times_every_kind_of_a_tiny_grid_and_resumes_from_the_partial_file(tmp_path):
    grid = KernelGrid(gemm_m=(1, 8), gemm_nk=(32, 64), gemm_wide_n=(256,), context_batch=(1,), context_length=(8, 16),
                      generation_batch=(1, 2), generation_length=(16,), encoder_batch=(1,), encoder_length=(8,),
                      heads=((4, 2, 16),))
    plan = TimingPlan(warmup=0, min_samples=2, max_samples=2, min_total_s=0.0, min_sample_s=0.0)
    bench = KernelBench(torch.device("cpu"), torch.float32, plan, "thread", cold_bytes=64 * 64 * 4 * 3)
    header = PartialHeader(model_id="m", device="cpu", quick=True, precision="fp32", threads=1, cpu_clock="thread")
    partial = Partial(tmp_path / "x.partial.jsonl", header)
    for kind in KINDS:
        shapes = kernel_shapes(grid, kind)
        timings = bench.measure(kind, shapes)
        assert [t.shape for t in timings] == shapes
        assert all(t.seconds > 0 for t in timings)
        partial.add_kernels(timings)
    assert len(kernel_shapes(grid, "gemm")) == 2 * (4 + 2)  # m x (n x k, and the wide n at both k)
    # few rows: timed over distinct weights (3 of 64 x 64 here), the time per GEMM recorded
    assert len(bench._weight_copies(64, 64)) == 3
    assert len(bench._weight_copies(256, 64)) == 1
    assert kernel_shapes(grid, "encoder_attention")[0]["kv_heads"] == 4  # the encoder is multi-head
    resumed = Partial(tmp_path / "x.partial.jsonl", header)
    resumed.load()
    assert resumed.kernels == partial.kernels
    assert len(resumed.kernels) == sum(len(kernel_shapes(grid, kind)) for kind in KINDS)


def test_a_profile_from_an_older_run_without_kernels_still_loads(tmp_path, cpu_profile):  # noqa: F811
    save_profile(cpu_profile, tmp_path / "old.json")
    text = (tmp_path / "old.json").read_text()
    (tmp_path / "old.json").write_text(text.replace('"kernels": null,', ""))
    assert load_profile(tmp_path / "old.json").kernels is None



def test_the_plan_and_its_report_show_memory_measured_where_a_profile_measured_it(tmp_path, device_profile):
    """The encoder-size question on a calibrated device: the stage a profile measured shows that memory as
    measured (per-stage JSON, the comparison's memory table); a model it did not measure stays counted."""
    from planner.compare import Candidate, compare, memory_block

    memory = MeasuredMemory(weight_bytes=910_600_000, activation_bytes_per_token=29_000.0,
                            activation_bytes_per_sequence=259_700.0, kv_bytes_per_token=46_440.0,
                            method="resident set", precision="float32")
    profile = device_profile.model_copy(update={"memory": memory})
    stages = [{"name": name, "kind": "model", "model": model, "gpu": "cpu", "usd_per_gpu_hour": 0.1}
              for name, model in (("measured", "smolvlm-256m"), ("counted", "smolvlm-256m-optimized"))]
    scenario = load_scenario(_scenario(tmp_path, profile, stages))
    result = simulate_scenario(scenario).results[0]
    assert result.per_stage["measured"]["memory_source"] == "measured (float32)"
    assert result.per_stage["measured"]["vram_weights_gb"] == pytest.approx(0.9106)
    assert result.per_stage["counted"]["memory_source"] == "counted"
    comparison = compare([Candidate(name="d", result=result, feasible=True, planned=False)], scenario.slo)
    assert list(comparison.memory["memory"]) == ["measured (float32)", "counted"]
    rows = {line.split()[1] if line.startswith("d ") else line.split()[0]: line
            for line in "\n".join(memory_block(comparison)).splitlines()[-2:]}
    words = rows["measured"].split()
    assert words[words.index("cpu") + 1] == "0.9"  # GB of weights, as measured
    assert "measured (float32)" in rows["measured"]
    assert " counted " in rows["counted"]


def test_catalog_with_a_device_profile_shows_its_kernels_and_every_model_it_times(device_profile, cpu_profile):  # noqa: F811
    from planner.catalog_view import perf_source, render_catalog

    assert perf_source("internvl3-2b", [device_profile]) == (
        "calibrated on cpu from its kernels (1 device per replica); elsewhere roofline (estimated)")
    assert perf_source("smolvlm-256m", [device_profile]).startswith("calibrated on cpu (1 device")
    assert perf_source("internvl3-2b", [cpu_profile]) == "roofline (estimated)"
    text = render_catalog(load_catalog(), as_json=False, profiles=[device_profile])
    assert "  kernels (float32, any model on the device):\n    gemm: m 1-1024, n 256-4096, k 256-4096" in text
    assert "    generation_attention: batch 1-4, length 64-4096, heads 8, kv_heads 2, head_dim 64" in text
    assert "no kernel timings" in render_catalog(load_catalog(), as_json=False, profiles=[cpu_profile])
