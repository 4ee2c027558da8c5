"""Capacity search: fewest replicas meeting the SLO, against Erlang C, with fakes and with the simulator."""

import itertools
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import pytest
from plan_fixtures import write_tiny
from queueing_formulas import mmc_sojourn_tail

from planner.capacity import (
    CapacityPlan,
    DeploymentEvaluator,
    auto_bounds,
    is_feasible,
    plan_capacity,
    sized,
)
from planner.plan import plan_scenario
from planner.run import scenario_jobs
from planner.scenario import SCENARIO_DIR, load_scenario
from profiles.errors import ConfigurationError, ScenarioError
from sim.api import SimulationJob, SimulationResult, simulate
from sim.deployment import DeploymentSpec
from sim.slo import SloSpec
from sim.traffic import TrafficSpec

TARGET = 0.95
# M/M/c: 20 req/s, 0.5 s mean service (10 erlangs), 1.9 s end-to-end SLO at 95%:
# Erlang C gives P(sojourn > 1.9 s) = 8.0% with 11 servers and 3.2% with 12, so 12 is the fewest.
LAM, MU, SLO_S, FEWEST = 20.0, 2.0, 1.9, 12


def synthetic(name: str = "q", servers: int = 1) -> dict:
    return {"name": name, "kind": "synthetic", "servers": servers,
            "service": {"distribution": "exponential", "mean_s": 1 / MU}}


def deployment(*stages: dict, name: str = "d", **extra: object) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"name": name, "stages": list(stages) or [synthetic()], **extra})


def fake_result(name: str, attainment: float, overloaded: bool = False, cost: float = 0.0,
                stages: dict | None = None, offered_rps: float = LAM, served_rps: float = LAM) -> SimulationResult:
    metrics = {"slo_attainment": attainment, "slo_met": attainment >= TARGET, "overloaded": overloaded,
               "requests": 1000, "unfinished": 500 if overloaded else 0, "cost_per_day_usd": cost,
               "offered_rps": offered_rps, "throughput_rps": served_rps}
    return SimulationResult(name, metrics, per_class={"all": {"requests": 1000, "slo_attainment": attainment}},
                            per_stage=stages or {})


