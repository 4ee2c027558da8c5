"""The ``vlmplan`` command: a thin layer that parses, calls one planner function, prints.

Every user error is a ``VlmplanError``; ``main`` prints its message and exits 2.
Output files are written only after the whole result exists (atomically).
"""

import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from profiles.errors import ConfigurationError, VlmplanError
from sim import ENGINE, limits


class FiniteFloatRange(click.FloatRange):
    """A ``click.FloatRange`` that also refuses NaN and infinity (every comparison with NaN is false)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)  # Any: click's own stubs differ by version
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


# Options shared by several commands, defined once; their bounds are the scenario schema's (sim.limits).
SCENARIO_ARG = click.argument(
    "scenario", required=False, type=click.Path(path_type=Path)  # profiles.files.read_text names a directory
)
HORIZON_OPTION = click.option(
    "--horizon", "horizon_s", type=FiniteFloatRange(min=0, min_open=True, max=limits.MAX_HORIZON_S), default=None,
    help="Simulated seconds (overrides the scenario; 86400 = a day).",
)
SEED_OPTION = click.option("--seed", type=click.IntRange(min=0, max=limits.MAX_SEED), default=None,
                           help="Override the scenario's seed.")
DEPLOYMENTS_OPTION = click.option("--deployment", "deployments", multiple=True, help="Only these deployments (by name).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vlmplan", message=f"%(prog)s %(version)s (simulator engine: {ENGINE})")
def cli() -> None:
    """vlmplan: GPUs, cost per day, p50/p99 latency and quality for serving VLMs."""


def _scenario(path: Path | None, horizon_s: float | None = None):
    """Load the scenario at ``path``, or the bundled default when none is given; with ``--horizon``, check
    the run's volume at that horizon too."""
    from planner.scenario import check_run, default_scenario_path, load_scenario

    where = path or default_scenario_path()
    loaded = load_scenario(where)
    if horizon_s is not None:
        check_run(loaded, str(where), horizon_s)
    return loaded


@contextmanager
def _naming(path: Path | None) -> Iterator[None]:
    """Prefix a configuration problem found while running (not by the checks), or running out of memory,
    with the scenario file."""
    from planner.scenario import default_scenario_path

    try:
        yield
    except ConfigurationError as err:
        raise VlmplanError(f"{path or default_scenario_path()}: {err}") from None
    except MemoryError:  # the last resort: the limits keep inputs bounded, not every combination of them
        raise VlmplanError(f"{path or default_scenario_path()}: ran out of memory while running it; try fewer "
                           f"deployments at once (--deployment), a shorter horizon or less traffic") from None


@cli.command()
@SCENARIO_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the JSON contract instead of a table.")
@SEED_OPTION
@HORIZON_OPTION
@DEPLOYMENTS_OPTION
def simulate(scenario: Path | None, as_json: bool, seed: int | None, horizon_s: float | None,
             deployments: tuple[str, ...]) -> None:
    """Simulate every deployment of SCENARIO as written (default: the bundled scenario)."""
    from planner.run import render_table, simulate_scenario

    loaded = _scenario(scenario, horizon_s)
    with _naming(scenario), _stderr_progress("simulating") as progress:
        report = simulate_scenario(loaded, seed=seed, horizon_s=horizon_s, only=deployments, progress=progress)
    _echo(json.dumps(report.to_contract_dict(), indent=2) if as_json else render_table(report))


@cli.command()
@SCENARIO_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the plan's JSON instead of a table.")
# Output paths are checked by profiles.files.check_output_path (a regular file or none; one line naming the option).
@click.option("--xlsx", "xlsx_path", type=click.Path(path_type=Path), help="Write a workbook with charts.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write the comparison as CSV.")
@click.option("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786); default: local processes.")
@click.option("--workers", type=click.IntRange(min=1, max=limits.MAX_LOCAL_WORKERS), default=None,
              help="Local worker processes (default: cores).")
@SEED_OPTION
@HORIZON_OPTION
@DEPLOYMENTS_OPTION
@click.option("--benchmark", default=None, help="Quality benchmark (default: chosen from the traffic, e.g. DocVQA).")
@click.option("--autoscale", is_flag=True,
              help="Also size the auto stages window by window over the day and price that against static sizing.")
@click.option("--autoscale-window", "autoscale_window_s", default=None,
              type=FiniteFloatRange(),  # planner.autoscale.window_starts: 2 to 288 windows tiling a day
              help="Autoscaling window in seconds (default 3600); implies --autoscale.")
@click.option("--size-all", is_flag=True,
              help="Search the replicas of every model stage, as if each said `replicas: auto`.")
@click.option("--sensitivity", "with_sensitivity", is_flag=True,
              help="Also simulate each sized deployment under more and less load and longer answers.")
