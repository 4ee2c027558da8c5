"""Trace files: our CSV, the Azure LLM inference trace and BurstGPT; errors name file, line and column."""

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.traces import load_trace
from profiles.errors import TraceError

OURS_HEADER = "timestamp_s,class,images,audio_s,video_s,text_tokens,output_tokens"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
BURSTGPT_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def write(tmp_path, text: str, name: str = "trace.csv"):
    """A trace file with ``text`` in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_our_format_reads_images_audio_video_and_sorts_by_time(tmp_path):
    path = write(tmp_path, f"""{OURS_HEADER}
100.5,dashboard,1920x1080;1920x1080,30,0,500,300
100.0,invoice,1700x2200,0,0,60,200
101.0,video,,0,10,40,150
""")
    requests = load_trace(path)
    assert [r.request_class for r in requests] == ["invoice", "dashboard", "video"]
    assert [r.arrival_s for r in requests] == [0.0, 0.5, 1.0]  # shifted to the first record
    assert [r.id for r in requests] == [0, 1, 2]
    assert requests[0].images == ((1700, 2200),)
    assert requests[1].images == ((1920, 1080), (1920, 1080))
    assert requests[1].audio_s == 30.0
    assert (requests[2].video_s, requests[2].video_fps, requests[2].video_frame_px) == (10.0, 2.0, (640, 360))
    assert (requests[1].text_tokens, requests[1].output_tokens) == (500, 300)


def test_our_format_takes_optional_video_columns(tmp_path):
    path = write(tmp_path, f"{OURS_HEADER},video_fps,video_frame\n0,clip,,0,10,40,150,30,1280x720\n")
    (clip,) = load_trace(path)
    assert (clip.video_fps, clip.video_frame_px) == (30.0, (1280, 720))


def test_azure_trace_timestamps_with_seven_digit_fractions(tmp_path):
    path = write(tmp_path, f"""{AZURE_HEADER}
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.0000000,879,0
""")
    requests = load_trace(path, "azure", class_name="chat")
    assert [r.arrival_s for r in requests] == pytest.approx([0.0, 4.314579, 4.31941])
    assert [(r.text_tokens, r.output_tokens) for r in requests] == [(374, 44), (396, 109), (879, 1)]
    assert {r.request_class for r in requests} == {"chat"}


def test_burstgpt_trace(tmp_path):
    path = write(tmp_path, f"""{BURSTGPT_HEADER}
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,276,693,API log
""")
    requests = load_trace(path, "burstgpt")
    assert [r.arrival_s for r in requests] == [0.0, 40.0, 113.0]
    assert [r.output_tokens for r in requests] == [18, 1, 276]  # a failed request (0 tokens) replays as 1
    assert requests[0].request_class == "trace"


def test_time_scale_and_window(tmp_path):
    rows = "\n".join(f"{t},ChatGPT,100,10,110,API log" for t in range(0, 100, 10))
    path = write(tmp_path, f"{BURSTGPT_HEADER}\n{rows}\n")
    assert [r.arrival_s for r in load_trace(path, "burstgpt", time_scale=10)][:3] == [0.0, 1.0, 2.0]
    windowed = load_trace(path, "burstgpt", window_s=(20, 50), time_scale=2)
    assert [r.arrival_s for r in windowed] == [0.0, 5.0, 10.0]  # 20, 30, 40 s -> shifted, halved
    assert [r.id for r in windowed] == [0, 1, 2]


@pytest.mark.parametrize(("text", "fmt", "message"), [
    (f"{AZURE_HEADER}\n2023-11-16 18:15:46,374,44\n2023-11-16 18:15:47,abc,4\n", "azure",
     "trace.csv: line 3: ContextTokens: 'abc' is not an integer"),
    (f"{AZURE_HEADER}\nyesterday,374,44\n", "azure", "trace.csv: line 2: TIMESTAMP: 'yesterday' is not a date-time"),
    (f"{OURS_HEADER}\n0,invoice,1700by2200,0,0,60,200\n", "vlmplan",
     "trace.csv: line 2: images: '1700by2200' is not a pixel size like 1700x2200"),
    (f"{OURS_HEADER}\n0,invoice,,0,0,60,0\n", "vlmplan", "trace.csv: line 2: output_tokens: '0' must be at least 1"),
    (f"{OURS_HEADER}\n-1,invoice,,0,0,60,1\n", "vlmplan", "trace.csv: line 2: timestamp_s: '-1' must be a finite"),
    (f"{OURS_HEADER}\n0,invoice,,nan,0,60,1\n", "vlmplan", "trace.csv: line 2: audio_s: 'nan' must be a finite"),
    (f"{OURS_HEADER}\n0,invoice,,0,0,60\n", "vlmplan", "trace.csv: line 2: expected 7 fields, found 6"),
    (f"{OURS_HEADER}\n0,,,0,0,60,3\n", "vlmplan", "trace.csv: line 2: class: is empty"),
    ("timestamp_s,class\n0,a\n", "vlmplan", "trace.csv: line 1: missing columns images"),
    (f"{OURS_HEADER},tier\n", "vlmplan", "trace.csv: line 1: unknown columns 'tier'"),
    ("", "vlmplan", "trace.csv: line 1: empty file"),
    (f"{OURS_HEADER}\n", "vlmplan", "trace.csv: no requests"),
    (f"{BURSTGPT_HEADER}\n1,a,1,1,2,x\n", "csv", "trace.csv: unknown trace format 'csv'"),
])
def test_a_broken_trace_names_file_line_column_and_problem(tmp_path, text, fmt, message):
    path = write(tmp_path, text)
    with pytest.raises(TraceError) as caught:
        load_trace(path, fmt)
    assert str(caught.value).replace(str(tmp_path) + "/", "").startswith(message)


def test_missing_file_and_empty_window_are_trace_errors(tmp_path):
    with pytest.raises(TraceError, match="cannot read trace"):
        load_trace(tmp_path / "nope.csv")
    path = write(tmp_path, f"{BURSTGPT_HEADER}\n0,a,1,1,2,x\n10,a,1,1,2,x\n")
    with pytest.raises(TraceError, match=r"no requests in window_s \[100, 200\) s of a trace lasting 10 s"):
        load_trace(path, "burstgpt", window_s=(100, 200))


def test_non_utf8_bytes_are_a_trace_error(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_bytes(OURS_HEADER.encode() + b"\n0,caf\xe9,,0,0,1,1\n")
    with pytest.raises(TraceError, match="not UTF-8"):
        load_trace(path)


# ---------------------------------------------------------------- fuzzing: only clean errors

CELL = st.one_of(st.text(max_size=12), st.integers(-5, 10**6).map(str),
                 st.floats(allow_nan=True, allow_infinity=True).map(str),
                 st.sampled_from(["1700x2200", "1x1;2x2", "0x5", "2023-11-16 18:15:46.6805900", "", '"']))
HEADERS = {"vlmplan": OURS_HEADER, "azure": AZURE_HEADER, "burstgpt": BURSTGPT_HEADER}


@FUZZ
@given(fmt=st.sampled_from(sorted(HEADERS)), rows=st.lists(st.lists(CELL, min_size=0, max_size=8), max_size=6),
       drop_header_column=st.booleans())
def test_fuzzed_trace_files_load_or_fail_cleanly(tmp_path, fmt, rows, drop_header_column):
    header = HEADERS[fmt].split(",")
    if drop_header_column:
        header = header[:-1]
    text = ",".join(header) + "\n" + "\n".join(",".join(row) for row in rows)
    path = write(tmp_path, text)
    try:
        requests = load_trace(path, fmt)
    except TraceError as err:
        message = str(err)
        requests = None
    if requests is None:
        assert str(path) in message
        return
    assert [r.id for r in requests] == list(range(len(requests)))
    assert all(r.arrival_s >= 0 and r.output_tokens >= 1 for r in requests)


@FUZZ
@given(data=st.binary(max_size=200), fmt=st.sampled_from(sorted(HEADERS)))
def test_random_bytes_fail_cleanly(tmp_path, data, fmt):
    path = tmp_path / "trace.csv"
    path.write_bytes(HEADERS[fmt].encode() + b"\n" + data)
    with contextlib.suppress(TraceError):
        load_trace(path, fmt)


def test_special_files_are_refused_without_reading_them(tmp_path):
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    for path, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device"), (tmp_path, "a directory")):
        if path.exists():
            with pytest.raises(TraceError, match=f"^{path}: is {kind}"):
                load_trace(path)


def test_messages_quote_a_short_sanitised_snippet_never_a_whole_line(tmp_path):
    secret = "API_TOKEN=s3cr3t-" + "x" * 200
    environ = tmp_path / "environ"  # what /proc/self/environ looks like: NUL-separated, no newline
    environ.write_bytes(f"HOME=/root\0{secret}\0PATH=/usr/bin\0".encode())
    with pytest.raises(TraceError) as caught:
        load_trace(environ)
    message = str(caught.value)
    assert "s3cr3t" not in message
    assert "\0" not in message
    assert len(message) < 300
    long_cell = "9" * 5000 + "z"
    path = write(tmp_path, f"{OURS_HEADER}\n0,invoice,,0,0,{long_cell},1\n")
    with pytest.raises(TraceError, match=r"trace.csv: line 2: text_tokens: '9{24}\.\.\.' is not an integer$"):
        load_trace(path)
    wide = ",".join(f"column{i}" for i in range(30_000))
    path = write(tmp_path, f"{wide}\n")
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    assert len(str(caught.value)) < 1_000  # names a few columns (sim.limits.listed), not 30,000
    assert "and 29,980 more" in str(caught.value)


def test_a_non_utf8_line_is_named(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_bytes(f"{OURS_HEADER}\n0,invoice,,0,0,60,1\n1,inv\xffoice,,0,0,60,1\n".encode("latin-1"))
    with pytest.raises(TraceError, match=r"trace.csv: line 3: not UTF-8 text"):
        load_trace(path)
