"""simulate() end to end on the bundled catalog: stage kinds, routing, costs, overload, determinism."""

import math
import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from profiles.catalog import load_catalog
from profiles.errors import ConfigurationError, VlmplanError
from profiles.models import ApiInput
from sim.api import SimulationCancelled, SimulationJob, prepare, simulate
from sim.deployment import DeploymentSpec
from sim.slo import SloSpec
from sim.traffic import TrafficSpec

CONTRACT_KEYS = {"requests", "completed", "ttft_p50_s", "ttft_p99_s", "e2e_p50_s", "e2e_p95_s", "e2e_p99_s",
                 "tpot_p50_s", "tpot_p99_s", "throughput_rps", "gpus", "gpu_utilization", "cost_per_day_usd",
                 "cost_per_1k_requests_usd", "slo_attainment", "preemptions", "sim_wall_s"}

INVOICE = {"name": "invoice", "share": 0.5, "images": {"count": 1, "width_px": 1024, "height_px": 1024},
           "text_tokens": 100, "output_tokens": 200}
CHAT = {"name": "chat", "share": 0.5, "text_tokens": 300, "output_tokens": 100}


def traffic(rate_rps: float, *classes: dict) -> TrafficSpec:
    return TrafficSpec.model_validate({"classes": list(classes) or [INVOICE, CHAT],
                                       "arrivals": {"kind": "poisson", "rate_rps": rate_rps}})


def deployment(*stages: dict, **extra: object) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"name": "d", "stages": list(stages), **extra})


def vlm7b(**extra: object) -> dict:
    return {"name": "vlm", "kind": "model", "model": "qwen2.5-vl-7b", "gpu": "h100-sxm", **extra}


def run(dep: DeploymentSpec, spec: TrafficSpec, horizon_s: float = 120, seed: int = 3, **extra: object):
    return simulate(SimulationJob(dep, spec, horizon_s=horizon_s, seed=seed, **extra))


def test_generalist_reports_the_contract_and_its_cost():
    result = run(deployment(vlm7b(replicas=2)), traffic(4))
    m = result.metrics
    assert set(m) >= CONTRACT_KEYS
    assert m["completed"] == m["requests"] > 300
    assert 0 < m["ttft_p50_s"] <= m["ttft_p99_s"] <= m["e2e_p99_s"]
    assert m["e2e_p50_s"] <= m["e2e_p95_s"] <= m["e2e_p99_s"]
    price = load_catalog().gpu("h100-sxm").price.usd_per_gpu_hour
    assert m["gpus"] == 2
    assert m["cost_per_day_usd"] == pytest.approx(2 * price * 24)
    assert m["cost_per_1k_requests_usd"] == pytest.approx(m["cost_per_day_usd"] / m["requests_per_day"] * 1000)
    assert set(result.per_class) == {"invoice", "chat"}
    assert result.per_stage["vlm"]["visits"] == m["completed"]
    assert len(result.timeseries["t_s"]) == len(result.timeseries["offered_rps"])


def test_specialist_pipeline_sends_invoices_through_ocr_then_text():
    dep = deployment(
        {"name": "ocr", "kind": "model", "model": "deepseek-ocr", "gpu": "a100-80gb", "output_tokens": 300},
        {"name": "text", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "text_only_input": True},
        vlm7b(),
        router={"classifier": {"model": "bert-base-router", "gpu": "l4"}},
        routes=[{"classes": ["invoice"], "path": ["ocr", "text"]}, {"classes": ["*"], "path": ["vlm"]}])
    result = run(dep, traffic(2))
    stages, classes = result.per_stage, result.per_class
    assert stages["ocr"]["visits"] == stages["text"]["visits"] == classes["invoice"]["completed"]
    assert stages["vlm"]["visits"] == classes["chat"]["completed"]
    assert stages["router.classifier"]["visits"] == result.metrics["completed"]
    assert result.metrics["gpus"] == 4
    # An invoice waits for the whole OCR output before the text model starts.
    assert classes["invoice"]["e2e_p50_s"] > stages["ocr"]["stage_p50_s"] + stages["text"]["stage_p50_s"] * 0.5


