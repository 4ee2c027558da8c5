"""The desktop app, offscreen: open the bundled scenario, validate, run, cancel, read the results, export."""

import gc
import html
import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from click.testing import CliRunner  # noqa: E402
from plan_fixtures import write_tiny  # noqa: E402
from PySide6.QtCore import QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QLineEdit  # noqa: E402

from gui import figures  # noqa: E402
from gui.controller import SEARCH_EVERY_STAGE  # noqa: E402
from gui.form import ERROR_BRUSH  # noqa: E402
from gui.models import COLUMNS, MET_BRUSH, MISSED_BRUSH, ComparisonModel  # noqa: E402
from gui.plots import INFEASIBLE_COLOUR, BarPanel, ParetoPanel, two_lines  # noqa: E402
from gui.report import with_export_suffix  # noqa: E402
from gui.window import MainWindow  # noqa: E402
from gui.worker import RunOutcome  # noqa: E402
from gui.yamledit import set_field, yaml_scalar  # noqa: E402
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


def test_log_axis_ticks_are_round_numbers_written_out():
    """Defect: the CDF's log axis mixed "1" with "10^1" (pyqtgraph's own log ticks); ticks are now 1-2-5 steps."""
    ticks = figures.log_ticks(0.04, 60.0, figures.seconds_text)
    assert [text for _, text in ticks] == ["0.1", "0.3", "1", "3", "10", "30"]  # 1-2-5 would be 10 ticks
    assert all(value == pytest.approx(math.log10(float(text))) for value, text in ticks)
    assert [text for _, text in figures.log_ticks(300, 12_000, figures.dollars_text)] == [
        "$500", "$1k", "$2k", "$5k", "$10k"]
    assert figures.log_ticks(0.0, 1.0, figures.seconds_text) == []  # no log axis through zero


def test_the_latency_chart_shows_the_metric_the_slo_names():
    scenario = load_scenario(default_scenario_path())
    assert figures.slo_latency_choice(scenario.slo, scenario.class_names) == "TTFT p99 s"  # ttft_s is written first
    e2e_only = scenario.slo.model_copy(update={"ttft_s": None, "tpot_s": None, "e2e_s": 5.0})
    assert figures.slo_latency_choice(e2e_only, scenario.class_names) == "e2e p99 s"
    per_class = scenario.slo.model_copy(update={"ttft_s": None, "tpot_s": None})  # 4 classes name TTFT, 3 e2e
    assert figures.slo_latency_choice(per_class, scenario.class_names) == "TTFT p99 s"
    assert set(figures.LATENCY_CHOICES) == {"TTFT p99 s", "TPOT p99 s", "e2e p99 s"}


def test_point_labels_stay_inside_the_plot_and_clear_of_each_other():
    points = [(100.0, 100.0), (130.0, 100.0), (390.0, 100.0)]  # two close points, one at the right edge
    sizes = [(80.0, 14.0)] * 3
    bounds = (0.0, 0.0, 400.0, 200.0)
    anchors = figures.place_labels(points, sizes, bounds)
    rects = [(x - ax * w, y - ay * h, w, h) for (x, y), (ax, ay), (w, h) in zip(points, anchors, sizes, strict=True)]
    margin = figures.EDGE_MARGIN_PX  # before: the right-hand label ended on the edge, and looked cut
    for left, top, w, h in rects:
        assert margin <= left <= left + w <= 400.0 - margin
        assert margin <= top <= top + h <= 200.0 - margin
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert figures._overlap_px2(a, b) == 0.0


@pytest.mark.parametrize(("values", "target", "height_px"), [
    ([math.nan, 1.73, math.nan, 7.28], 2.0, 300),  # the search screenshot's TTFT chart: "1.73 s" sat on the line
    ([2.04, 1.35, 1.87, 1.22, 0.74, 7.32], 2.0, 300),  # the as-written one: three labels near the line
    ([0.1, math.nan, 3.0], 0.2, 220),  # bars too short to hold a label that crosses the line: it goes over it
    ([1.0, 7.28], 2.0, 170),  # a short plot: the tallest bar's label needs more than the axis's 15% headroom
])
def test_bar_value_labels_stay_inside_the_plot_and_clear_of_the_target_line(qtbot, values, target, height_px):
    panel = BarPanel("p99", "s", "{:.2f} s", "")
    qtbot.addWidget(panel)
    panel.resize(540, height_px)
    panel.show()
    qtbot.waitExposed(panel)
    panel.show_bars([f"d{i}" for i in range(len(values))], np.array(values), target)
    QApplication.processEvents()
    box = panel.plot.getPlotItem().getViewBox()
    inside = box.sceneBoundingRect()
    line_y = box.mapViewToScene(QPointF(0.0, target)).y()
    for label in panel.labels[:len(values)]:
        rect = label.textItem.mapRectToScene(label.textItem.boundingRect())
        assert inside.top() <= rect.top() <= rect.bottom() <= inside.bottom() + 0.5, label.textItem.toPlainText()
        margin = label.textItem.document().documentMargin()  # blank around the text, inside its rectangle
        text = rect.adjusted(0, margin, 0, -margin)
        assert text.bottom() <= line_y - 2 or text.top() >= line_y + 2, label.textItem.toPlainText()


