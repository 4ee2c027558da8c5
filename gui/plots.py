"""Per-deployment result plots: cost/day and p99 bars, the cost-latency Pareto scatter; shared plot styling.

Each panel builds its plot items once and refreshes them with ``setData`` /
``setOpts`` when ``show_outcome`` is called (items are pooled and hidden
when a later scenario has fewer deployments). Curves over latency or time
are in ``gui.curves``. Every deployment keeps its
colour from ``gui.figures.deployment_colour`` across panels and the table.
What is drawn is computed by ``gui.figures`` (Qt-free). Axis titles carry
units: USD/day, seconds, requests/s.
"""

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from gui import figures
from gui.worker import RunOutcome
from planner.compare import VERDICT_INFEASIBLE, VERDICT_MET, VERDICT_MISSED, VERDICT_OVERLOADED

SLO_PEN = pg.mkPen("#c00000", width=2, style=Qt.PenStyle.DashLine)
FRONT_PEN = pg.mkPen("#888888", width=2, style=Qt.PenStyle.DashLine)
BAR_WIDTH = 0.6
NAME_AXIS_HEIGHT_PX = 40  # two lines of tick text


def styled_plot(title: str, bottom: str, left: str) -> pg.PlotWidget:
    """A white plot with black axes, a title and axis titles (per widget: no pyqtgraph global config)."""
    plot = pg.PlotWidget(background="w")
    item = plot.getPlotItem()
    item.setTitle(title, color="k", size="11pt")
    for name, label in (("bottom", bottom), ("left", left)):
        axis = item.getAxis(name)
        axis.setPen("k")
        axis.setTextPen("k")
        axis.setLabel(label, color="k")
    item.showGrid(x=False, y=True, alpha=0.25)
    item.setMenuEnabled(False)
    return plot


def two_lines(name: str) -> str:
    """A long name broken at the hyphen nearest its middle, so six names fit under six bars."""
    hyphens = [i for i, char in enumerate(name) if char == "-"]
    if len(name) <= 8 or not hyphens:
        return name
    cut = min(hyphens, key=lambda i: abs(i + 1 - len(name) / 2)) + 1
    return f"{name[:cut]}\n{name[cut:]}"


def _name_ticks(plot: pg.PlotWidget, names: list[str]) -> None:
    """Deployment names under the bars, on up to two lines."""
    axis = plot.getPlotItem().getAxis("bottom")
    axis.setTicks([[(i, two_lines(name)) for i, name in enumerate(names)], []])
    axis.setHeight(NAME_AXIS_HEIGHT_PX)


def panel_layout(widget: QWidget, caption: str, plot: pg.PlotWidget, chooser: QComboBox | None = None) -> QLabel:
    """A header row (an optional chooser, then a caption) above ``plot``; returns the caption label.

    Every panel has the row, so the plots of a grid row line up.
    """
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    header = QHBoxLayout()
    if chooser is not None:
        header.addWidget(chooser)
    label = QLabel(caption)
    label.setStyleSheet("color: #444444;")
    label.setToolTip(caption)
    # a long caption is cut, never widens the panel past its share of the window
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    header.addWidget(label, 1)
    layout.addLayout(header)
    layout.addWidget(plot)
    return label


def grow_pool(pool: list, count: int, make: Callable[[], object]) -> None:
    """Add items to ``pool`` until it holds ``count`` (items are created once, then reused)."""
    while len(pool) < count:
        pool.append(make())


def _brushes(count: int) -> list:
    return [pg.mkBrush(figures.deployment_colour(i)) for i in range(count)]