def test_request_tiering_lowers_high_resolution_cost():
    low = dict(INVOICE, name="low", tier="low_res")
    high = dict(INVOICE, name="high", tier="high_res")
    policy = {"by_tier": {"low_res": {"kind": "native", "max_pixels": 200704}, "default": {"kind": "native"}}}
    dep = deployment(vlm7b(), routes=[{"classes": ["*"], "path": ["vlm"], "image_policy": policy}])
    result = run(dep, traffic(0.5, low, high), horizon_s=300)
    assert result.per_class["low"]["ttft_p50_s"] < result.per_class["high"]["ttft_p50_s"]


def test_hosted_api_bills_tokens_at_list_price():
    """GPT-4o: a 1024x1024 image is 765 tokens in high detail (FACTS.md section 4)."""
    result = run(deployment({"name": "api", "kind": "hosted_api", "api": "gpt-4o"}), traffic(5, INVOICE))
    per_request = ((765 + 100) * 2.50 + 200 * 10.00) / 1e6
    m = result.metrics
    assert m["gpus"] == 0
    assert m["cost_per_1k_requests_usd"] == pytest.approx(per_request * 1000)
    assert m["api_cost_per_day_usd"] == pytest.approx(per_request * m["requests_per_day"])
    median_s = load_catalog().api("gpt-4o").median_ttft_s(ApiInput(100, ((1024, 1024),)))
    assert m["ttft_p50_s"] == pytest.approx(median_s, rel=0.15)  # the catalog's lognormal median


def test_on_device_has_no_queue_across_users():
    phone = {"name": "phone", "kind": "on_device", "model": "smolvlm-256m", "device": "jetson-agx-orin"}
    calm = run(deployment(phone), traffic(1, INVOICE)).metrics
    busy = run(deployment(phone), traffic(50, INVOICE)).metrics
    assert busy["e2e_p99_s"] == pytest.approx(calm["e2e_p50_s"])  # same shape, same time, any load
    assert busy["queue_p99_s"] == 0
    assert busy["gpus"] == busy["cost_per_day_usd"] == 0


def test_on_device_model_must_fit_the_device():
    too_big = {"name": "phone", "kind": "on_device", "model": "qwen2.5-vl-72b", "device": "jetson-agx-orin"}
    with pytest.raises(ConfigurationError, match="jetson"):
        prepare(SimulationJob(deployment(too_big), traffic(1), horizon_s=10))


@pytest.mark.parametrize("split", [
    {"mode": "encode", "encoder_replicas": 1},
    {"mode": "prefill_decode", "prefill_replicas": 1, "decode_replicas": 1},
])
def test_disaggregated_stages_serve_everything(split):
    result = run(deployment(vlm7b(disaggregation=split)), traffic(3))
    assert result.metrics["completed"] == result.metrics["requests"]
    assert result.metrics["gpus"] == 2
    if split["mode"] == "prefill_decode":
        kv_bytes = load_catalog().decoders["qwen2.5-7b"].kv_bytes_per_token_bf16
        assert result.per_stage["vlm"]["kv_transferred_gb"] > result.metrics["requests"] * 300 * kv_bytes / 1e9


@pytest.mark.parametrize(("stage", "engines"), [
    (vlm7b(replicas=3, tensor_parallel=2), 6),
    (vlm7b(replicas=2, disaggregation={"mode": "encode", "encoder_replicas": 3, "encoder_gpu": "l40s"}), 2 + 3),
    (vlm7b(replicas=5, tensor_parallel=2, disaggregation={
        "mode": "prefill_decode", "prefill_replicas": 1, "decode_replicas": 2, "decode_gpu": "l40s"}), 2 + 4),
], ids=["colocated", "encoder-pool", "prefill-decode"])
def test_a_stage_reports_the_gpus_it_rents_from_one_count(stage: dict, engines: int):
    """A model stage's GPUs are its rented pools (``sim.build.stage_gpu_pools``): the count, the bill and the
    engines built agree, an encoder pool and a prefill/decode split included (``replicas`` sizes no split)."""
    run_parts = prepare(SimulationJob(deployment(stage), traffic(1), horizon_s=10))
    [pool] = run_parts.stages
    built = sum(len(r) * pool.spec.tensor_parallel for r in (pool.replicas, getattr(pool, "decoders", [])))
    assert pool.gpus == sum(gpus for _, gpus, _ in pool.gpu_pools()) == engines
    assert built + len(getattr(pool, "encoders", [])) == engines
    result = run(deployment(stage), traffic(1), horizon_s=10)
    vlm = result.per_stage["vlm"]
    assert result.metrics["gpus"] == vlm["gpus"] == engines
    if "prefill" in vlm:  # each side of a split reports its own rented pool
        pools = [(pool["gpu"], pool["gpus"]) for pool in vlm["gpu_pools"]]
        assert [(vlm[side]["gpu"], vlm[side]["gpus"]) for side in ("prefill", "decode")] == pools == [
            ("h100-sxm", 2), ("l40s", 4)]


