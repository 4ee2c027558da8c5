"""Engines as they schedule: each stage's engine admits, evicts and sizes its KV cache as the real one does."""

import subprocess
import sys
from pathlib import Path

import pytest
from sim_fakes import DECODE_S_PER_SEQ, AffinePerf, run_replica

from planner.run import rejection_line, simulate_scenario
from planner.scenario import parse_scenario
from profiles.catalog import load_catalog
from profiles.perf.memory import EngineMemory, memory_plan
from sim.batcher import BatchSettings

CATALOG = load_catalog()


def scenario_text(stage_fields: str, classes: str = "", horizon_s: float = 30) -> str:
    """A small offline scenario with one llama-3-8b stage on an H100 carrying ``stage_fields``."""
    classes = classes or "- {name: chat, share: 1, text_tokens: 200, output_tokens: 50}"
    return f"""
name: engines
seed: 1
horizon_s: {horizon_s}
traffic:
  arrivals: {{kind: offline, requests: 40}}
  classes:
    {classes}
slo: {{e2e_s: 100}}
deployments:
  - name: d
    stages: [{{name: llm, kind: model, model: llama-3-8b, gpu: h100-sxm{stage_fields}}}]
"""


def simulate_text(text: str, tmp_path: Path):
    """Simulate the scenario ``text``; the one deployment's result."""
    return simulate_scenario(parse_scenario(text, "engines.yaml", tmp_path)).results[0]


# ------------------------------------------------------------ the engine field


def _validate(path: Path) -> subprocess.CompletedProcess:
    """``vlmplan validate PATH`` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "planner", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_unknown_engine_exits_2_naming_the_field_and_the_engines(tmp_path: Path):
    path = tmp_path / "engine.yaml"
    path.write_text(scenario_text(", engine: tgi"))
    done = _validate(path)
    assert done.returncode == 2
    assert "engine.yaml" in done.stderr
    assert "engine" in done.stderr
    assert "trtllm" in done.stderr  # the message lists the engines there are
    assert "Traceback" not in done.stderr


def test_engine_options_must_match_the_engine(tmp_path: Path):
    path = tmp_path / "options.yaml"
    path.write_text(scenario_text(", trtllm: {capacity_scheduler: max_utilization}"))
    done = _validate(path)
    assert done.returncode == 2
    assert "trtllm options apply to engine: trtllm" in done.stderr


# ------------------------------------------------------------ scheduling policies

# 40 requests at once, each growing from 300 to 700 tokens: together far more than a 6,000-token cache.
FILLS_THE_CACHE = [(0.0, 300, 400)] * 40


def test_trtllm_guaranteed_no_evict_never_preempts_where_vllm_does():
    vllm_log, vllm = run_replica(FILLS_THE_CACHE, BatchSettings(engine="vllm"), AffinePerf(kv_capacity_tokens=6_000))
    trt_log, trt = run_replica(FILLS_THE_CACHE, BatchSettings(engine="trtllm"), AffinePerf(kv_capacity_tokens=6_000))
    assert vllm.batcher.preemptions > 0
    assert trt.batcher.preemptions == 0
    assert len(vllm_log.done) == len(trt_log.done) == 40
    # No eviction because it never admits more than the cache holds at completion (8 x 700 tokens).
    assert trt.kv.peak_tokens <= 6_000


def test_trtllm_max_utilization_fills_the_cache_and_pauses_like_vllm():
    _, trt = run_replica(FILLS_THE_CACHE, BatchSettings(engine="trtllm", capacity_scheduler="max_utilization"),
                         AffinePerf(kv_capacity_tokens=6_000))
    assert trt.batcher.preemptions > 0


def test_trtllm_rejects_a_request_whose_kv_at_completion_exceeds_the_cache():
    """It could never be admitted without eviction; waiting for it would stall the queue forever."""
    log, replica = run_replica([(0.0, 500, 800), (0.0, 100, 10)], BatchSettings(engine="trtllm"),
                               AffinePerf(kv_capacity_tokens=1_000))
    assert log.rejected_ids == [0]
    assert set(log.done) == {1}
    assert replica.outstanding == 0


def test_sglang_runs_prefill_and_decode_in_separate_steps():
    """A newcomer's prefill step produces no token for a decoding neighbour under SGLang; vLLM mixes them."""
    requests = [(0.0, 100, 200), (0.5, 4_000, 5)]
    vllm_log, _ = run_replica(requests, BatchSettings(engine="vllm"))
    sglang_log, _ = run_replica(requests, BatchSettings(engine="sglang"))
    mixed_log, _ = run_replica(requests, BatchSettings(engine="sglang", mixed_prefill=True))
    assert sglang_log.done[0] > vllm_log.done[0]
    assert mixed_log.done[0] == pytest.approx(vllm_log.done[0])


