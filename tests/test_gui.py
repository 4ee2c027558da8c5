"""The desktop app, offscreen: open the bundled scenario, validate, run, cancel, read the results, export."""

import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from click.testing import CliRunner  # noqa: E402
from plan_fixtures import write_tiny  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from gui import figures  # noqa: E402
from gui.controller import SEARCH_AUTO_STAGES, SEARCH_EVERY_STAGE  # noqa: E402
from gui.models import COLUMNS, MET_BRUSH, MISSED_BRUSH, ComparisonModel  # noqa: E402
from gui.plots import two_lines  # noqa: E402
from gui.report import with_export_suffix  # noqa: E402
from gui.window import MainWindow  # noqa: E402
from gui.worker import RunOutcome  # noqa: E402
from planner.plan import plan_as_written, plan_scenario  # noqa: E402
from planner.run import ScenarioReport  # noqa: E402
from planner.scenario import default_scenario_path, load_scenario, scenario_catalog  # noqa: E402
from profiles.errors import VlmplanError  # noqa: E402
from sim.metrics import SimulationResult  # noqa: E402

SHORT_HORIZON_S = 120.0  # two simulated minutes: every deployment in a few seconds
RUN_TIMEOUT_MS = 60_000


@pytest.fixture
def window(qtbot) -> MainWindow:
    """The main window on the bundled scenario, as ``vlmplan gui`` opens it."""
    win = MainWindow(None)
    qtbot.addWidget(win)
    win.show()
    return win


@pytest.fixture
def finished_window(qtbot, window) -> MainWindow:
    """The window after a short run of every deployment."""
    window.horizon.setValue(SHORT_HORIZON_S)
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.run()
    return window


# ---------------------------------------------------------------- Qt-free figure data


def test_the_front_line_joins_the_frames_pareto_rows_cheapest_first():
    frame = pd.DataFrame({"$/day": [300.0, 600.0, None, 100.0], "pareto": [True, False, False, True]},
                         index=["a", "b", "c", "d"])
    assert figures.front_order(frame) == [3, 0]


def test_cdf_and_load_curves_skip_missing_values():
    result = SimulationResult(
        deployment="d", metrics={"horizon_s": 60.0},
        timeseries={"t_s": [0.0, 30.0], "offered_rps": [1.0, 2.0], "e2e_p99_s": [None, 4.0]},
        cdf={"quantiles": [0, 50, 100], "e2e_s": [0.5, 1.0, None]})
    cdf = figures.latency_cdf(result, "e2e_s")
    assert cdf.x.tolist() == [0.5, 1.0]
    assert cdf.y.tolist() == [0.0, 0.5]
    load = figures.load_curve(result, "e2e_p99_s", 1.0)
    assert load.x.tolist() == [15.0, 45.0]  # bin centres
    assert math.isnan(load.y[0])
    assert load.y[1] == 4.0
    assert figures.time_unit(120) == (1.0, "s")
    assert figures.time_unit(3600) == (60.0, "min")
    assert figures.time_unit(86_400) == (3600.0, "h")


def test_point_labels_stay_inside_the_plot_and_clear_of_each_other():
    points = [(100.0, 100.0), (130.0, 100.0), (390.0, 100.0)]  # two close points, one at the right edge
    sizes = [(80.0, 14.0)] * 3
    bounds = (0.0, 0.0, 400.0, 200.0)
    anchors = figures.place_labels(points, sizes, bounds)
    rects = [(x - ax * w, y - ay * h, w, h) for (x, y), (ax, ay), (w, h) in zip(points, anchors, sizes, strict=True)]
    for left, top, w, h in rects:
        assert 0.0 <= left <= left + w <= 400.0
        assert 0.0 <= top <= top + h <= 200.0
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert figures._overlap_px2(a, b) == 0.0


def test_long_deployment_names_break_once_at_a_middle_hyphen():
    assert two_lines("generalist-72b") == "generalist-\n72b"
    assert two_lines("moe-30b-a3b") == "moe-\n30b-a3b"
    assert two_lines("omni-7b") == "omni-7b"
    assert two_lines("specialist") == "specialist"


