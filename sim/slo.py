"""Service-level objectives: per-request latency targets and the share of requests that must meet them.

A request meets the SLO when every target that is set holds for it: time to
first token, mean time per output token, end-to-end latency. A request that
has not finished by the horizon does not meet it. A deployment meets the SLO
when at least ``attainment`` of the offered requests do; with the default
0.99 this reads "p99 TTFT <= ttft_s and p99 e2e <= e2e_s". Units: seconds.

Example::

    slo: {ttft_s: 2.0, tpot_s: 0.2, e2e_s: 10.0, attainment: 0.99,
          per_class: {invoice: {e2e_s: 1.0}}}
"""

from typing import Self

from pydantic import Field, PositiveFloat, model_validator

from profiles.base import StrictModel


class SloTargets(StrictModel):
    """Latency targets for one request; ``None`` means no target."""

    ttft_s: PositiveFloat | None = None
    tpot_s: PositiveFloat | None = None
    e2e_s: PositiveFloat | None = None


class SloSpec(StrictModel):
    """Default targets, per-class overrides and the required attainment."""

    ttft_s: PositiveFloat | None = Field(2.0, description="MLPerf v4.1 Llama-2-70B server: TTFT <= 2 s")
    tpot_s: PositiveFloat | None = Field(0.2, description="MLPerf v4.1 Llama-2-70B server: TPOT <= 200 ms")
    e2e_s: PositiveFloat | None = None
    attainment: float = Field(0.99, gt=0, le=1, description="Share of requests that must meet their targets")
    per_class: dict[str, SloTargets] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_target(self) -> Self:
        if self.ttft_s is None and self.tpot_s is None and self.e2e_s is None and not self.per_class:
            raise ValueError("an SLO needs at least one of ttft_s, tpot_s, e2e_s or per_class")
        return self

    def targets(self, request_class: str) -> SloTargets:
        """The targets for ``request_class``: its override where given, the defaults otherwise."""
        override = self.per_class.get(request_class)
        return SloTargets(
            ttft_s=override.ttft_s if override and override.ttft_s is not None else self.ttft_s,
            tpot_s=override.tpot_s if override and override.tpot_s is not None else self.tpot_s,
            e2e_s=override.e2e_s if override and override.e2e_s is not None else self.e2e_s,
        )

    def is_met(self, slo_attainment: float) -> bool:
        """Whether a measured attainment (0..1) satisfies this SLO."""
        return slo_attainment >= self.attainment
