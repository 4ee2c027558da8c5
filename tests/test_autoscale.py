"""Autoscaling over the day (``vlmplan plan --autoscale``): sizes follow the daily curve, and cost less."""

import itertools
import json
import math
import random
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import openpyxl
import pytest
from plan_fixtures import write_daily_cycle, write_tiny

from planner.autoscale import (
    HOST_LINK_EFFICIENCY,
    WARMUP_S,
    _staircase,
    count_requests,
    load_times_s,
    scalable_jobs,
    window_job,
    window_starts,
)
from planner.capacity import CapacityPlan, DeploymentEvaluator, cache_key, plan_capacity, sized
from planner.plan import plan_scenario
from planner.run import scenario_jobs
from planner.scenario import load_scenario
from profiles.catalog import load_catalog
from profiles.errors import ScenarioError
from profiles.perf import perf_model
from sim.api import simulate
from sim.deployment import DeploymentSpec
from sim.metrics import SimulationResult
from sim.traffic.arrivals import SECONDS_PER_DAY

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
    assert all(w["feasible"] for w in windows)
    for window in windows:  # simulated at its sizes, or vouched for by a busier window simulated at the same sizes
        if window["inferred_from_s"] is None:
            assert window["slo_attainment"] >= 0.95
        else:
            voucher = next(w for w in windows if w["start_s"] == window["inferred_from_s"])
            assert voucher["inferred_from_s"] is None
            assert voucher["slo_attainment"] >= 0.95
            assert voucher["replicas"] == window["replicas"]
            assert voucher["requests"] >= window["requests"]
            assert window["slo_attainment"] is None
    [planned] = [d for d in plan["deployments"] if d["name"] == "vlm-auto"]
    # The static alternative is the plan's own sizing (its horizon: 14:00-16:00), all day.
    assert schedule["static_replicas"] == planned["replicas"]
    assert schedule["static_cost_per_day_usd"] == pytest.approx(planned["metrics"]["gpus"] * L4_USD_PER_HOUR * 24)
    # Every replica added at a boundary (midnight too: the day repeats) is paid while it loads.
    load_s = schedule["load_s"]["vlm"]
    sizes = [w["replicas"]["vlm"] for w in windows]
    added = sum(max(0, after - before) for before, after in zip(sizes[-1:] + sizes[:-1], sizes, strict=True))
    assert added >= 1
    loading_usd = added * load_s / 3600 * L4_USD_PER_HOUR
    assert schedule["loading_cost_per_day_usd"] == pytest.approx(loading_usd)
    gpu_hours = sum(w["gpus"] for w in windows) * WINDOW_S / 3600
    assert schedule["autoscaled_cost_per_day_usd"] == pytest.approx(gpu_hours * L4_USD_PER_HOUR + loading_usd)
    assert schedule["autoscaled_cost_per_day_usd"] < schedule["static_cost_per_day_usd"]
    assert schedule["saving_share"] == pytest.approx(
        1 - schedule["autoscaled_cost_per_day_usd"] / schedule["static_cost_per_day_usd"])
    [noted] = [a["detail"] for a in plan["assumptions"] if a["item"] == "autoscaling"]
    assert "instant" not in noted
    assert "starts loading" in noted


def test_a_new_replica_loads_its_weights_over_the_host_link_then_warms_up():
    """Qwen2.5-VL-7B bf16 (~16.6 GB of weights) on an L4 (PCIe gen4 x16, 64 GB/s both ways): ~0.7 s + warm-up."""
    deployment = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "vlm", "kind": "model", "model": "qwen2.5-vl-7b", "gpu": "l4"},
        {"name": "big", "kind": "model", "model": "qwen2.5-vl-72b", "gpu": "h100-sxm", "tensor_parallel": 4}]})
    load_s = load_times_s(deployment)
    catalog = load_catalog()
    for name, gpu_id in (("vlm", "l4"), ("big", "h100-sxm")):
        stage = deployment.stage(name)
        weights = perf_model(catalog.model(stage.model), catalog.gpu(gpu_id),
                             stage.tensor_parallel).memory.weights_bytes_per_gpu
        one_way_bytes_s = catalog.gpu(gpu_id).pcie_gbs / 2 * HOST_LINK_EFFICIENCY * 1e9
        assert load_s[name] == pytest.approx(weights / one_way_bytes_s + WARMUP_S)
    assert 0.3 < load_s["vlm"] - WARMUP_S < 1.5


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