def test_table_shows_dash_for_missing_latency_and_flags_verdicts(qtbot):
    scenario = load_scenario(default_scenario_path())
    metrics = {"gpus": 4, "cost_per_day_usd": 1234.5, "ttft_p99_s": None, "e2e_p99_s": None,
               "slo_attainment": 0.0, "slo_met": False, "overloaded": True}
    scenario = scenario.model_copy(update={"deployments": scenario.deployments[:1]})
    results = (SimulationResult(scenario.deployments[0].name, metrics),)
    report = ScenarioReport(scenario.name, 0, 60.0, 0.99, results)
    plan = plan_as_written(scenario, scenario_catalog(scenario), 0, 60.0, results)
    model = ComparisonModel()
    model.set_outcome(RunOutcome(scenario, report, plan))
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    cell = {header: model.data(model.index(0, c)) for c, header in enumerate(headers)}
    assert cell["Deployment"] == scenario.deployments[0].name
    assert cell["$/day"] == "1,234"  # as written: a real cost, marked as missing the SLO
    assert cell["TTFT p99 (s)"] == "-"
    assert cell["Verdict"] == "overloaded"
    verdict_column = headers.index("Verdict")
    assert model.data(model.index(0, verdict_column), Qt.ItemDataRole.BackgroundRole) == MISSED_BRUSH
    assert model.data(model.index(0, verdict_column), Qt.ItemDataRole.ToolTipRole).startswith("overloaded")
    assert f"{plan.benchmark} quality" in cell  # the header names the benchmark the score is on
    assert not plan.plans[0].feasible
    assert plan.plans[0].reason.startswith("overloaded")


# ---------------------------------------------------------------- the window


def test_window_opens_on_the_bundled_scenario(window):
    scenario = load_scenario(default_scenario_path())
    assert f"name: {scenario.name}" in window.editor.toPlainText()
    assert window.messages.toPlainText().startswith(f"ok: {scenario.name}: 6 deployments")
    assert window.horizon.value() == scenario.horizon_s
    assert window.results.table_model.rowCount() == 0
    assert not window.export_action.isEnabled()


def test_validate_names_the_field_path_of_a_broken_scenario(window):
    window.editor.setPlainText(window.editor.toPlainText().replace("share: 0.60", "sharee: 0.60", 1))
    assert window.validate() is None
    assert "default.yaml: traffic.classes.0.sharee: Extra inputs are not permitted" in window.messages.toPlainText()


def test_validate_puts_the_cursor_on_a_yaml_syntax_error(window):
    window.editor.setPlainText("name: x\ntraffic: [unclosed\nslo: {}\n")
    assert window.validate() is None
    assert "invalid YAML" in window.messages.toPlainText()
    assert window.editor.textCursor().blockNumber() in (1, 2)  # the line PyYAML reports


def test_run_with_a_broken_scenario_starts_nothing(window):
    window.editor.setPlainText(window.editor.toPlainText().replace("gpu: h100-sxm", "gpu: h1000", 1))
    window.run()
    assert not window.controller.running
    assert "unknown GPU 'h1000'" in window.messages.toPlainText() or "h1000" in window.messages.toPlainText()


def test_a_short_run_fills_the_table_and_every_plot(finished_window):
    window = finished_window
    report = window.outcome.report
    names = [d.name for d in load_scenario(default_scenario_path()).deployments]
    assert report.horizon_s == SHORT_HORIZON_S
    assert window.results.table_model.rowCount() == len(names) == 6
    assert [window.results.table_model.data(window.results.table_model.index(r, 0)) for r in range(6)] == names
    # bars carry exactly the metrics of the report
    cost = np.array([r.metrics["cost_per_day_usd"] for r in report.results])
    np.testing.assert_allclose(window.results.cost_plot.bars.opts["height"], cost)
    assert window.results.latency_plot.target.isVisible()  # the default scenario has a 2 s TTFT target
    assert window.results.latency_plot.target.value() == pytest.approx(2.0)
    # every deployment completed requests, so each has a CDF and a load curve
    for panel in (window.results.cdf_plot, window.results.load_plot):
        for curve in panel.curves[:6]:
            x, y = curve.getData()
            assert len(x) > 10
            assert np.nanmax(y) > 0
    x, _ = window.results.pareto_plot.points.getData()
    assert len(x) == 6
    # the memory tab lists every model stage of every deployment
    assert window.results.memory.table.rowCount() == len(window.outcome.comparison.memory) > 6
    assert window.export_action.isEnabled()


