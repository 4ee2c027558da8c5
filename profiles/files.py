"""Files in and out: outputs written whole or not at all, inputs read only when they are plain files.

Writing. Every file vlmplan writes (plans, spreadsheets, calibration profiles
and their partial measurements) goes through ``atomic_write`` or
``write_all``: the content is written to a temporary file in the same folder,
``.<name>.vlmplan-tmp-<pid>``, then renamed over the target. A target that
exists must be a regular file: a directory, device, FIFO, socket or symbolic
link is refused (renaming over ``/dev/null`` as root would replace the device
with a file). ``write_all`` checks every target first, writes every temporary
file, then renames them all, so several outputs appear together or none does.
A temporary file whose process is gone (a killed run) is removed by the next
write to the same target.

Reading. ``read_text`` is the one way vlmplan reads an input file (scenario,
trace, calibration profile, partial measurements): it refuses anything but a
regular file before opening it (``/dev/zero`` or a FIFO would never end), and
files over a size cap; a file that is not UTF-8 is an error naming
the line. ``read_json`` is the one way a JSON file is read (a calibration
profile, a ServeGen dataset), and ``parse_json_object`` the one way a JSON
text is parsed (also each line of a JSON-lines file): nesting checked before
the parser recurses, and every problem ``file: line N: reason``. ``snippet``
quotes file content in an error message: short, one
line, non-printing characters escaped, so a message never carries a whole
line of someone's file (``/proc/self/environ`` holds the environment).
"""

import json
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from profiles.errors import VlmplanError

TEMPORARY_MARK = ".vlmplan-tmp-"
MAX_INPUT_BYTES = 4 * 1024**3  # the largest file read line by line (a trace: tens of millions of requests)
MAX_TEXT_BYTES = 64 * 1024**2  # the largest file read whole (a scenario, a calibration profile)
MAX_NESTING = 100  # brackets inside brackets: our files use fewer than 10
SNIPPET_CHARS = 24  # at most this much of a file's content is quoted in a message
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when installed: no tags run code


# ---------------------------------------------------------------- kinds of files


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


# ---------------------------------------------------------------- writing


def _default_file_mode() -> int:
    """0o666 less the process umask: the mode ``open()`` would have given a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_path(target: Path) -> Path:
    """The temporary file this process writes ``target``'s content to before renaming it."""
    return target.with_name(f".{target.name}{TEMPORARY_MARK}{os.getpid()}")


