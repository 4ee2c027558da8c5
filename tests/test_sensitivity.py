"""Sensitivity to the inputs (``vlmplan plan --sensitivity``) and the traffic scaling behind it."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import openpyxl
import pytest
from plan_fixtures import write_tiny

from planner.scenario import load_scenario
from planner.sensitivity import perturbations_for
from profiles.errors import ScenarioError
from sim.traffic import TrafficSpec
from sim.traffic.arrivals import MAX_RATE_RPS
from sim.traffic.scaling import scaled_load, scaled_output


def traffic(arrivals: dict, output_tokens: object = 100) -> TrafficSpec:
    return TrafficSpec.model_validate({"arrivals": arrivals,
                                       "classes": [{"name": "a", "text_tokens": 10, "output_tokens": output_tokens}]})


@pytest.mark.parametrize(("arrivals", "field", "expected"), [
    ({"kind": "poisson", "rate_rps": 4.0}, "rate_rps", 6.0),
    ({"kind": "diurnal", "requests_per_day": 1000, "peak_to_trough": 3}, "requests_per_day", 1500),
    ({"kind": "closed_loop", "users": 5}, "users", 8),  # 7.5 rounds to 8 (half to even)
    ({"kind": "offline", "requests": 100}, "requests", 150),
])
def test_load_scales_what_each_arrival_process_offers(arrivals, field, expected):
    scaled = scaled_load(traffic(arrivals), 1.5)
    assert getattr(scaled.arrivals, field) == expected
    assert scaled.classes == traffic(arrivals).classes


def test_load_keeps_the_daily_curve_and_the_bursts():
    spec = traffic({"kind": "diurnal", "mean_rate_rps": 2.0, "peak_to_trough": 4, "peak_hour": 9,
                    "bursts": {"kind": "onoff", "burst_multiplier": 3, "mean_burst_s": 10, "mean_gap_s": 100}})
    scaled = scaled_load(spec, 0.5).arrivals
    assert scaled.mean_rate_rps == 1.0
    assert (scaled.peak_to_trough, scaled.peak_hour, scaled.bursts) == (4, 9, spec.arrivals.bursts)


def test_a_trace_is_scaled_by_its_rate_multiplier(tmp_path):
    spec = TrafficSpec.model_validate({"arrivals": {"kind": "trace", "path": str(tmp_path / "t.csv"),
                                                    "rate_multiplier": 2.0}})
    assert scaled_load(spec, 1.25).arrivals.rate_multiplier == 2.5


@pytest.mark.parametrize(("size", "expected"), [
    (100, 150.0),
    ({"kind": "lognormal", "median": 200, "sigma": 0.4, "max": 600},
     {"kind": "lognormal", "median": 300.0, "sigma": 0.4, "min": None, "max": 900.0}),
    ({"kind": "uniform", "low": 10, "high": 20}, {"kind": "uniform", "low": 15.0, "high": 30.0}),
    ({"kind": "empirical", "values": [10, 40], "weights": [1, 3]},
     {"kind": "empirical", "values": [15.0, 60.0], "weights": [1.0, 3.0]}),
])
def test_output_scaling_scales_every_value_and_keeps_the_shape(size, expected):
    scaled = scaled_output(traffic({"kind": "poisson", "rate_rps": 1}, size), 1.5).classes[0].output_tokens
    assert (scaled if isinstance(scaled, float) else scaled.model_dump()) == expected


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_sensitivity(tmp_path_factory) -> tuple[dict, str, Path]:
    """``vlmplan plan tiny.yaml --sensitivity`` as JSON (with a workbook) and as text."""
    directory = tmp_path_factory.mktemp("tiny")
    tiny = write_tiny(directory)
    done = run_cli("plan", str(tiny), "--sensitivity", "--json", "--xlsx", str(directory / "p.xlsx"))
    assert done.returncode == 0, done.stderr
    text = run_cli("plan", str(tiny), "--sensitivity")
    assert text.returncode == 0, text.stderr
    return json.loads(done.stdout), text.stdout, directory / "p.xlsx"


def test_more_load_on_the_same_sizes_serves_more_requests_and_meets_the_slo_less(tiny_sensitivity):
    plan, _text, _xlsx = tiny_sensitivity
    rows = {row["name"]: row for row in plan["sensitivity"]}
    assert list(rows) == ["vlm-auto", "api", "queue"]
    planned = {d["name"]: d for d in plan["deployments"]}
    vlm = {o["label"]: o for o in rows["vlm-auto"]["outcomes"]}
    base = planned["vlm-auto"]["metrics"]
    assert vlm["load x2"]["requests"] == pytest.approx(2 * base["requests"], rel=0.15)
    assert vlm["load x0.75"]["requests"] == pytest.approx(0.75 * base["requests"], rel=0.15)
    assert vlm["load x2"]["slo_attainment"] < vlm["load x0.75"]["slo_attainment"]
    assert vlm["load x2"]["cost_per_day_usd"] == base["cost_per_day_usd"]  # same GPUs, whatever the load
    assert vlm["output x1.5"]["e2e_p99_s"] > base["e2e_p99_s"]  # longer answers take longer
    # every GPU pass 25 % slower: the same requests, later answers, the same bill
    assert vlm["step time x1.25"]["requests"] == base["requests"]
    assert vlm["step time x1.25"]["e2e_p99_s"] > 1.1 * base["e2e_p99_s"]
    assert vlm["step time x1.25"]["cost_per_day_usd"] == base["cost_per_day_usd"]
    api_steps = {o["label"]: o for o in rows["api"]["outcomes"]}["step time x1.25"]
    assert api_steps["e2e_p99_s"] == planned["api"]["metrics"]["e2e_p99_s"]  # a hosted API runs no GPU steps
    api = {o["label"]: o for o in rows["api"]["outcomes"]}  # an API bills per token: cost follows the load
    assert api["load x2"]["cost_per_day_usd"] == pytest.approx(
        2 * planned["api"]["metrics"]["cost_per_day_usd"], rel=0.15)


def test_headroom_is_the_largest_load_met_without_a_miss_below_it(tiny_sensitivity):
    plan, _text, _xlsx = tiny_sensitivity
    for row in plan["sensitivity"]:
        loads = sorted((o["factor"], o["feasible"]) for o in row["outcomes"] if o["input"] == "load" and o["factor"] > 1)
        expected = None
        for factor, feasible in loads:
            if not feasible:
                break
            expected = factor
        assert row["load_headroom"] == expected


def test_text_and_workbook_show_the_sensitivity(tiny_sensitivity):
    plan, text, xlsx = tiny_sensitivity
    assert "load headroom" in text
    assert "output x1.5" in text
    assert "step time x1.25" in text
    sheet = openpyxl.load_workbook(xlsx)["Sensitivity"]
    table = list(sheet.iter_rows(values_only=True))
    assert table[0][:3] == ("deployment", "input", "factor")
    vlm_loads = [r[2] for r in table[1:] if r[0] == "vlm-auto" and r[1] in ("as planned", "load")]
    assert vlm_loads == [0.75, 1, 1.25, 1.5, 2]  # one contiguous, ordered series per deployment
    assert len(sheet._charts) == 1
    assert any(a["topic"] == "sensitivity" for a in plan["assumptions"])


def test_a_traced_scenario_skips_the_output_perturbation():
    spec = load_scenario(Path(__file__).resolve().parents[1] / "planner" / "scenarios" / "default.yaml").traffic
    assert any(p.input == "output" for p in perturbations_for(spec))
    traced = TrafficSpec.model_validate({"arrivals": {"kind": "trace", "path": "t.csv"}})
    assert [p.input for p in perturbations_for(traced)] == ["load"] * 4 + ["step_time"]


def test_a_load_beyond_the_largest_rate_is_a_clear_error():
    at_limit = traffic({"kind": "poisson", "rate_rps": MAX_RATE_RPS})
    with pytest.raises(ScenarioError, match=r"load x2.*rate_rps"):
        scaled_load(at_limit, 2)


SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "planner" / "scenarios").glob("*.yaml")) + sorted(
    (Path(__file__).resolve().parents[1] / "benchmarks" / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
@pytest.mark.parametrize("factor", [0.001, 0.75, 2.0, 1e4])
def test_every_bundled_traffic_scales_to_a_valid_spec_or_says_which_limit(path, factor):
    """Scaling never produces an invalid spec silently: it validates, or names the field that broke."""
    traffic_spec = load_scenario(path).traffic
    for scale in (scaled_load, scaled_output):
        message = ""
        try:
            scaled = scale(traffic_spec, factor)
        except ScenarioError as error:
            message = str(error)
        if message:
            assert "traffic." in message
            assert f"x{factor:g}" in message
        else:
            assert TrafficSpec.model_validate(scaled.model_dump()) == scaled


def test_a_slower_step_time_stretches_every_gpu_step_by_its_factor():
    """At a load far below capacity the decode steps set TPOT, so TPOT scales with the steps; the arrivals
    (and so the requests) do not change."""
    from sim.api import SimulationJob, simulate
    from sim.deployment import DeploymentSpec

    deployment = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm"}]})
    spec = traffic({"kind": "poisson", "rate_rps": 0.5}, 200)
    job = SimulationJob(deployment, spec, horizon_s=60.0, seed=3)
    modelled = simulate(job).metrics
    slower = simulate(replace(job, step_time_scale=1.25)).metrics
    assert slower["requests"] == modelled["requests"]
    assert slower["tpot_mean_s"] == pytest.approx(1.25 * modelled["tpot_mean_s"], rel=0.03)