def test_hot_expert_slows_moe_and_replication_relieves_it():
    def moe(**extra):
        return {"name": "moe", "kind": "model", "model": "mixtral-8x7b", "gpu": "h100-sxm", "tensor_parallel": 2,
                **extra}
    # Long prompts: prefill is compute-bound, where the hot expert's extra tokens cost time.
    spec = traffic(4, {"name": "doc", "text_tokens": 6000, "output_tokens": 20})
    even = run(deployment(moe()), spec).metrics["ttft_p50_s"]
    hot = run(deployment(moe(hot_expert_factor=3.0)), spec).metrics["ttft_p50_s"]
    relieved = run(deployment(moe(hot_expert_factor=3.0, expert_replication=3)), spec).metrics["ttft_p50_s"]
    assert hot > even * 1.05
    assert relieved == pytest.approx(even, rel=0.02)


def test_overload_ends_at_the_horizon_and_says_so():
    result = run(deployment(vlm7b()), traffic(300), horizon_s=60, drain_s=30)
    m = result.metrics
    assert m["overloaded"]
    assert m["unfinished"] > m["completed"]
    assert m["simulated_s"] <= 90
    assert result.timeseries["in_system"][-1] > result.timeseries["in_system"][0]
    assert m["slo_attainment"] < 0.5


def test_prompt_beyond_the_kv_cache_is_rejected_not_stuck():
    huge = {"name": "huge", "text_tokens": 2_000_000, "output_tokens": 10}
    result = run(deployment(vlm7b()), traffic(1, huge, CHAT), horizon_s=60)
    m = result.metrics
    assert m["rejected"] == result.per_class["huge"]["requests"] > 0
    assert m["unfinished"] == 0


def test_closed_loop_keeps_at_most_users_in_flight():
    spec = TrafficSpec.model_validate({"classes": [CHAT], "arrivals": {"kind": "closed_loop", "users": 3}})
    result = run(deployment(vlm7b()), spec, horizon_s=30)
    assert max(result.timeseries["in_system"]) <= 3
    e2e = result.metrics["e2e_mean_s"]
    assert result.metrics["throughput_rps"] == pytest.approx(3 / e2e, rel=0.1)


