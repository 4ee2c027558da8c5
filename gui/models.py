"""The comparison table: one row per deployment, the contract metrics as columns.

``ComparisonModel`` is a ``QAbstractTableModel`` over a ``RunOutcome``.
Cells display formatted values; ``SORT_ROLE`` holds the raw number (NaN
for a missing latency) so a ``QSortFilterProxyModel`` sorts numerically.
Units in the headers: GPUs, USD per day, USD per 1,000 requests, seconds.
"""

import math
from dataclasses import dataclass

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from gui.figures import deployment_colour
from gui.worker import RunOutcome
from planner.capacity import sizes_text
from planner.plan import PlanReport

SORT_ROLE = Qt.ItemDataRole.UserRole
MISSED_BRUSH = QBrush(QColor("#f8d0d0"))
MET_BRUSH = QBrush(QColor("#d4efd4"))

Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column:
    """A metric column: contract key, header, display format and header tooltip."""

    key: str
    header: str
    fmt: str
    tooltip: str


COLUMNS = (
    Column("replicas", "Replicas", "", "Replicas per stage: searched ones marked (searched); otherwise as "
                                       "written, auto stages at min_replicas"),
    Column("gpus", "GPUs", "{:.0f}", "GPUs rented (replicas x tensor parallel, all stages)"),
    Column("cost_per_day_usd", "$/day", "{:,.0f}", "GPUs x price x 24 h + API spend scaled to a day (USD)"),
    Column("cost_per_1k_requests_usd", "$/1k req", "{:.3f}", "Cost per 1,000 requests (USD)"),
    Column("ttft_p99_s", "TTFT p99 (s)", "{:.3f}", "99th percentile time to first token, seconds"),
    Column("e2e_p99_s", "e2e p99 (s)", "{:.3f}", "99th percentile end-to-end latency, seconds"),
    Column("gpu_utilization", "GPU util", "{:.0%}", "GPU-weighted mean busy share"),
    Column("quality", "Quality", "{:.1f}", "Share-weighted benchmark score of the models answering each class"),
    Column("slo_attainment", "SLO attainment", "{:.1%}", "Share of offered requests that met their targets"),
    Column("slo_met", "SLO met", "", "Attainment at least the scenario's slo.attainment"),
    Column("overloaded", "Overloaded", "", "More than 1% of requests unfinished at the end: load exceeds capacity"),
)
FLAG_KEYS = ("slo_met", "overloaded")


class ComparisonModel(QAbstractTableModel):
    """Read-only table of a run's deployments (column 0: name, then ``COLUMNS``)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._outcome: RunOutcome | None = None

    def set_outcome(self, outcome: RunOutcome | None) -> None:
        """Show ``outcome`` (None: empty the table)."""
        self.beginResetModel()
        self._outcome = outcome
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802 - Qt's signature
        """Number of deployments shown."""
        if parent.isValid() or self._outcome is None:
            return 0
        return len(self._outcome.report.results)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802 - Qt's signature
        """Name column plus one per metric."""
        return 0 if parent.isValid() else 1 + len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 - Qt's signature
                   role: int = Qt.ItemDataRole.DisplayRole) -> object:
        """Column headers with units, and their tooltips."""
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < self.columnCount():
            return None
        column = COLUMNS[section - 1] if section else None
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

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        """Formatted text, raw sort value, alignment, colour swatch and verdict background."""
        if not index.isValid() or self._outcome is None:
            return None
        result = self._outcome.report.results[index.row()]
        if index.column() == 0:
            return self._name_data(index.row(), result.deployment, role)
        column = COLUMNS[index.column() - 1]
        if column.key == "quality":
            return self._quality_data(index.row(), role)
        if column.key == "replicas":
            return self._replicas_data(index.row(), role)
        value = result.metrics.get(column.key)
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(column, value)
        if role == SORT_ROLE:
            return math.nan if value is None else float(value)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and column.key in FLAG_KEYS:
            return _verdict_brush(column.key, value)
        return None

    @property
    def _plan(self) -> PlanReport:
        """The plan of the outcome on show (``data`` asks for cells only while there is one)."""
        assert self._outcome is not None
        return self._outcome.plan

    def _quality_data(self, row: int, role: int) -> object:
        """The benchmark score, '?' when unverified; the tooltip says which share of traffic it covers."""
        quality = self._plan.qualities[row]
        if role == SORT_ROLE:
            return math.nan if quality.score is None else quality.score
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{quality.benchmark}: covers {quality.coverage:.0%} of the traffic"
        if role == Qt.ItemDataRole.DisplayRole:
            if quality.score is None:
                return "-"
            return f"{quality.score:.1f}" + ("?" if quality.unverified else "")
        return None

    def _replicas_data(self, row: int, role: int) -> object:
        """Replicas per stage ("ocr x4, text7b x1"); sorts by their total."""
        plan = self._plan.plans[row]
        if role == SORT_ROLE:
            return float(sum(plan.replicas.values()))
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):  # the tooltip: when elided
            text = sizes_text(plan.replicas) or "-"
            return text + (" (searched)" if plan.auto_stages else "")
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


def _display(column: Column, value: object) -> str:
    """A cell's text: '-' for a missing value, yes/no for flags."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column.key in FLAG_KEYS:
        return "yes" if value else "no"
    return column.fmt.format(value)


def _verdict_brush(key: str, value: object) -> QBrush | None:
    """Green for a met SLO, red for a missed SLO or an overload."""
    good = bool(value) if key == "slo_met" else not value
    return MET_BRUSH if good else MISSED_BRUSH
