"""The one error tree of vlmplan.

Every error a user can cause (a bad scenario, catalog, trace or calibration
file, a configuration that cannot run) is a ``VlmplanError``. The CLI prints
its message on one line and exits with status 2; any other exception is a bug.
"""


class VlmplanError(Exception):
    """Base of every user-facing error; its message names the file/field/line and the problem."""


class CatalogError(VlmplanError):
    """A catalog entry (GPU, component, model, API) is missing, unknown or impossible."""


class ScenarioError(VlmplanError):
    """A scenario file or one of its fields is invalid."""


class TraceError(VlmplanError):
    """A trace file line is malformed."""


class ConfigurationError(VlmplanError):
    """A deployment cannot run as configured, e.g. a model that does not fit its GPUs."""


class CalibrationError(VlmplanError):
    """A calibration run or profile file is invalid."""
