"""Prefix caching per replica (sim.kvcache, sim.batcher) and the balancers that use it (sim.router)."""

import random

import pytest
import simpy

from sim.api import SimulationJob, simulate
from sim.batcher import BatchSettings
from sim.deployment import DeploymentSpec
from sim.journey import Journey
from sim.kvcache import KvCache, PrefixNode
from sim.replica import Replica
from sim.request import Request
from sim.router import LeastOutstanding, PrefixAware
from sim.sequence import Sequence
from sim.traffic import TrafficSpec
from tests.sim_fakes import AffinePerf, Log

BLOCK = 16  # vLLM's KV block


# ---------------------------------------------------------------- the cache itself


def test_a_published_chain_is_reused_from_its_start_and_a_sequence_keeps_its_last_token():
    kv = KvCache(10_000, BLOCK, prefix_caching=True)
    first: list[PrefixNode] = []
    kv.allocate(1200)
    moved = kv.publish(((1, 62), (2, 75)), first)  # a 992-token system prompt, then 208 tokens of a turn
    assert moved == 75 * BLOCK
    kv.release(1200 - moved)
    kv.release_pins(first)
    assert (kv.used_tokens, kv.evictable_tokens) == (0, 75 * BLOCK)
    assert kv.match(((1, 62), (3, 70)), max_blocks=1000) == 62  # another turn after the same system prompt
    assert kv.match(((1, 62), (2, 75)), max_blocks=74) == 74  # the whole prompt cached: one block recomputed
    second: list[PrefixNode] = []
    assert kv.acquire(((1, 62), (3, 70)), 1000, second) == 62
    assert (kv.used_tokens, kv.evictable_tokens) == (62 * BLOCK, 13 * BLOCK)  # reused blocks are pinned


def test_eviction_takes_the_least_recently_used_leaf_from_its_tail_and_never_a_pinned_block():
    kv = KvCache(100 * BLOCK, BLOCK, prefix_caching=True)
    for key in (1, 2):  # two 40-block prompts, used in that order
        pins: list[PrefixNode] = []
        kv.allocate(40 * BLOCK)
        kv.release(40 * BLOCK - kv.publish(((key, 40),), pins))
        kv.release_pins(pins)
    held: list[PrefixNode] = []
    assert kv.acquire(((2, 40),), 100, held) == 40  # prompt 2 is running again: pinned
    kv.allocate(30 * BLOCK)  # 40 pinned + 30 new + 40 evictable > 100: 10 blocks must go
    assert kv.evicted_blocks == 10
    assert kv.match(((1, 40),), 100) == 30  # prompt 1, the older, lost its tail
    assert kv.match(((2, 40),), 100) == 40
    kv.allocate(30 * BLOCK)  # all prompt 1 has left goes; prompt 2 stays (pinned)
    assert kv.match(((1, 40),), 100) == 0
    assert kv.match(((2, 40),), 100) == 40
    assert kv.used_tokens + kv.evictable_tokens <= kv.capacity_tokens


def test_a_parent_is_evicted_only_after_its_children():
    kv = KvCache(60 * BLOCK, BLOCK, prefix_caching=True)
    pins: list[PrefixNode] = []
    kv.allocate(50 * BLOCK)
    kv.release(50 * BLOCK - kv.publish(((1, 30), (2, 50)), pins))  # system prompt, then a turn
    kv.release_pins(pins)
    kv.allocate(20 * BLOCK)  # needs 10 of the 50 resident blocks: the turn's tail goes, not the system prompt
    assert kv.match(((1, 30), (2, 50)), 100) == 40
    assert kv.match(((1, 30),), 100) == 30


# ---------------------------------------------------------------- on a replica


