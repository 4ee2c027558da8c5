"""Accounting of re-sent work: what sizing counts of conversations, what admission charges a cached prompt, when
computed blocks become reusable, and host memory as a second prefix-cache tier."""

import pytest

from planner.autoscale import count_requests
from planner.bounds import deployment_bounds
from sim.api import SimulationJob, simulate
from sim.deployment import DeploymentSpec
from sim.traffic import TrafficSpec

CHAT = {"name": "chat", "system_prompt_tokens": 1000, "text_tokens": 200, "output_tokens": 30,
        "session": {"turns": 4, "think_time_s": 1.0, "follow_up": {"text_tokens": 50}}}
AGENT = {"name": "agent", "text_tokens": 300, "output_tokens": 40,
         "session": {"turns": 3, "think_time_s": 0.5, "success_probability": 0.5, "max_retries": 2}}


def chat_job(classes: list[dict], rate_rps: float = 2.0, horizon_s: float = 120.0) -> SimulationJob:
    spec = TrafficSpec.model_validate({"classes": classes, "arrivals": {"kind": "poisson", "rate_rps": rate_rps}})
    dep = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "replicas": 2}]})
    return SimulationJob(dep, spec, horizon_s=horizon_s, seed=5)


@pytest.mark.parametrize("request_class", [CHAT, AGENT], ids=["conversation turns", "agent calls and retries"])
def test_sizing_counts_every_turn_and_every_retry_a_run_sees(request_class):
    job = chat_job([request_class])
    simulated = simulate(job).metrics["requests"]
    # Later turns arrive a think time after an answer: only those the horizon cuts differ (latency ~0.1 s).
    assert count_requests(job) == pytest.approx(simulated, rel=0.03)
    assert count_requests(job) >= simulated
    bounds = deployment_bounds(job)
    assert bounds is not None
    assert bounds.requests == count_requests(job)  # every turn's work is in the throughput bound
