"""Simulator speed and memory on the bundled default scenario (figures for the README).

Usage: ``python benchmarks/bench_sim.py [--horizon S] [--deployment NAME ...] [--day NAME]``

Prints, per deployment, simulated requests, wall time, simulated requests
per wall-clock second, and the peak resident memory of this process. With
``--day NAME`` it also runs one full simulated day (86,400 s; the bundled
mix is 1,000,000 requests/day) through that deployment. One core, one
process: nothing runs in parallel.
"""

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.run import scenario_jobs  # noqa: E402
from planner.scenario import default_scenario_path, load_scenario  # noqa: E402
from sim.api import simulate  # noqa: E402


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(job, label: str) -> None:
    """Simulate ``job`` and print one line of figures."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = simulate(job)
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    requests = result.metrics["requests"]
    # CPU seconds too: on a shared machine the wall clock also counts other processes.
    print(f"{label:<26} {requests:>10,} req  wall {wall_s:7.2f} s {requests / wall_s:>8,.0f} req/s  "
          f"cpu {cpu_s:7.2f} s {requests / cpu_s:>8,.0f} req/s  peak RSS {peak_rss_mb():5.0f} MB  "
          f"(e2e p99 {result.metrics['e2e_p99_s']:.2f} s, overloaded {result.metrics['overloaded']})", flush=True)


def main() -> None:
    """Parse arguments and run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=float, default=None, help="simulated seconds (default: the scenario's)")
    parser.add_argument("--deployment", action="append", default=[], help="only these deployments")
    parser.add_argument("--day", default=None, help="also simulate a whole day through this deployment")
    args = parser.parse_args()
    scenario = load_scenario(default_scenario_path())
    for job in scenario_jobs(scenario, horizon_s=args.horizon, only=args.deployment):
        run(job, job.deployment.name)
    if args.day:
        (job,) = scenario_jobs(scenario, horizon_s=86_400.0, only=[args.day])
        run(job, f"{args.day} (one day)")


if __name__ == "__main__":
    main()