def test_progress_is_reported_and_cancel_stops_the_run():
    seen: list[float] = []
    simulate(SimulationJob(deployment(vlm7b()), traffic(2), horizon_s=60), progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == 1.0
    with pytest.raises(SimulationCancelled):
        simulate(SimulationJob(deployment(vlm7b()), traffic(2), horizon_s=60), cancel=lambda: True)


def job_for_determinism() -> SimulationJob:
    dep = deployment({"name": "api", "kind": "hosted_api", "api": "gpt-4o", "max_concurrency": 4},
                     vlm7b(replicas=2, load_balancer="round_robin"),
                     routes=[{"classes": ["chat"], "path": ["api"]}, {"classes": ["*"], "path": ["vlm"]}])
    return SimulationJob(dep, traffic(5), horizon_s=120, seed=11, slo=SloSpec(ttft_s=2.0, tpot_s=0.2, e2e_s=10.0))


def metrics_without_wall_time(job: SimulationJob) -> dict:
    result = simulate(job)
    return {k: v for k, v in result.metrics.items() if k != "sim_wall_s"} | {"per_class": result.per_class}


def test_same_job_same_metrics_in_another_process():
    job = job_for_determinism()
    here = metrics_without_wall_time(job)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        there = pool.submit(metrics_without_wall_time, job).result()
    assert here == there
    other_seed = metrics_without_wall_time(SimulationJob(job.deployment, job.traffic, job.horizon_s, seed=12))
    assert other_seed["e2e_p99_s"] != here["e2e_p99_s"]


def test_jobs_and_results_pickle():
    job = job_for_determinism()
    result = simulate(job)
    assert pickle.loads(pickle.dumps(job)).deployment == job.deployment
    again = pickle.loads(pickle.dumps(result))
    assert again.metrics == result.metrics
    assert again.timeseries == result.timeseries
    assert all(v is None or math.isfinite(v) for v in result.cdf["e2e_s"])


def test_time_series_covers_the_horizon_and_not_the_drain():
    """Completions during the drain after the horizon must not pile up in the last bin."""
    result = run(deployment(vlm7b(replicas=2)), traffic(4), horizon_s=600, timeseries_bins=60)
    series = result.timeseries
    completed = series["completed_rps"]
    steady = sum(completed[5:-1]) / len(completed[5:-1])
    assert completed[-1] < 1.5 * steady
    assert max(series["gpu_utilization"]) <= 1.0 + 1e-9
    assert series["in_system"][-1] >= 0


# ---------------------------------------------------------------- any configuration runs or is refused

CATALOG = load_catalog()
SERVING_MODELS = sorted(m for m, resolved in CATALOG.resolved.items() if resolved.kind != "classifier")


def inputs_the_model_takes(model_id: str, image_px: int, audio_s: float) -> list[dict]:
    """Chat always; images, audio and video only for a model with that encoder."""
    model = CATALOG.resolved[model_id]
    classes = [{"name": "chat", "share": 0.4, "text_tokens": {"kind": "lognormal", "median": 300, "sigma": 1.0},
                "output_tokens": {"kind": "lognormal", "median": 80, "sigma": 1.0}}]
    if model.vision is not None:
        classes.append({"name": "image", "share": 0.4, "images": {"count": 2, "width_px": image_px, "height_px": 800},
                        "text_tokens": 60, "output_tokens": 150})
    if model.audio is not None:
        classes.append({"name": "audio", "share": 0.1, "audio_s": audio_s, "text_tokens": 50, "output_tokens": 50})
    if model.video is not None:
        classes.append({"name": "video", "share": 0.1, "video": {"seconds": 5, "fps": 2, "width_px": 640,
                                                                "height_px": 360}, "text_tokens": 30, "output_tokens": 40})
    return classes


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(model=st.sampled_from(SERVING_MODELS), gpu=st.sampled_from(["h100-sxm", "a100-80gb", "l4", "l40s"]),
       tensor_parallel=st.sampled_from([1, 2, 4]), max_batch_size=st.sampled_from([1, 8, 256]),
       max_batched_tokens=st.sampled_from([512, 8192]), chunked_prefill=st.booleans(),
       memory=st.sampled_from([0.3, 0.9]), split=st.sampled_from([
           None, {"mode": "encode", "encoder_replicas": 1},
           {"mode": "prefill_decode", "prefill_replicas": 1, "decode_replicas": 2}]),
       arrivals=st.sampled_from([{"kind": "poisson", "rate_rps": 4}, {"kind": "closed_loop", "users": 6},
                                 {"kind": "offline", "requests": 60}]),
       image_px=st.sampled_from([448, 2000]), audio_s=st.sampled_from([5.0, 30.0]))
def test_any_configuration_simulates_or_is_refused_with_a_message(model, gpu, tensor_parallel, max_batch_size,
                                                                  max_batched_tokens, chunked_prefill, memory, split,
                                                                  arrivals, image_px, audio_s):
    """Never a crash (the compiled engine checks its types at run time) and never a hang."""
    stage = {"name": "m", "kind": "model", "model": model, "gpu": gpu, "tensor_parallel": tensor_parallel,
             "max_batch_size": max_batch_size, "max_batched_tokens": max_batched_tokens,
             "chunked_prefill": chunked_prefill, "gpu_memory_utilization": memory, "replicas": 2,
             **({"disaggregation": split} if split else {})}
    spec = TrafficSpec.model_validate({"classes": inputs_the_model_takes(model, image_px, audio_s),
                                       "arrivals": arrivals})
    try:
        result = run(deployment(stage), spec, horizon_s=20)
    except VlmplanError as error:  # e.g. the model does not fit: the CLI prints it and exits 2
        refusal = str(error)
        event("refused")
    else:
        refusal = ""
        event("simulated")
        metrics = result.metrics
        assert metrics["completed"] + metrics["rejected"] + metrics["unfinished"] == metrics["requests"]
    if refusal:
        assert "\n" not in refusal.strip()  # one line
