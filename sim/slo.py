"""Service-level objectives: per-request latency targets and the share of requests that must meet them.

A request meets the SLO when every target written for its class holds for
it: time to first token, mean time per output token, end-to-end latency. A
target applies only where the scenario writes it (top level: every class;
``per_class``: that class); nothing is implied. A request that has not
finished by the horizon does not meet it. A deployment meets the SLO when at
least ``attainment`` of the offered requests do; with 0.99 this reads "p99
TTFT <= ttft_s and p99 e2e <= e2e_s". Units: seconds.

Example::

    slo: {ttft_s: 2.0, tpot_s: 0.2, e2e_s: 10.0, attainment: 0.99,
          per_class: {invoice: {e2e_s: 1.0}}}
"""

from collections.abc import Iterable
from typing import Self

from pydantic import Field, PositiveFloat, model_validator

from profiles.base import StrictModel

# Target field -> the metric it bounds, as people name it, and the result's key of that metric's p99.
TARGET_METRICS = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "e2e"}
P99_KEYS = {"ttft_s": "ttft_p99_s", "tpot_s": "tpot_p99_s", "e2e_s": "e2e_p99_s"}


class SloTargets(StrictModel):
    """Latency targets for one request; ``None`` means no target."""

    ttft_s: PositiveFloat | None = None
    tpot_s: PositiveFloat | None = None
    e2e_s: PositiveFloat | None = None

    def written(self) -> dict[str, float]:
        """The targets that are set, ``{field: seconds}`` in ``TARGET_METRICS`` order."""
        return {name: value for name in TARGET_METRICS if (value := getattr(self, name)) is not None}

    def text(self) -> str:
        """"TTFT <= 2 s, e2e <= 5 s" (empty when no target is set)."""
        return ", ".join(f"{TARGET_METRICS[name]} <= {value:g} s" for name, value in self.written().items())


class SloSpec(StrictModel):
    """Targets for every class, per-class overrides and the required attainment; only written targets apply."""

    ttft_s: PositiveFloat | None = Field(None, description="Time to first token, every class (seconds)")
    tpot_s: PositiveFloat | None = Field(None, description="Mean time per output token, every class (seconds)")
    e2e_s: PositiveFloat | None = Field(None, description="End-to-end latency, every class (seconds)")
    attainment: float = Field(0.99, gt=0, le=1, description="Share of requests that must meet their targets")
    per_class: dict[str, SloTargets] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_target(self) -> Self:
        if self.ttft_s is None and self.tpot_s is None and self.e2e_s is None and not self.per_class:
            raise ValueError("an SLO needs at least one of ttft_s, tpot_s, e2e_s or per_class")
        return self

    def targets(self, request_class: str) -> SloTargets:
        """The targets for ``request_class``: its override where given, the top-level ones otherwise."""
        override = self.per_class.get(request_class)
        return SloTargets(
            ttft_s=override.ttft_s if override and override.ttft_s is not None else self.ttft_s,
            tpot_s=override.tpot_s if override and override.tpot_s is not None else self.tpot_s,
            e2e_s=override.e2e_s if override and override.e2e_s is not None else self.e2e_s,
        )

    def targets_in_force(self, class_names: Iterable[str]) -> dict[str, SloTargets]:
        """The targets in force for each class, in the order given: what every output lists."""
        return {name: self.targets(name) for name in class_names}

    def to_dict(self, class_names: Iterable[str]) -> dict:
        """JSON-ready: the attainment required and, per class, only the targets in force (seconds)."""
        return {"attainment": self.attainment,
                "per_class": {name: t.written() for name, t in self.targets_in_force(class_names).items()}}

    def text(self, class_names: Iterable[str]) -> list[str]:
        """The SLO in force as lines for a report header: the attainment, then each class's targets."""
        lines = [f"SLO: {self.attainment * 100:g}% of requests within their class's targets (only written targets apply):"]
        lines += [f"  {name}: {targets.text() or 'no target'}"
                  for name, targets in self.targets_in_force(class_names).items()]
        return lines

    def is_met(self, slo_attainment: float) -> bool:
        """Whether a measured attainment (0..1) satisfies this SLO."""
        return slo_attainment >= self.attainment


class TargetMiss(StrictModel):
    """One class's p99 of one metric above its target (seconds)."""

    request_class: str
    metric: str  # as in TARGET_METRICS: "TTFT", "TPOT" or "e2e"
    p99_s: float
    target_s: float

    def text(self) -> str:
        """"camera: e2e p99 0.19 s > target 0.1 s"."""
        return f"{self.request_class}: {self.metric} p99 {self.p99_s:.3g} s > target {self.target_s:g} s"


def class_p99_s(per_class_metrics: dict, target_field: str) -> float | None:
    """A class's p99 of the metric ``target_field`` bounds (None: no request defined it)."""
    value = per_class_metrics.get(P99_KEYS[target_field])
    return None if value is None else float(value)


def worst_miss(per_class: dict[str, dict], targets: dict[str, SloTargets]) -> TargetMiss | None:
    """The class and metric whose p99 is furthest past its target (largest p99/target), None if none is past.

    ``per_class``: a result's per-class metrics; ``targets``: ``SloSpec.targets_in_force``.
    """
    misses = []
    for name, metrics in per_class.items():
        for target_field, target_s in targets.get(name, SloTargets()).written().items():
            p99_s = class_p99_s(metrics, target_field)
            if p99_s is not None and p99_s > target_s:
                misses.append(TargetMiss(request_class=name, metric=TARGET_METRICS[target_field],
                                         p99_s=p99_s, target_s=target_s))
    return max(misses, key=lambda miss: miss.p99_s / miss.target_s, default=None)
