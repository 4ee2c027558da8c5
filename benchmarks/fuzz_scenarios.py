"""Fuzz `vlmplan validate` and `vlmplan simulate` with mutated scenarios, under a memory cap and a time limit.

Each input is one of a few small scenarios (a VLM, a specialist pipeline with routes, a synthetic queue,
a hosted API, a closed loop, an offline batch) with one to three mutations: a number replaced by an
extreme (0, -1, 1e-300, 1e12, 2**63, NaN, infinity, a string...), scaled by up to 1e12 either way, a key
deleted, a list item duplicated (deployments, stages, classes, routes), a name swapped for another name
of the file (routes, paths). Both commands run in a forked child with RLIMIT_AS at the cap (as
`prlimit --as` does) and are killed at their time limit (of CPU time: on a shared machine a run may get a
tenth of a core; or ten times the limit of wall time): a minute, plus, for `simulate`, the time the requests
the input is to generate take at ``ENGINE_RATE_RPS`` (``time_limit_s``), so a run that keeps up ends inside
it and anything still running at its limit is a failure. An input passes when:

- `simulate --json` exits 0 and every deployment accounts for every request
  (requests = completed + rejected + unfinished, none negative, per class too), or exits 2 with
  messages that each name the scenario file;
- `validate` agrees: it exits 0 exactly when `simulate` does not refuse the input;
- neither prints a traceback, runs out of memory, nor outlives the time limit.

    python benchmarks/fuzz_scenarios.py --inputs 2000 --seed 1 --jobs 2  # prints counts, saves failing inputs

Same seed, same inputs (``--jobs`` runs that many inputs at once, each in its own capped children; the
counts do not depend on it); exit status 1 when any input failed. tests/test_fuzz_scenarios.py runs a
dozen in CI.
"""

import argparse
import copy
import io
import json
import math
import multiprocessing
import os
import random
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from planner.scenario import Scenario

MEMORY_CAP_BYTES = 3_000_000_000  # the cap (`prlimit --as=3000000000`)
TIME_LIMIT_S = 60.0  # the bound: every input ends within a minute of CPU time, plus its volume's time
# Requests a second of CPU the engine simulates at least, at which a run's volume is given time on top of the
# minute: the pure-Python engine ran the slowest base (the routed pipeline) at 7,000 a second, the others at
# 14,000 to 68,000 (the compiled engine is about twice as fast).
ENGINE_RATE_RPS = 5_000
# On a machine shared by many processes a run may get a tenth of a core: a run is killed when its CPU time
# passes the limit, or (a run asleep: a deadlock) when its wall time passes this many times the limit.
WALL_FACTOR = 10.0

CLASSES = [
    {"name": "doc", "share": 0.7, "images": {"count": 1, "width_px": 1200, "height_px": 900},
     "text_tokens": 60, "output_tokens": {"kind": "lognormal", "median": 80, "sigma": 0.4, "max": 400}},
    {"name": "chat", "share": 0.3, "text_tokens": {"kind": "uniform", "low": 50, "high": 800},
     "output_tokens": 64},
]
SLO = {"ttft_s": 2.0, "e2e_s": 10.0, "per_class": {"doc": {"e2e_s": 8.0}}}


def _scenario(name: str, arrivals: dict, deployments: list, classes: list | None = None) -> dict:
    slo = SLO if classes is None else {key: value for key, value in SLO.items() if key != "per_class"}  # no 'doc'
    return {"name": name, "horizon_s": 30, "seed": 7, "traffic": {"arrivals": arrivals, "classes": classes or CLASSES},
            "slo": slo, "deployments": deployments}


