"""``vlmplan plan`` as users and tools run it: JSON, exports, determinism, bad input, executors."""

import copy
import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from plan_fixtures import write_tiny

from planner.executors import make_executor
from planner.plan import plan_scenario
from planner.scenario import default_scenario_path, load_scenario
from profiles.errors import ConfigurationError

CONTRACT_KEYS = {
    "requests", "completed", "ttft_p50_s", "ttft_p99_s", "e2e_p50_s", "e2e_p95_s", "e2e_p99_s",
    "tpot_p50_s", "tpot_p99_s", "throughput_rps", "gpus", "gpu_utilization", "cost_per_day_usd",
    "cost_per_1k_requests_usd", "slo_attainment", "preemptions", "sim_wall_s",
}
PLAN_KEYS = {"name", "metrics", "replicas", "feasible", "reason", "quality", "quality_detail", "pareto", "search"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``vlmplan ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, timeout=600)


def without_wall_time(plan: dict) -> dict:
    """A copy of ``plan`` without the one value that differs between runs (wall-clock time)."""
    plan = copy.deepcopy(plan)
    for deployment in plan["deployments"]:
        del deployment["metrics"]["sim_wall_s"]
    return plan


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_plan(tiny: Path, tmp_path_factory) -> tuple[dict, Path]:
    """``vlmplan plan tiny.yaml --json --xlsx --csv`` on two worker processes."""
    out = tmp_path_factory.mktemp("out")
    done = run_cli("plan", str(tiny), "--json", "--workers", "2", "--xlsx", str(out / "p.xlsx"),
                   "--csv", str(out / "p.csv"))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), out


def test_plan_json_extends_the_simulate_contract(tiny_plan):
    plan, out = tiny_plan
    assert [d["name"] for d in plan["deployments"]] == ["vlm-auto", "api", "queue"]
    for deployment in plan["deployments"]:
        assert set(deployment) >= PLAN_KEYS
        assert set(deployment["metrics"]) >= CONTRACT_KEYS
    assert (out / "p.xlsx").stat().st_size > 0
    assert (out / "p.csv").read_text().startswith("deployment,")


def test_auto_stage_gets_the_fewest_replicas_that_meet_the_slo(tiny_plan):
    plan, _out = tiny_plan
    vlm = plan["deployments"][0]
    assert vlm["feasible"]
    assert vlm["auto_stages"] == ["vlm"]
    n = vlm["replicas"]["vlm"]
    verdicts = {p["replicas"]["vlm"]: p["feasible"] for p in vlm["search"]}
    assert verdicts[n]
    assert not verdicts[n - 1]  # one fewer was simulated and missed the SLO
    assert vlm["metrics"]["gpus"] == n
    assert vlm["metrics"]["slo_attainment"] >= plan["slo_attainment_target"]
    queue = plan["deployments"][2]
    assert queue["replicas"] == {"q": 2}  # fixed as written: simulated once
    assert len(queue["search"]) == 1
    assert queue["quality"] is None  # a synthetic server has no benchmark score


def test_same_seed_same_plan_whatever_the_workers(tiny: Path, tiny_plan):
    plan, _out = tiny_plan
    again = run_cli("plan", str(tiny), "--json", "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert without_wall_time(json.loads(again.stdout)) == without_wall_time(plan)


def test_plan_of_the_bundled_scenario_compares_all_six(tmp_path: Path):
    done = run_cli("plan", "--json", "--horizon", "300")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["benchmark"] == "DocVQA"
    deployments = plan["deployments"]
    assert len(deployments) == 6
    for deployment in deployments:
        assert set(deployment) >= PLAN_KEYS
        assert bool(deployment["reason"]) != deployment["feasible"]  # a reason exactly when infeasible
        assert not deployment["pareto"] or deployment["feasible"]
        assert deployment["quality"] is None or 0 < deployment["quality"] <= 100
    by_name = {d["name"]: d for d in deployments}
    assert by_name["hosted-gpt-4o"]["replicas"] == {}
    assert by_name["generalist-72b"]["quality_detail"]["coverage"] == pytest.approx(1.0)
    if any(d["feasible"] for d in deployments):
        assert any(d["pareto"] for d in deployments)


def test_bad_output_path_fails_before_planning_and_writes_nothing(tiny: Path, tmp_path: Path):
    done = run_cli("plan", str(tiny), "--csv", str(tmp_path / "out.csv"), "--xlsx", str(tmp_path / "no" / "p.xlsx"))
    assert done.returncode == 2
    assert "--xlsx" in done.stderr
    assert "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_options_exit_2(tiny: Path):
    for args in (["--horizon", "-5"], ["--workers", "0"], ["--deployment", "nope"]):
        done = run_cli("plan", str(tiny), *args)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr


def test_executors_local_processes_by_default(monkeypatch):
    with make_executor(None, 2) as pool:
        assert isinstance(pool, ProcessPoolExecutor)
    with make_executor(None, 1) as pool:
        assert isinstance(pool, ThreadPoolExecutor)  # one worker: in this process


def test_scheduler_without_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'vlmplan\[cluster\]'"):
        make_executor("tcp://127.0.0.1:8786", None)


def test_plan_on_a_dask_cluster_matches_local(tiny: Path, tiny_plan):
    distributed = pytest.importorskip("dask.distributed")
    plan, _out = tiny_plan
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            make_executor(cluster.scheduler_address, None) as executor:
        report = plan_scenario(load_scenario(tiny), executor)
    assert without_wall_time(json.loads(json.dumps(report.to_contract_dict()))) == without_wall_time(plan)


def test_default_scenario_path_exists():
    assert default_scenario_path().is_file()


def test_outputs_never_replace_special_files_and_a_full_stdout_writes_none(tiny: Path, tmp_path: Path):
    fifo = tmp_path / "plan.csv"
    os.mkfifo(fifo)
    done = run_cli("plan", str(tiny), "--csv", str(fifo), "--xlsx", str(tmp_path / "p.xlsx"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: --csv {fifo}: is a FIFO (named pipe); vlmplan writes only "
                                                "regular files"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    fifo.unlink()
    (tmp_path / "left").mkdir()
    done = run_cli("plan", str(tiny), "--xlsx", str(tmp_path / "left"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: --xlsx {tmp_path / 'left'}: is a directory; vlmplan writes "
                                                "only regular files"]
    if not Path("/dev/full").exists():
        return
    with open("/dev/full", "w") as full:  # the table (or JSON) cannot be printed: no file is written either
        done = subprocess.run([sys.executable, "-m", "planner", "plan", str(tiny), "--csv", str(tmp_path / "p.csv"),
                               "--xlsx", str(tmp_path / "p.xlsx")], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: stdout: cannot write: No space left on device"
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["left"]
