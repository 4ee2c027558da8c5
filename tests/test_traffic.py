"""Traffic: arrival processes, size distributions, seeded independent streams, replay."""

import itertools
import math
import types
from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from sim.request import Request
from sim.traffic import TrafficSource, TrafficSpec

INVOICE = {"name": "invoice", "share": 0.6, "images": {"width_px": 1700, "height_px": 2200},
           "text_tokens": 60, "output_tokens": {"kind": "lognormal", "median": 200, "sigma": 0.25}}
CHAT = {"name": "chat", "share": 0.4, "text_tokens": {"kind": "empirical", "values": [50, 200, 800]},
        "output_tokens": {"kind": "normal", "mean": 30, "std": 40}}


def spec(arrivals: dict, classes: list[dict] | None = None, start_s: float = 0.0) -> TrafficSpec:
    """A traffic spec from plain dicts (as a scenario file would give them)."""
    return TrafficSpec.model_validate({"classes": classes or [INVOICE, CHAT], "arrivals": arrivals,
                                       "start_s": start_s})


def arrivals_of(source: TrafficSource, horizon_s: float, name: str | None = None) -> list[Request]:
    """All requests (of class ``name``, if given) up to the horizon."""
    return [r for r in source.requests(horizon_s) if name is None or r.request_class == name]


# ---------------------------------------------------------------- determinism and independence


def test_same_seed_gives_the_same_requests_and_another_seed_does_not():
    traffic = spec({"kind": "poisson", "rate_rps": 5})
    first = arrivals_of(TrafficSource(traffic, seed=7), 200)
    assert first == arrivals_of(TrafficSource(traffic, seed=7), 200)
    assert first != arrivals_of(TrafficSource(traffic, seed=8), 200)


def test_adding_a_class_on_top_leaves_the_other_classes_arrivals_unchanged():
    # Two classes at 3 and 2 req/s; then a third class added at 5 req/s (shares re-normalised).
    before = spec({"kind": "poisson", "rate_rps": 5}, [INVOICE, CHAT])
    video = {"name": "video", "share": 1.0, "video": {"seconds": 10}, "text_tokens": 40, "output_tokens": 150}
    after = spec({"kind": "poisson", "rate_rps": 10}, [INVOICE, CHAT, video])
    for name in ("invoice", "chat"):
        old = arrivals_of(TrafficSource(before, 3), 600, name)
        new = arrivals_of(TrafficSource(after, 3), 600, name)
        assert [(r.arrival_s, r.output_tokens, r.text_tokens) for r in old] == \
               [(r.arrival_s, r.output_tokens, r.text_tokens) for r in new]


def test_class_order_in_the_file_does_not_change_any_class_stream():
    one = arrivals_of(TrafficSource(spec({"kind": "poisson", "rate_rps": 4}, [INVOICE, CHAT]), 1), 300)
    two = arrivals_of(TrafficSource(spec({"kind": "poisson", "rate_rps": 4}, [CHAT, INVOICE]), 1), 300)
    assert [(r.arrival_s, r.request_class) for r in one] == [(r.arrival_s, r.request_class) for r in two]


def test_requests_is_a_lazy_time_ordered_generator_numbered_from_zero():
    source = TrafficSource(spec({"kind": "poisson", "rate_rps": 50}), 1)
    stream = source.requests(1e9)  # a lifetime of traffic: must not be built up front
    assert isinstance(stream, types.GeneratorType)
    first = list(itertools.islice(stream, 5000))
    assert [r.id for r in first] == list(range(5000))
    assert all(a.arrival_s <= b.arrival_s for a, b in itertools.pairwise(first))


def test_a_busy_class_is_drawn_in_shorter_chunks_and_still_merges_in_time_order():
    busy = dict(CHAT, share=999.0)
    calm = dict(INVOICE, share=1.0)
    requests = arrivals_of(TrafficSource(spec({"kind": "poisson", "rate_rps": 1000}, [busy, calm]), 5), 120)
    assert all(a.arrival_s <= b.arrival_s for a, b in itertools.pairwise(requests))
    assert abs(len(requests) - 120_000) < 4 * math.sqrt(120_000)
    assert all(0 <= r.arrival_s < 120 for r in requests)


