"""Each hostile input named in issue 14, run as a user would, under a 3 GB address-space cap: outcome, time, peak memory.

Every input is the bundled scenario (planner/scenarios/default.yaml) with one change, or a file
made for the purpose, run by `vlmplan validate`, `simulate` or `plan` in a child process with
RLIMIT_AS at 3,000,000,000 bytes (as `prlimit --as=3000000000` does), killed after 15 minutes.
It prints a Markdown table (README "Limits and hostile input"): the input, the exit status and
the first line vlmplan printed, the wall time, the CPU time of all its processes (on a shared machine
the wall time is mostly waiting for a core) and the peak resident memory of the run (the largest of
its processes). The issue's bound: each ends in exit 2 or a correct result within a minute.

    python benchmarks/hostile_inputs.py            # every input (some minutes)
    python benchmarks/hostile_inputs.py --only 100x,offline
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "planner" / "scenarios" / "default.yaml"
MEMORY_CAP_BYTES = 3_000_000_000
KILL_AFTER_S = 900.0  # a safety: on a shared machine the wall time is mostly waiting for a core


def _default(edit: Callable[[dict], object]) -> Callable[[Path], Path]:
    """A maker of the bundled scenario after ``edit(data)``, written into a folder."""
    def make(folder: Path) -> Path:
        data = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
        edit(data)
        path = folder / "scenario.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path
    return make


def _arrivals(**fields: object) -> Callable[[dict], object]:
    return lambda d: d["traffic"].update(arrivals=fields)


def _first_stage(**fields: object) -> Callable[[dict], object]:
    return lambda d: d["deployments"][1]["stages"][0].update(fields)  # omni-7b's one stage


def _class(name: str, **fields: object) -> Callable[[dict], object]:
    return lambda d: next(c for c in d["traffic"]["classes"] if c["name"] == name).update(fields)


def _text(content: str, name: str = "scenario.yaml") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_text(content, encoding="utf-8")
        return path
    return make


def _trace_scenario(header: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / "trace.csv").write_text(header + "\n", encoding="utf-8")
        data = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
        data["traffic"]["arrivals"] = {"kind": "trace", "path": "trace.csv"}
        path = folder / "scenario.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path
    return make


def _hundred_times(d: dict) -> None:
    d["traffic"]["arrivals"]["requests_per_day"] *= 100


def _twenty_thousand_classes(d: dict) -> None:
    d["traffic"]["classes"] = [{"name": f"c{i}", "share": 1.0, "text_tokens": 10, "output_tokens": 5}
                               for i in range(20_000)]


# (key, what the input is, command, scenario maker, extra arguments)
INPUTS: list[tuple[str, str, str, Callable[[Path], Path], list[str]]] = [
    ("replicas", "2,147,483,648 replicas", "simulate", _default(_first_stage(replicas=2**31)), []),
    ("images", "1e18 images per request", "simulate", _default(_class("invoice", images={
        "count": 1e18, "width_px": 1700, "height_px": 2200})), []),
    ("cpu", "1e9 CPU workers", "simulate", _default(_first_stage(cpu_workers=10**9)), []),
    ("offline", "offline batch of 10,000,000", "simulate", _default(_arrivals(kind="offline", requests=10**7)), []),
    ("users", "closed loop of 1,000,000 users", "simulate", _default(_arrivals(
        kind="closed_loop", users=10**6, think_time_s=1.0)), []),
    ("rate", "1e6 req/s", "simulate", _default(_arrivals(kind="poisson", rate_rps=1e6)), []),
    ("bursts", "mean_burst_s: 1e-300", "simulate", _default(lambda d: d["traffic"]["arrivals"]["bursts"].update(
        mean_burst_s=1e-300)), []),
    ("horizon", "--horizon 1e12", "simulate", _default(lambda d: None), ["--horizon", "1e12"]),
    ("nan", "--horizon nan", "simulate", _default(lambda d: None), ["--horizon", "nan"]),
    ("inf", "--horizon inf", "simulate", _default(lambda d: None), ["--horizon", "inf"]),
    ("window", "--autoscale-window 1e-9", "plan", _default(lambda d: None), ["--autoscale", "--autoscale-window",
                                                                              "1e-9"]),
    ("100x", "the bundled scenario at 100x its traffic", "simulate", _default(_hundred_times), []),
    ("video", "a one-hour video", "simulate", _default(_class("video", video={
        "seconds": 3600, "fps": 30, "width_px": 1280, "height_px": 720})), []),
    ("prompt", "a 1e9-token prompt", "simulate", _default(_class("chat", text_tokens=10**9)), []),
    ("classes", "20,000 classes", "validate", _default(_twenty_thousand_classes), []),
    ("header", "a trace header of 30,000 columns", "validate",
     _trace_scenario(",".join(f"column{i}" for i in range(30_000))), []),
    ("nested", "YAML nested 100,000 levels (block style)", "validate", _text("- " * 100_000 + "x\n"), []),
    ("flow", "YAML nested 100,000 levels (flow style)", "validate", _text("[" * 100_000 + "]" * 100_000 + "\n"), []),
    ("zero", "/dev/zero as the scenario", "validate", lambda folder: Path("/dev/zero"), []),
]


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))


def measure(command: str, path: Path, extra: list[str]) -> dict:
    """Run ``vlmplan COMMAND PATH EXTRA`` capped; this process's children are only that run (see ``main``)."""
    start = time.perf_counter()
    # Its own process group, so that a kill at the time limit also ends the run's worker processes.
    with subprocess.Popen([sys.executable, "-m", "planner", command, str(path), *extra], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, preexec_fn=_cap, cwd=ROOT,  # noqa: PLW1509
                          start_new_session=True) as run:
        try:
            stdout, stderr = run.communicate(timeout=KILL_AFTER_S)
            code: int | str = run.returncode
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
            code, stderr, stdout = "killed", "", ""
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mb, cpu_s = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    first = lines[0] if lines else ""
    if str(path.parent) != "/dev":
        first = first.replace(f"{path.parent}/", "")  # the temporary folder's name says nothing
    if code == 0:
        first = next((line for line in stdout.splitlines() if line.startswith(("STOPPED", "CANNOT SERVE"))),
                     stdout.splitlines()[0] if stdout else "")
    return {"code": code, "seconds": seconds, "cpu_s": cpu_s, "peak_mb": peak_mb, "first": first,
            "traceback": "Traceback" in stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated keys (default: every input)")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # internal: measure one input, print JSON
    options = parser.parse_args()
    if options.one:
        key, description, command, make, extra = next(item for item in INPUTS if item[0] == options.one)
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(measure(command, make(Path(folder)), extra)))
        return
    keys = options.only.split(",") if options.only else [item[0] for item in INPUTS]
    print("| input | command | outcome | wall time | CPU time | peak memory |")
    print("|---|---|---|---|---|---|")
    for key, description, command, _, _ in INPUTS:
        if key not in keys:
            continue
        # One fresh process per input, so that its peak memory is that input's alone.
        done = subprocess.run([sys.executable, __file__, "--one", key], capture_output=True, text=True, check=True)
        row = json.loads(done.stdout)
        first = row["first"].replace(str(ROOT) + "/", "").replace("|", "\\|")
        first = first if len(first) <= 150 else first[:147] + "..."
        outcome = f"exit {row['code']}{' TRACEBACK' if row['traceback'] else ''}: `{first}`"
        print(f"| {description} | {command} | {outcome} | {row['seconds']:.1f} s | {row['cpu_s']:.1f} s "
              f"| {row['peak_mb']:,.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
