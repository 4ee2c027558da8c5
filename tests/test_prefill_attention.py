"""Prefill attention is per sequence: a step that prefills several prompts pays each prompt's own
causal attention, never the attention of one merged sequence (issue "Fidelity at load", item 1)."""

from pathlib import Path

import pytest

from planner.run import simulate_scenario
from planner.scenario import parse_scenario
from profiles.catalog import load_catalog
from profiles.perf import perf_model
from profiles.perf.base import causal_prefill_pairs

H200_OFFLINE = """
name: prefill-budget
seed: 3
horizon_s: 600
traffic:
  arrivals: {{kind: offline, requests: 96}}
  classes: [{{name: long, share: 1, text_tokens: 2048, output_tokens: 128}}]
slo: {{e2e_s: 600}}
deployments:
  - name: budget
    stages: [{{name: llm, kind: model, model: llama-3-8b, gpu: h200, replicas: 1,
              max_batched_tokens: {budget}}}]
"""


def test_eight_prompts_attend_within_themselves():
    eight = ((2048, 0),) * 8
    assert causal_prefill_pairs(eight) == pytest.approx(8 * 2048 * 2049 / 2)
    merged = causal_prefill_pairs(((8 * 2048, 0),))
    assert merged == pytest.approx(8 * causal_prefill_pairs(eight), rel=1e-3)  # the old charge: 8x too many


def test_a_step_of_eight_prompts_costs_less_attention_than_one_merged_prompt():
    catalog = load_catalog()
    pm = perf_model(catalog.model("llama-3-8b"), catalog.gpu("h200"), 1)
    separate = pm.step_breakdown(((2048, 0),) * 8, 0, 0)
    merged = pm.step_breakdown(((8 * 2048, 0),), 0, 0)
    assert separate.gemm_s == pytest.approx(merged.gemm_s)  # same rows through the same weights
    assert separate.attention_s < merged.attention_s / 4
    # The tail of one prompt with the head of the next: each chunk after its own cached tokens.
    tail_and_head = pm.step_breakdown(((1024, 7168), (1024, 0)), 0, 0).attention_s
    one_sequence = pm.step_breakdown(((2048, 7168),), 0, 0).attention_s
    assert tail_and_head < one_sequence


def _offline_tokens_per_s(budget: int) -> float:
    scenario = parse_scenario(H200_OFFLINE.format(budget=budget), "test.yaml", Path("."))
    [result] = simulate_scenario(scenario, executor=None).results
    assert result.metrics["completed"] == 96
    return 96 * 128 / result.metrics["e2e_p99_s"]  # all arrive at t=0: the last to finish ends the run


def test_throughput_does_not_fall_as_the_token_budget_grows():
    """Before the fix, 2048-token prompts on an H200 ran at 3,230 tok/s with a 2,048-token budget and
    1,561 with 32,768: a bigger budget batched more prompts and was charged cross-prompt attention."""
    small, large = _offline_tokens_per_s(2048), _offline_tokens_per_s(32768)
    assert large >= 0.95 * small
