"""Every bundled and benchmark scenario validates and runs; the encoder-size example tells its story."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pytest

from planner.export import write_json, write_xlsx
from planner.plan import plan_scenario, render_plan
from planner.run import simulate_scenario
from planner.scenario import default_scenario_path, load_scenario, scenario_catalog
from profiles.catalog import load_catalog
from profiles.perf import perf_model
from profiles.tokens import prompt_tokens

ROOT = Path(__file__).parents[1]
SCENARIOS = sorted((ROOT / "planner" / "scenarios").glob("*.yaml")) + sorted(
    (ROOT / "benchmarks" / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_scenario_runs_briefly(path: Path):
    scenario = load_scenario(path)
    report = simulate_scenario(scenario, horizon_s=min(scenario.horizon_s, 30.0), executor=None)
    assert [r.deployment for r in report.results] == [d.name for d in scenario.deployments]
    assert all(r.metrics["requests"] > 0 for r in report.results)


def test_bigger_vision_encoder_costs_ttft_in_front_of_the_same_llm():
    """Seed 003: the 6B encoder's TTFT is about 3x the 300M one's; 1.8B sits between."""
    scenario = load_scenario(default_scenario_path().parent / "encoder_size.yaml")
    report = simulate_scenario(scenario, horizon_s=300.0)
    ttft = {r.deployment: r.metrics["ttft_p50_s"] for r in report.results}
    assert ttft["encoder-300m"] < ttft["encoder-1.8b"] < ttft["encoder-6b"]
    assert 2.0 < ttft["encoder-6b"] / ttft["encoder-300m"] < 4.5


def test_uncapped_video_tokens_fill_the_kv_cache_and_stall_prefill():
    """Seed 003: a 10 s video's visual tokens fill a 72B replica's KV cache; prefill waits (p99 tens of seconds)."""
    scenario = load_scenario(default_scenario_path().parent / "video_stall.yaml")
    report = {r.deployment: r for r in simulate_scenario(scenario, horizon_s=600.0).results}
    uncapped, capped = report["uncapped"], report["capped"]
    assert uncapped.per_stage["vlm"]["kv_use_peak"] > 0.99
    assert uncapped.metrics["preemptions"] > 0
    # Measured H100 kernels and the H100's real memory: p50 ~9 s, p99 ~25 s in these 600 s (the roofline's
    # slower long prefills gave 19 s / 41 s).
    assert uncapped.per_class["video"]["ttft_p50_s"] > 1.5 * scenario.slo.ttft_s
    assert uncapped.per_class["video"]["ttft_p99_s"] > 20.0
    assert uncapped.per_class["video"]["ttft_p50_s"] > 3 * capped.per_class["video"]["ttft_p50_s"]
    assert capped.per_class["video"]["ttft_p50_s"] < scenario.slo.ttft_s
    assert capped.metrics["preemptions"] == 0
    # Swapping preempted KV to host memory instead of recomputing it shortens the stall, but does not end it.
    swap = report["uncapped-swap"]
    # Every preemption swaps (a video still prefilling keeps its computed chunks too), while host memory holds it.
    assert swap.metrics["preemptions"] == swap.per_stage["vlm"]["preemptions_swapped"] > 0
    assert swap.per_stage["vlm"]["prefill_tokens"] < uncapped.per_stage["vlm"]["prefill_tokens"]
    assert swap.per_class["video"]["ttft_p50_s"] < uncapped.per_class["video"]["ttft_p50_s"]
    assert swap.per_class["video"]["ttft_p99_s"] < uncapped.per_class["video"]["ttft_p99_s"]
    assert swap.per_class["video"]["ttft_p50_s"] > 1.5 * scenario.slo.ttft_s


def test_hot_expert_spikes_the_tail_and_replication_relieves_it():
    """Seed 000: one expert with 3x the tokens slows every MoE step; replicating it restores the tail."""
    scenario = load_scenario(default_scenario_path().parent / "moe_hot_expert.yaml")
    report = {r.deployment: r.metrics for r in simulate_scenario(scenario, horizon_s=600.0).results}
    balanced, hot, replicated = report["balanced"], report["hot-expert-3x"], report["hot-expert-3x-replicated"]
    assert hot["tpot_p99_s"] > 2.5 * balanced["tpot_p99_s"]
    assert hot["ttft_p99_s"] > 3.0 * balanced["ttft_p99_s"]
    assert replicated["tpot_p99_s"] < 1.1 * balanced["tpot_p99_s"]


def test_ocr_pipeline_is_cheaper_and_about_as_fast_as_a_72b_vlm_on_invoices():
    """Seed 000: DeepSeek-OCR + a 7B text LLM against a 72B VLM: 8x cheaper, about as fast; the VLM costs ~$0.003/invoice."""
    scenario = load_scenario(default_scenario_path().parent / "ocr_pipeline.yaml")
    report = {r.deployment: r.metrics for r in simulate_scenario(scenario, horizon_s=900.0).results}
    pipeline, generalist = report["ocr-then-7b"], report["generalist-72b"]
    assert pipeline["cost_per_1k_requests_usd"] < generalist["cost_per_1k_requests_usd"] / 5
    # As fast, not faster, on measured kernels: the 72B replica decodes at 31 ms/token on the
    # measured H100 GEMMs (37 on the roofline) while DeepSeek-OCR's small kernels on the A100
    # are launch-bound (e2e p50 2.85 s against 2.64 s; the roofline had 2.62 against 3.06).
    assert pipeline["e2e_p50_s"] < 1.2 * generalist["e2e_p50_s"]
    assert 2.0 < generalist["cost_per_1k_requests_usd"] < 4.5


def test_a_bert_classifier_is_1000x_cheaper_than_a_2023_frontier_api_but_not_than_gpt_4o_mini():
    """Seed 001: "BERT ... 1,000x cheaper than LLM API calls" holds at the seed's 2023 frontier price
    ($0.03 per 1K input tokens), not against today's small APIs."""
    scenario = load_scenario(default_scenario_path().parent / "classifier_cost.yaml")
    report = simulate_scenario(scenario, horizon_s=600.0)
    per_1k = {r.deployment: r.metrics["cost_per_1k_requests_usd"] for r in report.results}
    assert 500 < per_1k["frontier-2023"] / per_1k["bert-base-l4"] < 2000
    assert 50 < per_1k["gpt-4o"] / per_1k["bert-base-l4"] < 200
    assert 2 < per_1k["gpt-4o-mini"] / per_1k["bert-base-l4"] < 10
    bert = next(r for r in report.results if r.deployment == "bert-base-l4")
    assert bert.metrics["slo_met"]
    assert bert.metrics["e2e_p99_s"] < 0.05  # one L4 labels the peak hour in milliseconds


