"""Run a scenario: every candidate deployment through the simulator, side by side.

``simulate_scenario`` turns a ``Scenario`` into one ``SimulationJob`` per
deployment and runs them in worker processes (the jobs and results are
picklable; the order of the report follows the scenario, so the output is
the same however many workers ran it). ``render_table`` is the human view;
``ScenarioReport.to_contract_dict`` is DESIGN.md's JSON contract.
"""

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from planner.compare import format_cell
from planner.executors import make_executor
from planner.scenario import Scenario, scenario_catalog, scenario_trace
from profiles.errors import ScenarioError
from sim.api import SimulationJob, SimulationResult, simulate

# Columns of the human-readable comparison: contract key -> (header, format).
TABLE_COLUMNS = {
    "gpus": ("GPUs", "{:.0f}"),
    "cost_per_day_usd": ("$/day", "{:,.0f}"),
    "cost_per_1k_requests_usd": ("$/1k req", "{:.3f}"),
    "ttft_p50_s": ("TTFT p50 s", "{:.3f}"),
    "ttft_p99_s": ("TTFT p99 s", "{:.3f}"),
    "e2e_p50_s": ("e2e p50 s", "{:.3f}"),
    "e2e_p99_s": ("e2e p99 s", "{:.3f}"),
    "tpot_p99_s": ("TPOT p99 s", "{:.4f}"),
    "throughput_rps": ("req/s", "{:.2f}"),
    "gpu_utilization": ("GPU util", "{:.0%}"),
    "slo_attainment": ("SLO met", "{:.1%}"),
    "preemptions": ("preempt", "{:.0f}"),
}


@dataclass(frozen=True)
class ScenarioReport:
    """The results of one scenario run, in the scenario's deployment order."""

    scenario: str
    seed: int
    horizon_s: float
    slo_attainment_target: float
    results: tuple[SimulationResult, ...]

    def to_contract_dict(self) -> dict:
        """``{"scenario", "seed", "horizon_s", "deployments": [{"name", "metrics", ...}]}``."""
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "horizon_s": self.horizon_s,
            "deployments": [result.to_contract_dict() for result in self.results],
        }


def scenario_jobs(scenario: Scenario, *, seed: int | None = None, horizon_s: float | None = None,
                  only: Sequence[str] = ()) -> list[SimulationJob]:
    """One picklable job per deployment of ``scenario`` (``only``: a subset by name)."""
    names = [deployment.name for deployment in scenario.deployments]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ScenarioError(f"--deployment: unknown deployment(s) {unknown}; the scenario has {names}")
    catalog = scenario_catalog(scenario)
    trace = scenario_trace(scenario)
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


def comparison_frame(report: ScenarioReport) -> pd.DataFrame:
    """One row per deployment, the contract metrics as columns (raw values, for export)."""
    rows = {result.deployment: result.metrics for result in report.results}
    return pd.DataFrame.from_dict(rows, orient="index")


def render_table(report: ScenarioReport) -> str:
    """The comparison as aligned text, with a line per overloaded or SLO-missing deployment."""
    frame = comparison_frame(report)
    shown = pd.DataFrame(index=frame.index)
    for key, (header, fmt) in TABLE_COLUMNS.items():
        values = frame[key] if key in frame else pd.Series(None, index=frame.index)
        shown[header] = [format_cell(fmt, value) for value in values]
    lines = [
        f"scenario {report.scenario!r}: {report.horizon_s:,.0f} s simulated, seed {report.seed}; "
        f"$/day = GPUs x price x 24 h + API spend scaled to a day",
        shown.to_string(),
    ]
    for result in report.results:
        metrics = result.metrics
        if metrics.get("overloaded"):
            lines.append(f"OVERLOAD {result.deployment}: {metrics.get('unfinished', '?')} of "
                         f"{metrics['requests']} requests unfinished at the end: offered load exceeds capacity")
        elif metrics.get("slo_attainment") is not None and metrics["slo_attainment"] < report.slo_attainment_target:
            lines.append(f"SLO MISSED {result.deployment}: {metrics['slo_attainment']:.1%} of requests met "
                         f"their targets (needs {report.slo_attainment_target:.0%})")
        rejected = rejection_line(result)
        if rejected:
            lines.append(rejected)
    return "\n".join(lines)


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
