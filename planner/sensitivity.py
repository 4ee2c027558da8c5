"""Sensitivity to the inputs (``vlmplan plan --sensitivity``): each sized deployment under changed inputs.

A plan is only as good as its traffic forecast and its step times. Each
deployment, at the sizes the plan chose, is simulated again with one input
changed at a time: the offered load (x0.75 to x2: how much growth it absorbs
before missing the SLO), the length of the answers (x1.5), and every GPU pass
slower by the performance model's typical error (``STEP_TIME_ERROR``): near
saturation a small step-time error moves latency several-fold, so a plan that
holds only at the modelled speed is one the model's own error can break.
Prices are not varied: cost per day is linear in them. All runs go to the
executor at once; results come back in submission order, so the report does
not depend on the workers.
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
    """One input changed by ``factor``: ``"load"`` (offered requests), ``"output"`` (generated tokens) or
    ``"step_time"`` (every GPU pass's duration)."""

    input: str
    factor: float

    @property
    def label(self) -> str:
        """E.g. "load x1.25"."""
        return f"{self.input.replace('_', ' ')} x{self.factor:g}"

    def apply(self, job: SimulationJob) -> SimulationJob:
        """``job`` with this input scaled."""
        if self.input == "step_time":
            return replace(job, step_time_scale=job.step_time_scale * self.factor)
        scale = scaled_load if self.input == "load" else scaled_output
        return replace(job, traffic=scale(job.traffic, self.factor))


# How much slower every GPU pass runs in the step-time perturbation: the 90th percentile of the
# simulator's absolute TPOT error on 910 measured dense serving runs (README, "Simulator against 5,221
# measured serving runs": 24.4 %), rounded up. Nine in ten measured runs stepped within this of the model.
STEP_TIME_ERROR = 1.25
DEFAULT_PERTURBATIONS = (Perturbation("load", 0.75), Perturbation("load", 1.25), Perturbation("load", 1.5),
                         Perturbation("load", 2.0), Perturbation("output", 1.5),
                         Perturbation("step_time", STEP_TIME_ERROR))


def changes() -> str:
    """The inputs changed, briefly: "x0.75 to x2 the load, 1.5x longer answers and every GPU step 1.25x slower"."""
    loads = [p.factor for p in DEFAULT_PERTURBATIONS if p.input == "load"]
    output = next(p.factor for p in DEFAULT_PERTURBATIONS if p.input == "output")
    return (f"x{min(loads):g} to x{max(loads):g} the load, {output:g}x longer answers and every GPU step "
            f"{STEP_TIME_ERROR:g}x slower")


def assumption() -> str:
    """What the sensitivity runs change, in words (the report's assumptions)."""
    loads = ", ".join(f"x{p.factor:g}" for p in DEFAULT_PERTURBATIONS if p.input == "load")
    output = next(p.factor for p in DEFAULT_PERTURBATIONS if p.input == "output")
    return (f"each deployment at its planned sizes simulated again with one input changed: offered load {loads} "
            f"(same mix, curve and bursts), output tokens x{output:g} (every class; not for trace replay) and every "
            f"GPU pass x{STEP_TIME_ERROR:g} slower (the performance model's 90th-percentile TPOT error on measured "
            "runs); same seed and horizon")
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
    """Simulate every sized deployment of ``plans`` under every perturbation of ``job``.

    ``cancel`` is asked between chunks of simulated time, and
    ``simulation_progress(run, runs, fraction)`` hears each run from inside
    (None for worker processes, which cannot share them; the GUI runs these
    on a thread).
    """
    perturbations = perturbations_for(job.traffic)
    jobs = [p.apply(replace(job, deployment=plan.deployment)) for plan in plans for p in perturbations]
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
    lines = ["\nsensitivity (each deployment at its planned sizes, one input changed; step time: every GPU pass "
             f"x{STEP_TIME_ERROR:g} slower, the model's own 90th-percentile error): SLO met, e2e p99; "
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