def test_a_label_inside_a_bar_is_black_or_white_whichever_reads_better_on_it():
    assert [figures.text_colour_on(fill) for fill in ("#ffffff", "#000000", "#ff7f0e", "#8c564b")] == [
        "#000000", "#ffffff", "#000000", "#ffffff"]  # white, black, the palette's orange and brown


def test_point_labels_hide_the_grid_under_them_but_never_a_point(qtbot):
    """A grid line through a grey label read as a struck-out name; a label's white box over a point hid it."""
    panel = ParetoPanel()
    qtbot.addWidget(panel)
    grid_z = max(panel.plot.getPlotItem().getAxis(name).zValue() for name in ("left", "bottom"))
    panel._show_labels(["a"], np.array([1.0]), np.array([1.0]), ["meets SLO"], np.array([0]))
    [label] = panel.labels
    assert grid_z < label.zValue() < panel.points.zValue()
    assert label.fill.color().alpha() > 128


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
    # the plots fit the window's height (a word-wrapped caption once made the grid ask for 1,024 px, and scroll)
    scroll = window.results.plots_tab
    assert scroll.widget().height() <= scroll.viewport().height()
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


def test_the_cdf_axis_reads_in_plain_seconds(finished_window):
    axis = finished_window.results.cdf_plot.plot.getPlotItem().getAxis("bottom")
    major = axis._tickLevels[0]  # the ticks the panel set (None: pyqtgraph's own "1, 10^1")
    assert 3 <= len(major) <= figures.MAX_LOG_TICKS
    assert all("e" not in text and value == pytest.approx(math.log10(float(text))) for value, text in major)


def test_clicking_a_deployment_says_why_it_misses(finished_window):
    window = finished_window
    frame = window.outcome.comparison.frame
    missed = next(i for i, verdict in enumerate(frame["verdict"]) if verdict != "meets SLO")
    window.results.pareto_plot.clicked.emit(missed)  # a click on its point selects its row
    text = window.results.why.text()
    assert frame.index[missed] in text
    assert frame["reason"].iloc[missed]
    assert frame["reason"].iloc[missed] in html.unescape(text)
    table = window.results.table
    assert table.model().data(table.currentIndex().siblingAtColumn(0)) == frame.index[missed]


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
    gc.collect()  # garbage earlier tests left (parsed workbooks) must not be freed during the count
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


def test_run_sizes_auto_stages_instead_of_running_them_at_one_replica(qtbot, window, tmp_path):
    """Defect: the default Run simulated the tiny scenario's `replicas: auto` VLM pool at min_replicas (1) and
    reported it missing the SLO; Run now sizes it with the replicas `vlmplan plan` finds, and says so."""
    window.open_scenario(write_tiny(tmp_path))
    fractions = []
    window.controller.progress.connect(lambda fraction, _doing: fractions.append(fraction))
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.run()
    with ThreadPoolExecutor(1) as pool:
        planned = plan_scenario(load_scenario(write_tiny(tmp_path)), pool).plans[0]
    assert planned.replicas["vlm"] > 1
    model = window.results.table_model
    assert model.data(model.index(0, model.column_of("replicas"))) == f"vlm x{planned.replicas['vlm']} (searched)"
    assert window.outcome.report.results[0].metrics["slo_met"]
    assert window.outcome.plan.plans[0].probes  # the search log goes to Export
    # the search is heard from inside its simulations: many small steps, never backwards
    assert len(fractions) > 50
    assert fractions == sorted(fractions)
    assert max(b - a for a, b in zip(fractions, fractions[1:], strict=False)) < 0.2


