"""Validate the simulator on AIConfigurator's 5,221 measured serving runs (silicon_sample.csv).

Each row of ``aiconfigurator_core/systems/silicon_sample.csv`` (aiconfigurator-core
0.12.0, FACTS.md section 6a) is one benchmark run on real GPUs: a model on
``tp_size`` GPUs of one system, an engine and version, a precision, fixed input
and output lengths (``isl``/``osl``), a fixed concurrency (``silicon_concurrency``
in ``silicon_data_source``; AIConfigurator's own agg model reads ``batch_size`` as
the per-worker batch and multiplies by attention-DP ranks to get the concurrency),
aggregated or prefill/decode-disaggregated, and the measured TTFT and TPOT in ms.

Every row vlmplan can express is replayed as its benchmark client and its
deployment ran it (``Harness``): the csv's rows come from two sources whose
scripts are public. SemiAnalysis InferenceMAX rows (Llama-3.3-70B FP8 and
gpt-oss-120b) ran ``benchmark_serving.py --random-range-ratio 0.8 --num-prompts
10*CONC --max-concurrency CONC --ignore-eos``: prompt and output lengths uniform
on [0.8 x len, len], ten requests per user; their servers set the token budget,
TensorRT-LLM's batch waiting (70B, 1k/1k, TP < 8) and vLLM's async scheduling.
AIConfigurator's own rows ran aiperf with fixed lengths, ``ignore_eos`` and a
warm-up that finishes before the timed requests, on engines configured by its
generator (token budget max_batch_size + isl + 1,500). Both clients start all
``concurrency`` users at once and count every timed request; the replay counts
the first ``requests_per_user x concurrency`` sent. The mean TTFT and mean TPOT
((e2e - TTFT) / (output - 1) per request, as the clients compute it) are
compared with the measured values. Steps are timed by ``perf_model`` as the
simulator does (measured kernel tables of the row's engine where
aiconfigurator-core has them, else the roofline). For contrast, the same replay
with roofline steps, and NVIDIA's own estimator on the same rows:
aiconfigurator-core's ``run_agg`` (its agg-mode TTFT and TPOT from the same
kernel tables, with its corpus-calibrated corrections), so a miss both tools
share points at the tables or the runs, not at vlmplan.

Rows that cannot be expressed are counted by reason: a model not in the
catalog, a GPU not in the catalog, FP4 weights on Blackwell (vlmplan has no FP4
path), pipeline parallelism, attention data parallelism or several workers
behind one concurrency, and disaggregated runs whose prefill and decode
workers differ in tensor parallelism.

Run: ``python benchmarks/validate_silicon.py`` (all rows, 2 processes);
``--sample N`` replays a deterministic stratified sample of N rows;
``--markdown`` prints the tables as Markdown.
"""

import argparse
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

import profiles.perf
from profiles.catalog import Catalog, load_catalog
from profiles.errors import VlmplanError
from profiles.models import Precision
from profiles.perf import RooflinePerfModel, efficiency, perf_model
from profiles.perf.memory import sglang_chunked_prefill_size, sglang_memory_fraction
from sim.api import SimulationJob, prepare
from sim.deployment import DeploymentSpec
from sim.policies import ENGINE_HOST_S_PER_SEQUENCE
from sim.traffic import TrafficSpec

# csv model_path -> catalog model id. Llama-3.1 has Llama-3's dimensions (the
# model_configs files give the same layers, widths, heads and vocabulary).
MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3-8b",
    "nvidia/Llama-3.1-8B-Instruct-FP8": "llama-3-8b",
    "meta-llama/Llama-3.1-70B": "llama-3-70b",
    "Qwen/Qwen3-32B": "qwen3-32b",
    "nvidia/Qwen3-32B-NVFP4": "qwen3-32b",
    "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b",
    "openai/gpt-oss-120b": "gpt-oss-120b",
}
MOE_MODELS = frozenset({"qwen3-235b-a22b", "gpt-oss-120b"})
# csv model_path -> the config aiconfigurator-core ships in model_configs/ (read offline).
AIC_MODEL_CONFIGS = {
    "meta-llama/Llama-3.1-8B-Instruct": "meta-llama/Meta-Llama-3.1-8B",
    "nvidia/Llama-3.1-8B-Instruct-FP8": "meta-llama/Meta-Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B": "meta-llama/Meta-Llama-3.1-70B",
    "Qwen/Qwen3-32B": "Qwen/Qwen3-32B",
    "Qwen/Qwen3-235B-A22B-FP8": "Qwen/Qwen3-235B-A22B-FP8",
    "openai/gpt-oss-120b": "openai/gpt-oss-120b",
}
GPUS = {"h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200"}
HOPPER = frozenset({"h100_sxm", "h200_sxm"})
CONCURRENCY_BUCKETS = ((1, "1"), (8, "2-8"), (32, "9-32"), (128, "33-128"), (512, "129-512"), (math.inf, ">512"))
SEED = 1


@dataclass(frozen=True)
class Harness:
    """How a row's benchmark client ran it: the length spread and the request count.

    Both clients below start every user at once and count every request of the
    timed run; their warm-up requests finish before it starts (bench_serving
    gathers them; AIPerf waits for the warm-up phase's credits to return), so a
    warm-up does not change the start, and none is simulated.
    """

    name: str
    length_ratio: float  # prompt and output lengths uniform on [ratio x isl, isl] (1: fixed lengths)
    requests_per_user: int  # the run sends requests_per_user x concurrency requests, all counted


