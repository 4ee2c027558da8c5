"""The results view: a one-line summary, the comparison table, and tabs with the five plots and the sensitivity.

``ResultsView.show_outcome`` refreshes everything from one ``RunOutcome``;
the table is a ``ComparisonModel`` behind a sort proxy (numeric sort on
the raw values), the plots are built once and refreshed with ``setData``.
"""

import html

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.curves import CdfPanel, LoadPanel
from gui.models import MET_BRUSH, MISSED_BRUSH, SORT_ROLE, ComparisonModel
from gui.plots import CostPanel, LatencyPanel, ParetoPanel
from gui.worker import RunOutcome
from planner.compare import VERDICT_MET, VRAM_PARTS
from planner.sensitivity import STEP_TIME_ERROR, changes, sensitivity_table

MAX_TABLE_ROWS = 12  # more deployments scroll, so the plots keep their room
TABLE_MIN_PX = 1000  # the table takes up to this from the editor; wider (many classes) scrolls sideways
SUMMARY_LINES = 3
REPLICAS_COLUMN_PX = 170
SENSITIVITY_HINT = ("Sensitivity (toolbar) simulates every deployment of the last run again, at the same sizes, "
                    f"with {changes()}.")
SENSITIVITY_DONE = ("SLO attainment and e2e p99 of each deployment at the sizes it ran, one input changed at a time "
                    "(green: meets the SLO). Load headroom: the largest load factor tried that still meets it. "
                    f"Step time x{STEP_TIME_ERROR:g}: every GPU step slower by the performance model's "
                    "90th-percentile error on measured serving runs.")
WHY_HINT = "Click a row or a point of the cost-vs-latency plot to see why it misses the SLO."
PLOTS_MIN_PX = (880, 540)  # below this the plots scroll rather than squash their labels


