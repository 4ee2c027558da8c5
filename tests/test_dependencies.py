"""Every third-party import is declared in pyproject.toml, in the place its package may use.

A green CI once hid an undeclared dependency (scipy, imported by calibrate/fit.py):
the development machine had it installed by hand. This test reads every import
statement of the project's code (module level and inside functions) and checks
that the distribution providing it is a declared requirement of the core
package or of an extra that code may rely on.
"""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project's packages, and the helper modules that tests and benchmarks import from beside them.
FIRST_PARTY = ({"planner", "sim", "profiles", "gui", "calibrate", "tests", "benchmarks", "setup"}
               | {p.stem for d in ("tests", "benchmarks") for p in (ROOT / d).glob("*.py")})
# Which extras each top-level directory may import from, beyond the core dependencies.
ALLOWED_EXTRAS = {
    "sim": (),
    "profiles": (),
    "planner": ("cluster",),  # dask only behind --scheduler, imported there
    "calibrate": ("calibrate",),
    "gui": ("gui",),
    "tests": ("test", "gui", "calibrate", "cluster"),
    "benchmarks": ("test", "gui", "calibrate", "cluster"),
}
# Build-time only (setup.py runs in the isolated build environment of [build-system]).
BUILD_ONLY = {"setuptools", "mypyc"}


def _normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -, _ and . as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.match(r"[A-Za-z0-9_.\-]+", requirement.strip()).group(0))


def declared() -> dict[str, set[str]]:
    """'core' and each extra -> the distribution names it declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {"core": {_requirement_name(r) for r in project["dependencies"]}}
    for extra, requirements in project["optional-dependencies"].items():
        found[extra] = {_requirement_name(r) for r in requirements}
    return found


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY | BUILD_ONLY}


def test_every_third_party_import_is_declared_where_its_code_may_use_it():
    requirements = declared()
    providers = importlib.metadata.packages_distributions()
    problems = []
    for directory, extras in ALLOWED_EXTRAS.items():
        allowed = requirements["core"].union(*(requirements[e] for e in extras))
        for path in sorted((ROOT / directory).rglob("*.py")):
            for module in sorted(third_party(imported_modules(path))):
                distributions = {_normalise(d) for d in providers.get(module, [])}
                where = path.relative_to(ROOT)
                if not distributions:
                    problems.append(f"{where}: imports {module!r}, which no installed distribution provides")
                elif not distributions & allowed:
                    problems.append(f"{where}: imports {module!r} (from {', '.join(sorted(distributions))}), "
                                    f"not declared in pyproject.toml's core dependencies or extras "
                                    f"{', '.join(extras) or '(none)'}")
    assert not problems, "\n".join(problems)


def test_the_check_catches_an_undeclared_import(tmp_path):
    """The rule above would have caught scipy: a module importing a distribution nobody declared fails it."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from scipy.optimize import nnls\n    import json\n    import sim.api\n")
    assert third_party(imported_modules(module)) == {"scipy"}
    assert "scipy" in declared()["calibrate"], "calibrate/fit.py uses scipy: the calibrate extra must declare it"
