"""Hosted APIs in the simulator: billed by the catalog's own rule, timed by their input, held to rate limits."""

import json
import math

import pytest
import yaml
from click.testing import CliRunner

from planner.catalog_view import render_catalog
from planner.cli import cli
from planner.scenario import load_scenario
from profiles.catalog import load_catalog
from profiles.errors import ScenarioError
from profiles.models import API_AUDIO_TOKENS_PER_S, ApiInput, HostedApi, video_frames
from sim.api import SimulationJob, simulate
from sim.deployment import DeploymentSpec
from sim.request import Request
from sim.slo import SloSpec
from sim.traffic import TrafficSource, TrafficSpec

CATALOG = load_catalog()
API_IDS = sorted(CATALOG.apis)
SEED = 5

# Images of several sizes (two OpenAI tile grids, Claude's cap, Gemini's flat rate), text, video, audio.
MIXED_CLASSES = [
    {"name": "scan", "share": 3,
     "images": {"count": 1, "width_px": {"kind": "empirical", "values": [1700, 2480, 800]},
                "height_px": {"kind": "uniform", "low": 600, "high": 3300}},
     "text_tokens": {"kind": "lognormal", "median": 80, "sigma": 0.5, "max": 400},
     "output_tokens": {"kind": "lognormal", "median": 200, "sigma": 0.4, "max": 800}},
    {"name": "screens", "share": 2, "images": {"count": 2, "width_px": 1170, "height_px": 2532},
     "text_tokens": 300, "output_tokens": {"kind": "uniform", "low": 20, "high": 400}},
    {"name": "chat", "share": 2, "text_tokens": {"kind": "lognormal", "median": 600, "sigma": 0.8, "max": 6000},
     "output_tokens": {"kind": "lognormal", "median": 250, "sigma": 0.6, "max": 1500}},
    {"name": "clip", "share": 1, "video": {"seconds": 4.5, "fps": 30, "width_px": 1280, "height_px": 720},
     "audio_s": 4.5, "text_tokens": 40, "output_tokens": 120},
]


def mixed_traffic(rate_rps: float) -> TrafficSpec:
    return TrafficSpec.model_validate({"classes": MIXED_CLASSES, "arrivals": {"kind": "poisson", "rate_rps": rate_rps}})


def api_deployment(api_id: str, **stage: object) -> DeploymentSpec:
    return DeploymentSpec.model_validate(
        {"name": "api", "stages": [{"name": "api", "kind": "hosted_api", "api": api_id, **stage}]})


def listed_price_usd(api: HostedApi, request: Request) -> float:
    """One request's price written out from the vendor's rule: ``billed_image_tokens`` and the list prices."""
    image_tokens = sum(api.billed_image_tokens(width, height) for width, height in request.images)
    if request.video_s > 0:
        image_tokens += video_frames(request.video_s) * api.billed_image_tokens(*request.video_frame_px)
    audio_tokens = math.ceil(request.audio_s * API_AUDIO_TOKENS_PER_S)
    input_tokens = request.text_tokens + image_tokens + audio_tokens
    return (input_tokens * api.usd_per_m_input_tokens + request.output_tokens * api.usd_per_m_output_tokens) / 1e6


# ---------------------------------------------------------------- billing and latency, every API


@pytest.mark.parametrize("api_id", API_IDS)
def test_simulated_spend_is_the_catalog_rule_summed_over_the_requests(api_id):
    api = CATALOG.api(api_id)
    spec, horizon_s = mixed_traffic(1.0), 300.0
    result = simulate(SimulationJob(api_deployment(api_id), spec, horizon_s=horizon_s, seed=SEED))
    requests = list(TrafficSource(spec, SEED).requests(horizon_s))
    expected_usd = sum(listed_price_usd(api, request) for request in requests)
    m = result.metrics
    assert m["requests"] == m["completed"] == len(requests) > 200
    assert {r.request_class for r in requests} == {c["name"] for c in MIXED_CLASSES}
    assert result.per_stage["api"]["api_usd"] == pytest.approx(expected_usd, rel=1e-9)
    assert m["api_cost_per_day_usd"] == pytest.approx(expected_usd * 86400 / horizon_s, rel=1e-9)
    assert result.per_stage["api"]["output_tokens"] == sum(r.output_tokens for r in requests)


