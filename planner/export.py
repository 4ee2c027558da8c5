"""Exports of a plan: xlsx with native charts, csv, json; each file written whole or not at all.

Every writer renders into a temporary file in the target's directory and
renames it over the target (``profiles.files.write_all``: only a regular file
is ever replaced; several outputs appear together or none does), so a
failure part-way leaves neither a partial file nor a temporary one.

Every table is the plan's comparison (``planner.compare``): the same rows,
verdicts and Pareto flags as the terminal, the JSON and the GUI. The
workbook holds: ``Comparison`` (one row per deployment: verdict, with
INFEASIBLE plans' cost cells empty and their closest try's cost in its own
column; each class's p99 per target; native bar charts of cost per day and
of p99 latency against the SLO target, and a cost/latency scatter),
``SLO targets`` (every class's targets in force), ``VRAM per replica``
(weights, KV cache, activations, free), ``Search`` (every configuration the
capacity search simulated), a sheet of per-class and per-stage metrics for
each deployment, ``Time series`` (load, latency and GPU use over the
simulated time), ``Autoscale`` and ``Sensitivity`` when asked for,
``Assumptions`` (the input cells: GPU prices, API prices, GPU counts) and
``Sources`` (catalog sources, unverified marks, where the timings come
from). Every cost cell is a live formula over the input cells
(``planner.export_costs``), so a changed price moves every cost. Seconds,
USD.
"""

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from planner import export_costs as costs
from planner import workbook_style as style
from planner.capacity import CapacityPlan, sizes_text
from planner.compare import VERDICT_MET, VRAM_PARTS, vram_columns
from planner.formulas import Formula
from planner.plan import PlanReport
from planner.sensitivity import SUMMARY_KEYS
from profiles.files import Output, write_all
from sim.slo import TARGET_METRICS

SHEET_NAME_CHARS = 31  # Excel's limit
MEMORY_PARTS = {part.replace(" ", "_") for part in VRAM_PARTS.values()} | {"total"}


