"""Quality per deployment (share-weighted catalog scores), the Pareto front, the comparison table."""

import pytest

from planner.capacity import CapacityPlan
from planner.compare import (
    Candidate,
    choose_benchmark,
    compare,
    deployment_quality,
    pareto_front,
    plan_pareto,
    render_comparison,
)
from planner.scenario import default_scenario_path, load_scenario, scenario_catalog
from sim.api import SimulationResult
from sim.deployment import DeploymentSpec
from sim.slo import SloSpec
from sim.traffic import TrafficSpec


@pytest.fixture(scope="module")
def default():
    scenario = load_scenario(default_scenario_path())
    return scenario, scenario_catalog(scenario), scenario.traffic.shares()


def by_name(scenario, name: str) -> DeploymentSpec:
    return next(d for d in scenario.deployments if d.name == name)


def test_generalist_quality_weights_each_class_by_its_share(default):
    scenario, catalog, shares = default
    quality = deployment_quality(by_name(scenario, "generalist-72b"), shares, catalog, "DocVQA")
    # Dashboard complaints (10%) go to the Omni-7B sidecar (95.2), the rest to Qwen2.5-VL-72B (96.4).
    assert quality.score == pytest.approx(0.9 * 96.4 + 0.1 * 95.2)
    assert quality.coverage == pytest.approx(1.0)
    assert quality.unverified  # the catalog marks these model-card scores unverified
    detail = {c.request_class: c for c in quality.per_class}
    assert detail["dashboard"].answered_by == "qwen2.5-omni-7b"
    assert detail["invoice"].answered_by == "qwen2.5-vl-72b"


def test_a_pipeline_is_scored_by_its_last_model_and_coverage_says_what_was_left_out(default):
    scenario, catalog, shares = default
    quality = deployment_quality(by_name(scenario, "specialist"), shares, catalog, "DocVQA")
    detail = {c.request_class: c for c in quality.per_class}
    # Invoices end at the text-only Qwen2.5-7B, which has no DocVQA score: left out, not guessed.
    assert detail["invoice"].answered_by == "qwen2.5-7b"
    assert detail["invoice"].score is None
    scored = [c for c in quality.per_class if c.score is not None]
    assert quality.coverage == pytest.approx(sum(c.share for c in scored))
    assert quality.coverage < 0.5
    assert quality.score == pytest.approx(sum(c.share * c.score for c in scored) / quality.coverage)


def test_hosted_api_quality_comes_from_the_api_entry(default):
    scenario, catalog, shares = default
    quality = deployment_quality(by_name(scenario, "hosted-gpt-4o"), shares, catalog, "docvqa")  # any case
    assert quality.score == pytest.approx(92.8)
    assert quality.to_dict()["per_class"]["chat"]["answered_by"] == "gpt-4o"


def test_benchmark_follows_the_traffic(default):
    scenario, catalog, shares = default
    assert choose_benchmark(scenario.deployments, shares, catalog, scenario.traffic) == "DocVQA"
    text = TrafficSpec.model_validate({"classes": [{"name": "chat", "text_tokens": 300, "output_tokens": 100}],
                                       "arrivals": {"kind": "poisson", "rate_rps": 1}})
    llm = DeploymentSpec.model_validate({"name": "llm", "stages": [
        {"name": "llm", "kind": "model", "model": "llama-3-8b", "gpu": "h100-sxm"}]})
    assert choose_benchmark([llm], text.shares(), catalog, text) == "MMLU"
    assert deployment_quality(llm, text.shares(), catalog, "MMLU").score == pytest.approx(66.6)


def test_pareto_front_keeps_feasible_candidates_nothing_beats_on_all_three():
    cost = [100, 200, 300, 50, 40, 100]
    p99 = [5.0, 4.0, 6.0, 1.0, 10.0, 5.0]
    quality = [90, 95, 80, 99, None, 90]
    feasible = [True, True, True, False, True, True]
    # 0 and 5 tie (neither beats the other); 2 is beaten by 0; 3 is infeasible and beats no one;
    # 4 has no known quality but is the cheapest feasible.
    assert pareto_front(cost, p99, quality, feasible) == [True, True, False, False, True, True]


def fake_plan(name: str, feasible: bool, cost: float, p99: float, reason: str = "") -> CapacityPlan:
    dep = DeploymentSpec.model_validate({"name": name, "stages": [
        {"name": "vlm", "kind": "model", "model": "qwen2.5-vl-7b", "gpu": "h100-sxm", "replicas": 2}]})
    metrics = {"cost_per_day_usd": cost, "e2e_p99_s": p99, "gpus": 2, "slo_attainment": 0.995 if feasible else 0.5}
    per_class = {"doc": {"e2e_p99_s": p99, "ttft_p99_s": 0.4}}
    return CapacityPlan(dep, {"vlm": 2}, (), feasible, reason, SimulationResult(name, metrics, per_class), ())