def test_the_gui_draws_the_plans_front_and_marks_who_misses(finished_window):
    """Defect: the GUI computed its own front (compact-2b, omni-7b, specialist) beside the plan's (specialist)."""
    window = finished_window
    plan = window.outcome.plan
    frame = plan.frame()
    assert list(frame["pareto"]) == list(plan.pareto) == [d["pareto"] for d in plan.to_contract_dict()["deployments"]]
    front = [name for name, flag in zip(frame.index, plan.pareto, strict=True) if flag]
    assert front
    assert all(frame.loc[name, "verdict"] == "meets SLO" for name in front)
    _, front_y = window.results.pareto_plot.front.getData()
    assert sorted(front_y) == sorted(frame.loc[front, "e2e p99 s"])
    # the table's Pareto column and verdicts are the frame's
    model = window.results.table_model
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    starred = [model.data(model.index(r, 0)) for r in range(model.rowCount())
               if model.data(model.index(r, headers.index("Pareto"))) == "*"]
    assert starred == front
    verdicts = [model.data(model.index(r, headers.index("Verdict"))) for r in range(model.rowCount())]
    assert verdicts == list(frame["verdict"])
    # one column per class: its p99 against its own target
    assert "camera p99" in headers
    labels = [label.textItem.toPlainText() for label in window.results.pareto_plot.labels if label.isVisible()]
    missed = [name for name, verdict in zip(frame.index, frame["verdict"], strict=True) if verdict != "meets SLO"]
    assert all(f"{name} (" in " ".join(labels) for name in missed)


def test_switching_the_latency_and_load_views_redraws(finished_window):
    window = finished_window
    report = window.outcome.report
    window.results.latency_plot.choice.setCurrentIndex(window.results.latency_plot.choice.findData("e2e p99 s"))
    e2e = [r.metrics["e2e_p99_s"] for r in report.results]
    np.testing.assert_allclose(window.results.latency_plot.bars.opts["height"], e2e)
    window.results.load_plot.choice.setCurrentIndex(window.results.load_plot.choice.findData("in_system"))
    assert not window.results.load_plot.offered.isVisible()


def test_redrawing_results_keeps_none_alive(finished_window):
    """A PySide6 build that drops a reference to None per null return aborts the app minutes in."""
    window = finished_window
    before = sys.getrefcount(None)
    for _ in range(5):
        window._on_finished(window.outcome)
        window.grab()
    assert sys.getrefcount(None) > before - 200


def test_export_writes_the_comparison_as_xlsx_csv_and_json(finished_window, tmp_path):
    report = finished_window.outcome.report
    cost = {r.deployment: r.metrics["cost_per_day_usd"] for r in report.results}
    for suffix in (".xlsx", ".csv", ".json"):
        finished_window.export_to(tmp_path / f"comparison{suffix}")
    sheets = pd.read_excel(tmp_path / "comparison.xlsx", sheet_name=None, index_col=0)
    assert {"Comparison", "Time series", "Assumptions"} <= set(sheets)
    for frame in (sheets["Comparison"], pd.read_csv(tmp_path / "comparison.csv", index_col=0)):
        assert list(frame.index) == list(cost)
        np.testing.assert_allclose(frame["$/day"], list(cost.values()))
    contract = json.loads((tmp_path / "comparison.json").read_text())
    assert [d["name"] for d in contract["deployments"]] == list(cost)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_export_names_a_suffix_it_cannot_write(finished_window, tmp_path):
    finished_window.export_to(tmp_path / "comparison.pdf")
    assert "not '.pdf'" in finished_window.messages.toPlainText()
    assert with_export_suffix(tmp_path / "c", "CSV (*.csv)").name == "c.csv"


def test_cancel_stops_a_long_run(qtbot, window):
    window.horizon.setValue(3600.0)  # an hour: about a minute of work, unless cancelled
    with qtbot.waitSignal(window.controller.progress, timeout=RUN_TIMEOUT_MS):
        window.run()
    assert window.cancel_action.isEnabled()
    with qtbot.waitSignal(window.controller.cancelled, timeout=RUN_TIMEOUT_MS):
        window.cancel_action.trigger()
    assert not window.controller.running
    assert window.run_action.isEnabled()
    assert window.results.table_model.rowCount() == 0
    window.horizon.setValue(30.0)  # the controller takes a new run after a cancelled one
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.run()
    assert window.results.table_model.rowCount() == 6


def test_sizing_auto_stages_shows_the_searched_replicas(qtbot, window, tmp_path):
    """The tiny scenario's VLM pool says `replicas: auto`: as written it runs at 1 replica and misses;
    sized, it gets the replicas `vlmplan plan` finds and meets the SLO."""
    window.open_scenario(write_tiny(tmp_path))
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.run()
    model = window.results.table_model
    replicas = model.column_of("replicas")
    assert model.data(model.index(0, replicas)) == "vlm x1"
    window.sizing.setCurrentText(SEARCH_AUTO_STAGES)
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.run()
    with ThreadPoolExecutor(1) as pool:
        planned = plan_scenario(load_scenario(write_tiny(tmp_path)), pool).plans[0]
    assert planned.replicas["vlm"] > 1
    assert model.data(model.index(0, replicas)) == f"vlm x{planned.replicas['vlm']} (searched)"
    assert window.outcome.report.results[0].metrics["slo_met"]
    assert window.outcome.plan.plans[0].probes  # the search log goes to Export


