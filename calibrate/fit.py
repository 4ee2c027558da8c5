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

import numpy as np
from scipy.optimize import least_squares, nnls

from profiles.calibration import ComponentFit, Measurement
from profiles.models import ResolvedModel
from profiles.perf.calibrated_features import component_features

ROOFLINE = ("weight_elems", "gemm_flops")
MAX_KNEE_EXPONENT = 16.0
KNEE_STARTS = (1.0, 2.0, 4.0, 8.0)


def fit_component(model: ResolvedModel, component: str, measurements: list[Measurement]) -> ComponentFit:
    """Fit ``component`` on its training measurements and score it on the held-out ones."""
    train = [m for m in measurements if not m.holdout]
    held = [m for m in measurements if m.holdout]
    if not train:
        raise ValueError(f"no training measurements for {component}")
    features = [component_features(model, component, m.shape) for m in train]
    seconds = np.array([m.seconds for m in train])
    names = [n for n in sorted({k for f in features for k in f} - set(ROOFLINE))
             if any(f.get(n, 0.0) > 0 for f in features)]
    roofline = any(f.get("gemm_flops", 0.0) > 0 for f in features)
    linear, weight_s, flop_s, knee = _solve(features, seconds, names, roofline)
    fit = ComponentFit(component=component, linear=dict(zip(names, linear, strict=True)),
                       weight_s_per_elem=weight_s, s_per_gemm_flop=flop_s, knee_exponent=knee,
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
           roofline: bool) -> tuple[list[float], float, float, float]:
    """(linear coefficients, s per weight element, s per GEMM FLOP, knee exponent)."""
    columns = names + (list(ROOFLINE) if roofline else [])
    raw = np.array([[f.get(c, 0.0) for c in columns] for f in features])
    relative = raw / seconds[:, None]  # each row divided by its time: fit relative error
    scale = np.where(relative.max(axis=0) > 0, relative.max(axis=0), 1.0)
    scaled = relative / scale
    start, _ = nnls(scaled, np.ones(len(seconds)))
    if not roofline:
        return [float(c) for c in start / scale], 0.0, 0.0, 1.0
    best = min((_refine(scaled, start, knee) for knee in KNEE_STARTS), key=lambda r: r.cost)
    coefficients = best.x[:-1] / scale
    linear_count = len(names)
    return ([float(c) for c in coefficients[:linear_count]], float(coefficients[linear_count]),
            float(coefficients[linear_count + 1]), float(best.x[-1]))


def _refine(scaled: np.ndarray, start: np.ndarray, knee: float):  # noqa: ANN202 - scipy OptimizeResult
    """Bounded least squares of relative residuals over the scaled coefficients and the knee exponent."""
    linear_count = scaled.shape[1] - 2

    def residuals(params: np.ndarray) -> np.ndarray:
        coefficients, exponent = params[:-1], params[-1]
        memory = scaled[:, linear_count] * coefficients[linear_count]
        compute = scaled[:, linear_count + 1] * coefficients[linear_count + 1]
        top = np.maximum(np.maximum(memory, compute), 1e-300)
        blended = top * ((memory / top) ** exponent + (compute / top) ** exponent) ** (1.0 / exponent)
        return scaled[:, :linear_count] @ coefficients[:linear_count] + blended - 1.0

    lower = np.zeros(len(start) + 1)
    lower[-1] = 1.0
    upper = np.full(len(start) + 1, np.inf)
    upper[-1] = MAX_KNEE_EXPONENT
    initial = np.append(np.maximum(start, 1e-9), knee)
    return least_squares(residuals, initial, bounds=(lower, upper), method="trf")
