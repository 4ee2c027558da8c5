"""Continuous batching, decode jumps, chunked prefill, KV admission and preemption on one replica."""

import numpy as np
import pytest
from sim_fakes import (
    DECODE_S_PER_SEQ,
    KV_S_PER_TOKEN,
    PREFILL_S_PER_TOKEN,
    STEP_S,
    AffinePerf,
    run_replica,
)

from sim.batcher import BatchSettings


def step_s(prefill: int = 0, decodes: int = 0, kv: float = 0.0) -> float:
    """The fake model's step time."""
    return STEP_S + PREFILL_S_PER_TOKEN * prefill + DECODE_S_PER_SEQ * decodes + KV_S_PER_TOKEN * kv


def test_lone_request_prefills_then_decodes_in_one_jump():
    log, replica = run_replica([(0.0, 100, 10)])
    ttft = step_s(prefill=100)
    # 9 more tokens from one sequence whose KV read grows from 100 (the prompt) to 108 tokens.
    decode = sum(step_s(decodes=1, kv=100 + i) for i in range(9))
    assert log.first[0] == pytest.approx(ttft)
    assert log.done[0] == pytest.approx(ttft + decode)
    assert replica.steps == 10  # 1 prefill step + 9 decode steps...
    assert replica.busy_s == pytest.approx(ttft + decode)


def test_single_output_token_finishes_at_prefill():
    log, _ = run_replica([(0.0, 500, 1)])
    assert log.first[0] == log.done[0] == pytest.approx(step_s(prefill=500))


def random_workload(seed: int, n: int, rate_rps: float) -> list[tuple[float, int, int]]:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate_rps, n))
    prompts = rng.integers(10, 3000, n)
    outputs = rng.integers(1, 300, n)
    return [(float(a), int(p), int(o)) for a, p, o in zip(arrivals, prompts, outputs, strict=True)]


@pytest.mark.parametrize(("rate_rps", "capacity"), [(2.0, 1_000_000), (20.0, 1_000_000), (20.0, 60_000)])
def test_decode_jumps_give_the_same_times_as_stepping_every_token(rate_rps, capacity):
    """Jumps over identical decode steps (cut short by arrivals) are exact, with or without preemption."""
    work = random_workload(7, 300, rate_rps)
    perf = AffinePerf(kv_capacity_tokens=capacity)
    jumped, fast = run_replica(work, BatchSettings(max_batch_size=32, max_batched_tokens=2048), perf)
    stepped, slow = run_replica(work, BatchSettings(max_batch_size=32, max_batched_tokens=2048,
                                                    decode_jumps=False), perf)
    assert len(jumped.done) == len(work)
    assert fast.steps == slow.steps
    assert fast.batcher.preemptions == slow.batcher.preemptions
    for i in range(len(work)):
        assert jumped.first[i] == pytest.approx(stepped.first[i], rel=1e-9, abs=1e-9)
        assert jumped.done[i] == pytest.approx(stepped.done[i], rel=1e-9, abs=1e-9)


def test_long_prompt_is_prefilled_in_chunks_of_the_token_budget():
    """A 12,000-token video prompt with an 8,192-token budget takes two steps to its first token."""
    log, replica = run_replica([(0.0, 12_000, 2)], BatchSettings(max_batched_tokens=8192))
    first = step_s(prefill=8192) + step_s(prefill=12_000 - 8192)
    assert log.first[0] == pytest.approx(first)
    assert log.done[0] == pytest.approx(first + step_s(decodes=1, kv=12_000))


def test_long_prompt_stalls_decoding_neighbours():
    """Decoding requests slow down while a long prompt's chunks share their steps."""
    short = [(0.0, 50, 200), (0.0, 50, 200)]
    alone, _ = run_replica(short)
    stalled, _ = run_replica([*short, (0.5, 12_000, 2)], BatchSettings(max_batched_tokens=8192))
    assert stalled.done[0] - alone.done[0] > step_s(prefill=8000) + step_s(prefill=4000) - 2 * step_s(decodes=2)


def test_without_chunked_prefill_the_whole_prompt_runs_alone():
    log, _ = run_replica([(0.0, 12_000, 2)], BatchSettings(max_batched_tokens=8192, chunked_prefill=False))
    assert log.first[0] == pytest.approx(step_s(prefill=12_000))


def test_batch_never_exceeds_max_batch_size():
    work = [(0.0, 10, 50)] * 10
    log, replica = run_replica(work, BatchSettings(max_batch_size=4))
    assert len(log.done) == 10
    assert replica.batch_seqs / replica.steps <= 4
    # Three waves: 4, 4, 2 requests; the last wave starts when the second finishes.
    finish = sorted(log.done.values())
    assert finish[3] < finish[4]
    assert finish[7] < finish[8]


