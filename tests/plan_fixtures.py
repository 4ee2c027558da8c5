"""Small scenarios for planner tests: a searched VLM pool, a hosted API and a synthetic M/M/2 queue (tiny),
and a strong daily cycle through a pool that can scale (daily cycle)."""

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


DAILY_CYCLE_SCENARIO = """\
name: daily-cycle
description: A strong daily cycle through a small VLM pool that can scale, and a hosted API that cannot.
seed: 5
horizon_s: 7200
traffic:
  start_s: 50400
  arrivals: {kind: diurnal, requests_per_day: 60000, peak_to_trough: 8.0, peak_hour: 14}
  classes:
    - {name: doc, share: 0.5, images: {count: 1, width_px: 1024, height_px: 1024}, text_tokens: 50,
       output_tokens: 100}
    - {name: chat, share: 0.5, text_tokens: 200, output_tokens: 100}
slo: {ttft_s: 1.0, tpot_s: 0.1, attainment: 0.95}
deployments:
  - name: vlm-auto
    stages: [{name: vlm, kind: model, model: qwen2.5-vl-7b, gpu: l4, replicas: auto, max_replicas: 16}]
  - name: api
    stages: [{name: api, kind: hosted_api, api: gpt-4o-mini}]
"""


def write_tiny(directory: Path) -> Path:
    """Write the tiny scenario into ``directory``; its path."""
    return _write(directory / "tiny.yaml", TINY_SCENARIO)


def write_daily_cycle(directory: Path) -> Path:
    """Write the daily-cycle scenario (horizon: the 2 h from 14:00) into ``directory``; its path."""
    return _write(directory / "cycle.yaml", DAILY_CYCLE_SCENARIO)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