def test_the_schedules_headers_sit_over_their_numbers_and_the_totals_headers_wrap(autoscaled):
    """Seen on the rendered sheet: left-aligned headers in wide columns sat over the right-aligned numbers of
    the column beside them ("$148" read as under "SLO met"), and the totals' long headers widened every
    column. Headers over numbers now align right, and the totals' headers wrap in the windows' columns."""
    _plan, xlsx = autoscaled
    sheet = openpyxl.load_workbook(xlsx)["Autoscale"]
    header = {cell.value: cell for cell in sheet[1]}
    assert header["vlm-auto $/day at this size"].alignment.horizontal == "right"
    assert header["vlm-auto GPUs"].alignment.horizontal == "right"
    replicas = header["vlm-auto replicas"]  # text: left, a step in from the right-aligned numbers beside it
    assert (replicas.alignment.horizontal, replicas.alignment.indent) == ("left", 1)
    assert sheet.column_dimensions[replicas.column_letter].alignment.indent == 1  # its cells too
    totals = next(row for row in sheet.iter_rows() if row[0].value == "deployment")
    static = totals[2]
    assert static.value.startswith("static $/day")
    assert static.alignment.wrap_text
    assert sheet.column_dimensions[static.column_letter].width < len(static.value)
    assert sheet.row_dimensions[static.row].height >= 30  # two lines


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


def test_climbing_the_windows_by_load_gives_the_sizes_of_searching_every_window_with_fewer_simulations(
        autoscaled, cycle):
    """Each window searched on its own (the capacity search, as before the climb) sizes every window as the
    climb does, while the climb simulates fewer configurations than those searches."""
    plan, _xlsx = autoscaled
    [schedule] = plan["autoscale"]
    scenario = load_scenario(cycle)
    [job] = scalable_jobs(scenario_jobs(scenario))
    starts = window_starts(WINDOW_S)
    with ProcessPoolExecutor(2) as pool:
        searched = plan_capacity([job.deployment] * len(starts),
                                 [DeploymentEvaluator(window_job(job, start_s, WINDOW_S)) for start_s in starts],
                                 pool, target=scenario.slo.attainment)
    assert [w["replicas"] for w in schedule["windows"]] == [dict(p.replicas) for p in searched]
    assert len({w["replicas"]["vlm"] for w in schedule["windows"]}) > 1  # the climb crossed a size boundary
    assert schedule["simulations"] < sum(p.simulations for p in searched)
    # Requests of every window are its own (counted as its simulation sees them), simulated or inferred.
    for window, each in zip(schedule["windows"], searched, strict=True):
        assert window["requests"] == each.result.metrics["requests"]
    assert any(w["inferred_from_s"] is not None for w in schedule["windows"])


def test_a_window_counts_the_requests_its_simulation_sees(cycle):
    [job] = scalable_jobs(scenario_jobs(load_scenario(cycle)))
    window = window_job(job, 7200.0, WINDOW_S)
    assert count_requests(window) == simulate(window).metrics["requests"]


