"""BurstGPT conversations, the Azure LMM multimodal trace and ServeGen clients (planner.workload_traces, planner.traces),
read from small files written in their public formats."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from planner.traces import load_trace
from profiles.errors import TraceError
from sim.api import SimulationJob, simulate
from sim.deployment import DeploymentSpec
from sim.traffic import TrafficSpec

# BurstGPT v1.2 columns. Session 7: turn 2 re-sends turn 1 (500 + 100 tokens) and adds 50; turn 3 logs
# 300 tokens, less than its history, so it re-sent none of it. The API call has no session.
BURSTGPT = """Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type
5,7,3.1,ChatGPT,500,100,600,Conversation log
9,,1.0,GPT-4,40,10,50,API log
25,7,2.5,ChatGPT,650,80,730,Conversation log
45,7,2.0,ChatGPT,300,20,320,Conversation log
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_burstgpt_session_re_sends_its_history_where_its_tokens_show_it(tmp_path: Path):
    first, api, second, third = load_trace(write(tmp_path, "burst.csv", BURSTGPT), "burstgpt")
    assert (first.turn, second.turn, third.turn, api.turn) == (1, 2, 3, 0)
    assert api.context == ()
    assert api.own_key == -1
    assert [part[3] for part in second.context] == [500, 100]
    assert [part[0] for part in second.context] == [first.own_key, first.output_key]
    assert second.text_tokens == 50
    assert third.context == ()  # shorter than its history: nothing reused
    assert third.text_tokens == 300
    assert third.output_key == -1  # the last turn


def test_a_replayed_burstgpt_session_reuses_its_history(tmp_path: Path):
    path = write(tmp_path, "burst.csv", BURSTGPT)
    spec = TrafficSpec.model_validate({"classes": [], "arrivals": {"kind": "trace", "path": str(path),
                                                                   "format": "burstgpt"}})
    dep = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm"}]})
    result = simulate(SimulationJob(dep, spec, horizon_s=60.0, trace=tuple(load_trace(path, "burstgpt"))))
    # Turn 2 reuses turn 1's prompt and answer in whole blocks (the last sampled token never entered the KV).
    assert result.per_stage["llm"]["prefix_cache_hit_tokens"] == (500 + 100 - 1) // 16 * 16
    assert set(result.per_class["trace"]["per_turn"]) == {"1", "2", "3"}


AZURE_LMM = """TIMESTAMP,NumImages,ContextTokens,GeneratedTokens
2024-10-15 00:00:00.100000,1,120,30
2024-10-15 00:00:01.600000,3,80,12
2024-10-15 00:00:02.100000,0,400,90
"""


def test_the_azure_lmm_trace_sends_its_image_counts_at_the_stated_size(tmp_path: Path):
    requests = load_trace(write(tmp_path, "lmm.csv", AZURE_LMM), "azure_lmm", image_px=(1024, 768))
    assert [r.arrival_s for r in requests] == pytest.approx([0.0, 1.5, 2.0])
    assert [r.images for r in requests] == [((1024, 768),), ((1024, 768),) * 3, ()]
    assert [r.text_tokens for r in requests] == [120, 80, 400]
    with pytest.raises(TraceError, match="image_px"):
        load_trace(write(tmp_path, "lmm.csv", AZURE_LMM), "azure_lmm")
    with pytest.raises(ValidationError, match="image_px"):
        TrafficSpec.model_validate({"classes": [], "arrivals": {"kind": "trace", "path": "lmm.csv",
                                                                "format": "azure_lmm"}})
    broken = AZURE_LMM.replace(",3,80,", ",three,80,")
    with pytest.raises(TraceError, match=r"lmm.csv: line 3: NumImages: 'three' is not an integer"):
        load_trace(write(tmp_path, "lmm.csv", broken), "azure_lmm", image_px=(1024, 768))


