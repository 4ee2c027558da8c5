"""The desktop app's entry point: ``run_gui(scenario_path) -> exit code``.

``vlmplan gui [SCENARIO]`` calls it. With ``screenshot_path`` the app runs
the scenario, waits for the results, saves the window as a PNG and quits
(used to produce docs/screenshot.png and to eyeball the layout headless,
e.g. under ``xvfb-run``).
"""

import os
import sys
from pathlib import Path
from typing import cast

import PySide6
from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from gui.window import MainWindow
from planner.doctor import qt_xcb_problem
from profiles.errors import ConfigurationError

SCREENSHOT_SETTLE_MS = 500  # let the plots finish laying out before grabbing


def _check_display() -> None:
    """On Linux without a display Qt aborts the process; say so as a user error instead."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not platform and not has_display:
        raise ConfigurationError("vlmplan gui: no display (DISPLAY/WAYLAND_DISPLAY unset); run it on a desktop, "
                                 "under xvfb-run, or with QT_QPA_PLATFORM=offscreen")
    problem = qt_xcb_problem()  # without them Qt aborts with a long plugin error instead
    if problem is not None:
        raise ConfigurationError(f"vlmplan gui: {problem}")


def _check_qt_binding() -> None:
    """Refuse a PySide6 build that drops a reference to ``None`` whenever Qt returns a null.

    PySide6 6.12.0 on CPython 3.11 does (None is immortal only from 3.12): the
    app would abort with "deallocating None" a few minutes into a session.
    """
    before = sys.getrefcount(None)
    probe = QObject()
    for _ in range(100):
        probe.parent()  # returns None
    if sys.getrefcount(None) < before - 50:
        raise ConfigurationError(
            f"PySide6 {PySide6.__version__} on Python {sys.version_info.major}.{sys.version_info.minor} "
            "corrupts None's reference count and would crash; install another build: "
            "pip install 'PySide6-Essentials>=6.6,<6.12'")


def run_gui(scenario_path: Path | None, *, horizon_s: float | None = None,
            screenshot_path: Path | None = None) -> int:
    """Open the window on ``scenario_path`` (default: the bundled scenario); return the exit code."""
    _check_display()
    _check_qt_binding()
    app = cast(QApplication, QApplication.instance() or QApplication([sys.argv[0]]))  # a widgets app
    app.setApplicationName("vlmplan")
    window = MainWindow(scenario_path)
    if screenshot_path is None:  # a screenshot keeps the window's designed size whatever the screen
        screen = app.primaryScreen().availableGeometry()
        window.resize(min(window.width(), screen.width()), min(window.height(), screen.height()))
    if horizon_s is not None:
        window.horizon.setValue(horizon_s)
    window.show()
    if screenshot_path is not None:
        _screenshot_when_done(app, window, screenshot_path)
    return app.exec()


def _screenshot_when_done(app: QApplication, window: MainWindow, path: Path) -> None:
    """Run the scenario, then save the window to ``path`` and quit (exit 1 if the run fails)."""
    def save() -> None:
        window.grab().save(str(path))
        window.close()
        app.exit(0)

    def fail(message: str) -> None:
        sys.stderr.write(f"error: {message}\n")
        window.close()
        app.exit(1)

    window.controller.finished.connect(lambda _outcome: QTimer.singleShot(SCREENSHOT_SETTLE_MS, save))
    window.controller.failed.connect(fail)
    QTimer.singleShot(0, window.run)
