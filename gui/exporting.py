"""Writing the GUI's comparison to a file (Qt-free): CSV here, written atomically.

The file appears complete or not at all: the table goes to a temporary file
next to the target, which then replaces it.
"""

import os
from pathlib import Path

from planner.run import ScenarioReport, comparison_frame
from profiles.errors import ConfigurationError


def export_filter() -> str:
    """The file-dialog filter for the formats ``export_comparison`` writes."""
    return "CSV (*.csv)"


def export_comparison(report: ScenarioReport, path: Path) -> Path:
    """Write one row per deployment (contract metrics as columns) to ``path``; return the path written."""
    if path.suffix.lower() != ".csv":
        raise ConfigurationError(f"{path}: can export .csv only (got {path.suffix or 'no suffix'!r})")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        comparison_frame(report).to_csv(tmp, index_label="deployment")
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise ConfigurationError(f"{path}: cannot write: {error.strerror or error}") from None
    return path
