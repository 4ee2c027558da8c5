"""Mooncake traces (planner.prefix_traces): block hashes become prompt parts the prefix cache reuses."""

from pathlib import Path

import pytest

from planner.traces import load_trace
from profiles.errors import TraceError
from sim.api import SimulationJob, simulate
from sim.deployment import DeploymentSpec
from sim.traffic import TrafficSpec

# Four requests 2 s apart: all open with the same two blocks (1,024 tokens, a shared system prompt);
# the last repeats the first whole.
SAMPLE = """{"timestamp": 0, "input_length": 1300, "output_length": 20, "hash_ids": [0, 1, 2]}
{"timestamp": 2000, "input_length": 1100, "output_length": 20, "hash_ids": [0, 1, 3]}
{"timestamp": 4000, "input_length": 1600, "output_length": 20, "hash_ids": [0, 1, 4, 5]}
{"timestamp": 6000, "input_length": 1300, "output_length": 20, "hash_ids": [0, 1, 2]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text(text)
    return path


def test_a_mooncake_line_becomes_512_token_parts_and_its_own_last_block(tmp_path: Path):
    requests = load_trace(write(tmp_path, SAMPLE), "mooncake", class_name="chat")
    assert [r.arrival_s for r in requests] == [0.0, 2.0, 4.0, 6.0]
    first = requests[0]
    assert [part[3] for part in first.context] == [512, 512]
    assert first.text_tokens == 1300 - 1024
    assert first.context[0][0] == requests[2].context[0][0]  # hash id 0: the same key, the same block
    assert first.own_key == requests[3].own_key != requests[1].own_key


def test_a_replayed_mooncake_trace_reuses_the_blocks_it_shares(tmp_path: Path):
    path = write(tmp_path, SAMPLE)
    spec = TrafficSpec.model_validate({"classes": [], "arrivals": {"kind": "trace", "path": str(path),
                                                                   "format": "mooncake", "class_name": "chat"}})
    dep = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm"}]})
    trace = tuple(load_trace(path, "mooncake", class_name="chat"))
    llm = simulate(SimulationJob(dep, spec, horizon_s=10.0, trace=trace)).per_stage["llm"]
    # Requests 2 and 3 reuse the shared 1,024 tokens; request 4 all of request 1 but its last token's block.
    assert llm["prefix_cache_hit_tokens"] == 1024 + 1024 + (1300 - 1) // 16 * 16
    assert llm["prefill_tokens"] == 1300 + 1100 + 1600 + 1300 - llm["prefix_cache_hit_tokens"]


@pytest.mark.parametrize(("line", "message"), [
    ('{"timestamp": 0, "input_length": 100, "output_length": 5, "hash_ids": [0, 1]}', "2 blocks of 512"),
    ('{"timestamp": 0, "input_length": "x", "output_length": 5, "hash_ids": [0]}', "input_length"),
    ('{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [-1]}', "hash_ids"),
    ("[1, 2]", "not a JSON object but a list"),
    ('{"hash_ids": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested more than 100 levels deep"),
])
def test_a_broken_mooncake_line_is_named(tmp_path: Path, line: str, message: str):
    with pytest.raises(TraceError, match=f"trace.jsonl: line 2: .*{message}"):
        load_trace(write(tmp_path, SAMPLE.splitlines()[0] + "\n" + line + "\n"), "mooncake")


def test_the_bundled_mooncake_excerpt_follows_its_conversations_to_their_replicas():
    """Mooncake's conversation trace (first 300 s): prefix-aware routing reuses nearly all the trace shares."""
    import json

    from planner.capacity import sized
    from planner.run import simulate_scenario
    from planner.scenario import default_scenario_path, load_scenario

    path = default_scenario_path().parent / "mooncake_replay.yaml"
    scenario = load_scenario(path)
    # What an unbounded cache could reuse: each prompt's leading blocks seen before, never its last token.
    seen: set[int] = set()
    reusable = prompts = 0
    for line in (path.parent / "traces" / "mooncake_conversation_300s.jsonl").read_text().splitlines():
        record = json.loads(line)
        blocks = record["hash_ids"][:-1]
        known = next((i for i, h in enumerate(blocks) if h not in seen), len(blocks))
        reusable += min(known * 512, record["input_length"] - 1)
        prompts += record["input_length"]
        seen.update(blocks)
    deployments = [sized(d, {"llm": 9}) for d in scenario.deployments]
    report = simulate_scenario(scenario.model_copy(update={"deployments": deployments}), executor=None)
    hit_rate = {r.deployment: r.per_stage["llm"]["prefix_cache_hit_rate"] for r in report.results}
    assert 0.15 < reusable / prompts < 0.25  # the excerpt re-sends about a fifth of its tokens
    assert 0.9 * reusable / prompts < hit_rate["prefix-aware"] <= reusable / prompts
    assert hit_rate["least-loaded"] < 0.5 * hit_rate["prefix-aware"]  # one replica in nine holds a conversation
    assert hit_rate["no-prefix-cache"] == 0.0