# SemiAnalysis InferenceMAX (now InferenceX; the csv's "source_file=2026-03-25.csv" and
# "2026-04-06.csv" rows: Llama-3.3-70B-Instruct-FP8, gpt-oss-120b; the same model, GPU,
# engine, image, ISL/OSL and concurrency grid). Its scripts (SemiAnalysisAI/InferenceX
# benchmarks/70b_*.sh before 2582bce, benchmarks/benchmark_lib.sh) run kimbochen/bench_serving
# `benchmark_serving.py --dataset-name random --random-range-ratio 0.8 --num-prompts CONC*10
# --max-concurrency CONC --request-rate inf --ignore-eos`, whose sampler draws each prompt and
# output length uniform on [0.8 x len, len] (`lower = int(seq_len * range_ratio); upper =
# seq_len`, as ported in InferenceX d053ae24e from kimbochen/bench_serving@2ddd364).
INFERENCEMAX_TRTLLM_MAX_NUM_TOKENS = {"llama-3-70b": 16384, "gpt-oss-120b": 20000}
INFERENCEMAX = Harness("InferenceMAX bench_serving", length_ratio=0.8, requests_per_user=10)
# AIConfigurator's own runs ("aic-auto-gap-analysis" rows). Its eval pipeline of the time
# (src/aiconfigurator/eval/benchmarks/genai_perf_runner.py, August 2025 to March 2026) ran
# `aiperf profile` (earlier genai-perf) `--synthetic-input-tokens-stddev 0 --output-tokens-stddev 0
# --extra-inputs min_tokens:OSL,max_tokens:OSL,ignore_eos:true --concurrency C --request-count C*10
# --warmup-request-count C*2`: fixed lengths, ten requests per user.
AIC_AIPERF = Harness("AIConfigurator aiperf", length_ratio=1.0, requests_per_user=10)
# The KV share of free memory AIConfigurator's generated TensorRT-LLM config gave, by version, where it
# is not TensorRT-LLM's own 0.9: generator/config/backend_templates/trtllm/extra_engine_args.1.0.0rc3
# .yaml.j2 writes `free_gpu_memory_fraction: {{ ... | default(0.80) }}` and its rule sets none.
AIC_TRTLLM_FREE_GPU_MEMORY_FRACTION = {"1.0.0rc3": 0.80}
# AIConfigurator's generator has passed an SGLang agg engine `--max-prefill-tokens` (isl + 1,500) and
# `--enable-mixed-chunk` since 2026-01-19 (ai-dynamo/aiconfigurator PR #257, "add sglang enable-mix-chunk
# and max-prefill-tokens for agg"; #258 fixed the flag's spelling the same day). Before, it had no SGLang
# generator (August 2025: "SGLang backend generator not implemented yet"), then never mixed (December 2025;
# only its newest template passed max-prefill-tokens), so SGLang ran its defaults: prefill steps apart from
# decode steps, chunks of its GPU's chunked_prefill_size. The csv dates none of these runs; their SGLang
# version places them: 0.5.1.post1 (SGLang of AIConfigurator's first releases) before the rule,
# 0.5.6.post2 (AIConfigurator's SGLang from 2026-01-13) and 0.5.8 after it.
AIC_SGLANG_GENERATED_FROM = (0, 5, 6)


def token_budget(replay: "Replay") -> int:
    """The engine's tokens per step (max_num_batched_tokens / max_num_tokens) as the row's deployment set it.

    InferenceMAX's scripts set it: vLLM ``max-num-batched-tokens: 8192``; TensorRT-LLM
    ``--max_num_tokens 16384`` (Llama 70B) and ``20000`` (gpt-oss). AIConfigurator's
    generator writes an agg engine's budget as max_batch_size + isl + 1,500
    (src/aiconfigurator/generator/rule_plugin/{vllm,trtllm}.rule; SGLang's
    max_prefill_tokens isl + 1,500 with enable_mixed_chunk, sglang.rule, for
    the runs ``sglang_generated`` names; SGLang's own chunk size for the others).
    """
    if replay.harness == INFERENCEMAX:
        if replay.engine == "trtllm":
            return INFERENCEMAX_TRTLLM_MAX_NUM_TOKENS[replay.model]
        return 8192
    if replay.engine == "sglang":
        # SGLang's prefill step holds at most its chunked_prefill_size (every request admitted takes its
        # tokens from it, schedule_policy.py PrefillAdder) and, loosely, max_prefill_tokens (16,384 by default).
        chunk = sglang_chunked_prefill_size(_catalog().gpu(replay.gpu).memory_bytes)
        return min(replay.isl + 1500, chunk) if sglang_generated(replay) else chunk
    return replay.max_batch_size + replay.isl + 1500


def sglang_generated(replay: "Replay") -> bool:
    """Whether the row's SGLang engine ran AIConfigurator's generated agg settings (``AIC_SGLANG_GENERATED_FROM``)."""
    return replay.engine == "sglang" and replay.harness == AIC_AIPERF \
        and _version(replay.engine_version) >= AIC_SGLANG_GENERATED_FROM


def _version(text: str) -> tuple[int, ...]:
    """The leading numbers of an engine version ("0.5.6.post2" -> (0, 5, 6))."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def async_scheduling(replay: "Replay") -> bool:
    """Whether the row's engine scheduled a step ahead (the stage's ``async_scheduling``).

    TensorRT-LLM's overlap scheduler and SGLang's overlap schedule are on by default
    (AIConfigurator's generated agg configs also write ``disable_overlap_scheduler:
    False``); InferenceMAX's vLLM scripts set ``async-scheduling: true``; vLLM turned it on
    by default in v0.14.0, so AIConfigurator's vLLM 0.12 runs had it off.
    """
    if replay.engine != "vllm" or replay.harness == INFERENCEMAX:
        return True
    return _version(replay.engine_version) >= (0, 14)


def harness_of(source: str) -> Harness:
    """The benchmark client a row's ``silicon_data_source`` names."""
    return INFERENCEMAX if re.search(r"source_file=20\d\d-\d\d-\d\d\.csv", source) else AIC_AIPERF


def csv_path() -> Path:
    """Where aiconfigurator-core keeps silicon_sample.csv."""
    import aiconfigurator_core

    return Path(aiconfigurator_core.__file__).parent / "systems" / "silicon_sample.csv"


@dataclass(frozen=True)
class Replay:
    """One measured run as vlmplan replays it."""

    row_id: str
    model: str
    gpu: str
    tensor_parallel: int
    precision: Precision
    disaggregated: bool
    prefill_workers: int
    decode_workers: int
    max_batch_size: int
    users: int
    isl: int
    osl: int
    ttft_ms: float
    tpot_ms: float
    # labels of the error table
    model_path: str
    system: str
    engine: str
    harness: Harness = AIC_AIPERF
    engine_version: str = ""  # the csv's backend_version ("" when not given)

    @property
    def dense(self) -> bool:
        """Whether the model is dense (the issue's accuracy goal is for dense models)."""
        return self.model not in MOE_MODELS


def _number(value: object) -> float | None:
    """A csv cell as a float, None when empty."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _concurrency(row: dict) -> int | None:
    """The benchmark's concurrency: silicon_concurrency in the source field, else the agg batch size."""
    found = re.search(r"silicon_concurrency=(\d+)", str(row["silicon_data_source"]))
    if found:
        return int(found.group(1))
    batch = _number(row["batch_size"])
    return int(batch) if batch else None


