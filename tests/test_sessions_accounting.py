"""Accounting of re-sent work: what sizing counts of conversations, what admission charges a cached prompt, when
computed blocks become reusable, and host memory as a second prefix-cache tier."""

import pytest
import simpy

from planner.autoscale import count_requests
from planner.bounds import deployment_bounds
from sim.api import SimulationJob, simulate
from sim.batcher import BatchSettings
from sim.deployment import DeploymentSpec
from sim.journey import Journey
from sim.replica import Replica
from sim.request import Request
from sim.sequence import Sequence
from sim.traffic import TrafficSpec
from tests.sim_fakes import AffinePerf, Log

BLOCK = 16

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


def run_shared(prompts: list[tuple[float, tuple, int, int]], capacity_tokens: int,
               settings: BatchSettings | None = None) -> tuple[Log, Replica]:
    """Feed (arrival_s, prefix chain, prompt tokens, output tokens) requests to one replica with prefix caching."""
    env = simpy.Environment()
    log = Log()
    replica = Replica(env, AffinePerf(kv_capacity_tokens=capacity_tokens),
                      settings or BatchSettings(prefix_caching=True, kv_block_tokens=BLOCK), cpu_workers=2, hooks=log)

    def feed():
        for i, (arrival_s, chain, prompt, output) in enumerate(prompts):
            if arrival_s > env.now:
                yield env.timeout(arrival_s - env.now)
            request = Request(id=i, arrival_s=arrival_s, request_class="x", text_tokens=prompt, output_tokens=output)
            replica.submit(Sequence(Journey(request, 0, (None,), None, -1), prompt, output, prefix=chain), env.now)

    env.process(feed())
    env.run()
    return log, replica


def test_admission_charges_only_what_a_cached_prompt_adds_to_the_cache():
    # A 2,000-token document (125 blocks) + 200 tokens of question; the first asker decodes 600 tokens while
    # the second arrives. The cache (3,000 tokens) cannot hold a second whole prompt, but the second asker
    # shares the first's pinned 125 blocks and needs room only for its own 200 tokens and its answer.
    document = ((7, 125),)
    log, replica = run_shared([(0.0, document, 2200, 600), (0.5, document, 2200, 20)], capacity_tokens=3000)
    assert replica.batcher.hit_tokens == 2000
    assert log.done[1] < log.done[0]  # served beside the first, not after it
    assert replica.batcher.preemptions == 0


def test_a_long_prompt_s_computed_chunks_are_reused_before_its_prefill_ends():
    # vLLM caches each chunk's full blocks as it schedules it: a second request for the same 12,000-token
    # document, admitted while the first is still prefilling (8,192-token chunks), reuses the first chunk.
    document = ((7, 750),)
    log, replica = run_shared([(0.0, document, 12_016, 10), (0.1, document, 12_016, 10)], capacity_tokens=100_000)
    batcher = replica.batcher
    assert log.first[0] > 0.1  # the first was still prefilling when the second came
    assert batcher.hit_tokens == 8192  # the first chunk's 512 blocks
    assert batcher.prefill_tokens == 2 * 12_016 - 8192
    # Once the first finished its prompt, the whole document is resident: a third asker reuses all of it.
    _, later = run_shared([(0.0, document, 12_016, 10), (5.0, document, 12_016, 10)], capacity_tokens=100_000)
    assert later.batcher.hit_tokens == 12_000


# ---------------------------------------------------------------- host memory as a second prefix-cache tier


def test_blocks_evicted_from_the_gpu_are_found_in_the_host_tier_until_it_fills():
    from sim.kvcache import KvCache, PrefixNode

    kv = KvCache(60 * BLOCK, BLOCK, prefix_caching=True, host_capacity_tokens=50 * BLOCK)
    pins: list[PrefixNode] = []
    kv.allocate(50 * BLOCK)
    kv.release(50 * BLOCK - kv.publish(((1, 30), (2, 50)), pins))  # a system prompt, then a turn
    kv.release_pins(pins)
    kv.allocate(40 * BLOCK)  # 30 of the 50 resident blocks must go: the turn's 20, then 10 of the prompt's
    assert kv.match(((1, 30), (2, 50)), 100) == 20
    assert kv.host_tokens == 30 * BLOCK
    assert kv.host_blocks(((1, 30), (2, 50)), 20, 100) == 30  # the rest of the chain, contiguous, on the host
    assert kv.host_blocks(((1, 30), (2, 50)), 20, 45) == 25  # never past what the prompt may reuse
    assert kv.host_blocks(((1, 30), (3, 50)), 20, 100) == 10  # another turn: only the prompt's own blocks
    kv.limit_host(25 * BLOCK)  # swapped sequences take host memory: the least recently used entries go
    assert kv.host_tokens <= 25 * BLOCK


