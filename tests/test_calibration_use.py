"""A calibration profile in a plan: it times the stages it says, refuses otherwise, and adds its CPU as a device.

Profiles here are hand-written (no torch needed); tests/test_calibrate.py makes real ones.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from planner.calibrations import stage_targets
from planner.catalog_view import render_catalog
from planner.run import simulate_scenario
from planner.scenario import load_scenario, scenario_catalog
from profiles.calibration import (
    CalibrationProfile,
    ComponentFit,
    DeviceInfo,
    Measurement,
    NvmlReading,
    save_profile,
)
from profiles.catalog import load_catalog
from profiles.errors import ScenarioError
from profiles.perf.calibrated import host_cpu

NO_NVML = NvmlReading(status="unavailable: NVML Shared Library Not Found")
RAM_BYTES = 16 * 2**30


def _fit(component: str, linear: dict[str, float], weight: float = 0.0, flop: float = 0.0) -> ComponentFit:
    return ComponentFit(component=component, linear=linear, weight_s_per_elem=weight, s_per_gemm_flop=flop,
                        knee_exponent=2.0, gemv_s_per_elem=weight, gemv_below_rows=2, train_points=5,
                        holdout_points=2, train_mape_pct=1.0, holdout_mape_pct=2.0)


def _measurement(component: str, shape: dict[str, int], seconds: float) -> Measurement:
    return Measurement(component=component, shape=shape, seconds=seconds, samples_s=(seconds,),
                       peak_memory_bytes=None, holdout=False)


@pytest.fixture(scope="module")
def cpu_profile() -> CalibrationProfile:
    """SmolVLM-256M as if calibrated on this laptop's CPU: fits of every component, a few measurements."""
    model = load_catalog().model("smolvlm-256m")
    fits = (
        _fit("vision_block", {"const": 1e-4}, weight=1e-10, flop=1e-11),
        _fit("connector", {"const": 5e-5}, weight=1e-10, flop=1e-11),
        _fit("decoder_prefill", {"const": 3e-5}, weight=1e-10, flop=1e-11),
        _fit("decoder_decode", {"const": 2e-5}, weight=1e-10, flop=1e-11),
        _fit("lm_head", {"const": 1e-5}, weight=1e-10, flop=1e-11),
        _fit("preprocess", {"images": 0.02, "input_mp": 0.01}),
    )
    measurements = (
        _measurement("decoder_prefill", {"tokens": 16, "context": 0}, 0.004),
        _measurement("decoder_prefill", {"tokens": 256, "context": 512}, 0.05),
        _measurement("decoder_decode", {"batch": 1, "kv_per_seq": 64}, 0.0016),
        _measurement("decoder_decode", {"batch": 16, "kv_per_seq": 1024}, 0.004),
    )
    device = DeviceInfo(kind="cpu", name="CPU Test Laptop 8840U", gpu_id=None, driver=NO_NVML.status,
                        cuda="unavailable: torch built without CUDA", torch="2.13.0", threads=1,
                        timing_clock="thread", nvml_before=NO_NVML, nvml_after=NO_NVML,
                        memory_total_bytes=RAM_BYTES)
    return CalibrationProfile(model_id=model.id, model=model, precision="fp32", created="2026-12-01T10:00:00+00:00",
                              quick=True, device=device, measurements=measurements, fits=fits,
                              holdout_mape_pct=2.0, composed=None)


