"""Exports of a plan: xlsx with native charts, csv, json; each file written whole or not at all.

Every writer renders into a temporary file in the target's directory and
renames it over the target (``os.replace``, atomic on one file system), so
a failure part-way leaves neither a partial file nor a temporary one.

Every table is the plan's comparison (``planner.compare``): the same rows,
verdicts and Pareto flags as the terminal, the JSON and the GUI. The
workbook holds: ``Comparison`` (one row per deployment: verdict, with
INFEASIBLE plans' cost cells empty and their closest try's cost in its own
column; each class's p99 per target; native
bar charts of cost per day and of p99 latency against the SLO target, and
a cost/latency scatter), ``SLO targets`` (every class's targets in force),
``VRAM per replica`` (weights, KV cache, activations, free), ``Search`` (every configuration the capacity
search simulated), a sheet of per-class and per-stage metrics for each
deployment, ``Time series`` (load, latency and GPU use over the simulated
time) and ``Assumptions`` (catalog sources, unverified marks, prices,
where the timings come from). Seconds, USD.
"""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from planner.capacity import CapacityPlan, sizes_text
from planner.compare import VERDICT_MET, VRAM_PARTS, vram_columns
from planner.plan import PlanReport
from planner.sensitivity import SUMMARY_KEYS
from profiles.errors import VlmplanError
from profiles.files import atomic_write
from sim.slo import TARGET_METRICS

SHEET_NAME_CHARS = 31  # Excel's limit
MEMORY_PARTS = {part.replace(" ", "_") for part in VRAM_PARTS.values()} | {"total"}
CHART_SIZE = {"x_scale": 1.3, "y_scale": 1.1}


def check_output_path(path: Path, option: str) -> None:
    """Fail before any work when ``path`` cannot be written (no such directory, or it is a directory)."""
    if path.is_dir():
        raise VlmplanError(f"{option} {path}: is a directory")
    if not path.parent.is_dir():
        raise VlmplanError(f"{option} {path}: directory {path.parent} does not exist")


