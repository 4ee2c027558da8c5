"""Exports of a plan: the workbook's sheets and native charts, csv, json, and all-or-nothing writes."""

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from plan_fixtures import write_tiny

from planner import export
from planner.export import write_csv, write_json, write_xlsx
from planner.plan import plan_scenario
from planner.scenario import load_scenario
from profiles.errors import VlmplanError
from profiles.files import check_output_path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    scenario = load_scenario(write_tiny(tmp_path_factory.mktemp("scenario")))
    with ThreadPoolExecutor(max_workers=1) as pool:
        return plan_scenario(scenario, pool)


def test_workbook_has_a_sheet_per_deployment_and_native_charts(report, tmp_path: Path):
    path = tmp_path / "plan.xlsx"
    write_xlsx(report, path)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Comparison", "Charts", "SLO targets", "VRAM per replica", "Search", "vlm-auto", "api", "queue",
                               "Time series", "Assumptions", "Sources"]
    charts = book["Charts"]._charts
    assert [type(c).__name__ for c in charts] == ["BarChart", "BarChart", "ScatterChart"]
    assert len(book["Time series"]._charts) == 1
    comparison = book["Comparison"]
    header = [cell.value for cell in comparison[1]]
    rows = {row[0]: dict(zip(header, row, strict=False)) for row in comparison.iter_rows(min_row=2, values_only=True)}
    assert set(rows) == {"vlm-auto", "api", "queue"}
    assert str(rows["vlm-auto"]["$/day"]).startswith("='Assumptions'!")  # a live formula over the inputs
    assert "SLO TTFT p99 s" in header  # the SLO line's values, next to the table
    first = next(book["vlm-auto"].iter_rows(max_row=1, values_only=True))
    assert first[:3] == ("request class", "doc", "chat")  # a column per class, a row per metric


def test_sources_sheet_names_sources_unverified_marks_and_timing_source(report, tmp_path: Path):
    path = tmp_path / "plan.xlsx"
    write_xlsx(report, path)
    rows = list(openpyxl.load_workbook(path)["Sources"].iter_rows(min_row=2, values_only=True))
    topics = {(topic, item) for topic, item, _detail in rows}
    assert ("GPU price", "l4") in topics
    assert ("hosted API", "gpt-4o-mini") in topics
    details = " ".join(detail for _t, _i, detail in rows)
    assert "[unverified" in details
    assert "FACTS.md" in details
    assert any(topic == "performance" and "vlm" in item for topic, item, _d in rows)


def test_csv_and_json_hold_the_comparison_and_the_contract(report, tmp_path: Path):
    write_csv(report, tmp_path / "plan.csv")
    frame = pd.read_csv(tmp_path / "plan.csv", index_col="deployment")
    assert list(frame.index) == ["vlm-auto", "api", "queue"]
    assert frame.loc["api", "$/day"] == pytest.approx(report.plans[1].result.metrics["cost_per_day_usd"])
    write_json(report, tmp_path / "plan.json")
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["deployments"][0]["replicas"] == dict(report.plans[0].replicas)
    assert data == json.loads(json.dumps(report.to_contract_dict()))