def run_prefixed(prompts: list[tuple[float, tuple, int]], capacity_tokens: int = 1_000_000,
                 caching: bool = True) -> Replica:
    """Feed (arrival_s, prefix chain, prompt tokens) requests (10 output tokens) to one replica."""
    env = simpy.Environment()
    replica = Replica(env, AffinePerf(kv_capacity_tokens=capacity_tokens),
                      BatchSettings(prefix_caching=caching, kv_block_tokens=BLOCK), cpu_workers=2, hooks=Log())

    def feed():
        for i, (arrival_s, chain, prompt) in enumerate(prompts):
            if arrival_s > env.now:
                yield env.timeout(arrival_s - env.now)
            request = Request(id=i, arrival_s=arrival_s, request_class="x", text_tokens=prompt, output_tokens=10)
            replica.submit(Sequence(Journey(request, 0, (None,), None, -1), prompt, 10, prefix=chain), env.now)

    env.process(feed())
    env.run()
    return replica


def test_a_shared_system_prompt_is_prefilled_once_and_its_hits_shorten_prefill():
    # 1,000-token system prompt (62 whole blocks) + 200 tokens of each request's own; one at a time.
    prompts = [(float(i), ((7, 62),), 1200) for i in range(10)]
    cached, plain = run_prefixed(prompts), run_prefixed(prompts, caching=False)
    assert cached.batcher.hit_tokens == 9 * 992
    assert cached.batcher.prefill_tokens == 10 * 1200 - 9 * 992
    assert plain.batcher.prefill_tokens == 10 * 1200
    assert cached.busy_s < plain.busy_s
    assert cached.batcher.saved_s == pytest.approx(plain.busy_s - cached.busy_s)


def test_hits_fall_as_the_working_set_outgrows_the_cache():
    def hit_rate(prompts_in_rotation: int) -> float:
        # Prompts of 1,600 tokens (100 blocks), each sent again in turn; the cache holds 4,000 tokens.
        prompts = [(float(i), ((100 + i % prompts_in_rotation, 100),), 1600) for i in range(40)]
        batcher = run_prefixed(prompts, capacity_tokens=4000).batcher
        return batcher.hit_tokens / batcher.queried_tokens

    rates = [hit_rate(n) for n in (1, 2, 3, 4)]
    assert min(rates[:2]) > 0.9  # two prompts fit (3,200 tokens)
    assert rates == sorted(rates, reverse=True)
    assert rates[3] == 0.0  # four prompts in rotation: least recently used is always the one needed next


# ---------------------------------------------------------------- balancers


class Server:
    def __init__(self) -> None:
        self.outstanding = 0


def test_the_heap_balancer_picks_what_a_scan_would():
    rng = random.Random(5)
    servers = [Server() for _ in range(13)]
    balancer = LeastOutstanding()
    for _ in range(5000):
        busy = [s for s in servers if s.outstanding]
        if busy and rng.random() < 0.45:
            server = rng.choice(busy)
            server.outstanding -= 1
            balancer.released(server)
            continue
        expected = min(servers, key=lambda s: s.outstanding)
        chosen = balancer.pick(servers)
        assert chosen is expected
        chosen.outstanding += 1
    assert len(balancer._heap) <= 4 * len(servers) + 65  # stale entries are cleared


def conversation_turn(own_key: int, output_key: int, chain: tuple, prompt: int) -> Sequence:
    request = Request(id=0, arrival_s=0.0, request_class="x", own_key=own_key, output_key=output_key)
    return Sequence(Journey(request, 0, (None,), None, -1), prompt, 10, prefix=chain)


def test_prefix_aware_follows_a_conversation_unless_its_replica_is_overloaded():
    servers = [Server() for _ in range(4)]
    balancer = PrefixAware(BLOCK)
    first = balancer.pick(servers, conversation_turn(11, 12, ((11, 20),), 330))
    first.outstanding += 1
    assert first is servers[0]
    # The next turn's prompt re-sends turn 1 (keys 11, 12): it goes where turn 1 went, though busier.
    second_turn = conversation_turn(13, 14, ((11, 20), (12, 30), (13, 40)), 650)
    assert balancer.pick(servers, second_turn) is servers[0]
    servers[0].outstanding = 100  # more than 64 above the idlest and 1.5x: the load cap
    balancer.released(servers[0])
    assert balancer.pick(servers, second_turn) is servers[1]