def test_a_host_tier_turns_re_prefills_of_an_outgrown_cache_into_host_link_loads():
    # Four 1,600-token prompts in rotation on a 4,000-token GPU cache: every one was evicted before it comes
    # back (LRU), so without a host tier nothing is reused; 8,000 tokens of host memory hold them all.
    prompts = [(float(i), ((100 + i % 4, 100),), 1600, 10) for i in range(40)]
    settings = {"prefix_caching": True, "kv_block_tokens": BLOCK, "swap_tokens_per_s": 0.0}
    _, gpu_only = run_shared(prompts, 4000, BatchSettings(**settings))
    link_tokens_per_s = 1e6
    _, tiered = run_shared(prompts, 4000, BatchSettings(**settings, host_prefix_cache=True, host_kv_tokens=8000,
                                                        host_link_tokens_per_s=link_tokens_per_s))
    _, small = run_shared(prompts, 4000, BatchSettings(**settings, host_prefix_cache=True, host_kv_tokens=1000,
                                                       host_link_tokens_per_s=link_tokens_per_s))
    assert gpu_only.batcher.hit_tokens == 0
    loaded = tiered.batcher.host_hit_tokens
    assert loaded == tiered.batcher.hit_tokens == 36 * 99 * BLOCK  # every prompt after the first four, but its last block
    assert tiered.batcher.prefill_tokens == 40 * 1600 - loaded
    assert tiered.batcher.host_load_s == pytest.approx(loaded / link_tokens_per_s)
    assert tiered.batcher.preemptions == 0
    assert small.batcher.host_hit_tokens == 0  # a 1,600-token prompt never fits 1,000 tokens of host memory


def test_a_stage_s_host_tier_reports_its_hits():
    # Conversations with 3,000-token inputs, answered in 20 s: the next turns' histories outgrow the GPU cache.
    chat = {**CHAT, "text_tokens": 3000, "session": {"turns": 3, "think_time_s": 20.0}}
    spec = TrafficSpec.model_validate({"classes": [chat], "arrivals": {"kind": "poisson", "rate_rps": 2.0}})

    def stage(**options) -> dict:
        dep = DeploymentSpec.model_validate({"name": "d", "stages": [
            {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "replicas": 1,
             "gpu_memory_utilization": 0.25, **options}]})
        return simulate(SimulationJob(dep, spec, horizon_s=60.0, seed=3)).per_stage["llm"]

    plain, tiered = stage(), stage(host_prefix_cache=True, host_kv_gb=20)
    assert "prefix_cache_host_hit_tokens" not in plain
    assert tiered["host_prefix_cache_tokens"] > 0
    assert tiered["prefix_cache_host_hit_tokens"] > 0
    assert tiered["prefix_cache_host_load_s"] > 0
    assert tiered["prefix_cache_hit_tokens"] > plain["prefix_cache_hit_tokens"]
    assert tiered["prefill_tokens"] < plain["prefill_tokens"]


def test_swap_preemption_keeps_a_prefilling_sequence_s_computed_chunks():
    from tests.sim_fakes import run_replica

    # A 20,000-token prompt (256-token steps: 90 of them) starts while 32 short requests decode 2,000 tokens
    # each on a 25,500-token cache: their growth fills it in about 60 steps and evicts the newest sequence,
    # the long one, mid-prefill.
    work = [(0.001 * i, 100, 2000) for i in range(32)] + [(0.1, 20_000, 10)]
    perf = {"kv_capacity_tokens": 25_500}
    _, recompute = run_replica(work, BatchSettings(max_batched_tokens=256), AffinePerf(**perf))
    _, swap = run_replica(work, BatchSettings(max_batched_tokens=256, swap_tokens_per_s=1e6, host_kv_tokens=100_000),
                          AffinePerf(**perf))
    assert recompute.batcher.preemptions > 0
    assert swap.batcher.swapped_out == swap.batcher.preemptions > 0
    assert swap.batcher.host_tokens == 0  # everything came back
    assert swap.batcher.prefill_tokens == 32 * 100 + 20_000  # no chunk computed twice
    assert recompute.batcher.prefill_tokens > 32 * 100 + 20_000
