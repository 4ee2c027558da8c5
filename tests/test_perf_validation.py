"""The roofline model against published measurements (benchmarks/validate_perf.py).

Every point must land within ``TOLERANCE_PCT`` of what was measured, except
the documented misses in ``KNOWN_MISSES`` (see /work/notes/validation_table.md),
which must at least keep the direction and rough size of their miss so a
change that makes them worse is noticed.
"""

import importlib.util
from pathlib import Path

import pytest

TOLERANCE_PCT = 25.0
# Point name + setup prefix -> (lowest, highest) error % accepted, with why.
KNOWN_MISSES = {
    # The seed's 1.5 s for a 70B VLM on a 4,096-token image is a blog figure
    # with no hardware; on 4x H100 the encode + prefill of 4.2k tokens computes
    # in ~0.35 s. On 4x A100 the measured vLLM 0.14.0 GEMMs (aiconfigurator-core)
    # prefill the 4.2k tokens in ~0.6 s, so the claim is missed there too (-38 %;
    # the roofline's lower A100 GEMM efficiency landed at -24 %).
    ("seed: 70B VLM on a 4,096-token image", "qwen2.5-vl-72b, 4x h100-sxm"): (-75.0, -50.0),
    ("seed: 70B VLM on a 4,096-token image", "qwen2.5-vl-72b, 4x a100-80gb"): (-50.0, -25.0),
}


def _validate_perf_module():
    """benchmarks/validate_perf.py, imported by path (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "validate_perf.py"
    spec = importlib.util.spec_from_file_location("validate_perf", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VALIDATE = _validate_perf_module()
POINTS = VALIDATE.validation_points()


def _known_miss(point) -> tuple[float, float] | None:
    """The accepted error range of a documented miss, if ``point`` is one."""
    for (name, setup), bounds in KNOWN_MISSES.items():
        if point.name == name and point.setup.startswith(setup):
            return bounds
    return None


@pytest.mark.parametrize("point", POINTS, ids=[f"{p.name} [{p.setup}]" for p in POINTS])
def test_prediction_is_close_to_measurement(point):
    bounds = _known_miss(point)
    if bounds is None:
        assert abs(point.error_pct) <= TOLERANCE_PCT, point
    else:
        assert bounds[0] <= point.error_pct <= bounds[1], point


def test_every_known_miss_is_still_in_the_table():
    for name, setup in KNOWN_MISSES:
        assert any(p.name == name and p.setup.startswith(setup) for p in POINTS)


def test_ci_latency_is_decode_bound():
    """128 decode steps at batch 8 dominate: the prefill of 8x32 tokens is a few percent."""
    from profiles.catalog import load_catalog
    from profiles.perf import perf_model

    catalog = load_catalog()
    pm = perf_model(catalog.model("llama-3-8b"), catalog.gpu("h200"))
    total = VALIDATE.latency_test_s(pm, 8, 32, 128)
    assert pm.prefill_s(256) < 0.05 * total


def test_mlperf_70b_fp8_leaves_one_h100_almost_no_kv_cache():
    """Why NVIDIA ran TP2: 69.5 GB of FP8 weights leave one H100 (81,559 MiB as the driver reports it) KV for
    fewer tokens than NVIDIA's batch of 896 needs at 64 tokens each; two GPUs per replica hold over 10x as many."""
    from profiles.catalog import load_catalog
    from profiles.perf import perf_model

    catalog = load_catalog()
    model, gpu = catalog.model("llama-2-70b"), catalog.gpu("h100-sxm")
    one_gpu = perf_model(model, gpu, 1, precision="fp8").memory.kv_capacity_tokens
    two_gpus = perf_model(model, gpu, 2, precision="fp8").memory.kv_capacity_tokens
    assert 0 < one_gpu < 896 * 64
    assert two_gpus > 10 * one_gpu


def test_table_formats_every_point():
    text = VALIDATE.format_table(POINTS, markdown=True)
    assert text.count("\n") == len(POINTS) + 1
    assert "MLPerf v4.1 llama2-70b offline" in text
