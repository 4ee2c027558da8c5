"""Fitting each component's coefficients to its measurements, and scoring the fit on held-out shapes.

Form (profiles.calibration.ComponentFit): non-negative linear terms (fixed
cost, attention FLOPs, KV reads, per-image and per-megapixel preprocessing)
plus a roofline term blending weight-streaming and GEMM time with a soft
maximum. The fit minimises relative error (every shape counts the same,
whatever its duration): first non-negative least squares with the two
roofline sides added (knee exponent 1), then bounded nonlinear least squares
from that start for the coefficients and the knee exponent. Errors are mean
absolute percentage errors (MAPE), on the training shapes and on held-out ones.
"""

from typing import NamedTuple

import numpy as np
from scipy.optimize import least_squares, nnls

from profiles.calibration import ComponentFit, Measurement
from profiles.models import ResolvedModel
from profiles.perf.calibrated_features import component_features

ROOFLINE = ("weight_elems", "gemm_flops")
NOT_LINEAR = (*ROOFLINE, "rows")
MAX_KNEE_EXPONENT = 16.0
KNEE_STARTS = (1.0, 2.0, 4.0, 8.0)
# Candidate row counts below which BLAS runs matrix-vector products (1: never).
GEMV_THRESHOLDS = (1, 2, 3, 4, 8, 16)


class Solution(NamedTuple):
    """Coefficients of one candidate form and its training cost (sum of squared relative residuals)."""

    linear: dict[str, float]
    gemv_s_per_elem: float
    gemv_below_rows: int
    weight_s_per_elem: float
    s_per_gemm_flop: float
    knee_exponent: float
    cost: float


def fit_component(model: ResolvedModel, component: str, measurements: list[Measurement]) -> ComponentFit:
    """Fit ``component`` on its training measurements and score it on the held-out ones.

    The matrix-vector row threshold is chosen among ``GEMV_THRESHOLDS`` by
    training cost (the smallest on a tie).
    """
    train = [m for m in measurements if not m.holdout]
    held = [m for m in measurements if m.holdout]
    if not train:
        raise ValueError(f"no training measurements for {component}")
    features = [component_features(model, component, m.shape) for m in train]
    seconds = np.array([m.seconds for m in train])
    names = [n for n in sorted({k for f in features for k in f} - set(NOT_LINEAR))
             if any(f.get(n, 0.0) > 0 for f in features)]
    row_counts = {f.get("rows", np.inf) for f in features}
    thresholds = [t for t in GEMV_THRESHOLDS if t == 1 or any(r < t for r in row_counts)]
    solutions = [_solve(features, seconds, names, threshold) for threshold in thresholds]
    best = min(solutions, key=lambda s: s.cost - 1e-9 * s.gemv_below_rows)
    fit = ComponentFit(component=component, linear=best.linear, weight_s_per_elem=best.weight_s_per_elem,
                       s_per_gemm_flop=best.s_per_gemm_flop, knee_exponent=best.knee_exponent,
                       gemv_s_per_elem=best.gemv_s_per_elem, gemv_below_rows=max(1, best.gemv_below_rows),
                       train_points=len(train), holdout_points=len(held), train_mape_pct=0.0,
                       holdout_mape_pct=None)
    return fit.model_copy(update={"train_mape_pct": mape_pct(model, fit, train),
                                  "holdout_mape_pct": mape_pct(model, fit, held) if held else None})


def fit_all(model: ResolvedModel, measurements: list[Measurement]) -> tuple[tuple[ComponentFit, ...], float | None]:
    """A fit per measured component, and the MAPE over every held-out shape of every component."""
    components = dict.fromkeys(m.component for m in measurements)
    fits = tuple(fit_component(model, c, [m for m in measurements if m.component == c]) for c in components)
    by_component = {fit.component: fit for fit in fits}
    errors = [abs(percent_error(model, by_component[m.component], m)) for m in measurements if m.holdout]
    return fits, (float(np.mean(errors)) if errors else None)


