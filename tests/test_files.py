"""profiles/files.py: output files appear whole, with the mode a normal file gets, or not at all; only regular
files are replaced; several outputs together or none; input files read only when they are regular files."""

import os
import re
import stat
from pathlib import Path

import pytest

from profiles.errors import VlmplanError
from profiles.files import TEMPORARY_MARK, Output, atomic_write, atomic_write_text, write_all


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


# ---------------------------------------------------------------- outputs that never clobber (issue 14.4)


def _special_targets(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a symbolic link, a directory and (where mknod is allowed) a character device, in ``tmp_path``."""
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    (tmp_path / "real.csv").write_text("kept")
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "real.csv")
    directory = tmp_path / "folder.csv"
    directory.mkdir()
    targets = {"a FIFO (named pipe)": fifo, "a symbolic link": link, "a directory": directory}
    try:
        os.mknod(tmp_path / "null.csv", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
        targets["a character device"] = tmp_path / "null.csv"
    except PermissionError:
        pass
    return targets


def test_only_regular_files_are_replaced(tmp_path: Path):
    for kind, target in _special_targets(tmp_path).items():
        before = os.lstat(target)
        with pytest.raises(VlmplanError, match=rf"^--csv {re.escape(str(target))}: is {re.escape(kind)}; vlmplan"):
            write_all([Output(target, lambda tmp: tmp.write_text("new"), "--csv")])
        after = os.lstat(target)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), kind
    assert (tmp_path / "real.csv").read_text() == "kept"
    assert not [p for p in tmp_path.iterdir() if TEMPORARY_MARK in p.name]


def test_several_outputs_are_all_written_or_none(tmp_path: Path):
    csv, xlsx = tmp_path / "plan.csv", tmp_path / "plan.xlsx"
    csv.write_text("old csv")

    def fail(temporary: Path) -> None:
        temporary.write_text("half")
        raise OSError(28, "No space left on device", str(temporary))

    with pytest.raises(VlmplanError, match=r"^--xlsx .*plan.xlsx: cannot write: No space left on device$"):
        write_all([Output(csv, lambda tmp: tmp.write_text("new csv"), "--csv"), Output(xlsx, fail, "--xlsx")])
    assert csv.read_text() == "old csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.csv"]
    # A special file among the targets: refused before anything is written.
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(VlmplanError, match="fifo.json: is a FIFO"):
        write_all([Output(csv, lambda tmp: tmp.write_text("new csv"), "--csv"),
                   Output(tmp_path / "fifo.json", lambda tmp: tmp.write_text("{}"), "--json")])
    assert csv.read_text() == "old csv"
    # A failure after every file is written (printing to a full stdout): none replaced either.
    with pytest.raises(OSError, match="stdout"):
        write_all([Output(csv, lambda tmp: tmp.write_text("new csv"))],
                  before_commit=lambda: (_ for _ in ()).throw(OSError("stdout full")))
    assert csv.read_text() == "old csv"
    write_all([Output(csv, lambda tmp: tmp.write_text("new csv")), Output(xlsx, lambda tmp: tmp.write_text("x"))])
    assert (csv.read_text(), xlsx.read_text()) == ("new csv", "x")


def test_a_killed_runs_temporary_is_removed_by_the_next_write(tmp_path: Path):
    target = tmp_path / "plan.csv"
    dead = tmp_path / f".plan.csv{TEMPORARY_MARK}{2**22 + 12345}"  # above Linux's default pid_max: no such process
    dead.write_text("left by a killed run")
    alive = tmp_path / f".plan.csv{TEMPORARY_MARK}{os.getppid()}"  # a running process may still be writing it
    alive.write_text("being written")
    other = tmp_path / f".other.csv{TEMPORARY_MARK}{2**22 + 12345}"  # another target's: not ours to clean
    other.write_text("x")
    atomic_write_text(target, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, alive.name, other.name])