def _precision(row: dict) -> Precision | str:
    """vlmplan's precision for the row's GEMMs, or the reason there is none."""
    gemm = row["gemm_quant_mode"] if isinstance(row["gemm_quant_mode"], str) else row["precision"]
    if not isinstance(gemm, str) or gemm == "bf16":
        return "bf16"  # no quantisation given: the checkpoint's own BF16
    if gemm in ("fp8", "fp8_block"):
        return "fp8"
    if gemm == "int4_wo":
        return "int4"
    if gemm == "nvfp4" and row["model_path"] == "openai/gpt-oss-120b" and row["system"] in HOPPER:
        # gpt-oss ships MXFP4 expert weights; Hopper has no FP4 tensor cores, so the
        # engines run them as 4-bit weights with 16-bit activations (W4A16), as int4.
        return "int4"
    return f"precision {gemm}: no FP4 path in vlmplan"


def _agg_shape(row: dict, users: int) -> tuple[int, int] | str:
    """(tensor_parallel, max_batch_size) of an agg row, or why it cannot be expressed."""
    if (_number(row["pp_size"]) or 1) > 1:
        return "pipeline parallelism"
    if (_number(row["attention_dp_size"]) or 1) > 1:
        return "attention data parallelism"
    batch = int(_number(row["batch_size"]) or users)
    if batch != users:
        return "batch_size != concurrency (attention DP or several workers)"
    tensor_parallel = int(_number(row["tp_size"]) or 1)
    named = re.search(r"_tp(\d+)_", str(row["id"]))
    if named and int(named.group(1)) != tensor_parallel:
        # e.g. gpt-oss-120b on h200 "..._tp8_ep8_...": tp_size 64 = moe_tp 8 x moe_ep 8
        return "tp_size disagrees with the run id's tp (csv gives tp x ep)"
    return tensor_parallel, batch


def _disagg_shape(row: dict) -> tuple[int, int, int, int] | str:
    """(tensor_parallel, prefill workers, decode workers, decode batch) of a disagg row, or why not."""
    sizes = {side: int(_number(row[f"{side}_tp_size"]) or 1) for side in ("prefill", "decode")}
    for side in ("prefill", "decode"):
        if (_number(row[f"{side}_pp_size"]) or 1) > 1:
            return "pipeline parallelism"
        if (_number(row[f"{side}_attention_dp_size"]) or 1) > 1:
            return "attention data parallelism"
    if sizes["prefill"] != sizes["decode"]:
        return "disagg prefill and decode TP differ"
    return (sizes["prefill"], int(_number(row["prefill_num_workers"]) or 1),
            int(_number(row["decode_num_workers"]) or 1), int(_number(row["decode_batch_size"]) or 256))


def replay_of(row: dict) -> Replay | str:
    """The row as a ``Replay``, or the reason vlmplan cannot express it."""
    model = MODELS.get(row["model_path"])
    if model is None:
        return "model not in the catalog"
    gpu = GPUS.get(row["system"])
    if gpu is None:
        return "GPU not in the catalog"
    precision = _precision(row)
    if precision not in ("bf16", "fp8", "int4"):
        return str(precision)
    users = _concurrency(row)
    if users is None:
        return "no concurrency given"
    disaggregated = row["mode"] == "disagg"
    if disaggregated:
        shape = _disagg_shape(row)
        if isinstance(shape, str):
            return shape
        tp, prefill_workers, decode_workers, batch = shape
    else:
        agg = _agg_shape(row, users)
        if isinstance(agg, str):
            return agg
        (tp, batch), prefill_workers, decode_workers = agg, 1, 1
    return Replay(row_id=row["id"], model=model, gpu=gpu, tensor_parallel=tp, precision=precision,  # type: ignore[arg-type]
                  disaggregated=disaggregated, prefill_workers=prefill_workers, decode_workers=decode_workers,
                  max_batch_size=batch, users=users, isl=int(row["isl"]), osl=int(row["osl"]),
                  ttft_ms=float(row["silicon_ttft_ms"]), tpot_ms=float(row["silicon_tpot_ms"]),
                  model_path=row["model_path"], system=row["system"], engine=row["backend"],
                  harness=harness_of(str(row["silicon_data_source"])),
                  engine_version=row["backend_version"] if isinstance(row.get("backend_version"), str) else "")


def load_rows(path: Path | None = None) -> tuple[list[Replay], Counter]:
    """Every expressible row, and the count of the others by reason."""
    frame = pd.read_csv(path or csv_path())
    replays: list[Replay] = []
    skipped: Counter = Counter()
    for row in frame.to_dict("records"):
        found = replay_of(row)
        if isinstance(found, str):
            skipped[found] += 1
        else:
            replays.append(found)
    return replays, skipped


def stratified_sample(replays: Sequence[Replay], n: int) -> list[Replay]:
    """About ``n`` rows spread over (model, GPU, engine, mode) strata in proportion, deterministically."""
    if n >= len(replays):
        return list(replays)
    strata: dict[tuple, list[Replay]] = defaultdict(list)
    for replay in sorted(replays, key=lambda r: r.row_id):
        strata[(replay.model, replay.gpu, replay.engine, replay.disaggregated)].append(replay)
    picked: list[Replay] = []
    for members in strata.values():
        take = max(1, round(n * len(members) / len(replays)))
        picked.extend(members[int(i)] for i in np.linspace(0, len(members) - 1, min(take, len(members))))
    return picked


# ---------------------------------------------------------------- one replay


@cache
def _catalog() -> Catalog:
    return load_catalog()


def _mean_lengths(replay: Replay) -> tuple[float, float]:
    """The mean prompt and output lengths the row's client sends."""
    mean_share = (1.0 + replay.harness.length_ratio) / 2.0
    return replay.isl * mean_share, replay.osl * mean_share