def test_a_small_model_answers_in_under_100_ms_on_a_consumer_gpu_and_an_api_cannot():
    """Seed 001: SLMs give "sub-100ms on consumer hardware". A 1.5B model completing 8 tokens does on an
    RTX 4090 and on a Jetson at int4, not on a Jetson in bf16; a hosted API's own TTFT is already 0.45 s."""
    scenario = load_scenario(default_scenario_path().parent / "on_device_slm.yaml")
    report = simulate_scenario(scenario, horizon_s=120.0)
    e2e = {r.deployment: r.metrics["e2e_p99_s"] for r in report.results}
    assert e2e["desktop-rtx-4090"] < 0.1
    assert e2e["jetson-int4"] < 0.1 < e2e["jetson-bf16"]
    assert e2e["gpt-4o-mini"] > 0.4


def test_q_former_saves_prompt_tokens_but_latency_only_under_load():
    """Seed 003: 32 Q-Former queries instead of 256 MLP tokens "cut computation by 70%". Alone on an L4
    a 7B step is bound by reading its weights, so TTFT hardly moves; on a busy L4 the saved prefill
    tokens shorten every step and the tail TTFT halves."""
    scenario = load_scenario(default_scenario_path().parent / "connector.yaml")
    catalog = scenario_catalog(scenario)
    alone = {}
    for name in ("vit-l-224+mlp+qwen2.5-7b", "vit-l-224+qformer32+qwen2.5-7b"):
        model = catalog.model(name)
        tokens = prompt_tokens(model, ((1280, 960),), 0, 0, 0, (0, 0), 20, None)
        perf = perf_model(model, catalog.gpu("l4"))
        alone[name] = (tokens.total, perf.encoder_s(tokens.encoder_patches, tokens.encoder_sequences)
                       + perf.prefill_s(tokens.total))
    (mlp_tokens, mlp_s), (qformer_tokens, qformer_s) = alone.values()
    assert qformer_tokens / mlp_tokens < 0.3  # the seed's -70 % (and more: 52 vs 276 prompt tokens)
    assert qformer_s / mlp_s > 0.9
    report = simulate_scenario(scenario, horizon_s=300.0)
    ttft = {r.deployment: r.metrics["ttft_p99_s"] for r in report.results}
    assert ttft["qformer-32-tokens"] < 0.7 * ttft["mlp-256-tokens"]


