"""The discrete-event simulator (SimPy): traffic, deployments, replicas, continuous batching, metrics.

Installing the package compiles the engine loop (the modules listed in
setup.py) with mypyc where a C compiler is at hand, next to their sources.
Compiled and pure-Python runs give identical results; the compiled ones are
1.7x to 2x faster. In a source checkout the compiled modules are
used only while none of their sources is newer than its build (a stale build
after an edit or a pull would silently run old code), and never with
``VLMPLAN_PURE_PYTHON=1`` (for debugging and profiling the engine as
Python); otherwise every engine module runs from its source. The modules of
one mypyc build call each other in C, so it is all of them or none.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PURE_PYTHON_VARIABLE = "VLMPLAN_PURE_PYTHON"
EXTENSION_SUFFIXES = importlib.machinery.EXTENSION_SUFFIXES  # e.g. ".cpython-311-x86_64-linux-gnu.so"
_PACKAGE_DIR = Path(__file__).resolve().parent
# Only a source checkout (setup.py beside the package, an editable install) is edited after its
# build; an installed wheel's files carry the unpacking order as their times.
_SOURCE_CHECKOUT = (_PACKAGE_DIR.parent / "setup.py").exists()


def _source(package_dir: Path, module: str) -> Path:
    """The ``.py`` of ``module`` (a dotted name below the package in ``package_dir``)."""
    return package_dir.joinpath(*module.split(".")[1:]).with_suffix(".py")


def compiled_modules(package_dir: Path, package: str) -> dict[str, Path]:
    """Module name -> compiled file, for every module of ``package`` (and below) compiled next to its source."""
    found = {}
    for suffix in EXTENSION_SUFFIXES:
        for compiled in package_dir.rglob("*" + suffix):
            relative = compiled.relative_to(package_dir).as_posix()[: -len(suffix)]
            name = ".".join([package, *relative.split("/")])
            if _source(package_dir, name).exists():
                found[name] = compiled
    return found


def stale_modules(package_dir: Path, compiled: dict[str, Path]) -> list[str]:
    """Modules whose source was modified after they were compiled, sorted."""
    return sorted(name for name, path in compiled.items()
                  if _source(package_dir, name).stat().st_mtime > path.stat().st_mtime)


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Imports the named modules from their ``.py`` although a compiled module sits beside it."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        """A source spec for the named modules; None (ask the next finder) for everything else."""
        if fullname not in self.names:
            return None
        return importlib.util.spec_from_file_location(fullname, _source(_PACKAGE_DIR, fullname))


def _choose_engine() -> str:
    """Route imports of the engine modules to their sources when needed; describe the engine in use."""
    compiled = compiled_modules(_PACKAGE_DIR, __name__)
    if not compiled:
        return "pure Python (not compiled)"
    if os.environ.get(PURE_PYTHON_VARIABLE):
        engine = f"pure Python ({PURE_PYTHON_VARIABLE} is set)"
    elif _SOURCE_CHECKOUT and (stale := stale_modules(_PACKAGE_DIR, compiled)):
        engine = f"pure Python (the compiled build is older than {', '.join(stale)})"
        warnings.warn(f"vlmplan: the compiled simulator engine is older than {', '.join(stale)}; "
                      "running it from source (slower). Rebuild it with: pip install -e .", stacklevel=2)
    else:
        return "compiled (mypyc)"
    sys.meta_path.insert(0, _SourceFirst(set(compiled)))
    return engine


ENGINE = _choose_engine()  # how the engine loop runs in this process, for benchmarks and reports