def write_json(report: PlanReport, path: Path) -> None:
    """The plan's JSON contract."""
    text = json.dumps(report.to_contract_dict(), indent=2, allow_nan=False)
    _guarded(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def write_csv(report: PlanReport, path: Path) -> None:
    """The comparison table, one row per deployment."""
    frame = report.frame()
    _guarded(path, lambda tmp: frame.to_csv(tmp))


def write_xlsx(report: PlanReport, path: Path) -> None:
    """The workbook described in the module docstring."""
    _guarded(path, lambda tmp: _write_workbook(report, tmp))


def _guarded(path: Path, write: Callable[[Path], object]) -> None:
    """``atomic_write``, an operating-system failure reported as a user error naming the file."""
    try:
        atomic_write(path, write)
    except OSError as err:
        raise VlmplanError(f"{path}: cannot write: {err.strerror or err}") from None


# ---------------------------------------------------------------- the workbook


def _write_workbook(report: PlanReport, path: Path) -> None:
    with pd.ExcelWriter(path, engine="xlsxwriter") as writer:
        comparison = report.comparison()
        frame = comparison.frame.drop(columns=vram_columns(comparison.frame))  # on their own sheet, one row a stage
        frame.to_excel(writer, sheet_name="Comparison")
        _fit_columns(writer, "Comparison", frame, one_page=False)
        _mark_verdicts(writer, frame)
        _comparison_charts(writer, frame, report)
        targets = _targets_frame(report)
        targets.to_excel(writer, sheet_name="SLO targets", index=False)
        _fit_columns(writer, "SLO targets", targets, index=False)
        memory = comparison.memory.rename(columns=lambda c: f"{c.replace('_', ' ')} GB" if c in MEMORY_PARTS else c)
        memory.to_excel(writer, sheet_name="VRAM per replica", index=False)
        _fit_columns(writer, "VRAM per replica", memory, index=False)
        _search_frame(report).to_excel(writer, sheet_name="Search", index=False)
        names = {"Comparison", "SLO targets", "VRAM per replica", "Search", "Time series", "Autoscale",
                 "Sensitivity", "Assumptions"}
        for plan in report.plans:
            sheet = _sheet_name(plan.name, names)
            names.add(sheet)
            _deployment_sheet(writer, sheet, plan)
        _timeseries_sheet(writer, report)
        if report.autoscale:
            _autoscale_sheet(writer, report)
        if report.sensitivity:
            _sensitivity_sheet(writer, report)
        pd.DataFrame([vars(a) for a in report.assumptions]).to_excel(writer, sheet_name="Assumptions", index=False)
        for name, sheet in writer.sheets.items():
            if name not in ("Comparison", "SLO targets", "VRAM per replica"):
                sheet.set_column(0, 0, 24)


def _comparison_charts(writer: pd.ExcelWriter, frame: pd.DataFrame, report: PlanReport) -> None:
    """Cost per day and p99 latency (with the SLO target) as bar charts, cost vs latency as a scatter."""
    book, sheet = writer.book, writer.sheets["Comparison"]
    rows = len(frame)
    categories = ["Comparison", 1, 0, rows, 0]
    column = {header: index + 1 for index, header in enumerate(frame.columns)}  # +1: the index column
    anchor = rows + 3

    cost = book.add_chart({"type": "column"})
    cost.add_series({"name": "$/day", "categories": categories, "values": ["Comparison", 1, column["$/day"], rows,
                                                                       column["$/day"]]})
    cost.set_title({"name": "Cost per day (USD)"})
    cost.set_legend({"none": True})
    sheet.insert_chart(anchor, 1, cost, CHART_SIZE)

    header, target = _latency_axis(report)
    latency = book.add_chart({"type": "column"})
    latency.add_series({"name": header, "categories": categories,
                        "values": ["Comparison", 1, column[header], rows, column[header]]})
    if target is not None:
        _slo_line(writer, latency, rows, len(frame.columns) + 2, target, header)
    latency.set_title({"name": f"{header} vs SLO" if target is not None else header})
    sheet.insert_chart(anchor, 9, latency, CHART_SIZE)

    scatter = book.add_chart({"type": "scatter"})
    for row in range(1, rows + 1):
        scatter.add_series({"name": ["Comparison", row, 0],
                            "categories": ["Comparison", row, column["$/day"], row, column["$/day"]],
                            "values": ["Comparison", row, column["e2e p99 s"], row, column["e2e p99 s"]],
                            "marker": {"type": "circle", "size": 8}})
    scatter.set_title({"name": "Cost per day vs e2e p99"})
    scatter.set_x_axis({"name": "USD per day"})
    scatter.set_y_axis({"name": "e2e p99 (s)"})
    sheet.insert_chart(anchor + 17, 1, scatter, CHART_SIZE)


READABLE_NUMBER = "#,##0.000"  # the workbook shows 3 decimals; the cell keeps the full value
TEXT_COLUMN_MAX = 60  # a reason is long: the column stops here and the text runs over


def _fit_columns(writer: pd.ExcelWriter, sheet_name: str, frame: pd.DataFrame, index: bool = True,
                 one_page: bool = True) -> None:
    """Columns as wide as their header (text columns as their longest text, up to TEXT_COLUMN_MAX), numbers with
    three decimals, so no header runs into the next; printed landscape (``one_page``: one page wide)."""
    sheet, number = writer.sheets[sheet_name], writer.book.add_format({"num_format": READABLE_NUMBER})
    dollars = writer.book.add_format({"num_format": "#,##0"})  # USD per day: whole dollars, as the terminal
    sheet.set_landscape()
    if one_page:
        sheet.fit_to_pages(1, 0)
    offset = 1 if index else 0
    if index:
        sheet.set_column(0, 0, max(len(str(name)) for name in [frame.index.name or "", *frame.index]) + 2)
    for position, header in enumerate(frame.columns):
        values = frame[header]
        texts = [str(v) for v in values if isinstance(v, str)]
        width = min(max([len(str(header)), *map(len, texts)]) + 2, TEXT_COLUMN_MAX)
        known = values.dropna()
        is_float = pd.api.types.is_float_dtype(values) and not (known == known.round()).all()
        fmt = dollars if "$/day" in str(header) else number if is_float else None
        sheet.set_column(offset + position, offset + position, max(width, 10) if fmt else width, fmt)


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
                         "replicas": sizes_text(probe.replicas),
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


def _deployment_sheet(writer: pd.ExcelWriter, sheet: str, plan: CapacityPlan) -> None:
    """Per-class metrics (one row per class), then per-stage metrics below."""
    per_class = pd.DataFrame.from_dict({n: _scalars(m) for n, m in plan.result.per_class.items()}, orient="index")
    per_class.index.name = "request class"
    per_class.to_excel(writer, sheet_name=sheet)
    per_stage = pd.DataFrame.from_dict({n: _scalars(m) for n, m in plan.result.per_stage.items()}, orient="index")
    per_stage.index.name = "stage"
    per_stage.to_excel(writer, sheet_name=sheet, startrow=len(per_class) + 3)


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
    _line_chart(writer, "Time series", frame, " e2e_p99_s", x_column=1, title="e2e p99 over time",
                y_name="seconds")


def _line_chart(writer: pd.ExcelWriter, sheet: str, frame: pd.DataFrame, suffix: str, x_column: int, title: str,
                y_name: str) -> None:
    """A native line chart right of ``frame`` (written at the top of ``sheet``): one series per column
    whose header ends with ``suffix``, against the hour of day in column ``x_column``."""
    chart = writer.book.add_chart({"type": "line"})
    for index, header in enumerate(frame.columns):
        if header.endswith(suffix):
            chart.add_series({"name": header, "categories": [sheet, 1, x_column, len(frame), x_column],
                              "values": [sheet, 1, index, len(frame), index]})
    chart.set_title({"name": title})
    chart.set_x_axis({"name": "hour of day"})
    chart.set_y_axis({"name": y_name})
    writer.sheets[sheet].insert_chart(1, len(frame.columns) + 1, chart, CHART_SIZE)


def _autoscale_sheet(writer: pd.ExcelWriter, report: PlanReport) -> None:
    """GPUs, cost and SLO attainment of every autoscaled deployment window by window; a GPUs-over-the-day chart."""
    frame = pd.DataFrame({"hour of day": [w.start_s / 3600 for w in report.autoscale[0].windows]})
    for schedule in report.autoscale:
        frame[f"{schedule.deployment} GPUs"] = [w.gpus for w in schedule.windows]
        frame[f"{schedule.deployment} $/day at this size"] = [w.cost_per_day_usd for w in schedule.windows]
        frame[f"{schedule.deployment} SLO met"] = [w.slo_attainment for w in schedule.windows]
        frame[f"{schedule.deployment} replicas"] = [sizes_text(w.replicas) for w in schedule.windows]
        frame[f"{schedule.deployment} SLO inferred from (hour)"] = [  # not simulated at its sizes: vouched for by
            None if w.inferred_from_s is None else w.inferred_from_s / 3600 for w in schedule.windows]  # that one
    frame.to_excel(writer, sheet_name="Autoscale", index=False)
    totals = pd.DataFrame([{"deployment": s.deployment,  # an INFEASIBLE schedule: no price (Schedule.totals)
                            "autoscaled $/day": (s.totals() or {}).get("autoscaled_cost_per_day_usd"),
                            "static $/day (the plan's sizing all day)": (s.totals() or {}).get("static_cost_per_day_usd"),
                            "saving": (s.totals() or {}).get("saving_share"),
                            "every window meets the SLO": "yes" if s.feasible else "INFEASIBLE"}
                           for s in report.autoscale])
    totals.to_excel(writer, sheet_name="Autoscale", index=False, startrow=len(frame) + 3)
    _line_chart(writer, "Autoscale", frame, " GPUs", x_column=0, title="GPUs over the day (autoscaled)",
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
    writer.sheets["Sensitivity"].insert_chart(1, len(frame.columns) + 1, chart, CHART_SIZE)


def _sheet_name(name: str, taken: set[str]) -> str:
    """A valid, unused sheet name for deployment ``name`` (Excel: 31 chars, no []:*?/\\)."""
    base = re.sub(r"[\[\]:*?/\\]", "_", name)[:SHEET_NAME_CHARS] or "deployment"
    candidate, number = base, 2
    while candidate.casefold() in {t.casefold() for t in taken}:
        suffix = f" ({number})"
        candidate = base[: SHEET_NAME_CHARS - len(suffix)] + suffix
        number += 1
    return candidate
