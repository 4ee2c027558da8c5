"""Trace formats that carry prompt reuse: Mooncake's JSON lines with prefix block hashes.

``mooncake`` (kvcache-ai/Mooncake, FAST'25 ``FAST25-release/traces/``, and
``mooncake_trace.jsonl``): one JSON object per line, ``timestamp``
(milliseconds since the first request), ``input_length`` and
``output_length`` (tokens) and ``hash_ids``: one id per 512-token block of
the prompt, equal ids meaning equal blocks after equal prefixes. Example::

    {"timestamp": 0, "input_length": 6755, "output_length": 500, "hash_ids": [0, 1, 2, 3]}

Each block becomes a context part of the request (``sim.request.Part``) whose
key is its hash id, so the simulator's prefix cache reuses exactly the blocks
the trace says are shared: every block but the last is 512 text tokens, the
last (partial) one is the request's own text. Text only. A broken line raises
``TraceError`` ("trace.jsonl: line 7: input_length: ...").
"""

from pathlib import Path

from profiles.errors import TraceError
from profiles.files import open_input, parse_json_object, snippet
from sim.request import Part, Request

MOONCAKE_BLOCK_TOKENS = 512
MOONCAKE_KEY_BASE = 1 << 62  # keeps trace block keys apart from the keys of simulated conversations


def read_mooncake(path: Path, class_name: str) -> list[tuple[float, Request]]:
    """(timestamp in seconds, request) of every line of a Mooncake trace; ``TraceError`` on a bad line."""
    from planner.traces import (
        text_lines,  # the one line reader: regular files only, lines decoded one by one
    )

    try:
        with open_input(path, "trace", TraceError) as raw:
            return [_record(line, path, number, class_name)
                    for number, line in enumerate(text_lines(raw, path), start=1) if line.strip()]
    except OSError as err:
        raise TraceError(f"{path}: cannot read trace: {err.strerror or err}") from None


def _record(line: str, path: Path, number: int, class_name: str) -> tuple[float, Request]:
    """One line as (seconds, request)."""
    where = f"{path}: line {number}"
    fields = parse_json_object(line, path, TraceError, first_line=number)
    timestamp_ms = _number(fields, "timestamp", where)
    input_tokens = int(_number(fields, "input_length", where, whole=True))
    output_tokens = max(1, int(_number(fields, "output_length", where, whole=True)))
    hash_ids = fields.get("hash_ids", [])
    if not isinstance(hash_ids, list) or not all(isinstance(h, int) and h >= 0 for h in hash_ids):
        raise TraceError(f"{where}: hash_ids: a list of non-negative integers, not {snippet(repr(hash_ids))}")
    whole_blocks = len(hash_ids) - 1 if hash_ids else 0
    if whole_blocks * MOONCAKE_BLOCK_TOKENS >= max(1, input_tokens):
        raise TraceError(f"{where}: hash_ids: {len(hash_ids)} blocks of {MOONCAKE_BLOCK_TOKENS} tokens for an "
                         f"input of {input_tokens} tokens")
    context: tuple[Part, ...] = tuple((MOONCAKE_KEY_BASE + h, (), 0.0, MOONCAKE_BLOCK_TOKENS)
                                      for h in hash_ids[:whole_blocks])
    own_key = MOONCAKE_KEY_BASE + hash_ids[-1] if hash_ids else -1
    own_tokens = input_tokens - whole_blocks * MOONCAKE_BLOCK_TOKENS
    request = Request(0, 0.0, class_name, text_tokens=own_tokens, output_tokens=output_tokens,
                      context=context, own_key=own_key)
    return timestamp_ms / 1000.0, request


def _number(fields: dict, name: str, where: str, whole: bool = False) -> float:
    """A non-negative number field (an integer when ``whole``)."""
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != value:
        raise TraceError(f"{where}: {name}: a non-negative number, not {snippet(repr(value))}")
    if whole and value != int(value):
        raise TraceError(f"{where}: {name}: a whole number of tokens, not {snippet(repr(value))}")
    return float(value)
