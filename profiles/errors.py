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


class StageError(ConfigurationError):
    """A stage of a deployment cannot run as configured; says which stage (and request class) and why.

    ``field_path`` is the stage's path inside its deployment (``stages.2``,
    ``router.classifier``); ``request_class`` is the class whose requests the
    stage cannot take, or "" when the stage cannot run at all.
    """

    def __init__(self, field_path: str, stage: str, problem: str, request_class: str = "") -> None:
        super().__init__(field_path, stage, problem, request_class)  # all in args: pickles to worker processes
        self.field_path = field_path
        self.stage = stage
        self.problem = problem
        self.request_class = request_class

    def __str__(self) -> str:
        what = f"stage {self.stage!r}" + (f", class {self.request_class!r}" if self.request_class else "")
        return f"{what}: {self.problem}"