def test_searching_every_model_stage_sizes_a_fixed_pool(qtbot, window, tmp_path):
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(write_tiny(tmp_path).read_text(encoding="utf-8").replace(
        "replicas: auto, max_replicas: 16", "replicas: 8"), encoding="utf-8")
    window.open_scenario(fixed)
    window.sizing.setCurrentText(SEARCH_EVERY_STAGE)
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.run()
    model = window.results.table_model
    text = model.data(model.index(0, model.column_of("replicas")))
    assert text.endswith("(searched)")
    assert window.outcome.plan.plans[0].replicas["vlm"] < 8


def test_cancel_stops_a_capacity_search(qtbot, window, tmp_path):
    window.open_scenario(write_tiny(tmp_path))
    window.horizon.setValue(3600.0)  # a long search, unless cancelled
    window.sizing.setCurrentText(SEARCH_AUTO_STAGES)
    window.run()
    qtbot.wait(300)
    with qtbot.waitSignal(window.controller.cancelled, timeout=RUN_TIMEOUT_MS):
        window.cancel_action.trigger()
    assert window.run_action.isEnabled()
    assert window.sizing.isEnabled()


def test_sensitivity_reruns_the_last_outcome_under_changed_traffic(qtbot, window, tmp_path):
    window.open_scenario(write_tiny(tmp_path))
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.run()
    ran = window.outcome
    assert window.sensitivity_action.isEnabled()
    assert window.results.sensitivity.table.rowCount() == 0  # nothing until asked
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.sensitivity_action.trigger()
    view = window.results.sensitivity.table
    assert window.results.tabs.currentWidget() is window.results.sensitivity
    headers = [view.horizontalHeaderItem(c).text() for c in range(view.columnCount())]
    assert headers == ["deployment", "as planned", "load x0.75", "load x1.25", "load x1.5", "load x2",
                       "output x1.5", "load headroom"]
    assert [view.item(r, 0).text() for r in range(view.rowCount())] == ["vlm-auto", "api", "queue"]
    assert window.outcome.report is ran.report  # the run itself is kept; the plan gains the sensitivity
    rows = {row.deployment: row for row in window.outcome.plan.sensitivity}
    load_x2 = rows["vlm-auto"].outcomes[3]
    assert load_x2.perturbation.label == "load x2"
    metrics = load_x2.result.metrics
    assert view.item(0, 5).text().split()[0] == ("OVERLOAD" if metrics["overloaded"]
                                                 else f"{metrics['slo_attainment']:.1%}")
    verdict = MET_BRUSH if metrics["slo_met"] and not metrics["overloaded"] else MISSED_BRUSH
    assert view.item(0, 5).background().color() == verdict.color()
    window.export_to(tmp_path / "plan.xlsx")
    assert "Sensitivity" in pd.ExcelFile(tmp_path / "plan.xlsx").sheet_names
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.run()  # a new run starts without sensitivity, on the plots
    assert window.results.sensitivity.table.rowCount() == 0
    assert window.results.tabs.currentWidget() is window.results.plots_tab


def test_a_deployment_that_cannot_run_shows_why(qtbot, window):
    text = window.editor.toPlainText().replace(
        "model: qwen2.5-vl-72b, gpu: h100-sxm, tensor_parallel: 4", "model: qwen2.5-vl-72b, gpu: l4, tensor_parallel: 1")
    window.editor.setPlainText(text)
    window.horizon.setValue(30.0)
    window.run()  # validation builds each deployment as the run would: refused before any run starts
    assert not window.controller.running
    assert "short by" in window.messages.toPlainText()
    assert window.run_action.isEnabled()


def test_screenshot_mode_runs_saves_and_exits(qtbot, tmp_path):
    from gui.app import run_gui

    path = tmp_path / "shot.png"
    assert run_gui(None, horizon_s=30.0, screenshot_path=path) == 0
    assert path.stat().st_size > 10_000


# ---------------------------------------------------------------- the command and the import rules


def test_gui_command_without_pyside6_asks_for_the_gui_extra(monkeypatch):
    from planner.cli import cli

    for name in [n for n in sys.modules if n == "gui.app" or n.startswith(("gui.", "PySide6"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "PySide6", None)
    result = CliRunner().invoke(cli, ["gui"], standalone_mode=False)
    assert isinstance(result.exception, VlmplanError)
    assert "vlmplan[gui]" in str(result.exception)


def test_the_gui_does_not_import_torch():
    code = "import sys, gui.app; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_models_columns_name_their_units():
    headers = {column.header for column in COLUMNS}
    assert {"GPUs", "$/day", "TTFT p99 (s)", "e2e p99 (s)", "SLO attainment", "Verdict", "Pareto"} <= headers