def request_duration_s(replay: Replay) -> float:
    """A mean request's duration at this concurrency by the performance model: prefill, then its decode steps."""
    catalog = _catalog()
    perf = perf_model(catalog.model(replay.model), catalog.gpu(replay.gpu), replay.tensor_parallel,
                      precision=replay.precision, engine=replay.engine)
    isl, osl = _mean_lengths(replay)
    batch = replay.users if not replay.disaggregated else max(1, replay.users // replay.decode_workers)
    kv_tokens = int(batch * (isl + osl / 2))
    return perf.prefill_s(round(isl)) + max(0.0, osl - 1) * perf.decode_step_s(batch, kv_tokens)


def _length(nominal: int, ratio: float) -> int | dict:
    """A traffic size: ``nominal`` tokens, or uniform on [ratio x nominal, nominal] as the client draws it."""
    return nominal if ratio >= 1.0 else {"kind": "uniform", "low": ratio * nominal, "high": nominal}


def job_of(replay: Replay, cycle_s: float, slots_short: int = 0) -> SimulationJob:
    """The closed-loop simulation of ``replay``: all users at once, past its client's request count.

    ``slots_short`` > 0 is a diagnostic only (``--diagnose``): the engine holds that many
    requests fewer than the row's batch size, which no published setting of any run says.
    """
    stage: dict = {"name": "llm", "kind": "model", "model": replay.model, "gpu": replay.gpu,
                   "tensor_parallel": replay.tensor_parallel, "precision": replay.precision,
                   "max_batch_size": max(1, replay.max_batch_size - slots_short), "engine": replay.engine,
                   "max_batched_tokens": token_budget(replay), "async_scheduling": async_scheduling(replay),
                   # TensorRT-LLM's enable_chunked_prefill is off by default, and neither source turns it on
                   # (AIConfigurator's templates write `enable_chunked_prefill: false`).
                   "chunked_prefill": replay.engine != "trtllm"}
    if replay.harness == AIC_AIPERF and replay.engine == "trtllm" \
            and replay.engine_version in AIC_TRTLLM_FREE_GPU_MEMORY_FRACTION:
        stage["gpu_memory_utilization"] = AIC_TRTLLM_FREE_GPU_MEMORY_FRACTION[replay.engine_version]
    if replay.engine == "sglang":
        # SGLang's own mem_fraction_static for its chunked_prefill_size on the GPU (no source sets another)
        # and the CUDA-graph batch sizes: AIConfigurator's generator writes 1..max_batch_size (sglang.rule),
        # earlier runs SGLang's default. The generated config also mixes prefill chunks into decode steps.
        generated = sglang_generated(replay)
        stage["gpu_memory_utilization"] = sglang_memory_fraction(
            _catalog().gpu(replay.gpu).memory_bytes, replay.tensor_parallel,
            cuda_graph_max_bs=replay.max_batch_size if generated else None)
        if generated:
            stage["sglang"] = {"enable_mixed_chunk": True}
    if replay.harness == INFERENCEMAX and replay.engine == "trtllm" and replay.model == "llama-3-70b" \
            and (replay.isl, replay.osl) == (1024, 1024) and replay.tensor_parallel < 8:
        # InferenceMAX's 70b_*_trt scripts: "For 1k/1k, use batch_wait_max_tokens_ratio and
        # batch_wait_timeout_iters" (TP < 8): 0.9 and 20.
        stage["trtllm"] = {"batch_wait_timeout_iters": 20, "batch_wait_max_tokens_ratio": 0.9}
    if replay.disaggregated:
        stage["disaggregation"] = {"mode": "prefill_decode", "prefill_replicas": replay.prefill_workers,
                                   "decode_replicas": replay.decode_workers}
    deployment = DeploymentSpec.model_validate({"name": replay.row_id, "stages": [stage]})
    ratio = replay.harness.length_ratio
    traffic = TrafficSpec.model_validate({
        "classes": [{"name": "bench", "text_tokens": _length(replay.isl, ratio),
                     "output_tokens": _length(replay.osl, ratio)}],
        "arrivals": {"kind": "closed_loop", "users": replay.users, "think_time_s": 0.0}})
    # Two request durations beyond the count, so the counted requests still arrive if steps run slower
    # than the estimate; the requests past the count are not counted.
    horizon_s = (replay.harness.requests_per_user + 2) * cycle_s
    return SimulationJob(deployment, traffic, horizon_s=horizon_s, seed=SEED, drain_s=4 * cycle_s + 60.0,
                         timeseries_bins=1)


@dataclass(frozen=True)
class Outcome:
    """A replay's predicted means (ms), or why it did not run."""

    replay: Replay
    ttft_ms: float = math.nan
    tpot_ms: float = math.nan
    requests: int = 0
    error: str = ""


def simulate_row(replay: Replay, source: str = "measured", slots_short: int = 0,
                 host_per_sequence: bool = True, step_overhead: bool = True) -> Outcome:
    """Replay one row and return the mean TTFT and TPOT of the requests its benchmark client counts.

    ``source`` "measured" times steps as ``perf_model`` does (measured kernels where
    aiconfigurator-core covers the GPU, else the roofline); "roofline" swaps the
    measured source for the roofline it falls back to, for the comparison.

    All users start at once, as both clients do, and the first ``requests_per_user x
    users`` requests sent are the ones counted (the client sends no more). ``slots_short``:
    see ``job_of`` (a diagnostic, never the replay). ``host_per_sequence`` False replays without
    the engines' per-sequence host time (``--diagnose``: the excess it was fitted on);
    ``step_overhead`` False, without the flat host time a step (``--diagnose``: that time hidden
    by an overlap scheduler, as tried for TensorRT-LLM).
    """
    chosen = profiles.perf.measured_or_roofline
    host_times = dict(ENGINE_HOST_S_PER_SEQUENCE)
    flat_s = efficiency.STEP_OVERHEAD_S
    if not step_overhead:
        efficiency.STEP_OVERHEAD_S = 0.0
    if source == "roofline":
        profiles.perf.measured_or_roofline = _roofline_only
    if not host_per_sequence:
        ENGINE_HOST_S_PER_SEQUENCE.update(dict.fromkeys(host_times, 0.0))
    try:
        cycle_s = request_duration_s(replay)
        job = job_of(replay, cycle_s, slots_short)
        run = prepare(job)
        run.driver.start()
        run.driver.run(None, None)
    except VlmplanError as error:  # e.g. the model does not fit its GPUs at this TP
        reason = str(error)
        if " needs " in reason:  # weights alone exceed the GPUs the row names: its tp_size cannot be right
            reason = f"{replay.model} does not fit {replay.tensor_parallel}x {replay.gpu} (csv tp_size)"
        return Outcome(replay, error=reason)
    finally:
        profiles.perf.measured_or_roofline = chosen
        ENGINE_HOST_S_PER_SEQUENCE.update(host_times)
        efficiency.STEP_OVERHEAD_S = flat_s
    recorder = run.recorder
    arrival = np.frombuffer(recorder.arrival_s) if recorder.arrival_s else np.zeros(0)
    ttft = np.frombuffer(recorder.ttft_s) if recorder.ttft_s else np.zeros(0)
    tpot = np.frombuffer(recorder.tpot_s) if recorder.tpot_s else np.zeros(0)
    if not arrival.size:
        return Outcome(replay, error="no request completed")
    counted = np.argsort(arrival, kind="stable")[:replay.harness.requests_per_user * replay.users]
    tpot_counted = tpot[counted][np.isfinite(tpot[counted])]
    return Outcome(replay, ttft_ms=float(ttft[counted].mean()) * 1e3,
                   tpot_ms=float(tpot_counted.mean()) * 1e3 if tpot_counted.size else math.nan,
                   requests=int(counted.size))


def _roofline_only(roofline: RooflinePerfModel, engine: str) -> RooflinePerfModel:
    """Stands in for ``profiles.perf.measured_or_roofline``: the roofline whatever the GPU and engine."""
    return roofline


def _simulate_task(task: tuple[Replay, str, int, bool, bool]) -> Outcome:
    """``simulate_row`` on (replay, source, slots_short, host_per_sequence, step_overhead), for the process pool."""
    return simulate_row(*task)


def simulate_rows(replays: Sequence[Replay], workers: int, source: str = "measured",
                  slots_short: int = 0, host_per_sequence: bool = True, step_overhead: bool = True) -> list[Outcome]:
    """Replay every row, the biggest first, in ``workers`` processes."""
    tasks = [(r, source, slots_short, host_per_sequence, step_overhead)
             for r in sorted(replays, key=lambda r: (-r.users, r.row_id))]
    if workers <= 1:
        return [_simulate_task(t) for t in tasks]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_simulate_task, tasks, chunksize=4))


