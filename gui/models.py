"""The comparison table: one row per deployment, read from the plan's comparison frame (``planner.compare``).

``ComparisonModel`` is a ``QAbstractTableModel`` over a ``RunOutcome``: its
cells are columns of ``outcome.plan.comparison().frame``, the frame the
terminal, JSON, CSV and workbook render, so the GUI shows the same numbers
and the same verdicts. Then one column per request class: its p99 of the
metric nearest (or furthest past) its target, red where past. ``SORT_ROLE``
holds the raw number (NaN when missing) so a ``QSortFilterProxyModel`` sorts
numerically. Units in the headers: GPUs, USD per day, USD per 1,000
requests, seconds.
"""

import math
from dataclasses import dataclass

import pandas as pd
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from gui.figures import deployment_colour
from gui.worker import RunOutcome
from planner.compare import VERDICT_MET, Comparison, class_cell

SORT_ROLE = Qt.ItemDataRole.UserRole
MISSED_BRUSH = QBrush(QColor("#f8d0d0"))
MET_BRUSH = QBrush(QColor("#d4efd4"))

Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column:
    """A column of the comparison frame: its header there, the header shown, display format, tooltip."""

    key: str
    header: str
    fmt: str
    tooltip: str


COLUMNS = (
    Column("verdict", "Verdict", "{}", "meets SLO; SLO missed or overloaded (as written: a real cost); "
                                       "INFEASIBLE (no size tried meets the SLO: no cost given). Hover for why."),
    Column("pareto", "Pareto", "", "On the Pareto front: meets the SLO and no other beats it on $/day, e2e p99 "
                                   "and quality at once (the same front as the plan and the workbook)"),
    Column("GPUs", "GPUs", "{:.0f}", "GPUs rented (replicas x tensor parallel, all stages)"),
    Column("$/day", "$/day", "{:,.0f}", "GPUs x price x 24 h + API spend scaled to a day (USD)"),
    Column("$/1k req", "$/1k req", "{:.3f}", "Cost per 1,000 requests (USD)"),
    Column("TTFT p99 s", "TTFT p99 (s)", "{:.3f}", "99th percentile time to first token, seconds"),
    Column("e2e p99 s", "e2e p99 (s)", "{:.3f}", "99th percentile end-to-end latency, seconds"),
    Column("SLO met", "SLO attainment", "{:.1%}", "Share of offered requests that met their class's targets"),
    # here: one column per request class with a target
    Column("quality", "Quality", "{:.1f}", "Share-weighted benchmark score of the models answering each class"),
    Column("GPU util", "GPU util", "{:.0%}", "GPU-weighted mean busy share"),
    Column("replicas", "Replicas", "{}", "Replicas per stage: (searched) when the capacity search chose them "
                                         "(every `replicas: auto` stage, or every model stage); otherwise as written"),
)
CLASSES_AFTER = "SLO met"  # the per-class columns follow this one
CLASS_TOOLTIP = ("{name}: p99 of the metric nearest or furthest past its target ({targets}); "
                 "red: above the target")


