"""Traffic with one input scaled: the offered load, or the length of the answers (for sensitivity runs).

``scaled_load`` multiplies what each arrival process offers (a rate, a number
of users or of requests, a trace's rate multiplier); ``scaled_output``
multiplies every class's output tokens, whatever distribution gives them.
Both return a new, validated ``TrafficSpec``.
"""

from pydantic import ValidationError

from profiles.base import validation_failure
from profiles.errors import ScenarioError
from sim.traffic.sizes import Empirical, Fixed, LogNormal, Normal, Size, Uniform
from sim.traffic.spec import TrafficSpec

# Arrival kind -> the fields that set how much load it offers (a None field is not the one given).
LOAD_FIELDS = {
    "poisson": ("rate_rps", "requests_per_day"),
    "diurnal": ("mean_rate_rps", "requests_per_day"),
    "closed_loop": ("users",),
    "offline": ("requests",),
    "trace": ("rate_multiplier",),
}
COUNT_FIELDS = {"users", "requests"}  # integers: rounded, at least 1


def scaled_load(traffic: TrafficSpec, factor: float) -> TrafficSpec:
    """``traffic`` offering ``factor`` times the load (same mix, same curve, same bursts)."""
    arrivals = traffic.arrivals
    update = {}
    for name in LOAD_FIELDS[arrivals.kind]:
        value = getattr(arrivals, name)
        if value is not None:
            update[name] = max(1, round(value * factor)) if name in COUNT_FIELDS else value * factor
    data = {**traffic.model_dump(), "arrivals": {**arrivals.model_dump(), **update}}
    return _validated(data, f"traffic.arrivals (load x{factor:g})")


def scaled_output(traffic: TrafficSpec, factor: float) -> TrafficSpec:
    """``traffic`` whose classes generate ``factor`` times the output tokens (a trace's records are kept)."""
    classes = [c.model_dump() | {"output_tokens": _scaled_size(c.output_tokens, factor)} for c in traffic.classes]
    return _validated({**traffic.model_dump(), "classes": classes}, f"traffic.classes (output tokens x{factor:g})")


def _validated(data: dict, where: str) -> TrafficSpec:
    """``data`` as a ``TrafficSpec``; a scaled value beyond a limit (e.g. the largest rate) is a ScenarioError."""
    try:
        return TrafficSpec.model_validate(data)
    except ValidationError as error:
        raise validation_failure(error, where, ScenarioError) from None


def _scaled_size(size: Size, factor: float) -> float | dict:
    """A size (a number or a distribution) with every value scaled; shape parameters (sigma) kept."""
    if isinstance(size, int | float):
        return size * factor
    scaled_fields = {
        Fixed: ("value",),
        Uniform: ("low", "high"),
        Normal: ("mean", "std", "min", "max"),
        LogNormal: ("median", "min", "max"),
        Empirical: ("values",),
    }[type(size)]
    dumped = size.model_dump()
    for name in scaled_fields:
        value = dumped[name]
        if isinstance(value, list):
            dumped[name] = [v * factor for v in value]
        elif value is not None:
            dumped[name] = value * factor
    return dumped