BASES = [
    _scenario("vlm", {"kind": "poisson", "rate_rps": 3},
              [{"name": "vlm", "stages": [{"name": "vlm", "kind": "model", "model": "qwen2.5-vl-7b", "gpu": "h100-sxm",
                                           "replicas": 1, "max_batch_size": 64, "cpu_workers": 4}]}]),
    _scenario("pipeline", {"kind": "diurnal", "requests_per_day": 200000, "peak_to_trough": 3.0, "peak_hour": 14,
                           "bursts": {"kind": "onoff", "burst_multiplier": 3.0, "mean_burst_s": 5, "mean_gap_s": 20}},
              [{"name": "specialist", "router": {"classifier": {"model": "bert-base-router", "gpu": "l4"}},
                "stages": [{"name": "ocr", "kind": "model", "model": "deepseek-ocr", "gpu": "a100-80gb",
                            "output_tokens": 300},
                           {"name": "text", "kind": "model", "model": "qwen2.5-7b", "gpu": "l40s",
                            "text_only_input": True},
                           {"name": "small", "kind": "model", "model": "smolvlm-256m", "gpu": "l4"}],
                "routes": [{"classes": ["doc"], "path": ["ocr", "text"]}, {"classes": ["*"], "path": ["small"]}]}]),
    _scenario("queue", {"kind": "poisson", "rate_rps": 8,
                        "bursts": {"kind": "mmpp", "states": [{"rate_multiplier": 0.5, "mean_sojourn_s": 10},
                                                              {"rate_multiplier": 4, "mean_sojourn_s": 2}]}},
              [{"name": "mm1", "stages": [{"name": "q", "kind": "synthetic", "servers": 2,
                                           "service": {"distribution": "exponential", "mean_s": 0.2}}]}]),
    _scenario("api", {"kind": "poisson", "rate_rps": 5},
              [{"name": "api", "stages": [{"name": "api", "kind": "hosted_api", "api": "gpt-4o-mini",
                                           "max_concurrency": 8}]}]),
    _scenario("closed", {"kind": "closed_loop", "users": 16, "think_time_s": 0.5},
              [{"name": "moe", "stages": [{"name": "moe", "kind": "model", "model": "qwen3-30b-a3b", "gpu": "h100-sxm",
                                           "hot_expert_factor": 1.5}]}],
              classes=[CLASSES[1]]),
    _scenario("offline", {"kind": "offline", "requests": 300},
              [{"name": "split", "stages": [{"name": "vlm", "kind": "model", "model": "qwen2.5-vl-7b",
                                             "gpu": "h100-sxm",
                                             "disaggregation": {"mode": "prefill_decode", "prefill_replicas": 1,
                                                                "decode_replicas": 1}}]}]),
]

EXTREMES = [0, -1, 1, 2, 0.5, 1e-300, 1e-9, 1e-3, 3.7, 100, 1e4, 1e6, 1e9, 1e12, 1e18, 2**31, 2**63, 10**30,
            math.nan, math.inf, -math.inf, "", "x", "auto", "*", None, True, [], {}]
POSITIVE_EXTREMES = [1, 2, 1e-300, 1e-9, 1e-3, 0.5, 3.7, 100, 1e4, 1e6, 1e9, 1e12, 2**31, 2**63, 10**30]
SCALES = [1e-12, 1e-6, 1e-3, 0.1, 10, 1e3, 1e6, 1e12]


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys and indices) into a YAML-like tree, the root excluded."""
    found = [prefix] if prefix else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found += _paths(child, (*prefix, key))
    return found


def _at(tree: object, path: tuple) -> object:
    for key in path:
        tree = tree[key]  # type: ignore[index]
    return tree


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mutate(scenario: dict, rng: random.Random) -> tuple[dict, list[str]]:
    """``scenario`` with one to three random mutations, and what each did.

    Mostly numbers (scaled, or set to a positive extreme, so that many inputs pass the schema and
    reach the simulator); sometimes any extreme, a deleted key, a duplicated list item or a swapped name.
    """
    data = copy.deepcopy(scenario)
    done = []
    for _ in range(rng.randint(1, 3)):
        paths = _paths(data)
        numbers = [p for p in paths if _is_number(_at(data, p))]
        path = rng.choice(numbers if numbers and rng.random() < 0.7 else paths)
        parent, key = _at(data, path[:-1]), path[-1]
        value = parent[key]
        names = [v for p in paths if isinstance(v := _at(data, p), str)]
        roll = rng.random()
        if _is_number(value) and roll < 0.45:
            action, new = "scale", value * rng.choice(SCALES)
            parent[key] = int(new) if isinstance(value, int) and abs(new) < 2**63 else new
        elif _is_number(value) and roll < 0.8:
            action, parent[key] = "set", rng.choice(POSITIVE_EXTREMES)
        elif roll < 0.85:
            action = "delete"
            del parent[key]
        elif isinstance(value, list) and value and roll < 0.95:
            action = "duplicate"
            value.append(copy.deepcopy(rng.choice(value)))
        elif isinstance(value, str) and names and roll < 0.95:
            action, parent[key] = "swap", rng.choice(names)
        else:
            action, parent[key] = "extreme", rng.choice(EXTREMES)
        done.append(f"{action} {'.'.join(map(str, path))}")
    return data, done


@dataclass
class Run:
    """One command's outcome in a capped child."""

    code: int | str  # exit status, or "timeout" / "signal N"
    stdout: str
    stderr: str
    seconds: float
    limit_s: float = TIME_LIMIT_S  # the CPU time it was allowed


