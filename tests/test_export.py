"""Exports of a plan: the workbook's sheets and native charts, csv, json, and all-or-nothing writes."""

import json
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
    assert book.sheetnames == ["Comparison", "SLO targets", "VRAM per replica", "Search", "vlm-auto", "api", "queue",
                               "Time series", "Assumptions"]
    charts = book["Comparison"]._charts
    assert [type(c).__name__ for c in charts] == ["BarChart", "BarChart", "ScatterChart"]
    assert len(book["Time series"]._charts) == 1
    comparison = book["Comparison"]
    header = [cell.value for cell in comparison[1]]
    rows = {row[0]: dict(zip(header, row, strict=False)) for row in comparison.iter_rows(min_row=2, values_only=True)}
    assert set(rows) == {"vlm-auto", "api", "queue"}
    assert rows["vlm-auto"]["$/day"] == pytest.approx(report.plans[0].result.metrics["cost_per_day_usd"])
    assert "SLO TTFT p99 s" in header  # the SLO line's values, next to the table
    classes = [row[0] for row in book["vlm-auto"].iter_rows(min_row=2, max_row=3, values_only=True)]
    assert classes == ["doc", "chat"]


def test_assumptions_sheet_names_sources_unverified_marks_and_timing_source(report, tmp_path: Path):
    path = tmp_path / "plan.xlsx"
    write_xlsx(report, path)
    rows = list(openpyxl.load_workbook(path)["Assumptions"].iter_rows(min_row=2, values_only=True))
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
