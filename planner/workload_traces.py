"""Public workload formats that carry conversations or multimodal sizes: BurstGPT sessions, ServeGen clients.

``burstgpt`` with a ``Session ID`` column (HPMLL/BurstGPT releases since
v1.2; ``planner.traces`` reads the rows): rows that share a session id are
the turns of one conversation, in time order. A turn whose ``Request
tokens`` cover the previous turn's request and response re-sends them: its
prompt is that history (as context parts the prefix cache can reuse) and
the rest is its own input. A turn with fewer tokens than that history did
not re-send it (a new context, or only the new message logged): its prompt
is its own, reusing nothing. An empty session id (API calls) is a one-off
request.

``servegen`` (alibaba/ServeGen, ``data/<category>/<model>/``): one client
is a pair of files, ``chunk-N-dataset.json`` (the path given) and
``chunk-N-trace.csv`` beside it. Each CSV line is a window
``start_s,rate_rps,cv,pattern,shape,scale`` (pattern ``Gamma`` or
``Weibull`` inter-arrival times, empty when the client is idle); the window
lasts until the next line's start (the last one as long as the one before).
The JSON maps window starts to size distributions, each a dict literal of
value -> probability (``"{136: 0.25, 372: 0.75}"``): ``text_tokens``,
``output_tokens``, ``image_count``, ``image_tokens`` (per image); a window
uses the latest distributions that start at or before it. Requests are drawn
as ServeGen's own generator draws them: ceil(rate x window) inter-arrival
times of the pattern, scaled to fill the window, with sizes from the
window's distributions, from the scenario's seed. ServeGen counts image
tokens with Qwen-VL's 28x28-pixel tokens, so an image of T tokens becomes a
square of 28 x round(sqrt T) pixels, which another model counts its own way
(``image_px`` replaces it with one fixed size). ``audio_*`` and ``video_*``
fields are not read (zero in the ``mm-image`` clients).

A broken line or field raises ``TraceError`` naming the file, line and
field ("chunk-3-trace.csv: line 7: rate_rps: ...", "chunk-3-dataset.json:
line 12: window '600': image_count: ..."); only where the JSON, valid to
the JSON parser, is not to the YAML composer that finds lines
(``profiles.files.line_of``: a lone surrogate escape) does a dataset message
name the window and field without a line, and say so.
"""

import ast
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from profiles.errors import TraceError
from profiles.files import line_of, open_input, read_json, snippet
from sim.limits import MAX_IMAGES_PER_REQUEST
from sim.request import Part, Request
from sim.traffic import sampling

SESSION_KEY_BASE = 1 << 61  # trace conversations' part keys: apart from simulated ones and Mooncake's blocks
PART_BITS = 20  # parts of one traced conversation (two per turn)
QWEN_VL_TOKEN_PX = 28  # one Qwen2/2.5-VL image token covers 28x28 pixels (14-px patches merged 2x2: FACTS.md)
SERVEGEN_PATTERNS = ("Gamma", "Weibull")
SERVEGEN_FIELDS = ("text_tokens", "output_tokens", "image_count", "image_tokens")
MAX_SERVEGEN_REQUESTS = 10_000_000  # a client of 1,000 requests/s for a day; more is no ServeGen file


# ---------------------------------------------------------------- BurstGPT conversations


