"""The ``vlmplan`` command as outside tools use it: the JSON contract and exit status 2 on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from planner.scenario import default_scenario_path

CONTRACT_KEYS = {
    "requests", "completed", "ttft_p50_s", "ttft_p99_s", "e2e_p50_s", "e2e_p95_s", "e2e_p99_s",
    "tpot_p50_s", "tpot_p99_s", "throughput_rps", "gpus", "gpu_utilization", "cost_per_day_usd",
    "cost_per_1k_requests_usd", "slo_attainment", "preemptions", "sim_wall_s",
}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``vlmplan ARGS`` in a fresh process, as a user's shell would."""
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def default_json() -> dict:
    """``vlmplan simulate --json`` on the bundled scenario, 10 simulated minutes."""
    done = run_cli("simulate", str(default_scenario_path()), "--json", "--horizon", "600")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_simulate_json_has_the_contract_keys_for_every_deployment(default_json):
    deployments = default_json["deployments"]
    assert len(deployments) == 6
    for deployment in deployments:
        assert set(deployment["metrics"]) >= CONTRACT_KEYS, deployment["name"]
        metrics = deployment["metrics"]
        assert metrics["requests"] >= metrics["completed"] > 0
        assert 0 <= metrics["slo_attainment"] <= 1
        assert metrics["cost_per_day_usd"] > 0


def test_simulate_json_is_the_same_in_another_process(default_json):
    again = json.loads(run_cli("simulate", "--json", "--horizon", "600").stdout)
    for first, second in zip(default_json["deployments"], again["deployments"], strict=True):
        first["metrics"].pop("sim_wall_s")
        second["metrics"].pop("sim_wall_s")
        assert first == second


def test_table_output_names_every_deployment():
    done = run_cli("simulate", "--horizon", "120", "--deployment", "specialist", "--deployment", "compact-2b")
    assert done.returncode == 0, done.stderr
    assert "specialist" in done.stdout
    assert "compact-2b" in done.stdout
    assert "generalist-72b" not in done.stdout


def test_bad_scenario_exits_2_with_one_message_naming_file_and_field(tmp_path: Path):
    scenario = tmp_path / "bad.yaml"
    text = default_scenario_path().read_text().replace("horizon_s: 3600", "horizon_s: -5")
    scenario.write_text(text)
    done = run_cli("simulate", str(scenario), "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "bad.yaml" in done.stderr
    assert "horizon_s" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_scenario_file_exits_2(tmp_path: Path):
    done = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert "nope.yaml" in done.stderr
    assert "Traceback" not in done.stderr


def test_model_that_does_not_fit_is_a_configuration_error(tmp_path: Path):
    scenario = tmp_path / "nofit.yaml"
    text = default_scenario_path().read_text()
    assert "tensor_parallel: 4" in text
    scenario.write_text(text.replace("tensor_parallel: 4", "tensor_parallel: 1", 1))
    done = run_cli("simulate", str(scenario), "--json", "--horizon", "60")
    assert done.returncode == 2
    assert "short by" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_unknown_deployment_is_named():
    done = run_cli("simulate", "--deployment", "nope", "--horizon", "60")
    assert done.returncode == 2
    assert "nope" in done.stderr


def test_schema_is_json_schema_of_the_scenario():
    done = run_cli("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert {"traffic", "deployments", "slo"} <= set(schema["properties"])


def test_catalog_json_lists_gpus_models_and_apis():
    done = run_cli("catalog", "--json")
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert {"h100-sxm", "l4", "jetson-agx-orin"} <= {gpu["id"] for gpu in listing["gpus"]}
    assert {"qwen2.5-vl-72b", "deepseek-ocr", "qwen3-30b-a3b"} <= {m["id"] for m in listing["models"]}


def test_progress_goes_to_stderr_when_piped_and_never_into_the_json():
    done = run_cli("simulate", str(default_scenario_path()), "--json", "--horizon", "30")
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # stdout is the JSON alone
    assert "simulating" in done.stderr
    assert "100%" in done.stderr  # the bar reached the end although stderr is a pipe


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_on_a_full_disk_is_one_line_and_exit_2_for_table_and_json():
    for args in (["validate"], ["simulate", "--horizon", "10", "--deployment", "omni-7b"],
                 ["simulate", "--horizon", "10", "--deployment", "omni-7b", "--json"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "planner", *args], stdout=full, stderr=subprocess.PIPE,
                                  text=True, timeout=300)
        assert done.returncode == 2, args
        assert done.stderr.strip().splitlines()[-1] == "error: stdout: cannot write: No space left on device", args
        assert "Traceback" not in done.stderr
        assert "Exception ignored" not in done.stderr
