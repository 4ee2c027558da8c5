"""Trace files: recorded arrivals to replay, in our CSV format or two public formats.

Formats (``format`` argument), all comma-separated with a header line:

``vlmplan`` (ours)
    ``timestamp_s,class,images,audio_s,video_s,text_tokens,output_tokens``,
    optionally also ``video_fps`` and ``video_frame``. ``timestamp_s`` is
    seconds (any origin); ``images`` is a ``;``-separated list of
    ``WIDTHxHEIGHT`` pixel sizes (``1700x2200;1920x1080``), empty for none;
    ``audio_s``/``video_s`` are seconds; ``video_frame`` is ``WIDTHxHEIGHT``
    (default 640x360) and ``video_fps`` frames/s (default 2) of a video.
    ``output_tokens`` is at least 1. Example::

        timestamp_s,class,images,audio_s,video_s,text_tokens,output_tokens
        0.00,invoice,1700x2200,0,0,40,200
        0.35,dashboard,1920x1080;1920x1080,30,0,500,300

``azure`` (Azure LLM inference traces 2023/2024)
    ``TIMESTAMP`` (date-time such as ``2023-11-16 18:15:46.6805900``, UTC when
    no zone is given), ``ContextTokens``, ``GeneratedTokens``; text only.

``burstgpt`` (BurstGPT)
    ``Timestamp`` (seconds), ``Model``, ``Request tokens``, ``Response tokens``,
    ``Total tokens``, ``Log Type``; text only. With a ``Session ID`` column
    (releases since v1.2) the rows of a session are the turns of one
    conversation (``planner.workload_traces``).

``azure_lmm`` (Azure LMM inference trace 2025, multimodal)
    ``TIMESTAMP``, ``NumImages``, ``ContextTokens`` (read as the text
    tokens), ``GeneratedTokens``; the trace counts images without sizes, so
    each image is ``image_px`` (required).

Two more formats have readers of their own: ``mooncake`` (JSON lines with
prefix block hashes, ``planner.prefix_traces``) and ``servegen`` (a ServeGen
client's size distributions and arrival windows, from which requests are
drawn with the scenario's seed, ``planner.workload_traces``).

Public formats have no class column: every request goes to ``class_name``;
their extra columns are ignored, and a logged output of 0 tokens (a failed
request) is replayed as 1 token. Times are shifted so the first record is at
0 s; ``window_s`` keeps [start, end) of that time and ``time_scale`` divides it
(10 = replay ten times faster). A broken line raises ``TraceError``
("trace.csv: line 17: ContextTokens: 'abc' is not an integer") and nothing is returned.
"""

import csv
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO, Literal

from profiles.errors import TraceError
from profiles.files import open_input, snippet
from sim.limits import MAX_IMAGES_PER_REQUEST, listed
from sim.request import Request

TraceFormat = Literal["vlmplan", "azure", "burstgpt", "mooncake", "azure_lmm", "servegen"]
READERS = ("mooncake", "servegen")  # formats with a reader of their own (planner.prefix_traces, .workload_traces)
MAX_LINE_BYTES = 1024**2  # a trace line is ~100 bytes; a longer one is some other file
DEFAULT_VIDEO_FPS = 2.0
DEFAULT_VIDEO_FRAME_PX = (640, 360)
_PIXELS = re.compile(r"\s*([0-9]+)\s*[xX]\s*([0-9]+)\s*")


class _BadValue(ValueError):
    """A cell that cannot be read; the message says why (the caller adds file, line and column)."""


@dataclass(frozen=True, slots=True)
class _Record:
    """One parsed line: its raw timestamp (seconds, any origin) and the request without id/time."""

    timestamp_s: float
    request: Request
    session: str = ""  # the conversation it belongs to (BurstGPT's Session ID), "" for none


def load_trace(path: Path | str, format: TraceFormat = "vlmplan", *, time_scale: float = 1.0,
               window_s: tuple[float, float] | None = None, class_name: str = "trace", seed: int = 0,
               image_px: tuple[int, int] | None = None) -> list[Request]:
    """All requests of the trace at ``path``, time-ordered, ids from 0; ``TraceError`` on any bad line.

    ``seed`` draws a ``servegen`` client's requests; ``image_px`` is the size of each image of a trace that
    counts images without sizes (``azure_lmm``), and replaces ServeGen's sizes from image tokens."""
    if not time_scale > 0 or not math.isfinite(time_scale):
        raise TraceError(f"{path}: time_scale must be a positive number, not {time_scale}")
    if format == "mooncake":  # JSON lines with prefix block hashes (planner.prefix_traces)
        from planner.prefix_traces import read_mooncake

        records = [_Record(t, r) for t, r in read_mooncake(Path(path), class_name)]
        return _arrange(records, path, time_scale, window_s)
    if format == "servegen":  # a client's distributions, drawn (planner.workload_traces)
        from planner.workload_traces import read_servegen

        records = [_Record(t, r) for t, r in read_servegen(Path(path), class_name, seed, image_px)]
        return _arrange(records, path, time_scale, window_s)
    if format not in _PARSERS:
        raise TraceError(f"{path}: unknown trace format {format!r}; known: {', '.join([*_PARSERS, *READERS])}")
    parse = _PARSERS[format][2]
    if format == "azure_lmm":
        if image_px is None:
            raise TraceError(f"{path}: format azure_lmm counts images without sizes: set image_px (WIDTH, HEIGHT)")
        parse = partial(_azure_lmm_line, image_px=image_px)
    records = _read(Path(path), format, class_name, parse)
    if any(record.session for record in records):  # conversations (planner.workload_traces)
        from planner.workload_traces import link_sessions

        linked = link_sessions([(r.timestamp_s, r.session, r.request) for r in records])
        records = [_Record(t, r) for t, r in linked]
    return _arrange(records, path, time_scale, window_s)


