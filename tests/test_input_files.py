"""Input files read safely (issue 14.5): special files refused unread, broken or absurd profiles and partial
calibration files end in ``file: line N: reason``, a profile of an unknown or other model is refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calibrate.partial import Partial, PartialHeader
from planner.traces import load_trace
from profiles.calibration import (
    CalibrationProfile,
    ComponentFit,
    DeviceInfo,
    Measurement,
    NvmlReading,
    load_profile,
    save_profile,
)
from profiles.catalog import load_catalog
from profiles.errors import CalibrationError, ScenarioError, TraceError
from profiles.files import check_nesting, line_of, read_text, snippet

NO_NVML = NvmlReading(status="unavailable: no NVML in this test")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def profile() -> CalibrationProfile:
    """A small valid profile of SmolVLM-256M on an L4: one measurement, one fit."""
    model = load_catalog().model("smolvlm-256m")
    device = DeviceInfo(kind="cuda", name="NVIDIA L4", gpu_id="l4", driver="550", cuda="12.4", torch="2.13.0",
                        threads=8, timing_clock="cuda_events", nvml_before=NO_NVML, nvml_after=NO_NVML)
    measurement = Measurement(component="lm_head", shape={"rows": 8}, seconds=2e-4, samples_s=(2e-4, 2.1e-4),
                              peak_memory_bytes=None, holdout=False)
    fit = ComponentFit(component="lm_head", linear={"const": 1e-5}, weight_s_per_elem=1e-12, train_points=5,
                       holdout_points=2, train_mape_pct=1.0, holdout_mape_pct=2.0)
    return CalibrationProfile(model_id=model.id, model=model, precision="bf16", created="2026-06-22T10:00:00+00:00",
                              quick=True, device=device, measurements=(measurement,), fits=(fit,),
                              holdout_mape_pct=2.0, composed=None)


def _saved(profile: CalibrationProfile, tmp_path: Path, edit=None) -> tuple[Path, str]:
    """``profile`` written as ``vlmplan calibrate`` writes it, after ``edit(data)``; the path and its text."""
    path = tmp_path / "profile.json"
    save_profile(profile, path)
    if edit is not None:
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data, indent=1))
    return path, path.read_text()


def _line_containing(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if fragment in line)


def test_special_files_are_refused_before_reading(tmp_path: Path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device"),
                       (Path("/dev/urandom"), "a character device"), (tmp_path, "a directory")):
        if path.exists():
            with pytest.raises(CalibrationError, match=f"^{path}: is {kind}"):
                load_profile(path)
            with pytest.raises(ScenarioError, match=f"^{path}: is {kind}"):
                read_text(path, "scenario", ScenarioError)


def test_a_valid_profile_loads(profile, tmp_path: Path):
    path, _ = _saved(profile, tmp_path)
    assert load_profile(path) == profile


@pytest.mark.parametrize(("edit", "field", "reason"), [
    (lambda d: d["device"].update(threads="eight"), '"threads"', "device.threads: Input should be a valid integer"),
    (lambda d: d.update(quick="maybe"), '"quick"', "quick: Input should be a valid boolean"),
    (lambda d: d["measurements"][0].update(seconds=1e300), '"seconds"', "measurements.0.seconds: 1e+300 s for one "
     "lm_head call is not a measurement"),
    (lambda d: d["measurements"][0].update(seconds=0.0), '"seconds"', "measurements.0.seconds: 0 s for one lm_head"),
    (lambda d: d["fits"][0].update(linear={"const": 0.0}, weight_s_per_elem=0.0), '"fits"',  # the next line
     "fits.0: the lm_head fit predicts 0 s for every shape"),
    (lambda d: d["fits"][0].update(linear={"const": 1e300}), '"fits"', "fits.0: the lm_head fit has a coefficient"),
    (lambda d: d.update(model_id="no-such-model"), '"model_id"', "model_id: 'no-such-model' but the measured model"),
    (lambda d: (d.update(model_id="internvl3-2b"), d["model"].update(id="internvl3-2b")), '"vision"',
     "model.vision: the measurements were taken on a model whose vision differs from catalog model 'internvl3-2b'"),
    (lambda d: (d.update(model_id="my-vlm"), d["model"].update(id="my-vlm")), '"model_id"',
     "model_id: unknown model 'my-vlm'"),
])
def test_a_wrong_or_absurd_profile_names_file_line_and_reason(profile, tmp_path: Path, edit, field, reason):
    path, text = _saved(profile, tmp_path, edit)
    with pytest.raises(CalibrationError) as caught:
        load_profile(path)
    first = str(caught.value).splitlines()[0]
    line = _line_containing(text, field) + (field == '"fits"')  # a list's first item starts on the next line
    assert first.startswith(f"{path}: line {line}: {reason}"), first


def test_a_truncated_non_utf8_or_deeply_nested_profile_names_the_line(profile, tmp_path: Path):
    path, text = _saved(profile, tmp_path)
    cut = text[: len(text) // 2]
    path.write_text(cut)
    with pytest.raises(CalibrationError, match=rf"^{path}: line {cut.count(chr(10)) + 1}: not valid JSON"):
        load_profile(path)
    path.write_bytes(text.encode().replace(b'"bf16"', b'"bf\xe916"'))
    with pytest.raises(CalibrationError, match=rf"^{path}: line {_line_containing(text, 'bf16')}: not UTF-8"):
        load_profile(path)
    path.write_text('{"model_id":\n' + "[" * 100_000 + "]" * 100_000 + "}")  # crashed the parser before
    with pytest.raises(CalibrationError, match=rf"^{path}: line 2: nested more than 100 levels deep"):
        load_profile(path)


def _partial(tmp_path: Path) -> tuple[Partial, PartialHeader]:
    header = PartialHeader(model_id="smolvlm-256m", device="cpu", quick=True, precision="fp32", threads=1,
                           cpu_clock="thread")
    return Partial(tmp_path / "p.partial.jsonl", header), header


@pytest.mark.parametrize(("last_line", "reason"), [
    ('{"component": "lm_head", "shape": {"rows": 8}, "seconds": 0.0002, "samp', "not valid JSON"),  # truncated
    ('{"composed": {"total": "fast"}}', "composed.total: Input should be a valid number"),
    ('{"composed": [1, 2]}', "composed: Input should be a valid dictionary"),
    ('{"component": "lm_head", "shape": {"rows": 8}, "seconds": 1e300, "samples_s": [1e300], '
     '"peak_memory_bytes": null, "holdout": false}', "1e+300 s for one lm_head call is not a measurement"),
    ('{"component": "lm_head", "shape": {"rows": 8}, "seconds": 0, "samples_s": [0], '
     '"peak_memory_bytes": null, "holdout": false}', "0 s for one lm_head call is not a measurement"),
    ('{"composed": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested more than 100 levels deep"),
])
def test_a_broken_partial_file_names_file_line_and_reason(tmp_path: Path, last_line: str, reason: str):
    partial, header = _partial(tmp_path)
    partial.path.write_text(header.model_dump_json() + "\n" + last_line + "\n")
    with pytest.raises(CalibrationError) as caught:
        partial.load()
    message = str(caught.value)
    assert message.startswith(f"{partial.path}: line 2: "), message
    assert reason in message
    assert len(message) < 400


def test_a_non_utf8_partial_file_names_the_line(tmp_path: Path):
    partial, header = _partial(tmp_path)
    partial.path.write_bytes(header.model_dump_json().encode() + b'\n{"composed": {"t\xff": 1}}\n')
    with pytest.raises(CalibrationError, match=rf"^{partial.path}: line 2: not UTF-8"):
        partial.load()


# Every JSON reader reads through profiles.files.read_json / parse_json_object: one message for each way a
# JSON document is broken, wherever it stands. (name, document on one line, the line it starts on, reason)
BROKEN_JSON = [
    ("truncated", b'{"a": [1,', "not valid JSON: Expecting value"),
    ("non-utf8", b'{"a\xff": 1}', "not UTF-8 text"),
    ("deep", b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested more than 100 levels deep"),
    ("not-an-object", b"[1, 2]", "not a JSON object but a list"),
]


def _profile_reader(tmp_path: Path, document: bytes):
    """A calibration profile whose second line is ``document``."""
    path = tmp_path / "profile.json"
    path.write_bytes(b"\n" + document + b"\n")
    return path, CalibrationError, lambda: load_profile(path)


def _servegen_reader(tmp_path: Path, document: bytes):
    """A ServeGen client whose dataset JSON's second line is ``document``."""
    (tmp_path / "chunk-1-trace.csv").write_text("0,1.0,1.0,Gamma,1,1\n")
    path = tmp_path / "chunk-1-dataset.json"
    path.write_bytes(b"\n" + document + b"\n")
    return path, TraceError, lambda: load_trace(path, "servegen")


