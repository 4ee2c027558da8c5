"""Curves per deployment: latency CDFs and load over the simulated time.

Curve items are pooled: built once, refreshed with ``setData``, hidden when
a later run has fewer deployments. Colours follow
``gui.figures.deployment_colour``. Axis titles carry units (seconds,
requests/s, minutes or hours of simulated time).
"""

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QWidget

from gui import figures
from gui.plots import SLO_PEN, grow_pool, panel_layout, styled_plot
from gui.worker import RunOutcome


class CurvesPanel(QWidget):
    """A curve per deployment (pooled ``PlotDataItem``s) with a legend and a series chooser."""

    def __init__(self, title: str, bottom: str, left: str, choices: dict[str, str], legend: bool) -> None:
        super().__init__()
        self.plot = styled_plot(title, bottom, left)
        self.legend = (self.plot.getPlotItem().addLegend(offset=(10, 28), labelTextColor="k",
                                                         brush=pg.mkBrush(255, 255, 255, 220))
                       if legend else None)
        self.curves: list[pg.PlotDataItem] = []
        self.choice = QComboBox()
        for key, label in choices.items():
            self.choice.addItem(label, key)
        self.caption = panel_layout(self, "", self.plot, self.choice)
        self._outcome: RunOutcome | None = None
        self._legend_names: list[str] = []
        self.choice.currentIndexChanged.connect(self._redraw)

    def show_outcome(self, outcome: RunOutcome) -> None:
        """Refresh from a finished run."""
        self._outcome = outcome
        self._redraw()

    def _redraw(self) -> None:
        if self._outcome is not None:
            self.draw(self._outcome, self.choice.currentData())

    def draw(self, outcome: RunOutcome, key: str) -> None:
        """Set the curves for series ``key`` (overridden per panel)."""
        raise NotImplementedError

    def set_curves(self, names: list[str], curves: list[figures.Curve]) -> None:
        """Show one curve per deployment, hide the rest of the pool, keep the legend in step."""
        grow_pool(self.curves, len(curves), self._new_curve)
        for i, item in enumerate(self.curves):
            if i < len(curves):
                item.setData(x=curves[i].x, y=curves[i].y, connect="finite")
                item.setPen(pg.mkPen(figures.deployment_colour(i), width=2))
            item.setVisible(i < len(curves))
        drawn = [name for name, curve in zip(names, curves, strict=True) if curve.x.size]  # none: never simulated
        if self.legend is not None and drawn != self._legend_names:
            self.legend.clear()
            for name, item, curve in zip(names, self.curves, curves, strict=False):
                if curve.x.size:
                    self.legend.addItem(item, name)
            self._legend_names = drawn

    def _new_curve(self) -> pg.PlotDataItem:
        curve = pg.PlotDataItem(antialias=True)
        self.plot.addItem(curve)
        return curve


class CdfPanel(CurvesPanel):
    """Latency CDF of each deployment, log-scaled seconds, with the attainment target as a line."""

    def __init__(self) -> None:
        super().__init__("Latency CDF", "latency (s, log scale)", "fraction of completed requests",
                         {"e2e_s": "end-to-end latency", "ttft_s": "time to first token"}, legend=True)
        self.plot.getPlotItem().setLogMode(x=True, y=False)
        self.plot.getPlotItem().showGrid(x=True, y=True, alpha=0.25)
        self.target = pg.InfiniteLine(angle=0, pen=SLO_PEN, label="",
                                      labelOpts={"position": 0.02, "color": "#c00000", "anchors": [(0, 0), (0, 0)]})
        self.plot.addItem(self.target)
        self.plot.setYRange(0, 1.02, padding=0)

    def draw(self, outcome: RunOutcome, key: str) -> None:
        """Curves of the chosen latency; the horizontal line is the scenario's SLO attainment."""
        names = figures.deployment_names(outcome.comparison.frame)
        curves = [figures.latency_cdf(result, key) for result in outcome.report.results]
        self.set_curves(names, curves)
        latencies = np.concatenate([curve.x for curve in curves]) if curves else np.zeros(0)
        # round seconds written out (0.1, 0.2, 0.5, 1, 2 ...) instead of pyqtgraph's mix of 1 and 10^1
        ticks = figures.log_ticks(latencies.min(), latencies.max(), figures.seconds_text) if latencies.size else []
        self.plot.getPlotItem().getAxis("bottom").setTicks([ticks, []] if ticks else None)
        attainment = outcome.report.slo_attainment_target
        self.target.setPos(attainment)
        self.target.label.setFormat(f"attainment target {attainment:.0%}")
        label = self.choice.currentText()
        self.plot.getPlotItem().getAxis("bottom").setLabel(f"{label} (s, log scale)", color="k")
        self.plot.getPlotItem().setTitle(f"CDF of {label}", color="k", size="11pt")


class LoadPanel(CurvesPanel):
    """Load over the simulated time per deployment; offered load as a black dashed line."""

    def __init__(self) -> None:
        super().__init__("Load over simulated time", "simulated time", "requests/s",
                         {key: label for key, (label, _) in figures.LOAD_CHOICES.items()}, legend=False)
        self.offered = pg.PlotDataItem(pen=pg.mkPen("k", width=2, style=Qt.PenStyle.DashLine), antialias=True)
        self.plot.addItem(self.offered)
        self.plot.getPlotItem().showGrid(x=True, y=True, alpha=0.25)

    def draw(self, outcome: RunOutcome, key: str) -> None:
        """Curves of timeseries ``key`` against time in s, min or h (by horizon)."""
        report = outcome.report
        scale_s, unit = figures.time_unit(report.horizon_s)
        curves = [figures.load_curve(result, key, scale_s) for result in report.results]
        self.set_curves(figures.deployment_names(outcome.comparison.frame), curves)
        offered = [figures.load_curve(result, "offered_rps", scale_s) for result in report.results]
        # one offered line only when every deployment saw the same arrivals (open loop)
        show_offered = key == "completed_rps" and bool(offered) and all(
            np.array_equal(curve.y, offered[0].y) for curve in offered)
        self.offered.setVisible(show_offered)
        if show_offered:
            self.offered.setData(x=offered[0].x, y=offered[0].y)
        label, axis_title = figures.LOAD_CHOICES[key]
        self.plot.getPlotItem().setTitle(label, color="k", size="11pt")
        self.caption.setText("black dashed: offered load" if show_offered else "")
        self.plot.getPlotItem().getAxis("left").setLabel(axis_title, color="k")
        self.plot.getPlotItem().getAxis("bottom").setLabel(f"simulated time ({unit})", color="k")
        self.plot.getPlotItem().enableAutoRange(axis="x")
        shown = [c.y for c in curves] + ([offered[0].y] if show_offered else [])
        top = max((np.nanmax(y) for y in shown if y.size and np.isfinite(y).any()), default=1.0)
        self.plot.setYRange(0, max(top, 1e-9) * 1.08, padding=0)  # from zero: swings are not exaggerated
