"""The simulator (engine + performance model) against published serving measurements (benchmarks/validate_sim.py).

Throughput and fixed-batch latency points must land within 25 %. The MLPerf
server latencies are a documented miss (README, "Validation"): the test pins
the miss's size so that it fails if the model drifts further away.
"""

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "validate_sim.py"
DOCUMENTED_MISSES = {  # point name prefix -> allowed error range, percent
    # TTFT mean / p50 / p99 -66.5 / -69.1 / -55.4 %, TPOT mean / p99 -73.3 / -72.2 %. The scenario runs
    # NVIDIA's v4.1 harness settings (no overlap scheduler: a prompt waits only for the step under way;
    # whole prompts, max_num_tokens 4096, batch 1024). The latencies are a fixed point near saturation:
    # vlmplan's step at the measured operating point (840 decodes + 3 prompts) is 135-139 ms against the
    # measured ~155, and that 10-13 % sets the batch at ~200 sequences instead of ~840 (README).
    "MLPerf v4.1 llama2-70b server @75 QPS: TTFT": (-75.0, -50.0),
    "MLPerf v4.1 llama2-70b server @75 QPS: TPOT": (-80.0, -65.0),
}


@pytest.fixture(scope="module")
def validation():
    """The benchmark module's points, each with its simulated value."""
    spec = importlib.util.spec_from_file_location("validate_sim", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.simulated_values()


def test_every_point_is_within_25_percent_or_a_documented_miss(validation):
    module, rows = validation
    assert len(rows) == len(module.POINTS)
    for point, predicted in rows:
        error = module.error_pct(point.measured, predicted)
        bounds = next((b for prefix, b in DOCUMENTED_MISSES.items() if point.name.startswith(prefix)), (-25.0, 25.0))
        assert bounds[0] <= error <= bounds[1], f"{point.name}: {error:+.1f} % outside {bounds}"


def test_the_step_at_the_measured_mlperf_operating_point_is_within_15_percent_of_the_measured_tpot(validation):
    """Like with like: the measured mean TPOT (155 ms) is the step of ~840 sequences with ~3 prompts in it.

    vlmplan's step at that composition reads 135-139 ms (-10 to -13 %); its decode-only step (75-78 ms)
    is not what the measurement times. A step model that drifts at large batches fails here even though
    the server replay, a fixed point far below that batch, would hide it.
    """
    module, _rows = validation
    steps = dict(module.operating_point_steps())
    mixed = [seconds for label, seconds in steps.items() if "prompts" in label]
    decode_only = [seconds for label, seconds in steps.items() if "prompts" not in label]
    assert len(mixed) == len(decode_only) == 2
    for seconds in mixed:
        assert -15.0 <= module.error_pct(155.0, seconds * 1e3) <= 5.0
    assert all(d < m for d, m in zip(decode_only, mixed, strict=True))
