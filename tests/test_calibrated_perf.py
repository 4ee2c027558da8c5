"""profiles/perf/calibrated.py: the PerfModel answering from a calibration profile (no torch needed)."""

import pytest

from profiles.calibration import (
    CalibrationProfile,
    ComponentFit,
    DeviceInfo,
    NvmlReading,
    save_profile,
)
from profiles.catalog import load_catalog
from profiles.errors import ConfigurationError
from profiles.perf import perf_model
from profiles.perf.calibrated import CalibratedPerfModel
from profiles.perf.calibrated_features import (
    connector_features,
    decode_layer_features,
    lm_head_features,
    prefill_layer_features,
    vision_block_features,
)

NO_NVML = NvmlReading(status="unavailable: NVML Shared Library Not Found")


def _fit(component: str, linear: dict[str, float], weight: float = 0.0, flop: float = 0.0,
         gemv: float = 0.0, gemv_below_rows: int = 1) -> ComponentFit:
    return ComponentFit(component=component, linear=linear, weight_s_per_elem=weight, s_per_gemm_flop=flop,
                        knee_exponent=2.0, gemv_s_per_elem=gemv, gemv_below_rows=gemv_below_rows,
                        train_points=5, holdout_points=2, train_mape_pct=1.0, holdout_mape_pct=2.0)


@pytest.fixture(scope="module")
def smolvlm():
    """SmolVLM-256M from the catalog."""
    return load_catalog().model("smolvlm-256m")


@pytest.fixture(scope="module")
def profile(smolvlm) -> CalibrationProfile:
    """A hand-written profile of SmolVLM-256M on an L4 (every component but audio)."""
    fits = (
        _fit("vision_block", {"const": 1e-4, "attn_flops": 2e-14}, weight=1e-12, flop=1e-14),
        _fit("connector", {"const": 5e-5}, weight=1e-12, flop=1e-14),
        _fit("decoder_prefill", {"const": 3e-5, "attn_flops": 2e-14, "kv_elems": 1e-12}, weight=2e-12, flop=1e-14),
        _fit("decoder_decode", {"const": 2e-5, "kv_elems": 3e-12}, weight=2e-12, flop=2e-14,
             gemv=3e-12, gemv_below_rows=2),
        _fit("lm_head", {"const": 1e-5}, weight=1e-12, flop=1e-14, gemv=1.5e-12, gemv_below_rows=2),
        _fit("preprocess", {"images": 0.02, "input_mp": 0.01, "resample_mp": 0.004, "output_mp": 0.006}),
    )
    device = DeviceInfo(kind="cuda", name="NVIDIA L4", gpu_id="l4", driver="550.54.15", cuda="12.4",
                        torch="2.13.0", threads=8, timing_clock="cuda_events", nvml_before=NO_NVML,
                        nvml_after=NO_NVML)
    return CalibrationProfile(model_id=smolvlm.id, model=smolvlm, precision="bf16",
                              created="2026-06-22T10:00:00+00:00", quick=True, device=device,
                              measurements=(), fits=fits, holdout_mape_pct=2.0, composed=None)


@pytest.fixture(scope="module")
def calibrated(smolvlm, profile) -> CalibratedPerfModel:
    """The calibrated model with the L4 roofline as fallback, built the way the planner builds it."""
    model = perf_model(smolvlm, load_catalog().gpu("l4"), calibration=profile)
    assert isinstance(model, CalibratedPerfModel)
    return model


@pytest.fixture(scope="module")
def roofline(smolvlm):
    """The roofline the calibrated model falls back to."""
    return perf_model(smolvlm, load_catalog().gpu("l4"))


def test_provenance_names_device_and_date(calibrated):
    """'calibrated on <device>, <date>'."""
    assert calibrated.provenance == "calibrated on NVIDIA L4, 2026-06-22"


def test_decode_step_is_layers_times_the_layer_fit_plus_lm_head(calibrated, profile, smolvlm):
    """Batch 8, 8,000 KV tokens: 30 decoder layers + one LM head over 8 rows."""
    decoder = smolvlm.decoder
    layer = profile.fit("decoder_decode").predict_s(decode_layer_features(decoder, 8, 8000))
    head = profile.fit("lm_head").predict_s(lm_head_features(decoder, 8))
    assert calibrated.decode_step_s(8, 8000) == pytest.approx(30 * layer + head)


def test_batch_one_decode_uses_the_matrix_vector_term(calibrated, profile, smolvlm):
    """One row streams the weights once per row: the GEMV coefficient, not the roofline."""
    decoder = smolvlm.decoder
    features = decode_layer_features(decoder, 1, 500)
    expected_layer = 2e-5 + 3e-12 * features["kv_elems"] + 3e-12 * features["weight_elems"]
    head = lm_head_features(decoder, 1)
    expected_head = 1e-5 + 1.5e-12 * head["weight_elems"]
    assert calibrated.decode_step_s(1, 500) == pytest.approx(30 * expected_layer + expected_head)


def test_prefill_uses_the_prefill_fit_and_grows_with_context(calibrated, profile, smolvlm):
    """512 new tokens after 0 and after 4,000 cached: more attention, more time."""
    layer = profile.fit("decoder_prefill").predict_s(prefill_layer_features(smolvlm.decoder, 512, 0))
    head = profile.fit("lm_head").predict_s(lm_head_features(smolvlm.decoder, 1))
    assert calibrated.prefill_s(512) == pytest.approx(30 * layer + head)
    assert calibrated.prefill_s(512, 4000) > calibrated.prefill_s(512)


