"""Scenario files: the bundled default, the schema, field-path errors, safe loading, fuzzing."""

import copy
import json
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.scenario import (
    default_scenario_path,
    load_scenario,
    scenario_json_schema,
    scenario_trace,
)
from profiles.errors import ScenarioError, VlmplanError
from sim.traffic import TrafficSource

DEFAULT = yaml.safe_load(default_scenario_path().read_text(encoding="utf-8"))
FUZZ = settings(max_examples=1500, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def write(tmp_path, data, name: str = "s.yaml"):
    """A scenario file holding ``data`` (a dict is dumped as YAML, a str written as is)."""
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def changed(edit) -> dict:
    """A deep copy of the default scenario after ``edit(copy)``."""
    data = copy.deepcopy(DEFAULT)
    edit(data)
    return data


def error_of(tmp_path, data) -> str:
    """The ScenarioError message for ``data``, with the temporary directory removed."""
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write(tmp_path, data))
    return str(caught.value).replace(str(tmp_path) + "/", "")


# ---------------------------------------------------------------- the bundled scenario


def test_default_scenario_is_the_founding_questions():
    scenario = load_scenario(default_scenario_path())
    assert scenario.class_names == ("invoice", "dashboard", "chat", "video", "camera")
    assert scenario.traffic.shares()["invoice"] == pytest.approx(0.6)
    assert len(scenario.deployments) == 6
    assert scenario.slo.targets("camera").e2e_s == pytest.approx(0.1)
    source = TrafficSource(scenario.traffic, scenario.seed)
    assert source.mean_rate_rps * 86_400 == pytest.approx(1_000_000)
    # The default hour is centred on the 14:00 peak, so it is the busiest hour of the day.
    assert scenario.start_s == 13.5 * 3600
    assert scenario.horizon_s == 3600
    assert 17 < 1e6 / 86_400 * 1.5 < source.peak_rate_rps


def test_default_scenario_requests_match_the_class_descriptions():
    scenario = load_scenario(default_scenario_path())
    requests = list(TrafficSource(scenario.traffic, scenario.seed).requests(120))
    by_class = {r.request_class: r for r in requests}
    assert by_class["invoice"].images == ((1700, 2200),)
    assert by_class["dashboard"].images == ((1920, 1080), (1920, 1080))
    assert by_class["dashboard"].audio_s == 30
    assert by_class["video"].video_s == 10
    assert by_class["camera"].tier == "low_res"
    assert len(requests) == pytest.approx(120 * 1e6 / 86_400 * 1.5, rel=0.35)  # peak hour, bursts


def test_a_loaded_scenario_survives_pickling_for_worker_processes():
    import pickle

    scenario = load_scenario(default_scenario_path())
    assert pickle.loads(pickle.dumps(scenario)) == scenario


def test_schema_describes_the_scenario_file():
    schema = scenario_json_schema()
    assert {"traffic", "slo", "deployments", "horizon_s", "seed"} <= set(schema["properties"])
    assert schema["required"] == ["name", "traffic", "slo", "deployments"]
    json.dumps(schema)  # serialisable for editors


# ---------------------------------------------------------------- errors with field paths


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    message = error_of(tmp_path, "name: x\ntraffic:\n  classes: [a, b\n  arrivals: {}\n")
    assert message.startswith("s.yaml:4:")
    assert "invalid YAML" in message


def test_unknown_and_wrong_fields_name_their_path(tmp_path):
    def edit(data):
        data["traffic"]["classes"][0]["sharee"] = 0.6
        data["deployments"][0]["stages"][0]["replicas"] = "many"

    message = error_of(tmp_path, changed(edit))
    assert "s.yaml: traffic.classes.0.sharee: Extra inputs are not permitted" in message
    assert "s.yaml: deployments.0.stages.0.replicas: Input should be a valid integer" in message


def test_route_and_slo_classes_must_exist(tmp_path):
    def edit(data):
        data["deployments"][0]["routes"][0]["classes"] = ["dashbord"]
        data["slo"]["per_class"]["camra"] = {"e2e_s": 1}

    message = error_of(tmp_path, changed(edit))
    assert "s.yaml: deployments.0.routes.0.classes.0: unknown request class 'dashbord'" in message
    assert "s.yaml: slo.per_class.camra: unknown request class 'camra'" in message


def test_every_class_needs_a_route(tmp_path):
    message = error_of(tmp_path, changed(lambda d: d["deployments"][0]["routes"].pop()))
    assert "deployments.0.routes: no route for class 'invoice'" in message


def test_unknown_catalog_ids_name_the_field_and_the_known_ids(tmp_path):
    def edit(data):
        data["deployments"][1]["stages"][0]["gpu"] = "h1000"
        data["deployments"][5]["stages"][0]["api"] = "gpt-5o"

    message = error_of(tmp_path, changed(edit))
    assert "s.yaml: deployments.1.stages.0.gpu: unknown GPU 'h1000'; known GPUs: a100-80gb" in message
    assert "s.yaml: deployments.5.stages.0.api: unknown hosted API 'gpt-5o'" in message


def test_not_a_mapping_and_empty_files(tmp_path):
    assert error_of(tmp_path, "- a\n- b\n").endswith("found a list")
    assert error_of(tmp_path, "").endswith("found an empty file")


