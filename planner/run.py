"""Run a scenario: every candidate deployment through the simulator, side by side.

``simulate_scenario`` turns a ``Scenario`` into one ``SimulationJob`` per
deployment and runs them in worker processes (the jobs and results are
picklable; the order of the report follows the scenario, so the output is
the same however many workers ran it). ``ScenarioReport.comparison`` is the
comparison of ``planner.compare`` (verdicts, Pareto front, per-class p99,
VRAM); ``render_table`` is its human view and
``ScenarioReport.to_contract_dict`` DESIGN.md's JSON contract plus the SLO
targets in force and each deployment's verdict.
"""

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from pathlib import Path

from planner.capacity import is_feasible
from planner.compare import (
    Candidate,
    Comparison,
    class_names,
    compare,
    render_comparison,
    table_formats,
)
from planner.executors import make_executor
from planner.scenario import Scenario, scenario_catalog, scenario_trace
from profiles.errors import ScenarioError
from sim.api import SimulationJob, SimulationResult, simulate
from sim.deployment import DeploymentSpec
from sim.driver import REQUEST_LIMIT
from sim.request import Request
from sim.slo import SloSpec

# Columns of simulate's table (``planner.compare``'s frame, formatted as the plan's table formats them).
TABLE_FORMATS = table_formats("GPUs", "$/day", "$/1k req", "TTFT p50 s", "TTFT p99 s", "e2e p50 s", "e2e p99 s",
                              "TPOT p99 s", "GPU util", "SLO met", "preemptions")


@dataclass(frozen=True)
class ScenarioReport:
    """The results of one scenario run, in the scenario's deployment order."""

    scenario: str
    seed: int
    horizon_s: float
    slo_attainment_target: float
    results: tuple[SimulationResult, ...]
    slo: SloSpec | None = None  # None: only the attainment target is known (no targets listed)
    deployments: tuple[DeploymentSpec, ...] = ()  # the specs of ``results``, to say what serves a class

    def comparison(self) -> Comparison:
        """The comparison of the deployments as written (``planner.compare``): the one every view renders."""
        specs = {spec.name: spec for spec in self.deployments}
        candidates = [Candidate(result.deployment, result, is_feasible(result), planned=False,
                                deployment=specs.get(result.deployment)) for result in self.results]
        return compare(candidates, self.slo or SloSpec.model_construct(attainment=self.slo_attainment_target))

    def to_contract_dict(self) -> dict:
        """``{"scenario", "seed", "horizon_s", "slo", "deployments": [{"name", "metrics", ..., "verdict",
        "pareto"}]}``; ``slo``: the attainment required and every class's targets in force."""
        frame = self.comparison().frame
        deployments = []
        for result in self.results:
            entry = result.to_contract_dict()
            entry.update({"verdict": frame.loc[result.deployment, "verdict"],
                          "pareto": bool(frame.loc[result.deployment, "pareto"]),
                          "reason": frame.loc[result.deployment, "reason"]})
            deployments.append(entry)
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "horizon_s": self.horizon_s,
            **({"slo": self.slo.to_dict(class_names(self.results))} if self.slo is not None else {}),
            "deployments": deployments,
        }


def scenario_jobs(scenario: Scenario, *, seed: int | None = None, horizon_s: float | None = None,
                  only: Sequence[str] = (), trace: Sequence[Request] | None = None) -> list[SimulationJob]:
    """One picklable job per deployment of ``scenario`` (``only``: a subset by name; ``trace``: the scenario's
    trace when already loaded)."""
    names = [deployment.name for deployment in scenario.deployments]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ScenarioError(f"--deployment: unknown deployment(s) {unknown}; the scenario has {names}")
    catalog = scenario_catalog(scenario)
    trace = scenario_trace(scenario) if trace is None else trace
    calibrations = _calibrations(scenario.calibration_profiles)
    return [
        SimulationJob(
            deployment=deployment,
            traffic=scenario.traffic,
            horizon_s=scenario.horizon_s if horizon_s is None else horizon_s,
            seed=scenario.seed if seed is None else seed,
            slo=scenario.slo,
            catalog=catalog,
            trace=None if trace is None else tuple(trace),
            calibrations=calibrations,
        )
        for deployment in scenario.deployments
        if not only or deployment.name in only
    ]