@pytest.mark.parametrize("api_id", API_IDS)
def test_a_larger_input_takes_longer_to_first_token(api_id):
    """Same arrivals and draws; only the input grows: every TTFT scales by the ratio of the medians.

    No rate limits here (``rate_limits: {}``): at 1 call/s the large calls exceed Claude's catalog TPM.
    """
    api = CATALOG.api(api_id)
    small = {"name": "q", "images": {"count": 1, "width_px": 512, "height_px": 512}, "text_tokens": 100,
             "output_tokens": 50}
    large = dict(small, images={"count": 4, "width_px": 2048, "height_px": 2048}, text_tokens=8000)
    ttft = {}
    for label, request_class in (("small", small), ("large", large)):
        spec = TrafficSpec.model_validate({"classes": [request_class], "arrivals": {"kind": "poisson", "rate_rps": 1}})
        job = SimulationJob(api_deployment(api_id, rate_limits={}), spec, horizon_s=120, seed=SEED)
        ttft[label] = simulate(job).metrics
    ratio = (api.median_ttft_s(ApiInput(8000, ((2048, 2048),) * 4))
             / api.median_ttft_s(ApiInput(100, ((512, 512),))))
    assert ratio > 1.5
    assert ttft["large"]["ttft_p50_s"] == pytest.approx(ttft["small"]["ttft_p50_s"] * ratio, rel=1e-6)
    assert ttft["large"]["ttft_p99_s"] == pytest.approx(ttft["small"]["ttft_p99_s"] * ratio, rel=1e-6)


@pytest.mark.parametrize("api_id", API_IDS)
def test_at_the_reference_input_the_published_ttft_is_reproduced(api_id):
    api = CATALOG.api(api_id)
    spec = TrafficSpec.model_validate({
        "classes": [{"name": "q", "text_tokens": api.ttft_reference_input_tokens, "output_tokens": 1}],
        "arrivals": {"kind": "poisson", "rate_rps": 10}})
    m = simulate(SimulationJob(api_deployment(api_id, rate_limits={}), spec, horizon_s=600, seed=SEED)).metrics
    assert m["ttft_p50_s"] == pytest.approx(api.ttft.p50_s, rel=0.05)
    assert m["ttft_p99_s"] == pytest.approx(api.ttft.p99_s, rel=0.15)


def test_output_tokens_arrive_at_the_api_rate():
    api = CATALOG.api("gpt-4o")
    spec = TrafficSpec.model_validate({"classes": [{"name": "q", "text_tokens": 500, "output_tokens": 301}],
                                       "arrivals": {"kind": "poisson", "rate_rps": 1}})
    m = simulate(SimulationJob(api_deployment("gpt-4o"), spec, horizon_s=60, seed=SEED)).metrics
    assert m["tpot_p50_s"] == pytest.approx(api.tpot_s)
    assert m["e2e_p50_s"] - m["ttft_p50_s"] == pytest.approx(300 * api.tpot_s, rel=0.2)


def test_the_catalog_gives_every_api_latency_slopes_and_rate_limits_with_their_tier():
    for api in CATALOG.apis.values():
        assert api.base_ttft_s > 0
        assert api.prefill_s_per_1k_input_tokens > 0
        assert api.ttft_s_per_image > 0
        limits = api.rate_limits
        assert limits is not None, api.id
        assert limits.requests_per_minute
        assert limits.tokens_per_minute
        assert limits.tier
        assert limits.source
        assert limits.unverified


def test_the_catalog_view_shows_the_image_multiplier_latency_slopes_and_rate_limits():
    text = render_catalog(CATALOG, as_json=False)
    assert "openai_tiles x33.33" in text
    assert "30,000/150,000,000* (OpenAI usage tier 5)" in text
    rows = {row["id"]: row for row in json.loads(render_catalog(CATALOG, as_json=True))["apis"]}
    mini = CATALOG.api("gpt-4o-mini")
    assert rows["gpt-4o-mini"]["prefill_s_per_1k_input_tokens"] == mini.prefill_s_per_1k_input_tokens
    assert rows["gpt-4o-mini"]["ttft_s_per_image"] == mini.ttft_s_per_image
    assert rows["gpt-4o-mini"]["tokens_per_minute"] == mini.rate_limits.tokens_per_minute


# ---------------------------------------------------------------- the buyer's question


INVOICES_PER_DAY, SCREENSHOTS_PER_DAY = 300_000, 50_000
INVOICE_PX, SCREENSHOT_PX = (1700, 2200), (1170, 2532)  # letter page at 200 dpi; an iPhone screenshot
INVOICE_TEXT, INVOICE_OUT, SCREENSHOT_TEXT, SCREENSHOT_OUT = 60, 200, 100, 150