# ---------------------------------------------------------------- whole simulations


def simulate_one(classes: list[dict], arrivals: dict, stage: dict, horizon_s: float = 120.0):
    spec = TrafficSpec.model_validate({"classes": classes, "arrivals": arrivals})
    dep = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", **stage}]})
    return simulate(SimulationJob(dep, spec, horizon_s=horizon_s, seed=11))


def test_every_request_sharing_a_system_prompt_prefills_it_once_per_replica():
    shared = {"name": "ask", "system_prompt_tokens": 1000, "text_tokens": 200, "output_tokens": 20}
    one_user = {"kind": "closed_loop", "users": 1, "think_time_s": 0.5}  # one request at a time
    stage = {"replicas": 3, "load_balancer": "round_robin"}
    llm = simulate_one([shared], one_user, stage).per_stage["llm"]
    requests = llm["visits"]
    assert requests > 50
    assert llm["prefix_caching"] is True  # vLLM's default
    assert llm["prefix_cache_hit_tokens"] == (requests - 3) * 992  # 62 whole blocks, after the first per replica
    assert llm["prefill_tokens"] == requests * 1200 - (requests - 3) * 992
    off = simulate_one([shared], one_user, {**stage, "prefix_caching": False}).per_stage["llm"]
    assert off["prefill_tokens"] == off["visits"] * 1200
    assert off["prefix_cache_hit_tokens"] == 0


CONVERSATION = {"name": "chat", "system_prompt_tokens": 1000, "text_tokens": 200, "output_tokens": 30,
                "session": {"turns": 5, "think_time_s": 1.0, "follow_up": {"text_tokens": 50}}}


def test_a_cached_conversation_prefills_each_token_once():
    result = simulate_one([CONVERSATION], {"kind": "offline", "requests": 1}, {"replicas": 1})
    llm = result.per_stage["llm"]
    prompts = [1200 + 80 * k for k in range(5)]  # the history grows by an answer (30) and a question (50)
    # Turn k reuses turn k-1's prompt and answer in whole blocks (the last sampled token never entered
    # the KV cache); only the rest of the block and the new question are prefilled.
    reused = [0] + [(prompt + 30 - 1) // BLOCK * BLOCK for prompt in prompts[:-1]]
    assert llm["visits"] == 5
    assert llm["prefix_cache_hit_tokens"] == sum(reused)
    assert llm["prefill_tokens"] == sum(p - r for p, r in zip(prompts, reused, strict=True)) == 1200 + 4 * 64
    plain = simulate_one([CONVERSATION], {"kind": "offline", "requests": 1}, {"replicas": 1, "prefix_caching": False})
    assert plain.per_stage["llm"]["prefill_tokens"] == sum(prompts)
    assert result.metrics["ttft_p50_s"] < plain.metrics["ttft_p50_s"]


def test_conversations_report_each_turn_and_each_conversation():
    chat = {**CONVERSATION, "session": {"turns": {"kind": "uniform", "low": 1, "high": 4}, "think_time_s": 2.0}}
    result = simulate_one([chat], {"kind": "poisson", "rate_rps": 2.0}, {"replicas": 2}, horizon_s=60)
    summary = result.per_class["chat"]
    turns = summary["per_turn"]
    assert set(turns) == {"1", "2", "3", "4"}
    assert turns["1"]["requests"] >= turns["2"]["requests"] >= turns["4"]["requests"] > 0
    assert sum(t["requests"] for t in turns.values()) == summary["requests"]
    conversations = summary["conversations"]
    assert conversations["started"] == turns["1"]["requests"]
    assert 0 < conversations["completed"] <= conversations["started"]
    assert 1.0 <= conversations["turns_mean"] <= 4.0
    assert result.per_stage["llm"]["prefix_cache_hit_rate"] > 0.5
    again = simulate_one([chat], {"kind": "poisson", "rate_rps": 2.0}, {"replicas": 2}, horizon_s=60)
    assert again.per_class["chat"] == summary  # same seed, same conversations


def test_a_conversational_class_rate_counts_its_turns():
    chat = {**CONVERSATION, "session": {"turns": 3, "think_time_s": 1.0}}
    result = simulate_one([chat], {"kind": "poisson", "rate_rps": 2.0}, {"replicas": 2}, horizon_s=300)
    turns = result.per_class["chat"]["per_turn"]
    assert result.metrics["requests"] == pytest.approx(600, rel=0.15)  # 2 requests/s, a third of them first turns
    assert turns["1"]["requests"] == pytest.approx(200, rel=0.15)


SCREENSHOTS = {"name": "complaint", "images": {"count": 2, "width_px": 1920, "height_px": 1080},
               "text_tokens": 300, "output_tokens": 40,
               "session": {"turns": 4, "think_time_s": 1.0, "follow_up": {"text_tokens": 50}}}


def simulate_vlm(stage: dict):
    spec = TrafficSpec.model_validate({"classes": [SCREENSHOTS], "arrivals": {"kind": "offline", "requests": 1}})
    dep = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "vlm", "kind": "model", "model": "qwen2.5-vl-7b", "gpu": "h100-sxm", **stage}]})
    return simulate(SimulationJob(dep, spec, horizon_s=60.0, seed=2))


