"""What the result plots show, computed from a ``ScenarioReport`` without Qt.

Plain numpy arrays, one entry per deployment in the scenario's order, so the
Qt plot widgets only draw and these functions are unit-tested on their own.
A latency that no request defines (``None`` in the metrics) is NaN here.
Units: seconds, USD per day, requests per second, fractions 0..1.
"""

from dataclasses import dataclass

import numpy as np

from planner.run import ScenarioReport
from sim.metrics import SimulationResult
from sim.slo import SloSpec

# Latency metrics the bar chart can show: metric key -> (label, SloSpec default-target field).
LATENCY_CHOICES = {
    "ttft_p99_s": ("TTFT p99", "ttft_s"),
    "e2e_p99_s": ("e2e p99", "e2e_s"),
}

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


def metric_values(report: ScenarioReport, key: str) -> np.ndarray:
    """``metrics[key]`` of every deployment as floats (NaN where missing or ``None``)."""
    values = [result.metrics.get(key) for result in report.results]
    return np.array([np.nan if value is None else float(value) for value in values])


def deployment_names(report: ScenarioReport) -> list[str]:
    """Deployment names in report order."""
    return [result.deployment for result in report.results]


def slo_target_s(slo: SloSpec, latency_key: str) -> float | None:
    """The scenario-wide default target for a latency metric (None: only per-class targets, or none)."""
    return getattr(slo, LATENCY_CHOICES[latency_key][1])


def pareto_front(cost_usd: np.ndarray, latency_s: np.ndarray) -> list[int]:
    """Indices of the points no other point beats on both cost and latency, cheapest first.

    Points with a NaN coordinate are never on the front.
    """
    valid = [i for i in range(len(cost_usd)) if np.isfinite(cost_usd[i]) and np.isfinite(latency_s[i])]
    front = []
    best_latency = np.inf
    for i in sorted(valid, key=lambda i: (cost_usd[i], latency_s[i])):
        if latency_s[i] < best_latency:
            front.append(i)
            best_latency = latency_s[i]
    return front


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