class _Aiconfigurator:
    """aiconfigurator-core's SDK, offline: a row's model as it builds it, and its tables per (system, engine)."""

    def __init__(self) -> None:
        import logging
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # configs come from the package, never the network
        logging.getLogger("aiconfigurator_core").setLevel(logging.ERROR)
        from aiconfigurator_core.sdk import common, config
        from aiconfigurator_core.sdk.backends.factory import get_backend
        from aiconfigurator_core.sdk.perf_database import get_database

        self.common, self.config, self.get_backend, self._get_database = common, config, get_backend, get_database
        self._databases: dict[tuple[str, str], object] = {}

    def database(self, replay: Replay) -> object:
        key = (replay.system, replay.engine)
        if key not in self._databases:
            self._databases[key] = self._get_database(replay.system, replay.engine, "current")
        return self._databases[key]

    def model(self, replay: Replay, static_fp8: bool) -> object | None:
        """The row's model (its config shipped in the package), or None where this replay does not map it.

        FP8 as the csv labels it (``fp8``, dynamic scales: how NVIDIA's regression tool runs it) or,
        with ``static_fp8``, as vlmplan reads a ModelOpt checkpoint (aiconfigurator's ``fp8_static``).
        """
        from aiconfigurator_core.sdk.models import get_model

        common = self.common
        fp8 = common.GEMMQuantMode.fp8_static if static_fp8 else common.GEMMQuantMode.fp8
        gemm = {"bf16": common.GEMMQuantMode.bfloat16, "fp8": fp8}.get(replay.precision)
        path = AIC_MODEL_CONFIGS.get(replay.model_path)
        if replay.disaggregated or path is None or gemm is None:
            return None
        kv = common.KVCacheQuantMode.fp8 if replay.precision == "fp8" else common.KVCacheQuantMode.bfloat16
        return get_model(path, self.config.ModelConfig(tp_size=replay.tensor_parallel, gemm_quant_mode=gemm,
                                                       kvcache_quant_mode=kv), replay.engine)


def aiconfigurator_rows(replays: Sequence[Replay]) -> list[Outcome]:
    """aiconfigurator-core's own agg estimate (``run_agg``) of each aggregated row, where it has one.

    The row's model config (shipped in the package), TP, GEMM precision (FP8 KV
    cache with FP8 weights) and the engine's current table version; batch =
    the row's concurrency, 8,192 context tokens per step (the engines' default
    budget). Rows it cannot estimate (no config, an unsupported quantisation,
    no table) carry the error.
    """
    aic = _Aiconfigurator()
    outcomes = []
    for replay in replays:
        try:
            model = aic.model(replay, static_fp8=False)
            if model is None:
                outcomes.append(Outcome(replay, error="not estimated by aiconfigurator here"))
                continue
            summary = aic.get_backend(replay.engine).run_agg(
                model, aic.database(replay), aic.config.RuntimeConfig(batch_size=replay.users, isl=replay.isl,
                                                                      osl=replay.osl),
                ctx_tokens=8192).get_summary_df()
            outcomes.append(Outcome(replay, ttft_ms=float(summary["ttft"].iloc[0]),
                                    tpot_ms=float(summary["tpot"].iloc[0]), requests=1))
        except Exception as error:  # noqa: BLE001 - any failure of the other tool is that row's outcome
            outcomes.append(Outcome(replay, error=f"aiconfigurator: {type(error).__name__}"))
    return outcomes


# ---------------------------------------------------------------- diagnostics (--diagnose)


def lone_prefill_ms(replay: Replay) -> float:
    """vlmplan's time for one prompt of the row's nominal length alone on an idle replica, ms."""
    catalog = _catalog()
    perf = perf_model(catalog.model(replay.model), catalog.gpu(replay.gpu), replay.tensor_parallel,
                      precision=replay.precision, engine=replay.engine)
    return perf.prefill_s(replay.isl) * 1e3


def lone_prefill_table(replays: Sequence[Replay], most_users: int = 8,
                       aic: "_Aiconfigurator | None" = None) -> pd.DataFrame:
    """Each dense agg configuration run at <= ``most_users`` users: vlmplan's lone prefill next to
    aiconfigurator-core's context-phase estimate of one prompt (``run_static``, ``static_ctx``, batch 1,
    static FP8 as vlmplan reads a ModelOpt checkpoint) and the measured mean TTFT, ms.

    Where the two estimates agree, a low-concurrency TTFT miss is in the scheduling or the run, not in
    the kernels the tables time.
    """
    aic = aic or _Aiconfigurator()
    found: dict[tuple, dict] = {}
    for replay in sorted(replays, key=lambda r: r.row_id):
        if not replay.dense or replay.disaggregated or replay.users > most_users:
            continue
        key = (replay.model_path, replay.system, replay.engine, replay.tensor_parallel, replay.isl, replay.users)
        if key in found:
            continue
        try:
            model = aic.model(replay, static_fp8=True)
            summary = aic.get_backend(replay.engine).run_static(
                model, aic.database(replay), aic.config.RuntimeConfig(batch_size=1, isl=replay.isl, osl=2),
                mode="static_ctx").get_summary_df()
            aic_ms = float(summary["ttft"].iloc[0])
        except Exception:  # noqa: BLE001 - a configuration the other tool cannot estimate is left out
            continue
        found[key] = {"model": replay.model_path, "gpu": replay.system, "engine": replay.engine,
                      "tp": replay.tensor_parallel, "isl": replay.isl, "users": replay.users,
                      "measured_ttft_ms": replay.ttft_ms, "vlmplan_lone_prefill_ms": lone_prefill_ms(replay),
                      "aiconfigurator_lone_prefill_ms": aic_ms}
    return pd.DataFrame(list(found.values()))