def test_loading_never_executes_anything(tmp_path):
    marker = tmp_path / "executed"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\n"
    message = error_of(tmp_path, text)
    assert "s.yaml:1:" in message
    assert not marker.exists()


def test_shares_are_normalised(tmp_path):
    def edit(data):
        for request_class in data["traffic"]["classes"]:
            request_class["share"] *= 7

    scenario = load_scenario(write(tmp_path, changed(edit)))
    assert sum(scenario.traffic.shares().values()) == pytest.approx(1.0)
    assert scenario.traffic.shares()["invoice"] == pytest.approx(0.6)


def test_calibration_profiles_are_relative_to_the_scenario_and_must_load(tmp_path):
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    message = error_of(tmp_path, changed(lambda d: d.update(calibration_profiles=["missing.json", "broken.json"])))
    assert "s.yaml: calibration_profiles.0: no such file missing.json" in message  # made absolute
    assert "s.yaml: calibration_profiles.1: " in message
    assert "not valid JSON" in message


# ---------------------------------------------------------------- traces referenced by a scenario


def trace_scenario(path: str, classes: list | None = None) -> dict:
    """The default scenario replaying the trace at ``path`` (classes declared unless ``classes``)."""
    def edit(data):
        data["traffic"]["arrivals"] = {"kind": "trace", "path": path, "format": "vlmplan", "time_scale": 2}
        if classes is not None:
            data["traffic"]["classes"] = classes
    return changed(edit)


def test_a_trace_path_is_relative_to_the_scenario_file(tmp_path):
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "day.csv").write_text(
        "timestamp_s,class,images,audio_s,video_s,text_tokens,output_tokens\n"
        "0,invoice,1700x2200,0,0,60,200\n4,chat,,0,0,300,250\n", encoding="utf-8")
    (tmp_path / "scenarios").mkdir()
    scenario = load_scenario(write(tmp_path, trace_scenario("../traces/day.csv"), "scenarios/s.yaml"))
    assert scenario.traffic.arrivals.path == str(tmp_path / "scenarios" / "../traces/day.csv")
    trace = scenario_trace(scenario)
    assert [(r.request_class, r.arrival_s) for r in trace] == [("invoice", 0.0), ("chat", 2.0)]


def test_trace_classes_must_be_declared_and_a_broken_trace_names_its_line(tmp_path):
    (tmp_path / "t.csv").write_text("timestamp_s,class,images,audio_s,video_s,text_tokens,output_tokens\n"
                                    "0,selfie,,0,0,60,200\n", encoding="utf-8")
    assert "classes ['selfie'] are not declared" in error_of(tmp_path, trace_scenario("t.csv"))
    (tmp_path / "bad.csv").write_text("timestamp_s,class,images,audio_s,video_s,text_tokens,output_tokens\n"
                                      "0,chat,,0,0,many,200\n", encoding="utf-8")
    with pytest.raises(VlmplanError, match=r"bad.csv: line 2: text_tokens: 'many' is not an integer"):
        load_scenario(write(tmp_path, trace_scenario("bad.csv")))


# ---------------------------------------------------------------- the CLI


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m planner ARGS`` as a user would run it."""
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_cli_validate_and_schema(tmp_path):
    ok = run_cli("validate", str(default_scenario_path()))
    assert ok.returncode == 0, ok.stderr
    assert "founding-questions: 6 deployments, 5 request classes" in ok.stdout
    bad = run_cli("validate", str(write(tmp_path, changed(lambda d: d.update(horizon_s=-1)))))
    assert bad.returncode == 2
    assert "horizon_s: Input should be greater than 0" in bad.stderr
    assert "Traceback" not in bad.stderr
    schema = run_cli("schema")
    assert json.loads(schema.stdout)["title"] == "vlmplan scenario"


# ---------------------------------------------------------------- fuzzing: only clean errors


def _paths(node, prefix=()):
    """Every path (tuple of keys/indices) into a YAML-like tree."""
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


PATHS = [p for p in _paths(DEFAULT) if p]
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**12) | st.floats() | st.text(max_size=8)
    | st.sampled_from(["*", "trace", "diurnal", "auto", "h100-sxm", "invoice", "model", "native"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["kind", "name", "share", "path", "rate_rps", "x"]) | st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


def _mutate(data, path, action, value):
    """Delete, replace or add (an unknown key) at ``path``."""
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = value
    elif isinstance(parent[key], dict):
        parent[key]["unexpected"] = value


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(["delete", "replace", "add"]), JUNK),
                      min_size=1, max_size=3))
def test_fuzzed_scenarios_load_or_fail_cleanly(tmp_path, edits):
    data = copy.deepcopy(DEFAULT)
    for path, action, value in edits:
        try:
            _mutate(data, path, action, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    path = write(tmp_path, data)
    try:
        load_scenario(path)
    except VlmplanError as err:
        message = str(err)
    else:
        return
    assert message


@settings(FUZZ, max_examples=500)
@given(text=st.text(max_size=300))
def test_random_text_fails_cleanly(tmp_path, text):
    try:
        load_scenario(write(tmp_path, text))
    except ScenarioError as err:
        message = str(err)
    else:
        return
    assert "s.yaml" in message
