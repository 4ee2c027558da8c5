"""Exporting a GUI run: the plan of the deployments as written, to xlsx, csv or json.

The worker builds that plan with ``planner.plan.plan_as_written`` (quality,
feasibility, Pareto front, assumptions beside the metrics), so Export writes
the same files as ``vlmplan plan``. Qt-free.
"""

from pathlib import Path

from planner.export import write_csv, write_json, write_xlsx
from planner.plan import PlanReport
from profiles.errors import VlmplanError

WRITERS = {".xlsx": write_xlsx, ".csv": write_csv, ".json": write_json}
EXPORT_FILTERS = {".xlsx": "Excel workbook (*.xlsx)", ".csv": "CSV (*.csv)", ".json": "JSON (*.json)"}


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