def test_a_schedule_that_misses_the_slo_is_not_priced():
    """Infeasible is infeasible everywhere: an autoscaled deployment whose window misses the SLO at every size
    has no autoscaled or static cost and no saving, in text, JSON and the comparison."""
    from planner.autoscale import Schedule, Window, render_schedules

    def window(start_s: float, feasible: bool) -> Window:
        return Window(start_s=start_s, replicas={"vlm": 1}, gpus=1, feasible=feasible,
                      reason="" if feasible else "camera: e2e at zero load 0.2 s > target 0.1 s",
                      requests=100, slo_attainment=0.5 if not feasible else 1.0, e2e_p99_s=1.0,
                      cost_per_day_usd=24.0, gpu_pools={"vlm": (("l4", 1, 1.0),)})

    missing = Schedule(deployment="d", window_s=43_200.0, windows=(window(0, True), window(43_200, False)),
                       peak_replicas={"vlm": 1}, peak_gpu_cost_per_day_usd=24.0, load_s={"vlm": 30.0}, simulations=2)
    assert missing.totals() is None
    entry = missing.to_dict()
    assert entry["autoscaled_cost_per_day_usd"] is None
    assert entry["saving_share"] is None
    text = render_schedules([missing])
    assert "INFEASIBLE: 1 of 2 windows" in text
    assert "$" not in text.split("INFEASIBLE")[1]


