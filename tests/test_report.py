"""One report, one front: the SLO targets in force, infeasible plans and VRAM, the same in every view.

Each test pins a defect of the views before ``planner.compare`` built them all:
implied TTFT/TPOT targets, an infeasible plan priced as if it were one,
no memory beside the latency.
"""

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from planner.compare import Candidate, compare
from planner.export import write_csv, write_json, write_xlsx
from planner.plan import plan_scenario, render_plan
from planner.run import render_table, simulate_scenario
from planner.scenario import load_scenario, parse_scenario, scenario_catalog
from profiles.perf.memory import memory_plan
from sim.api import SimulationJob, simulate
from sim.deployment import DeploymentSpec
from sim.slo import SloSpec
from sim.traffic import TrafficSpec

SLOW_FIRST_TOKEN = """\
name: slow-first-token
description: Every answer takes 3 s, first token included; the SLO bounds only the end-to-end latency.
seed: 3
horizon_s: 60
traffic:
  arrivals: {kind: poisson, rate_rps: 2}
  classes: [{name: job, text_tokens: 10, output_tokens: 1}]
slo: {e2e_s: 8}
deployments:
  - name: queue
    stages: [{name: q, kind: synthetic, servers: 16, usd_per_server_hour: 1.0,
              service: {distribution: deterministic, mean_s: 3.0}}]
"""

ONE_INFEASIBLE = """\
name: one-infeasible
description: A queue that meets a 1 s TTFT target and a hosted API whose own first token is slower.
seed: 5
horizon_s: 60
traffic:
  arrivals: {kind: poisson, rate_rps: 2}
  classes: [{name: chat, text_tokens: 100, output_tokens: 20}]
slo: {ttft_s: 0.3, attainment: 0.95}
deployments:
  - name: queue
    stages: [{name: q, kind: synthetic, servers: 4, usd_per_server_hour: 1.0,
              service: {distribution: deterministic, mean_s: 0.1}}]
  - name: api
    stages: [{name: api, kind: hosted_api, api: gpt-4o-mini}]
"""


def test_an_slo_with_only_e2e_applies_no_ttft_or_tpot_target(tmp_path: Path):
    """Defect: ``slo: {e2e_s: 8}`` silently added TTFT <= 2 s and TPOT <= 0.2 s."""
    slo = SloSpec(e2e_s=8.0)
    assert slo.targets("job").written() == {"e2e_s": 8.0}
    path = tmp_path / "s.yaml"
    path.write_text(SLOW_FIRST_TOKEN, encoding="utf-8")
    report = simulate_scenario(load_scenario(path))
    [result] = report.results
    assert result.metrics["ttft_p50_s"] == pytest.approx(3.0)  # slower than the old implied 2 s
    assert result.metrics["slo_attainment"] == pytest.approx(1.0)  # yet every request meets e2e <= 8 s
    text = render_table(report)
    assert "job: e2e <= 8 s" in text
    assert "TTFT <=" not in text