def test_an_encoder_cache_spares_a_conversation_its_screenshots_again():
    def later_turns_ttft(result) -> float:
        return sum(t["ttft_p50_s"] for k, t in result.per_class["complaint"]["per_turn"].items() if k != "1")

    plain = simulate_vlm({"prefix_caching": False})
    cached = simulate_vlm({"prefix_caching": False, "encoder_cache_tokens": 100_000})
    too_small = simulate_vlm({"prefix_caching": False, "encoder_cache_tokens": 1_000})  # under two screenshots
    stage = cached.per_stage["vlm"]
    assert stage["encoder_cache_lookups"] == 3  # turns 2-4 each re-send turn 1's screenshots
    assert stage["encoder_cache_hit_rate"] == 1.0
    assert too_small.per_stage["vlm"]["encoder_cache_hit_rate"] == 0.0
    assert "encoder_cache_lookups" not in plain.per_stage["vlm"]
    assert later_turns_ttft(cached) < later_turns_ttft(too_small) == pytest.approx(later_turns_ttft(plain))
    # A prefix-cache hit already covers the screenshots' tokens: the encoder is skipped for them too.
    prefix_only = simulate_vlm({})
    assert later_turns_ttft(prefix_only) < later_turns_ttft(plain)


def test_agent_tasks_retry_failures_and_report_cost_per_successful_task():
    agent = {"name": "agent", "system_prompt_tokens": 2000, "text_tokens": 400, "output_tokens": 150,
             "session": {"turns": {"kind": "uniform", "low": 3, "high": 8}, "think_time_s": 0.5,
                         "follow_up": {"text_tokens": 300}, "success_probability": 0.75, "max_retries": 2}}
    result = simulate_one([agent], {"kind": "poisson", "rate_rps": 4.0}, {"replicas": 2}, horizon_s=300)
    tasks = result.per_class["agent"]["tasks"]
    conversations = result.per_class["agent"]["conversations"]
    assert tasks["ended"] > 20
    # A task fails for good only after three failed attempts: 1 - 0.25^3 = 98 % succeed in the end.
    assert tasks["success_rate"] == pytest.approx(1 - 0.25**3, abs=0.05)
    assert 1.0 < tasks["attempts_mean"] < 1.5
    assert conversations["completed"] > tasks["ended"]  # retries are conversations of their own
    assert tasks["latency_p50_s"] > 0
    assert tasks["cost_per_successful_task_usd"] == pytest.approx(
        result.metrics["cost_per_day_usd"] * 300 / 86_400 / tasks["succeeded"])
    assert tasks["gpu_s_per_successful_task"] > 0
    assert "tasks" not in simulate_one([CONVERSATION], {"kind": "offline", "requests": 1},
                                       {"replicas": 1}).per_class["chat"]