class ComparisonModel(QAbstractTableModel):
    """Read-only table of a run's deployments (column 0: name, then ``COLUMNS`` with one column per request
    class after ``CLASSES_AFTER``)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._outcome: RunOutcome | None = None
        self._comparison: Comparison | None = None
        self._columns: list[Column | str] = list(COLUMNS)  # COLUMNS with a request class's name where its column goes

    def set_outcome(self, outcome: RunOutcome | None) -> None:
        """Show ``outcome`` (None: empty the table)."""
        self.beginResetModel()
        self._outcome = outcome
        self._comparison = outcome.comparison if outcome is not None else None
        classes = ([name for name, t in self._comparison.targets.items() if t.written()]
                   if self._comparison is not None else [])
        split = 1 + [column.key for column in COLUMNS].index(CLASSES_AFTER)
        self._columns = [*COLUMNS[:split], *classes, *COLUMNS[split:]]
        self.endResetModel()

    def column_of(self, key: str) -> int:
        """The table column showing frame column ``key`` (0 is the deployment's name)."""
        return 1 + [c.key if isinstance(c, Column) else None for c in self._columns].index(key)

    @property
    def comparison(self) -> Comparison | None:
        """The comparison on show."""
        return self._comparison

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802 - Qt's signature
        """Number of deployments shown."""
        if parent.isValid() or self._comparison is None:
            return 0
        return len(self._comparison.frame)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802 - Qt's signature
        """Name column, one per ``COLUMNS``, one per request class with a target."""
        return 0 if parent.isValid() else 1 + len(self._columns)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 - Qt's signature
                   role: int = Qt.ItemDataRole.DisplayRole) -> object:
        """Column headers with units, and their tooltips."""
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < self.columnCount():
            return None
        column = self._columns[section - 1] if section else None
        if isinstance(column, str):
            return self._class_header(column, role)
        benchmark = self._outcome.plan.benchmark if self._outcome is not None else ""
        if role == Qt.ItemDataRole.DisplayRole:
            if column is None:
                return "Deployment"
            return f"{benchmark} quality" if column.key == "quality" and benchmark else column.header
        if role == Qt.ItemDataRole.ToolTipRole:
            if column is None:
                return "Candidate architecture"
            if column.key == "quality":
                return f"{column.tooltip} on {benchmark or 'one benchmark'}; ? = an unverified score"
            return column.tooltip
        return None

    def _class_header(self, name: str, role: int) -> object:
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{name} p99"
        if role == Qt.ItemDataRole.ToolTipRole and self._comparison is not None:
            return CLASS_TOOLTIP.format(name=name, targets=self._comparison.targets[name].text())
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        """Formatted text, raw sort value, alignment, colour swatch, verdict background and why."""
        if not index.isValid() or self._comparison is None:
            return None
        frame = self._comparison.frame
        name = str(frame.index[index.row()])
        row = frame.iloc[index.row()]
        if index.column() == 0:
            return self._name_data(index.row(), name, role)
        column = self._columns[index.column() - 1]
        if isinstance(column, str):
            return self._class_data(row, column, role)
        if column.key == "quality":
            return self._quality_data(row, role)
        value = row[column.key]
        if column.key == "replicas":  # a pipeline's list is long: the tooltip holds it when elided
            value = (value or "-") + (" (searched)" if row["searched"] else "")
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(column, value)
        if role == SORT_ROLE:
            return _sort_value(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.key not in ("replicas", "verdict"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and column.key == "verdict":
            return MET_BRUSH if value == VERDICT_MET else MISSED_BRUSH
        if role == Qt.ItemDataRole.ToolTipRole and column.key in ("verdict", "replicas"):
            return row["reason"] or str(value) if column.key == "verdict" else _display(column, value)
        return None

    def _class_data(self, row: pd.Series, name: str, role: int) -> object:
        """A class's p99 against its targets (``planner.compare.class_cell``); red when past its target."""
        assert self._comparison is not None
        text, past = class_cell(row, name, self._comparison.targets[name])
        if role == Qt.ItemDataRole.DisplayRole:
            return text
        if role == SORT_ROLE:
            return text
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and text != "-":
            return MISSED_BRUSH if past else None
        return None

    def _quality_data(self, row: pd.Series, role: int) -> object:
        """The benchmark score, '?' when unverified; the tooltip says which share of traffic it covers."""
        score = row["quality"]
        missing = score is None or (isinstance(score, float) and math.isnan(score))
        if role == SORT_ROLE:
            return math.nan if missing else float(score)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and not missing:
            return f"{row['quality benchmark']}: covers {row['quality coverage']:.0%} of the traffic"
        if role == Qt.ItemDataRole.DisplayRole:
            return "-" if missing else f"{score:.1f}" + ("?" if row["quality unverified"] else "")
        return None

    def _name_data(self, row: int, name: str, role: int) -> object:
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            return name
        if role == Qt.ItemDataRole.DecorationRole:
            return QColor(deployment_colour(row))
        if role == Qt.ItemDataRole.ToolTipRole and self._outcome is not None:
            specs = {spec.name: spec for spec in self._outcome.scenario.deployments}
            return " ".join(specs[name].description.split()) if name in specs else name
        return None


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _display(column: Column, value: object) -> str:
    """A cell's text: '-' for a missing value (an INFEASIBLE plan's cost too), '*' on the Pareto front."""
    if column.key == "pareto":
        return "*" if value else ""
    if _missing(value):
        return "-"
    return column.fmt.format(value)


def _sort_value(value: object) -> object:
    """Numbers sort as numbers (NaN when missing), text as text."""
    if isinstance(value, str):
        return value
    return math.nan if _missing(value) else float(value)  # type: ignore[arg-type]
