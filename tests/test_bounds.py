"""Bounds without simulation: latency at zero load rules deployments out; throughput brackets replicas."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from planner.bounds import deployment_bounds
from planner.capacity import DeploymentEvaluator, gpu_variants, plan_capacity, searching_every_stage
from planner.run import scenario_jobs
from planner.scenario import default_scenario_path, load_scenario
from profiles.catalog import load_catalog
from sim.api import SimulationJob, SimulationResult, simulate
from sim.deployment import DeploymentSpec
from sim.slo import SloSpec
from sim.traffic import TrafficSpec

# One request shape, rare arrivals: the simulation sees the deployment (almost) empty.
QUIET = TrafficSpec.model_validate({
    "arrivals": {"kind": "poisson", "rate_rps": 0.2},
    "classes": [{"name": "scan", "images": {"count": 1, "width_px": 1024, "height_px": 1024}, "text_tokens": 40,
                 "output_tokens": 50}]})
PIPELINE = DeploymentSpec.model_validate({"name": "pipe", "stages": [
    {"name": "ocr", "kind": "model", "model": "deepseek-ocr", "gpu": "l4", "output_tokens": 80},
    {"name": "text", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "text_only_input": True}]})


def test_the_zero_load_bound_is_below_every_simulated_latency_and_close_to_it_when_quiet():
    slo = SloSpec(ttft_s=None, tpot_s=None, e2e_s=0.001, attainment=0.9)  # every request misses: the bound shows
    job = SimulationJob(PIPELINE, QUIET, horizon_s=600, seed=1, slo=slo)
    bounds = deployment_bounds(job)
    [scan] = bounds.classes
    assert scan.doomed == scan.requests == bounds.requests > 50
    zero_load_e2e_s = float(scan.text.split("e2e at zero load ")[1].split(" s")[0])
    fastest_s = simulate(job).cdf["e2e_s"][0]  # the quickest request of the run
    assert zero_load_e2e_s <= fastest_s
    assert zero_load_e2e_s > 0.95 * fastest_s  # a quiet run is the zero-load case: the bound is tight
    assert "on deepseek-ocr / l4 -> qwen2.5-7b / h100-sxm" in scan.text


@pytest.fixture(scope="module")
def default_jobs() -> list[SimulationJob]:
    return scenario_jobs(load_scenario(default_scenario_path()))


def test_the_camera_target_rules_out_every_generalist_without_a_simulation(default_jobs):
    """The bundled scenario's 100 ms camera class (5 % of requests) is out of reach of every deployment but
    the specialist's SmolVLM stage, whatever their sizes: `plan --size-all` simulates none of them."""
    jobs = [job for job in default_jobs if job.deployment.name in ("omni-7b", "generalist-72b", "specialist")]
    by_name = {job.deployment.name: deployment_bounds(job) for job in jobs}
    assert by_name["omni-7b"].infeasible
    reason = by_name["omni-7b"].reason
    assert reason.startswith("camera: e2e at zero load 0.1")  # 0.15 s with measured H100 kernels
    assert "s > target 0.1 s on qwen2.5-omni-7b / h100-sxm" in reason
    assert by_name["generalist-72b"].infeasible
    assert not by_name["specialist"].infeasible
    searched = [searching_every_stage(job.deployment) for job in jobs[:2]]  # generalist-72b, omni-7b
    with ThreadPoolExecutor(1) as pool:
        plans = plan_capacity(searched, [NeverSimulated(job) for job in jobs[:2]], pool, target=0.99)
    for plan in plans:
        assert not plan.feasible
        assert plan.simulations == 0
        assert not plan.simulated
        assert "camera: e2e at zero load" in plan.reason
        assert plan.result.metrics["gpus"] >= 1  # the smallest sizes it could have, as the table shows


class NeverSimulated(DeploymentEvaluator):
    """An evaluator (its job gives the bounds) that fails the test when asked to simulate."""

    def __call__(self, deployment: DeploymentSpec) -> SimulationResult:
        raise AssertionError(f"{deployment.name}: ruled out at zero load, yet simulated")


def test_the_throughput_bound_is_at_most_the_replicas_the_search_finds(default_jobs):
    [job] = [j for j in default_jobs if j.deployment.name == "compact-2b"]
    bounds = deployment_bounds(job)
    assert bounds.fewest_replicas["compact"] >= 2  # ~15 req/s of images on an L4: one cannot keep up
    assert bounds.fewest_replicas["compact"] <= 14  # the scenario's own (feasible but for the camera) guess


def test_a_stage_listing_gpus_gets_the_cheapest_one_that_meets_the_slo(tmp_path):
    """Qwen2.5-VL-7B on [h100-sxm, l4, a100-80gb]: the L4 pool meets the SLO for less; the plan says what the
    others would cost."""
    scenario = tmp_path / "gpus.yaml"
    scenario.write_text(GPU_CHOICE, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "planner", "plan", str(scenario), "--json", "--workers", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [plan] = json.loads(done.stdout)["deployments"]
    assert plan["feasible"]
    alternatives = {a["gpus"]["vlm"]: a for a in plan["gpu_alternatives"]}
    assert set(alternatives) == {"h100-sxm", "a100-80gb"}
    chosen_usd = plan["metrics"]["cost_per_day_usd"]
    for alternative in alternatives.values():
        assert alternative["cost_per_day_usd"] is None or alternative["cost_per_day_usd"] > chosen_usd
    assert {p["gpus"]["vlm"] for p in plan["search"]} >= {"l4"}
    assert any(p["gpus"]["vlm"] == "l4" and p["feasible"] for p in plan["search"])


GPU_CHOICE = """\
name: gpu-choice
seed: 4
horizon_s: 120
traffic:
  arrivals: {kind: poisson, rate_rps: 3}
  classes:
    - {name: doc, share: 0.5, images: {count: 1, width_px: 1024, height_px: 1024}, text_tokens: 50, output_tokens: 60}
    - {name: chat, share: 0.5, text_tokens: 200, output_tokens: 60}
slo: {ttft_s: 2.0, tpot_s: 0.2, attainment: 0.95}
deployments:
  - name: vlm
    stages: [{name: vlm, kind: model, model: qwen2.5-vl-7b, gpu: [h100-sxm, l4, a100-80gb], replicas: auto,
              max_replicas: 8}]
"""


def test_an_unknown_gpu_in_a_list_is_named_with_its_position(tmp_path):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(GPU_CHOICE.replace("[h100-sxm, l4, a100-80gb]", "[h100-sxm, l5]"), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "planner", "validate", str(scenario)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "deployments.0.stages.0.gpu.1: unknown GPU 'l5'" in done.stderr
    assert done.stdout == ""


def test_gpu_auto_is_every_priced_gpu_that_holds_the_model():
    catalog = load_catalog()
    stage = {"name": "vlm", "kind": "model", "model": "qwen2.5-vl-72b", "gpu": "auto", "tensor_parallel": 4}
    [dep] = [DeploymentSpec.model_validate({"name": "d", "stages": [stage]})]
    options = [v.stages[0].gpu for v in gpu_variants(dep, catalog)]
    assert "h100-sxm" in options
    assert "h200" in options
    assert "l4" not in options  # 4x 24 GB cannot hold 72B bf16 parameters and a KV cache
    assert all(catalog.gpu(gpu).price is not None for gpu in options)