def _scenario(tmp_path: Path, profile: CalibrationProfile, stages: list[dict]) -> Path:
    """A scenario listing ``profile`` (written next to it) with one deployment of ``stages``."""
    save_profile(profile, tmp_path / "laptop.json")
    scenario = {
        "name": "s", "horizon_s": 30, "seed": 3, "calibration_profiles": ["laptop.json"],
        "traffic": {"arrivals": {"kind": "offline", "requests": 6}, "classes": [
            {"name": "photo", "share": 1, "images": {"count": 1, "width_px": 640, "height_px": 480},
             "text_tokens": 32, "output_tokens": 8}]},
        "slo": {"e2e_s": 60},
        "deployments": [{"name": "d", "stages": stages}],
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def test_a_cpu_profile_is_device_cpu_with_the_hosts_ram_and_its_achieved_rates(cpu_profile):
    """RAM from the profile; rates the best measured (2*params*tokens / s), lifted by the roofline's efficiencies."""
    from profiles.perf import efficiency as eff
    from profiles.perf.calibrated_features import prefill_layer_features

    cpu = host_cpu(cpu_profile)
    assert (cpu.id, cpu.kind, cpu.price, cpu.tdp_w) == ("cpu", "cpu", None, None)
    assert cpu.memory_bytes == RAM_BYTES
    best_flops = max(prefill_layer_features(cpu_profile.model.decoder, t, c)["gemm_flops"] / s
                     for t, c, s in ((16, 0, 0.004), (256, 512, 0.05)))
    assert cpu.bf16_tflops * 1e12 * eff.GEMM_EFFICIENCY == pytest.approx(best_flops)
    assert host_cpu(cpu_profile.model_copy(update={"device": cpu_profile.device.model_copy(
        update={"kind": "cuda", "gpu_id": "l4"})})) is None


def test_an_on_device_stage_runs_on_the_calibrated_cpu(tmp_path, cpu_profile):
    """`device: cpu` names the profile's CPU; its times are the profile's (provenance says so)."""
    path = _scenario(tmp_path, cpu_profile, [{"name": "laptop", "kind": "on_device", "model": "smolvlm-256m",
                                              "device": "cpu"}])
    scenario = load_scenario(path)
    assert scenario_catalog(scenario).gpu("cpu").name == "CPU Test Laptop 8840U"
    result = simulate_scenario(scenario).results[0]
    assert result.per_stage["laptop"]["provenance"].startswith("calibrated on CPU Test Laptop 8840U, 2026-12-01")
    assert result.metrics["completed"] == 6


def test_device_cpu_without_a_cpu_profile_is_an_unknown_device(tmp_path, cpu_profile):
    path = _scenario(tmp_path, cpu_profile, [{"name": "laptop", "kind": "on_device", "model": "smolvlm-256m",
                                              "device": "cpu"}])
    text = path.read_text().replace("calibration_profiles:\n- laptop.json\n", "")
    path.write_text(text)
    with pytest.raises(ScenarioError, match=r"deployments\.0\.stages\.0\.device: unknown GPU 'cpu'"):
        load_scenario(path)


def test_a_profile_that_times_no_stage_is_refused_with_each_stages_reason(tmp_path, cpu_profile):
    """One message: the profile file, its model and device, and why each stage is not its own (exit 2)."""
    path = _scenario(tmp_path, cpu_profile, [
        {"name": "orin", "kind": "on_device", "model": "smolvlm-256m", "device": "jetson-agx-orin"},
        {"name": "big", "kind": "model", "model": "internvl3-2b", "gpu": "cpu", "tensor_parallel": 2,
         "usd_per_gpu_hour": 0.1}])
    with pytest.raises(ScenarioError) as refused:
        load_scenario(path)
    message = str(refused.value)
    assert f"calibration_profiles.0: {tmp_path / 'laptop.json'} (smolvlm-256m on CPU Test Laptop 8840U (cpu), " \
           "one device per replica) times no stage" in message
    assert "deployments.0.stages.0 'orin' runs 1x jetson-agx-orin: device jetson-agx-orin, the profile measured cpu" \
        in message
    assert "deployments.0.stages.1 'big' runs 2x cpu: model internvl3-2b, the profile measured smolvlm-256m " \
           "(and no kernels: re-run vlmplan calibrate to time any model on this device); " \
           "2 GPUs per replica, the profile measured one" in message
    done = subprocess.run([sys.executable, "-m", "planner", "simulate", str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "times no stage" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_profile_serving_one_gpu_option_of_a_stage_is_in_use(tmp_path, cpu_profile):
    """A stage that may run on [l4, cpu] can use the CPU profile: accepted."""
    stages = [{"name": "m", "kind": "model", "model": "smolvlm-256m", "gpu": ["l4", "cpu"], "usd_per_gpu_hour": 0.1}]
    scenario = load_scenario(_scenario(tmp_path, cpu_profile, stages))
    targets = stage_targets(scenario.deployments, scenario_catalog(scenario))
    assert [(t.model_id, t.device_id) for t in targets] == [("smolvlm-256m", "l4"), ("smolvlm-256m", "cpu")]


def test_catalog_with_a_profile_shows_what_it_covers(tmp_path, cpu_profile):
    """The CPU is listed as device `cpu`; the model says where it is calibrated; the shapes per component."""
    data = json.loads(render_catalog(load_catalog(), as_json=True, profiles=[cpu_profile]))
    assert next(g for g in data["gpus"] if g["id"] == "cpu")["name"] == "CPU Test Laptop 8840U"
    smolvlm = next(m for m in data["models"] if m["id"] == "smolvlm-256m")
    assert smolvlm["perf_source"] == "calibrated on cpu (1 device per replica); elsewhere roofline (estimated)"
    (coverage,) = data["profiles"]
    assert coverage["device_id"] == "cpu"
    assert coverage["devices_per_replica"] == 1
    assert coverage["components"]["decoder_prefill"] == {"tokens": [16, 256], "context": [0, 512]}
    text = render_catalog(load_catalog(), as_json=False, profiles=[cpu_profile])
    assert "smolvlm-256m on cpu (CPU Test Laptop 8840U), 1 device per replica, fp32" in text
    assert "  decoder_decode: batch 1-16, kv_per_seq 64-1024" in text
    l4_profile = cpu_profile.model_copy(update={"device": cpu_profile.device.model_copy(
        update={"kind": "cuda", "name": "NVIDIA L4", "gpu_id": "l4"})})
    rows = json.loads(render_catalog(load_catalog(), as_json=True, profiles=[l4_profile]))
    assert "cpu" not in {g["id"] for g in rows["gpus"]}


def test_a_poor_fit_is_marked_in_the_file_and_in_every_plan_that_uses_it(tmp_path, cpu_profile):
    """Held-out error over 10% (or composed over 15%) is written into the profile and into the provenance."""
    poor = CalibrationProfile.model_validate({**dict(cpu_profile), "holdout_mape_pct": 37.6})
    assert poor.fit_warnings == ("held-out error 37.6% > 10%",)
    path = _scenario(tmp_path, poor, [{"name": "laptop", "kind": "on_device", "model": "smolvlm-256m",
                                       "device": "cpu"}])
    written = json.loads((tmp_path / "laptop.json").read_text())
    assert written["fit_warnings"] == ["held-out error 37.6% > 10%"]
    written["fit_warnings"] = []  # an edited file cannot hide it: the mark is recomputed on load
    (tmp_path / "laptop.json").write_text(json.dumps(written))
    result = simulate_scenario(load_scenario(path)).results[0]
    assert result.per_stage["laptop"]["provenance"] == (
        "calibrated on CPU Test Laptop 8840U, 2026-12-01 [POOR FIT: held-out error 37.6% > 10%]")
    assert cpu_profile.fit_warnings == ()
    assert "POOR FIT" not in cpu_profile.provenance


def test_measured_memory_sizes_the_plan_and_says_so(cpu_profile):
    """Weights, activations at the engine's budgets and KV per token from the profile; KV capacity from the rest."""
    from profiles.calibration import MeasuredMemory
    from profiles.perf import perf_model
    from profiles.perf.memory import EngineMemory

    measured = MeasuredMemory(weight_bytes=900_000_000, activation_bytes_per_token=50_000.0,
                              activation_bytes_per_sequence=250_000.0, kv_bytes_per_token=46_500.4,
                              method="test", precision="float32")
    profile = cpu_profile.model_copy(update={"memory": measured})
    cpu = host_cpu(profile)
    engine = EngineMemory(max_batched_tokens=1000, max_num_seqs=10)
    perf = perf_model(profile.model, cpu, calibration=profile, memory=engine)
    plan = perf.memory
    assert plan.weights_bytes_per_gpu == 900_000_000
    assert plan.activation_reserve_bytes_per_gpu == 1000 * 50_000 + 10 * 250_000  # no CUDA context on a CPU
    assert plan.kv_bytes_per_token == 46_501
    assert plan.kv_capacity_tokens == (int(0.9 * RAM_BYTES) - 900_000_000 - 52_500_000) // 46_501
    assert perf.provenance.endswith("; memory measured (float32: weights, activations, KV)")
    counted = perf_model(cpu_profile.model, cpu, calibration=cpu_profile, memory=engine)
    assert counted.memory.weights_bytes_per_gpu != 900_000_000
    assert "memory measured" not in counted.provenance


def test_gpu_auto_never_picks_the_host_cpu(cpu_profile):
    """A profile's CPU serves only stages that name it: `gpu: auto` (even with a price for every device) skips it."""
    from planner.calibrations import with_host_devices
    from sim.build import gpu_options
    from sim.deployment import ModelStage

    catalog = with_host_devices(load_catalog(), [cpu_profile])
    stage = ModelStage(name="m", model="smolvlm-256m", gpu="auto", usd_per_gpu_hour=0.5)
    options = gpu_options(stage, catalog)
    assert "cpu" not in options
    assert "l4" in options