def test_sglang_admits_on_a_decayed_estimate_then_retracts_and_all_finish():
    """After ~600 decode steps the new-token ratio is at its floor: a burst is admitted on a low estimate of
    its growth, outgrows the cache and is retracted (recomputed); everything still finishes."""
    requests = [(0.0, 100, 2_000)] + [(7.0, 300, 400)] * 5
    log, replica = run_replica(requests, BatchSettings(engine="sglang"), AffinePerf(kv_capacity_tokens=2_500))
    assert replica.batcher.preemptions >= 1
    assert set(log.done) == set(range(6))
    alone, _ = run_replica(requests[:1], BatchSettings(engine="sglang"), AffinePerf(kv_capacity_tokens=2_500))
    assert log.done[0] > alone.done[0]  # it shared its steps with the burst
    assert replica.kv.used_tokens == 0


# ------------------------------------------------------------ KV budget as each engine computes it


def test_kv_budget_uses_the_driver_byte_count_not_80e9():
    h100 = CATALOG.gpu("h100-sxm")
    marketing = h100.model_copy(update={"memory_mib": None})
    model = CATALOG.model("llama-3-8b")
    real = memory_plan(model, h100, 1, "bf16")
    nominal = memory_plan(model, marketing, 1, "bf16")
    assert h100.memory_bytes == 81_559 * 2**20
    assert real.gpu_bytes == int(0.9 * 81_559 * 2**20)
    extra_tokens = (real.gpu_bytes - nominal.gpu_bytes) // real.kv_bytes_per_token
    assert real.kv_capacity_tokens - nominal.kv_capacity_tokens == pytest.approx(extra_tokens, abs=1)


def test_a_bigger_token_budget_reserves_more_activations_and_leaves_fewer_kv_tokens(tmp_path: Path):
    small = simulate_text(scenario_text(", max_batched_tokens: 2048, max_batch_size: 64"), tmp_path)
    big = simulate_text(scenario_text(", max_batched_tokens: 32768, max_batch_size: 1024"), tmp_path)
    assert big.per_stage["llm"]["kv_capacity_tokens"] < small.per_stage["llm"]["kv_capacity_tokens"]
    model, gpu = CATALOG.model("llama-3-8b"), CATALOG.gpu("h100-sxm")
    plans = [memory_plan(model, gpu, 1, "bf16", engine=EngineMemory(max_batched_tokens=tokens, max_num_seqs=seqs))
             for tokens, seqs in ((2048, 64), (32768, 1024))]
    assert plans[1].activation_reserve_bytes_per_gpu > plans[0].activation_reserve_bytes_per_gpu
    assert [p.kv_capacity_tokens for p in plans] == [small.per_stage["llm"]["kv_capacity_tokens"],
                                                      big.per_stage["llm"]["kv_capacity_tokens"]]


def test_fp8_kv_cache_holds_twice_the_tokens_of_bf16_at_the_same_weights(tmp_path: Path):
    bf16 = simulate_text(scenario_text(", kv_cache_dtype: bf16"), tmp_path).per_stage["llm"]["kv_capacity_tokens"]
    fp8 = simulate_text(scenario_text(", kv_cache_dtype: fp8"), tmp_path).per_stage["llm"]["kv_capacity_tokens"]
    assert fp8 == pytest.approx(2 * bf16, abs=2)


def test_each_engine_takes_its_own_share_of_memory():
    """TRT-LLM takes 90 % of what weights and activations leave; vLLM 90 % of the whole, so less KV."""
    model, gpu = CATALOG.model("llama-3-8b"), CATALOG.gpu("h100-sxm")
    vllm = memory_plan(model, gpu, 1, "bf16", engine=EngineMemory(engine="vllm"))
    trtllm = memory_plan(model, gpu, 1, "bf16", engine=EngineMemory(engine="trtllm"))
    free = gpu.memory_bytes - trtllm.weights_bytes_per_gpu - trtllm.activation_reserve_bytes_per_gpu
    assert trtllm.free_bytes_per_gpu == int(0.9 * free)
    assert trtllm.kv_capacity_tokens > vllm.kv_capacity_tokens