def gpt_oss_prefill_lines(replays: Sequence[Replay], aic: "_Aiconfigurator") -> list[str]:
    """gpt-oss-120b at 4 users under vLLM: measured mean TTFT, vlmplan's lone prefill (experts as int4, the
    roofline) and aiconfigurator's, which maps the MXFP4 checkpoint to BF16 GEMMs and W4A16 MXFP4 experts."""
    lines = []
    common = aic.common
    seen = set()
    for replay in sorted(replays, key=lambda r: (r.system, r.tensor_parallel, r.isl)):
        key = (replay.system, replay.tensor_parallel, replay.isl)
        if replay.model != "gpt-oss-120b" or replay.engine != "vllm" or replay.users != 4 or key in seen:
            continue
        seen.add(key)
        try:
            from aiconfigurator_core.sdk.models import get_model

            model = get_model(AIC_MODEL_CONFIGS[replay.model_path], aic.config.ModelConfig(
                tp_size=replay.tensor_parallel, moe_tp_size=replay.tensor_parallel, moe_ep_size=1,
                gemm_quant_mode=common.GEMMQuantMode.bfloat16, moe_quant_mode=common.MoEQuantMode.w4a16_mxfp4,
                kvcache_quant_mode=common.KVCacheQuantMode.bfloat16), replay.engine)
            summary = aic.get_backend(replay.engine).run_static(
                model, aic.database(replay), aic.config.RuntimeConfig(batch_size=1, isl=replay.isl, osl=2),
                mode="static_ctx").get_summary_df()
            aic_ms = f"{float(summary['ttft'].iloc[0]):.1f}"
        except Exception:  # noqa: BLE001 - shown as not estimated
            aic_ms = "-"
        lines.append(f"gpt-oss-120b vLLM {replay.system} TP{replay.tensor_parallel} {replay.isl} in, 4 users: measured "
                     f"TTFT {replay.ttft_ms:.1f} ms, lone prefill vlmplan {lone_prefill_ms(replay):.1f}, "
                     f"aiconfigurator {aic_ms}")
    return lines


def implied_prompt_load(replay: Replay) -> float:
    """The share of the replica's time a measured run spent on prompts alone, if every user really sent its
    next request when the last ended: requests/s by the measured means (Little's law on a closed loop)
    times vlmplan's lone prefill of one prompt. Near or above 1, the run cannot have kept that many users
    busy and still decoded at its measured TPOT."""
    cycle_ms = replay.ttft_ms + (replay.osl - 1) * replay.tpot_ms
    return replay.users / cycle_ms * lone_prefill_ms(replay)


def host_time_lines(replays: Sequence[Replay], workers: int) -> list[str]:
    """TPOT excess per user with the per-sequence host time left out (sim.policies.ENGINE_HOST_S_PER_SEQUENCE).

    Each dense row is replayed without it; the median of (measured - predicted TPOT) / users, us, by
    engine, client, whether the engine scheduled a step ahead, users, and output length (below 512
    tokens the other users' prompts weigh more in each token's time). A host cost per sequence shows as
    a flat excess per user at every output length when the step is serial (vLLM 0.12 without async
    scheduling) and hides under the GPU step with async scheduling until the batch is large; an excess
    that shrinks as outputs lengthen is per prompt, not per sequence and step. The vLLM figure is the
    median over the vLLM 0.12 rows at 1,024 output tokens.
    """
    chosen = [r for r in replays if r.dense and not r.disaggregated
              and r.model_path != "nvidia/Llama-3.1-8B-Instruct-FP8"]  # not the closed loop the csv states
    outcomes = [o for o in simulate_rows(chosen, workers, host_per_sequence=False) if not o.error]
    frame = pd.DataFrame([{"engine": o.replay.engine, "client": o.replay.harness.name,
                           "scheduling": "async" if async_scheduling(o.replay) else "serial",
                           "users": concurrency_bucket(o.replay.users), "osl": o.replay.osl,
                           "outputs": ">= 512 out" if o.replay.osl >= 512 else "< 512 out",
                           "excess_us": 1e3 * (o.replay.tpot_ms - o.tpot_ms) / o.replay.users} for o in outcomes])
    if frame.empty:
        return []
    lines = ["TPOT excess per user without per-sequence host time, us (median of (measured - predicted TPOT) / "
             "users; dense rows):"]
    for key, group in frame.groupby(["engine", "client", "scheduling", "users", "outputs"]):
        lines.append(f"  {', '.join(map(str, key))}: {len(group)} rows, {group.excess_us.median():+.1f} us")
    fit = frame[(frame.engine == "vllm") & (frame.scheduling == "serial") & (frame.osl == 1024)]
    if not fit.empty:
        lines.append(f"vLLM without async scheduling, 1,024 output tokens: {len(fit)} rows, median "
                     f"{fit.excess_us.median():.1f} us a sequence (ENGINE_HOST_S_PER_SEQUENCE['vllm'] = "
                     f"{ENGINE_HOST_S_PER_SEQUENCE['vllm'] * 1e6:.0f} us)")
    return lines


def hidden_step_time_lines(replays: Sequence[Replay], workers: int) -> list[str]:
    """The TensorRT-LLM rows with and without the flat host time a step (``STEP_OVERHEAD_S``), by source, GPU
    and model: what hiding it under the overlap scheduler would do (README: not adopted)."""
    trtllm = [r for r in replays if r.engine == "trtllm"]
    rows = []
    for step_overhead in (True, False):
        outcomes = [o for o in simulate_rows(trtllm, workers, step_overhead=step_overhead) if not o.error]
        groups: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            r = outcome.replay
            groups.setdefault(f"{r.harness.name}, {r.system}, {r.model_path}", []).append(outcome)
        state = "serial" if step_overhead else "hidden"
        rows += [error_row(f"{name}, flat step time {state}", group) for name, group in sorted(groups.items())]
    return _format(rows, "TensorRT-LLM rows, the flat step time serial or hidden", markdown=False)


