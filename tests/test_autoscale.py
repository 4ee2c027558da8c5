"""Autoscaling over the day (``vlmplan plan --autoscale``): sizes follow the daily curve, and cost less."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pytest
from plan_fixtures import write_daily_cycle, write_tiny

from planner.plan import plan_scenario
from planner.scenario import load_scenario
from profiles.errors import ScenarioError

WINDOW_S = 7200
L4_USD_PER_HOUR = 0.49  # profiles/data/gpus.yaml


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``vlmplan ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def cycle(tmp_path_factory) -> Path:
    return write_daily_cycle(tmp_path_factory.mktemp("cycle"))


@pytest.fixture(scope="module")
def autoscaled(cycle: Path, tmp_path_factory) -> tuple[dict, Path]:
    """``vlmplan plan cycle.yaml --autoscale-window 7200 --json --xlsx`` on two worker processes."""
    out = tmp_path_factory.mktemp("out") / "plan.xlsx"
    done = run_cli("plan", str(cycle), "--autoscale-window", str(WINDOW_S), "--json", "--workers", "2",
                   "--xlsx", str(out))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), out


def test_sizes_follow_the_daily_curve_and_cost_less_than_peak_sizing(autoscaled):
    plan, _xlsx = autoscaled
    [schedule] = plan["autoscale"]  # the hosted API has no auto stage: nothing to scale
    assert schedule["name"] == "vlm-auto"
    windows = schedule["windows"]
    assert [w["start_s"] for w in windows] == [k * WINDOW_S for k in range(12)]
    by_hour = {int(w["start_s"] // 3600): w for w in windows}
    assert by_hour[14]["replicas"]["vlm"] > by_hour[2]["replicas"]["vlm"]  # peak needs more than the night
    assert by_hour[14]["requests"] > 4 * by_hour[2]["requests"]
    assert schedule["feasible"]
    assert all(w["feasible"] and w["slo_attainment"] >= 0.95 for w in windows)
    peak_gpus = max(w["gpus"] for w in windows)
    assert schedule["static_cost_per_day_usd"] == pytest.approx(peak_gpus * L4_USD_PER_HOUR * 24)
    gpu_hours = sum(w["gpus"] for w in windows) * WINDOW_S / 3600
    assert schedule["autoscaled_cost_per_day_usd"] == pytest.approx(gpu_hours * L4_USD_PER_HOUR)
    assert schedule["autoscaled_cost_per_day_usd"] < schedule["static_cost_per_day_usd"]
    assert schedule["saving_share"] == pytest.approx(
        1 - schedule["autoscaled_cost_per_day_usd"] / schedule["static_cost_per_day_usd"])
    assert any(a["item"] == "autoscaling" for a in plan["assumptions"])


def test_a_window_is_sized_as_the_plain_plan_of_that_window_would_size_it(autoscaled, cycle):
    """The 14:00 window is the scenario's own horizon (start 14:00, 2 h): both searches must agree."""
    plan, _xlsx = autoscaled
    peak = next(w for w in plan["autoscale"][0]["windows"] if w["start_s"] == 50400)
    [sized] = [d for d in plan["deployments"] if d["name"] == "vlm-auto"]
    assert peak["replicas"] == sized["replicas"]
    assert peak["requests"] == sized["metrics"]["requests"]


def test_workbook_has_the_schedule_with_a_chart(autoscaled):
    plan, xlsx = autoscaled
    book = openpyxl.load_workbook(xlsx)
    sheet = book["Autoscale"]
    header = [cell.value for cell in sheet[1]]
    assert header[:3] == ["hour of day", "vlm-auto GPUs", "vlm-auto $/day at this size"]
    assert [row[1] for row in sheet.iter_rows(min_row=2, max_row=13, values_only=True)] == \
        [w["gpus"] for w in plan["autoscale"][0]["windows"]]
    assert len(sheet._charts) == 1
    comparison = [cell.value for cell in book["Comparison"][1]]
    assert "$/day autoscaled" in comparison


def test_traffic_without_a_daily_curve_is_refused_before_any_search(tmp_path):
    scenario = write_tiny(tmp_path)
    done = run_cli("plan", str(scenario), "--autoscale")
    assert done.returncode == 2
    assert f"{scenario}: traffic.arrivals" in done.stderr
    assert "diurnal" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("window", ["5000", "0", "-3600"])
def test_a_window_that_does_not_tile_the_day_is_refused(cycle, window):
    done = run_cli("plan", str(cycle), "--autoscale-window", window)
    assert done.returncode == 2
    assert "--autoscale-window" in done.stderr
    assert "86,400" in done.stderr


def test_without_an_auto_stage_there_is_nothing_to_scale(cycle):
    with ThreadPoolExecutor(1) as pool, pytest.raises(ScenarioError, match="no deployment has a `replicas: auto`"):
        plan_scenario(load_scenario(cycle), pool, only=["api"], autoscale_window_s=WINDOW_S)


def test_the_schedule_is_the_same_on_one_worker_as_on_two(autoscaled, cycle):
    plan, _xlsx = autoscaled
    done = run_cli("plan", str(cycle), "--autoscale-window", str(WINDOW_S), "--json", "--workers", "1",
                   "--deployment", "vlm-auto")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["autoscale"] == plan["autoscale"]