def test_a_failure_mid_export_leaves_no_file_and_keeps_the_old_one(report, tmp_path: Path, monkeypatch):
    def broken(writer, report):  # noqa: ARG001 - same signature as the sheet writer
        raise RuntimeError("disk full while writing the time series")

    monkeypatch.setattr(export, "_timeseries_sheet", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_xlsx(report, tmp_path / "new.xlsx")
    assert list(tmp_path.iterdir()) == []  # neither the workbook nor a temporary file
    old = tmp_path / "old.xlsx"
    old.write_bytes(b"the previous export")
    with pytest.raises(RuntimeError):
        write_xlsx(report, old)
    assert old.read_bytes() == b"the previous export"
    assert list(tmp_path.iterdir()) == [old]


def test_unwritable_targets_are_user_errors_naming_the_file(tmp_path: Path):
    with pytest.raises(VlmplanError, match=r"--xlsx .*missing/plan.xlsx: directory .*missing does not exist"):
        check_output_path(tmp_path / "missing" / "plan.xlsx", "--xlsx")
    with pytest.raises(VlmplanError, match="is a directory"):
        check_output_path(tmp_path, "--csv")


def test_sheet_names_are_valid_and_unique():
    taken = {"Comparison"}
    first = export._sheet_name("eu/west:gpu*pool?" + "x" * 40, taken)
    taken.add(first)
    second = export._sheet_name("eu/west:gpu*pool?" + "x" * 40, taken)
    assert len(first) <= 31
    assert len(second) <= 31
    assert first != second
    assert not set("[]:*?/\\") & set(first + second)
    assert export._sheet_name("comparison", taken) != "comparison"  # Excel compares names without case


# ---------------------------------------------------------------- a workbook finance can edit (issue 15.2)


def _cells(path: Path, sheet: str, values: bool) -> dict[str, dict[str, object]]:
    """Rows of ``sheet`` keyed by their first cell, each a header -> cell mapping (formulas, or cached values)."""
    rows = list(openpyxl.load_workbook(path, data_only=values)[sheet].iter_rows(values_only=True))
    return {row[0]: dict(zip(rows[0], row, strict=False)) for row in rows[1:] if row[0] is not None}


def _input_rows(path: Path) -> dict[str, int]:
    """Row number (from 1) of each labelled row of the Assumptions sheet's input tables."""
    sheet = openpyxl.load_workbook(path)["Assumptions"]
    return {row[0].value: row[0].row for row in sheet.iter_rows() if row[0].value is not None}


def test_every_cost_is_a_formula_over_the_input_cells_caching_the_plans_own_number(report, tmp_path: Path):
    path = tmp_path / "plan.xlsx"
    write_xlsx(report, path)
    formulas, cached = _cells(path, "Comparison", values=False), _cells(path, "Comparison", values=True)
    vlm, api, queue = (plan.result.metrics for plan in report.plans)
    l4, gpt, server = (f"'Assumptions'!$B${_input_rows(path)[label]}" for label in ("l4", "gpt-4o-mini", "q server"))
    assert l4 in formulas["vlm-auto"]["$/day"]
    assert server in formulas["queue"]["$/day"]
    api_cost = formulas["api"]["$/day"] or formulas["api"]["closest tried $/day"]
    assert gpt in api_cost
    assert gpt.replace("$B$", "$C$") in api_cost  # the output-token price too
    assert "'Assumptions'!$D$" in formulas["vlm-auto"]["GPUs"]  # the GPU count is an input cell
    assert "'Comparison'!" in formulas["vlm-auto"]["$/1k req"]
    for name, metrics in (("vlm-auto", vlm), ("queue", queue)):
        assert cached[name]["$/day"] == pytest.approx(metrics["cost_per_day_usd"], rel=1e-12)
        assert cached[name]["$/1k req"] == pytest.approx(metrics["cost_per_1k_requests_usd"], rel=1e-12)
        assert cached[name]["GPUs"] == metrics["gpus"]
    api_cached = cached["api"]["$/day"] or cached["api"]["closest tried $/day"]
    assert api_cached == pytest.approx(api["cost_per_day_usd"], rel=1e-9)
    stage_rows = {row[0]: row for row in openpyxl.load_workbook(path)["vlm-auto"].iter_rows(values_only=True)}
    assert stage_rows["stage"][1] == "vlm"
    assert l4 in stage_rows["cost_per_day_usd"][1]  # the per-stage table comes last: its row is kept


def _recalculated(path: Path, out_dir: Path) -> Path:
    """``path`` opened, recalculated and saved again by LibreOffice headless; the new file."""
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed: no spreadsheet engine to recalculate with")
    profile = out_dir / "lo-profile"  # its own user profile: no clash with another LibreOffice running
    done = subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--calc",
                           "--convert-to", "xlsx", "--outdir", str(out_dir), str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out_dir / path.name


def test_libreoffice_recalculates_every_cost_from_a_changed_price(report, tmp_path: Path):
    """Doubling the L4's price in the Assumptions sheet doubles the VLM's costs and leaves the API's and the
    synthetic queue's alone; doubling the API's prices doubles its cost."""
    path = tmp_path / "plan.xlsx"
    write_xlsx(report, path)
    before = _cells(path, "Comparison", values=True)
    rows = _input_rows(path)
    book = openpyxl.load_workbook(path)  # keeps the formulas, drops the cached values: all must be recalculated
    inputs = book["Assumptions"]
    inputs[f"B{rows['l4']}"] = 2 * inputs[f"B{rows['l4']}"].value
    inputs[f"B{rows['gpt-4o-mini']}"] = 2 * inputs[f"B{rows['gpt-4o-mini']}"].value
    inputs[f"C{rows['gpt-4o-mini']}"] = 2 * inputs[f"C{rows['gpt-4o-mini']}"].value
    (tmp_path / "edited").mkdir()
    edited = tmp_path / "edited" / "plan.xlsx"
    book.save(edited)
    (tmp_path / "out").mkdir()
    after = _cells(_recalculated(edited, tmp_path / "out"), "Comparison", values=True)
    assert after["vlm-auto"]["$/day"] == pytest.approx(2 * before["vlm-auto"]["$/day"], rel=1e-9)
    assert after["vlm-auto"]["$/1k req"] == pytest.approx(2 * before["vlm-auto"]["$/1k req"], rel=1e-9)
    assert after["queue"]["$/day"] == pytest.approx(before["queue"]["$/day"], rel=1e-12)
    api_column = "$/day" if before["api"]["$/day"] is not None else "closest tried $/day"
    assert after["api"][api_column] == pytest.approx(2 * before["api"][api_column], rel=1e-9)
