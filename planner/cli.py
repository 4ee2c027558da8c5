"""The ``vlmplan`` command: a thin layer that parses, calls one planner function, prints.

Every user error is a ``VlmplanError``; ``main`` prints its message and exits 2.
Output files are written only after the whole result exists (atomically).
"""

import json
import sys
from pathlib import Path

import click

from profiles.errors import VlmplanError

SCENARIO_ARG = click.argument(
    "scenario", required=False, type=click.Path(dir_okay=False, path_type=Path)
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vlmplan")
def cli() -> None:
    """vlmplan: GPUs, cost per day, p50/p99 latency and quality for serving VLMs."""


def _scenario(path: Path | None):
    """Load the scenario at ``path``, or the bundled default when none is given."""
    from planner.scenario import default_scenario_path, load_scenario

    return load_scenario(path or default_scenario_path())


@cli.command()
@SCENARIO_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the JSON contract instead of a table.")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--horizon", "horizon_s", type=float, default=None, help="Simulated seconds (overrides the scenario).")
@click.option("--deployment", "deployments", multiple=True, help="Only these deployments (by name).")
def simulate(scenario: Path | None, as_json: bool, seed: int | None, horizon_s: float | None,
             deployments: tuple[str, ...]) -> None:
    """Simulate every deployment of SCENARIO as written (default: the bundled scenario)."""
    from planner.run import render_table, simulate_scenario

    loaded = _scenario(scenario)
    report = simulate_scenario(loaded, seed=seed, horizon_s=horizon_s, only=deployments,
                               progress=None if as_json else _stderr_progress)
    click.echo(json.dumps(report.to_contract_dict(), indent=2) if as_json else render_table(report))


@cli.command()
@SCENARIO_ARG
def validate(scenario: Path | None) -> None:
    """Check SCENARIO against the schema and the catalog; name every wrong field."""
    loaded = _scenario(scenario)
    click.echo(f"ok: {loaded.name}: {len(loaded.deployments)} deployments, "
               f"{len(loaded.traffic.classes)} request classes")


@cli.command()
def schema() -> None:
    """Print the scenario JSON Schema (for editors)."""
    from planner.scenario import scenario_json_schema

    click.echo(json.dumps(scenario_json_schema(), indent=2))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--profile", "profile_paths", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Calibration profile(s) whose measured numbers to mark.")
def catalog(as_json: bool, profile_paths: tuple[Path, ...]) -> None:
    """List the GPUs, models and hosted APIs in the catalog."""
    from planner.catalog_view import render_catalog
    from profiles.catalog import load_catalog

    measured = {}
    if profile_paths:  # only then is the calibration loader needed
        from profiles.calibration import load_profile

        measured = {p.model_id: p.provenance for p in map(load_profile, profile_paths)}
    click.echo(render_catalog(load_catalog(), as_json=as_json, measured=measured))


@cli.command()
@click.option("--model", "model_id", required=True, help="Catalog model id, e.g. smolvlm-256m.")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True)
@click.option("--quick", is_flag=True, help="Fewer shapes and repeats (minutes, not hours).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def calibrate(model_id: str, device: str, quick: bool, out_path: Path) -> None:
    """Measure MODEL's components on this machine and write a calibration profile."""
    from calibrate.run import run_calibration, tqdm_progress

    with tqdm_progress() as progress:
        profile = run_calibration(model_id, device, quick, out_path, progress)
    click.echo(f"wrote {out_path}: {profile.provenance}")


def _stderr_progress(fraction: float) -> None:
    """A one-line progress indicator on stderr (stdout stays clean for piping)."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\rsimulating... {fraction:6.1%}")
        sys.stderr.flush()


def main() -> None:
    """Console-script entry point: run the CLI, turning user errors into one message and exit 2."""
    try:
        cli.main(standalone_mode=False)
    except VlmplanError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