def link_sessions(rows: list[tuple[float, str, Request]]) -> list[tuple[float, Request]]:
    """(timestamp, request) of every (timestamp, session id, request) row, each conversation's turns re-sending
    its history as context parts where their token counts show they do."""
    sessions: dict[str, list[int]] = {}
    for index, (_timestamp, session_id, _request) in enumerate(rows):
        if session_id:
            sessions.setdefault(session_id, []).append(index)
    linked = [(timestamp, request) for timestamp, _session, request in rows]
    for number, indices in enumerate(sessions.values()):
        indices.sort(key=lambda i: (rows[i][0], i))
        base = SESSION_KEY_BASE + (number << PART_BITS)
        last: Request | None = None
        for turn, index in enumerate(indices, start=1):
            timestamp, _session, request = rows[index]
            own_key = base + 2 * turn - 1 if 2 * turn < 1 << PART_BITS else -1
            output_key = own_key + 1 if own_key >= 0 and turn < len(indices) else -1
            context: tuple[Part, ...] = ()
            text = request.text_tokens
            if last is not None and last.own_key >= 0:
                history = sum(part[3] for part in last.context) + last.text_tokens + last.output_tokens
                if text >= history:  # the history re-sent, then this turn's own input
                    context = (*last.context, (last.own_key, (), 0.0, last.text_tokens),
                               (last.output_key, (), 0.0, last.output_tokens))
                    text -= history
            last = Request(request.id, request.arrival_s, request.request_class, text_tokens=text,
                           output_tokens=request.output_tokens, context=context, own_key=own_key,
                           output_key=output_key, turn=min(turn, 65535))
            linked[index] = (timestamp, last)
    return linked


# ---------------------------------------------------------------- ServeGen clients


def read_servegen(path: Path, class_name: str, seed: int, image_px: tuple[int, int] | None = None) -> \
        list[tuple[float, Request]]:
    """(arrival in seconds, request) drawn from the ServeGen client whose ``chunk-N-dataset.json`` is ``path``."""
    trace_path = servegen_trace_path(path)
    windows = _windows(trace_path)
    distributions = _distributions(path)
    rng = sampling.stream(seed, str(path.name), sampling.TRACE)
    drawn: list[tuple[float, Request]] = []
    for line, start_s, length_s, rate_rps, pattern, shape, scale in windows:
        if not pattern or rate_rps <= 0:
            continue
        where = f"{trace_path}: line {line}"
        sizes = _window_sizes(distributions, start_s, where)
        arrivals = _arrivals(rng, start_s, length_s, rate_rps, pattern, shape, scale, where)
        if len(drawn) + len(arrivals) > MAX_SERVEGEN_REQUESTS:
            raise TraceError(f"{where}: more than {MAX_SERVEGEN_REQUESTS:,} requests up to this window; "
                             "not a ServeGen client")
        drawn.extend(_requests(rng, arrivals, sizes, class_name, image_px))
    if not drawn:
        raise TraceError(f"{trace_path}: no window with requests")
    return drawn


def servegen_trace_path(path: Path) -> Path:
    """The ``chunk-N-trace.csv`` beside a client's ``chunk-N-dataset.json``."""
    if not path.name.endswith("-dataset.json"):
        raise TraceError(f"{path}: a ServeGen client is named by its chunk-N-dataset.json file")
    return path.with_name(path.name[:-len("-dataset.json")] + "-trace.csv")


# line in the trace, start, length (s), rate (1/s), pattern, shape, scale
Window = tuple[int, float, float, float, str, float, float]


def _windows(path: Path) -> list[Window]:
    """The client's windows, in time order, each lasting until the next one starts."""
    from planner.traces import text_lines  # the one line reader

    rows: list[tuple[int, float, float, str, float, float]] = []
    try:
        with open_input(path, "trace", TraceError) as raw:
            for number, line in enumerate(text_lines(raw, path), start=1):
                if line.strip():
                    rows.append((number, *_window_row(line, f"{path}: line {number}")))
                    if len(rows) > 1 and rows[-1][1] <= rows[-2][1]:
                        raise TraceError(f"{path}: line {number}: start_s {rows[-1][1]:g} is not after the "
                                         f"previous window's ({rows[-2][1]:g}, line {rows[-2][0]})")
    except OSError as err:
        raise TraceError(f"{path}: cannot read trace: {err.strerror or err}") from None
    if not rows:
        raise TraceError(f"{path}: empty, expected lines start_s,rate_rps,cv,pattern,shape,scale")
    windows: list[Window] = []
    for index, (number, start_s, rate_rps, pattern, shape, scale) in enumerate(rows):
        if index + 1 < len(rows):
            length_s = rows[index + 1][1] - start_s
        else:  # the last window lasts as long as the one before (ServeGen's runs until the duration asked)
            length_s = start_s - rows[index - 1][1] if index else 0.0
        windows.append((number, start_s, length_s, rate_rps, pattern, shape, scale))
    return windows