def with_price(xlsx: Path, gpu: str, usd_per_gpu_hour: float, tmp_path: Path) -> Path:
    """``xlsx`` with ``gpu``'s price cell on the Assumptions sheet set to ``usd_per_gpu_hour``, recalculated
    by LibreOffice (the test skips without it); the recalculated workbook's path."""
    import shutil

    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed: no spreadsheet engine to recalculate with")
    book = openpyxl.load_workbook(xlsx)
    price_row = next(row[0].row for row in book["Assumptions"].iter_rows() if row[0].value == gpu)
    book["Assumptions"][f"B{price_row}"] = usd_per_gpu_hour
    (tmp_path / "in").mkdir()
    book.save(tmp_path / "in" / "plan.xlsx")
    done = subprocess.run([soffice, f"-env:UserInstallation=file://{tmp_path / 'lo'}", "--headless", "--calc",
                           "--convert-to", "xlsx", "--outdir", str(tmp_path), str(tmp_path / "in" / "plan.xlsx")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return tmp_path / "plan.xlsx"


def test_the_workbooks_schedule_costs_follow_the_gpu_price(autoscaled, tmp_path: Path):
    """Issue 15.2: every window's $/day and the totals are formulas over the Assumptions sheet's L4 price,
    caching the plan's numbers; LibreOffice recalculating after the price doubles doubles them."""

    import openpyxl

    plan, xlsx = autoscaled
    [schedule] = plan["autoscale"]
    sheet = openpyxl.load_workbook(xlsx)["Autoscale"]
    price_row = next(row[0].row for row in openpyxl.load_workbook(xlsx)["Assumptions"].iter_rows()
                     if row[0].value == "l4")
    price = f"'Assumptions'!$B${price_row}"
    rows = list(sheet.iter_rows(values_only=True))
    cost_col = rows[0].index("vlm-auto $/day at this size")
    assert all(price in row[cost_col] for row in rows[1:13])
    totals_row = next(index for index, row in enumerate(rows) if row[0] == "vlm-auto")
    assert price in rows[totals_row][1]  # autoscaled (its loading replicas too)
    assert price in rows[totals_row][2]  # static
    cached = list(openpyxl.load_workbook(xlsx, data_only=True)["Autoscale"].iter_rows(values_only=True))
    assert cached[totals_row][1] == pytest.approx(schedule["autoscaled_cost_per_day_usd"], rel=1e-9)
    assert cached[totals_row][2] == pytest.approx(schedule["static_cost_per_day_usd"], rel=1e-9)
    assert cached[totals_row][3] == pytest.approx(schedule["saving_share"], rel=1e-9)
    recalculated = with_price(xlsx, "l4", 2 * L4_USD_PER_HOUR, tmp_path)
    after = list(openpyxl.load_workbook(recalculated, data_only=True)["Autoscale"].iter_rows(values_only=True))
    assert after[totals_row][1] == pytest.approx(2 * schedule["autoscaled_cost_per_day_usd"], rel=1e-9)
    assert after[totals_row][2] == pytest.approx(2 * schedule["static_cost_per_day_usd"], rel=1e-9)
    assert after[totals_row][3] == pytest.approx(schedule["saving_share"], rel=1e-9)
    comparison = {row[0]: row for row in openpyxl.load_workbook(recalculated, data_only=True)[
        "Comparison"].iter_rows(values_only=True)}
    header = comparison["deployment"]
    assert comparison["vlm-auto"][header.index("$/day autoscaled")] == pytest.approx(
        2 * schedule["autoscaled_cost_per_day_usd"], rel=1e-9)


def _staircase_against(scenario_path: Path, needs: list[int], loads: list[int], known_at_top: bool,
                       capacity: float, most: int | None = None) -> tuple[list, int]:
    """Drive the staircase (the daily cycle's deployment, ``len(needs)`` windows) over windows whose SLO verdicts
    are given: window ``w`` meets at ``needs[w]`` replicas
    or more (a world where attainment rises with replicas and falls with requests, as assumed); a configuration
    that misses serves at most ``capacity`` requests per replica; ``most``: the stage's ``max_replicas``. Returns
    its windows and the simulations it asked for."""
    scenario = load_scenario(scenario_path)
    [job] = scalable_jobs(scenario_jobs(scenario))
    most = most or max(needs) + 4
    stage = job.deployment.stages[0].model_copy(update={"max_replicas": most})
    job = replace(job, deployment=job.deployment.model_copy(update={"stages": [stage]}))
    window_s = SECONDS_PER_DAY / len(needs)
    evaluators = [DeploymentEvaluator(window_job(job, k * window_s, window_s)) for k in range(len(needs))]

    def result(w: int, replicas: int) -> SimulationResult:  # what a simulation of window w would report
        offered = loads[w] / window_s
        served = offered if replicas >= needs[w] else min(offered, replicas * capacity / window_s)
        return SimulationResult(job.deployment.name, {
            "slo_met": replicas >= needs[w], "overloaded": False, "requests": loads[w], "throughput_rps": served,
            "slo_attainment": 1.0 if replicas >= needs[w] else 0.5, "gpus": replicas, "cost_per_day_usd": replicas},
            per_stage={"vlm": {"gpus": replicas, "cost_per_day_usd": float(replicas)}})

    cache: dict = {}
    busiest = max(range(len(needs)), key=lambda w: (loads[w], w))
    if known_at_top:  # the plan's own search had sized the busiest window
        for replicas in {needs[busiest], max(1, needs[busiest] - 1)}:
            cache[cache_key(evaluators[busiest], sized(job.deployment, {"vlm": replicas}))] = result(busiest, replicas)
    climb = _staircase(job, evaluators, loads, cache, "vlm")
    simulated: set[tuple[int, int]] = set()

    def simulate_once(w: int, replicas: int) -> SimulationResult:  # through the cache, as the rounds run
        key = cache_key(evaluators[w], sized(job.deployment, {"vlm": replicas}))
        if key not in cache:
            cache[key] = result(w, replicas)
            simulated.add((w, replicas))
        return cache[key]

    try:
        asked = next(climb)
        while True:
            answers: list = []
            for kind, w, what in asked:
                if kind == "search":  # the capacity search of one window, from the lowest size it is given
                    [(low, _high)] = what.values() if what else [(1, most)]
                    size = min(max(low, needs[w]), most)  # the answer, or the closest try: the most replicas
                    answers.append(CapacityPlan(sized(job.deployment, {"vlm": size}), {"vlm": size}, ("vlm",),
                                                size >= needs[w], "" if size >= needs[w] else "misses",
                                                simulate_once(w, size), ()))
                else:
                    answers.append(simulate_once(w, what.stage("vlm").replicas))
            asked = climb.send(answers)
    except StopIteration as done:
        return done.value, len(simulated)


@pytest.mark.parametrize("seed", range(40))
def test_the_staircase_sizes_every_window_as_its_own_search_would(cycle, seed):
    """In a world where SLO attainment rises with replicas and falls with requests, every window gets the fewest
    replicas that meet the SLO there (its own search's answer), and a window not simulated at its size is vouched
    for by a busier window simulated at that size. Steps anywhere, and a
    capacity per replica that says little about them: the aim is wrong, the answers must not be."""
    rng = random.Random(seed)
    count = rng.choice([8, 12, 24])
    loads = rng.sample(range(100, 10_000), count)
    steps = sorted(rng.sample(range(100, 10_000), rng.randint(0, 4)))  # the loads where one more replica is needed
    needs = [1 + sum(load > step for step in steps) for load in loads]
    capacity = rng.uniform(0.5, 2.0) * max(loads) / max(needs)
    windows, _simulations = _staircase_against(cycle, needs, loads, known_at_top=seed % 2 == 0, capacity=capacity)
    assert [w.replicas["vlm"] for w in windows] == needs
    for k, window in enumerate(windows):
        assert window.feasible
        assert window.requests == loads[k]
        if window.inferred_from_s is not None:
            voucher = round(window.inferred_from_s / (SECONDS_PER_DAY / count))
            assert windows[voucher].inferred_from_s is None
            assert windows[voucher].replicas == window.replicas
            assert loads[voucher] > loads[k]


@pytest.mark.parametrize("seed", range(20))
def test_the_staircase_costs_a_few_simulations_per_step_however_many_replicas(cycle, seed):
    """A day from ~5 to ~100 replicas (requests per replica steady, as the aim assumes): every window sized as its
    own search would, with at most four simulations per step of the staircase (two is the least that proves a
    step: the quieter window meeting at its size, the busier one missing at the size below its own)."""
    rng = random.Random(seed)
    base = rng.uniform(5_000, 15_000)
    loads = [round(base * (2.5 + 1.5 * math.cos(2 * math.pi * (hour - 14) / 24)) * rng.uniform(0.98, 1.02))
             for hour in range(24)]
    per_replica = rng.uniform(300, 3_000)
    needs = [math.ceil(load / per_replica) for load in loads]
    windows, simulations = _staircase_against(cycle, needs, loads, known_at_top=True,
                                              capacity=per_replica * rng.uniform(1.05, 1.3))
    assert [w.replicas["vlm"] for w in windows] == needs
    by_load = sorted(range(24), key=lambda w: (loads[w], w))
    steps = sum(needs[a] != needs[b] for a, b in itertools.pairwise(by_load))
    assert simulations <= 4 * steps + 1


def test_when_the_busiest_window_misses_at_every_size_each_window_still_gets_its_own_answer(cycle):
    """The two busiest windows need more replicas than the stage may have: they are INFEASIBLE with their closest
    try, and every other window gets the fewest replicas that meet the SLO there (window by window, ``_climb``)."""
    loads = [1_000 * (k + 1) for k in range(12)]
    needs = [1 + load // 3_000 for load in loads]  # 1 to 5 replicas
    windows, _simulations = _staircase_against(cycle, needs, loads, known_at_top=False, capacity=3_000, most=4)
    assert [w.feasible for w in windows] == [need <= 4 for need in needs]
    assert [w.replicas["vlm"] for w in windows] == [min(need, 4) for need in needs]


# A scaled front stage, then a prefill/decode stage whose pools run on two GPU types (H100 prefill, L40S decode).
SPLIT_GPU_SCENARIO = """\
name: split-gpus
description: A scaled front stage, then a prefill/decode stage on two GPU types.
seed: 3
horizon_s: 1800
traffic:
  start_s: 50400
  arrivals: {kind: diurnal, requests_per_day: 20000, peak_to_trough: 4.0, peak_hour: 14}
  classes:
    - {name: chat, share: 1, text_tokens: 300, output_tokens: 60}
slo: {ttft_s: 2.0, tpot_s: 0.2, attainment: 0.9}
deployments:
  - name: split
    stages:
      - {name: front, kind: model, model: qwen2.5-7b, gpu: l4, replicas: auto, max_replicas: 8, output_tokens: 20}
      - {name: answer, kind: model, model: qwen2.5-7b, gpu: h100-sxm, text_only_input: true,
         disaggregation: {mode: prefill_decode, prefill_replicas: 1, decode_replicas: 2, prefill_gpu: h100-sxm,
                          decode_gpu: l40s}}
    routes:
      - {classes: [chat], path: [front, answer]}
"""


def test_a_stage_on_two_gpu_types_is_priced_per_pool_in_json_and_workbook(tmp_path: Path):
    """Issue 15's open corner: the Autoscale sheet priced every GPU of a prefill/decode stage at its first
    pool's price (H100 for the L40S decode GPUs too: $263/day instead of $148). Each pool now costs its own
    GPU's price, in the JSON and in the workbook's cells, and the formulas follow each price cell."""

    scenario = tmp_path / "split.yaml"
    scenario.write_text(SPLIT_GPU_SCENARIO)
    xlsx = tmp_path / "plan.xlsx"
    done = run_cli("plan", str(scenario), "--autoscale-window", "21600", "--json", "--xlsx", str(xlsx))
    assert done.returncode == 0, done.stderr
    [schedule] = json.loads(done.stdout)["autoscale"]
    price = {gpu: load_catalog().gpu(gpu).price.usd_per_gpu_hour for gpu in ("l4", "h100-sxm", "l40s")}
    for window in schedule["windows"]:
        front = window["replicas"]["front"]
        assert window["cost_per_day_usd"] == pytest.approx(
            24 * (front * price["l4"] + price["h100-sxm"] + 2 * price["l40s"]))
    cached = list(openpyxl.load_workbook(xlsx, data_only=True)["Autoscale"].iter_rows(values_only=True))
    cost_col = cached[0].index("split $/day at this size")
    windows = cached[1:1 + len(schedule["windows"])]
    assert [row[cost_col] for row in windows] == pytest.approx([w["cost_per_day_usd"] for w in schedule["windows"]])
    replicas_col = cached[0].index("split replicas")  # the split stage by its pools (it read "answer x1")
    assert {row[replicas_col] for row in windows} <= {f"front x{n}, answer prefill x1 + decode x2" for n in range(1, 9)}
    totals_row = next(index for index, row in enumerate(cached) if row[0] == "split")
    assert cached[totals_row][1] == pytest.approx(schedule["autoscaled_cost_per_day_usd"], rel=1e-9)
    assert cached[totals_row][2] == pytest.approx(schedule["static_cost_per_day_usd"], rel=1e-9)
    recalculated = with_price(xlsx, "l40s", 2 * price["l40s"], tmp_path)  # the decode GPUs cost twice as much
    after = list(openpyxl.load_workbook(recalculated, data_only=True)["Autoscale"].iter_rows(values_only=True))
    decode_usd_per_day = 24 * 2 * price["l40s"]  # two decode GPUs all day, at the old price
    assert [row[cost_col] for row in after[1:1 + len(windows)]] == pytest.approx(
        [w["cost_per_day_usd"] + decode_usd_per_day for w in schedule["windows"]])
    assert after[totals_row][2] == pytest.approx(schedule["static_cost_per_day_usd"] + decode_usd_per_day)


def test_a_replica_loading_rents_the_gpus_its_stage_adds_each_at_its_own_price():
    """A boundary that adds replicas pays, for ``load_s``, the GPUs each pool of the stage gains, each at its
    GPU's price. An encode-split stage's encoder pool is sized by ``encoder_replicas``, not ``replicas``: a new
    LLM replica loads on its own GPUs and rents no share of it (it was charged a third of an L40S each)."""
    from planner.autoscale import Schedule, Window

    def window(start_s: float, replicas: int, encoder_gpu: str) -> Window:
        pools = (("h100-sxm", 2 * replicas, 3.0), (encoder_gpu, 1, 3.0 if encoder_gpu == "h100-sxm" else 1.0))
        return Window(start_s=start_s, replicas={"vlm": replicas}, gpus=2 * replicas + 1, feasible=True, reason="",
                      requests=10, slo_attainment=1.0, e2e_p99_s=1.0, cost_per_day_usd=24 * 7.0 * replicas,
                      gpu_pools={"vlm": pools})

    hours = 2 * 2 * 360 / 3600  # two replicas of two GPUs added at noon, loading for 6 minutes
    for encoder_gpu in ("l40s", "h100-sxm"):  # an encoder pool on its own GPU type, or on the LLM's
        schedule = Schedule(deployment="d", window_s=43_200.0,
                            windows=(window(0, 1, encoder_gpu), window(43_200, 3, encoder_gpu)),
                            peak_replicas={"vlm": 3}, peak_gpu_cost_per_day_usd=24 * 21.0, load_s={"vlm": 360.0})
        assert schedule.loading_gpu_hours() == pytest.approx({("h100-sxm", 3.0): hours})
        assert schedule.loading_cost_per_day_usd == pytest.approx(hours * 3.0)
    assert schedule.windows[1].gpu_cost_by_stage == {"vlm": pytest.approx(24 * (6 * 3.0 + 1 * 3.0))}


SPLIT_CYCLE = """\
name: split-cycle
description: A daily cycle through an encode-split VLM stage that scales, beside stages that cannot.
seed: 5
horizon_s: 3600
traffic:
  start_s: 50400
  arrivals: {kind: diurnal, requests_per_day: 4000, peak_to_trough: 8.0, peak_hour: 14}
  classes:
    - {name: doc, share: 0.7, images: {count: 1, width_px: 1024, height_px: 1024}, text_tokens: 50,
       output_tokens: 100}
    - {name: chat, share: 0.2, text_tokens: 200, output_tokens: 50}
    - {name: note, share: 0.1, text_tokens: 200, output_tokens: 50}
slo: {ttft_s: 1.0, tpot_s: 0.1, attainment: 0.95}
deployments:
  - name: split
    stages:
      - {name: vlm, kind: model, model: qwen2.5-vl-7b, gpu: l4, replicas: auto, max_replicas: 4,
         disaggregation: {mode: encode, encoder_replicas: 1, encoder_gpu: l40s}}
      - {name: pd, kind: model, model: qwen2.5-7b, gpu: l4,
         disaggregation: {mode: prefill_decode, prefill_replicas: 1, decode_replicas: 1}}
      - {name: fixed, kind: model, model: qwen2.5-7b, gpu: l4, replicas: 2}
    routes:
      - {classes: [doc], path: [vlm]}
      - {classes: [chat], path: [pd]}
      - {classes: [note], path: [fixed]}
"""


def test_loading_is_noted_and_paid_only_for_the_stages_the_schedule_scales(tmp_path: Path):
    """The loading note (text and JSON ``load_s``) named every model stage, a prefill/decode stage (which
    the search never sizes) and a stage of written size too; now it names the ``auto`` stage only. And with
    the simulator's own pools: one more encode-split replica pays for its L4 while it loads, none of the
    encoder pool's L40S."""
    from planner.autoscale import _simulated_window, render_schedules

    path = tmp_path / "split.yaml"
    path.write_text(SPLIT_CYCLE, encoding="utf-8")
    with ThreadPoolExecutor(1) as pool:
        report = plan_scenario(load_scenario(path), pool, autoscale_window_s=43_200.0)
    [schedule] = report.autoscale
    assert schedule.to_dict()["load_s"] == {"vlm": pytest.approx(load_times_s(schedule.spec)["vlm"])}
    noted = render_schedules([schedule]).split("for replicas loading before they serve: ")[1].split(")")[0]
    assert noted == f"vlm {schedule.load_s['vlm']:.0f} s"

    [job] = scalable_jobs(scenario_jobs(load_scenario(path)))
    windows = tuple(replace(_simulated_window({"vlm": size}, simulate(replace(
        job, deployment=sized(job.deployment, {"vlm": size}), horizon_s=60.0))), start_s=start_s)
        for start_s, size in ((0.0, 1), (43_200.0, 2)))
    assert [w.gpu_pools["vlm"][1][:2] for w in windows] == [("l40s", 1)] * 2  # the encoder pool, unchanged
    grown = replace(schedule, windows=windows)
    l4_usd = load_catalog().gpu("l4").price.usd_per_gpu_hour
    assert grown.loading_gpu_hours() == pytest.approx({("l4", l4_usd): schedule.load_s["vlm"] / 3600})
