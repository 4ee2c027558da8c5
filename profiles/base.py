"""The pydantic base model every schema in vlmplan derives from.

``extra="forbid"`` makes a typo in a data file an error instead of a silently
ignored key; ``allow_inf_nan=False`` refuses ``.nan`` and ``.inf`` in any
number field; ``frozen=True`` because catalog entries and scenario settings
are values, shared between simulations and sent to worker processes.
"""

from pydantic import BaseModel, ConfigDict, ValidationError

from profiles.errors import VlmplanError


class StrictModel(BaseModel):
    """Immutable pydantic model that rejects unknown fields."""

    # NaN and infinity are never a valid setting (a price, a bandwidth, a size); JSON Schema has neither.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def describe_validation_error(error: ValidationError, where: str, data: object = None) -> str:
    """One readable line per problem: ``where: field.path: message``.

    Given the validated ``data``, paths name only the fields of the file: the
    labels pydantic adds for union members (a ``kind`` tag, ``constrained-int``)
    are dropped and the alternatives of one field are joined with "; or".
    """
    problems = []
    for problem in error.errors():
        loc = problem["loc"] if data is None else _file_path(problem["loc"], data)
        problems.append((loc, problem["msg"], len(loc) < len(problem["loc"])))
    lines: dict[str, list[str]] = {}
    for loc, message, in_union in problems:
        # A union alternative that failed at the top, when another one got deeper, is noise.
        if in_union and any(len(other) > len(loc) and other[: len(loc)] == loc for other, _, _ in problems):
            continue
        path = ".".join(str(part) for part in loc) or "(top level)"
        messages = lines.setdefault(f"{where}: {path}", [])
        if message not in messages:
            messages.append(message)
    return "\n".join(f"{path}: {'; or '.join(messages)}" for path, messages in lines.items())


def _file_path(loc: tuple, data: object) -> tuple:
    """``loc`` without union-member labels, found by walking ``data`` along it."""
    kept, node, tag_used = [], data, False
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, dict):
            is_tag = not last and not tag_used and part in (node.get("kind"), node.get("mode"))
            if is_tag or (not last and part not in node) or (part not in node and _is_union_label(part)):
                tag_used = tag_used or is_tag
                continue
            node, tag_used = node.get(part), False
        elif isinstance(node, list) and isinstance(part, int):
            node, tag_used = node[part] if 0 <= part < len(node) else None, False
        elif node is not None or _is_union_label(part):
            continue  # a label of a scalar's union member
        kept.append(part)
    return tuple(kept)


def _is_union_label(part: object) -> bool:
    """Whether ``part`` is a label pydantic gives a union member (not a field name of ours)."""
    return isinstance(part, str) and (
        part in _TYPE_LABELS or "-" in part or "[" in part or part[:1].isupper())


_TYPE_LABELS = frozenset({"float", "int", "str", "bool", "none", "list", "dict", "tuple", "set"})


def validation_failure(error: ValidationError, where: str, kind: type[VlmplanError],
                       data: object = None) -> VlmplanError:
    """Turn a pydantic ``ValidationError`` into our own error type naming ``where`` (and file paths, given ``data``)."""
    return kind(describe_validation_error(error, where, data))
