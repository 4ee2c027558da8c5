"""A small scenario for planner tests: a searched VLM pool, a hosted API and a synthetic M/M/2 queue."""

from pathlib import Path

TINY_SCENARIO = """\
name: tiny
description: Two request classes, a searched VLM pool, a hosted API and a synthetic queue.
seed: 7
horizon_s: 120
traffic:
  arrivals: {kind: poisson, rate_rps: 6}
  classes:
    - {name: doc, share: 0.5, images: {count: 1, width_px: 1024, height_px: 1024}, text_tokens: 50,
       output_tokens: 100}
    - {name: chat, share: 0.5, text_tokens: 200, output_tokens: 100}
slo: {ttft_s: 2.0, tpot_s: 0.2, attainment: 0.95}
deployments:
  - name: vlm-auto
    stages: [{name: vlm, kind: model, model: qwen2.5-vl-7b, gpu: l4, replicas: auto, max_replicas: 16}]
  - name: api
    stages: [{name: api, kind: hosted_api, api: gpt-4o-mini}]
  - name: queue
    stages: [{name: q, kind: synthetic, servers: 2, usd_per_server_hour: 1.0,
              service: {distribution: exponential, mean_s: 0.2}}]
"""


def write_tiny(directory: Path) -> Path:
    """Write the tiny scenario into ``directory``; its path."""
    path = directory / "tiny.yaml"
    path.write_text(TINY_SCENARIO, encoding="utf-8")
    return path
