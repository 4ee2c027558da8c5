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
    # -53.6 % (p50) and -43.7 % (p99): async scheduling made a prompt wait the decode step under way
    # and the one scheduled beside it (-57 / -43 % -> -35 / -25 %), then ModelOpt's static FP8 scales
    # (fp8_static) made every step faster.
    "MLPerf v4.1 llama2-70b server @75 QPS: TTFT": (-60.0, -35.0),
    "MLPerf v4.1 llama2-70b server @75 QPS: TPOT": (-80.0, -50.0),
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