def test_full_kv_cache_preempts_and_recomputes():
    """Two requests whose outputs outgrow a small cache: one is preempted, both finish."""
    perf = AffinePerf(kv_capacity_tokens=1_000)
    log, replica = run_replica([(0.0, 300, 400), (0.0, 300, 400)], perf=perf)
    assert replica.batcher.preemptions >= 1
    assert set(log.done) == {0, 1}
    assert replica.kv.peak_tokens <= 1_000
    assert replica.kv.used_tokens == 0


def test_prompt_larger_than_the_cache_is_rejected():
    perf = AffinePerf(kv_capacity_tokens=1_000)
    log, replica = run_replica([(0.0, 5_000, 10), (0.0, 100, 10)], perf=perf)
    assert log.rejected_ids == [0]
    assert set(log.done) == {1}
    assert replica.outstanding == 0


def test_admission_waits_for_kv_room():
    """A prompt that does not fit beside a running one waits for its completion."""
    perf = AffinePerf(kv_capacity_tokens=1_000)
    log, replica = run_replica([(0.0, 600, 20), (0.0, 600, 20)], perf=perf)
    assert log.first[1] >= log.done[0]
    assert replica.batcher.preemptions == 0


def test_preprocessing_workers_queue_fifo():
    """Two CPU workers, 1 s of preprocessing each: the third request starts a second later."""
    perf = AffinePerf(preprocess_s=1.0)
    log, _ = run_replica([(0.0, 10, 1)] * 3, perf=perf)
    assert log.first[0] == log.first[1] == pytest.approx(1.0 + step_s(prefill=20))
    assert log.first[2] == pytest.approx(2.0 + step_s(prefill=10))


def test_a_prefill_only_step_generates_no_token_for_decoding_neighbours():
    """Without chunked prefill a newcomer's prompt runs alone: decoders wait, and get no token for it."""
    log, replica = run_replica([(0.0, 100, 10), (0.001, 200, 1)], BatchSettings(chunked_prefill=False))
    first_prefill = step_s(prefill=100)
    # The newcomer arrives during the first prefill; its prompt runs alone next, then all 9 decodes follow.
    decode = sum(step_s(decodes=1, kv=100 + i) for i in range(9))
    assert log.done[1] == pytest.approx(first_prefill + step_s(prefill=200))
    assert log.done[0] == pytest.approx(first_prefill + step_s(prefill=200) + decode)
    assert replica.batcher.kv.used_tokens == 0


def test_per_sequence_host_time_adds_to_every_step_without_async_scheduling():
    """Two requests decode together: each of the 10 steps (1 prefill + 9 decode) carries 2 x the host time."""
    host_s = 0.001
    work = [(0.0, 100, 10), (0.0, 100, 10)]
    plain, _ = run_replica(work, BatchSettings())
    hosted, _ = run_replica(work, BatchSettings(host_s_per_sequence=host_s))
    for i in range(2):
        assert hosted.first[i] == pytest.approx(plain.first[i] + 2 * host_s)
        assert hosted.done[i] == pytest.approx(plain.done[i] + 10 * 2 * host_s)


def test_per_sequence_host_time_runs_beside_the_gpu_step_with_async_scheduling():
    """Async scheduling hides host work shorter than the GPU step; longer host work sets the step."""
    work = [(0.0, 100, 10), (0.0, 100, 10)]
    plain, _ = run_replica(work, BatchSettings(async_scheduling=True))
    hidden, _ = run_replica(work, BatchSettings(async_scheduling=True, host_s_per_sequence=0.001))
    assert hidden.done == plain.done  # 2 ms of host work beside steps of >= 10 ms
    host_bound, _ = run_replica(work, BatchSettings(async_scheduling=True, host_s_per_sequence=0.02))
    # Every step (prefill of 200 tokens: 30 ms; decodes: ~11 ms) lasts the 2 x 20 ms of host work.
    assert host_bound.first[0] == pytest.approx(0.04)
    assert host_bound.done[0] == pytest.approx(10 * 0.04)


def test_engine_host_time_per_sequence_reaches_the_batcher_of_a_stage():
    """A stage's batcher gets its engine's per-sequence host time (vLLM's measured figure; none for TRT-LLM)."""
    from profiles.catalog import load_catalog
    from sim.deployment import ModelStage
    from sim.policies import ENGINE_HOST_S_PER_SEQUENCE
    from sim.stages.model import batch_settings

    model = load_catalog().model("llama-3-8b")
    for engine in ("vllm", "sglang", "trtllm"):
        stage = ModelStage.model_validate({"name": "llm", "kind": "model", "model": "llama-3-8b", "gpu": "h100-sxm",
                                           "engine": engine})
        assert batch_settings(stage, model).host_s_per_sequence == ENGINE_HOST_S_PER_SEQUENCE[engine]
    assert ENGINE_HOST_S_PER_SEQUENCE["vllm"] == pytest.approx(46e-6)
    assert ENGINE_HOST_S_PER_SEQUENCE["trtllm"] == 0.0