def test_a_hosted_api_bills_the_history_a_conversation_re_sends():
    spec = TrafficSpec.model_validate({"classes": [CONVERSATION], "arrivals": {"kind": "offline", "requests": 1}})
    dep = DeploymentSpec.model_validate({"name": "d", "stages": [{"name": "api", "kind": "hosted_api",
                                                                  "api": "gpt-4o"}]})
    api = simulate(SimulationJob(dep, spec, horizon_s=120.0, seed=1)).per_stage["api"]
    assert api["input_tokens"] == sum(1200 + 80 * k for k in range(5))  # every turn's whole prompt


def test_a_cached_system_prompt_does_not_make_the_zero_load_bound_call_a_deployment_infeasible():
    from planner.bounds import deployment_bounds
    from sim.slo import SloSpec

    long_prompt = {"name": "ask", "system_prompt_tokens": 60_000, "text_tokens": 200, "output_tokens": 20}
    spec = TrafficSpec.model_validate({"classes": [long_prompt],
                                       "arrivals": {"kind": "poisson", "rate_rps": 0.2}})

    def job(caching: bool) -> SimulationJob:
        dep = DeploymentSpec.model_validate({"name": "d", "stages": [
            {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "prefix_caching": caching}]})
        return SimulationJob(dep, spec, horizon_s=120.0, seed=1, slo=SloSpec(ttft_s=0.5, tpot_s=None, attainment=0.9))

    assert simulate(job(True)).metrics["slo_attainment"] > 0.9  # only the first request prefills the 60,000
    assert not deployment_bounds(job(True)).infeasible
    assert simulate(job(False)).metrics["slo_attainment"] == 0.0
    assert deployment_bounds(job(False)).infeasible


def test_a_closed_loop_user_finishes_a_conversation_then_starts_the_next():
    chat = {**CONVERSATION, "session": {"turns": 3, "think_time_s": 0.5, "follow_up": {"text_tokens": 50}}}
    one_user = {"kind": "closed_loop", "users": 1, "think_time_s": 2.0}
    summary = simulate_one([chat], one_user, {"replicas": 1}, horizon_s=60).per_class["chat"]
    turns = summary["per_turn"]
    conversations = summary["conversations"]
    assert conversations["completed"] >= 5  # one after another: a conversation, then the user's think time
    assert turns["1"]["requests"] - turns["3"]["requests"] <= 1  # only the one cut by the horizon is short
    assert conversations["turns_mean"] == 3.0


def test_swap_preemption_moves_kv_to_host_and_back_instead_of_prefilling_again():
    from tests.sim_fakes import run_replica

    # Eight 1,000-token prompts with 400 output tokens each on a 9,000-token cache: decodes must evict.
    work = [(0.001 * i, 1000, 400) for i in range(8)]
    _, recompute = run_replica(work, BatchSettings(), AffinePerf(kv_capacity_tokens=9000))
    _, swap = run_replica(work, BatchSettings(swap_tokens_per_s=1e6, host_kv_tokens=100_000),
                          AffinePerf(kv_capacity_tokens=9000))
    _, no_room = run_replica(work, BatchSettings(swap_tokens_per_s=1e6, host_kv_tokens=500),
                             AffinePerf(kv_capacity_tokens=9000))
    assert recompute.batcher.preemptions > 0
    assert swap.batcher.swapped_out == swap.batcher.preemptions > 0
    assert swap.batcher.prefill_tokens == 8 * 1000  # nothing prefilled twice
    assert recompute.batcher.prefill_tokens > 8 * 1000
    assert swap.batcher.host_tokens == 0  # everything came back
    assert swap.batcher.swapped_tokens > 0
    assert no_room.batcher.swapped_out == 0  # host memory too small for one sequence: recompute
    assert no_room.batcher.prefill_tokens == recompute.batcher.prefill_tokens