class ErlangC:
    """A fake ``simulate``: the exact M/M/c attainment for the synthetic stage's server count."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, dep: DeploymentSpec) -> SimulationResult:
        servers = dep.stage("q").servers
        self.calls.append(servers)
        if servers * MU <= LAM:
            return fake_result(dep.name, 0.0, overloaded=True, cost=servers, stages={"q": {"server_utilization": 1.0}},
                               served_rps=servers * MU)
        attainment = 1 - mmc_sojourn_tail(LAM, MU, servers, SLO_S)
        return fake_result(dep.name, attainment, cost=servers,
                           stages={"q": {"server_utilization": LAM / (servers * MU)}})


def plan_one(dep: DeploymentSpec, evaluate, bounds=None, executor: Executor | None = None):
    with executor or ThreadPoolExecutor(max_workers=2) as pool:
        [plan] = plan_capacity([dep], evaluate, pool, target=TARGET, bounds=[bounds])
    return plan


def test_fewest_servers_match_erlang_c():
    fake = ErlangC()
    plan = plan_one(deployment(), fake, bounds={"q": (1, 64)})
    assert plan.feasible
    assert plan.reason == ""
    assert plan.replicas == {"q": FEWEST}
    assert plan.deployment.stage("q").servers == FEWEST
    assert FEWEST - 1 in fake.calls  # the neighbour below was simulated and failed
    assert len(fake.calls) <= 8  # overload jump to 16, then trisection; never a linear walk
    # The log names every configuration simulated, with its verdict.
    verdicts = {p.replicas["q"]: p.feasible for p in plan.probes}
    assert verdicts[FEWEST]
    assert not verdicts[FEWEST - 1]


class LastFirst(Executor):
    """Runs nothing until a result is asked for, then runs everything submitted, the last first."""

    def __init__(self) -> None:
        self.pending: list[tuple[Future, object, object]] = []

    def submit(self, fn, /, *args, **kwargs):  # the Executor interface
        future = LazyFuture(self)
        self.pending.append((future, fn, args[0]))
        return future

    def run_all(self) -> None:
        for future, fn, arg in reversed(self.pending):
            future.set_result(fn(arg))
        self.pending.clear()


class LazyFuture(Future):
    def __init__(self, owner: LastFirst) -> None:
        super().__init__()
        self.owner = owner

    def result(self, timeout: float | None = None):
        if not self.done():
            self.owner.run_all()
        return super().result(timeout)


def test_the_plan_does_not_depend_on_workers_or_finishing_order():
    deps = [deployment(name="a"), deployment(synthetic(servers=3), name="b")]
    plans = {}
    for label, executor in (("one", ThreadPoolExecutor(1)), ("four", ThreadPoolExecutor(4)), ("last first", LastFirst())):
        with executor:
            plans[label] = plan_capacity(deps, ErlangC(), executor, target=TARGET, bounds=[{"q": (1, 64)}, None])
    for label in ("four", "last first"):
        assert [(p.replicas, p.feasible, p.probes) for p in plans[label]] == \
               [(p.replicas, p.feasible, p.probes) for p in plans["one"]]
    assert plans["one"][1].replicas == {"q": 3}  # fixed: simulated once, as written
    assert not plans["one"][1].feasible
    assert len(plans["one"][1].probes) == 1


def test_two_stages_find_each_stage_minimum():
    need = {"a": 5, "b": 11}

    def tandem(dep: DeploymentSpec) -> SimulationResult:
        n = {s.name: s.replicas for s in dep.stages}
        load = {s: need[s] / n[s] for s in n}  # > 1: overloaded
        attainment = min(1.0, *(1.0 / x for x in load.values())) ** 2
        return fake_result(dep.name, attainment, overloaded=max(load.values()) > 1.2,
                           stages={s: {"gpu_utilization": min(1.0, 0.9 * load[s])} for s in n},
                           offered_rps=10.0, served_rps=10.0 / max(1.0, max(load.values())))

    dep = deployment(*({"name": s, "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "replicas": "auto"}
                       for s in ("a", "b")))
    plan = plan_one(dep, tandem)
    assert plan.auto_stages == ("a", "b")
    assert plan.replicas == need
    assert plan.feasible


def test_max_replicas_that_cannot_meet_the_slo_is_infeasible_with_the_reason():
    fake = ErlangC()
    plan = plan_one(deployment(), fake, bounds={"q": (1, 8)})
    assert not plan.feasible
    assert "most replicas allowed (q x8)" in plan.reason
    assert "overloaded" in plan.reason
    assert max(fake.calls) == 8
    assert len(fake.calls) <= 4


def test_latency_bound_deployment_stops_when_replicas_stop_helping():
    calls = []

    def latency_bound(dep: DeploymentSpec) -> SimulationResult:
        n = dep.stage("q").servers
        calls.append(n)
        # Queueing vanishes with capacity, but 10% of requests miss on service time alone.
        return fake_result(dep.name, 0.9 - 0.5 / n**2, cost=100 * n, stages={"q": {"server_utilization": 1 / n}})

    plan = plan_one(deployment(), latency_bound, bounds={"q": (1, 1024)})
    assert not plan.feasible
    assert "stop helping" in plan.reason
    assert max(calls) <= 64  # gave up long before the maximum
    # The configuration shown is the cheapest of those as close to the SLO as any.
    best = max(0.9 - 0.5 / n**2 for n in calls)
    assert plan.result.metrics["slo_attainment"] >= best - 0.1 * (TARGET - best)
    assert plan.replicas["q"] < max(calls)


def test_errors_of_a_simulation_reach_the_caller():
    def broken(dep: DeploymentSpec) -> SimulationResult:
        raise ConfigurationError("qwen2.5-vl-72b bf16 needs 38.4 GB/GPU of weights on 2x l4 (24 GB)")

    with pytest.raises(ConfigurationError, match="38.4 GB"):
        plan_one(deployment(), broken, bounds={"q": (1, 4)})


def test_auto_bounds_come_from_the_stage_and_reject_prefill_decode():
    dep = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "vlm", "kind": "model", "model": "qwen2.5-vl-7b", "gpu": "h100-sxm", "replicas": "auto",
         "min_replicas": 2, "max_replicas": 9},
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "replicas": 3},
        {"name": "api", "kind": "hosted_api", "api": "gpt-4o"}]})
    assert auto_bounds(dep) == {"vlm": (2, 9)}
    assert sized(dep, {"vlm": 4}).stage("vlm").replicas == 4
    pd_stage = {"name": "pd", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "replicas": "auto",
                "disaggregation": {"mode": "prefill_decode"}}
    with pytest.raises(ScenarioError, match=r"stages\.0\.replicas: `auto` does not size a prefill_decode"):
        auto_bounds(deployment(pd_stage))


def test_search_with_the_simulator_agrees_with_erlang_c():
    traffic = TrafficSpec.model_validate({"classes": [{"name": "job", "text_tokens": 10, "output_tokens": 1}],
                                          "arrivals": {"kind": "poisson", "rate_rps": LAM}})
    slo = SloSpec(ttft_s=None, tpot_s=None, e2e_s=SLO_S, attainment=TARGET)
    job = SimulationJob(deployment(), traffic, horizon_s=900, seed=11, slo=slo)
    with ThreadPoolExecutor(max_workers=1) as pool:
        [plan] = plan_capacity([job.deployment], DeploymentEvaluator(job), pool, target=TARGET,
                               bounds=[{"q": (1, 64)}])
    assert plan.feasible
    assert plan.replicas == {"q": FEWEST}
    attained = {p.replicas["q"]: p.slo_attainment for p in plan.probes}
    assert attained[FEWEST] == pytest.approx(1 - mmc_sojourn_tail(LAM, MU, FEWEST, SLO_S), abs=0.01)
    assert attained[FEWEST - 1] == pytest.approx(1 - mmc_sojourn_tail(LAM, MU, FEWEST - 1, SLO_S), abs=0.035)


def test_size_all_searches_fixed_model_stages_as_if_they_said_auto(tmp_path):
    """The tiny scenario's VLM pool, written as a fixed 8 replicas, sized by --size-all as `auto` sizes it."""
    written = write_tiny(tmp_path)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(written.read_text(encoding="utf-8").replace("replicas: auto, max_replicas: 16", "replicas: 8"),
                     encoding="utf-8")
    with ThreadPoolExecutor(1) as pool:
        searched = plan_scenario(load_scenario(written), pool, only=["vlm-auto"]).plans[0]
        as_written = plan_scenario(load_scenario(fixed), pool, only=["vlm-auto"]).plans[0]
        size_all = plan_scenario(load_scenario(fixed), pool, only=["vlm-auto", "queue"], size_all=True).plans
    assert as_written.replicas == {"vlm": 8}
    assert as_written.auto_stages == ()
    assert size_all[0].auto_stages == ("vlm",)
    assert size_all[0].replicas == searched.replicas
    assert size_all[0].replicas["vlm"] < 8
    assert size_all[1].replicas == {"q": 2}  # a synthetic queue is not a model stage: as written