def test_the_invoice_question_gets_the_cheapest_deployment_that_meets_the_slo_at_its_real_cost(tmp_path):
    """Issue "Answers a buyer can trust": 300k invoice scans + 50k phone screenshots a day, p99 e2e under 8 s,
    written as a new user would. GPT-4o mini was once recommended at $91/day: by its own billing rule
    (images x33.33) it costs ~$1,500/day. Only the one target written applies, the GPU lists are searched
    for the cheapest combination, and the terminal, JSON and workbook carry the same numbers."""
    scenario = load_scenario(default_scenario_path().parent / "invoice_question.yaml")
    with ThreadPoolExecutor(1) as pool:
        report = plan_scenario(scenario, pool, horizon_s=900.0)
    contract = report.to_contract_dict()
    deployments = {d["name"]: d for d in contract["deployments"]}
    # Only the written target: e2e <= 8 s for both classes, no TTFT or TPOT target.
    assert contract["slo"]["per_class"] == {"invoice": {"e2e_s": 8.0}, "screenshot": {"e2e_s": 8.0}}
    # GPT-4o mini at its real cost: the catalog's rule, per day.
    mini = load_catalog().api("gpt-4o-mini")
    invoice_tokens = mini.billed_image_tokens(1700, 2200) + 60
    screenshot_tokens = mini.billed_image_tokens(1170, 2532) + 40
    input_usd = (300_000 * invoice_tokens + 50_000 * screenshot_tokens) * mini.usd_per_m_input_tokens / 1e6
    assert input_usd > 1_400
    assert deployments["gpt-4o-mini"]["metrics"]["cost_per_day_usd"] == pytest.approx(input_usd, rel=0.1)
    # The recommendation: the cheapest deployment that meets the SLO, and it really meets it.
    meeting = {name: d for name, d in deployments.items() if d["verdict"] == "meets SLO"}
    assert meeting
    cheapest = min(meeting, key=lambda name: meeting[name]["metrics"]["cost_per_day_usd"])
    assert meeting[cheapest]["pareto"]
    assert all(d["metrics"]["slo_attainment"] >= 0.99 for d in meeting.values())
    # The pipeline's GPUs were chosen from its lists, and the plan says what the others would cost.
    assert deployments["ocr-then-7b"]["gpu_alternatives"]
    # Same numbers in the terminal, the JSON and the workbook.
    text = render_plan(report)
    write_json(report, tmp_path / "plan.json")
    write_xlsx(report, tmp_path / "plan.xlsx")
    written = {d["name"]: d for d in json.loads((tmp_path / "plan.json").read_text())["deployments"]}
    sheet = openpyxl.load_workbook(tmp_path / "plan.xlsx", data_only=True)["Comparison"]  # the formulas' values
    header = [cell.value for cell in sheet[1]]
    book = {row[0]: row[header.index("$/day")] for row in sheet.iter_rows(min_row=2, values_only=True)}
    for name, entry in meeting.items():
        usd = entry["metrics"]["cost_per_day_usd"]
        assert written[name]["metrics"]["cost_per_day_usd"] == pytest.approx(usd)
        assert book[name] == pytest.approx(usd, abs=0.5)
        assert f"{usd:,.0f}" in text


