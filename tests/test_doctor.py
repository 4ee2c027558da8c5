"""``vlmplan doctor`` names what is missing, in one line each, with the command that brings it."""

import importlib

import pytest
from click.testing import CliRunner

from planner import doctor
from planner.cli import cli


def test_a_missing_extra_is_named_with_its_install_command(monkeypatch):
    real_import = importlib.import_module

    def without_torch(name, *args):
        if name == "torch":
            raise ImportError("No module named 'torch'", name="torch")
        return real_import(name, *args)

    monkeypatch.setattr(doctor.importlib, "import_module", without_torch)
    [line] = [c.text for c in doctor.checks() if not c.ok and c.text.startswith("torch")]
    assert "calibration" in line
    assert "vlmplan[calibrate]" in line
    assert "CPU" in line


def test_missing_xcb_libraries_are_named_by_their_debian_package(monkeypatch):
    monkeypatch.setattr(doctor.sys, "platform", "linux")
    monkeypatch.setattr(doctor.ctypes.util, "find_library", lambda name: None if name == "xcb-icccm" else "lib.so")
    assert doctor.missing_qt_xcb_libraries() == ["libxcb-icccm4"]
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    assert doctor.qt_xcb_problem() == "Qt's xcb plugin needs system libraries: apt-get install libxcb-icccm4"
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert doctor.qt_xcb_problem() is None  # offscreen Qt loads no xcb library


@pytest.mark.parametrize("missing", [False, True])
def test_doctor_exits_1_only_when_something_is_missing(monkeypatch, missing):
    monkeypatch.setattr(doctor.ctypes.util, "find_library", lambda name: None if missing else "lib.so")
    monkeypatch.setattr(doctor.sys, "platform", "linux")
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == (1 if missing else 0), result.output
    assert ("MISSING" in result.output) == missing
