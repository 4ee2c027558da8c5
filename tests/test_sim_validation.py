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
    # TTFT mean / p50 / p99 -65.3 / -67.8 / -54.4 %, TPOT mean / p99 -72.2 / -71.3 %. The scenario runs
    # NVIDIA's v4.1 harness settings (no overlap scheduler: a prompt waits only for the step under way;
    # whole prompts, max_num_tokens 4096, batch 1024). The latencies are a fixed point near saturation:
    # vlmplan's step at the measured operating point (836 decodes + 2.9 prompts) is 133-137 ms against the
    # measured ~155, and that 12-14 % sets the batch at ~220 sequences instead of ~840 (README).
    "MLPerf v4.1 llama2-70b server @75 QPS: TTFT": (-75.0, -50.0),
    "MLPerf v4.1 llama2-70b server @75 QPS: TPOT": (-80.0, -65.0),
    # 8x H200 (TP1): TTFT mean / p99 -37.9 / -38.5 %, TPOT mean / p99 -56.9 / -57.4 %: the same fixed point, from a
    # step at the measured operating point (450 decodes + 1.6 prompts) 6-8 % short, as the H200 offline
    # point (+6.2 % samples/s) is fast per token.
    "MLPerf v4.1 llama2-70b server, 8x H200 @101 QPS: TTFT": (-55.0, -25.0),
    "MLPerf v4.1 llama2-70b server, 8x H200 @101 QPS: TPOT": (-70.0, -45.0),
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


def test_the_step_at_each_measured_mlperf_operating_point_is_within_20_percent_of_the_measured_tpot(validation):
    """Like with like: a measured mean TPOT is the step of the sequences in flight with the prompts it carries.

    At 8x H100 (836 sequences, 2.9 prompts a step) vlmplan's step reads 133-137 ms against 155 ms (-12 to
    -14 %); at 8x H200 (450 sequences, 1.6 prompts) 113-116 against 123.3 (-6 to -8 %). The decode-only steps
    (74-78 and 61-64 ms) are not what the measurements time. A step model that drifts at large batches fails
    here even though the server replays, fixed points far below those batches, would hide it.
    """
    module, _rows = validation
    for point in module.OPERATING_POINTS:
        steps = module.operating_point_steps(point)
        mixed = [seconds for label, seconds in steps if "prompts" in label]
        decode_only = [seconds for label, seconds in steps if "prompts" not in label]
        assert len(mixed) == len(decode_only) == 2
        for seconds in mixed:
            error = module.error_pct(point.tpot_mean_ms, seconds * 1e3)
            assert -20.0 <= error <= 5.0, f"{point.scenario}: {error:+.1f} %"
        assert all(d < m for d, m in zip(decode_only, mixed, strict=True))


def test_the_load_sweep_at_the_scenarios_own_rate_reproduces_the_table(validation):
    """The sweep changes the arrival rate and nothing else: at 75 QPS it reads the table's TPOT and TTFT."""
    module, rows = validation
    table = {point.name: predicted for point, predicted in rows}
    [(rate, metrics)] = module.load_sweep((75.0,))
    assert rate == 75.0
    assert metrics["tpot_mean_s"] * 1e3 == pytest.approx(table["MLPerf v4.1 llama2-70b server @75 QPS: TPOT mean"])
    assert metrics["ttft_p99_s"] * 1e3 == pytest.approx(table["MLPerf v4.1 llama2-70b server @75 QPS: TTFT p99"])