class BarPanel(QWidget):
    """A bar per deployment with value labels, and an optional horizontal target line."""

    def __init__(self, title: str, left: str, value_format: str, caption: str,
                 chooser: QComboBox | None = None) -> None:
        super().__init__()
        self.plot = styled_plot(title, "", left)
        self.bars = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH, pen=pg.mkPen("k", width=0.5))
        self.target = pg.InfiniteLine(angle=0, pen=SLO_PEN)
        self.labels: list[pg.TextItem] = []
        self._value_format = value_format
        self._values = np.zeros(0)  # the bars shown, and their target line: labels are placed again on a resize
        self._target: float | None = None
        self.plot.addItem(self.bars)
        self.plot.addItem(self.target)
        self.target.setVisible(False)
        self.plot.getPlotItem().setMouseEnabled(x=False, y=False)
        self.plot.getPlotItem().getViewBox().sigResized.connect(self._place_labels)
        self.caption = panel_layout(self, caption, self.plot, chooser)

    def show_bars(self, names: list[str], values: np.ndarray, target: float | None,
                  missing: list[str] | None = None) -> None:
        """Draw ``values`` (NaN: no bar, labelled by ``missing`` or "n/a") over ``names``; a dashed line at
        ``target`` when given."""
        heights = np.nan_to_num(values, nan=0.0)
        self.bars.setOpts(x=np.arange(len(names)), height=heights, width=BAR_WIDTH, brushes=_brushes(len(names)))
        _name_ticks(self.plot, names)
        self._show_labels(values, missing or ["n/a"] * len(values))
        self.target.setVisible(target is not None)
        if target is not None:
            self.target.setPos(target)
        self._values, self._target = values, target
        self.plot.setXRange(-0.6, len(names) - 0.4, padding=0)
        self._place_labels()

    def _show_labels(self, values: np.ndarray, missing: list[str]) -> None:
        grow_pool(self.labels, len(values), self._new_label)
        for i, label in enumerate(self.labels):
            visible = i < len(values)
            label.setVisible(visible)
            if visible:
                value = values[i]
                label.setText(missing[i] if np.isnan(value) else self._value_format.format(value))

    def _place_labels(self) -> None:
        """Each value label on its bar, inside its top or on the target line, whichever is clear of the line, and
        the y axis tall enough for them all (again on a resize: a label's height in data units is the plot's)."""
        if not self._values.size:
            return
        shown = self.labels[:self._values.size]
        label_px = max(label.textItem.boundingRect().height() for label in shown)
        margin_px = shown[0].textItem.document().documentMargin()  # blank around the text, inside its rectangle
        plot_px = self.plot.getPlotItem().getViewBox().height()
        places, top = figures.bar_labels(self._values.tolist(), self._target, label_px, margin_px, plot_px)
        for i, (label, place) in enumerate(zip(shown, places, strict=True)):
            inside = place.place == figures.INSIDE
            label.setPos(i, place.y)
            label.setAnchor((0.5, 0.0 if inside else 1.0))  # hanging below its point, or sitting on it
            label.setColor(figures.text_colour_on(figures.deployment_colour(i)) if inside else "k")
        self.plot.setYRange(0, top, padding=0)

    def _new_label(self) -> pg.TextItem:
        label = pg.TextItem(color="k", anchor=(0.5, 1.0))
        self.plot.addItem(label)
        return label


class CostPanel(BarPanel):
    """Cost per day of each deployment (USD/day)."""

    def __init__(self) -> None:
        super().__init__("Cost per day", "cost (USD/day)", "${:,.0f}",
                         "GPU rent x 24 h + API spend scaled to a day")

    def show_outcome(self, outcome: RunOutcome) -> None:
        """Refresh from a finished run."""
        frame = outcome.comparison.frame
        missing = ["infeasible" if verdict == VERDICT_INFEASIBLE else "n/a" for verdict in frame["verdict"]]
        self.show_bars(figures.deployment_names(frame), figures.metric_values(frame, "$/day"), None, missing)


class LatencyPanel(BarPanel):
    """TTFT or e2e p99 of each deployment against the scenario's default target (chosen in a combo box)."""

    def __init__(self) -> None:
        self.choice = QComboBox()
        for key, (label, _) in figures.LATENCY_CHOICES.items():
            self.choice.addItem(label, key)
        super().__init__("p99 latency vs SLO", "p99 latency (s)", "{:.2f} s",
                         "each deployment's p99 over all requests", self.choice)
        self._outcome: RunOutcome | None = None
        self.choice.currentIndexChanged.connect(self._redraw)

    def show_outcome(self, outcome: RunOutcome) -> None:
        """Refresh from a finished run, showing the metric its SLO names (the chooser can change it)."""
        self._outcome = outcome
        named = figures.slo_latency_choice(outcome.scenario.slo, outcome.scenario.class_names)
        if self.choice.currentData() == named:
            self._redraw()
        else:
            self.choice.setCurrentIndex(self.choice.findData(named))  # redraws

    def _redraw(self) -> None:
        if self._outcome is None:
            return
        key = self.choice.currentData()
        label = figures.LATENCY_CHOICES[key][0]
        target = figures.slo_target_s(self._outcome.scenario.slo, key)
        frame = self._outcome.comparison.frame
        title = (f"{label} vs SLO {target:g} s (red dashed)" if target is not None
                 else f"{label} (its SLO targets are per class: see the table)")
        self.plot.getPlotItem().setTitle(title, color="k", size="11pt")
        self.plot.getPlotItem().getAxis("left").setLabel(f"{label} (s)", color="k")
        self.show_bars(figures.deployment_names(frame), figures.metric_values(frame, key), target)