# ---------------------------------------------------------------- dollars, jointly; no repeats

OCR_L4_USD_DAY, LLM_H100_USD_DAY = 0.49 * 24, 3.49 * 24  # profiles/data/gpus.yaml


def test_more_of_the_cheap_stage_wins_when_it_costs_less():
    """OCR x7 + LLM x1 ($166/day) meets the SLO as OCR x6 + LLM x2 ($238/day) does: the cheaper one is the plan.

    Misses (share of requests): the OCR pool misses 4 % at 6 replicas and 0.5 % at 7, the LLM 4 % at 1;
    the target allows 5 %. Trimming one stage at a time from a feasible point stops at x6 + x2.
    """
    ocr_miss = {6: 0.04, 7: 0.005}
    calls: list[tuple[int, int]] = []

    def pipeline(dep: DeploymentSpec) -> SimulationResult:
        ocr, llm = dep.stage("ocr").replicas, dep.stage("llm").replicas
        calls.append((ocr, llm))
        missed = (ocr_miss.get(ocr, 0.0) if ocr >= 6 else 0.15 * (6 - ocr) + 0.05) + (0.04 if llm == 1 else 0.0)
        cost = ocr * OCR_L4_USD_DAY + llm * LLM_H100_USD_DAY
        return fake_result(dep.name, 1 - missed, cost=cost, offered_rps=10.0, served_rps=10.0,
                           stages={"ocr": {"gpu_utilization": min(1.0, 6 / ocr)},
                                   "llm": {"gpu_utilization": min(1.0, 1.0 / llm)}})

    dep = deployment({"name": "ocr", "kind": "model", "model": "deepseek-ocr", "gpu": "l4", "replicas": "auto",
                      "max_replicas": 16},
                     {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "replicas": "auto",
                      "max_replicas": 4})
    with ThreadPoolExecutor(1) as pool:
        [plan] = plan_capacity([dep], pipeline, pool, target=TARGET)
    assert plan.feasible
    assert plan.replicas == {"ocr": 7, "llm": 1}
    assert plan.result.metrics["cost_per_day_usd"] == pytest.approx(7 * OCR_L4_USD_DAY + LLM_H100_USD_DAY)
    assert len(calls) == len(set(calls)) == plan.simulations  # no configuration simulated twice