def invoice_scenario(api_id: str) -> dict:
    """300,000 invoice scans and 50,000 phone screenshots a day to one API; p99 end to end under 8 s."""
    return {
        "name": "invoices-by-api", "seed": 7, "horizon_s": 3600,
        "traffic": {
            "arrivals": {"kind": "poisson", "requests_per_day": INVOICES_PER_DAY + SCREENSHOTS_PER_DAY},
            "classes": [
                {"name": "invoice", "share": INVOICES_PER_DAY, "text_tokens": INVOICE_TEXT,
                 "output_tokens": INVOICE_OUT,
                 "images": {"count": 1, "width_px": INVOICE_PX[0], "height_px": INVOICE_PX[1]}},
                {"name": "screenshot", "share": SCREENSHOTS_PER_DAY, "text_tokens": SCREENSHOT_TEXT,
                 "output_tokens": SCREENSHOT_OUT,
                 "images": {"count": 1, "width_px": SCREENSHOT_PX[0], "height_px": SCREENSHOT_PX[1]}},
            ]},
        "slo": {"ttft_s": None, "tpot_s": None, "e2e_s": 8.0, "attainment": 0.99},
        "deployments": [{"name": api_id, "stages": [{"name": "api", "kind": "hosted_api", "api": api_id}]}],
    }


def daily_bill_usd(api: HostedApi) -> float:
    """The day's traffic priced by hand from the vendor's rule (``billed_image_tokens``) and list prices."""
    usd_per_token_in, usd_per_token_out = api.usd_per_m_input_tokens / 1e6, api.usd_per_m_output_tokens / 1e6
    invoice = (INVOICE_TEXT + api.billed_image_tokens(*INVOICE_PX)) * usd_per_token_in + INVOICE_OUT * usd_per_token_out
    screenshot = ((SCREENSHOT_TEXT + api.billed_image_tokens(*SCREENSHOT_PX)) * usd_per_token_in
                  + SCREENSHOT_OUT * usd_per_token_out)
    return INVOICES_PER_DAY * invoice + SCREENSHOTS_PER_DAY * screenshot


