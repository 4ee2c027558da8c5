"""Simulator speed and memory on the bundled default scenario (figures for the README).

Usage: ``python benchmarks/bench_sim.py [--horizon S] [--deployment NAME ...] [--day NAME] [--no-day]``

For each deployment of the default scenario (one simulated hour unless
``--horizon``), and for one full simulated day (86,400 s, about 1,000,000
requests with the bundled mix) through ``--day`` (default ``omni-7b``), prints
simulated requests, wall time, simulated requests per wall-clock second, CPU
time and peak resident memory. Every measurement runs in a fresh process (one
core, nothing in parallel), so its peak memory is its own; "all of the above"
sums the deployments' requests and times (the whole default mix, one core).
The issue-3 targets: at least 20,000 requests per wall second; the day in
under 60 s and 1.5 GB. The first line says whether the engine loop runs
compiled (mypyc, see setup.py) or as pure Python (``VLMPLAN_PURE_PYTHON=1``).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.traffic.arrivals import SECONDS_PER_DAY  # noqa: E402  (after the path is set)

DEFAULT_DAY_DEPLOYMENT = "omni-7b"


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MB (``VmHWM`` on Linux, else ``ru_maxrss``)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_one(deployment: str, horizon_s: float | None) -> dict:
    """Simulate one deployment of the default scenario in this process and return its figures."""
    from planner.run import scenario_jobs
    from planner.scenario import default_scenario_path, load_scenario
    from sim.api import simulate

    # A 24 h horizon covers one whole daily cycle from any start time.
    (job,) = scenario_jobs(load_scenario(default_scenario_path()), horizon_s=horizon_s, only=[deployment])
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    result = simulate(job)
    wall_s, cpu_s = time.perf_counter() - wall_start, time.process_time() - cpu_start
    return {"requests": result.metrics["requests"], "wall_s": wall_s, "cpu_s": cpu_s,
            "peak_rss_mb": peak_rss_mb(), "e2e_p99_s": result.metrics["e2e_p99_s"],
            "overloaded": result.metrics["overloaded"]}


def measure_in_child(deployment: str, horizon_s: float | None) -> dict:
    """``measure_one`` in a fresh Python process, so peak memory is that run's alone."""
    command = [sys.executable, __file__, "--child", deployment]
    if horizon_s is not None:
        command += ["--horizon", repr(horizon_s)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(label: str, figures: dict) -> None:
    """One line of figures (a deployment's own line adds its e2e p99 and whether it was overloaded)."""
    requests, wall_s, cpu_s = figures["requests"], figures["wall_s"], figures["cpu_s"]
    outcome = (f"  (e2e p99 {figures['e2e_p99_s']:.2f} s, overloaded {figures['overloaded']})"
               if "e2e_p99_s" in figures else "")
    print(f"{label:<24} {requests:>10,} req  wall {wall_s:7.2f} s {requests / wall_s:>8,.0f} req/s  "
          f"cpu {cpu_s:7.2f} s {requests / cpu_s:>8,.0f} req/s  peak RSS {figures['peak_rss_mb']:6.0f} MB"
          f"{outcome}", flush=True)


def main() -> None:
    """Parse arguments and run the benchmarks (or, with ``--child``, one measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=float, default=None, help="simulated seconds (default: the scenario's)")
    parser.add_argument("--deployment", action="append", default=[], help="only these deployments")
    parser.add_argument("--day", default=DEFAULT_DAY_DEPLOYMENT, help="the deployment to simulate for a whole day")
    parser.add_argument("--no-day", action="store_true", help="skip the full-day run")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.child, args.horizon)))
        return
    from planner.scenario import default_scenario_path, load_scenario
    from sim import ENGINE

    print(f"engine: {ENGINE}", flush=True)  # the children import sim the same way
    names = args.deployment or [d.name for d in load_scenario(default_scenario_path()).deployments]
    measured = [measure_in_child(name, args.horizon) for name in names]
    for name, figures in zip(names, measured, strict=True):
        report(name, figures)
    if len(measured) > 1:  # the whole mix: every deployment one after another on one core
        report("all of the above", {"requests": sum(f["requests"] for f in measured),
                                    "wall_s": sum(f["wall_s"] for f in measured),
                                    "cpu_s": sum(f["cpu_s"] for f in measured),
                                    "peak_rss_mb": max(f["peak_rss_mb"] for f in measured)})
    if not args.no_day:
        report(f"{args.day} (one day)", measure_in_child(args.day, SECONDS_PER_DAY))


if __name__ == "__main__":
    main()