def test_prefix_caching_and_prefix_aware_routing_cut_dashboard_conversations_ttft():
    """Seed 000's complaints as conversations: reusing the history's KV cache halves what later turns prefill;
    sending each turn to the replica that holds its history reuses more; an encoder cache spares the re-sent
    screenshots their preprocessing."""
    scenario = load_scenario(default_scenario_path().parent / "dashboard_sessions.yaml")
    report = {r.deployment: r for r in simulate_scenario(scenario, horizon_s=300.0).results}
    least, aware, off = report["cached-least-loaded"], report["cached-prefix-aware"], report["no-prefix-cache"]
    stage = {name: r.per_stage["omni"] for name, r in report.items()}
    assert stage["no-prefix-cache"]["prefix_cache_hit_rate"] == 0.0
    assert stage["no-prefix-cache"]["prefill_tokens"] == stage["no-prefix-cache"]["prefix_cache_queried_tokens"]
    assert 0.2 < stage["cached-least-loaded"]["prefix_cache_hit_rate"] < stage["cached-prefix-aware"][
        "prefix_cache_hit_rate"]
    assert stage["cached-prefix-aware"]["prefill_tokens"] < 0.5 * stage["no-prefix-cache"]["prefill_tokens"]
    assert stage["cached-prefix-aware"]["prefix_cache_saved_gpu_s"] > stage["cached-least-loaded"][
        "prefix_cache_saved_gpu_s"] > 0
    later = "3"  # a turn that re-sends two earlier ones
    ttft = {name: r.per_class["complaint"]["per_turn"][later]["ttft_p50_s"] for name, r in report.items()}
    assert ttft["cached-prefix-aware"] < ttft["cached-least-loaded"] < ttft["no-prefix-cache"]
    # The screenshots a later turn re-sends, found in the encoder cache, are not preprocessed again.
    assert ttft["prefix-aware-encoder-cache"] < 0.5 * ttft["cached-prefix-aware"]
    assert stage["prefix-aware-encoder-cache"]["encoder_cache_hit_rate"] > 0.3
    assert aware.metrics["gpu_utilization"] < least.metrics["gpu_utilization"] <= off.metrics["gpu_utilization"]


def test_agent_tasks_cost_less_gpu_time_per_success_with_prefix_caching():
    """Seed 001's agents: each step re-sends the task's history; caching it cuts step TTFT and GPU time per task."""
    scenario = load_scenario(default_scenario_path().parent / "agent_tasks.yaml")
    report = {r.deployment: r for r in simulate_scenario(scenario, horizon_s=300.0).results}
    tasks = {name: r.per_class["task"]["tasks"] for name, r in report.items()}
    cached, encoded, off = tasks["cached-prefix-aware"], tasks["prefix-aware-encoder-cache"], tasks["no-prefix-cache"]
    for figures in tasks.values():
        assert figures["ended"] > 5
        assert figures["success_rate"] > 0.78  # one retry lifts 78 % per attempt towards 95 %
    assert cached["gpu_s_per_successful_task"] < 0.8 * off["gpu_s_per_successful_task"]
    ttft = {name: r.metrics["ttft_p50_s"] for name, r in report.items()}
    assert ttft["prefix-aware-encoder-cache"] < ttft["cached-prefix-aware"] < ttft["no-prefix-cache"]
    assert encoded["latency_p50_s"] < off["latency_p50_s"]
