"""profiles/files.py: output files appear whole, with the mode a normal file gets, or not at all."""

import os
from pathlib import Path

import pytest

from profiles.files import atomic_write, atomic_write_text


def test_written_file_has_the_umask_mode_and_no_temporary_remains(tmp_path: Path):
    target = tmp_path / "plan.json"
    atomic_write_text(target, "{}\n")
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_text() == "{}\n"
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "plan.csv"
    target.write_text("old")

    def half_then_fail(temporary: Path) -> None:
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.csv"]