def _read(path: Path, format: TraceFormat, class_name: str, parse: "Parser") -> list[_Record]:
    """Parse every line of the file (a regular file only: ``profiles.files.open_input``); the first bad line
    raises."""
    required, optional, _ = _PARSERS[format]
    with open_input(path, "trace", TraceError) as raw:
        reader = csv.reader(text_lines(raw, path))
        try:
            return list(_records(reader, path, required, optional, parse, class_name))
        except OSError as err:
            raise TraceError(f"{path}: cannot read trace: {err.strerror or err}") from None


def text_lines(raw: BinaryIO, path: Path) -> Iterator[str]:
    """The file's lines decoded one by one (a byte-order mark dropped), so a non-UTF-8 line is named;
    a line longer than ``MAX_LINE_BYTES`` (a file that is no trace) stops the reading."""
    number = 0
    while line := raw.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise TraceError(f"{path}: line {number}: line longer than {MAX_LINE_BYTES:,} bytes")
        try:
            yield line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as err:
            raise TraceError(f"{path}: line {number}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _records(reader, path: Path, required: tuple[str, ...], optional: tuple[str, ...] | None,
             parse: "Parser", class_name: str) -> Iterator[_Record]:
    """Records of a CSV reader, after checking the header."""
    try:
        columns = _columns(next(reader, None), path, required, optional)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            where = f"{path}: line {reader.line_num}"
            if len(row) != len(columns):
                raise TraceError(f"{where}: expected {len(columns)} fields, found {len(row)}")
            cells = dict(zip(columns, (cell.strip() for cell in row), strict=True))
            yield _parse_line(parse, cells, class_name, where)
    except csv.Error as err:
        raise TraceError(f"{path}: line {reader.line_num}: {err}") from None


def _columns(header: list[str] | None, path: Path, required: tuple[str, ...],
             optional: tuple[str, ...] | None) -> list[str]:
    """Column names of the header line; missing required (or, for ours, unknown) columns raise."""
    if not header:
        raise TraceError(f"{path}: line 1: empty file, expected a header line with {', '.join(required)}")
    columns = [name.strip() for name in header]
    repeated = sorted(name for name, count in Counter(columns).items() if count > 1)  # linear in the columns
    if repeated:
        raise TraceError(f"{path}: line 1: repeated columns {listed(repeated, snippet)}")
    present = set(columns)
    missing = [c for c in required if c not in present]
    if missing:
        raise TraceError(f"{path}: line 1: missing columns {', '.join(missing)} (header: {listed(columns, snippet)})")
    if optional is not None:
        allowed = set(required + optional)
        unknown = [c for c in columns if c not in allowed]
        if unknown:
            raise TraceError(f"{path}: line 1: unknown columns {listed(unknown, snippet)}; "
                             f"allowed: {', '.join(required + optional)}")
    return columns



def _parse_line(parse: "Parser", cells: dict[str, str], class_name: str, where: str) -> _Record:
    """One line through its format's parser; a bad cell raises naming line and column."""
    try:
        return parse(cells, class_name)
    except _BadValue as err:
        column, message = err.args
        raise TraceError(f"{where}: {column}: {message}") from None


# ---------------------------------------------------------------- cell readers