def _mooncake_reader(tmp_path: Path, document: bytes):
    """A Mooncake trace whose second line is ``document``."""
    path = tmp_path / "trace.jsonl"
    path.write_bytes(b'{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0]}\n' + document + b"\n")
    return path, TraceError, lambda: load_trace(path, "mooncake")


def _partial_reader(tmp_path: Path, document: bytes):
    """Partial calibration measurements whose second line is ``document``."""
    partial, header = _partial(tmp_path)
    partial.path.write_bytes(header.model_dump_json().encode() + b"\n" + document + b"\n")
    return partial.path, CalibrationError, partial.load


@pytest.mark.parametrize("reader", [_profile_reader, _servegen_reader, _mooncake_reader, _partial_reader],
                         ids=["profile", "servegen", "mooncake", "partial"])
@pytest.mark.parametrize(("document", "reason"), [case[1:] for case in BROKEN_JSON],
                         ids=[case[0] for case in BROKEN_JSON])
def test_every_json_reader_names_a_broken_document_the_same_way(tmp_path: Path, reader, document: bytes,
                                                                reason: str):
    path, error, read = reader(tmp_path, document)
    with pytest.raises(error) as caught:
        read()
    message = str(caught.value)
    assert message.startswith(f"{path}: line 2: {reason}"), message
    assert len(message) < 200  # a short line, never the document