def sglang_h200_lines(replays: Sequence[Replay], workers: int) -> list[str]:
    """The SGLang 0.5.6.post2 Llama-3.1-8B rows (H200) by load and prompt, replayed with their generated settings
    (mixed prefill chunks) and, for contrast, with SGLang's defaults (prefill steps apart from decodes)."""
    rows = [r for r in replays if sglang_generated(r) and r.model == "llama-3-8b"]
    if not rows:
        return []
    groups = {"all": lambda r: True, "512 users": lambda r: r.users == 512,
              "< 512 users, 4,000-8,000 in": lambda r: r.users < 512 and r.isl >= 4000,
              "< 512 users, 1,000-2,000 in": lambda r: r.users < 512 and r.isl <= 2000}
    table = []
    for settings, replayed in (("generated (mixed)", rows),
                               ("SGLang defaults", [replace(r, engine_version="0.5.1.post1") for r in rows])):
        outcomes = [o for o in simulate_rows(replayed, workers) if not o.error]
        table += [error_row(f"{name}, {settings}", [o for o in outcomes if keep(o.replay)])
                  for name, keep in groups.items()]
    return _format(table, f"SGLang {rows[0].engine_version} {rows[0].model_path} on {rows[0].system}", markdown=False)


def diagnose(replays: Sequence[Replay], workers: int) -> str:
    """The checks behind the README's reasons for the large misses."""
    lines = ["diagnostics", ""]
    aic = _Aiconfigurator()
    table = lone_prefill_table(replays, aic=aic)
    if not table.empty:
        gap = 100.0 * (table.vlmplan_lone_prefill_ms / table.aiconfigurator_lone_prefill_ms - 1.0)
        ratio = table.measured_ttft_ms / table.vlmplan_lone_prefill_ms
        lines += [f"lone prefill, vlmplan vs aiconfigurator's static_ctx, {len(table)} dense configurations at "
                  f"<= 8 users: median difference {np.median(gap):+.1f} %, range {gap.min():+.1f} to {gap.max():+.1f} %;"
                  f" measured mean TTFT / vlmplan lone prefill: median {np.median(ratio):.2f}x", ""]
        for engine, group in table.assign(ratio=ratio).groupby(["model", "engine", "users"]):
            lines.append(f"  {', '.join(map(str, engine))}: {len(group)} configurations, measured TTFT / lone "
                         f"prefill median {group.ratio.median():.2f}x (min {group.ratio.min():.2f}, max "
                         f"{group.ratio.max():.2f})")
        lines.append("")
    aic_trtllm = [r for r in replays if r.harness == AIC_AIPERF and r.engine == "trtllm" and r.dense]
    slot_rows = []
    for model_path in sorted({r.model_path for r in aic_trtllm}):
        rows = [r for r in aic_trtllm if r.model_path == model_path]
        for short in (0, 1):
            outcomes = [o for o in simulate_rows(rows, workers, slots_short=short) if not o.error]
            slot_rows.append(error_row(f"{model_path}, engine holds users - {short}", outcomes))
    lines += _format(slot_rows, "AIConfigurator TensorRT-LLM runs", markdown=False)
    lines += ["", *hidden_step_time_lines(replays, workers)]
    lines += ["", *sglang_h200_lines(replays, workers)]
    lines += ["", *host_time_lines(replays, workers)]
    lines += ["", *gpt_oss_prefill_lines(replays, aic)]
    fp8 = [r for r in replays if r.model_path == "nvidia/Llama-3.1-8B-Instruct-FP8"]
    if fp8:
        loads = np.array([implied_prompt_load(r) for r in fp8])
        lines += ["", f"{fp8[0].model_path}: prompts alone would fill {np.median(loads):.0%} of the replica's time "
                  f"(median; {loads.min():.0%}-{loads.max():.0%}) at the measured means, besides decoding "
                  f"{np.median([r.users for r in fp8]):.0f} users"]
    return "\n".join(lines)


# ---------------------------------------------------------------- the error table


def error_pct(predicted: float, measured: float) -> float:
    """(predicted - measured) / measured, percent."""
    return 100.0 * (predicted - measured) / measured


def concurrency_bucket(users: int) -> str:
    """The concurrency range a row falls in."""
    return next(label for bound, label in CONCURRENCY_BUCKETS if users <= bound)


@dataclass(frozen=True)
class ErrorRow:
    """Median and 90th-percentile absolute error, and the median signed error, of one group."""

    group: str
    rows: int
    ttft_median: float
    ttft_p90: float
    ttft_bias: float
    tpot_median: float
    tpot_p90: float
    tpot_bias: float


def error_row(group: str, outcomes: Sequence[Outcome]) -> ErrorRow:
    """The error statistics of ``outcomes`` (rows that ran)."""
    ttft = np.array([error_pct(o.ttft_ms, o.replay.ttft_ms) for o in outcomes])
    tpot = np.array([error_pct(o.tpot_ms, o.replay.tpot_ms) for o in outcomes])
    tpot = tpot[np.isfinite(tpot)]
    def stats(values: np.ndarray) -> tuple[float, float, float]:
        if not values.size:
            return (math.nan, math.nan, math.nan)
        return (float(np.median(np.abs(values))), float(np.percentile(np.abs(values), 90)), float(np.median(values)))
    return ErrorRow(group, len(outcomes), *stats(ttft), *stats(tpot))


GROUPINGS = {
    "model": lambda o: o.replay.model_path,
    "GPU": lambda o: o.replay.system,
    "engine": lambda o: o.replay.engine,
    "engine, GPU": lambda o: f"{o.replay.engine}, {o.replay.system}",
    "engine, concurrency": lambda o: f"{o.replay.engine}, {concurrency_bucket(o.replay.users)}",
    "concurrency": lambda o: concurrency_bucket(o.replay.users),
    "mode": lambda o: "disagg" if o.replay.disaggregated else "agg",
    "benchmark client": lambda o: o.replay.harness.name,
    "benchmark client, engine": lambda o: f"{o.replay.harness.name}, {o.replay.engine}",
}


def _group_order(group: str) -> tuple[str, int]:
    """Groups by name, a trailing concurrency bucket in rising order ("vllm, 2-8" before "vllm, 9-32")."""
    labels = [label for _, label in CONCURRENCY_BUCKETS]
    head, _, tail = group.rpartition(", ")
    return (head, labels.index(tail)) if tail in labels else (group, 0)


