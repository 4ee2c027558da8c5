"""Closed-loop traffic as benchmark tools run it: ramp-up, the client's overhead, mean latencies."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sim.api import SimulationJob, simulate
from sim.deployment import DeploymentSpec
from sim.metrics import latency_summary
from sim.traffic import TrafficSource, TrafficSpec

PROMPT = {"name": "bench", "text_tokens": 2048, "output_tokens": 128}
# Scheduled step by step (no async scheduling, which makes a prompt that arrives mid-step wait up to one
# more decode step): these tests look at the client's timing alone.
ONE_8B_FIELDS = {"name": "llama-8b", "stages": [
    {"name": "llm", "kind": "model", "model": "llama-3-8b", "gpu": "h100-sxm", "async_scheduling": False}]}
ONE_8B = DeploymentSpec.model_validate(ONE_8B_FIELDS)


def closed_loop(users: int, **settings: object) -> TrafficSpec:
    """A fixed-size prompt sent by ``users`` users with no think time."""
    arrivals = {"kind": "closed_loop", "users": users, "think_time_s": 0.0, **settings}
    return TrafficSpec.model_validate({"classes": [PROMPT], "arrivals": arrivals})


def ttft_quantiles(users: int, **settings: object) -> np.ndarray:
    """The TTFT percentiles 0..100 of 60 simulated seconds, seconds."""
    result = simulate(SimulationJob(ONE_8B, closed_loop(users, **settings), horizon_s=60, seed=5))
    return np.array(result.cdf["ttft_s"])


def test_users_started_together_lock_step_and_a_ramp_up_spreads_them():
    # Alone, a request's TTFT is one prefill. Five users started at the same instant
    # with fixed lengths (AIPerf --isl-stddev 0, as AIConfigurator's runs) finish in the
    # same engine step and come back together, so each cycle most of them queue behind
    # other prompts' prefills (TTFT >= 1.9x alone). Started over a ramp-up (AIPerf
    # --concurrency-ramp-duration), they stay spread over the cycle.
    alone_s = float(np.median(ttft_quantiles(1)))
    together = ttft_quantiles(5)
    ramped = ttft_quantiles(5, ramp_up_s=1.5)
    assert np.mean(together >= 1.9 * alone_s) > 0.7
    assert np.mean(ramped >= 1.9 * alone_s) < 0.05
    assert float(np.median(ramped)) == pytest.approx(alone_s, rel=0.15)


def test_lengths_drawn_as_bench_serving_draws_them_break_the_lock_step():
    # InferenceMAX runs `benchmark_serving.py --random-range-ratio 0.8`: every prompt and
    # output length uniform on [0.8 x len, len]. Users started together then finish in
    # different steps and drift apart: few wait for another prompt's prefill.
    alone_s = float(np.median(ttft_quantiles(1)))
    spread = {"name": "bench", "text_tokens": {"kind": "uniform", "low": 0.8 * 2048, "high": 2048},
              "output_tokens": {"kind": "uniform", "low": 0.8 * 128, "high": 128}}
    traffic = TrafficSpec.model_validate({"classes": [spread], "arrivals": {
        "kind": "closed_loop", "users": 5, "think_time_s": 0.0}})
    drifted = np.array(simulate(SimulationJob(ONE_8B, traffic, horizon_s=60, seed=5)).cdf["ttft_s"])
    assert np.mean(drifted >= 1.9 * alone_s) < 0.05
    assert float(np.median(drifted)) == pytest.approx(alone_s, rel=0.15)


def test_ramp_up_starts_users_in_order_with_the_client_overhead_on_top():
    spec = closed_loop(4, ramp_up_s=2.0, client_overhead_s={"kind": "uniform", "low": 0.001, "high": 0.002})
    source = TrafficSource(spec, seed=1)
    starts = source.start_delays_s()
    assert len(starts) == 4
    for user, start_s in enumerate(starts):
        assert 0.5 * user + 0.001 <= start_s <= 0.5 * user + 0.002
    gaps = [source.next_gap_s(0) for _ in range(100)]  # zero think: the client's overhead alone
    assert min(gaps) >= 0.001
    assert max(gaps) <= 0.002
    assert len(set(gaps)) == 100  # drawn per request
    again = TrafficSource(spec, seed=1)
    assert again.start_delays_s() == starts


def test_simulate_json_reports_mean_ttft_tpot_and_itl(tmp_path):
    scenario = tmp_path / "bench.yaml"
    scenario.write_text(json.dumps({
        "name": "bench", "seed": 1, "horizon_s": 20,
        "traffic": closed_loop(2, ramp_up_s=0.5).model_dump(mode="json"),
        "slo": {"ttft_s": 10},
        "deployments": [ONE_8B_FIELDS]}))
    done = subprocess.run([sys.executable, "-m", "planner", "simulate", str(scenario), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)["deployments"][0]["metrics"]
    assert metrics["ttft_p50_s"] <= metrics["ttft_mean_s"] * 1.5
    # Fixed output length: every request's TPOT is near the mean, which lies between p50 and p99.
    assert metrics["tpot_mean_s"] == pytest.approx(metrics["tpot_p50_s"], rel=0.1)
    assert metrics["tpot_mean_s"] <= metrics["tpot_p99_s"]
    assert metrics["itl_mean_s"] == pytest.approx(metrics["tpot_mean_s"], rel=1e-9)  # one output length


def test_mean_itl_weighs_every_token_gap_as_vllm_bench_serve_does():
    # Two requests: 2 gaps of 10 ms, then 4 gaps of 40 ms. Mean TPOT is per request
    # (25 ms); vLLM's mean ITL pools the gaps: (2 x 10 + 4 x 40) / 6 = 30 ms.
    ttft = np.array([0.1, 0.1])
    tpot = np.array([0.010, 0.040])
    e2e = ttft + tpot * np.array([2, 4])
    summary = latency_summary(ttft, e2e, tpot, np.zeros(2))
    assert summary["tpot_mean_s"] == pytest.approx(0.025)
    assert summary["itl_mean_s"] == pytest.approx(0.030)
    single_token = latency_summary(ttft, ttft, np.full(2, np.nan), np.zeros(2))
    assert single_token["itl_mean_s"] is None


def many_users(users: int) -> TrafficSource:
    """A closed loop of ``users`` sending the bundled-like image and chat requests."""
    classes = [{"name": "doc", "share": 0.7, "images": {"count": 1, "width_px": 1200, "height_px": 900},
                "text_tokens": {"kind": "lognormal", "median": 300, "sigma": 0.5, "max": 4000},
                "output_tokens": {"kind": "uniform", "low": 10, "high": 200}},
               {"name": "chat", "share": 0.3, "text_tokens": 100, "output_tokens": 50}]
    return TrafficSource(TrafficSpec.model_validate({"classes": classes, "arrivals": {
        "kind": "closed_loop", "users": users, "think_time_s": {"kind": "uniform", "low": 0.5, "high": 1.5}}}), seed=3)


def test_many_users_keep_a_few_hundred_bytes_each():
    # All users start within a millisecond, in random order, and each sends a request, thinks and
    # asks for its next gap. Before, each user kept three random streams and a block of 64 drawn requests
    # (about 24 kB): 40,000 users needed some 1 GB (the check fails after 4,000). Now a user keeps three
    # counters, and the draws made for 1,024 neighbouring users wait until each has taken its own: at most
    # about one drawn request, think time and overhead a user.
    import tracemalloc

    users = 40_000
    source = many_users(users)
    order = np.random.default_rng(1).permutation(users).tolist()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        starts_s = source.start_delays_s()  # as the driver: every user's start, held until all have started
        for done, user in enumerate(order, start=1):
            source.next_request(user, 0.0)  # in flight elsewhere: not the source's memory
            source.next_gap_s(user)
            if done % 4_000 == 0:
                held = tracemalloc.get_traced_memory()[0] - base
                assert held < 600 * users, f"{held / users:,.0f} bytes a user after {done:,} users"
        peak = tracemalloc.get_traced_memory()[1] - base
        assert len(starts_s) == users
    finally:
        tracemalloc.stop()
    assert peak < 600 * users


def test_a_users_draws_depend_on_the_user_alone_not_on_the_order_or_on_what_was_kept(monkeypatch):
    # Common random numbers: the same user sends the same requests whatever the deployment's latencies
    # (the order in which users ask), even when drawn blocks were dropped to bound memory and drawn again.
    from sim.traffic import closed_loop

    def drawn(order: list[int], rounds: int) -> dict[int, list]:
        source = many_users(2_000)
        seen: dict[int, list] = {user: [] for user in order}
        for _ in range(rounds):
            for user in order:
                request = source.next_request(user, 0.0)
                seen[user].append((request.request_class, request.images, request.text_tokens,
                                   request.output_tokens, source.next_gap_s(user)))
        return seen

    users = list(range(2_000))  # more than GROUP_USERS: draws are made for 1,024 users at once
    in_order = drawn(users, 3)
    monkeypatch.setattr(closed_loop, "MAX_KEPT_DRAWS", 1_500)  # blocks dropped before every user took its own
    shuffled = drawn(np.random.default_rng(2).permutation(users).tolist(), 3)
    assert shuffled == in_order
    assert len({tuple(draws) for draws in in_order.values()}) == 2_000  # each user its own sequence


@pytest.mark.parametrize("arrivals", [{"kind": "closed_loop", "users": 2, "think_time_s": 1.0},
                                      {"kind": "closed_loop", "users": 2_000, "think_time_s": 1.0},
                                      {"kind": "poisson", "rate_rps": 5.0}])
def test_drawn_sizes_reach_the_request_fields_of_their_names(arrivals):
    # Requests are built from drawn rows in Request's positional order (sim.traffic.assembly.size_rows): a field
    # added to Request, or moved, would shift every size into its neighbour. Each size here is unlike the others.
    media = {"name": "media", "images": {"count": 2, "width_px": 640, "height_px": 480}, "audio_s": 7.0,
             "video": {"seconds": 3.0, "fps": 2.0, "width_px": 320, "height_px": 240}, "text_tokens": 11,
             "output_tokens": 13, "tier": "low_res"}
    source = TrafficSource(TrafficSpec.model_validate({"classes": [media], "arrivals": arrivals}), seed=1)
    if source.closed_loop is not None:
        requests = [source.next_request(user, 0.25) for user in (0, 1)]
    else:
        requests = list(source.requests(2.0))[:2]
    assert len(requests) == 2
    for request in requests:
        assert (request.request_class, request.tier) == ("media", "low_res")
        assert request.images == ((640, 480), (640, 480))
        assert (request.audio_s, request.video_s, request.video_fps) == (7.0, 3.0, 2.0)
        assert request.video_frame_px == (320, 240)
        assert (request.text_tokens, request.output_tokens) == (11, 13)