def candidates(plans, qualities, planned=True):
    return [Candidate(p.name, p.result, p.feasible, planned, deployment=p.deployment, replicas=p.replicas,
                      reason=p.reason, quality=q) for p, q in zip(plans, qualities, strict=True)]


def test_comparison_frame_and_text_name_every_deployment_and_why_it_fails(default):
    scenario, catalog, shares = default
    plans = [fake_plan("cheap", True, 100.0, 3.0), fake_plan("broken", False, 50.0, 30.0, "overloaded: 9 of 10")]
    qualities = [deployment_quality(p.deployment, shares, catalog, "DocVQA") for p in plans]
    pareto = plan_pareto(plans, qualities)
    assert pareto == [True, False]
    comparison = compare(candidates(plans, qualities), SloSpec(e2e_s=5.0), "DocVQA")
    frame = comparison.frame
    assert list(frame.index) == ["cheap", "broken"]
    assert list(frame["pareto"]) == pareto
    assert frame.loc["cheap", "$/day"] == 100.0
    assert frame.loc["cheap", "quality"] == pytest.approx(95.7)
    assert frame.loc["broken", "reason"] == ("doc: e2e p99 30 s > target 5 s on qwen2.5-vl-7b / h100-sxm; "
                                             "overloaded: 9 of 10")
    text = render_comparison(comparison)
    assert "INFEASIBLE broken: doc: e2e p99 30 s > target 5 s on qwen2.5-vl-7b / h100-sxm; overloaded" in text
    assert "95.7? (100%)" in text


def test_an_infeasible_plan_has_no_cost_and_is_never_on_the_front(default):
    """Defect: the plan printed the closest try's $/day in the cost column and the front could hold it."""
    scenario, catalog, shares = default
    plans = [fake_plan("ok", True, 100.0, 3.0), fake_plan("cheapest-but-infeasible", False, 10.0, 1.0, "why")]
    qualities = [deployment_quality(p.deployment, shares, catalog, "DocVQA") for p in plans]
    frame = compare(candidates(plans, qualities), SloSpec(e2e_s=5.0), "DocVQA").frame
    row = frame.loc["cheapest-but-infeasible"]
    assert row["verdict"] == "INFEASIBLE"
    assert row[["$/day", "GPUs", "$/1k req"]].isna().all()
    assert row["closest tried $/day"] == 10.0
    assert not row["pareto"]
    assert frame.loc["ok", "pareto"]
    text = render_comparison(compare(candidates(plans, qualities), SloSpec(e2e_s=5.0), "DocVQA"))
    line = next(line for line in text.splitlines() if line.startswith("cheapest-but-infeasible"))
    assert line.split()[1:6] == ["INFEASIBLE", "vlm", "x2", "-", "-"]  # verdict, replicas, then no GPUs, no $/day
    # simulated as written, the same miss is a real cost: shown, marked, and still off the front
    as_written = compare(candidates(plans, qualities, planned=False), SloSpec(e2e_s=5.0)).frame
    assert as_written.loc["cheapest-but-infeasible", "verdict"] == "SLO missed"
    assert as_written.loc["cheapest-but-infeasible", "$/day"] == 10.0
    assert not as_written.loc["cheapest-but-infeasible", "pareto"]


def test_each_class_p99_is_shown_against_its_own_target(default):
    scenario, catalog, shares = default
    plans = [fake_plan("fast", True, 100.0, 3.0), fake_plan("slow", False, 50.0, 30.0)]
    slo = SloSpec(ttft_s=1.0, per_class={"doc": {"e2e_s": 5.0}})
    comparison = compare(candidates(plans, [None, None], planned=False), slo)
    assert comparison.frame.loc["slow", "doc e2e p99 s"] == 30.0
    assert comparison.frame.loc["slow", "doc TTFT p99 s"] == 0.4
    text = render_comparison(comparison, quality=False)
    assert "e2e 30.0!" in text
    assert "e2e 3.00" in text


def test_a_reason_that_already_names_the_class_and_metric_is_not_repeated(default):
    """A zero-load bound from the capacity search says it all; the simulated p99 is not put in front of it."""
    bound = "doc: e2e at zero load 9 s > target 5 s on qwen2.5-vl-7b / h100-sxm"
    plan = fake_plan("slow", False, 50.0, 30.0, bound)
    frame = compare(candidates([plan], [None]), SloSpec(e2e_s=5.0)).frame
    assert frame.loc["slow", "reason"] == bound


def test_the_classes_come_from_a_simulated_result_when_the_first_was_ruled_out_unsimulated():
    """Defect: a first plan ruled out by its zero-load bound has no per-class results, and the comparison of
    `--size-all` on the default scenario lost every class column and target."""
    ruled_out = Candidate("a", SimulationResult("a", {}), False, True)
    simulated = Candidate("b", SimulationResult("b", {"slo_met": True}, {"doc": {}, "chat": {}}), True, True)
    comparison = compare([ruled_out, simulated], SloSpec(ttft_s=2.0))
    assert list(comparison.targets) == ["doc", "chat"]