def _number(cells: dict[str, str], column: str) -> float:
    """A finite, non-negative number."""
    text = cells[column]
    try:
        value = float(text)
    except ValueError:
        raise _BadValue(column, f"{snippet(text)} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise _BadValue(column, f"{snippet(text)} must be a finite number >= 0")
    return value


def _integer(cells: dict[str, str], column: str, minimum: int = 0) -> int:
    """A whole number >= ``minimum`` (``12`` or ``12.0``)."""
    text = cells[column]
    try:
        value = float(text)
    except ValueError:
        raise _BadValue(column, f"{snippet(text)} is not an integer") from None
    if not math.isfinite(value) or not value.is_integer():
        raise _BadValue(column, f"{snippet(text)} is not an integer")
    if value < minimum:
        raise _BadValue(column, f"{snippet(text)} must be at least {minimum}")
    return int(value)


def _pixels(text: str, column: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` as positive integers."""
    match = _PIXELS.fullmatch(text)
    if match is None:
        raise _BadValue(column, f"{snippet(text)} is not a pixel size like 1700x2200")
    size = int(match[1]), int(match[2])
    if min(size) < 1:
        raise _BadValue(column, f"{snippet(text)} has a zero side")
    return size


def _images(cells: dict[str, str], column: str) -> tuple[tuple[int, int], ...]:
    """``;``-separated pixel sizes, empty for none."""
    text = cells[column]
    return tuple(_pixels(part, column) for part in text.split(";")) if text else ()


def _datetime_s(cells: dict[str, str], column: str) -> float:
    """A date-time as POSIX seconds (UTC when no zone is given)."""
    text = cells[column]
    try:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        raise _BadValue(column, f"{snippet(text)} is not a date-time like 2023-11-16 18:15:46.6805900") from None


# ---------------------------------------------------------------- formats


def _vlmplan_line(cells: dict[str, str], class_name: str) -> _Record:
    """A line of our own format (``class_name`` unused: the class is a column)."""
    request_class = cells["class"]
    if not request_class:
        raise _BadValue("class", "is empty")
    video_s = _number(cells, "video_s")
    fps = _number(cells, "video_fps") if cells.get("video_fps") else DEFAULT_VIDEO_FPS
    frame = _pixels(cells["video_frame"], "video_frame") if cells.get("video_frame") \
        else DEFAULT_VIDEO_FRAME_PX
    request = Request(
        id=0, arrival_s=0.0, request_class=request_class, images=_images(cells, "images"),
        audio_s=_number(cells, "audio_s"), video_s=video_s,
        video_fps=fps if video_s > 0 else 0.0, video_frame_px=frame if video_s > 0 else (0, 0),
        text_tokens=_integer(cells, "text_tokens"), output_tokens=_integer(cells, "output_tokens", 1))
    return _Record(_number(cells, "timestamp_s"), request)


def _azure_line(cells: dict[str, str], class_name: str) -> _Record:
    """A line of the Azure LLM inference trace."""
    request = Request(id=0, arrival_s=0.0, request_class=class_name,
                      text_tokens=_integer(cells, "ContextTokens"),
                      output_tokens=max(1, _integer(cells, "GeneratedTokens")))
    return _Record(_datetime_s(cells, "TIMESTAMP"), request)


def _burstgpt_line(cells: dict[str, str], class_name: str) -> _Record:
    """A line of the BurstGPT trace (its ``Session ID``, when the release has one, names its conversation)."""
    request = Request(id=0, arrival_s=0.0, request_class=class_name,
                      text_tokens=_integer(cells, "Request tokens"),
                      output_tokens=max(1, _integer(cells, "Response tokens")))
    return _Record(_number(cells, "Timestamp"), request, cells.get("Session ID", ""))


def _azure_lmm_line(cells: dict[str, str], class_name: str, image_px: tuple[int, int] = (0, 0)) -> _Record:
    """A line of the Azure LMM (multimodal) inference trace: ``NumImages`` images of ``image_px`` each."""
    images = _integer(cells, "NumImages")
    if images > MAX_IMAGES_PER_REQUEST:
        raise _BadValue("NumImages", f"{images} is more than {MAX_IMAGES_PER_REQUEST} images in one request")
    request = Request(id=0, arrival_s=0.0, request_class=class_name, images=(image_px,) * images,
                      text_tokens=_integer(cells, "ContextTokens"),
                      output_tokens=max(1, _integer(cells, "GeneratedTokens")))
    return _Record(_datetime_s(cells, "TIMESTAMP"), request)


Parser = Callable[[dict[str, str], str], _Record]
# format -> (required columns, optional columns or None to ignore extra ones, line parser)
_PARSERS: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None, Parser]] = {
    "vlmplan": (("timestamp_s", "class", "images", "audio_s", "video_s", "text_tokens", "output_tokens"),
                ("video_fps", "video_frame"), _vlmplan_line),
    "azure": (("TIMESTAMP", "ContextTokens", "GeneratedTokens"), None, _azure_line),
    "burstgpt": (("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"),
                 None, _burstgpt_line),
    "azure_lmm": (("TIMESTAMP", "NumImages", "ContextTokens", "GeneratedTokens"), None, _azure_lmm_line),
}


def _arrange(records: list[_Record], path: Path | str, time_scale: float,
             window_s: tuple[float, float] | None) -> list[Request]:
    """Shift to the first record, cut the window, scale time, sort and number the requests."""
    if not records:
        raise TraceError(f"{path}: no requests (only a header line)")
    origin_s = min(r.timestamp_s for r in records)
    start_s, end_s = window_s if window_s is not None else (0.0, math.inf)
    if not end_s > start_s:
        raise TraceError(f"{path}: window_s end {end_s} is not after start {start_s}")
    kept = sorted(((r.timestamp_s - origin_s - start_s, r.request) for r in records
                   if start_s <= r.timestamp_s - origin_s < end_s), key=lambda pair: pair[0])
    if not kept:
        raise TraceError(f"{path}: no requests in window_s [{start_s:g}, {end_s:g}) s "
                         f"of a trace lasting {max(r.timestamp_s for r in records) - origin_s:g} s")
    return [replace(request, id=index, arrival_s=offset_s / time_scale) for index, (offset_s, request) in enumerate(kept)]