def plan(scenario: Path | None, as_json: bool, xlsx_path: Path | None, csv_path: Path | None, scheduler: str | None,
         workers: int | None, seed: int | None, horizon_s: float | None, deployments: tuple[str, ...],
         benchmark: str | None, autoscale: bool, autoscale_window_s: float | None, size_all: bool,
         with_sensitivity: bool) -> None:
    """Size each deployment of SCENARIO (`replicas: auto`: the cheapest sizes meeting the SLO), compare, export."""
    from planner.autoscale import DEFAULT_WINDOW_S, check_autoscalable
    from planner.compare import check_benchmark
    from planner.executors import make_executor
    from planner.export import csv_output, xlsx_output
    from planner.plan import plan_scenario, render_plan
    from planner.scenario import default_scenario_path, scenario_catalog
    from profiles.files import check_output_path, write_all

    loaded = _scenario(scenario, horizon_s)
    if benchmark is not None:
        check_benchmark(benchmark, scenario_catalog(loaded))
    for path, option in ((xlsx_path, "--xlsx"), (csv_path, "--csv")):
        if path is not None:
            check_output_path(path, option)
    window_s = autoscale_window_s if autoscale_window_s is not None else DEFAULT_WINDOW_S if autoscale else None
    if window_s is not None:  # before minutes of sizing, and naming the file
        check_autoscalable(loaded.traffic, window_s, where=f"{scenario or default_scenario_path()}: traffic.arrivals")
    with _naming(scenario), make_executor(scheduler, workers) as executor, _stderr_progress("planning") as progress:
        report = plan_scenario(loaded, executor, seed=seed, horizon_s=horizon_s, only=deployments,
                               benchmark=benchmark, autoscale_window_s=window_s, with_sensitivity=with_sensitivity,
                               size_all=size_all,
                               progress=progress)
    outputs = [make(report, path, option) for make, path, option in
               ((xlsx_output, xlsx_path, "--xlsx"), (csv_output, csv_path, "--csv")) if path is not None]
    text = json.dumps(report.to_contract_dict(), indent=2) if as_json else render_plan(report)
    write_all(outputs, before_commit=lambda: _echo(text))  # the files and stdout: all of them, or none


@cli.command()
@SCENARIO_ARG
def validate(scenario: Path | None) -> None:
    """Check SCENARIO against the schema and the catalog; name every wrong field."""
    loaded = _scenario(scenario)
    _echo(f"ok: {loaded.name}: {len(loaded.deployments)} deployments, "
               f"{len(loaded.traffic.classes)} request classes")


@cli.command()
def schema() -> None:
    """Print the scenario JSON Schema (for editors)."""
    from planner.scenario import scenario_json_schema

    _echo(json.dumps(scenario_json_schema(), indent=2))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--profile", "profile_paths", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Calibration profile(s): show what each covers (model, device, shapes).")
def catalog(as_json: bool, profile_paths: tuple[Path, ...]) -> None:
    """List the GPUs, models and hosted APIs in the catalog (and what calibration profiles cover)."""
    from planner.catalog_view import render_catalog
    from profiles.calibration import load_profile
    from profiles.catalog import load_catalog

    profiles = [load_profile(path) for path in profile_paths]
    _echo(render_catalog(load_catalog(), as_json=as_json, profiles=profiles))


@cli.command()
@click.option("--model", "model_id", required=True, help="Catalog model id, e.g. smolvlm-256m.")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True)
@click.option("--quick", is_flag=True, help="Fewer shapes and repeats (minutes, not hours).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def calibrate(model_id: str, device: str, quick: bool, out_path: Path) -> None:
    """Measure MODEL's components on this machine and write a calibration profile."""
    from calibrate.run import check_device, run_calibration, tqdm_progress
    from profiles.catalog import load_catalog
    from profiles.files import check_output_path

    load_catalog().model(model_id)  # an unknown id or a missing GPU fails here, before a progress bar is drawn
    check_device(device)
    if out_path.parent.is_dir():  # a special file in --out's place: refused now, not after the measuring
        check_output_path(out_path, "--out")
    with tqdm_progress() as progress:
        profile = run_calibration(model_id, device, quick, out_path, progress)
    _echo("\n".join(profile.fit_lines()))
    _echo(f"wrote {out_path}: {profile.provenance}")


@cli.command()
@SCENARIO_ARG
@HORIZON_OPTION
@click.option("--screenshot", "screenshot_path", type=click.Path(dir_okay=False, path_type=Path), hidden=True,
              help="Run, save the window as PNG, quit.")
def gui(scenario: Path | None, horizon_s: float | None, screenshot_path: Path | None) -> None:
    """Open the desktop app on SCENARIO (default: the bundled scenario)."""
    try:
        from gui.app import run_gui
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in ("PySide6", "shiboken6", "pyqtgraph"):
            raise
        raise VlmplanError(f"vlmplan gui needs {error.name}: pip install 'vlmplan[gui]'") from None
    sys.exit(run_gui(scenario, horizon_s=horizon_s, screenshot_path=screenshot_path))


@cli.command()
def doctor() -> None:
    """Say what this machine has and lacks for each part of vlmplan (exit 1 if something is missing)."""
    from planner.doctor import checks, render

    found = checks()
    _echo(render(found))
    if not all(check.ok for check in found):
        sys.exit(1)


def _echo(text: str) -> None:
    """Print ``text`` and a newline to stdout now; a failed write (a full disk, a closed pipe) is a
    ``VlmplanError`` instead of a traceback."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError as err:
        _silence_stdout()
        raise VlmplanError(f"stdout: cannot write: {err.strerror or err}") from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit cannot fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind stdout (tests capture it): nothing to flush
        pass


@contextmanager
def _stderr_progress(label: str) -> Iterator[Callable[[float], None]]:
    """A progress bar on stderr (also when stdout is piped or carries --json; stdout stays clean)."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=label, unit="%", file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    def update(fraction: float) -> None:
        bar.n = round(100 * fraction, 1)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def main() -> None:
    """Console-script entry point: run the CLI, turning user errors into one message and exit 2."""
    try:
        cli.main(standalone_mode=False)
    except VlmplanError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:  # a bad option or argument: one line too (`--help` shows the usage)
        click.echo(f"error: {error.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