def test_mixed_step_costs_more_than_its_prefill_alone(calibrated):
    """A chunk of 256 with 16 decoding sequences riding along."""
    mixed = calibrated.iteration_s(((256, 0),), 16, 16 * 1000)
    assert mixed > calibrated.prefill_s(256)
    assert calibrated.iteration_s((), 0, 0) == 0.0


def test_encoder_is_vision_layers_plus_connector(calibrated, profile, smolvlm):
    """5 tiles of 1,024 patches: 12 ViT blocks and the pixel-shuffle connector."""
    vision = smolvlm.vision
    block = profile.fit("vision_block").predict_s(vision_block_features(vision, 5, 1024))
    connector = profile.fit("connector").predict_s(
        connector_features(smolvlm.connector, vision, smolvlm.decoder.hidden, 5, 1024))
    assert calibrated.encoder_s(5 * 1024, 5) == pytest.approx(12 * block + connector)
    assert calibrated.encoder_s(0, 0) == 0.0


def test_preprocess_is_measured_images_plus_roofline_tokenisation(calibrated, roofline):
    """Two 1 MP images and 500 text tokens: the image pipeline from the fit, text from the fallback."""
    text_only = roofline.preprocess_s(0, 0.0, 500)
    both = calibrated.preprocess_s(2, 2.0, 500)
    assert both > text_only
    assert calibrated.preprocess_s(0, 0.0, 500) == pytest.approx(text_only)


def test_unmeasured_audio_and_memory_come_from_the_fallback(calibrated, roofline):
    """No audio fit: the roofline answers (here: SmolVLM has no audio encoder); memory is counted, not timed."""
    from profiles.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="smolvlm-256m has no audio encoder"):
        calibrated.audio_encoder_s(30.0)
    assert calibrated.memory == roofline.memory


def test_profile_round_trips_through_a_file(tmp_path, profile):
    """save_profile writes JSON that load_profile validates back to the same profile."""
    from profiles.calibration import load_profile

    path = tmp_path / "p.json"
    save_profile(profile, path)
    assert load_profile(path) == profile
    assert not list(tmp_path.glob(".p.json.*"))  # no temporary file left behind


def test_a_profile_applies_only_to_its_model_on_one_gpu_of_its_type(profile, smolvlm):
    """Measured layers on one L4 say nothing about an H100, another model, or a TP2 replica."""
    catalog = load_catalog()
    assert profile.applies_to("smolvlm-256m", "l4", 1)
    assert not profile.applies_to("smolvlm-256m", "l4", 2)
    assert not profile.applies_to("smolvlm-256m", "h100-sxm", 1)
    assert not profile.applies_to("internvl3-2b", "l4", 1)
    with pytest.raises(ConfigurationError, match="does not apply"):
        perf_model(smolvlm, catalog.gpu("h100-sxm"), calibration=profile)


def test_the_simulator_prefers_a_matching_profile_over_measured_kernels(profile):
    """A scenario stage of smolvlm-256m on an L4 runs on the calibrated numbers; on an H100 on measured kernels."""
    from sim.api import SimulationJob, simulate
    from sim.deployment import DeploymentSpec
    from sim.traffic import TrafficSpec

    traffic = TrafficSpec.model_validate({
        "arrivals": {"kind": "poisson", "rate_rps": 2},
        "classes": [{"name": "photo", "share": 1, "images": {"count": 1, "width_px": 640, "height_px": 480},
                     "text_tokens": 20, "output_tokens": 16}]})
    deployment = DeploymentSpec.model_validate({"name": "d", "stages": [
        {"name": "on-l4", "kind": "model", "model": "smolvlm-256m", "gpu": "l4"},
        {"name": "on-h100", "kind": "model", "model": "smolvlm-256m", "gpu": "h100-sxm"}],
        "routes": [{"classes": ["*"], "path": ["on-l4", "on-h100"]}]})
    result = simulate(SimulationJob(deployment=deployment, traffic=traffic, horizon_s=20, calibrations=(profile,)))
    assert result.per_stage["on-l4"]["provenance"] == "calibrated on NVIDIA L4, 2026-06-22"
    assert result.per_stage["on-h100"]["provenance"].startswith("measured kernels (h100_sxm, vLLM ")


def test_a_windowed_vit_sums_its_full_and_windowed_blocks(profile, smolvlm):
    """SmolVLM's own encoder (16 px patches) given 128 px windows: 4 full blocks, 8 over 64-patch windows."""
    windowed = smolvlm.vision.model_copy(update={"attention_window_px": 128, "full_attention_layers": 4})
    windowed_model = smolvlm.model_copy(update={"vision": windowed})
    model = perf_model(windowed_model, load_catalog().gpu("l4"),
                       calibration=profile.model_copy(update={"model": windowed_model}))
    fit = profile.fit("vision_block")
    blocks = 4 * fit.predict_s(vision_block_features(windowed, 1, 1024)) \
        + 8 * fit.predict_s(vision_block_features(windowed, 16, 64))
    connector = profile.fit("connector").predict_s(
        connector_features(smolvlm.connector, windowed, smolvlm.decoder.hidden, 1, 1024))
    assert model.encoder_s(1024, 1) == pytest.approx(blocks + connector)
    full = perf_model(smolvlm, load_catalog().gpu("l4"), calibration=profile)
    assert model.encoder_s(1024, 1) < full.encoder_s(1024, 1)