# A ServeGen client (data/multimodal/mm-image/chunk-N-*): 2 requests/s of Gamma gaps for 600 s, then 1/s of
# Weibull gaps for 600 s, then idle. The sizes change at 600 s: one image of 1,196 tokens, then two of 400.
SERVEGEN_TRACE = """0,2.0,1.2,Gamma,0.7,0.7
600,1.0,0.9,Weibull,1.3,1.1
1200,0,0,,0,0
1800,0,0,,0,0
"""
SERVEGEN_DATASET = {
    "0": {"text_tokens": "{136: 0.25, 372: 0.75}", "image_tokens": "{1196: 1.0}", "image_count": "{1: 1.0}",
          "audio_tokens": "{0: 1.0}", "output_tokens": "{21: 0.5, 34: 0.5}"},
    "600": {"text_tokens": "{50: 1.0}", "image_tokens": "{400: 1.0}", "image_count": "{2: 1.0}",
            "audio_tokens": "{0: 1.0}", "output_tokens": "{100: 1.0}"},
}


def servegen_client(tmp_path: Path, trace: str = SERVEGEN_TRACE, dataset: dict | None = None) -> Path:
    """The client's two files; the dataset one key a line, as ServeGen writes it (``indent=4``)."""
    write(tmp_path, "chunk-3-trace.csv", trace)
    return write(tmp_path, "chunk-3-dataset.json", json.dumps(dataset or SERVEGEN_DATASET, indent=4))


def servegen_dataset(start: str, **fields: str | None) -> dict:
    """``SERVEGEN_DATASET`` with window ``start``'s ``fields`` replaced (None: left out)."""
    window = {**SERVEGEN_DATASET[start], **fields}
    return {**SERVEGEN_DATASET, start: {name: value for name, value in window.items() if value is not None}}


def test_a_servegen_client_is_drawn_window_by_window_from_its_distributions(tmp_path: Path):
    path = servegen_client(tmp_path)
    requests = load_trace(path, "servegen", seed=4)
    first = [r for r in requests if r.arrival_s < 600]
    second = [r for r in requests if r.arrival_s >= 600]
    assert 1199 <= len(first) <= 1200  # ceil(rate x window) gaps scaled to fill the window (the last may end it)
    assert 599 <= len(second) <= 600
    assert max(r.arrival_s for r in requests) < 1200  # idle windows send nothing
    assert {r.images for r in first} == {((980, 980),)}  # 1,196 Qwen-VL tokens: 35 x 35 tokens of 28 px
    assert {r.images for r in second} == {((560, 560),) * 2}
    assert {r.text_tokens for r in first} == {136, 372}
    assert sum(r.text_tokens == 372 for r in first) == pytest.approx(900, abs=75)
    assert load_trace(path, "servegen", seed=4) == requests  # the scenario's seed draws them
    assert load_trace(path, "servegen", seed=5) != requests
    fixed = load_trace(path, "servegen", seed=4, image_px=(640, 480))
    assert {r.images for r in fixed if r.arrival_s < 600} == {((640, 480),)}


@pytest.mark.parametrize(("trace", "dataset", "message"), [
    (SERVEGEN_TRACE.replace("Weibull", "Poisson"), None, r"chunk-3-trace.csv: line 2: pattern: 'Poisson'"),
    (SERVEGEN_TRACE.replace("600,1.0", "600,-1"), None, r"chunk-3-trace.csv: line 2: rate_rps: '-1'"),
    ("0,2.0,1.2,Gamma\n", None, r"chunk-3-trace.csv: line 1: expected 6 fields"),
    (SERVEGEN_TRACE, {"0": {"text_tokens": "{1: 1.0}"}}, r"chunk-3-dataset.json: line 2: window '0': missing output_tokens"),
    (SERVEGEN_TRACE, {"0": {"text_tokens": "__import__('os')", "output_tokens": "{1: 1.0}"}},
     r"line 3: window '0': text_tokens: .* is not a dict literal"),
    (SERVEGEN_TRACE, {"0": {"text_tokens": "{-5: 1.0}", "output_tokens": "{1: 1.0}"}},
     r"line 3: window '0': text_tokens: '-5': '1.0' is not a whole number"),
])
def test_a_broken_servegen_client_is_named(tmp_path: Path, trace: str, dataset: dict | None, message: str):
    with pytest.raises(TraceError, match=message):
        load_trace(servegen_client(tmp_path, trace, dataset), "servegen")


