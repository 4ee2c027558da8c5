"""Sensitivity to the inputs (``vlmplan plan --sensitivity``): each sized deployment under changed traffic.

A plan is only as good as its traffic forecast. Each deployment, at the sizes
the plan chose, is simulated again with one input changed at a time: the
offered load (x0.75 to x2: how much growth it absorbs before missing the
SLO) and the length of the answers (x1.5). Prices are not varied: cost per
day is linear in them. All runs go to the executor at once; results come
back in submission order, so the report does not depend on the workers.
"""

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from functools import partial

from planner.capacity import CapacityPlan, is_feasible
from sim.api import SimulationJob, SimulationResult, simulate
from sim.traffic import TrafficSpec
from sim.traffic.scaling import scaled_load, scaled_output


@dataclass(frozen=True)
class Perturbation:
    """One input changed by ``factor``: ``"load"`` (offered requests) or ``"output"`` (generated tokens)."""

    input: str
    factor: float

    @property
    def label(self) -> str:
        """E.g. "load x1.25"."""
        return f"{self.input} x{self.factor:g}"

    def apply(self, traffic: TrafficSpec) -> TrafficSpec:
        """``traffic`` with this input scaled."""
        return scaled_load(traffic, self.factor) if self.input == "load" else scaled_output(traffic, self.factor)


DEFAULT_PERTURBATIONS = (Perturbation("load", 0.75), Perturbation("load", 1.25), Perturbation("load", 1.5),
                         Perturbation("load", 2.0), Perturbation("output", 1.5))
# The metrics each outcome reports (``Outcome.to_dict``, the workbook's Sensitivity sheet).
SUMMARY_KEYS = ("requests", "slo_attainment", "overloaded", "ttft_p99_s", "e2e_p99_s", "cost_per_day_usd")


@dataclass(frozen=True)
class Outcome:
    """How one sized deployment did under one perturbation."""

    perturbation: Perturbation
    result: SimulationResult

    def to_dict(self) -> dict:
        """The figures a reader compares with the plan's own."""
        metrics = self.result.metrics
        return {"input": self.perturbation.input, "factor": self.perturbation.factor,
                "label": self.perturbation.label, "feasible": is_feasible(self.result),
                **{key: metrics.get(key) for key in SUMMARY_KEYS}}


@dataclass(frozen=True)
class Sensitivity:
    """A sized deployment's outcomes under every perturbation."""

    deployment: str
    outcomes: tuple[Outcome, ...]

    @property
    def load_headroom(self) -> float | None:
        """The largest load factor above 1 that still meets the SLO (None: not even the first one)."""
        met = None
        for outcome in sorted(self.outcomes, key=lambda o: o.perturbation.factor):
            if outcome.perturbation.input != "load" or outcome.perturbation.factor <= 1:
                continue
            if not is_feasible(outcome.result):
                break
            met = outcome.perturbation.factor
        return met

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"name": self.deployment, "load_headroom": self.load_headroom,
                "outcomes": [outcome.to_dict() for outcome in self.outcomes]}


def perturbations_for(traffic: TrafficSpec) -> tuple[Perturbation, ...]:
    """The perturbations that apply: a trace's output lengths are its own records, so not those."""
    if traffic.arrivals.kind == "trace":
        return tuple(p for p in DEFAULT_PERTURBATIONS if p.input != "output")
    return DEFAULT_PERTURBATIONS


def sensitivity(plans: Sequence[CapacityPlan], job: SimulationJob, executor: Executor,
                progress: Callable[[float], None] | None = None,
                cancel: Callable[[], bool] | None = None,
                simulation_progress: Callable[[int, int, float], None] | None = None) -> tuple[Sensitivity, ...]:
    """Simulate every sized deployment of ``plans`` under every perturbation of ``job``'s traffic.

    ``cancel`` is asked between chunks of simulated time, and
    ``simulation_progress(run, runs, fraction)`` hears each run from inside
    (None for worker processes, which cannot share them; the GUI runs these
    on a thread).
    """
    perturbations = perturbations_for(job.traffic)
    jobs = [replace(job, deployment=plan.deployment, traffic=p.apply(job.traffic))
            for plan in plans for p in perturbations]
    futures = [executor.submit(simulate, perturbed,
                               None if simulation_progress is None else partial(simulation_progress, run, len(jobs)),
                               cancel)
               for run, perturbed in enumerate(jobs)]
    results = []
    try:
        for done, future in enumerate(futures, start=1):
            results.append(future.result())
            if progress:
                progress(done / len(futures))
    finally:
        for future in futures:
            future.cancel()  # after an error, do not leave the others queued
    count = len(perturbations)
    return tuple(
        Sensitivity(plan.name, tuple(Outcome(p, r) for p, r in
                                     zip(perturbations, results[i * count:(i + 1) * count], strict=True)))
        for i, plan in enumerate(plans)
    )


def sensitivity_table(rows: Sequence[Sensitivity], plans: Sequence[CapacityPlan]) -> tuple[list[str], list[list]]:
    """The sensitivity as a table: a header, then per deployment its name, one ``(text, met)`` cell for
    the planned run and each perturbation, and the load headroom text ("-": the plan itself misses)."""
    if not rows:
        return [], []
    header = ["deployment", "as planned", *(o.perturbation.label for o in rows[0].outcomes), "load headroom"]
    table = []
    for row, plan in zip(rows, plans, strict=True):
        results = [plan.result] + [o.result for o in row.outcomes]
        headroom = row.load_headroom
        shown = "-" if not is_feasible(plan.result) else "none" if headroom is None else f"x{headroom:g}"
        table.append([row.deployment, *((_cell(r), is_feasible(r)) for r in results), shown])
    return header, table


def render_sensitivity(rows: Sequence[Sensitivity], plans: Sequence[CapacityPlan]) -> str:
    """SLO attainment and e2e p99 per deployment (rows) and perturbation (columns), planned sizes first."""
    header, table = sensitivity_table(rows, plans)
    if not table:
        return ""
    lines_of = [header] + [[line[0], *(text for text, _met in line[1:-1]), line[-1]] for line in table]
    widths = [max(len(str(line[k])) for line in lines_of) for k in range(len(header))]
    lines = ["\nsensitivity (each deployment at its planned sizes, one input changed): SLO met, e2e p99; "
             "load headroom = largest load factor tried that still meets the SLO (- when the plan itself misses)"]
    for line in lines_of:
        lines.append("  ".join(str(value).rjust(width) if k else str(value).ljust(width)
                               for k, (value, width) in enumerate(zip(line, widths, strict=True))))
    return "\n".join(lines)


def _cell(result: SimulationResult) -> str:
    """"99.7% 6.9s", "... MISS" when the SLO is missed, "OVERLOAD" when load exceeds capacity."""
    metrics = result.metrics
    if metrics.get("overloaded"):
        return "OVERLOAD"
    met, p99 = metrics.get("slo_attainment"), metrics.get("e2e_p99_s")
    text = "-" if met is None else f"{met:.1%}"
    if p99 is not None:
        text += f" {p99:.1f}s"
    return text if is_feasible(result) else text + " MISS"
