"""``vlmplan doctor``: what this machine has and lacks for each part of vlmplan, one line each.

A fresh install can miss pieces that only show up later as a traceback: an
extra not installed, the system libraries Qt's xcb plugin loads on a Linux
desktop, a CUDA build of torch on a GPU box. Each check below says what is
there or, in one line, what is missing and the command that brings it.
"""

import ctypes.util
import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass

# Libraries Qt 6's xcb platform plugin loads, with the Debian/Ubuntu package of each (a fresh
# machine needed libxcb-icccm4 and libxcb-keysyms1 beyond libxcb-cursor0).
QT_XCB_LIBRARIES = {
    "xcb-cursor": "libxcb-cursor0",
    "xcb-icccm": "libxcb-icccm4",
    "xcb-keysyms": "libxcb-keysyms1",
    "xcb-image": "libxcb-image0",
    "xcb-render-util": "libxcb-render-util0",
    "xcb-randr": "libxcb-randr0",
    "xcb-shape": "libxcb-shape0",
    "xcb-xkb": "libxcb-xkb1",
    "xkbcommon-x11": "libxkbcommon-x11-0",
    "EGL": "libegl1",
    "fontconfig": "libfontconfig1",
}

# Import name -> (what needs it, the install command that brings it).
OPTIONAL_MODULES = {
    "PySide6": ("the desktop app (vlmplan gui)", "pip install 'vlmplan[gui]'"),
    "pyqtgraph": ("the desktop app's plots", "pip install 'vlmplan[gui]'"),
    "torch": ("calibration (vlmplan calibrate)",
              "pip install torch==2.13.0 with the --index-url of PyTorch's CPU-only wheels (its install selector: "
              "Linux, pip, CPU; on a GPU box the CUDA build of the same version), then pip install 'vlmplan[calibrate]'"),
    "scipy": ("calibration fits", "pip install 'vlmplan[calibrate]'"),
    "PIL": ("calibration's image preprocessing", "pip install 'vlmplan[calibrate]'"),
    "pynvml": ("GPU name, clocks and power during calibration", "pip install 'vlmplan[calibrate]'"),
    "dask.distributed": ("plan --scheduler ADDR (sweeps on a Dask cluster)", "pip install 'vlmplan[cluster]'"),
}


@dataclass(frozen=True)
class Check:
    """One line of the report: ``ok`` False means something is missing."""

    ok: bool
    text: str


def missing_qt_xcb_libraries() -> list[str]:
    """Debian/Ubuntu packages of the xcb libraries Qt needs that this Linux machine lacks (else [])."""
    if not sys.platform.startswith("linux"):
        return []
    return [package for library, package in QT_XCB_LIBRARIES.items() if ctypes.util.find_library(library) is None]


def qt_xcb_problem() -> str | None:
    """One line naming the missing xcb libraries when Qt would use its xcb plugin, else None."""
    if os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb" or not os.environ.get("DISPLAY"):
        return None
    missing = missing_qt_xcb_libraries()
    if not missing:
        return None
    return f"Qt's xcb plugin needs system libraries: apt-get install {' '.join(missing)}"


def checks() -> list[Check]:
    """Every check, in the order a user sets things up."""
    from sim import ENGINE

    found = [Check(sys.version_info >= (3, 11), f"Python {sys.version.split()[0]} (3.11 or newer needed)"),
             Check(True, f"vlmplan {importlib.metadata.version('vlmplan')}, simulator engine: {ENGINE}")]
    for module, (purpose, install) in OPTIONAL_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError as error:
            found.append(Check(False, f"{module} missing ({error.name}), needed for {purpose}: {install}"))
        else:
            found.append(Check(True, f"{module}: {purpose}"))
    missing = missing_qt_xcb_libraries()
    if missing:
        found.append(Check(False, "Qt's xcb plugin (a real window on Linux) needs: "
                                  f"apt-get install {' '.join(missing)} (tests and screenshots run offscreen)"))
    found.append(_torch_device())
    return found


def _torch_device() -> Check:
    """Which devices calibration can time on."""
    try:  # probed by name: torch is calibrate/'s dependency, never imported by the planner itself
        torch = importlib.import_module("torch")
    except ImportError:
        return Check(True, "calibration devices: none (torch not installed)")
    if torch.cuda.is_available():
        return Check(True, f"calibration devices: cpu, cuda ({torch.cuda.get_device_name(0)})")
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}, no GPU seen"
    return Check(True, f"calibration devices: cpu (torch {torch.__version__}, {build})")


def render(found: list[Check]) -> str:
    """The report: one line per check, missing ones marked."""
    return "\n".join(("ok       " if c.ok else "MISSING  ") + c.text for c in found)
