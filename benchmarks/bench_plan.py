"""How many simulations the capacity search takes, and how long, against one `vlmplan simulate` of the same scenario.

Runs, each in a fresh process with the default workers (one per core):
``vlmplan simulate`` and ``vlmplan plan --size-all`` on the bundled default
scenario, then ``vlmplan simulate`` and ``vlmplan plan --autoscale`` on
planner/scenarios/autoscale.yaml, and prints the simulations each plan ran
(from its ``--json``), the wall times and their ratio. Targets (issue
"Answers a buyer can trust"): at most 3x for ``--size-all``, 5x for
``--autoscale``. Wall times move with other load on the machine; the load
average is printed alongside, and so are the CPU seconds each command took
with its worker processes (``cpu``), whose ratio other load moves less: on
a busy machine the wall ratio drifts towards it. Usage:
``python benchmarks/bench_plan.py``.
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "planner" / "scenarios"
CASES = (
    ("default.yaml", ["--size-all"], 3.0),
    ("autoscale.yaml", ["--autoscale"], 5.0),
)


def timed(*args: str) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (with its worker processes) and stdout of ``vlmplan ARGS`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    wall_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall_s, cpu_s, done.stdout


def simulations(plan: dict) -> int:
    """Simulations a plan's JSON reports: the sizing searches and the autoscale windows."""
    return (sum(d.get("simulations", 0) for d in plan["deployments"])
            + sum(s.get("simulations", 0) for s in plan.get("autoscale", [])))


def main() -> None:
    """Print one row per case."""
    print(f"engine: {'pure Python' if os.environ.get('VLMPLAN_PURE_PYTHON') else 'as installed'}; "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'command':<40} {'simulations':>11} {'wall s':>8} {'simulate s':>10} {'ratio':>6} {'target':>6} "
          f"{'cpu s':>7} {'simulate':>8} {'ratio':>6}")
    for scenario, options, target in CASES:
        path = str(SCENARIOS / scenario)
        simulate_s, simulate_cpu_s, _ = timed("simulate", path)
        plan_s, plan_cpu_s, out = timed("plan", path, *options, "--json")
        command = f"plan {scenario} {' '.join(options)}"
        print(f"{command:<40} {simulations(json.loads(out)):>11} {plan_s:>8.1f} {simulate_s:>10.1f} "
              f"{plan_s / simulate_s:>5.1f}x {target:>5.0f}x {plan_cpu_s:>7.1f} {simulate_cpu_s:>8.1f} "
              f"{plan_cpu_s / simulate_cpu_s:>5.1f}x")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