def _window_row(line: str, where: str) -> tuple[float, float, str, float, float]:
    """One CSV line as (start_s, rate_rps, pattern, shape, scale)."""
    cells = [cell.strip() for cell in line.split(",")]
    if len(cells) != 6:
        raise TraceError(f"{where}: expected 6 fields start_s,rate_rps,cv,pattern,shape,scale, found {len(cells)}")
    start_s = _cell_number(cells[0], "start_s", where)
    rate_rps = _cell_number(cells[1], "rate_rps", where)
    _cell_number(cells[2], "cv", where)
    pattern = cells[3]
    if pattern and pattern not in SERVEGEN_PATTERNS:
        raise TraceError(f"{where}: pattern: {snippet(pattern)} is not one of {', '.join(SERVEGEN_PATTERNS)}")
    shape, scale = _cell_number(cells[4], "shape", where), _cell_number(cells[5], "scale", where)
    if pattern and rate_rps > 0 and not (shape > 0 and scale > 0):
        raise TraceError(f"{where}: shape and scale of a {pattern} pattern must be > 0")
    return start_s, rate_rps, pattern, shape, scale


def _cell_number(text: str, name: str, where: str) -> float:
    """A finite, non-negative number."""
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{where}: {name}: {snippet(text)} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"{where}: {name}: {snippet(text)} must be a finite number >= 0")
    return value


Pmf = tuple[np.ndarray, np.ndarray]  # values, probabilities (summing to 1)


class _BadField(ValueError):
    """A problem in the dataset, the place of which the caller names (found only when there is one)."""


def _distributions(path: Path) -> dict[float, dict[str, Pmf]]:
    """Window start -> field -> distribution, from the client's JSON."""
    document, text = read_json(path, "trace", TraceError)
    if not document:
        raise TraceError(f"{path}: line 1: no window starts (an empty object)")

    def place(*loc: str) -> str:
        """``path: line N: window 'K': field``, the line found only now that a message needs it."""
        line = line_of(text, loc)
        keys = ": ".join([f"window {snippet(loc[0])}", *loc[1:]])
        return f"{path}: line {line}: {keys}" if line else f"{path}: {keys} (line not found)"

    found: dict[float, dict[str, Pmf]] = {}
    for start, fields in document.items():
        try:
            start_s = float(start)
            if not math.isfinite(start_s) or start_s < 0:
                raise ValueError(start)
        except ValueError:
            raise TraceError(f"{place(start)}: not a window start in seconds (a finite number >= 0)") from None
        if not isinstance(fields, dict):
            raise TraceError(f"{place(start)}: expected an object of distributions")
        pmfs = {}
        for name in SERVEGEN_FIELDS:
            if name in fields:
                try:
                    pmfs[name] = _pmf(fields[name], MAX_IMAGES_PER_REQUEST if name == "image_count" else None)
                except _BadField as problem:
                    raise TraceError(f"{place(start, name)}: {problem}") from None
        missing = [name for name in ("text_tokens", "output_tokens") if name not in pmfs]
        if missing:
            raise TraceError(f"{place(start)}: missing {', '.join(missing)}")
        if "image_count" in pmfs and "image_tokens" not in pmfs:
            raise TraceError(f"{place(start, 'image_count')}: no image_tokens beside it")
        found[start_s] = pmfs
    return dict(sorted(found.items()))


