"""The pydantic base model every schema in vlmplan derives from.

``extra="forbid"`` makes a typo in a data file an error instead of a silently
ignored key; ``frozen=True`` because catalog entries and scenario settings are
values, shared between simulations and sent to worker processes.
"""

from pydantic import BaseModel, ConfigDict, ValidationError

from profiles.errors import VlmplanError


class StrictModel(BaseModel):
    """Immutable pydantic model that rejects unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe_validation_error(error: ValidationError, where: str) -> str:
    """One readable line per problem: ``where: field.path: message``."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"{where}: {path}: {problem['msg']}")
    return "\n".join(lines)


def validation_failure(error: ValidationError, where: str, kind: type[VlmplanError]) -> VlmplanError:
    """Turn a pydantic ``ValidationError`` into our own error type naming ``where``."""
    return kind(describe_validation_error(error, where))
