"""The structured editor beside the YAML: the common edits as fields and tables, written into the YAML as typed.

Tabs: **Traffic** (requests per day, the daily curve's peak/trough ratio and
peak hour, the time of day the run starts, and the curve drawn over 24 h
with the simulated window), **Classes** (a row per request class: share,
images and their size, text and output tokens), **SLO** (the attainment, the
every-class targets and each class's own) and **Deployments** (a row per model stage: GPU,
replicas, price per GPU-hour).

The form holds no scenario of its own: each keystroke is
``edited(field path, YAML text or None)``, which the window writes into the
YAML (``gui.yamledit``) and validates at once; ``show_data`` refills the
form from the YAML's mapping, ``show_errors`` puts each validation problem
at its field (red, the message as tooltip and under the tabs) and
``show_scenario`` draws the daily curve and the catalog prices of a valid
scenario. A token count written as a distribution is edited by its median.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.figures import time_unit
from gui.plots import styled_plot
from gui.yamledit import FieldPath, yaml_scalar
from planner.scenario import Scenario
from profiles.catalog import Catalog
from sim.slo import TARGET_METRICS
from sim.traffic.arrivals import DiurnalArrivals, PoissonArrivals
from sim.traffic.rates import SECONDS_PER_HOUR, diurnal_curve

PATH_ROLE = Qt.ItemDataRole.UserRole  # a table cell's field path (a tuple)
ERROR_BRUSH = QBrush(QColor("#f8d0d0"))
ERROR_FIELD_STYLE = "QLineEdit { background: #f8d0d0; }"
FIELD_PATH = re.compile(r"[\w\-]+(\.[\w\-]+)*")
CURVE_HEIGHT_PX = 150


@dataclass(frozen=True)
class FormField:
    """A line of the form: the field path it edits, its label and what it means (units)."""

    path: FieldPath
    label: str
    tip: str


TRAFFIC_FIELDS = (
    FormField(("traffic", "arrivals", "requests_per_day"), "Requests per day",
              "Offered requests per day, all classes (the daily curve's mean x 86,400)"),
    FormField(("traffic", "arrivals", "peak_to_trough"), "Daily curve: peak / trough",
              "Busiest over quietest rate of the day's sinusoid (1 = flat)"),
    FormField(("traffic", "arrivals", "peak_hour"), "Daily curve: peak hour",
              "Hour of the day (0-24) when the rate peaks"),
    FormField(("traffic", "start_s"), "Run starts at (s after midnight)",
              "Time of day at simulated time 0 (e.g. 48600 = 13:30); the horizon runs from there"),
)
SLO_FIELDS = (
    FormField(("slo", "attainment"), "Attainment", "Share of requests that must meet their class's targets (0-1]"),
    FormField(("slo", "ttft_s"), "TTFT target (s)", "Time to first token, every class; empty: no target"),
    FormField(("slo", "tpot_s"), "TPOT target (s)", "Mean time per output token, every class; empty: no target"),
    FormField(("slo", "e2e_s"), "e2e target (s)", "End-to-end latency, every class; empty: no target"),
)
# Classes table: header, path inside a class, tooltip.
CLASS_COLUMNS = (
    ("Share", ("share",), "Share of the requests (relative weights)"),
    ("Images", ("images", "count"), "Images per request"),
    ("Width px", ("images", "width_px"), "Image width, pixels"),
    ("Height px", ("images", "height_px"), "Image height, pixels"),
    ("Text tokens", ("text_tokens",), "Prompt text tokens (a distribution: its median)"),
    ("Output tokens", ("output_tokens",), "Answer tokens (a distribution: its median)"),
)
TOKEN_KEYS = ("text_tokens", "output_tokens")
# Per-class SLO table: target field -> tooltip (the header is the field name's metric).
CLASS_TARGET_COLUMNS = tuple((f"{metric} target (s)", f"{metric} target of this class, seconds; empty: the "
                              "every-class target (if any) applies") for metric in TARGET_METRICS.values())
# Deployments table: header, path inside a model stage, tooltip (None: read-only).
STAGE_COLUMNS = (
    ("Deployment", None, "Candidate architecture"),
    ("Stage", None, "Model stage"),
    ("GPU", ("gpu",), "GPU id of the catalog (a list or `auto`: edit in the YAML)"),
    ("Replicas", ("replicas",), "Replicas: a number, or `auto` for the capacity search"),
    ("$/GPU-hour", ("usd_per_gpu_hour",), "Price override, USD per GPU-hour; empty: the catalog's price"),
    ("catalog $/GPU-hour", None, "The catalog's price of the GPU (the one used when no override is written)"),
)


def problems_by_field(message: str, where: str) -> list[tuple[str, str]]:
    """(dotted field path, problem) of each line ``where: path: problem`` of a validation message."""
    found = []
    for line in message.splitlines():
        if not line.startswith(f"{where}: "):
            continue
        path, _, problem = line[len(where) + 2:].partition(": ")
        if problem and FIELD_PATH.fullmatch(path):
            found.append((path, problem))
    return found


def dotted(path: FieldPath) -> str:
    """``("traffic", "classes", 0, "share")`` -> ``"traffic.classes.0.share"`` (as validation errors name it)."""
    return ".".join(str(part) for part in path)


def problems_at(path: FieldPath, problems: Sequence[tuple[str, str]]) -> list[str]:
    """The problems about the field at ``path`` (or inside it; a median field also takes its distribution's)."""
    name = dotted(path)
    owner = name.removesuffix(".median")
    return [problem for at, problem in problems if at in (name, owner) or at.startswith(f"{name}.")]


def value_at(data: object, path: FieldPath) -> object:
    """The raw YAML value at ``path`` (None when absent)."""
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def field_text(value: object) -> str:
    """A raw YAML value as a field shows it ('' when absent)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else str(value)
    return str(value)


class LiveDelegate(QStyledItemDelegate):
    """A table cell editor that commits every keystroke, so the YAML and validation follow as typed."""

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem,  # noqa: N802 - Qt's name
                     index: QModelIndex | QPersistentModelIndex) -> QWidget:
        """The default line editor, committing on each edit."""
        editor = super().createEditor(parent, option, index)
        if isinstance(editor, QLineEdit):
            editor.textEdited.connect(lambda _text, e=editor: self.commitData.emit(e))
        return editor


class ScenarioForm(QWidget):
    """The common edits of a scenario (see the module docstring); the YAML stays the source."""

    edited = Signal(object, object)  # field path (tuple), YAML value text or None (remove the key)

    def __init__(self) -> None:
        super().__init__()
        self._filling = False  # refilling from the YAML: not an edit
        self._catalog: Catalog | None = None
        self._data: dict = {}
        self._start_s = 0.0  # the valid scenario's time of day at simulated time 0
        self.fields: dict[FieldPath, QLineEdit] = {}
        self.tabs = QTabWidget()
        self.tabs.addTab(self._traffic_tab(), "Traffic")
        self.classes = self._table([header for header, _, _ in CLASS_COLUMNS], [tip for _, _, tip in CLASS_COLUMNS],
                                   "Class")
        self.tabs.addTab(self.classes, "Classes")
        self.tabs.addTab(self._slo_tab(), "SLO")
        self.stages = self._table([header for header, _, _ in STAGE_COLUMNS], [tip for _, _, tip in STAGE_COLUMNS])
        self.tabs.addTab(self.stages, "Deployments")
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #a00000;")
        self.problems.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.problems)

    # ------------------------------------------------------------ construction

    def _traffic_tab(self) -> QWidget:
        self.arrivals_note = QLabel()
        self.curve_plot = styled_plot("", "hour of the day", "requests/s")
        self.curve_plot.setMinimumHeight(CURVE_HEIGHT_PX)
        self.curve_plot.getPlotItem().setMouseEnabled(x=False, y=False)
        self.curve = pg.PlotDataItem(pen=pg.mkPen("#1f77b4", width=2))
        self.simulated_span = pg.LinearRegionItem(brush=pg.mkBrush(255, 160, 0, 60), movable=False)
        self.curve_plot.addItem(self.simulated_span)
        self.curve_plot.addItem(self.curve)
        self.curve_plot.getPlotItem().getAxis("bottom").setTicks([[(h, str(h)) for h in range(0, 25, 3)], []])
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(self.arrivals_note)
        layout.addWidget(self._fields_tab(TRAFFIC_FIELDS, margin=False))
        layout.addWidget(self.curve_plot, 1)  # the curve takes the room the fields leave
        return tab

    def _slo_tab(self) -> QWidget:
        self.class_targets = self._table([header for header, _ in CLASS_TARGET_COLUMNS],
                                         [tip for _, tip in CLASS_TARGET_COLUMNS], "Class")
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(self._fields_tab(SLO_FIELDS, margin=False))
        layout.addWidget(QLabel("Per class (overrides the every-class target; empty: that target applies):"))
        layout.addWidget(self.class_targets, 1)
        return tab

    def _fields_tab(self, fields: Sequence[FormField], margin: bool = True) -> QWidget:
        tab = QWidget()
        layout = QFormLayout(tab)
        if not margin:
            layout.setContentsMargins(0, 0, 0, 0)
        for spec in fields:
            edit = QLineEdit()
            edit.setToolTip(spec.tip)
            edit.setProperty("tip", spec.tip)
            edit.textEdited.connect(lambda text, path=spec.path: self._edit(path, text))
            layout.addRow(spec.label, edit)
            self.fields[spec.path] = edit
        return tab

    def _table(self, headers: list[str], tips: list[str], row_header: str | None = None) -> QTableWidget:
        table = QTableWidget(0, len(headers))
        table.setHorizontalHeaderLabels(headers)
        for column, tip in enumerate(tips):
            header = table.horizontalHeaderItem(column)
            assert header is not None
            header.setToolTip(tip)
        if row_header is None:
            table.verticalHeader().setVisible(False)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.setItemDelegate(LiveDelegate(table))
        table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)
        table.setEditTriggers(QTableWidget.EditTrigger.AllEditTriggers)
        table.itemChanged.connect(self._cell_edited)
        return table

    # ------------------------------------------------------------ edits

    def _edit(self, path: FieldPath, text: str) -> None:
        if not self._filling:
            self.edited.emit(path, yaml_scalar(text) if text.strip() else None)

    def _cell_edited(self, item: QTableWidgetItem) -> None:
        path = item.data(PATH_ROLE)
        if path is not None:
            self._edit(tuple(path), item.text())

    # ------------------------------------------------------------ the YAML's values

    def show_data(self, data: dict) -> None:
        """Fill every field from the YAML's top-level mapping (the field being typed in keeps its text)."""
        self._filling = True
        try:
            self._data = data
            for path, edit in self.fields.items():
                text = field_text(value_at(data, path))
                if edit.text() != text and not edit.hasFocus():
                    edit.setText(text)
            self._fill_traffic_state(data)
            self._fill_classes(data)
            self._fill_stages(data)
        finally:
            self._filling = False

    def _fill_traffic_state(self, data: dict) -> None:
        arrivals = value_at(data, ("traffic", "arrivals"))
        kind = arrivals.get("kind") if isinstance(arrivals, dict) else None
        per_day = isinstance(arrivals, dict) and "requests_per_day" in arrivals
        curve = kind == "diurnal" and isinstance(arrivals, dict) and "hourly_weights" not in arrivals
        self.fields[("traffic", "arrivals", "requests_per_day")].setEnabled(per_day or kind == "diurnal")
        for key in ("peak_to_trough", "peak_hour"):
            self.fields[("traffic", "arrivals", key)].setEnabled(curve)
        notes = {"diurnal": "Arrivals: a daily curve." if curve else "Arrivals: hourly weights (edit in the YAML).",
                 "poisson": "Arrivals: Poisson at a constant rate (no daily curve)."}
        self.arrivals_note.setText(notes.get(str(kind), f"Arrivals: {kind} (edit them in the YAML)."))

    def _fill_classes(self, data: dict) -> None:
        classes = value_at(data, ("traffic", "classes"))
        classes = classes if isinstance(classes, list) else []
        rows = [(c, entry) for c, entry in enumerate(classes) if isinstance(entry, dict)]
        self._resize(self.classes, len(rows))
        self._resize(self.class_targets, len(rows))
        per_class = value_at(data, ("slo", "per_class"))
        per_class = per_class if isinstance(per_class, dict) else {}
        for row, (c, entry) in enumerate(rows):
            name = str(entry.get("name", c))
            self.classes.setVerticalHeaderItem(row, QTableWidgetItem(name))
            for column, (_, inner, tip) in enumerate(CLASS_COLUMNS):
                path, text, editable = self._class_cell(c, entry, inner)
                self._set_cell(self.classes, row, column, text, path if editable else None, tip)
            self.class_targets.setVerticalHeaderItem(row, QTableWidgetItem(name))
            targets = per_class.get(name)
            for column, (target, (_, tip)) in enumerate(zip(TARGET_METRICS, CLASS_TARGET_COLUMNS, strict=True)):
                text = field_text(targets.get(target)) if isinstance(targets, dict) else ""
                self._set_cell(self.class_targets, row, column, text, ("slo", "per_class", name, target), tip)

    @staticmethod
    def _class_cell(index: int, entry: dict, inner: FieldPath) -> tuple[FieldPath, str, bool]:
        """A class's cell: its path, text and whether the form edits it (a token distribution by its median)."""
        path: FieldPath = ("traffic", "classes", index, *inner)
        value = value_at(entry, inner)
        if inner[0] in TOKEN_KEYS and isinstance(value, dict):
            if "median" in value:
                return (*path, "median"), field_text(value["median"]), True
            return path, f"{value.get('kind', 'distribution')} (YAML)", False
        if inner[0] == "images" and "video" in entry and "images" not in entry:
            return path, "video (YAML)" if inner[1] == "count" else "", False
        return path, field_text(value), True

    def _fill_stages(self, data: dict) -> None:
        deployments = value_at(data, ("deployments",))
        deployments = deployments if isinstance(deployments, list) else []
        rows = [(d, deployment, s, stage)
                for d, deployment in enumerate(deployments) if isinstance(deployment, dict)
                for s, stage in enumerate(deployment.get("stages") or []) if isinstance(stage, dict)
                and stage.get("kind", "model") == "model"]
        self._resize(self.stages, len(rows))
        for row, (d, deployment, s, stage) in enumerate(rows):
            for column, (_, inner, tip) in enumerate(STAGE_COLUMNS):
                path = None if inner is None else ("deployments", d, "stages", s, *inner)
                value = value_at(stage, inner) if inner is not None else None
                text = field_text(value)
                if column == 0:
                    text = str(deployment.get("name", d))
                elif column == 1:
                    text = str(stage.get("name", s))
                elif column == len(STAGE_COLUMNS) - 1:
                    text = self._catalog_price(stage.get("gpu"))
                if inner == ("gpu",) and not isinstance(value, str | None):
                    path, text = None, ", ".join(map(str, value)) if isinstance(value, list) else text
                self._set_cell(self.stages, row, column, text, path, tip)

    def _catalog_price(self, gpu: object) -> str:
        if self._catalog is None or not isinstance(gpu, str) or gpu not in self._catalog.gpus:
            return ""
        price = self._catalog.gpus[gpu].price
        return "" if price is None else f"{price.usd_per_gpu_hour:.2f}"

    def _resize(self, table: QTableWidget, rows: int) -> None:
        if table.rowCount() != rows:
            table.setRowCount(rows)

    def _set_cell(self, table: QTableWidget, row: int, column: int, text: str, path: FieldPath | None,
                  tip: str) -> None:
        """Set a cell's text (unless it is being typed in) and its path; a cell without a path is read-only."""
        item = table.item(row, column)
        if item is None:
            item = QTableWidgetItem()
            table.setItem(row, column, item)
        editing = table.state() == QTableWidget.State.EditingState and table.currentItem() is item
        if item.text() != text and not editing:
            item.setText(text)
        item.setData(PATH_ROLE, path)
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        item.setFlags(flags | Qt.ItemFlag.ItemIsEditable if path is not None else flags)
        item.setForeground(QBrush(QColor("black" if path is not None else "#666666")))
        item.setToolTip(tip)
        item.setData(Qt.ItemDataRole.UserRole + 1, tip)
        if path is not None and text.replace(".", "", 1).isdigit():
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    # ------------------------------------------------------------ validation

    def show_errors(self, problems: Sequence[tuple[str, str]]) -> None:
        """Mark each field and cell with a problem (red, the problem as its tooltip); list them under the tabs."""
        self._filling = True  # restyling a cell signals itemChanged: not an edit
        try:
            self._show_errors(problems)
        finally:
            self._filling = False

    def _show_errors(self, problems: Sequence[tuple[str, str]]) -> None:
        shown: list[str] = []
        for path, edit in self.fields.items():
            found = problems_at(path, problems)
            edit.setStyleSheet(ERROR_FIELD_STYLE if found else "")
            edit.setToolTip("\n".join(found) if found else str(edit.property("tip")))
            shown += [f"{dotted(path)}: {problem}" for problem in found]
        for table in (self.classes, self.class_targets, self.stages):
            for row in range(table.rowCount()):
                for column in range(table.columnCount()):
                    shown += self._mark_cell(table.item(row, column), problems)
        self.problems.setText("\n".join(dict.fromkeys(shown)))
        self.problems.setVisible(bool(shown))
        for tab in range(self.tabs.count()):
            self.tabs.tabBar().setTabTextColor(tab, QColor("black"))
        for tab, bad in ((0, self._any_bad(TRAFFIC_FIELDS)), (2, self._any_bad(SLO_FIELDS) or self._table_bad(self.class_targets)),
                         (1, self._table_bad(self.classes)), (3, self._table_bad(self.stages))):
            if bad:
                self.tabs.tabBar().setTabTextColor(tab, QColor("#c00000"))

    def _mark_cell(self, item: QTableWidgetItem | None, problems: Sequence[tuple[str, str]]) -> list[str]:
        if item is None:
            return []
        path = item.data(PATH_ROLE)
        found = problems_at(tuple(path), problems) if path is not None else []
        item.setBackground(ERROR_BRUSH if found else QBrush())
        item.setToolTip("\n".join(found) if found else str(item.data(Qt.ItemDataRole.UserRole + 1)))
        return [f"{dotted(tuple(path))}: {problem}" for problem in found]

    def _any_bad(self, fields: Sequence[FormField]) -> bool:
        return any(self.fields[spec.path].styleSheet() for spec in fields)

    @staticmethod
    def _table_bad(table: QTableWidget) -> bool:
        return any((item := table.item(r, c)) is not None and item.background() == ERROR_BRUSH
                   for r in range(table.rowCount()) for c in range(table.columnCount()))

    # ------------------------------------------------------------ a valid scenario

    def show_scenario(self, scenario: Scenario, catalog: Catalog, horizon_s: float) -> None:
        """Catalog prices beside the overrides, and the daily curve with the simulated window shaded."""
        self._catalog = catalog
        if self._data:
            self._filling = True
            try:
                self._fill_stages(self._data)
            finally:
                self._filling = False
        arrivals = scenario.traffic.arrivals
        hours = np.linspace(0.0, 24.0, 241)
        rate = daily_rate(arrivals, hours)
        self.curve_plot.setVisible(rate is not None)
        if rate is None:
            return
        self.curve.setData(hours, rate)
        self._start_s = scenario.traffic.start_s
        self.show_horizon(horizon_s)
        self.curve_plot.setXRange(0, 24, padding=0)
        self.curve_plot.setYRange(0, max(float(rate.max()), 1e-9) * 1.1, padding=0)

    def show_horizon(self, horizon_s: float) -> None:
        """Shade the simulated span of the day: ``horizon_s`` from the scenario's start time."""
        start_h = self._start_s / SECONDS_PER_HOUR
        self.simulated_span.setRegion((start_h, min(start_h + horizon_s / SECONDS_PER_HOUR, 24.0)))
        scale_s, unit = time_unit(horizon_s)
        self.curve_plot.getPlotItem().setTitle(
            f"offered load over the day (bursts aside); shaded: the {horizon_s / scale_s:.3g} {unit} simulated",
            color="k", size="9pt")


def daily_rate(arrivals: object, hours: np.ndarray) -> np.ndarray | None:
    """Offered requests/s at ``hours`` of the day (``sim.traffic.rates``'s curve; flat for Poisson arrivals);
    None for arrivals without a rate by time of day (closed loop, offline, trace)."""
    if isinstance(arrivals, DiurnalArrivals):
        return arrivals.daily_mean_rps * diurnal_curve(arrivals, 0.0).factor(hours * SECONDS_PER_HOUR)
    if isinstance(arrivals, PoissonArrivals):
        return np.full_like(hours, arrivals.mean_rate_rps)
    return None