def error_tables(outcomes: Sequence[Outcome]) -> dict[str, list[ErrorRow]]:
    """Aggregates (all, dense, MoE), then one table per grouping."""
    ran = [o for o in outcomes if not o.error and math.isfinite(o.ttft_ms)]
    tables: dict[str, list[ErrorRow]] = {"aggregate": [
        error_row("all", ran),
        error_row("dense, agg", [o for o in ran if o.replay.dense and not o.replay.disaggregated]),
        error_row("MoE", [o for o in ran if not o.replay.dense]),
        error_row("disagg", [o for o in ran if o.replay.disaggregated])]}
    for name, key in GROUPINGS.items():
        groups: dict[str, list[Outcome]] = defaultdict(list)
        for outcome in ran:
            groups[key(outcome)].append(outcome)
        labels = [label for _, label in CONCURRENCY_BUCKETS]
        order = sorted(groups, key=labels.index) if name == "concurrency" else sorted(groups, key=_group_order)
        tables[name] = [error_row(group, groups[group]) for group in order]
    return tables


def _format(rows: Iterable[ErrorRow], title: str, markdown: bool) -> list[str]:
    head = (title, "rows", "TTFT median abs err %", "TTFT p90 abs err %", "TTFT median err %",
            "TPOT median abs err %", "TPOT p90 abs err %", "TPOT median err %")  # no "|": Markdown cells
    body = [(r.group, str(r.rows), *(f"{v:.1f}" for v in (r.ttft_median, r.ttft_p90, r.ttft_bias,
                                                              r.tpot_median, r.tpot_p90, r.tpot_bias)))
            for r in rows]
    if markdown:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(b) + " |" for b in body]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]
    return ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
            for line in (head, *body)]


def report(outcomes: Sequence[Outcome], contrasts: dict[str, Sequence[Outcome]], skipped: Counter, total: int,
           wall_s: float, markdown: bool) -> str:
    """The whole printout: coverage, the error tables, rows vlmplan refused and the largest misses."""
    failed = Counter(o.error for o in outcomes if o.error)
    lines = [f"silicon_sample.csv: {total:,} rows; replayed {len(outcomes) - sum(failed.values()):,}; "
             f"not expressible {sum(skipped.values()):,}; refused by vlmplan {sum(failed.values()):,}; "
             f"{wall_s:.0f} s wall", ""]
    lines += ["not expressible, by reason:"] + [f"  {count:5d}  {reason}" for reason, count in skipped.most_common()]
    if failed:
        lines += ["refused by vlmplan, by reason:"] + [f"  {count:5d}  {reason}" for reason, count in failed.most_common()]
    lines += ["", "absolute error |predicted - measured| / measured of the mean TTFT and mean TPOT, percent; "
              "'med err' is the signed median (bias)"]
    for name, rows in error_tables(outcomes).items():
        lines += ["", *_format(rows, name, markdown)]
    for title, contrast in contrasts.items():
        contrast_tables = error_tables(contrast)
        lines += ["", *_format(contrast_tables["aggregate"], title, markdown)]
        lines += ["", *_format(contrast_tables["engine, concurrency"], f"{title}: engine, concurrency", markdown)]
        covered = {o.replay.row_id for o in contrast if not o.error}
        if len(covered) < sum(1 for o in outcomes if not o.error):  # a partial contrast: vlmplan on its rows
            same_rows = [o for o in outcomes if o.replay.row_id in covered]
            lines += ["", *_format(error_tables(same_rows)["aggregate"], "vlmplan on the same rows", markdown)]
    ran = [o for o in outcomes if not o.error]
    worst = sorted(ran, key=lambda o: -max(abs(error_pct(o.ttft_ms, o.replay.ttft_ms)),
                                           abs(error_pct(o.tpot_ms, o.replay.tpot_ms)) if o.replay.osl > 1 else 0))
    lines += ["", "largest misses (measured -> predicted ms):"]
    lines += [f"  {o.replay.row_id}: TTFT {o.replay.ttft_ms:.1f} -> {o.ttft_ms:.1f}, "
              f"TPOT {o.replay.tpot_ms:.2f} -> {o.tpot_ms:.2f}" for o in worst[:10]]
    return "\n".join(lines)


def write_rows(outcomes: Sequence[Outcome], path: Path) -> None:
    """Each row's labels, measured and predicted mean TTFT and TPOT (ms), for a look at single rows."""
    pd.DataFrame([{"row_id": o.replay.row_id, "model": o.replay.model_path, "gpu": o.replay.system,
                   "engine": o.replay.engine, "client": o.replay.harness.name, "tp": o.replay.tensor_parallel,
                   "isl": o.replay.isl, "osl": o.replay.osl, "users": o.replay.users,
                   "ttft_measured_ms": o.replay.ttft_ms, "ttft_predicted_ms": o.ttft_ms,
                   "tpot_measured_ms": o.replay.tpot_ms, "tpot_predicted_ms": o.tpot_ms, "error": o.error}
                  for o in outcomes]).to_csv(path, index=False)


def main() -> None:
    """Replay the rows and print the error tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=0, help="Replay a stratified sample of about N rows.")
    parser.add_argument("--workers", type=int, default=2, help="Processes (default 2).")
    parser.add_argument("--no-contrasts", action="store_true",
                        help="Skip the contrast runs (roofline steps; aiconfigurator's estimate).")
    parser.add_argument("--markdown", action="store_true", help="Print the tables as Markdown.")
    parser.add_argument("--rows-csv", type=Path, help="Also write each replayed row's measured and predicted means here.")
    parser.add_argument("--diagnose", action="store_true",
                        help="Print only the checks behind the README's reasons for the large misses.")
    args = parser.parse_args()
    started = time.perf_counter()
    replays, skipped = load_rows()
    total = len(replays) + sum(skipped.values())
    chosen = stratified_sample(replays, args.sample) if args.sample else replays
    if args.diagnose:
        print(diagnose(chosen, args.workers))
        return
    outcomes = simulate_rows(chosen, args.workers)
    if args.rows_csv:
        write_rows(outcomes, args.rows_csv)
    contrasts = {} if args.no_contrasts else {
        "roofline steps instead of measured kernels": simulate_rows(chosen, args.workers, source="roofline"),
        "aiconfigurator's own estimate (run_agg) on the rows it covers": aiconfigurator_rows(chosen)}
    print(report(outcomes, contrasts, skipped, total, time.perf_counter() - started, args.markdown))


if __name__ == "__main__":
    main()