def json_output(report: PlanReport, path: Path, option: str = "") -> Output:
    """The plan's JSON contract, to be written by ``write_all``."""
    text = json.dumps(report.to_contract_dict(), indent=2, allow_nan=False)
    return Output(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"), option)


def csv_output(report: PlanReport, path: Path, option: str = "") -> Output:
    """The comparison table, one row per deployment, to be written by ``write_all``."""
    frame = report.frame()
    return Output(path, lambda tmp: frame.to_csv(tmp), option)


def xlsx_output(report: PlanReport, path: Path, option: str = "") -> Output:
    """The workbook described in the module docstring, to be written by ``write_all``."""
    return Output(path, lambda tmp: _write_workbook(report, tmp), option)


def write_json(report: PlanReport, path: Path) -> None:
    """Write the plan's JSON contract to ``path``."""
    write_all([json_output(report, path)])


def write_csv(report: PlanReport, path: Path) -> None:
    """Write the comparison table to ``path``."""
    write_all([csv_output(report, path)])


def write_xlsx(report: PlanReport, path: Path) -> None:
    """Write the workbook to ``path``."""
    write_all([xlsx_output(report, path)])


# ---------------------------------------------------------------- the workbook


def _write_workbook(report: PlanReport, path: Path) -> None:
    inputs = costs.layout(report)
    with pd.ExcelWriter(path, engine="xlsxwriter") as writer:
        comparison = report.comparison()
        frame = comparison.frame.drop(columns=vram_columns(comparison.frame))  # VRAM: its own sheet
        frame.to_excel(writer, sheet_name="Comparison")
        style.fit_columns(writer, "Comparison", frame)
        _comparison_costs(writer, frame, report, inputs)
        _mark_verdicts(writer, frame)
        _comparison_charts(writer, frame, report)
        targets = _targets_frame(report)
        targets.to_excel(writer, sheet_name="SLO targets", index=False)
        style.fit_columns(writer, "SLO targets", targets, index=False)
        memory = comparison.memory.rename(columns=lambda c: f"{c.replace('_', ' ')} GB" if c in MEMORY_PARTS else c)
        memory.to_excel(writer, sheet_name="VRAM per replica", index=False)
        style.fit_columns(writer, "VRAM per replica", memory, index=False)
        search = _search_frame(report)
        search.to_excel(writer, sheet_name="Search", index=False)
        style.fit_columns(writer, "Search", search, index=False)
        names = {"Comparison", "Charts", "SLO targets", "VRAM per replica", "Search", "Time series", "Autoscale",
                 "Sensitivity", "Assumptions", "Sources"}
        for plan in report.plans:
            sheet = _sheet_name(plan.name, names)
            names.add(sheet)
            _deployment_sheet(writer, sheet, plan, report, inputs)
        _timeseries_sheet(writer, report)
        if report.autoscale:
            _autoscale_sheet(writer, report, inputs)
        if report.sensitivity:
            _sensitivity_sheet(writer, report)
        _assumptions_sheet(writer, inputs)
        _sources_sheet(writer, report)


def _comparison_costs(writer: pd.ExcelWriter, frame: pd.DataFrame, report: PlanReport,
                      inputs: costs.Inputs) -> None:
    """GPUs, $/day and $/1k req of each deployment (or of its closest try) as formulas over the inputs."""
    sheet = writer.sheets["Comparison"]
    column = {header: index + 1 for index, header in enumerate(frame.columns)}  # +1: the index column
    plans = {plan.name: plan for plan in report.plans}
    for row, name in enumerate(frame.index, start=1):
        plan = plans[name]
        cost = costs.deployment_cost_per_day(inputs, name, plan.result.per_stage, report.horizon_s)
        gpus = costs.deployment_gpus(inputs, name, plan.result.per_stage)
        closest = pd.isna(frame.at[name, "$/day"])  # INFEASIBLE: only its closest try has a price
        cost_col = column.get("closest tried $/day") if closest else column["$/day"]
        gpus_col = column.get("closest tried GPUs") if closest else column["GPUs"]
        if cost is not None and cost_col is not None:
            sheet.write_formula(row, cost_col, cost.excel, None, cost.value)
            per_1k = costs.cost_per_1k(Formula.cell("Comparison", row, cost_col, cost.value),
                                       float(plan.result.metrics.get("requests_per_day") or 0.0))
            if per_1k is not None and not closest:
                sheet.write_formula(row, column["$/1k req"], per_1k.excel, None, per_1k.value)
        if gpus is not None and gpus_col is not None:
            sheet.write_formula(row, gpus_col, gpus.excel, None, gpus.value)
        if "$/day autoscaled" in column and not closest:
            total = _autoscale_total_cell(report, name)
            if total is not None:
                sheet.write_formula(row, column["$/day autoscaled"], f"={total}", None,
                                    frame.at[name, "$/day autoscaled"])


def _assumptions_sheet(writer: pd.ExcelWriter, inputs: costs.Inputs) -> None:
    """The input cells: GPU prices, API prices, GPU counts (``planner.export_costs``)."""
    sheet = writer.book.add_worksheet("Assumptions")
    writer.sheets["Assumptions"] = sheet
    costs.write_inputs(writer.book, sheet, inputs)
    sheet.set_column(0, 0, 30)
    sheet.set_column(1, 2, 26)
    sheet.set_column(3, 3, 10)
    style.print_setup(sheet)
    sheet.freeze_panes(0, 0)


def _sources_sheet(writer: pd.ExcelWriter, report: PlanReport) -> None:
    """Catalog sources, unverified marks, prices and where the timings come from, one row each, wrapped."""
    notes = pd.DataFrame([vars(a) for a in report.assumptions], columns=["topic", "item", "detail"])
    notes.to_excel(writer, sheet_name="Sources", index=False)
    sheet = writer.sheets["Sources"]
    wrap = writer.book.add_format({"text_wrap": True, "valign": "top"})
    top = writer.book.add_format({"valign": "top"})
    widths = (16, 28, DETAIL_CHARS)
    for col, width in enumerate(widths):
        sheet.set_column(col, col, width, wrap if col == 2 else top)
    for row, detail in enumerate(notes["detail"], start=1):  # viewers do not grow rows for wrapped text
        sheet.set_row(row, LINE_POINTS * max(1, math.ceil(len(str(detail)) / (DETAIL_CHARS * 1.1))))
    style.print_setup(sheet, sum(widths))


DETAIL_CHARS = 100  # width of the detail column; longer details wrap
LINE_POINTS = 15  # height of one line of text


def _comparison_charts(writer: pd.ExcelWriter, frame: pd.DataFrame, report: PlanReport) -> None:
    """A "Charts" sheet of the Comparison's numbers, printed on one page: cost per day and p99 latency (with
    the SLO target) as bar charts side by side, each deployment in its own colour; under them cost against
    latency as a scatter with a legend."""
    book = writer.book
    sheet = book.add_worksheet("Charts")
    writer.sheets["Charts"] = sheet
    sheet.write(0, 0, f"Plan '{report.scenario}': the Comparison sheet's cost and latency per deployment",
                book.add_format({"bold": True}))
    rows = len(frame)
    categories = ["Comparison", 1, 0, rows, 0]
    column = {header: index + 1 for index, header in enumerate(frame.columns)}  # +1: the index column
    colours = [{"fill": {"color": colour}, "border": {"none": True}} for colour in style.palette(rows)]
    anchor = 2

    closest = column.get("closest tried $/day")  # INFEASIBLE plans: what their closest try would cost, in grey
    if closest is not None and frame["closest tried $/day"].isna().all():
        closest = None
    cost = book.add_chart({"type": "column"})
    cost.add_series({"name": "meets the SLO", "categories": categories, "points": colours, "overlap": 100,
                     "values": ["Comparison", 1, column["$/day"], rows, column["$/day"]]})
    if closest is not None:
        cost.add_series({"name": "closest try (INFEASIBLE)", "categories": categories, "overlap": 100,
                         "values": ["Comparison", 1, closest, rows, closest],
                         "fill": {"color": "#bfbfbf"}, "pattern": {"pattern": "wide_upward_diagonal",
                                                                   "fg_color": "#7f7f7f", "bg_color": "#e0e0e0"}})
    cost.set_title({"name": "Cost per day"})
    cost.set_y_axis({"name": "USD per day", "num_format": style.FORMATS["usd_day"]})
    cost.set_legend({"position": "bottom", "delete_series": [0]} if closest is not None else {"none": True})
    style.place(sheet, cost, anchor, 0, col=0)

    header, target = _latency_axis(report)
    latency = book.add_chart({"type": "column"})
    latency.add_series({"name": header, "categories": categories, "points": colours,
                        "values": ["Comparison", 1, column[header], rows, column[header]]})
    if target is not None:
        _slo_line(writer, latency, rows, len(frame.columns) + 2, target, header)
    latency.set_title({"name": f"{header} against the SLO target" if target is not None else header})
    latency.set_y_axis({"name": "seconds", "num_format": "0.0"})
    latency.set_legend({"position": "bottom", "delete_series": [0]})  # the bars are named on the axis
    style.place(sheet, latency, anchor, 1, col=0)

    scatter = book.add_chart({"type": "scatter"})
    for row, (name, colour) in enumerate(zip(frame.index, style.palette(rows), strict=True), start=1):
        infeasible = pd.isna(frame.at[name, "$/day"]) and closest is not None  # at its closest try, as an x
        x_col = closest if infeasible else column["$/day"]
        scatter.add_series({"name": f"{name} (closest try)" if infeasible else name,
                            "categories": ["Comparison", row, x_col, row, x_col],
                            "values": ["Comparison", row, column["e2e p99 s"], row, column["e2e p99 s"]],
                            "marker": {"type": "x" if infeasible else "circle", "size": 8 if infeasible else 9,
                                       "fill": {"color": colour}, "border": {"color": colour}}})
    scatter.set_title({"name": "Cost per day against e2e p99"})
    scatter.set_x_axis({"name": "USD per day", "num_format": style.FORMATS["usd_day"]})
    scatter.set_y_axis({"name": "e2e p99 (seconds)", "num_format": "0.0"})
    scatter.set_legend({"position": "right"})
    style.place(sheet, scatter, anchor, 2, col=0)
    sheet.set_landscape()
    sheet.set_paper(9)
    sheet.fit_to_pages(1, 1)  # the three charts on one page


def _mark_verdicts(writer: pd.ExcelWriter, frame: pd.DataFrame) -> None:
    """The verdict column red where a deployment misses the SLO, green where it meets it."""
    sheet, book = writer.sheets["Comparison"], writer.book
    column = 1 + list(frame.columns).index("verdict")
    rows = len(frame)
    sheet.conditional_format(1, column, rows, column, {"type": "cell", "criteria": "==", "value": f'"{VERDICT_MET}"',
                                                       "format": book.add_format({"bg_color": "#d4efd4"})})
    sheet.conditional_format(1, column, rows, column, {"type": "cell", "criteria": "!=", "value": f'"{VERDICT_MET}"',
                                                       "format": book.add_format({"bg_color": "#f8d0d0",
                                                                                  "bold": True})})


def _targets_frame(report: PlanReport) -> pd.DataFrame:
    """Every class's targets in force (seconds; empty: no target) and the attainment required."""
    rows = [{"request class": name, **{TARGET_METRICS[f] + " target s": v for f, v in targets.written().items()}}
            for name, targets in report.slo.targets_in_force(report.class_names).items()]
    columns = ["request class", *(f"{metric} target s" for metric in TARGET_METRICS.values())]
    frame = pd.DataFrame(rows, columns=columns)
    frame["attainment required"] = report.slo.attainment
    return frame


def _latency_axis(report: PlanReport) -> tuple[str, float | None]:
    """The latency the SLO bounds for every class (e2e, else TTFT) and its target."""
    if report.slo.e2e_s is not None or report.slo.ttft_s is None:
        return "e2e p99 s", report.slo.e2e_s
    return "TTFT p99 s", report.slo.ttft_s


def _slo_line(writer: pd.ExcelWriter, chart: Any, rows: int, col: int, target_s: float,
              header: str) -> None:  # chart: an xlsxwriter chart
    """The SLO target as a line over the bars (its values in helper column ``col``, labelled)."""
    sheet, book = writer.sheets["Comparison"], writer.book
    sheet.write(0, col, f"SLO {header}")
    for row in range(1, rows + 1):
        sheet.write_number(row, col, target_s)
    line = book.add_chart({"type": "line"})
    line.add_series({"name": f"SLO {target_s:g} s", "values": ["Comparison", 1, col, rows, col],
                     "line": {"color": "red", "dash_type": "dash", "width": 2}})
    chart.combine(line)


def _search_frame(report: PlanReport) -> pd.DataFrame:
    """Every configuration simulated by the capacity search, in search order."""
    rows = []
    for plan in report.plans:
        for step, probe in enumerate(plan.probes, start=1):
            rows.append({"deployment": plan.name, "step": step,
                         "replicas": sizes_text(probe.replicas, plan.deployment),
                         "slo_attainment": probe.slo_attainment, "overloaded": probe.overloaded,
                         "feasible": probe.feasible})
    return pd.DataFrame(rows, columns=["deployment", "step", "replicas", "slo_attainment", "overloaded", "feasible"])


def _scalars(metrics: dict) -> dict:
    """The values of ``metrics`` a cell can hold (nested pools are flattened one level)."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{key} {k}": v for k, v in value.items() if not isinstance(v, dict | list)})
        elif not isinstance(value, list):
            flat[key] = value
    return flat


def _deployment_sheet(writer: pd.ExcelWriter, sheet: str, plan: CapacityPlan, report: PlanReport,
                      inputs: costs.Inputs) -> None:
    """Per-class metrics (a column per class, a row per metric: a long list prints on one page), then the
    per-stage metrics below the same way, each stage's cost a formula over the inputs."""
    per_class = pd.DataFrame.from_dict({n: _scalars(m) for n, m in plan.result.per_class.items()},
                                       orient="index")
    per_stage = pd.DataFrame.from_dict({n: _scalars(m) for n, m in plan.result.per_stage.items()}, orient="index")
    book = writer.book
    worksheet = book.add_worksheet(sheet)
    writer.sheets[sheet] = worksheet
    formats = style.cell_formats(book)
    header = book.add_format({"bold": True, "bottom": 1})
    header_right = book.add_format({"bold": True, "bottom": 1, "align": "right"})  # over right-aligned numbers
    start = len(per_class.columns) + 3
    for first_row, corner, frame in ((0, "request class", per_class), (start, "stage", per_stage)):
        worksheet.write(first_row, 0, corner, header)
        worksheet.write_row(first_row, 1, list(map(str, frame.index)), header_right)
        for row, metric in enumerate(frame.columns, start=first_row + 1):
            kind = style.format_kind(str(metric), frame[metric])
            worksheet.write(row, 0, str(metric))
            for col, value in enumerate(frame[metric], start=1):
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    worksheet.write(row, col, value, formats[kind] if kind else None)
    if "cost_per_day_usd" in per_stage.columns:
        row = start + 1 + list(per_stage.columns).index("cost_per_day_usd")
        for col, (name, metrics) in enumerate(plan.result.per_stage.items(), start=1):
            cost = costs.stage_cost_per_day(inputs, plan.name, name, metrics, report.horizon_s)
            if cost is not None:
                worksheet.write_formula(row, col, cost.excel, formats["usd_day"], cost.value)
    names = [*map(str, per_class.columns), *map(str, per_stage.columns)]
    worksheet.set_column(0, 0, max(map(len, names), default=10) + 2)
    columns = max(len(per_class), len(per_stage))
    width = min(max([14, *(len(str(name)) + 2 for name in [*per_class.index, *per_stage.index])]), 24)
    worksheet.set_column(1, columns, width)  # a long text (where the step times come from) is cut on screen
    style.print_setup(worksheet, 30 + width * columns)


def _timeseries_sheet(writer: pd.ExcelWriter, report: PlanReport) -> None:
    """Offered load, then each deployment's completions, latency and GPU use per time bin; a latency chart."""
    first = report.plans[0].result.timeseries
    frame = pd.DataFrame({"t_s": first.get("t_s", []), "hour of day": [
        ((report.start_s + t) / 3600) % 24 for t in first.get("t_s", [])], "offered rps": first.get("offered_rps", [])})
    for plan in report.plans:
        series = plan.result.timeseries
        for key in ("completed_rps", "in_system", "e2e_p99_s", "gpu_utilization"):
            values = series.get(key, [])
            if len(values) == len(frame):
                frame[f"{plan.name} {key}"] = values
    frame.to_excel(writer, sheet_name="Time series", index=False)
    style.fit_columns(writer, "Time series", frame, index=False)
    style.line_chart(writer, "Time series", frame, " e2e_p99_s", x_column=1, title="e2e p99 over the simulated time",
                y_name="seconds", y_format="0.0")


AUTOSCALE_TOTAL_COLUMNS = ["deployment", "autoscaled $/day", "static $/day (the plan's sizing all day)", "saving",
                           "every window meets the SLO"]


def _autoscale_frame(report: PlanReport) -> pd.DataFrame:
    """One row per window: the hour it starts, then each deployment's GPUs, cost, SLO met, sizes."""
    frame = pd.DataFrame({"hour of day": [w.start_s / 3600 for w in report.autoscale[0].windows]})
    for schedule in report.autoscale:
        frame[f"{schedule.deployment} GPUs"] = [w.gpus for w in schedule.windows]
        frame[f"{schedule.deployment} $/day at this size"] = [w.cost_per_day_usd for w in schedule.windows]
        frame[f"{schedule.deployment} SLO met"] = [w.slo_attainment for w in schedule.windows]
        frame[f"{schedule.deployment} replicas"] = [sizes_text(w.replicas, schedule.spec) for w in schedule.windows]
        frame[f"{schedule.deployment} SLO inferred from (hour)"] = [  # not simulated at its sizes: vouched for by
            None if w.inferred_from_s is None else w.inferred_from_s / 3600 for w in schedule.windows]  # that one
    return frame


def _autoscale_total_cell(report: PlanReport, deployment: str) -> str | None:
    """The Autoscale sheet's cell holding ``deployment``'s autoscaled $/day (None: not autoscaled or INFEASIBLE)."""
    names = [s.deployment for s in report.autoscale]
    if deployment not in names or report.autoscale[names.index(deployment)].totals() is None:
        return None
    row = len(report.autoscale[0].windows) + 3 + 1 + names.index(deployment)  # below the windows, a header
    return Formula.cell("Autoscale", row, 1, 0.0).text


def _autoscale_sheet(writer: pd.ExcelWriter, report: PlanReport, inputs: costs.Inputs) -> None:
    """GPUs, cost and SLO attainment of every autoscaled deployment window by window, each window's cost and
    the totals formulas over the prices; a GPUs-over-the-day chart."""
    frame = _autoscale_frame(report)
    frame.to_excel(writer, sheet_name="Autoscale", index=False)
    start = len(frame) + 3
    totals = pd.DataFrame([[s.deployment, *((s.totals() or {}).get(key) for key in (  # INFEASIBLE: no price
        "autoscaled_cost_per_day_usd", "static_cost_per_day_usd", "saving_share")),
        "yes" if s.feasible else "INFEASIBLE"] for s in report.autoscale], columns=AUTOSCALE_TOTAL_COLUMNS)
    totals.to_excel(writer, sheet_name="Autoscale", index=False, startrow=start)
    widths = style.fit_columns(writer, "Autoscale", frame, index=False,  # the totals below share the columns
                               min_widths={0: max(len(s.deployment) for s in report.autoscale) + 2})
    style.header_row(writer, "Autoscale", frame, 0, widths)
    style.header_row(writer, "Autoscale", totals, start, widths, owns_columns=False)  # its long headers wrap
    sheet, book = writer.sheets["Autoscale"], writer.book
    dollars, share = (book.add_format({"num_format": style.FORMATS[kind]}) for kind in ("usd_day", "share"))
    for index, schedule in enumerate(report.autoscale):
        column = frame.columns.get_loc(f"{schedule.deployment} $/day at this size")
        gpus_column = frame.columns.get_loc(f"{schedule.deployment} GPUs")
        for row, window in enumerate(schedule.windows, start=1):
            cost = costs.window_cost_per_day(inputs, window, Formula.cell("Autoscale", row, gpus_column, window.gpus))
            sheet.write_formula(row, column, cost.excel, None, cost.value)
        if schedule.totals() is None:
            continue
        windows_sum = Formula.column_sum("Autoscale", 1, len(schedule.windows), column,
                                         sum(w.cost_per_day_usd for w in schedule.windows))
        autoscaled, static = costs.autoscale_totals(inputs, report, schedule, windows_sum)
        row = start + 1 + index
        saving = 1 - Formula.cell("Autoscale", row, 1, autoscaled.value) / Formula.cell("Autoscale", row, 2,
                                                                                          static.value)
        for col, formula, fmt in ((1, autoscaled, dollars), (2, static, dollars), (3, saving, share)):
            sheet.write_formula(row, col, formula.excel, fmt, formula.value)
    style.line_chart(writer, "Autoscale", frame, " GPUs", x_column=0, title="GPUs over the day (autoscaled)",
                y_name="GPUs")


def _sensitivity_sheet(writer: pd.ExcelWriter, report: PlanReport) -> None:
    """One row per deployment and perturbation, load rows in factor order with the plan's own run at x1;
    a chart of SLO attainment against offered load."""
    rows: list[dict] = []
    load_rows: list[tuple[str, int, int]] = []  # (deployment, first and last sheet row of its load runs)
    for row, plan in zip(report.sensitivity, report.plans, strict=True):
        planned = {"input": "as planned", "factor": 1.0, "feasible": plan.feasible,
                   **{key: plan.result.metrics.get(key) for key in SUMMARY_KEYS}}
        entries = [planned] + [{k: v for k, v in o.to_dict().items() if k != "label"} for o in row.outcomes]
        if not plan.feasible and report.planned:  # an INFEASIBLE plan has no price, under any load either
            entries = [{**entry, "cost_per_day_usd": None} for entry in entries]
        entries.sort(key=lambda e: (e["input"] not in ("as planned", "load"), e["factor"]))
        loads = sum(e["input"] in ("as planned", "load") for e in entries)
        load_rows.append((row.deployment, len(rows) + 1, len(rows) + loads))  # sheet rows (1: the header)
        rows += [{"deployment": row.deployment, **entry} for entry in entries]
    frame = pd.DataFrame(rows)
    frame.to_excel(writer, sheet_name="Sensitivity", index=False)
    chart = writer.book.add_chart({"type": "scatter", "subtype": "straight_with_markers"})
    factor_col, met_col = frame.columns.get_loc("factor"), frame.columns.get_loc("slo_attainment")
    for name, first, last in load_rows:
        chart.add_series({"name": name, "categories": ["Sensitivity", first, factor_col, last, factor_col],
                          "values": ["Sensitivity", first, met_col, last, met_col]})
    chart.set_title({"name": "SLO attainment vs offered load"})
    chart.set_x_axis({"name": "load factor"})
    chart.set_y_axis({"name": "SLO attainment", "num_format": "0%"})
    chart.set_legend({"position": "bottom"})
    style.fit_columns(writer, "Sensitivity", frame, index=False)
    style.place(writer.sheets["Sensitivity"], chart, 1, 0, col=len(frame.columns) + 1)


def _sheet_name(name: str, taken: set[str]) -> str:
    """A valid, unused sheet name for deployment ``name`` (Excel: 31 chars, no []:*?/\\)."""
    base = re.sub(r"[\[\]:*?/\\]", "_", name)[:SHEET_NAME_CHARS] or "deployment"
    candidate, number = base, 2
    while candidate.casefold() in {t.casefold() for t in taken}:
        suffix = f" ({number})"
        candidate = base[: SHEET_NAME_CHARS - len(suffix)] + suffix
        number += 1
    return candidate
