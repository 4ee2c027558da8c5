"""The simulator against AIConfigurator's measured serving runs (benchmarks/validate_silicon.py).

A fixed stratified sample of dense, aggregated rows is replayed as the
benchmark clients ran them; the median and 90th-percentile absolute errors of
mean TTFT and mean TPOT must stay within the bounds the full run supports
(README, "Validation"), so a regression in the engine or the performance model
fails here. The bounds are what the model reaches today, not the issue's goal.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "validate_silicon.py"
SAMPLE_ROWS = 30
# statistic -> upper bound, percent (measured kernels, each row run as its benchmark client ran
# it; FP8 checkpoints read by their scaling; per-sequence host time; SGLang's settings by the date of
# the run). This sample gives 17.5 / 89.4 / 11.7 / 31.0 (the full dense run: README; the host time moves
# few of its rows, so test_per_sequence_host_time_sets_tpot_where_the_batch_is_large pins it; before
# SGLang's settings followed the run's date the TTFT p90 was 151). The bounds leave 10-25 % of room. Replayed the old way (fixed lengths, 8,192-token budgets, no async scheduling
# or batch waiting) the sample gave 63.7 / 286 and fails both TTFT bounds; a step model 20 % off
# moves TPOT's median past its bound.
BOUNDS = {"ttft_median": 22.0, "ttft_p90": 110.0, "tpot_median": 13.5, "tpot_p90": 38.0}


@pytest.fixture(scope="module")
def silicon():
    """The benchmark module."""
    spec = importlib.util.spec_from_file_location("validate_silicon", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its replays pickle by module name, as the process pool sends them
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dense_sample(silicon):
    """The deterministic sample of dense aggregated rows and its replayed outcomes."""
    replays, _ = silicon.load_rows()
    dense = [r for r in replays if r.dense and not r.disaggregated]
    sample = silicon.stratified_sample(dense, SAMPLE_ROWS)
    return sample, silicon.simulate_rows(sample, workers=1)


def test_rows_vlmplan_cannot_express_are_counted_by_reason(silicon):
    replays, skipped = silicon.load_rows()
    assert len(replays) + sum(skipped.values()) == 5221
    assert skipped["model not in the catalog"] > 0  # DeepSeek, Kimi, MiniMax, GLM, Qwen3.5
    assert any(reason.startswith("precision nvfp4") for reason in skipped)
    assert len(replays) > 1000
    assert {r.model for r in replays} == {"llama-3-8b", "llama-3-70b", "qwen3-32b", "qwen3-235b-a22b", "gpt-oss-120b"}


def test_a_row_is_replayed_with_its_shape(silicon):
    row = {"id": "x", "silicon_data_source": "db; silicon_concurrency=16; measured=2026", "backend": "vllm",
           "model_path": "meta-llama/Llama-3.1-70B", "system": "h200_sxm", "precision": "fp8", "mode": "agg",
           "isl": 1024, "osl": 1024, "gemm_quant_mode": "fp8", "batch_size": 16.0, "tp_size": 4.0, "pp_size": 1.0,
           "attention_dp_size": 1.0, "silicon_ttft_ms": 100.0, "silicon_tpot_ms": 10.0}
    replay = silicon.replay_of(row)
    assert (replay.model, replay.gpu, replay.tensor_parallel, replay.precision, replay.users) == \
           ("llama-3-70b", "h200", 4, "fp8", 16)
    assert silicon.replay_of({**row, "pp_size": 2.0}) == "pipeline parallelism"
    assert silicon.replay_of({**row, "attention_dp_size": 4.0}) == "attention data parallelism"
    assert silicon.replay_of({**row, "system": "b300_sxm"}) == "GPU not in the catalog"
    assert silicon.replay_of({**row, "system": "b200_sxm", "gemm_quant_mode": "nvfp4"}).startswith("precision nvfp4")


def test_dense_sample_errors_stay_within_the_full_runs_bounds(silicon, dense_sample):
    sample, outcomes = dense_sample
    assert len(outcomes) == len(sample) >= SAMPLE_ROWS - 5
    assert not [o.error for o in outcomes if o.error]
    aggregate = silicon.error_row("dense sample", outcomes)
    for statistic, bound in BOUNDS.items():
        value = getattr(aggregate, statistic)
        assert math.isfinite(value)
        assert value <= bound, f"{statistic} {value:.1f} % > {bound} %"


def test_per_sequence_host_time_sets_tpot_where_the_batch_is_large(silicon):
    """vLLM 0.12 (no async scheduling) at 128 users, one of the rows the host time was fitted on: TPOT
    19.3 ms measured, 13.9 without it. SGLang on H200 at 512 users (held out: SGLang's figure is vLLM's):
    TPOT barely falls with TP (TP4 / TP8 24.9 / 23.0 ms) where the GPU step halves (13.9 / 11.1 without it)."""
    replays, _ = silicon.load_rows()
    by_id = {r.row_id: r for r in replays}
    vllm = by_id["qwen_qwen3_32b_qwen_qwen3_32b_h100_sxm_vllm_agg_1024x1024_c128_tp8_epnone_45"]
    sglang = [by_id["meta_llama_llama_3_1_8b_instruct_meta_llama_llama_3_1_8b_instruct_h200_sxm_sglang_agg_1000x1000_"
                    f"c512_tp{tp}_epnone_{index}"] for tp, index in ((4, 11), (8, 12))]
    for replay in (vllm, *sglang):
        outcome = silicon.simulate_row(replay)
        assert outcome.tpot_ms == pytest.approx(replay.tpot_ms, rel=0.15), replay.row_id
    without = silicon.simulate_row(vllm, host_per_sequence=False)
    assert without.tpot_ms < 0.8 * vllm.tpot_ms


def test_each_row_is_run_as_its_benchmark_client_and_deployment_ran_it(silicon):
    aic = {"id": "x", "silicon_data_source": "source_file=/x/aic-auto-gap-analysis/data/h100_sxm/vllm/0.12.0/q.csv; "
           "silicon_concurrency=32", "backend": "vllm", "backend_version": "0.12.0", "model_path": "Qwen/Qwen3-32B",
           "system": "h100_sxm", "precision": "bf16", "mode": "agg", "isl": 1024, "osl": 512, "gemm_quant_mode": "bf16",
           "batch_size": 32.0, "tp_size": 2.0, "pp_size": 1.0, "attention_dp_size": 1.0,
           "silicon_ttft_ms": 242.0, "silicon_tpot_ms": 21.0}
    replay = silicon.replay_of(aic)
    assert replay.harness == silicon.AIC_AIPERF  # fixed lengths, 10 requests per user
    assert (replay.harness.length_ratio, replay.harness.requests_per_user) == (1.0, 10)
    assert silicon.token_budget(replay) == 32 + 1024 + 1500  # AIConfigurator's generated agg budget
    assert not silicon.async_scheduling(replay)  # vLLM 0.12: async scheduling was opt-in
    assert silicon.async_scheduling(silicon.replay_of({**aic, "backend_version": "0.14.1"}))
    inferencemax = {**aic, "silicon_data_source": "source_file=2026-04-06.csv; model=Llama-3.1-70B; "
                    "silicon_concurrency=32; measured=2025-10-29", "backend_version": float("nan"),
                    "model_path": "meta-llama/Llama-3.1-70B", "system": "h200_sxm", "precision": "fp8",
                    "gemm_quant_mode": "fp8", "isl": 1024, "osl": 1024, "tp_size": 1.0, "backend": "trtllm"}
    replay = silicon.replay_of(inferencemax)
    assert replay.harness == silicon.INFERENCEMAX  # lengths uniform on [0.8 len, len], 10 per user
    assert silicon.token_budget(replay) == 16384
    job = silicon.job_of(replay, cycle_s=10.0)
    stage = job.deployment.stages[0]
    assert (stage.trtllm.batch_wait_timeout_iters, stage.trtllm.batch_wait_max_tokens_ratio) == (20, 0.9)
    assert stage.async_scheduling
    sizes = job.traffic.classes[0].text_tokens
    assert (sizes.low, sizes.high) == (0.8 * 1024, 1024)
    assert silicon.job_of(silicon.replay_of({**inferencemax, "tp_size": 8.0}), 10.0).deployment.stages[0].trtllm is None


def test_sglang_rows_run_the_generator_settings_of_their_time(silicon):
    # AIConfigurator's generator passed max-prefill-tokens (isl + 1,500) and enable-mixed-chunk to SGLang
    # from 2026-01-19; the 0.5.1.post1 runs predate it and ran SGLang's defaults (8,192-token chunks on an
    # H100 and an H200, prefill steps apart from decodes), the 0.5.6.post2 runs follow it.
    row = {"id": "x", "silicon_data_source": "source_file=/x/aic-auto-gap-analysis/data/h100_sxm/sglang/"
           "0.5.1.post1/q.csv; silicon_concurrency=16", "backend": "sglang", "backend_version": "0.5.1.post1",
           "model_path": "Qwen/Qwen3-32B", "system": "h100_sxm", "precision": "bf16", "mode": "agg", "isl": 4096,
           "osl": 512, "gemm_quant_mode": "bf16", "batch_size": 16.0, "tp_size": 2.0, "pp_size": 1.0,
           "attention_dp_size": 1.0, "silicon_ttft_ms": 900.0, "silicon_tpot_ms": 20.0}
    before = silicon.replay_of(row)
    assert not silicon.sglang_generated(before)
    assert silicon.token_budget(before) == 8192
    assert silicon.job_of(before, 10.0).deployment.stages[0].sglang is None  # SGLang's default: not mixed
    after = silicon.replay_of({**row, "backend_version": "0.5.6.post2", "system": "h200_sxm"})
    assert silicon.sglang_generated(after)
    assert silicon.token_budget(after) == 4096 + 1500
    assert silicon.token_budget(silicon.replay_of({**row, "backend_version": "0.5.6.post2", "isl": 8000})) == 8192
    assert silicon.job_of(after, 10.0).deployment.stages[0].sglang.enable_mixed_chunk


def test_sglang_without_mixed_chunks_keeps_a_fixed_length_closed_loop_in_lock_step(silicon):
    """Why the 0.5.6.post2 runs must have mixed prefill chunks into decode steps: without, every user of a
    fixed-length closed loop is prefilled before any decodes, so all finish in one step and return together,
    and each prompt waits for about half the others' prefills (4,000 in, 100 out, 40 users: 1,227 ms mean TTFT,
    where the run measured 398 ms; mixed: 540 ms). Mixed steps let the users drift apart after the first wave."""
    import dataclasses

    replays, _ = silicon.load_rows()
    replay = next(r for r in replays if r.engine == "sglang" and r.engine_version == "0.5.6.post2"
                  and (r.isl, r.osl, r.users, r.tensor_parallel) == (4000, 100, 40, 1))
    mixed = silicon.simulate_row(replay)
    apart = silicon.simulate_row(dataclasses.replace(replay, engine_version="0.5.1.post1"))
    assert apart.ttft_ms > 2 * replay.ttft_ms
    assert abs(mixed.ttft_ms / replay.ttft_ms - 1) < 0.5


def test_a_replay_sent_to_a_worker_process_keeps_its_clients_settings(silicon):
    # The replay runs in a process pool: its settings must survive pickling (an identity
    # test on the harness once sent InferenceMAX rows to the workers as AIConfigurator's).
    import pickle
    replays, _ = silicon.load_rows()
    inferencemax = next(r for r in replays if r.harness == silicon.INFERENCEMAX and r.engine == "vllm")
    copied = pickle.loads(pickle.dumps(inferencemax))
    assert silicon.token_budget(copied) == silicon.token_budget(inferencemax) == 8192
    assert silicon.job_of(copied, 10.0).traffic == silicon.job_of(inferencemax, 10.0).traffic


def test_rows_csv_holds_each_rows_measured_and_predicted_means(silicon, tmp_path):
    import pandas as pd
    replays, _ = silicon.load_rows()
    replay = replays[0]
    path = tmp_path / "rows.csv"
    silicon.write_rows([silicon.Outcome(replay, ttft_ms=123.0, tpot_ms=9.5, requests=10),
                        silicon.Outcome(replay, error="does not fit")], path)
    rows = pd.read_csv(path)
    assert list(rows.row_id) == [replay.row_id] * 2
    assert (rows.ttft_measured_ms[0], rows.ttft_predicted_ms[0], rows.tpot_predicted_ms[0]) == \
           (replay.ttft_ms, 123.0, 9.5)
    assert rows.error[1] == "does not fit"
    assert math.isnan(rows.ttft_predicted_ms[1])


def test_lone_prefill_agrees_with_aiconfigurators_context_estimate(silicon):
    # The README's "kernels are not the gap": one prompt alone, vlmplan against aiconfigurator's
    # static_ctx on the same tables, for a few low-concurrency dense configurations.
    replays, _ = silicon.load_rows()
    chosen = {(r.model, r.tensor_parallel, r.isl): r for r in replays
              if r.users == 8 and r.isl in (1024, 4096) and r.tensor_parallel in (1, 4)
              and r.model in ("llama-3-8b", "qwen3-32b") and r.engine == "trtllm"}
    table = silicon.lone_prefill_table(list(chosen.values()))
    assert len(table) >= 4
    ratio = table.vlmplan_lone_prefill_ms / table.aiconfigurator_lone_prefill_ms
    assert ratio.between(0.85, 1.15).all(), table
    # ... while the measured TTFT at 8 users is several lone prefills (queueing in the run)
    assert (table.measured_ttft_ms / table.vlmplan_lone_prefill_ms).median() > 2.0


def test_the_fp8_rows_could_not_have_run_as_the_closed_loop_they_state(silicon):
    # At their measured means the prompts alone would take more than the replica's whole time;
    # the InferenceMAX Llama-70B rows at a few users, whose settings are published, come nowhere near.
    replays, _ = silicon.load_rows()
    fp8 = [r for r in replays if r.model_path == "nvidia/Llama-3.1-8B-Instruct-FP8"]
    published = [r for r in replays if r.model == "llama-3-70b" and r.users <= 8 and r.tensor_parallel == 8]
    assert len(fp8) == 21
    assert published
    fp8_loads = sorted(silicon.implied_prompt_load(r) for r in fp8)
    assert fp8_loads[len(fp8_loads) // 2] > 1.0
    assert max(silicon.implied_prompt_load(r) for r in published) < 0.5


def test_a_diagnostic_replay_holds_fewer_requests_than_users_only_when_asked(silicon):
    replays, _ = silicon.load_rows()
    replay = next(r for r in replays if r.harness == silicon.AIC_AIPERF and r.engine == "trtllm")
    assert silicon.job_of(replay, 10.0).deployment.stages[0].max_batch_size == replay.max_batch_size
    assert silicon.job_of(replay, 10.0, slots_short=1).deployment.stages[0].max_batch_size == replay.max_batch_size - 1


def test_memory_shares_are_the_generated_configs(silicon):
    # AIConfigurator's generator sets cuda_graph_batch_sizes 1..max_batch_size and leaves SGLang's
    # chunked prefill size at its default, so the static pool is SGLang's own fraction for those.
    from profiles.perf.memory import sglang_memory_fraction
    replays, _ = silicon.load_rows()
    replay = next(r for r in replays if r.engine == "sglang" and r.gpu == "h100-sxm" and r.tensor_parallel == 1
                  and silicon.sglang_generated(r))
    stage = silicon.job_of(replay, 10.0).deployment.stages[0]
    h100 = silicon._catalog().gpu("h100-sxm").memory_bytes
    assert stage.gpu_memory_utilization == sglang_memory_fraction(h100, 1, cuda_graph_max_bs=replay.max_batch_size)
    assert 0.83 < stage.gpu_memory_utilization < 0.85
    earlier = next(r for r in replays if r.engine == "sglang" and r.engine_version == "0.5.1.post1")
    assert silicon.job_of(earlier, 10.0).deployment.stages[0].gpu_memory_utilization \
        == sglang_memory_fraction(h100, earlier.tensor_parallel)  # SGLang's own CUDA-graph batch
    inferencemax = next(r for r in replays if r.engine == "trtllm" and r.harness == silicon.INFERENCEMAX)
    assert silicon.job_of(inferencemax, 10.0).deployment.stages[0].gpu_memory_utilization is None
    aic = next(r for r in replays if r.engine == "trtllm" and r.engine_version == "1.0.0rc3")
    assert silicon.job_of(aic, 10.0).deployment.stages[0].gpu_memory_utilization == 0.80  # its template's default