def test_simulate_json_lists_the_targets_in_force(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text(SLOW_FIRST_TOKEN, encoding="utf-8")
    contract = simulate_scenario(load_scenario(path)).to_contract_dict()
    assert contract["slo"] == {"attainment": 0.99, "per_class": {"job": {"e2e_s": 8.0}}}
    assert contract["deployments"][0]["verdict"] == "meets SLO"
    assert contract["deployments"][0]["pareto"] is True


@pytest.fixture(scope="module")
def infeasible_plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "s.yaml"
    path.write_text(ONE_INFEASIBLE, encoding="utf-8")
    with ThreadPoolExecutor(max_workers=1) as pool:
        return plan_scenario(load_scenario(path), pool)


def test_an_infeasible_plan_has_no_cost_in_the_table_json_csv_or_workbook(infeasible_plan, tmp_path: Path):
    """Defect: the closest try's $/day stood in the cost column of a plan that meets nothing."""
    report = infeasible_plan
    queue, api = report.plans
    assert queue.feasible
    assert not api.feasible
    assert report.pareto == (True, False)
    closest_usd = api.result.metrics["cost_per_day_usd"]
    assert closest_usd > 0
    # terminal
    line = next(line for line in render_plan(report).splitlines() if line.startswith("api "))
    assert line.split()[1:5] == ["INFEASIBLE", "-", "-", "-"]  # no replicas to size; no GPUs, $/day, $/1k req
    assert "INFEASIBLE api: chat: TTFT p99" in render_plan(report)
    assert "> target 0.3 s on gpt-4o-mini (hosted API)" in render_plan(report)
    # JSON: the keys stay, the price is null, the closest try says what it cost
    write_json(report, tmp_path / "p.json")
    entry = json.loads((tmp_path / "p.json").read_text())["deployments"][1]
    assert entry["feasible"] is False
    assert entry["verdict"] == "INFEASIBLE"
    assert entry["pareto"] is False
    assert entry["metrics"]["cost_per_day_usd"] is None
    assert entry["closest_tried"]["cost_per_day_usd"] == pytest.approx(closest_usd)
    # CSV and workbook: a visible marker, the cost column empty, the closest try in its own column
    write_csv(report, tmp_path / "p.csv")
    write_xlsx(report, tmp_path / "p.xlsx")
    sheet = pd.read_excel(tmp_path / "p.xlsx", sheet_name="Comparison", index_col=0)
    for frame in (pd.read_csv(tmp_path / "p.csv", index_col=0), sheet):
        assert frame.loc["api", "verdict"] == "INFEASIBLE"
        assert math.isnan(frame.loc["api", "$/day"])
        assert frame.loc["api", "closest tried $/day"] == pytest.approx(closest_usd)
        assert not frame.loc["api", "pareto"]
        assert frame.loc["queue", "pareto"]


def test_the_plan_json_and_workbook_list_every_target_in_force(infeasible_plan, tmp_path: Path):
    write_json(infeasible_plan, tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text())["slo"] == {
        "attainment": 0.95, "per_class": {"chat": {"ttft_s": 0.3}}}
    write_xlsx(infeasible_plan, tmp_path / "p.xlsx")
    rows = list(openpyxl.load_workbook(tmp_path / "p.xlsx")["SLO targets"].iter_rows(values_only=True))
    assert rows[0][:4] == ("request class", "TTFT target s", "TPOT target s", "e2e target s")
    assert rows[1][:4] == ("chat", 0.3, None, None)
    assert "chat: TTFT <= 0.3 s" in render_plan(infeasible_plan)


def test_vram_per_replica_adds_up_and_matches_the_memory_plan(tmp_path: Path):
    traffic = TrafficSpec.model_validate({"classes": [{"name": "chat", "text_tokens": 100, "output_tokens": 10}],
                                          "arrivals": {"kind": "poisson", "rate_rps": 1}})
    deployment = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "tensor_parallel": 2,
         "replicas": 1}]})
    stage = simulate(SimulationJob(deployment, traffic, horizon_s=10, seed=1)).per_stage["llm"]
    scenario = parse_scenario(SLOW_FIRST_TOKEN, "s.yaml", tmp_path)
    catalog = scenario_catalog(scenario)
    plan = memory_plan(catalog.model("qwen2.5-7b"), catalog.gpu("h100-sxm"), 2, "bf16")
    assert stage["vram_weights_gb"] == pytest.approx(2 * plan.weights_bytes_per_gpu / 1e9)
    assert stage["vram_activations_gb"] == pytest.approx(2 * plan.activation_reserve_bytes_per_gpu / 1e9)
    assert stage["vram_kv_cache_gb"] == pytest.approx(2 * plan.free_bytes_per_gpu / 1e9)
    parts = ("vram_weights_gb", "vram_kv_cache_gb", "vram_activations_gb", "vram_free_gb")
    assert sum(stage[p] for p in parts) == pytest.approx(stage["vram_total_gb"])
    assert stage["vram_total_gb"] == pytest.approx(2 * catalog.gpu("h100-sxm").memory_bytes / 1e9)  # 81,559 MiB each
    # every view carries it: the text's VRAM block and the comparison frame's columns
    report = simulate_scenario(scenario.model_copy(update={"deployments": [deployment], "traffic": traffic,
                                                           "slo": SloSpec(ttft_s=2.0)}), horizon_s=10)
    assert "VRAM per replica, GB" in render_table(report)
    frame = report.comparison().frame
    assert frame.loc["d", "llm VRAM weights GB"] == pytest.approx(stage["vram_weights_gb"])


def test_a_prefill_decode_stage_shows_the_vram_of_each_pool():
    traffic = TrafficSpec.model_validate({"classes": [{"name": "chat", "text_tokens": 100, "output_tokens": 10}],
                                          "arrivals": {"kind": "poisson", "rate_rps": 1}})
    deployment = DeploymentSpec.model_validate({"name": "pd", "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm",
         "disaggregation": {"mode": "prefill_decode", "decode_gpu": "l4"}}]})
    result = simulate(SimulationJob(deployment, traffic, horizon_s=10, seed=1))
    memory = compare([Candidate("pd", result, True, False)], SloSpec(ttft_s=2.0)).memory
    assert list(memory["stage"]) == ["llm prefill", "llm decode"]
    assert list(memory["GPU"]) == ["h100-sxm", "l4"]
    assert list(memory["total"]) == pytest.approx([81_559 * 2**20 / 1e9, 23_034 * 2**20 / 1e9])  # as drivers report
    # Each pool's engine and step-time source: the L4 decode pool's steps come from the roofline, not from the
    # H100 prefill pool's measured kernels (both rows said "measured kernels (h100_sxm...)", engine nan).
    assert list(memory["engine"]) == ["vllm", "vllm"]
    assert memory["step times"][0].startswith("measured kernels (h100_sxm")
    assert memory["step times"][1].startswith("roofline (estimated")


def test_every_stage_says_where_its_step_times_come_from(tmp_path: Path):
    """Measured kernels where NVIDIA's tables cover the GPU and engine, the roofline elsewhere: the table,
    the workbook and the JSON say which for each stage."""
    traffic = TrafficSpec.model_validate({"classes": [{"name": "chat", "text_tokens": 100, "output_tokens": 10}],
                                          "arrivals": {"kind": "poisson", "rate_rps": 1}})
    deployments = [DeploymentSpec.model_validate({"name": name, "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": gpu, "replicas": 1}]})
        for name, gpu in (("on-h100", "h100-sxm"), ("on-l4", "l4"))]
    scenario = parse_scenario(SLOW_FIRST_TOKEN, "s.yaml", tmp_path)
    report = simulate_scenario(scenario.model_copy(update={"deployments": deployments, "traffic": traffic}),
                               horizon_s=10)
    sources = dict(zip(report.comparison().memory["deployment"], report.comparison().memory["step times"],
                       strict=True))
    assert sources["on-h100"].startswith("measured kernels (h100_sxm, vLLM")
    assert sources["on-l4"].startswith("roofline (estimated")
    text = render_table(report)
    assert "measured kernels (h100_sxm" in text
    assert "roofline (estimated)" in text
    per_stage = {r.deployment: r.per_stage["llm"]["provenance"] for r in report.results}
    assert per_stage == sources