def test_an_infeasible_plan_is_marked_and_never_on_the_front(qtbot, window, tmp_path):
    """The VLM pool may not grow past 1 replica: no size meets the SLO. It is drawn grey at its closest try,
    left off the plan's front (planner.compare's, the only one), and the why line gives the reason."""
    capped = tmp_path / "capped.yaml"
    capped.write_text(write_tiny(tmp_path).read_text(encoding="utf-8").replace("max_replicas: 16", "max_replicas: 1"),
                      encoding="utf-8")
    window.open_scenario(capped)
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.run()
    frame = window.outcome.comparison.frame
    assert frame.loc["vlm-auto", "verdict"] == "INFEASIBLE"
    assert not frame.loc["vlm-auto", "pareto"]
    assert list(frame["pareto"]) == list(window.outcome.plan.pareto)
    pareto = window.results.pareto_plot
    front_x, _ = pareto.front.getData()
    closest = np.log10(frame.loc["vlm-auto", "closest tried $/day"])
    assert front_x is None or not np.isclose(front_x, closest).any()
    points = pareto.points.points()
    infeasible = next(pt for pt in points if pt.data().startswith("vlm-auto: INFEASIBLE"))
    assert infeasible.brush().color().name() == INFEASIBLE_COLOUR
    assert infeasible.symbol() == "x"
    window.results.select_deployment(0)
    assert "INFEASIBLE" in window.results.why.text()
    assert frame.loc["vlm-auto", "reason"].split(";")[0] in html.unescape(window.results.why.text())


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
    fractions = []
    window.controller.progress.connect(lambda fraction, _doing: fractions.append(fraction))
    with qtbot.waitSignal(window.controller.finished, timeout=RUN_TIMEOUT_MS):
        window.sensitivity_action.trigger()
    # heard from inside each of the 15 runs (3 deployments x 5 perturbations), not once per finished run
    assert len(fractions) > 15 * 10
    assert fractions == sorted(fractions)
    view = window.results.sensitivity.table
    assert window.results.tabs.currentWidget() is window.results.sensitivity
    headers = [view.horizontalHeaderItem(c).text() for c in range(view.columnCount())]
    assert headers == ["deployment", "as planned", "load x0.75", "load x1.25", "load x1.5", "load x2",
                       "output x1.5", "step time x1.25", "load headroom"]
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
    # the app quit once: run its loop again, or later tests' event loops would return at once
    QTimer.singleShot(0, QApplication.instance().quit)
    QApplication.instance().exec()


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


# ---------------------------------------------------------------- the structured editor beside the YAML


def test_yaml_edits_keep_comments_and_follow_each_mappings_style():
    text = ("a:\n  b: 1  # why b\n  c: {d: 2, e: 3}\n  list:\n    - {f: 4}\n    - g: 5\n      h: [1, 2]\n"
            "  # a comment after the block\nz: 9\n")
    assert set_field(text, ("a", "b"), "7") == text.replace("b: 1", "b: 7")
    assert set_field(text, ("a", "c", "e"), None) == text.replace("{d: 2, e: 3}", "{d: 2}")
    assert set_field(text, ("a", "c", "d"), None) == text.replace("{d: 2, e: 3}", "{e: 3}")
    assert set_field(text, ("a", "list", 0, "k"), "x") == text.replace("{f: 4}", "{f: 4, k: x}")
    added = set_field(text, ("a", "new"), "1.5")
    assert added == text.replace("      h: [1, 2]\n", "      h: [1, 2]\n  new: 1.5\n")  # at the block's indent
    assert set_field(text, ("a", "b"), None) == text.replace("  b: 1  # why b\n", "")
    assert set_field(text, ("a", "list", 1, "m", "n"), "2") == text.replace("h: [1, 2]\n", "h: [1, 2]\n      m: {n: 2}\n")
    assert yaml.safe_load(set_field(text, ("z",), yaml_scalar("1e6")))["z"] == 1_000_000
    assert yaml_scalar("a: b") == '"a: b"'  # typed text never breaks the YAML around it
    assert yaml_scalar("0.60") == "0.60"