def simulate_scenario(scenario: Scenario, *, seed: int | None = None, horizon_s: float | None = None,
                      only: Sequence[str] = (), progress: Callable[[float], None] | None = None,
                      executor: Executor | None = None) -> ScenarioReport:
    """Simulate the deployments of ``scenario`` as written (fixed replicas).

    ``progress(fraction)`` is called as deployments finish. Without an
    ``executor``, up to one worker process per core runs the jobs
    (``planner.executors.make_executor``; a single job runs in this process).
    """
    jobs = scenario_jobs(scenario, seed=seed, horizon_s=horizon_s, only=only)
    if executor is not None:
        results = _run_all(jobs, executor, progress)
    else:
        with make_executor(None, min(len(jobs), os.cpu_count() or 1)) as local:
            results = _run_all(jobs, local, progress)
    return ScenarioReport(
        scenario=scenario.name,
        seed=jobs[0].seed,
        horizon_s=jobs[0].horizon_s,
        slo_attainment_target=scenario.slo.attainment,
        results=tuple(results),
        slo=scenario.slo,
        deployments=tuple(job.deployment for job in jobs),
    )


def _run_all(jobs: list[SimulationJob], executor: Executor,
             progress: Callable[[float], None] | None) -> list[SimulationResult]:
    """Submit every job, report progress as they finish, return results in job order."""
    futures = {executor.submit(simulate, job): index for index, job in enumerate(jobs)}
    results: list[SimulationResult | None] = [None] * len(jobs)
    for done, future in enumerate(as_completed(futures), start=1):
        results[futures[future]] = future.result()
        if progress:
            progress(done / len(jobs))
    return [result for result in results if result is not None]


def _calibrations(paths: Sequence[str]) -> tuple:
    """The scenario's calibration profiles, loaded (only scenarios with profiles import the loader)."""
    if not paths:
        return ()
    from profiles.calibration import load_profile

    return tuple(load_profile(Path(path)) for path in paths)


def render_table(report: ScenarioReport) -> str:
    """The comparison as aligned text: the SLO in force, the table, each class's p99 against its targets,
    VRAM per replica, and a line per deployment that misses the SLO saying why."""
    lines = [f"scenario {report.scenario!r}: {report.horizon_s:,.0f} s simulated, seed {report.seed}; "
             f"$/day = GPUs x price x 24 h + API spend scaled to a day"]
    if report.slo is not None:
        lines += report.slo.text(class_names(report.results))
    lines.append(render_comparison(report.comparison(), TABLE_FORMATS, quality=False, verdict_column=False))
    lines += [line for line in map(rejection_line, report.results) if line]
    lines += [line for line in map(stopped_line, report.results) if line]
    lines += [f"CANNOT SERVE {result.deployment}: class {name} {figures['cannot_be_served']} "
              f"({figures['requests']:,} requests)"
              for result in report.results for name, figures in result.per_class.items()
              if figures.get("cannot_be_served")]
    return "\n".join(lines)


def stopped_line(result: SimulationResult) -> str:
    """'STOPPED name: overloaded beyond doubt at T s of H s ...' (or: the closed loop sent the requests one
    simulation may run) for a run that stopped early, or ''."""
    metrics = result.metrics
    stopped_s = metrics.get("stopped_early_s")
    if stopped_s is None:
        return ""
    at_s = f"{stopped_s:,.0f}" if stopped_s >= 10 else f"{stopped_s:.2g}"  # an arrivals' check: perhaps 0.00038 s
    if metrics.get("stopped_because") == REQUEST_LIMIT:
        return (f"STOPPED {result.deployment}: the closed loop sent {metrics['requests']:,} requests, as many as one "
                f"simulation may run, by {at_s} s of {metrics['horizon_s']:,.0f} s; its figures cover the arrivals "
                f"until then")
    return (f"STOPPED {result.deployment}: overloaded beyond doubt at {at_s} s of {metrics['horizon_s']:,.0f} s "
            f"({metrics['unfinished']:,} of {metrics['requests']:,} requests unfinished, "
            f"{metrics['unfinished_beyond_end']:,} of them unable to start before the run's end even at twice the "
            f"fastest rates); its figures cover the arrivals until then")


def rejection_line(result: SimulationResult) -> str:
    """'REJECTED name: N requests (class n, ...); M over a stage's max_seq_len (stage m)', or '' if none."""
    by_class = {name: figures["rejected"] for name, figures in sorted(result.per_class.items())
                if figures.get("rejected")}
    if not by_class:
        return ""
    classes = ", ".join(f"{name} {count:,}" for name, count in by_class.items())
    too_long = {stage: figures["rejected_over_max_seq_len"] for stage, figures in result.per_stage.items()
                if figures.get("rejected_over_max_seq_len")}
    reason = ""
    if too_long:
        stages = ", ".join(f"{stage} {count:,}" for stage, count in too_long.items())
        reason = f"; {sum(too_long.values()):,} with prompts over a stage's max_seq_len ({stages})"
    return f"REJECTED {result.deployment}: {sum(by_class.values()):,} requests ({classes}){reason}"