def mape_pct(model: ResolvedModel, fit: ComponentFit, measurements: list[Measurement]) -> float:
    """Mean absolute percentage error of ``fit`` on ``measurements``."""
    errors = [abs(percent_error(model, fit, m)) for m in measurements]
    return float(np.mean(errors))


def percent_error(model: ResolvedModel, fit: ComponentFit, measurement: Measurement) -> float:
    """100 * (predicted - measured) / measured for one measurement."""
    predicted = fit.predict_s(component_features(model, fit.component, measurement.shape))
    return 100.0 * (predicted - measurement.seconds) / measurement.seconds


def _solve(features: list[dict[str, float]], seconds: np.ndarray, names: list[str],
           gemv_below_rows: int) -> Solution:
    """Best coefficients with rows below ``gemv_below_rows`` run as matrix-vector products."""
    gemv = np.array([f.get("rows", np.inf) < gemv_below_rows for f in features])
    weights = np.array([f.get("weight_elems", 0.0) for f in features])
    columns = [[f.get(n, 0.0) for n in names] for f in features]
    raw = np.array(columns, dtype=float).reshape(len(features), len(names))
    raw = np.column_stack([raw, np.where(gemv, weights * np.array([f.get("rows", 0.0) for f in features]), 0.0)])
    roofline = any(f.get("gemm_flops", 0.0) > 0 for f, g in zip(features, gemv, strict=True) if not g)
    if roofline:
        flops = np.array([f.get("gemm_flops", 0.0) for f in features])
        raw = np.column_stack([raw, np.where(gemv, 0.0, weights), np.where(gemv, 0.0, flops)])
    relative = raw / seconds[:, None]  # each row divided by its time: fit relative error
    scale = np.where(relative.max(axis=0) > 0, relative.max(axis=0), 1.0)
    scaled = relative / scale
    start, _ = nnls(scaled, np.ones(len(seconds)))
    knee, params = 1.0, start
    if roofline:
        result = min((_refine(scaled, start, k) for k in KNEE_STARTS), key=lambda r: r.cost)
        params, knee = result.x[:-1], float(result.x[-1])
    # A feature no training shape has (the matrix-vector column when no shape has so few rows) leaves its
    # coefficient undetermined: the solver may drift it anywhere. It is 0, the value it contributes.
    coefficients = np.where(relative.max(axis=0) > 0, params / scale, 0.0)
    predicted = scaled @ params if not roofline else _predict_scaled(scaled, params, knee)
    count = len(names)
    return Solution(linear={n: float(c) for n, c in zip(names, coefficients[:count], strict=True)},
                    gemv_s_per_elem=float(coefficients[count]), gemv_below_rows=gemv_below_rows,
                    weight_s_per_elem=float(coefficients[count + 1]) if roofline else 0.0,
                    s_per_gemm_flop=float(coefficients[count + 2]) if roofline else 0.0,
                    knee_exponent=knee, cost=float(np.sum((predicted - 1.0) ** 2)))


def _predict_scaled(scaled: np.ndarray, params: np.ndarray, exponent: float) -> np.ndarray:
    """Predicted time / measured time per row: linear columns plus the soft-max of the last two."""
    linear_count = scaled.shape[1] - 2
    memory = scaled[:, linear_count] * params[linear_count]
    compute = scaled[:, linear_count + 1] * params[linear_count + 1]
    top = np.maximum(np.maximum(memory, compute), 1e-300)
    blended = top * ((memory / top) ** exponent + (compute / top) ** exponent) ** (1.0 / exponent)
    return scaled[:, :linear_count] @ params[:linear_count] + blended


def _refine(scaled: np.ndarray, start: np.ndarray, knee: float):  # noqa: ANN202 - scipy OptimizeResult
    """Bounded least squares of relative residuals over the scaled coefficients and the knee exponent."""
    lower = np.zeros(len(start) + 1)
    lower[-1] = 1.0
    upper = np.full(len(start) + 1, np.inf)
    upper[-1] = MAX_KNEE_EXPONENT
    initial = np.append(np.maximum(start, 1e-9), knee)
    return least_squares(lambda p: _predict_scaled(scaled, p[:-1], p[-1]) - 1.0, initial,
                         bounds=(lower, upper), method="trf")