def test_line_of_and_nesting_and_snippet():
    text = '{\n "a": 1,\n "b": [\n  {"c": 2},\n  {"c": 3}\n ]\n}'
    assert line_of(text, ("b", 1, "c")) == 5
    assert line_of(text, ("b", 7)) == 3  # deepest part found
    assert line_of("{oops", ("a",)) is None
    check_nesting('{"x": "[[[[[[["}', "f", max_depth=2)  # brackets inside strings do not count
    with pytest.raises(ValueError, match="f: line 2: nested more than 2"):
        check_nesting("[\n[[1]]]", "f", error=ValueError, max_depth=2)  # type: ignore[arg-type]
    assert snippet("SECRET=" + "x" * 100 + "\0more") == "'SECRET=xxxxxxxxxxxxxxxxx...'"
    assert snippet("a\0b") == "'a\\x00b'"


@pytest.mark.parametrize(("text", "line"), [
    ("- " * 100_000 + "x\n", 1),  # block lists on one line: crashed the C loader (signal 11)
    ("".join(" " * level + "a:\n" for level in range(2_000)) + " " * 2_000 + "x\n", 101),  # block mappings
    ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", 1),  # flow style
    ("".join(" " * level + "-\n" for level in range(2_000)), 101),  # block lists, one a line
], ids=["block-lists-one-line", "block-mappings", "flow", "block-lists"])
def test_a_deeply_nested_yaml_scenario_names_the_line_in_a_subprocess(tmp_path: Path, text: str, line: int):
    """Block style nests without brackets; the check reads the parser's events, so every style is caught
    before the loader recurses. In a subprocess: before the check, the first case killed the process."""
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "planner", "validate", str(path)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr == f"error: {path}: line {line}: nested more than 100 levels deep\n"
