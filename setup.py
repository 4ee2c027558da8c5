"""Build hook: compile the simulator's engine loop with mypyc when a C compiler is at hand.

Everything else about the package is declared in pyproject.toml. The modules
below run once or more per simulated engine event; compiled, a simulation
runs 1.7x to 2x faster with bit-identical results (they are type-checked
Python, compiled as they are). Without a working compiler the build falls
back to the pure-Python modules, and ``VLMPLAN_PURE_PYTHON=1`` runs them
from source even when compiled (see ``sim/__init__.py``).
"""

import os
import sys

from setuptools import setup

ENGINE_MODULES = [
    "sim/batcher.py",
    "sim/fifo.py",
    "sim/journey.py",
    "sim/kvcache.py",
    "sim/perfcache.py",
    "sim/policies.py",
    "sim/recorder.py",
    "sim/replica.py",
    "sim/router.py",
    "sim/sequence.py",
    "sim/stages/base.py",
    "sim/stages/model.py",
    "sim/ticks.py",
    "sim/timeseries.py",
    "sim/driver.py",
    "sim/traffic/closed_loop.py",
    "sim/workload.py",
]


def tell(message: str) -> None:
    """Say ``message`` on the user's terminal: pip captures a build's output and shows it only with -v, so a
    minute of compiling would otherwise pass in silence. No terminal (CI, a pipe): the build log only."""
    print(message, file=sys.stderr)
    try:
        with open("CON" if sys.platform == "win32" else "/dev/tty", "w") as terminal:
            terminal.write(f"\n{message}\n")
    except OSError:
        pass


def engine_extensions() -> list:
    """mypyc extensions of ``ENGINE_MODULES``, each optional (a failed compile leaves the .py)."""
    if os.environ.get("VLMPLAN_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("vlmplan: mypyc not available; the engine stays pure Python (slower)", file=sys.stderr)
        return []
    tell(f"vlmplan: compiling the simulator engine ({len(ENGINE_MODULES)} modules) with mypyc for speed; "
         "this takes 1 to 3 minutes (VLMPLAN_PURE_PYTHON=1 skips it)")
    try:
        extensions = mypycify(["--ignore-missing-imports", "--follow-imports=silent", *ENGINE_MODULES],
                              opt_level="3")
    except (Exception, SystemExit) as error:  # mypy's type errors end in SystemExit
        # A newer mypy may reject what an older one took: install anyway. The test suite
        # fails where a compiler is at hand but the engine is not compiled, so CI notices.
        reason = "type errors above" if isinstance(error, SystemExit) else repr(error)
        print(f"vlmplan: mypyc could not compile the engine ({reason}); it stays pure Python",
              file=sys.stderr)
        return []
    for extension in extensions:
        extension.optional = True  # no C compiler: install the pure-Python modules instead
        if sys.platform != "win32":  # no fused multiply-add: the same floats as the interpreter
            extension.extra_compile_args.append("-ffp-contract=off")
    return extensions


setup(ext_modules=engine_extensions())
