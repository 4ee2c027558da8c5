"""The compiled engine loop (mypyc, see setup.py and sim/__init__.py) against its Python source."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sim
from planner.scenario import default_scenario_path
from sim.api import SimulationJob, simulate
from sim.deployment import DeploymentSpec
from sim.traffic import TrafficSpec

SCENARIOS = default_scenario_path().parent


def simulate_json(scenario: Path, pure_python: bool) -> tuple[dict, str]:
    """``vlmplan simulate --json`` of five simulated minutes in a fresh process, and the engine it ran on."""
    env = dict(os.environ)
    env.pop(sim.PURE_PYTHON_VARIABLE, None)
    if pure_python:
        env[sim.PURE_PYTHON_VARIABLE] = "1"
    code = ("import sys, sim; from planner.cli import cli; sys.stderr.write(sim.ENGINE + '\\n'); "
            f"cli(['simulate', {str(scenario)!r}, '--json', '--horizon', '300'])")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for deployment in result["deployments"]:
        del deployment["metrics"]["sim_wall_s"]
    return result, done.stderr.splitlines()[0]  # the engine; the progress bar follows on stderr


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["default.yaml", "video_stall.yaml", "moe_hot_expert.yaml"])
def test_compiled_and_pure_python_engines_give_identical_results(scenario):
    """Every metric of every deployment, to the last bit (preemption, MoE and six deployments)."""
    if not sim.ENGINE.startswith("compiled"):
        pytest.skip(f"the engine is not compiled here: {sim.ENGINE}")
    compiled, compiled_engine = simulate_json(SCENARIOS / scenario, pure_python=False)
    assert compiled_engine == "compiled (mypyc)"
    pure, pure_engine = simulate_json(SCENARIOS / scenario, pure_python=True)
    assert pure_engine.startswith("pure Python")
    assert compiled == pure


def engine_paths_job(stage_extra: dict, arrivals: dict, horizon_s: float = 60) -> SimulationJob:
    """Qwen2.5-VL-7B on one H100 with ``stage_extra``, invoices and chats arriving as ``arrivals``."""
    stage = {"name": "vlm", "kind": "model", "model": "qwen2.5-vl-7b", "gpu": "h100-sxm", **stage_extra}
    traffic = TrafficSpec.model_validate({"classes": [
        {"name": "invoice", "share": 0.5, "images": {"count": 1, "width_px": 1024, "height_px": 1024},
         "text_tokens": 100, "output_tokens": {"kind": "lognormal", "median": 200, "sigma": 0.5}},
        {"name": "chat", "share": 0.5, "text_tokens": 300, "output_tokens": 100}], "arrivals": arrivals})
    return SimulationJob(DeploymentSpec.model_validate({"name": "d", "stages": [stage]}), traffic, horizon_s, seed=5)


# The engine paths the bundled scenarios do not take: encode and prefill/decode splits, whole-prompt
# prefill, round-robin, a KV cache small enough to preempt, closed-loop and offline arrivals.
ENGINE_PATH_JOBS = [
    engine_paths_job({"disaggregation": {"mode": "encode", "encoder_replicas": 1}}, {"kind": "poisson", "rate_rps": 4}),
    engine_paths_job({"disaggregation": {"mode": "prefill_decode", "prefill_replicas": 1, "decode_replicas": 2}},
                     {"kind": "poisson", "rate_rps": 6}),
    engine_paths_job({"chunked_prefill": False, "replicas": 2, "load_balancer": "round_robin"},
                     {"kind": "closed_loop", "users": 24}),
    engine_paths_job({"gpu_memory_utilization": 0.25, "max_batch_size": 64}, {"kind": "offline", "requests": 400}),
]


def outcome(job: SimulationJob) -> dict:
    """Everything a simulation reports except its wall time."""
    result = simulate(job)
    metrics = {k: v for k, v in result.metrics.items() if k != "sim_wall_s"}
    return {"metrics": metrics, "per_class": result.per_class, "per_stage": result.per_stage,
            "timeseries": result.timeseries}


@pytest.mark.slow
def test_compiled_and_pure_python_engines_agree_on_the_other_engine_paths(tmp_path):
    if not sim.ENGINE.startswith("compiled"):
        pytest.skip(f"the engine is not compiled here: {sim.ENGINE}")
    compiled = [outcome(job) for job in ENGINE_PATH_JOBS]
    assert any(o["metrics"]["preemptions"] > 0 for o in compiled)  # the small cache did preempt
    jobs_file, outcomes_file = tmp_path / "jobs.pickle", tmp_path / "outcomes.pickle"
    jobs_file.write_bytes(pickle.dumps(ENGINE_PATH_JOBS))
    code = (f"import pickle, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "from test_engine_build import outcome; "
            f"jobs = pickle.loads(open({str(jobs_file)!r}, 'rb').read()); "
            f"open({str(outcomes_file)!r}, 'wb').write(pickle.dumps([outcome(job) for job in jobs]))")
    env = dict(os.environ, **{sim.PURE_PYTHON_VARIABLE: "1"})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert pickle.loads(outcomes_file.read_bytes()) == compiled


def test_the_engine_is_compiled_where_a_c_compiler_is_at_hand():
    """The install falls back to pure Python quietly (setup.py); here that fallback is caught."""
    if os.environ.get(sim.PURE_PYTHON_VARIABLE):
        pytest.skip(f"{sim.PURE_PYTHON_VARIABLE} is set")
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler: the engine runs as pure Python by design")
    assert sim.ENGINE == "compiled (mypyc)", (
        "the engine is not compiled: see the output of `pip install -v -e .` (mypyc type errors?)")


def fake_build(package: Path, source_mtime: float, compiled_mtime: float) -> None:
    """A module source and a compiled module beside it, with the given modification times."""
    source, compiled = package / "engine.py", package / f"engine{sim.EXTENSION_SUFFIXES[0]}"
    source.write_text("")
    compiled.write_bytes(b"")
    os.utime(source, (source_mtime, source_mtime))
    os.utime(compiled, (compiled_mtime, compiled_mtime))


def test_a_build_older_than_its_source_is_stale(tmp_path):
    fake_build(tmp_path, source_mtime=2_000, compiled_mtime=1_000)
    compiled = sim.compiled_modules(tmp_path, "pkg")
    assert list(compiled) == ["pkg.engine"]
    assert sim.stale_modules(tmp_path, compiled) == ["pkg.engine"]


def test_a_fresh_build_is_used(tmp_path):
    fake_build(tmp_path, source_mtime=1_000, compiled_mtime=2_000)
    assert sim.stale_modules(tmp_path, sim.compiled_modules(tmp_path, "pkg")) == []


def test_a_compiled_file_without_its_source_is_not_an_engine_module(tmp_path):
    (tmp_path / f"orphan{sim.EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    assert sim.compiled_modules(tmp_path, "pkg") == {}


def test_compiled_modules_of_subpackages_are_found(tmp_path):
    (tmp_path / "stages").mkdir()
    fake_build(tmp_path / "stages", source_mtime=1_000, compiled_mtime=2_000)
    assert sim.compiled_modules(tmp_path, "pkg") == {
        "pkg.stages.engine": tmp_path / "stages" / f"engine{sim.EXTENSION_SUFFIXES[0]}"}


def test_version_says_which_engine_runs():
    """``vlmplan --version``: what to quote when a simulation seems slow."""
    env = dict(os.environ, **{sim.PURE_PYTHON_VARIABLE: "1"})
    done = subprocess.run([sys.executable, "-m", "planner", "--version"], env=env, capture_output=True, text=True,
                          check=True)
    assert "simulator engine: pure Python (VLMPLAN_PURE_PYTHON is set)" in done.stdout
    env.pop(sim.PURE_PYTHON_VARIABLE)
    done = subprocess.run([sys.executable, "-m", "planner", "--version"], env=env, capture_output=True, text=True,
                          check=True)
    assert f"simulator engine: {sim.ENGINE}" in done.stdout
