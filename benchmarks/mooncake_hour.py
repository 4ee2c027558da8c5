"""Mooncake's whole public hour planned (the README's table under "One public trace replayed").

The bundled `planner/scenarios/mooncake_replay.yaml` replays the first 300 s of
Mooncake's conversation trace. This script plans the whole hour
(`conversation_trace.jsonl`, 12,031 requests; kvcache-ai/Mooncake
`FAST25-release/traces/`, Apache-2.0, not bundled: pass its path) with the same
deployments, up to 24 replicas each, plus prefix-aware routing with a 128 GB
host tier per replica, and prints each deployment's replicas, cost, prefix
hits, prompt tokens prefilled and TTFT. It runs `vlmplan plan --json` on a
scenario written to a temporary folder; about 7 minutes on 2 cores.

    python benchmarks/mooncake_hour.py PATH/TO/conversation_trace.jsonl
"""

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

BUNDLED = Path(__file__).resolve().parents[1] / "planner" / "scenarios" / "mooncake_replay.yaml"
HOUR_S = 3600.0
MAX_REPLICAS = 24
HOST_KV_GB = 128


def hour_scenario(trace: Path) -> dict:
    """The bundled excerpt's scenario over the whole trace, with a host-tier deployment beside prefix-aware."""
    scenario = yaml.safe_load(BUNDLED.read_text())
    scenario["horizon_s"] = HOUR_S
    scenario["traffic"]["arrivals"]["path"] = str(trace.resolve())
    for deployment in scenario["deployments"]:
        for stage in deployment["stages"]:
            stage["max_replicas"] = MAX_REPLICAS
    prefix_aware = next(d for d in scenario["deployments"] if d["name"] == "prefix-aware")
    host = copy.deepcopy(prefix_aware)
    host["name"] = "prefix-aware-host"
    host["description"] = f"prefix-aware routing, and a {HOST_KV_GB} GB host tier per replica for evicted blocks"
    for stage in host["stages"]:
        stage.update(host_prefix_cache=True, host_kv_gb=HOST_KV_GB)
    scenario["deployments"].insert(scenario["deployments"].index(prefix_aware) + 1, host)
    return scenario


def table(plan: dict) -> list[str]:
    """One line per deployment: replicas, $/day, hits (of them from host), prompt tokens prefilled, TTFT."""
    lines = [f"{'deployment':<20} {'replicas':>8} {'$/day':>8} {'prefix hits':>12} {'(from host)':>11} "
             f"{'prefilled M':>11} {'TTFT p50 s':>10} {'TTFT p99 s':>10}  SLO"]
    for deployment in plan["deployments"]:
        metrics = deployment["metrics"]
        stage = deployment["per_stage"]["llm"] if deployment.get("per_stage") else {}
        queried = stage.get("prefix_cache_queried_tokens") or 0
        hits = (stage.get("prefix_cache_hit_tokens") or 0) / queried if queried else 0.0
        host = (stage.get("prefix_cache_host_hit_tokens") or 0) / queried if queried else 0.0
        lines.append(
            f"{deployment['name']:<20} {stage.get('replicas', '-')!s:>8} "
            f"{metrics.get('cost_per_day_usd') or 0:>8,.0f} {hits:>12.1%} {host:>11.1%} "
            f"{(stage.get('prefill_tokens') or 0) / 1e6:>11.1f} {metrics['ttft_p50_s']:>10.3f} "
            f"{metrics['ttft_p99_s']:>10.2f}  {deployment['verdict']}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", type=Path, help="Mooncake's conversation_trace.jsonl")
    args = parser.parse_args()
    if not args.trace.is_file():
        print(f"{args.trace}: no such file (Mooncake's FAST25-release/traces/conversation_trace.jsonl)",
              file=sys.stderr)
        raise SystemExit(2)
    with tempfile.TemporaryDirectory() as folder:
        scenario = Path(folder) / "mooncake_hour.yaml"
        scenario.write_text(yaml.safe_dump(hour_scenario(args.trace), sort_keys=False))
        done = subprocess.run([sys.executable, "-m", "planner", "plan", str(scenario), "--json"],
                              capture_output=True, text=True, check=False)
    if done.returncode:
        print(done.stderr, file=sys.stderr, end="")
        raise SystemExit(done.returncode)
    print("\n".join(table(json.loads(done.stdout))))


if __name__ == "__main__":
    main()