def test_yaml_nested_too_deep_in_the_editor_is_refused_not_a_crash():
    # 100,000 levels of "- " crashed the C loader with signal 11; in a child process, so a crash fails this test
    # instead of the whole run.
    code = ("from gui.yamledit import YamlEditError, load_yaml, set_field, yaml_scalar\n"
            "deep = '- ' * 100_000 + 'x'\n"
            "for call in (lambda: load_yaml(deep), lambda: set_field('a: 1\\nb: ' + '[' * 100_000, ('a',), '2')):\n"
            "    try:\n        call()\n    except YamlEditError as error:\n        print(error)\n"
            "print(yaml_scalar('[' * 100_000 + ']' * 100_000)[:3])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"the YAML: line {line}: nested more than 100 levels deep" for line in (1, 2)]
    assert lines[2] == '"[['  # typed as text, quoted: the schema then says what is wrong


def test_the_editor_fits_the_scenarios_lines(window):
    lines = window.editor.toPlainText().splitlines()
    width = window.editor.viewport().width()
    fits = [line for line in lines if window.editor.fontMetrics().horizontalAdvance(line) <= width]
    assert len(fits) >= 0.97 * len(lines)  # before: 420 px showed about half of them whole


def test_a_form_edit_is_written_into_the_yaml_and_validated_as_typed(qtbot, window):
    field = window.form.fields[("traffic", "arrivals", "requests_per_day")]
    field.clear()
    qtbot.keyClicks(field, "2e6")
    text = window.editor.toPlainText()
    assert "    requests_per_day: 2000000\n" in text
    assert "start_s: 48600  # 13:30, so the simulated hour is centred" in text  # the rest as written
    assert window.validate().traffic.arrivals.requests_per_day == 2_000_000
    qtbot.keyClicks(field, "x")  # "2e6x": not a number
    assert "requests_per_day: 2e6x" in window.editor.toPlainText()
    assert "Input should be a valid number" in field.toolTip()
    assert field.styleSheet()
    assert "traffic.arrivals.requests_per_day" in window.messages.toPlainText()
    qtbot.keyClick(field, Qt.Key.Key_Backspace)
    assert not field.styleSheet()
    assert window.messages.toPlainText().startswith("ok:")
    ttft_target = window.form.fields[("slo", "ttft_s")]
    ttft_target.clear()
    qtbot.keyClicks(ttft_target, " ")  # empty: no every-class TTFT target
    assert "  ttft_s: 2.0\n" not in window.editor.toPlainText()
    assert window.validate().slo.ttft_s is None


def test_the_classes_and_deployments_tables_edit_the_yaml(window):
    classes, stages = window.form.classes, window.form.stages
    share = classes.item(0, 0)
    share.setText("abc")  # what the live editor commits as typed
    assert "share: abc" in window.editor.toPlainText()
    assert share.background() == ERROR_BRUSH
    assert "valid number" in share.toolTip()
    assert "traffic.classes.0.share" in window.form.problems.text()
    share.setText("0.5")
    assert share.background() != ERROR_BRUSH
    classes.item(1, 4).setText("650")  # dashboard's text tokens: a distribution, edited by its median
    assert "text_tokens: {kind: lognormal, median: 650, sigma: 0.4, max: 4000}" in window.editor.toPlainText()
    window.form.class_targets.item(4, 2).setText("0.25")  # camera's e2e target
    window.form.class_targets.item(2, 2).setText("3")  # chat had none: added to its mapping
    assert "camera: {e2e_s: 0.25}" in window.editor.toPlainText()
    assert "chat: {ttft_s: 1.0, e2e_s: 3}" in window.editor.toPlainText()
    assert window.validate().slo.targets("camera").e2e_s == 0.25
    headers = [stages.horizontalHeaderItem(c).text() for c in range(stages.columnCount())]
    gpu, price = headers.index("GPU"), headers.index("$/GPU-hour")
    assert stages.item(0, headers.index("catalog $/GPU-hour")).text() == "3.49"
    stages.item(0, price).setText("2.5")
    stages.item(0, gpu).setText("h200")
    scenario = window.validate()
    stage = scenario.deployments[0].stages[0]
    assert (stage.gpu, stage.usd_per_gpu_hour) == ("h200", 2.5)
    assert "gpu: h200, tensor_parallel: 4, replicas: 10, usd_per_gpu_hour: 2.5}" in window.editor.toPlainText()
    stages.item(0, gpu).setText("h1000")
    assert "unknown GPU 'h1000'" in stages.item(0, gpu).toolTip()


def test_a_yaml_edit_refills_the_form(qtbot, window):
    window.editor.setPlainText(window.editor.toPlainText().replace("peak_hour: 14", "peak_hour: 9"))
    field = window.form.fields[("traffic", "arrivals", "peak_hour")]
    qtbot.waitUntil(lambda: field.text() == "9", timeout=5000)
    x, y = window.form.curve.getData()
    assert x[int(np.argmax(y))] == pytest.approx(9.0)  # the daily curve peaks where the YAML says


def test_a_table_cell_writes_the_yaml_at_each_keystroke(qtbot, window):
    window.activateWindow()
    window.form.tabs.setCurrentWidget(window.form.classes)
    classes = window.form.classes
    classes.setCurrentCell(4, 5)  # camera's output tokens
    classes.editItem(classes.item(4, 5))
    editor = classes.findChild(QLineEdit)
    assert editor is not None
    editor.selectAll()
    qtbot.keyClicks(editor, "-3")  # still typing: the YAML and the check follow already
    assert "      output_tokens: -3\n" in window.editor.toPlainText()
    assert classes.item(4, 5).background() == ERROR_BRUSH
