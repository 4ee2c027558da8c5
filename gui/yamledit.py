"""Edits of a scenario's YAML text at a field path that keep the rest as written: comments, order, flow style.

The structured editor (``gui.form``) writes through these, so the YAML stays
the one description of the scenario and the form a view of it. A path is the
field path pydantic's errors use, as a tuple: ``("traffic", "classes", 0,
"share")``. ``set_field`` replaces a value's text in place, adds a missing
key to its mapping (in the mapping's own style: a new line in a block, ``,
key: value`` in a ``{...}``) and creates missing mappings on the way;
``value=None`` removes the key. Qt-free.
"""

import json
import math

import yaml

from planner.scenario import SAFE_LOADER
from profiles.files import check_yaml_nesting

FieldPath = tuple[str | int, ...]


class YamlEditError(ValueError):
    """The text cannot take the edit (invalid YAML, or the path runs through a value that is not a mapping/list)."""


def yaml_scalar(typed: str) -> str:
    """What a user typed in a field, as the YAML scalar text to write.

    Numbers keep the user's spelling when YAML reads them as numbers;
    spellings YAML 1.1 reads as text (``1e6``) are written out as numbers
    (1000000); anything else is a plain word when YAML reads it back
    unchanged, else a quoted string (the schema then says what is wrong).
    """
    text = typed.strip()
    try:
        loaded = load_yaml(text)
    except YamlEditError:
        loaded = None
    if isinstance(loaded, int | float) and not isinstance(loaded, bool) and text:
        return text
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        return str(int(number)) if number.is_integer() else repr(number) if "e" not in repr(number) else text
    return text if isinstance(loaded, str) and loaded == text and "#" not in text else json.dumps(text)


def load_yaml(text: str) -> object:
    """``text`` parsed, or YamlEditError: a syntax error, or lists and mappings nested too deep (checked before
    the loader recurses into them: 100,000 levels of ``- `` crash the C loader)."""
    check_yaml_nesting(text, "the YAML", YamlEditError)
    try:
        return yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise YamlEditError(f"the YAML does not parse: {error}") from None


def set_field(text: str, path: FieldPath, value: str | None) -> str:
    """``text`` with the value at ``path`` replaced by the YAML text ``value`` (None: the key removed)."""
    if not path:
        raise YamlEditError("an empty field path")
    check_yaml_nesting(text, "the YAML", YamlEditError)
    try:
        root = yaml.compose(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise YamlEditError(f"the YAML does not parse: {error}") from None
    if root is None:
        raise YamlEditError("the YAML is empty")
    offsets = _line_offsets(text)
    parent, missing = root, list(path)
    while len(missing) > 1:
        child = _child(parent, missing[0])
        if child is None:
            break
        parent, missing = child, missing[1:]
    if len(missing) > 1:  # a mapping on the way is missing: add it holding the rest, in flow style
        if value is None:
            return text  # nothing to remove
        nested = value
        for key in reversed(missing[1:]):
            nested = f"{{{key}: {nested}}}"
        return _insert(text, offsets, parent, missing[0], nested)
    key = missing[0]
    node = _child(parent, key)
    if node is None:
        return text if value is None else _insert(text, offsets, parent, key, value)
    if value is None:
        return _remove(text, offsets, parent, key)
    return text[:_index(offsets, node.start_mark)] + value + text[_end(offsets, node):]


def _child(node: yaml.Node, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)), None)
    if isinstance(node, yaml.SequenceNode):
        if not isinstance(key, int):
            raise YamlEditError(f"{key!r}: a list takes a position, not a name")
        return node.value[key] if 0 <= key < len(node.value) else None
    raise YamlEditError(f"{key!r}: the value above it is not a mapping or a list")


def _insert(text: str, offsets: list[int], mapping: yaml.Node, key: str | int, value: str) -> str:
    """``key: value`` added as the last item of ``mapping``, in its style."""
    if not isinstance(mapping, yaml.MappingNode):
        raise YamlEditError(f"{key!r}: cannot add a key to a value that is not a mapping")
    if mapping.flow_style or not mapping.value:
        if not mapping.value:  # `{}`: after the brace
            at = _index(offsets, mapping.start_mark) + 1
            return text[:at] + f"{key}: {value}" + text[at:]
        at = _end(offsets, mapping.value[-1][1])
        return text[:at] + f", {key}: {value}" + text[at:]
    indent = mapping.value[0][0].start_mark.column
    end = _end(offsets, mapping.value[-1][1])
    line_end = text.find("\n", end)
    at = len(text) if line_end < 0 else line_end + 1
    prefix = "" if text.endswith("\n") or line_end >= 0 else "\n"
    return text[:at] + prefix + " " * indent + f"{key}: {value}\n" + text[at:]


def _remove(text: str, offsets: list[int], mapping: yaml.Node, key: str | int) -> str:
    """``mapping`` without ``key`` (its line in a block; the item and a comma in a ``{...}``)."""
    assert isinstance(mapping, yaml.MappingNode)
    items = mapping.value
    at = next(i for i, (k, _) in enumerate(items) if k.value == str(key))
    key_node, value_node = items[at]
    start, end = _index(offsets, key_node.start_mark), _end(offsets, value_node)
    if mapping.flow_style:
        if at > 0:  # from the end of the previous value (its comma) to the end of this one
            start = _end(offsets, items[at - 1][1])
        elif len(items) > 1:  # the first: up to the next key
            end = _index(offsets, items[1][0].start_mark)
        return text[:start] + text[end:]
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return text[:line_start] + text[len(text) if line_end < 0 else line_end + 1:]


def _end(offsets: list[int], node: yaml.Node) -> int:
    """Where a value's own text ends: a block collection's end mark lies at the next token, past blank and
    comment lines, so it ends where its last item does."""
    if isinstance(node, yaml.ScalarNode) or node.flow_style or not node.value:
        return _index(offsets, node.end_mark)
    last = node.value[-1]
    return _end(offsets, last[1] if isinstance(node, yaml.MappingNode) else last)


def _line_offsets(text: str) -> list[int]:
    """The index in ``text`` where each line starts."""
    offsets = [0]
    offsets += [i + 1 for i, char in enumerate(text) if char == "\n"]
    return offsets


def _index(offsets: list[int], mark: yaml.Mark) -> int:
    """A mark's index in the text, from its line and column (the C parser's index can count bytes)."""
    return offsets[mark.line] + mark.column if mark.line < len(offsets) else offsets[-1]