class ResultsView(QWidget):
    """Summary, table and plots of the last finished run."""

    def __init__(self) -> None:
        super().__init__()
        self.summary = QLabel("Run the scenario to compare its deployments.")
        self.summary.setWordWrap(True)
        self.summary.setMinimumHeight(SUMMARY_LINES * self.summary.fontMetrics().lineSpacing())
        self.table_model = ComparisonModel(self)
        self.table = self._table()
        # why the selected deployment (a clicked row or plot point) misses, or that it meets the SLO
        self.why = QLabel(WHY_HINT)
        self.why.setWordWrap(True)
        self.why.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table.selectionModel().currentRowChanged.connect(lambda current, _previous: self._explain(current))
        self.cost_plot, self.latency_plot, self.pareto_plot = CostPanel(), LatencyPanel(), ParetoPanel()
        self.cdf_plot, self.load_plot = CdfPanel(), LoadPanel()
        self.pareto_plot.clicked.connect(self.select_deployment)
        plots = QWidget()
        plots.setMinimumSize(*PLOTS_MIN_PX)
        grid = QGridLayout(plots)
        grid.setContentsMargins(0, 0, 0, 0)
        # the bars get half the width each, so six deployment names fit under them
        grid.addWidget(self.cost_plot, 0, 0, 1, 3)
        grid.addWidget(self.latency_plot, 0, 3, 1, 3)
        grid.addWidget(self.pareto_plot, 1, 0, 1, 2)
        grid.addWidget(self.cdf_plot, 1, 2, 1, 2)
        grid.addWidget(self.load_plot, 1, 4, 1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.summary)
        layout.addWidget(self.table)
        layout.addWidget(self.why)
        scroll = QScrollArea()
        scroll.setWidget(plots)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.sensitivity = SensitivityView()
        self.memory = MemoryView()
        self.plots_tab = scroll
        self.tabs = QTabWidget()
        self.tabs.addTab(scroll, "Plots")
        self.tabs.addTab(self.memory, "VRAM per replica")
        self.tabs.addTab(self.sensitivity, "Sensitivity")
        layout.addWidget(self.tabs, 1)

    def _table(self) -> QTableView:
        proxy = QSortFilterProxyModel(self)
        proxy.setSourceModel(self.table_model)
        proxy.setSortRole(SORT_ROLE)
        table = QTableView()
        table.setModel(proxy)
        table.setSortingEnabled(True)
        table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # the scenario's order until a header is clicked
        table.verticalHeader().setVisible(False)
        # every column as wide as its contents, the last one takes what is left
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 10)
        table.setAlternatingRowColors(True)
        return table

    @property
    def panels(self) -> tuple:
        """The five plot panels."""
        return (self.cost_plot, self.latency_plot, self.pareto_plot, self.cdf_plot, self.load_plot)

    def show_outcome(self, outcome: RunOutcome) -> None:
        """Refresh the summary, table and plots from ``outcome``."""
        self.table_model.set_outcome(outcome)
        self.why.setText(WHY_HINT)
        self._fit_table_height()
        for panel in self.panels:
            panel.show_outcome(outcome)
        self.summary.setText(summary_text(outcome))
        self.memory.show_outcome(outcome)
        self.sensitivity.show_outcome(outcome)
        self.tabs.setCurrentWidget(self.sensitivity if outcome.plan.sensitivity else self.plots_tab)

    def select_deployment(self, row: int) -> None:
        """Select the deployment in the frame's ``row`` (the scenario's order) in the table, which explains it."""
        proxy = self.table.model()
        assert isinstance(proxy, QSortFilterProxyModel)
        self.table.setCurrentIndex(proxy.mapFromSource(self.table_model.index(row, 0)))

    def _explain(self, current: QModelIndex) -> None:
        """The ``why`` line for the selected row: its verdict and the frame's reason (``planner.compare``)."""
        comparison = self.table_model.comparison
        if comparison is None or not current.isValid():
            self.why.setText(WHY_HINT)
            return
        proxy = self.table.model()
        assert isinstance(proxy, QSortFilterProxyModel)
        row = comparison.frame.iloc[proxy.mapToSource(current).row()]
        verdict, reason = row["verdict"], row["reason"]
        style = "#006000" if verdict == VERDICT_MET else "#a00000"
        text = f"<b>{html.escape(str(row.name))}</b>: <span style='color:{style}'>{html.escape(verdict)}</span>"
        self.why.setText(text + (f" — {html.escape(reason)}" if reason else ""))

    def _fit_table_height(self) -> None:
        """The table as tall as its rows, so the plots get the rest."""
        # a pipeline's replicas list is long: a fixed width, elided, the whole list in its tooltip
        replicas = self.table_model.column_of("replicas")
        self.table.horizontalHeader().setSectionResizeMode(replicas, QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().resizeSection(replicas, REPLICAS_COLUMN_PX)
        rows = min(max(self.table_model.rowCount(), 3), MAX_TABLE_ROWS)
        height = (self.table.horizontalHeader().height() + rows * self.table.verticalHeader().defaultSectionSize()
                  + 2 * self.table.frameWidth() + 2)
        # never narrower than its columns (up to TABLE_MIN_PX): the splitter takes the room from the editor
        width = self.table.horizontalHeader().length() + 2 * self.table.frameWidth()
        self.table.setMinimumWidth(min(width, TABLE_MIN_PX))
        if width > TABLE_MIN_PX:  # room for the sideways scroll bar below the last row
            height += self.table.horizontalScrollBar().sizeHint().height()
        self.table.setFixedHeight(height)


def summary_text(outcome: RunOutcome) -> str:
    """The lines above the table: what was run, the SLO targets in force, and how to read it."""
    report, comparison = outcome.report, outcome.comparison
    met = int((comparison.frame["verdict"] == VERDICT_MET).sum())
    targets = " · ".join(f"<b>{name}</b> {t.text().replace(' s,', ',').replace('<=', '≤') or 'none'}"
                         for name, t in comparison.targets.items())
    return (f"<b>{report.scenario}</b>: {report.horizon_s:,.0f} s simulated, seed {report.seed}. "
            f"SLO: {comparison.attainment * 100:g}% of requests within their class's targets — "
            f"met by {met} of {len(comparison.frame)} deployments. "
            f"$/day = GPUs × price × 24 h + API spend scaled to a day (none for an INFEASIBLE plan). "
            f"Click a row or point (or hover a verdict) for why; hover a name for its description.<br>"
            f"Targets in force (only those the scenario writes; seconds): {targets}")


class SensitivityView(QWidget):
    """Each deployment of the last run under more and less load, longer answers and slower steps
    (``planner.sensitivity``)."""

    def __init__(self) -> None:
        super().__init__()
        self.note = QLabel(SENSITIVITY_HINT)
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)

    def show_outcome(self, outcome: RunOutcome) -> None:
        """Fill the table from ``outcome.plan.sensitivity`` (empty until Sensitivity has run on it)."""
        header, rows = sensitivity_table(outcome.plan.sensitivity, outcome.plan.plans)
        self.table.clear()
        self.table.setColumnCount(len(header))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(header)
        for r, row in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(row[0]))
            for c, (text, met) in enumerate(row[1:-1], start=1):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setBackground(MET_BRUSH if met else MISSED_BRUSH)
                self.table.setItem(r, c, item)
            self.table.setItem(r, len(header) - 1, QTableWidgetItem(row[-1]))
        self.note.setText(SENSITIVITY_DONE if rows else SENSITIVITY_HINT)


class MemoryView(QWidget):
    """VRAM per replica of every model stage (``Comparison.memory``): weights, KV cache, activations, free."""

    HEADERS = ("Deployment", "Stage", "GPUs per replica", *(f"{part} (GB)" for part in VRAM_PARTS.values()),
               "total (GB)", "Engine", "Step times from")

    def __init__(self) -> None:
        super().__init__()
        note = QLabel("GPU memory of one replica of each model stage: weights + KV cache + activations + free "
                      "(outside the engine's share) = the replica's GPUs' memory; the engine, and where the step "
                      "times come from (measured kernels, calibration, or roofline estimate).")
        note.setWordWrap(True)
        self.table = QTableWidget(0, len(self.HEADERS))
        self.table.setHorizontalHeaderLabels(list(self.HEADERS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addWidget(note)
        layout.addWidget(self.table, 1)

    def show_outcome(self, outcome: RunOutcome) -> None:
        """Fill the table from the outcome's comparison."""
        memory = outcome.comparison.memory
        self.table.setRowCount(len(memory))
        parts = [part.replace(" ", "_") for part in VRAM_PARTS.values()] + ["total"]
        source_at = memory.columns.get_loc("step times")  # not an identifier: read by position
        for r, row in enumerate(memory.itertuples(index=False)):
            cells = [row.deployment, row.stage, f"{row[3]}x {row.GPU}",
                     *(f"{getattr(row, part):.1f}" for part in parts), str(row.engine or ""),
                     str(row[source_at] or "")]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if 3 <= c < 3 + len(parts):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