def test_sglang_reserves_memory_for_its_chunked_prefill_and_cuda_graphs_as_it_computes_it():
    """SGLang's default mem_fraction_static (server_args.py): an H100 (81,559 MiB) at TP1 reserves 512 +
    1.5 x 8,192 + 2 x 256 + 128 MiB, so 0.835; a small chunked prefill stops at the 10 GiB floor; a
    smaller CUDA-graph batch and a bigger TP move it. The old TP table gave 0.88 whatever the GPU."""
    from profiles.perf.memory import default_memory_fraction, sglang_memory_fraction
    h100, h200 = CATALOG.gpu("h100-sxm").memory_bytes, CATALOG.gpu("h200").memory_bytes
    assert sglang_memory_fraction(h100, 1) == round((81559 - 13440) / 81559, 3) == 0.835
    assert sglang_memory_fraction(h200, 1) == round((143771 - 13440) / 143771, 3)
    assert sglang_memory_fraction(h100, 1, cuda_graph_max_bs=16) == round((81559 - 12960) / 81559, 3)
    assert sglang_memory_fraction(h100, 1, chunked_prefill_tokens=2048) == round((81559 - 10240) / 81559, 3)
    assert sglang_memory_fraction(h100, 8) < sglang_memory_fraction(h100, 1)
    assert default_memory_fraction("sglang", 1, h100, 8192) == 0.835
    assert default_memory_fraction("vllm", 1, h100) == default_memory_fraction("trtllm", 8, h200) == 0.9


# ------------------------------------------------------------ max_seq_len


def test_prompts_over_max_seq_len_are_rejected_per_class(tmp_path: Path):
    classes = """- {name: short, share: 0.5, text_tokens: 200, output_tokens: 50}
    - {name: long, share: 0.5, text_tokens: 5000, output_tokens: 50}"""
    result = simulate_text(scenario_text(", max_seq_len: 4096", classes), tmp_path)
    per_class = result.per_class
    assert per_class["long"]["rejected"] == per_class["long"]["requests"] > 0
    assert per_class["short"]["rejected"] == 0
    assert per_class["short"]["completed"] == per_class["short"]["requests"]
    long = per_class["long"]["requests"]
    assert result.per_stage["llm"]["rejected_over_max_seq_len"] == long
    assert rejection_line(result) == (f"REJECTED d: {long} requests (long {long}); {long} with prompts over "
                                      f"a stage's max_seq_len (llm {long})")


def test_outputs_stop_at_max_seq_len(tmp_path: Path):
    """200-token prompts with 500-token answers under max_seq_len 300 generate 100 tokens: a shorter run."""
    classes = "- {name: chat, share: 1, text_tokens: 200, output_tokens: 500}"
    free = simulate_text(scenario_text("", classes), tmp_path)
    capped = simulate_text(scenario_text(", max_seq_len: 300", classes), tmp_path)
    assert capped.metrics["completed"] == free.metrics["completed"] == 40
    assert capped.metrics["e2e_p50_s"] < 0.4 * free.metrics["e2e_p50_s"]


# ------------------------------------------------------------ CUDA graphs


def test_vllm_pads_a_decode_batch_to_its_next_cuda_graph_size():
    """vLLM captures decode graphs at 1, 2, 4, 8, 16, ...: 9 sequences decode at the cost of 16; 8 at 8's.
    TensorRT-LLM does not pad by default, so the same batches cost their own size there."""
    from sim.policies import vllm_cudagraph_sizes

    assert vllm_cudagraph_sizes(256)[:6] == (1, 2, 4, 8, 16, 24)
    assert vllm_cudagraph_sizes(256)[-1] == 512
    for batch, padded in ((8, 8), (9, 16)):
        requests = [(0.0, 10, 100)] * batch
        vllm_log, _ = run_replica(requests, BatchSettings(engine="vllm"))
        trt_log, _ = run_replica(requests, BatchSettings(engine="trtllm"))
        decode_steps = 99  # the first token comes with the prefill step
        extra_s = decode_steps * (padded - batch) * DECODE_S_PER_SEQ
        assert vllm_log.done[0] - trt_log.done[0] == pytest.approx(extra_s, abs=1e-9)