def preload() -> None:
    """Import what the commands import lazily, once, so each forked child starts warm."""
    import planner.run  # noqa: F401
    import planner.scenario  # noqa: F401
    import sim.preflight  # noqa: F401
    from profiles.catalog import load_catalog

    load_catalog()


def run_capped(args: list[str], memory_bytes: int = MEMORY_CAP_BYTES, time_limit_s: float = TIME_LIMIT_S) -> Run:
    """``vlmplan ARGS`` in a forked child (modules already imported) with RLIMIT_AS = ``memory_bytes``."""
    from planner.cli import main

    preload()

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: cap, redirect, run, exit without running the parent's cleanup
            code = 1
            try:
                resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.argv = ["vlmplan", *args]
                with redirect_stdout(io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)), \
                        redirect_stderr(io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)):
                    try:
                        main()
                        code = 0
                    except SystemExit as done:
                        code = done.code if isinstance(done.code, int) else 1
            except BaseException:  # a traceback is what the judge looks for: print it, as Python would
                import traceback

                traceback.print_exc(file=sys.__stderr__)
                os.write(2, traceback.format_exc().encode())
                code = 1
            finally:
                os._exit(code)
        code: int | str = "timeout"
        while time.perf_counter() - start < WALL_FACTOR * time_limit_s and _cpu_s(pid) < time_limit_s:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                code = code if code >= 0 else f"signal {-code}"
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return Run(code, out.read(), err.read(), seconds, time_limit_s)


def _cpu_s(pid: int) -> float:
    """CPU seconds of process ``pid`` and of its children it has waited for (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def _messages(stderr: str) -> list[str]:
    """stderr without the progress bar's lines."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]


def judge(path: Path, validate: Run, simulate: Run) -> str | None:
    """Why this input fails the contract (None: it passes)."""
    for command, run in (("validate", validate), ("simulate", simulate)):
        text = run.stdout + run.stderr
        if run.code == "timeout":
            return f"{command}: still running after its limit of {run.limit_s:,.0f} s of CPU time"
        if "Traceback" in text or "MemoryError" in text:
            return f"{command}: traceback: {_messages(run.stderr)[-1:]}"
        if run.code not in (0, 2):
            return f"{command}: exit {run.code}: {_messages(run.stderr)[-3:]}"
        if run.code == 2:
            lines = _messages(run.stderr)
            if not lines or not lines[0].startswith("error: "):
                return f"{command}: exit 2 without an 'error:' line: {lines[:2]}"
            unnamed = [line for line in lines if str(path) not in line]
            if unnamed:
                return f"{command}: a message does not name the file: {unnamed[0][:200]}"
    if (validate.code == 0) != (simulate.code == 0):
        return f"validate exit {validate.code} but simulate exit {simulate.code}: {_messages(simulate.stderr)[:1]}"
    if simulate.code == 0:
        return _unaccounted(simulate.stdout)
    return None


def _unaccounted(stdout: str) -> str | None:
    """Why the JSON does not account for every request (None: it does)."""
    report = json.loads(stdout)
    for deployment in report["deployments"]:
        figures = [deployment["metrics"], *deployment["per_class"].values()]
        for f in figures:
            parts = (f["completed"], f["rejected"], f["unfinished"])
            if min(parts) < 0 or sum(parts) != f["requests"]:
                return f"{deployment['name']}: requests {f['requests']} != completed + rejected + unfinished {parts}"
        if sum(c["requests"] for c in deployment["per_class"].values()) != deployment["metrics"]["requests"]:
            return f"{deployment['name']}: per-class requests do not add up to the total"
    return None


