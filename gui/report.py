"""A GUI run as the planner's ``PlanReport`` (replicas as written, no search), and its export.

The GUI simulates each deployment as the scenario writes it, like
``vlmplan simulate``; this adds what ``vlmplan plan`` reports beside the
metrics (feasibility and why not, quality on one benchmark, the
cost/p99/quality Pareto front, the assumptions) so the table can show
quality and Export writes the same xlsx/csv/json as the CLI. Qt-free.
"""

from collections.abc import Sequence
from pathlib import Path

from planner.capacity import CapacityPlan, fixed_sizes, is_feasible, miss_reason
from planner.compare import choose_benchmark, deployment_quality, plan_pareto
from planner.export import write_csv, write_json, write_xlsx
from planner.plan import PlanReport, assumptions
from planner.scenario import Scenario
from profiles.catalog import Catalog
from profiles.errors import VlmplanError
from sim.api import SimulationResult

WRITERS = {".xlsx": write_xlsx, ".csv": write_csv, ".json": write_json}
EXPORT_FILTERS = {".xlsx": "Excel workbook (*.xlsx)", ".csv": "CSV (*.csv)", ".json": "JSON (*.json)"}


def fixed_plan_report(scenario: Scenario, catalog: Catalog, seed: int, horizon_s: float,
                      results: Sequence[SimulationResult]) -> PlanReport:
    """The plan of deployments simulated as written: ``results`` in the scenario's deployment order."""
    target = scenario.slo.attainment
    plans = tuple(
        CapacityPlan(deployment=deployment, replicas=fixed_sizes(deployment, {}), auto_stages=(),
                     feasible=is_feasible(result), reason="" if is_feasible(result) else miss_reason(result, target),
                     result=result, probes=())
        for deployment, result in zip(scenario.deployments, results, strict=True))
    shares = _shares(scenario, results)
    deployments = [plan.deployment for plan in plans]
    benchmark = choose_benchmark(deployments, shares, catalog, scenario.traffic)
    qualities = tuple(deployment_quality(d, shares, catalog, benchmark) for d in deployments)
    return PlanReport(
        scenario=scenario.name, seed=seed, horizon_s=horizon_s, start_s=scenario.start_s, slo=scenario.slo,
        benchmark=benchmark, plans=plans, qualities=qualities, pareto=tuple(plan_pareto(plans, qualities)),
        assumptions=tuple(assumptions(scenario, catalog, plans, qualities, seed, horizon_s)))


def _shares(scenario: Scenario, results: Sequence[SimulationResult]) -> dict[str, float]:
    """Class shares as declared; for a trace with undeclared classes, as the first simulation counted them."""
    if scenario.traffic.classes:
        return scenario.traffic.shares()
    counts = {name: c["requests"] for name, c in results[0].per_class.items()} if results else {}
    total = sum(counts.values())
    return {name: n / total for name, n in counts.items()} if total else {}


def export_filter() -> str:
    """The file-dialog filter of the formats ``export_plan`` writes (xlsx first)."""
    return ";;".join(EXPORT_FILTERS.values())


def with_export_suffix(path: Path, chosen_filter: str) -> Path:
    """``path``, given the suffix of the dialog's chosen filter when the user typed none."""
    if path.suffix:
        return path
    suffix = next((s for s, text in EXPORT_FILTERS.items() if text == chosen_filter), ".xlsx")
    return path.with_suffix(suffix)


def export_plan(plan: PlanReport, path: Path) -> Path:
    """Write ``plan`` as xlsx (charts, per-class sheets, assumptions), csv or json by ``path``'s suffix."""
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise VlmplanError(f"{path}: export writes {', '.join(WRITERS)} files, not {path.suffix or 'no suffix'!r}")
    writer(plan, path)
    return path