# Point symbols by verdict: meets the SLO, misses it as written, no size meets it (drawn at the closest try).
VERDICT_SYMBOLS = {VERDICT_MET: "o", VERDICT_MISSED: "t", VERDICT_OVERLOADED: "x", VERDICT_INFEASIBLE: "x"}
INFEASIBLE_COLOUR = "#9a9a9a"
LABEL_FILL = pg.mkBrush(255, 255, 255, 210)  # behind a point's label: the grid shows faintly through


class ParetoPanel(QWidget):
    """Cost per day against e2e p99, one labelled point per deployment, the plan's Pareto front dashed.

    Points and front come from the comparison frame: the front is its
    ``pareto`` column (only deployments that meet the SLO), joined cheapest
    first. An INFEASIBLE plan has no cost: it is drawn grey at its closest
    try's cost, never joined; hovering any point shows its verdict and why.
    Cost is on a log scale (a hosted API can cost 30x a compact model) unless
    some deployment costs nothing (on-device only).
    """

    clicked = Signal(int)  # a point was clicked: its deployment's row in the frame

    def __init__(self) -> None:
        super().__init__()
        self.plot = styled_plot("Cost vs e2e p99", "cost (USD/day)", "e2e p99 (s)")
        self.plot.getPlotItem().showGrid(x=True, y=True, alpha=0.25)
        for name in ("bottom", "left"):  # the grid (drawn by the axes) under the points and labels, not over them
            self.plot.getPlotItem().getAxis(name).setZValue(-1)
        self.front = pg.PlotDataItem(pen=FRONT_PEN)
        self.points = pg.ScatterPlotItem(size=12, pen=pg.mkPen("k", width=0.5), hoverable=True, tip=_point_tip)
        self.labels: list[pg.TextItem] = []
        for item in (self.front, self.points):
            self.plot.addItem(item)
        self.points.setZValue(1)  # over the labels' white boxes: a label crowded onto a point never hides it
        self.points.sigClicked.connect(self._on_points_clicked)
        self._rows: list[int] = []  # the frame row of each drawn point
        self.plot.getPlotItem().getViewBox().sigResized.connect(self._place_labels)
        caption = panel_layout(self, "dashed: Pareto front (meets the SLO) · △ SLO missed · × overloaded\n"
                                     "grey ×: INFEASIBLE (at its closest try) · hover or click a point: why", self.plot)
        # the marker key matters more than one line: two lines (broken by hand: a word-wrapped label would make
        # the plot grid ask for its height by width, and scroll) in a smaller type, as tall as a chooser row
        font = caption.font()
        font.setPointSizeF(font.pointSizeF() * 0.85)
        caption.setFont(font)

    def show_outcome(self, outcome: RunOutcome) -> None:
        """Refresh from a finished run (overloaded deployments' p99 counts finished requests only)."""
        frame = outcome.comparison.frame
        infeasible = np.array([verdict == VERDICT_INFEASIBLE for verdict in frame["verdict"]], dtype=bool)
        cost = np.where(infeasible, figures.metric_values(frame, "closest tried $/day"),
                        figures.metric_values(frame, "$/day"))
        latency = figures.metric_values(frame, "e2e p99 s")
        shown = np.flatnonzero(np.isfinite(cost) & np.isfinite(latency))
        # a plan ruled out without a simulation (a zero-load bound) has no p99 to draw: say how many
        hidden = len(frame) - shown.size
        self.plot.getPlotItem().setTitle("Cost vs e2e p99" + (f" ({hidden} not drawn: no p99)" if hidden else ""),
                                         color="k", size="11pt")
        log_x = bool(shown.size) and bool((cost[shown] > 0).all())
        self.plot.getPlotItem().setLogMode(x=log_x, y=False)
        self.plot.getPlotItem().getAxis("bottom").setLabel(
            "cost (USD/day, log scale)" if log_x else "cost (USD/day)", color="k")
        x_view = np.log10(np.where(cost > 0, cost, np.nan)) if log_x else cost  # items sit in view coordinates
        verdicts, reasons = list(frame["verdict"]), list(frame["reason"])
        self.points.setData(
            x=x_view[shown], y=latency[shown],
            brush=[pg.mkBrush(INFEASIBLE_COLOUR if infeasible[i] else figures.deployment_colour(int(i)))
                   for i in shown],
            symbol=[VERDICT_SYMBOLS.get(verdicts[i], "o") for i in shown],
            data=[f"{frame.index[i]}: {verdicts[i]}" + (f" ({reasons[i]})" if reasons[i] else "") for i in shown])
        self._rows = [int(i) for i in shown]
        front = figures.front_order(frame)
        self.front.setData(x=x_view[front], y=latency[front])
        self._show_labels(figures.deployment_names(frame), x_view, latency, verdicts, shown)
        self._fit_range(x_view[shown], latency[shown], log_x)
        self._cost_ticks(cost[shown], log_x)
        self._place_labels()

    def _on_points_clicked(self, _item: pg.ScatterPlotItem, points: list, _event: object) -> None:
        if len(points):
            self.clicked.emit(self._rows[points[0].index()])

    def _cost_ticks(self, cost: np.ndarray, log_x: bool) -> None:
        """Readable dollar ticks (1-2-5 steps) on a log axis; pyqtgraph's own crowd at this width."""
        axis = self.plot.getPlotItem().getAxis("bottom")
        if not log_x or cost.size == 0:
            axis.setTicks(None)
            return
        axis.setTicks([figures.log_ticks(cost.min() / 1.4, cost.max() * 1.4, figures.dollars_text), []])

    def _fit_range(self, x_view: np.ndarray, latency: np.ndarray, log_x: bool) -> None:
        """Latency from 0; cost with a margin (from 0 when linear) so labels beside the points fit."""
        if x_view.size == 0:
            return
        low, high = x_view.min(), x_view.max()
        margin = max(high - low, 0.5 if log_x else 1.0) * 0.12
        self.plot.setXRange(low - margin if log_x else 0.0, high + margin, padding=0)
        self.plot.setYRange(0, max(latency.max(), 1e-3) * 1.12, padding=0)

    def _show_labels(self, names: list[str], x_view: np.ndarray, latency: np.ndarray,
                     verdicts: list[str], shown: np.ndarray) -> None:
        grow_pool(self.labels, len(names), self._new_label)
        for i, label in enumerate(self.labels):
            visible = i in shown
            label.setVisible(visible)
            if visible:
                infeasible = verdicts[i] == VERDICT_INFEASIBLE
                label.setText(names[i] + ("" if verdicts[i] == VERDICT_MET else f" ({verdicts[i]})"))
                label.setColor(INFEASIBLE_COLOUR if infeasible else figures.deployment_colour(i))
                label.setPos(x_view[i], latency[i])

    def _place_labels(self) -> None:
        """Put each visible label on a side of its point where it overlaps no point, label or edge."""
        box = self.plot.getPlotItem().getViewBox()
        labels = [label for label in self.labels if label.isVisible()]
        points = [box.mapViewToScene(label.pos()) for label in labels]
        sizes = [(label.textItem.boundingRect().width(), label.textItem.boundingRect().height()) for label in labels]
        bounds = box.sceneBoundingRect()
        anchors = figures.place_labels([(p.x(), p.y()) for p in points], sizes,
                                       (bounds.left(), bounds.top(), bounds.width(), bounds.height()))
        for label, anchor in zip(labels, anchors, strict=True):
            label.setAnchor(anchor)

    def _new_label(self) -> pg.TextItem:
        label = pg.TextItem(fill=LABEL_FILL)  # a grid line through a label read as a struck-out name
        self.plot.addItem(label)
        return label


def _point_tip(x: float, y: float, data: object) -> str:
    """A point's hover text: the deployment, its verdict and why it misses."""
    return str(data)
