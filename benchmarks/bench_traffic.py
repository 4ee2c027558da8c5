"""Traffic generation speed on the bundled default scenario (no simulation).

Usage: ``python benchmarks/bench_traffic.py [--horizon S]``

Prints requests generated, wall time and requests per wall-clock second for
the default mix (diurnal + bursts, five classes), for a full day of it, and
for an offline batch; plus peak resident memory, which stays flat because
``TrafficSource.requests`` is a generator.
"""

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.scenario import default_scenario_path, load_scenario  # noqa: E402
from sim.traffic import TrafficSource  # noqa: E402


def measure(label: str, source: TrafficSource, horizon_s: float) -> None:
    """Drain ``source`` up to ``horizon_s`` and print one line of figures."""
    start = time.perf_counter()
    count = sum(1 for _ in source.requests(horizon_s))
    wall_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{label:<32} {count:>10,} req {wall_s:>7.2f} s {count / wall_s:>10,.0f} req/s  peak RSS {peak_mb:.0f} MB")


def main() -> None:
    """Run the three measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=float, default=None, help="simulated seconds (default: the scenario's)")
    args = parser.parse_args()
    scenario = load_scenario(default_scenario_path())
    horizon_s = args.horizon or scenario.horizon_s
    measure(f"default mix, {horizon_s:g} s", TrafficSource(scenario.traffic, scenario.seed), horizon_s)
    day = scenario.traffic.model_copy(update={"start_s": 0.0})
    measure("default mix, full day", TrafficSource(day, scenario.seed), 86_400)
    offline = type(day).model_validate({**day.model_dump(), "arrivals": {"kind": "offline", "requests": 200_000}})
    measure("offline batch of 200,000", TrafficSource(offline, scenario.seed), 1.0)


if __name__ == "__main__":
    main()