# The dataset as servegen_client writes it: "600" opens line 9; its text_tokens are on line 10, image_count 12.
@pytest.mark.parametrize(("trace", "dataset", "message"), [
    (SERVEGEN_TRACE, servegen_dataset("600", text_tokens="{50: 0.5, 7.5: 0.5}"),
     r"^\S*chunk-3-dataset.json: line 10: window '600': text_tokens: '7.5': '0.5' is not a whole number"),
    (SERVEGEN_TRACE, servegen_dataset("600", image_count="{2: 0.5, 5000: 0.5}"),
     r"^\S*chunk-3-dataset.json: line 12: window '600': image_count: 5000 is more than 100 images in one request$"),
    (SERVEGEN_TRACE, servegen_dataset("600", output_tokens=None),
     r"^\S*chunk-3-dataset.json: line 9: window '600': missing output_tokens$"),
    (SERVEGEN_TRACE, servegen_dataset("600", image_tokens=None),
     r"^\S*chunk-3-dataset.json: line 11: window '600': image_count: no image_tokens beside it$"),
    (SERVEGEN_TRACE, {**SERVEGEN_DATASET, "soon": {}},
     r"^\S*chunk-3-dataset.json: line 16: window 'soon': not a window start in seconds"),
    (SERVEGEN_TRACE, {"600": SERVEGEN_DATASET["600"]},
     r"^\S*chunk-3-trace.csv: line 1: the window at 0 s has requests but the dataset's first window starts at 600 s$"),
    (SERVEGEN_TRACE.replace("1200,0,0", "300,0,0"), None,
     r"^\S*chunk-3-trace.csv: line 3: start_s 300 is not after the previous window's \(600, line 2\)$"),
    ("\n0,200,1,Gamma,1,1\n86400,0,0,,0,0\n", None,
     r"^\S*chunk-3-trace.csv: line 2: rate_rps x 86400 s = 17,280,000 requests in one window; not a ServeGen client$"),
], ids=["fraction", "too-many-images", "missing-field", "count-without-tokens", "bad-start", "dataset-late",
        "starts-backwards", "too-many-requests"])
def test_a_servegen_problem_past_the_json_names_its_file_and_line(tmp_path: Path, trace: str, dataset: dict | None,
                                                                 message: str):
    """Every reader says ``file: line N: reason``: a dataset's problems named the window key without a line
    (and too many images in a request, drawn, named no file at all); a trace window's named neither."""
    with pytest.raises(TraceError, match=message):
        load_trace(servegen_client(tmp_path, trace, dataset), "servegen")


def test_a_dataset_line_the_yaml_composer_cannot_find_is_said_to_be_unknown(tmp_path: Path):
    """JSON takes a lone surrogate escape, the composer that finds lines does not: the window and field named,
    and that the line is not known (never a made-up line 1)."""
    path = servegen_client(tmp_path)
    text = path.read_text().replace('"audio_tokens"', '"note": "\\ud800", "audio_tokens"', 1)
    path.write_text(text.replace('"{50: 1.0}"', '"{-1: 1.0}"'), encoding="utf-8")
    with pytest.raises(TraceError, match=r"chunk-3-dataset.json: window '600': text_tokens \(line not found\): "
                                         r"'-1': '1.0' is not a whole number"):
        load_trace(path, "servegen")


def test_a_servegen_client_needs_both_its_files(tmp_path: Path):
    path = write(tmp_path, "chunk-3-dataset.json", json.dumps(SERVEGEN_DATASET))
    with pytest.raises(TraceError, match="chunk-3-trace.csv"):
        load_trace(path, "servegen")
    with pytest.raises(TraceError, match="chunk-N-dataset.json"):
        load_trace(write(tmp_path, "client.json", "{}"), "servegen")
