"""What the result plots show, read from the comparison frame (``planner.compare``) without Qt.

Plain numpy arrays, one entry per deployment in the scenario's order, so the
Qt plot widgets only draw and these functions are unit-tested on their own.
Nothing here recomputes a verdict or a front: the frame's columns are drawn.
A value the frame leaves empty (a latency no request defines, the cost of an
INFEASIBLE plan) is NaN here.
Units: seconds, USD per day, requests per second, fractions 0..1.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.compare import METRIC_COLUMNS
from sim.metrics import SimulationResult
from sim.slo import P99_KEYS, TARGET_METRICS, SloSpec

# Latency metrics the bar chart can show, one per SLO target field (``sim.slo.TARGET_METRICS``):
# frame header -> (label, SloSpec target field).
LATENCY_CHOICES = {METRIC_COLUMNS[P99_KEYS[target]]: (f"{metric} p99", target)
                   for target, metric in TARGET_METRICS.items()}

# Series of ``SimulationResult.timeseries`` the load plot can show: key -> (label, axis title).
LOAD_CHOICES = {
    "completed_rps": ("Completed vs offered load", "requests/s"),
    "in_system": ("Requests in the system", "requests"),
    "gpu_utilization": ("GPU utilisation", "utilisation (fraction)"),
    "e2e_p99_s": ("e2e p99 per time bin", "e2e p99 (s)"),
}

# Tab10: distinguishable colours, one per deployment, the same in every plot and the table.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def deployment_colour(index: int) -> str:
    """The colour of the ``index``-th deployment (hex RGB)."""
    return PALETTE[index % len(PALETTE)]


def metric_values(frame: pd.DataFrame, header: str) -> np.ndarray:
    """Column ``header`` of the comparison frame as floats (NaN where missing: an INFEASIBLE plan's cost)."""
    return np.array([np.nan if value is None else float(value) for value in frame[header]])


def deployment_names(frame: pd.DataFrame) -> list[str]:
    """Deployment names in the frame's (the scenario's) order."""
    return [str(name) for name in frame.index]


def slo_target_s(slo: SloSpec, latency_key: str) -> float | None:
    """The target the scenario writes for every class on a latency metric (None: only per-class targets)."""
    return getattr(slo, LATENCY_CHOICES[latency_key][1])


def slo_latency_choice(slo: SloSpec, class_names: Sequence[str]) -> str:
    """The ``LATENCY_CHOICES`` key of the metric the SLO names: its first every-class target, else the
    metric most classes have a target on (ties: ``TARGET_METRICS`` order)."""
    by_target = {target: key for key, (_, target) in LATENCY_CHOICES.items()}
    written = [target for target in TARGET_METRICS if getattr(slo, target) is not None]
    if written:
        return by_target[written[0]]
    in_force = slo.targets_in_force(class_names).values()
    counts = {target: sum(target in targets.written() for targets in in_force) for target in TARGET_METRICS}
    return by_target[max(TARGET_METRICS, key=lambda target: counts[target])]


def front_order(frame: pd.DataFrame) -> list[int]:
    """Row numbers of the frame's Pareto front (its ``pareto`` column, computed once by ``planner.compare``),
    cheapest first: the order the front's line joins them."""
    cost = metric_values(frame, "$/day")
    on_front = [i for i, flag in enumerate(frame["pareto"]) if flag]
    return sorted(on_front, key=lambda i: cost[i])


@dataclass(frozen=True)
class Curve:
    """One line of a plot: x and y arrays of equal length (possibly empty)."""

    x: np.ndarray
    y: np.ndarray


def latency_cdf(result: SimulationResult, key: str = "e2e_s") -> Curve:
    """The empirical CDF of a latency (x: seconds, y: fraction of completed requests)."""
    quantiles = result.cdf.get("quantiles", [])
    values = result.cdf.get(key, [])
    points = [(v, q / 100.0) for v, q in zip(values, quantiles, strict=False) if v is not None and v > 0]
    if not points:
        return Curve(np.zeros(0), np.zeros(0))
    x, y = zip(*points, strict=True)
    return Curve(np.array(x), np.array(y))


def load_curve(result: SimulationResult, key: str, time_scale_s: float) -> Curve:
    """A timeseries of the result against simulated time in units of ``time_scale_s`` (bin centres)."""
    series = result.timeseries
    starts = np.asarray(series.get("t_s", []), dtype=float)
    values = np.array([np.nan if v is None else float(v) for v in series.get(key, [])])
    if starts.size == 0 or values.size != starts.size:
        return Curve(np.zeros(0), np.zeros(0))
    width_s = starts[1] - starts[0] if starts.size > 1 else float(result.metrics.get("horizon_s", 0.0))
    return Curve((starts + width_s / 2) / time_scale_s, values)


def time_unit(horizon_s: float) -> tuple[float, str]:
    """(seconds per unit, unit name) for a time axis over ``horizon_s``: s, min or h."""
    if horizon_s <= 600:
        return 1.0, "s"
    if horizon_s <= 6 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


# Tick steps within a decade for a log axis, densest first: the first that fits MAX_LOG_TICKS is used.
LOG_TICK_STEPS = ((1, 2, 5), (1, 3), (1,))
MAX_LOG_TICKS = 8


def log_ticks(low: float, high: float, text: Callable[[float], str]) -> list[tuple[float, str]]:
    """Major ticks of a log axis over [``low``, ``high``] (positive): (log10 of the value, its label ``text``).

    Round values (1-2-5 steps, or fewer when they would crowd) written out in
    full, so the axis never mixes "1" with "10^1" as pyqtgraph's own log ticks do.
    """
    if not (0 < low <= high and math.isfinite(high)):
        return []
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    values: list[float] = []
    for steps in LOG_TICK_STEPS:
        values = [float(f"{m * 10.0 ** e:.3g}") for e in decades for m in steps if low <= m * 10.0 ** e <= high]
        if len(values) <= MAX_LOG_TICKS:
            break
    return [(math.log10(v), text(v)) for v in values]


def seconds_text(value: float) -> str:
    """0.05, 0.2, 1, 20, 1000: a latency tick in seconds, no exponent."""
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def dollars_text(value: float) -> str:
    """$500, $2k, $1.5M: short labels for a cost axis."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"${value / scale:g}{suffix}"
    return f"${value:g}"


# Where a point's label may go, tried in this order.
LABEL_SIDES = ("right", "left", "above", "below")
LABEL_GAP_PX = 8.0
POINT_RADIUS_PX = 7.0
EDGE_MARGIN_PX = 6.0  # a label kept this far inside the plot: at 0 it touched the edge

Rect = tuple[float, float, float, float]  # left, top, width, height in pixels (y grows downwards)


def _label_rect(side: str, x: float, y: float, size: tuple[float, float], bounds: Rect) -> Rect:
    """The label's rectangle on ``side`` of point (x, y); above/below slide sideways to stay in ``bounds``."""
    width, height = size
    gap = LABEL_GAP_PX
    if side in ("right", "left"):
        left = x + gap if side == "right" else x - gap - width
        return (left, y - height / 2, width, height)
    left = min(max(x - width / 2, bounds[0]), bounds[0] + bounds[2] - width)
    top = y - gap - height if side == "above" else y + gap
    return (left, top, width, height)


def _overlap_px2(a: Rect, b: Rect) -> float:
    """Area shared by two rectangles."""
    dx = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(dx, 0.0) * max(dy, 0.0)


def _outside_px2(rect: Rect, bounds: Rect) -> float:
    """Area of ``rect`` outside ``bounds``."""
    return rect[2] * rect[3] - _overlap_px2(rect, bounds)


def place_labels(points_px: list[tuple[float, float]], sizes_px: list[tuple[float, float]],
                 bounds_px: Rect) -> list[tuple[float, float]]:
    """Text anchors (fractions of each label's size) that keep the labels clear of points, each other and the edge.

    Greedy in the order given: each label takes the first side of ``LABEL_SIDES``
    with no clash, else the side where it clashes least. A label clear of the
    edge stays ``EDGE_MARGIN_PX`` inside it.
    """
    r, m = POINT_RADIUS_PX, EDGE_MARGIN_PX
    bounds_px = (bounds_px[0] + m, bounds_px[1] + m, max(bounds_px[2] - 2 * m, 0.0), max(bounds_px[3] - 2 * m, 0.0))
    taken = [(x - r, y - r, 2 * r, 2 * r) for x, y in points_px]
    anchors = []
    for (x, y), size in zip(points_px, sizes_px, strict=True):
        def clash(rect: Rect) -> float:
            return _outside_px2(rect, bounds_px) + sum(_overlap_px2(rect, other) for other in taken)

        rects = [_label_rect(side, x, y, size, bounds_px) for side in LABEL_SIDES]
        best = next((rect for rect in rects if clash(rect) == 0), None) or min(rects, key=clash)
        taken.append(best)
        anchors.append(((x - best[0]) / max(size[0], 1.0), (y - best[1]) / max(size[1], 1.0)))
    return anchors


# Bar value labels (``gui.plots.BarPanel``): the y axis goes this far above the tallest bar or target; a label's
# text stays this many pixels from the target line's centre (the line is 2 px wide).
BAR_HEADROOM = 1.15
LINE_CLEARANCE_PX = 3.0
# Where a bar's value label goes, tried in this order: sitting on the bar (on the axis when there is no bar),
# hanging inside the bar's top, sitting on the target line.
ON_BAR, INSIDE, ON_LINE = "on bar", "inside", "on line"


@dataclass(frozen=True)
class BarLabel:
    """A bar's value label: its rectangle's bottom at ``y`` (data units), or its top when ``place`` is ``INSIDE``."""

    y: float
    place: str


def bar_labels(values: Sequence[float], target: float | None, label_px: float, margin_px: float,
               plot_px: float) -> tuple[list[BarLabel], float]:
    """Each bar's value label (NaN: no bar, a label on the axis) and the y axis's top, so that every label is
    inside the plot and its text clear of the ``target`` line.

    A label sits on its bar; where its text would cross the line, it hangs inside
    the bar's top if the bar is taller than it, else sits on the line. In pixels:
    ``label_px`` is a label's rectangle's height, ``margin_px`` the blank above
    and below its text, ``plot_px`` the plot's height. A label's height in data
    units depends on the axis's top: the top is raised until every label fits
    below it (a plot too small for any label keeps ``BAR_HEADROOM``)."""
    heights = [0.0 if math.isnan(value) else float(value) for value in values]
    top = max([*heights, target or 0.0, 1e-9]) * BAR_HEADROOM
    plot_px = max(plot_px, 1.0)
    fits = plot_px > 2 * (label_px + LINE_CLEARANCE_PX)
    labels: list[BarLabel] = []
    # As the top rises a label only moves on in the order of places: a few passes settle.
    for _ in range(2 * len(heights) + 2):
        per_px = top / plot_px
        labels = [_bar_label(height, not math.isnan(value), target, label_px * per_px, margin_px * per_px,
                             LINE_CLEARANCE_PX * per_px) for height, value in zip(heights, values, strict=True)]
        # A label's top is ``base`` plus ``px`` pixels: inside the plot when base + px * top / plot_px <= top.
        needed = 0.0
        for label in labels:
            base, px = label.y, label_px
            if label.place == INSIDE:
                px = 0.0
            elif label.place == ON_LINE and target is not None:
                base, px = target, LINE_CLEARANCE_PX - margin_px + label_px
            needed = max(needed, base / (1 - px / plot_px))
        if not fits or needed <= top * (1 + 1e-9):
            break
        top = needed
    return labels, top


def _bar_label(height: float, has_bar: bool, target: float | None, label: float, margin: float,
               clearance: float) -> BarLabel:
    """One value label, in data units: the first of ``ON_BAR``, ``INSIDE``, ``ON_LINE`` whose text (the label
    less its ``margin`` above and below) is ``clearance`` from the line."""
    def clear(bottom: float) -> bool:
        """Whether a label whose rectangle starts at ``bottom`` has its text clear of the line."""
        return target is None or bottom + label - margin <= target - clearance or bottom + margin >= target + clearance

    if clear(height):
        return BarLabel(height, ON_BAR)
    if has_bar and height - label + margin >= 0 and clear(height - label):
        return BarLabel(height, INSIDE)
    assert target is not None  # with no line, the bar's own place is clear
    return BarLabel(target + clearance - margin, ON_LINE)


def text_colour_on(fill: str) -> str:
    """Black or white, whichever reads better on ``fill`` (hex RGB): the higher WCAG contrast ratio."""
    channels = [int(fill[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#000000" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#ffffff"