PIPELINE_SCENARIO = """\
name: pipeline
description: Scans read by an OCR model then a text LLM; chat on its own pool.
seed: 3
horizon_s: 120
traffic:
  arrivals: {kind: poisson, rate_rps: 9}
  classes:
    - {name: scan, share: 0.5, images: {count: 1, width_px: 1024, height_px: 1024}, text_tokens: 40, output_tokens: 60}
    - {name: chat, share: 0.5, text_tokens: 300, output_tokens: 150}
slo: {ttft_s: 1.5, tpot_s: 0.1, attainment: 0.95}
deployments:
  - name: pipeline
    stages:
      - {name: ocr, kind: model, model: deepseek-ocr, gpu: l4, replicas: auto, max_replicas: 5, output_tokens: 120}
      - {name: text, kind: model, model: qwen2.5-7b, gpu: l40s, replicas: auto, max_replicas: 3, text_only_input: true}
      - {name: chat, kind: model, model: qwen2.5-7b, gpu: l4, replicas: auto, max_replicas: 2}
    routes:
      - {classes: [scan], path: [ocr, text]}
      - {classes: [chat], path: [chat]}
"""


def exhaustive(job: SimulationJob) -> tuple[dict, float]:
    """The cheapest feasible sizes among every configuration within the auto stages' bounds (and its cost)."""
    searched = auto_bounds(job.deployment)
    evaluate = DeploymentEvaluator(job)
    feasible = []
    for sizes in itertools.product(*(range(low, high + 1) for low, high in searched.values())):
        replicas = dict(zip(searched, sizes, strict=True))
        result = evaluate(sized(job.deployment, replicas))
        if is_feasible(result):
            feasible.append((result.metrics["cost_per_day_usd"], sum(sizes), replicas))
    cost, _count, replicas = min(feasible, key=lambda row: row[:2])
    return replicas, cost


def plan_of(job: SimulationJob, target: float) -> CapacityPlan:
    with ThreadPoolExecutor(1) as pool:
        [plan] = plan_capacity([job.deployment], DeploymentEvaluator(job), pool, target=target)
    return plan


