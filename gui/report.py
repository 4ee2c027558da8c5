"""A GUI run as the planner's ``PlanReport`` (replicas as written, no search), and its export.

The GUI simulates each deployment as the scenario writes it, like
``vlmplan simulate``; this adds what ``vlmplan plan`` reports beside the
metrics (feasibility and why not, quality on one benchmark, the
cost/p99/quality Pareto front, the assumptions) so the table can show
quality and Export writes the same xlsx/csv/json as the CLI. Qt-free.
"""

from collections.abc import Sequence
from pathlib import Path

from planner.export import write_csv, write_json, write_xlsx
from planner.plan import PlanReport, plan_as_written
from planner.scenario import Scenario
from profiles.catalog import Catalog
from profiles.errors import VlmplanError
from sim.api import SimulationResult

WRITERS = {".xlsx": write_xlsx, ".csv": write_csv, ".json": write_json}
EXPORT_FILTERS = {".xlsx": "Excel workbook (*.xlsx)", ".csv": "CSV (*.csv)", ".json": "JSON (*.json)"}


def fixed_plan_report(scenario: Scenario, catalog: Catalog, seed: int, horizon_s: float,
                      results: Sequence[SimulationResult]) -> PlanReport:
    """The plan of deployments simulated as written: ``results`` in the scenario's deployment order."""
    return plan_as_written(scenario, catalog, seed, horizon_s, results)


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
