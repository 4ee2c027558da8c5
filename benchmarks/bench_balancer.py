"""Load-balancer cost per request as a pool grows from 8 to 800 replicas (figures for the README).

Usage: ``python benchmarks/bench_balancer.py [--requests R] [--replicas N ...]``

For each pool size N, simulates N replicas of a small text model under
Poisson traffic scaled with N (``RPS_PER_REPLICA`` requests/s per replica, a
system prompt and three-turn conversations so prefix-aware routing has
something to follow; ``--plain``: one-off requests; the horizon gives about R
requests whatever N) with each
balancer, and prints the wall-clock microseconds per simulated request (the
deployment is built before the clock starts). The per-request cost should not grow with
N: least-outstanding keeps a heap (a pick is O(log N)) where it used to scan
every replica. A last line times the balancer alone: a ``min`` scan (the old
pick) against the heap, per pick and release.
"""

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.api import SimulationJob, prepare  # noqa: E402  (after the path is set)
from sim.deployment import DeploymentSpec  # noqa: E402
from sim.router import LeastOutstanding  # noqa: E402
from sim.traffic import TrafficSpec  # noqa: E402

RPS_PER_REPLICA = 2.0
BALANCERS = ("round_robin", "least_outstanding", "prefix_aware")


PLAIN_CHAT = {"name": "chat", "text_tokens": 700, "output_tokens": 50}  # --plain: one-off requests
CONVERSATIONS = {**PLAIN_CHAT, "system_prompt_tokens": 500, "text_tokens": 200,
                 "session": {"turns": 3, "think_time_s": 2.0, "follow_up": {"text_tokens": 40}}}


def job(replicas: int, balancer: str, horizon_s: float, plain: bool = False) -> SimulationJob:
    """``replicas`` Qwen2.5-7B replicas on H100s, offered ``RPS_PER_REPLICA`` x ``replicas`` requests/s."""
    traffic = TrafficSpec.model_validate({
        "arrivals": {"kind": "poisson", "rate_rps": RPS_PER_REPLICA * replicas},
        "classes": [PLAIN_CHAT if plain else CONVERSATIONS]})
    deployment = DeploymentSpec.model_validate({"name": f"{balancer}-{replicas}", "stages": [
        {"name": "llm", "kind": "model", "model": "qwen2.5-7b", "gpu": "h100-sxm", "replicas": replicas,
         "load_balancer": balancer}]})
    return SimulationJob(deployment, traffic, horizon_s=horizon_s, seed=1, drain_s=30.0)


def per_request_us(replicas: int, balancer: str, requests: int, plain: bool) -> tuple[int, float]:
    """(requests, wall microseconds per request) of running one simulation of about ``requests`` requests."""
    run = prepare(job(replicas, balancer, requests / (RPS_PER_REPLICA * replicas), plain))  # the build is not timed
    start = time.perf_counter()
    run.driver.start()
    run.driver.run(None, None)
    wall_s = time.perf_counter() - start
    offered = sum(run.recorder.offered)
    return offered, 1e6 * wall_s / offered


class Server:
    """A stand-in replica: only its outstanding count."""

    def __init__(self) -> None:
        self.outstanding = 0


def pick_us(replicas: int, heap: bool, picks: int = 200_000) -> float:
    """Microseconds per pick and release with ``replicas`` servers holding about 8 requests each."""
    servers = [Server() for _ in range(replicas)]
    balancer = LeastOutstanding()
    rng = random.Random(0)
    held = []
    start = time.perf_counter()
    for _ in range(picks):
        server = balancer.pick(servers) if heap else min(servers, key=lambda s: s.outstanding)
        server.outstanding += 1
        held.append(server)
        if len(held) > 8 * replicas:
            gone = held.pop(rng.randrange(len(held)))
            gone.outstanding -= 1
            balancer.released(gone)
    return 1e6 * (time.perf_counter() - start) / picks


def main() -> None:
    """Parse arguments and print one line per pool size and balancer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run (about)")
    parser.add_argument("--replicas", type=int, action="append", default=[], help="pool sizes (default 8, 800)")
    parser.add_argument("--plain", action="store_true", help="one-off chat requests, no conversations")
    parser.add_argument("--balancer", action="append", default=[], help="only these balancers")
    args = parser.parse_args()
    from sim import ENGINE

    print(f"engine: {ENGINE}", flush=True)
    for replicas in args.replicas or [8, 800]:
        for balancer in args.balancer or BALANCERS:
            requests, cost_us = per_request_us(replicas, balancer, args.requests, args.plain)
            print(f"{replicas:>4} replicas  {balancer:<18} {requests:>8,} req  {cost_us:7.1f} us/request", flush=True)
    for replicas in args.replicas or [8, 800]:
        print(f"{replicas:>4} replicas  balancer alone: scan {pick_us(replicas, heap=False):6.2f} us/pick, "
              f"heap {pick_us(replicas, heap=True):6.2f} us/pick", flush=True)


if __name__ == "__main__":
    main()
