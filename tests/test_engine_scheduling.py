"""When a queued prompt may join the batch: async scheduling and TensorRT-LLM's batch waiting (sim.policies)."""

import pytest

from sim.api import SimulationJob, simulate
from sim.deployment import DeploymentSpec
from sim.policies import ENGINE_HOST_S_PER_SEQUENCE
from sim.traffic import TrafficSpec

PROMPT = {"name": "bench", "text_tokens": 2048, "output_tokens": 128}


def means_ms(users: int, **stage: object) -> tuple[float, float]:
    """Mean TTFT and mean TPOT (ms) of ``users`` users started over one second on one Llama-3-8B H100."""
    deployment = DeploymentSpec.model_validate({"name": "one", "stages": [
        {"name": "llm", "kind": "model", "model": "llama-3-8b", "gpu": "h100-sxm", **stage}]})
    traffic = TrafficSpec.model_validate({"classes": [PROMPT], "arrivals": {
        "kind": "closed_loop", "users": users, "think_time_s": 0.0, "ramp_up_s": 1.0}})
    metrics = simulate(SimulationJob(deployment, traffic, horizon_s=30, seed=5)).metrics
    return metrics["ttft_mean_s"] * 1e3, metrics["tpot_mean_s"] * 1e3


def test_async_scheduling_makes_a_prompt_queued_mid_step_wait_one_more_step():
    # Step n+1 is scheduled when step n starts: a prompt that arrives while another
    # user's decode step runs joins the step after next, one decode step later than
    # without. A prompt reaching an idle engine starts at once either way (its step carries vLLM's
    # per-sequence host time only without async scheduling, which otherwise hides it under the GPU step).
    host_ms = ENGINE_HOST_S_PER_SEQUENCE["vllm"] * 1e3
    assert means_ms(1, async_scheduling=True)[0] == pytest.approx(means_ms(1, async_scheduling=False)[0] - host_ms,
                                                                  rel=1e-9)
    ttft_sync, tpot = means_ms(2, async_scheduling=False)
    ttft_async, _ = means_ms(2, async_scheduling=True)
    assert 0.6 * tpot <= ttft_async - ttft_sync <= 1.4 * tpot


def test_trtllm_batch_waiting_holds_prompts_until_the_timeout_or_enough_tokens():
    # InferenceMAX's TRT-LLM 70B 1k/1k recipes: max_num_tokens 16384, batch_wait_timeout_iters 20,
    # batch_wait_max_tokens_ratio 0.9. One 2,048-token prompt beside a few decodes never reaches
    # 90 % of 16,384 tokens, so it waits the 20 steps (about 20 decode steps more than without).
    plain_ttft, tpot = means_ms(2, engine="trtllm", max_batched_tokens=16384)
    waiting = {"batch_wait_timeout_iters": 20, "batch_wait_max_tokens_ratio": 0.9}
    held_ttft, _ = means_ms(2, engine="trtllm", max_batched_tokens=16384, trtllm=waiting)
    assert 15 * tpot <= held_ttft - plain_ttft <= 21 * tpot
    # A token threshold the prompt alone reaches releases it at once.
    enough = {"batch_wait_timeout_iters": 20, "batch_wait_max_tokens_ratio": 0.05}
    assert means_ms(2, engine="trtllm", max_batched_tokens=16384, trtllm=enough)[0] == pytest.approx(plain_ttft)
    # No decodes running (one user): TRT-LLM does not wait.
    assert means_ms(1, engine="trtllm", max_batched_tokens=16384, trtllm=waiting)[0] == \
        pytest.approx(means_ms(1, engine="trtllm", max_batched_tokens=16384)[0])


def first_wave_ttft_ms(users: int, **stage: object) -> list[float]:
    """TTFT (ms) of the first request of each of ``users`` users started together (no later requests)."""
    deployment = DeploymentSpec.model_validate({"name": "one", "stages": [
        {"name": "llm", "kind": "model", "model": "llama-3-8b", "gpu": "h100-sxm", **stage}]})
    traffic = TrafficSpec.model_validate({"classes": [PROMPT], "arrivals": {
        "kind": "closed_loop", "users": users, "think_time_s": 0.0, "client_overhead_s": 0.0}})
    result = simulate(SimulationJob(deployment, traffic, horizon_s=0.001, seed=5))
    return sorted(1e3 * t for t in result.cdf["ttft_s"])


def test_trtllm_without_chunked_prefill_runs_whole_prompts_beside_the_decodes():
    # TensorRT-LLM's enable_chunked_prefill is off by default: a step takes whole prompts
    # only, so with a 3,000-token budget the first of two 2,048-token prompts runs alone
    # (as fast as a lone prompt) and the second waits; chunked, the first step also
    # carries 952 tokens of the second and the first prompt's token comes later.
    alone = first_wave_ttft_ms(1, engine="trtllm")[0]
    whole = first_wave_ttft_ms(2, engine="trtllm", max_batched_tokens=3000, chunked_prefill=False)
    chunked = first_wave_ttft_ms(2, engine="trtllm", max_batched_tokens=3000, chunked_prefill=True)
    assert whole[0] == pytest.approx(alone, rel=0.02)
    assert whole[-1] >= 1.8 * alone
    assert chunked[0] >= 1.2 * alone
    # Prompts that fit the budget whole run the same chunked or not: decodes go on beside them
    # (vLLM without chunking runs prefill-only steps, and its decodes stall meanwhile).
    assert means_ms(2, engine="trtllm", chunked_prefill=False) == pytest.approx(means_ms(2, engine="trtllm"))
    assert means_ms(2, chunked_prefill=False)[1] > means_ms(2)[1]