def test_the_search_finds_what_trying_every_configuration_finds(tmp_path):
    """A three-stage pipeline (OCR -> text LLM, chat apart) on a 2-minute horizon: 30 configurations."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE_SCENARIO, encoding="utf-8")
    scenario = load_scenario(path)
    [job] = scenario_jobs(scenario)
    plan = plan_of(job, scenario.slo.attainment)
    replicas, cost = exhaustive(job)
    assert plan.feasible
    assert dict(plan.replicas) == replicas
    # The cheapest lies inside the bounds, not at a corner (on L4 and L40S, so no two sizes cost the same).
    assert 1 < replicas["ocr"] < 5
    assert plan.result.metrics["cost_per_day_usd"] == pytest.approx(cost)
    assert plan.simulations < 30 / 3


@pytest.mark.parametrize("name", ["qwen-vl-7b-h100", "internvl3-2b-l4"])
def test_the_search_agrees_with_trying_every_size_on_the_bundled_autoscale_scenario(name):
    """planner/scenarios/autoscale.yaml at its peak, on a 60 s horizon (every size from 1 to max_replicas)."""
    scenario = load_scenario(SCENARIO_DIR / "autoscale.yaml")
    [job] = scenario_jobs(scenario, only=[name], horizon_s=60)
    plan = plan_of(job, scenario.slo.attainment)
    replicas, cost = exhaustive(job)
    assert plan.feasible
    assert dict(plan.replicas) == replicas
    assert plan.result.metrics["cost_per_day_usd"] == pytest.approx(cost)


def test_a_shared_cache_runs_no_configuration_twice():
    fake = ErlangC()
    cache: dict = {}
    with ThreadPoolExecutor(2) as pool:
        [first] = plan_capacity([deployment()], fake, pool, target=TARGET, bounds=[{"q": (1, 64)}], cache=cache)
        calls = len(fake.calls)
        [again] = plan_capacity([deployment()], fake, pool, target=TARGET, bounds=[{"q": (1, 64)}], cache=cache)
    assert len(fake.calls) == len(set(fake.calls)) == calls == first.simulations
    assert again.simulations == 0
    assert again.replicas == first.replicas == {"q": FEWEST}


@pytest.mark.parametrize("stage", [
    {"gpu": "l4", "replicas": 3},
    {"model": "qwen2.5-vl-7b", "gpu": "h100-sxm", "replicas": 2,
     "disaggregation": {"mode": "encode", "encoder_replicas": 3, "encoder_gpu": "l40s"}},
    {"gpu": "h100-sxm", "tensor_parallel": 2,
     "disaggregation": {"mode": "prefill_decode", "prefill_replicas": 1, "decode_replicas": 2,
                        "prefill_gpu": "h100-sxm", "decode_gpu": "l40s"}},
], ids=["one-pool", "encoder-on-l40s", "h100-prefill-l40s-decode"])
def test_the_search_prices_a_size_as_the_simulation_bills_it(stage: dict):
    """The search orders sizes by ``Prices``; it billed every GPU of a stage at the stage's own GPU price,
    one pool only (an L40S decode or encoder pool at the H100's price, or not at all). Each pool now at its
    own GPU's price, as the simulator bills it: the same dollars for the same size."""
    from planner.capacity import fixed_sizes
    from planner.search import Prices
    from profiles.catalog import load_catalog

    deployment = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", **stage}]})
    traffic = TrafficSpec.model_validate({"classes": [{"name": "chat", "text_tokens": 100, "output_tokens": 5}],
                                          "arrivals": {"kind": "poisson", "rate_rps": 1}})
    simulated = simulate(SimulationJob(deployment, traffic, horizon_s=5, seed=1)).metrics["cost_per_day_usd"]
    prices = Prices.of(deployment, load_catalog())
    assert prices.usd_per_day(fixed_sizes(deployment, {})) == pytest.approx(simulated, rel=1e-12)