def _pmf(text: object, most: int | None = None) -> Pmf:
    """A ``"{value: probability, ...}"`` literal as arrays (probabilities normalised); ``most``: the largest
    value that may be drawn. ``_BadField`` otherwise."""
    if not isinstance(text, str) or len(text) > 1_000_000:
        raise _BadField(f"a dict literal of value: probability, not {snippet(repr(text))}")
    try:
        table = ast.literal_eval(text)  # literals only: no code runs
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise _BadField(f"{snippet(text)} is not a dict literal of value: probability") from None
    if not isinstance(table, dict) or not table:
        raise _BadField(f"{snippet(text)} is not a dict literal of value: probability")
    values, weights = [], []
    for value, weight in table.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or \
                isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0 or \
                not math.isfinite(weight):
            raise _BadField(f"{snippet(repr(value))}: {snippet(repr(weight))} is not a whole number >= 0 "
                            "with a probability >= 0")
        if most is not None and value > most and weight > 0:
            raise _BadField(f"{value} is more than {most} images in one request")
        values.append(value)
        weights.append(float(weight))
    total = sum(weights)
    if not total > 0:
        raise _BadField("probabilities sum to 0")
    return np.array(values, dtype=np.int64), np.array(weights) / total


def _window_sizes(distributions: dict[float, dict[str, Pmf]], start_s: float, where: str) -> dict[str, Pmf]:
    """The latest distributions starting at or before ``start_s`` (ServeGen's rule); ``where``: the window's
    trace line."""
    chosen = None
    for begins_s, pmfs in distributions.items():
        if begins_s > start_s:
            break
        chosen = pmfs
    if chosen is None:
        raise TraceError(f"{where}: the window at {start_s:g} s has requests but the dataset's first window "
                         f"starts at {next(iter(distributions)):g} s")
    return chosen


def _arrivals(rng: np.random.Generator, start_s: float, length_s: float, rate_rps: float, pattern: str,
              shape: float, scale: float, where: str) -> np.ndarray:
    """Arrival times in the window: ceil(rate x length) gaps of the pattern, scaled to fill it; ``where``: the
    window's trace line."""
    count = math.ceil(rate_rps * length_s)
    if count <= 0 or length_s <= 0:
        return np.zeros(0)
    if count > MAX_SERVEGEN_REQUESTS:
        raise TraceError(f"{where}: rate_rps x {length_s:g} s = {count:,} requests in one window; "
                         "not a ServeGen client")
    gaps = rng.gamma(shape, scale, count) if pattern == "Gamma" else scale * rng.weibull(shape, count)
    total = float(gaps.sum())
    if total > 0:
        gaps *= length_s / total
    times = start_s + np.cumsum(gaps)
    return times[times < start_s + length_s]


def _requests(rng: np.random.Generator, arrivals: np.ndarray, sizes: dict[str, Pmf], class_name: str,
              image_px: tuple[int, int] | None) -> Iterator[tuple[float, Request]]:
    """One request per arrival, sized from the window's distributions."""
    count = len(arrivals)

    def draw(name: str, n: int) -> list[int]:
        values, probabilities = sizes[name]
        return values[rng.choice(len(values), size=n, p=probabilities)].tolist()

    text, output = draw("text_tokens", count), draw("output_tokens", count)
    images = draw("image_count", count) if "image_count" in sizes else [0] * count
    image_tokens = iter(draw("image_tokens", sum(images)) if sum(images) else [])
    for arrival_s, text_tokens, output_tokens, n_images in zip(arrivals.tolist(), text, output, images,
                                                               strict=True):
        pixels = tuple(image_px or _square_px(next(image_tokens)) for _ in range(n_images))
        yield arrival_s, Request(0, 0.0, class_name, images=pixels, text_tokens=text_tokens,
                                 output_tokens=max(1, output_tokens))


def _square_px(tokens: int) -> tuple[int, int]:
    """A square image Qwen-VL counts as about ``tokens`` tokens."""
    side = QWEN_VL_TOKEN_PX * max(1, round(math.sqrt(tokens)))
    return side, side