def check_output_path(path: Path | str, option: str) -> None:
    """Fail (``VlmplanError`` naming ``option`` and ``path``) unless ``path`` is a regular file or absent,
    in an existing directory."""
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise VlmplanError(f"{where}: cannot write: {err.strerror or err}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise VlmplanError(f"{where}: is {_kind(mode)}; vlmplan writes only regular files")
    if not path.parent.is_dir():
        raise VlmplanError(f"{where}: directory {path.parent} does not exist")


def remove_stale_temporaries(target: Path) -> None:
    """Remove temporary files a killed run left for ``target`` (their process is gone)."""
    for leftover in target.parent.glob(f".{_glob_escape(target.name)}{TEMPORARY_MARK}*"):
        pid_text = leftover.name.rsplit(TEMPORARY_MARK, 1)[-1]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            leftover.unlink(missing_ok=True)


def _glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (it may still be writing its temporary file)."""
    if pid == os.getpid():
        return False  # our own leftover from an earlier, failed attempt
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@dataclass(frozen=True)
class Output:
    """One file to write: its path, the option that named it (for messages), and how to write its content."""

    path: Path
    write: Callable[[Path], object]  # write(temporary path)
    option: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # a str is welcome too


def write_all(outputs: Sequence[Output], before_commit: Callable[[], object] | None = None) -> None:
    """Write every output or none: check all targets, write all temporary files, (``before_commit()``,
    e.g. printing to stdout), then rename each over its target. On any failure the temporaries are removed
    and no target has changed; an operating-system failure is a ``VlmplanError`` naming the option and path."""
    for output in outputs:
        check_output_path(output.path, output.option)
    written: list[tuple[Output, Path]] = []
    try:
        for output in outputs:
            temporary = temporary_path(output.path)
            written.append((output, temporary))
            try:
                remove_stale_temporaries(output.path)
                _write_temporary(output, temporary)
            except OSError as err:
                where = f"{output.option} {output.path}".strip()
                raise VlmplanError(f"{where}: cannot write: {err.strerror or err}") from None
        if before_commit is not None:
            before_commit()
        _commit(written)
    finally:
        for _, temporary in written:
            temporary.unlink(missing_ok=True)


def _commit(written: list[tuple["Output", Path]]) -> None:
    """Rename every temporary file over its target, each target checked again just before."""
    try:
        for output, _ in written:
            check_output_path(output.path, output.option)  # nothing special put there while we wrote
        for output, temporary in written:
            os.replace(temporary, output.path)
    except OSError as err:
        raise VlmplanError(f"{_where(err, written)}: cannot write: {err.strerror or err}") from None


def _write_temporary(output: Output, temporary: Path) -> None:
    """The content into a fresh temporary file with the mode a new file gets."""
    temporary.unlink(missing_ok=True)
    output.write(temporary)
    os.chmod(temporary, _default_file_mode())


def _where(err: OSError, written: Iterable[tuple[Output, Path]]) -> str:
    """The option and target an ``OSError`` concerns (its file name is the temporary's or the target's)."""
    for output, temporary in written:
        if err.filename in (str(temporary), str(output.path)):
            return f"{output.option} {output.path}".strip()
    return str(err.filename or "output")


def atomic_write(path: Path, write: Callable[[Path], object], option: str = "") -> None:
    """Call ``write(temporary path)``, then move the file to ``path``; on any failure remove it."""
    write_all([Output(Path(path), write, option)])


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------- reading


def open_input(path: Path | str, what: str, error: type[VlmplanError] = VlmplanError,
               max_bytes: int = MAX_INPUT_BYTES) -> BinaryIO:
    """The regular file at ``path``, opened for reading in binary; the caller closes it.

    ``what`` names the file's role in messages ("scenario", "trace"); every problem is an ``error``
    naming the path: missing, not a regular file (checked before opening, so a device or FIFO is never
    read or even opened), larger than ``max_bytes``, or unreadable.
    """
    path = Path(path)
    try:
        info = os.stat(path)  # follows a symbolic link: reading through one is fine
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: is {_kind(info.st_mode)}, not a {what} file")
        if info.st_size > max_bytes:
            raise error(f"{path}: {info.st_size:,} bytes; a {what} file may have at most {max_bytes:,}")
        handle = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped for something else since the stat
        handle.close()
        raise error(f"{path}: not a regular {what} file")
    return handle


def read_text(path: Path | str, what: str, error: type[VlmplanError] = VlmplanError,
              max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of the regular file at ``path`` (``open_input``; a leading byte-order mark dropped);
    a file that is not UTF-8 is an ``error`` naming the line."""
    with open_input(path, what, error, max_bytes) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as err:
            raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    if len(data) > max_bytes:  # grew since the stat
        raise error(f"{path}: more than {max_bytes:,} bytes; a {what} file may have at most that")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{path}: line {line}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def check_nesting(text: str, where: str, error: type[VlmplanError] = VlmplanError,
                  max_depth: int = MAX_NESTING, first_line: int = 1) -> None:
    """Refuse JSON or flow-style YAML ``text`` nested deeper than ``max_depth`` brackets, naming the line
    (``text`` starting on line ``first_line`` of its file), before a parser recurses into it (100,000 nested
    lists crash a C parser). Quoted strings are skipped; one linear pass."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # too few brackets to nest that deep: skips the pass for a trace's short lines
    depth, line, quote, escaped, previous = 0, first_line, "", False, " "
    for char in text:
        if char == "\n":
            line += 1
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char == '"' or (char == "'" and previous in " \t\n[{,:"):  # an apostrophe in a word is no quote
            quote = char
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise error(f"{where}: line {line}: nested more than {max_depth} levels deep")
        elif char in "]}":
            depth = max(0, depth - 1)
        previous = char


def parse_json_object(text: str, path: Path | str, error: type[VlmplanError] = VlmplanError,
                      first_line: int = 1) -> dict[str, Any]:
    """The JSON object ``text`` holds (``text`` starts on line ``first_line`` of file ``path``: a whole file,
    or one line of a JSON-lines file). Every problem is an ``error`` ``path: line N: reason``: nested too deep
    (checked before the parser recurses), not valid JSON, or a value other than an object."""
    check_nesting(text, str(path), error, first_line=first_line)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        content = text.rstrip()
        if err.pos >= len(content):  # a truncated document: name its last line, not the blank one after it
            line, place = first_line + content.count("\n"), "the document ends early"
        else:
            line, place = first_line + err.lineno - 1, f"column {err.colno}"
        raise error(f"{path}: line {line}: not valid JSON: {err.msg} ({place})") from None
    if not isinstance(value, dict):
        line = first_line + text[: len(text) - len(text.lstrip())].count("\n")  # where the value starts
        raise error(f"{path}: line {line}: not a JSON object but {_json_kind(value)}")
    return value


def _json_kind(value: object) -> str:
    """What a parsed JSON value is, in words ("a list", "a number")."""
    kinds = ((list, "a list"), (str, "a string"), (bool, "true or false"), (int | float, "a number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def read_json(path: Path | str, what: str, error: type[VlmplanError] = VlmplanError,
              max_bytes: int = MAX_TEXT_BYTES) -> tuple[dict[str, Any], str]:
    """The JSON object in the regular file at ``path`` and the file's text (for ``line_of``): ``read_text``
    then ``parse_json_object``, so every problem is an ``error`` ``path: line N: reason`` (or ``path: reason``
    for a file that cannot be read)."""
    text = read_text(path, what, error, max_bytes)
    return parse_json_object(text, path, error), text


def check_yaml_nesting(text: str, where: str, error: type[Exception] = VlmplanError,
                       max_depth: int = MAX_NESTING) -> None:
    """Refuse YAML ``text`` whose lists and mappings, block or flow style, nest deeper than ``max_depth``,
    naming the line, before a loader builds it (the C loader builds nodes recursively: 100,000 levels of
    ``- `` crashed the process). Reads the parser's events, which need no recursion: one linear pass that
    stops at the first level too deep. A syntax error is left to the loader, which names its position."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=SAFE_LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    line = event.start_mark.line + 1 if event.start_mark is not None else 1
                    raise error(f"{where}: line {line}: nested more than {max_depth} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as problem:
        # PyYAML >= 6.0.4 scans flow brackets ahead of the events and stops at its own depth limit (1,000):
        # the same refusal, at the line it names. Any other syntax error is left to the loader.
        mark = getattr(problem, "problem_mark", None)
        if "nesting depth" in str(getattr(problem, "problem", "")) and mark is not None:
            raise error(f"{where}: line {mark.line + 1}: nested more than {max_depth} levels deep") from None
        return


def line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """The line (from 1) where field path ``loc`` (keys and list indexes, as pydantic gives them) sits in
    JSON or YAML ``text``; the deepest part found when the path ends early; None when ``text`` does not parse."""
    try:
        node = yaml.compose(text, Loader=SAFE_LOADER)
    except yaml.YAMLError:
        return None
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """``text`` quoted for an error message: at most ``limit`` characters, control characters escaped."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return f"'{escaped}{'...' if len(text) > limit else ''}'"