# ---------------------------------------------------------------- arrival processes


def test_poisson_count_and_exponential_gaps():
    requests = arrivals_of(TrafficSource(spec({"kind": "poisson", "rate_rps": 10}), 11), 2000)
    assert abs(len(requests) - 20_000) < 4 * math.sqrt(20_000)
    gaps = np.diff([r.arrival_s for r in requests])
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.04)  # exponential: CV 1


def test_shares_split_the_mix():
    counts = Counter(r.request_class for r in TrafficSource(spec({"kind": "poisson", "rate_rps": 10}), 2)
                     .requests(2000))
    total = sum(counts.values())
    assert counts["invoice"] / total == pytest.approx(0.6, abs=0.015)


def test_requests_per_day_is_a_rate():
    source = TrafficSource(spec({"kind": "poisson", "requests_per_day": 864_000}), 1)
    assert source.mean_rate_rps == pytest.approx(10.0)
    assert source.peak_rate_rps == pytest.approx(10.0)


def test_diurnal_peak_to_trough_ratio_shows_in_hourly_counts():
    traffic = spec({"kind": "diurnal", "requests_per_day": 40_000, "peak_to_trough": 3.0, "peak_hour": 14})
    source = TrafficSource(traffic, 4)
    hours = Counter(int(r.arrival_s // 3600) for r in source.requests(86_400))
    assert sum(hours.values()) == pytest.approx(40_000, rel=0.03)
    assert hours[14] / hours[2] == pytest.approx(3.0, rel=0.15)
    assert max(hours, key=hours.get) in (13, 14, 15)
    assert source.mean_rate_rps == pytest.approx(40_000 / 86_400)
    assert source.peak_rate_rps == pytest.approx(1.5 * 40_000 / 86_400)  # amplitude (3-1)/(3+1)


def test_hourly_weights_silence_the_night():
    weights = [0.0] * 8 + [1.0] * 16  # closed from 00:00 to 08:00
    traffic = spec({"kind": "diurnal", "mean_rate_rps": 0.5, "hourly_weights": weights})
    times = np.array([r.arrival_s for r in TrafficSource(traffic, 6).requests(86_400)])
    assert not np.any((times > 0.5 * 3600) & (times < 7.5 * 3600))  # interpolated between hour centres
    assert len(times) == pytest.approx(0.5 * 86_400, rel=0.03)


def test_start_s_moves_the_simulated_window_to_the_peak():
    curve = {"kind": "diurnal", "requests_per_day": 100_000, "peak_to_trough": 3.0, "peak_hour": 14}
    at_peak = len(arrivals_of(TrafficSource(spec(curve, start_s=13.5 * 3600), 1), 3600))
    at_night = len(arrivals_of(TrafficSource(spec(curve, start_s=1.5 * 3600), 1), 3600))
    assert at_peak == pytest.approx(100_000 / 24 * 1.5, rel=0.05)
    assert at_night == pytest.approx(100_000 / 24 * 0.5, rel=0.08)


def test_onoff_bursts_keep_the_mean_and_make_counts_overdispersed():
    bursty = spec({"kind": "poisson", "rate_rps": 2.0,
                   "bursts": {"kind": "onoff", "burst_multiplier": 6, "mean_burst_s": 10, "mean_gap_s": 90}})
    source = TrafficSource(bursty, 9)
    times = np.array([r.arrival_s for r in source.requests(20_000)])
    assert len(times) == pytest.approx(40_000, rel=0.06)
    counts = np.bincount((times // 10).astype(int), minlength=2000)
    assert counts.var() / counts.mean() > 3  # Poisson: 1
    # Stationary mean of (1, 6) over (90 s, 10 s) is 1.5: the burst state runs 6/1.5 = 4x the mean.
    assert source.peak_rate_rps == pytest.approx(8.0)


def test_mmpp_multipliers_are_normalised_to_the_stated_mean():
    bursty = spec({"kind": "poisson", "rate_rps": 3.0,
                   "bursts": {"kind": "mmpp", "states": [{"rate_multiplier": 0.5, "mean_sojourn_s": 60},
                                                         {"rate_multiplier": 3.0, "mean_sojourn_s": 20}]}})
    # Stationary mean of (0.5, 3) over (60 s, 20 s) is 1.125; a run's count varies ~8%, so average 8 runs.
    counts = [sum(1 for _ in TrafficSource(bursty, seed).requests(5000)) for seed in range(8)]
    assert np.mean(counts) == pytest.approx(15_000, rel=0.08)
    assert TrafficSource(bursty, 0).peak_rate_rps == pytest.approx(3.0 * 3.0 / 1.125)


def test_offline_puts_the_exact_mix_at_time_zero():
    requests = arrivals_of(TrafficSource(spec({"kind": "offline", "requests": 1001}), 1), 1.0)
    assert len(requests) == 1001
    assert {r.arrival_s for r in requests} == {0.0}
    assert Counter(r.request_class for r in requests) == {"invoice": 601, "chat": 400}
    assert [r.id for r in requests] == list(range(1001))
    assert math.isnan(TrafficSource(spec({"kind": "offline", "requests": 5}), 1).mean_rate_rps)


def test_closed_loop_users_have_their_own_streams():
    traffic = spec({"kind": "closed_loop", "users": 3, "think_time_s": {"kind": "uniform", "low": 1, "high": 3}})
    alone, mixed = TrafficSource(traffic, 1), TrafficSource(traffic, 1)
    solo = [alone.next_request(0, float(t)) for t in range(100)]
    interleaved = []
    for t in range(100):
        mixed.next_request(1, float(t))
        interleaved.append(mixed.next_request(0, float(t)))
    assert [(r.request_class, r.output_tokens) for r in solo] == \
           [(r.request_class, r.output_tokens) for r in interleaved]
    assert [r.id for r in interleaved] == list(range(1, 200, 2))  # ids are unique across users
    assert interleaved[5].arrival_s == 5.0
    assert alone.closed_loop.users == 3
    assert alone.closed_loop.think_time_s == pytest.approx(2.0)
    thinks = [alone.think_time_s(0) for _ in range(1000)]
    assert min(thinks) >= 1
    assert max(thinks) <= 3
    assert np.mean(thinks) == pytest.approx(2.0, abs=0.1)
    assert list(alone.requests(100)) == []


# ---------------------------------------------------------------- sizes


def test_sizes_follow_their_distributions():
    requests = arrivals_of(TrafficSource(spec({"kind": "poisson", "rate_rps": 20}), 1), 1000)
    invoices = [r for r in requests if r.request_class == "invoice"]
    chats = [r for r in requests if r.request_class == "chat"]
    assert {r.images for r in invoices} == {((1700, 2200),)}
    assert np.median([r.output_tokens for r in invoices]) == pytest.approx(200, rel=0.03)
    assert {r.text_tokens for r in chats} == {50, 200, 800}
    assert min(r.output_tokens for r in chats) == 1  # normal(30, 40) is clipped at one token
    assert all(r.images == () and r.audio_s == 0 for r in chats)


def test_image_count_and_video_are_drawn_per_request():
    classes = [{"name": "album", "images": {"count": {"kind": "empirical", "values": [0, 1, 3]},
                                            "width_px": {"kind": "uniform", "low": 100, "high": 200},
                                            "height_px": 50},
                "text_tokens": 10, "output_tokens": 10, "tier": "high_res"},
               {"name": "clip", "video": {"seconds": 10, "fps": 30, "width_px": 1280, "height_px": 720},
                "audio_s": 10, "text_tokens": 40, "output_tokens": 150}]
    requests = arrivals_of(TrafficSource(spec({"kind": "poisson", "rate_rps": 5}, classes), 3), 200)
    albums = [r for r in requests if r.request_class == "album"]
    assert {len(r.images) for r in albums} == {0, 1, 3}
    assert all(100 <= w <= 200 and h == 50 for r in albums for w, h in r.images)
    assert {r.tier for r in albums} == {"high_res"}
    clip = next(r for r in requests if r.request_class == "clip")
    assert (clip.video_s, clip.video_fps, clip.video_frame_px, clip.audio_s) == (10.0, 30.0, (1280, 720), 10.0)


# ---------------------------------------------------------------- trace replay


def trace(count: int, gap_s: float = 1.0) -> list[Request]:
    """``count`` chat requests, one every ``gap_s`` seconds."""
    return [Request(id=i, arrival_s=i * gap_s, request_class="chat", text_tokens=100 + i, output_tokens=20)
            for i in range(count)]


def test_trace_replay_keeps_order_and_takes_the_declared_tier():
    traffic = spec({"kind": "trace", "path": "t.csv"}, [dict(CHAT, tier="high_res")])
    replayed = list(TrafficSource(traffic, 1, list(reversed(trace(100)))).requests(50))
    assert [r.text_tokens for r in replayed] == [100 + i for i in range(50)]
    assert {r.tier for r in replayed} == {"high_res"}
    assert [r.id for r in replayed] == list(range(50))


@pytest.mark.parametrize("multiplier", [0.5, 2.5])
def test_trace_rate_multiplier_thins_or_duplicates_reproducibly(multiplier):
    traffic = spec({"kind": "trace", "path": "t.csv", "rate_multiplier": multiplier})
    source = TrafficSource(traffic, 1, trace(4000))
    replayed = list(source.requests(10_000))
    assert len(replayed) == pytest.approx(4000 * multiplier, rel=0.05)
    assert all(a.arrival_s <= b.arrival_s for a, b in itertools.pairwise(replayed))
    assert replayed == list(source.requests(10_000))
    assert source.mean_rate_rps == pytest.approx(multiplier * 4000 / 3999)


def test_a_trace_source_without_its_trace_is_a_configuration_error():
    from profiles.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="trace"):
        TrafficSource(spec({"kind": "trace", "path": "t.csv"}), 1)


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize(("arrivals", "message"), [
    ({"kind": "poisson"}, "exactly one of rate_rps, requests_per_day"),
    ({"kind": "diurnal", "requests_per_day": 10}, "exactly one of hourly_weights, peak_to_trough"),
    ({"kind": "diurnal", "requests_per_day": 10, "hourly_weights": [1] * 23}, "at least 24"),
    ({"kind": "poisson", "rate_rps": float("inf")}, "finite"),
    ({"kind": "poisson", "rate_rps": 1, "bursts": {"kind": "mmpp", "states": [
        {"rate_multiplier": 1, "mean_sojourn_s": 1}, {"rate_multiplier": 2, "mean_sojourn_s": 1}],
        "transitions": [[0.5, 0.5], [1, 0]]}}, "must be 0"),
    ({"kind": "trace", "path": "x", "window_s": [5, 1]}, "not after start"),
    ({"kind": "sometimes"}, "does not match any of the expected tags"),
])
def test_bad_arrivals_are_rejected_with_a_reason(arrivals, message):
    with pytest.raises(ValidationError, match=message):
        spec(arrivals)


def test_duplicate_class_names_and_zero_shares_are_rejected():
    with pytest.raises(ValidationError, match="duplicate class names: chat"):
        spec({"kind": "poisson", "rate_rps": 1}, [CHAT, CHAT])
    with pytest.raises(ValidationError, match="shares sum to 0"):
        spec({"kind": "poisson", "rate_rps": 1}, [dict(CHAT, share=0)])


def test_streams_do_not_depend_on_the_process_hash_seed():
    import os
    import subprocess
    import sys

    code = ("from sim.traffic import TrafficSource, TrafficSpec; import json, sys; "
            "spec = TrafficSpec.model_validate(json.loads(sys.argv[1])); "
            "print([round(r.arrival_s, 9) for r in TrafficSource(spec, 5).requests(20)])")
    traffic = spec({"kind": "poisson", "rate_rps": 2}).model_dump_json()
    outputs = {subprocess.run([sys.executable, "-c", code, traffic], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout
               for hash_seed in ("1", "2")}
    assert len(outputs) == 1
    assert outputs.pop().count(",") > 10