@pytest.mark.parametrize("command", ["simulate", "plan"])
def test_invoice_traffic_on_gpt_4o_mini_costs_about_1500_usd_a_day(tmp_path, command):
    """GPT-4o mini bills an image at 33.33x GPT-4o's tokens: ~$1,550/day here, not the ~$90 of text rates."""
    path = tmp_path / "invoices.yaml"
    path.write_text(yaml.safe_dump(invoice_scenario("gpt-4o-mini")))
    done = CliRunner().invoke(cli, [command, str(path), "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    metrics = json.loads(done.stdout)["deployments"][0]["metrics"]
    expected = daily_bill_usd(CATALOG.api("gpt-4o-mini"))
    assert 1450 < expected < 1650
    assert metrics["cost_per_day_usd"] == pytest.approx(expected, rel=0.03)


# ---------------------------------------------------------------- rate limits


def burst_job(api_id: str, calls: int, **stage: object) -> SimulationJob:
    """``calls`` identical text calls (1,000 tokens in, 1 out) all at t = 0."""
    spec = TrafficSpec.model_validate({"classes": [{"name": "q", "text_tokens": 1000, "output_tokens": 1}],
                                       "arrivals": {"kind": "offline", "requests": calls}})
    return SimulationJob(api_deployment(api_id, **stage), spec, horizon_s=60, seed=SEED, drain_s=600,
                         slo=SloSpec(ttft_s=None, tpot_s=None, e2e_s=30.0))


def one_call_usd(api_id: str) -> float:
    return CATALOG.api(api_id).bill(ApiInput(1000), 1).usd


@pytest.mark.parametrize(("limits", "gap_s"), [
    ({"requests_per_minute": 6}, 10.0),  # a full bucket of 6, then one call per 10 s
    ({"tokens_per_minute": 3003}, 20.0),  # 1,001 tokens a call: 3 at once, then one per 20 s
])
def test_wait_delays_calls_beyond_the_limit_and_bills_each_once(limits, gap_s):
    calls, burst = 12, 6 if "requests_per_minute" in limits else 3
    result = simulate(burst_job("gpt-4o", calls, rate_limits=limits))
    m, stage = result.metrics, result.per_stage["api"]
    assert m["completed"] == calls
    assert m["rejected"] == 0
    assert stage["rate_limit_waits"] == calls - burst
    waits_s = [gap_s * (k - burst + 1) for k in range(burst, calls)]
    assert stage["rate_limit_wait_s"] == pytest.approx(sum(waits_s))
    assert m["queue_p99_s"] == pytest.approx(waits_s[-1], rel=0.02)  # the last call waited longest
    assert stage["api_usd"] == pytest.approx(calls * one_call_usd("gpt-4o"))
    assert stage["on_rate_limit"] == "wait"
    assert (stage["requests_per_minute"], stage["tokens_per_minute"]) == (
        limits.get("requests_per_minute"), limits.get("tokens_per_minute"))


def test_fail_rejects_calls_beyond_the_limit_counts_them_as_misses_and_does_not_bill_them():
    calls = 12
    result = simulate(burst_job("gpt-4o-mini", calls, rate_limits={"requests_per_minute": 6}, on_rate_limit="fail"))
    m, stage = result.metrics, result.per_stage["api"]
    assert m["completed"] == 6
    assert m["rejected"] == calls - 6
    assert stage["rate_limit_failures"] == stage["rejected"] == calls - 6
    assert m["slo_attainment"] == pytest.approx(6 / calls)
    assert stage["api_usd"] == pytest.approx(6 * one_call_usd("gpt-4o-mini"))
    assert stage["input_tokens"] == 6 * 1000


def test_a_call_larger_than_a_minute_of_tokens_fails_even_when_waiting():
    result = simulate(burst_job("gemini-1.5-flash", 3, rate_limits={"tokens_per_minute": 1000}))
    assert result.metrics["rejected"] == 3
    assert result.per_stage["api"]["api_usd"] == 0


def test_the_catalog_limits_apply_unless_the_stage_overrides_them():
    """Claude 3.5 Sonnet's catalog tier: 400,000 tokens a minute hold 399 calls of 1,001 tokens at once."""
    limits = CATALOG.api("claude-3.5-sonnet").rate_limits
    burst, calls = limits.tokens_per_minute // 1001, limits.tokens_per_minute // 1001 + 10
    catalog_limited = simulate(burst_job("claude-3.5-sonnet", calls)).per_stage["api"]
    assert catalog_limited["rate_limit_waits"] == calls - burst == 10
    assert catalog_limited["rate_limit_tier"] == limits.tier
    unlimited = simulate(burst_job("claude-3.5-sonnet", calls, rate_limits={})).per_stage["api"]
    assert unlimited["rate_limit_waits"] == 0
    assert unlimited["requests_per_minute"] is None


def test_failing_calls_leave_room_that_refills_at_the_limit_rate():
    """2 calls/s against 60 a minute for 600 s: a full bucket of 60, then one call a second gets through."""
    spec = TrafficSpec.model_validate({"classes": [{"name": "q", "text_tokens": 200, "output_tokens": 20}],
                                       "arrivals": {"kind": "poisson", "rate_rps": 2}})
    dep = api_deployment("gpt-4o", rate_limits={"requests_per_minute": 60}, on_rate_limit="fail")
    m = simulate(SimulationJob(dep, spec, horizon_s=600, seed=SEED)).metrics
    assert m["requests"] > 1100
    assert 640 <= m["completed"] <= 60 + 600
    assert m["rejected"] == m["requests"] - m["completed"]


def test_bad_rate_limit_settings_name_their_field(tmp_path):
    scenario = invoice_scenario("gpt-4o-mini")
    scenario["deployments"][0]["stages"][0].update(on_rate_limit="retry", rate_limits={"requests_per_minute": 0})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(scenario))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "bad.yaml: deployments.0.stages.0.on_rate_limit: Input should be 'wait' or 'fail'" in message
    assert "bad.yaml: deployments.0.stages.0.rate_limits.requests_per_minute: Input should be greater than 0" in message


def test_an_api_whose_reference_prefill_exceeds_its_ttft_is_refused(tmp_path):
    scenario = invoice_scenario("slow")
    scenario["catalog"] = {"apis": [{
        "id": "slow", "name": "slow", "usd_per_m_input_tokens": 1, "usd_per_m_output_tokens": 1,
        "image_tokens": "fixed_258", "ttft": {"p50_s": 0.5, "p99_s": 2.0}, "prefill_s_per_1k_input_tokens": 0.6,
        "ttft_s_per_image": 0.1, "tpot_s": 0.01, "source": "test"}]}
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(scenario))
    with pytest.raises(ScenarioError, match=r"catalog.apis.0: .*ttft.p50_s \(0.5 s\) must exceed the prefill"):
        load_scenario(path)