def fuzz_one(seed: int, workdir: Path, time_limit_s: float = TIME_LIMIT_S) -> tuple[str, str | None, list[str]]:
    """Mutate a base scenario with ``seed``, run validate and simulate; (outcome, failure, mutations)."""
    rng = random.Random(seed)
    data, mutations = mutate(rng.choice(BASES), rng)
    path = workdir / f"fuzz-{seed}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    validate = run_capped(["validate", str(path)], time_limit_s=time_limit_s)
    simulate_limit_s = simulation_time_limit_s(path, time_limit_s) if validate.code == 0 else time_limit_s
    simulate = run_capped(["simulate", str(path), "--json"], time_limit_s=simulate_limit_s)
    failure = judge(path, validate, simulate)
    outcome = "failed" if failure else "ran" if simulate.code == 0 else "refused"
    if not failure:
        path.unlink()
    return outcome, failure, mutations


def simulation_time_limit_s(path: Path, base_s: float = TIME_LIMIT_S) -> float:
    """The CPU time ``simulate`` may take on a scenario ``validate`` accepted: ``base_s`` plus its expected
    requests (``expected_requests``) at ``ENGINE_RATE_RPS``."""
    from planner.scenario import load_scenario

    scenario = load_scenario(path)
    return base_s + len(scenario.deployments) * expected_requests(scenario) / ENGINE_RATE_RPS


def expected_requests(scenario: "Scenario") -> float:
    """Requests one simulation of ``scenario`` generates at most, as the limits count them
    (``planner.scenario.run_volume``); a closed loop, whose volume shows only as it runs: every user sending
    again after a mean think time and client overhead (at least 1 ms), up to the ``MAX_RUN_REQUESTS`` at
    which it is stopped."""
    from planner.scenario import run_volume
    from sim.limits import MAX_RUN_REQUESTS
    from sim.traffic.arrivals import ClosedLoopArrivals
    from sim.traffic.sampling import size_mean

    volume = run_volume(scenario, scenario.horizon_s)
    if volume is not None:
        return volume.requests
    arrivals = scenario.traffic.arrivals
    assert isinstance(arrivals, ClosedLoopArrivals)  # run_volume counts every other kind
    cycle_s = max(1e-3, size_mean(arrivals.think_time_s) + size_mean(arrivals.client_overhead_s))
    return min(MAX_RUN_REQUESTS, arrivals.users * scenario.horizon_s / cycle_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1, help="first input's seed (inputs use seed, seed+1, ...)")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S,
                        help="CPU seconds per command, before a simulation's volume is added")
    parser.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()) / "vlmplan-fuzz",
                        help="folder for the failing inputs")
    parser.add_argument("--jobs", type=int, default=1, help="inputs run at once (worker processes)")
    options = parser.parse_args()
    options.keep.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    seeds = range(options.seed, options.seed + options.inputs)
    preload()  # once, before the workers fork
    with multiprocessing.get_context("fork").Pool(options.jobs) as pool:
        outcomes = pool.imap(_fuzz_seed, [(seed, options.keep, options.time_limit) for seed in seeds])
        for seed, (outcome, failure, mutations) in zip(seeds, outcomes, strict=True):
            _tally(counts, seed, outcome, failure, mutations, start)
    print(f"total {sum(counts.values()):,} inputs (seeds {options.seed}..{options.seed + options.inputs - 1}): "
          f"{counts['ran']:,} ran with every request accounted for, {counts['refused']:,} refused with exit 2 "
          f"naming the file, {counts['failed']:,} failed; {time.perf_counter() - start:,.0f} s (cap "
          f"{MEMORY_CAP_BYTES / 1e9:g} GB, limit {options.time_limit:g} s of CPU per command plus a simulation's "
          f"expected requests at {ENGINE_RATE_RPS:,} req/s, {options.jobs} at once)")
    sys.exit(1 if counts["failed"] else 0)


def _fuzz_seed(arguments: tuple[int, Path, float]) -> tuple[str, str | None, list[str]]:
    """``fuzz_one`` for a worker process."""
    return fuzz_one(*arguments)


def _tally(counts: Counter, seed: int, outcome: str, failure: str | None, mutations: list[str], start: float) -> None:
    """Count one input's outcome; print a failure at once and a progress line every 100 inputs."""
    counts[outcome] += 1
    if failure:
        print(f"FAIL seed {seed} ({'; '.join(mutations)}): {failure}", flush=True)
    done = sum(counts.values())
    if done % 100 == 0:
        print(f"{done:,} inputs: {counts['ran']:,} ran, {counts['refused']:,} refused (exit 2), "
              f"{counts['failed']:,} failed; {time.perf_counter() - start:,.0f} s",
              flush=True)


if __name__ == "__main__":
    main()
