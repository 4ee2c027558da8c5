"""The bundled catalog, inline overrides, and the errors bad entries produce."""

import json
import pickle

import pytest

from planner.catalog_view import render_catalog
from profiles import catalog as catalog_module
from profiles.catalog import InlineCatalog, load_catalog, parse_inline_catalog
from profiles.errors import CatalogError
from profiles.models import ModelSpec
from profiles.params import decoder_breakdown, decoder_params, vision_params

QWEN_7B = {
    "id": "my-7b", "layers": 28, "hidden": 3584, "heads": 28, "kv_heads": 4,
    "head_dim": 128, "intermediate": 18944, "vocab": 152064,
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


# ---------------------------------------------------------------- bundled data


def test_every_bundled_model_resolves(catalog):
    for model_id, spec in catalog.models.items():
        resolved = catalog.model(model_id)
        assert resolved.decoder.id == (spec.decoder if isinstance(spec.decoder, str) else spec.decoder.id)
        if resolved.kind in ("vlm", "omni", "ocr"):
            assert resolved.vision is not None
            assert resolved.image_policy is not None


def test_catalog_has_the_briefed_entries(catalog):
    for gpu_id in ("h100-sxm", "h100-pcie", "h200", "a100-80gb", "l40s", "l4", "a10g", "rtx-4090", "jetson-agx-orin"):
        assert catalog.gpu(gpu_id).source
    for model_id in ("qwen2.5-vl-7b", "qwen2.5-vl-72b", "qwen2.5-omni-7b", "internvl3-2b", "smolvlm-256m",
                     "gemma-3-4b", "deepseek-ocr", "llama-2-70b", "bert-base-router", "llava-1.5-7b"):
        assert catalog.model(model_id).preprocess is not None
    assert set(catalog.apis) == {"gpt-4o", "gpt-4o-mini", "claude-3.5-sonnet", "gemini-1.5-flash"}


def test_edge_device_has_no_rental_price(catalog):
    assert catalog.gpu("jetson-agx-orin").price is None
    assert catalog.gpu("jetson-agx-orin").kind == "edge"
    assert all(gpu.price is not None for gpu in catalog.gpus.values() if gpu.kind != "edge")


def test_facts_unverified_fields_are_marked(catalog):
    assert {"bf16_tflops", "fp8_tflops"} <= set(catalog.gpu("h100-pcie").unverified)
    assert "bf16_tflops" in catalog.gpu("a10g").unverified
    # The H100's datasheet figures are verified; the driver's MiB count is recalled (FACTS.md 6a).
    assert catalog.gpu("h100-sxm").unverified == ("memory_mib",)
    assert all(api.unverified for api in catalog.apis.values())
    assert all(score.unverified for spec in catalog.models.values() for score in spec.quality
               if "not in FACTS.md" in score.source)


@pytest.mark.parametrize(
    ("decoder_id", "total_b"),
    [("qwen2.5-0.5b", 0.49), ("qwen2.5-1.5b", 1.54), ("qwen2.5-7b", 7.61), ("qwen2.5-72b", 72.7),
     ("llama-3-8b", 8.03), ("llama-3-70b", 70.6), ("smollm2-135m", 0.134), ("smollm2-360m", 0.362),
     ("mixtral-8x7b", 46.7), ("qwen2-57b-a14b", 57.4), ("qwen3-30b-a3b", 30.5), ("deepseek-ocr-moe-3b", 2.93)],
)
def test_decoder_parameter_counts_match_facts(catalog, decoder_id, total_b):
    total, _ = decoder_params(catalog.decoders[decoder_id])
    assert total / 1e9 == pytest.approx(total_b, rel=0.03)


@pytest.mark.parametrize(
    ("decoder_id", "active_b"), [("mixtral-8x7b", 12.9), ("qwen2-57b-a14b", 14.2), ("qwen3-30b-a3b", 3.3)]
)
def test_moe_active_counts_match_facts(catalog, decoder_id, active_b):
    _, active = decoder_params(catalog.decoders[decoder_id])
    assert active / 1e9 == pytest.approx(active_b, rel=0.03)


def test_deepseek_ocr_570m_active_excludes_the_input_embedding(catalog):
    parts = decoder_breakdown(catalog.decoders["deepseek-ocr-moe-3b"])
    assert (parts.layer_matmul_active + parts.lm_head_matmul) / 1e9 == pytest.approx(0.57, rel=0.03)


@pytest.mark.parametrize(
    ("encoder_id", "params_b"), [("clip-vit-l-336", 0.303), ("internvit-300m", 0.304), ("internvit-6b", 5.5),
                                 ("siglip-so400m", 0.413), ("vit-bigg-14", 1.84)]
)
def test_vision_parameter_counts_match_facts(catalog, encoder_id, params_b):
    assert vision_params(catalog.vision_encoders[encoder_id]) / 1e9 == pytest.approx(params_b, rel=0.03)


def test_kv_bytes_per_token_match_facts(catalog):
    kib = {d.id: d.kv_bytes_per_token_bf16 / 1024 for d in catalog.decoders.values()}
    assert (kib["qwen2.5-7b"], kib["llama-3-8b"], kib["qwen2.5-72b"], kib["smollm2-135m"]) == (56, 128, 320, 22.5)
    assert (kib["qwen3-30b-a3b"], kib["deepseek-ocr-moe-3b"]) == (96, 60)


def test_catalog_pickles(catalog):
    again = pickle.loads(pickle.dumps(catalog))
    assert again.model("deepseek-ocr") == catalog.model("deepseek-ocr")


# ---------------------------------------------------------------- inline entries and overrides


def test_inline_entries_add_and_override_by_id():
    extra = parse_inline_catalog(
        {
            "decoders": [QWEN_7B, {**QWEN_7B, "id": "qwen2.5-7b", "layers": 2}],
            "models": [{"id": "tiny-llm", "kind": "llm", "decoder": "my-7b"}],
            "gpu_prices": {"h100-sxm": 2.0},
        },
        "scenario.yaml: catalog",
    )
    catalog = load_catalog(extra)
    assert catalog.model("tiny-llm").decoder.layers == 28
    assert catalog.model("qwen2.5-vl-7b").decoder.layers == 2  # bundled models see the override
    assert catalog.gpu("h100-sxm").price.usd_per_gpu_hour == 2.0
    assert load_catalog().gpu("h100-sxm").price.usd_per_gpu_hour == 3.49  # bundled copy untouched


def test_model_spec_with_inline_components_resolves(catalog):
    spec = ModelSpec.model_validate({
        "id": "vitg-qwen", "kind": "vlm", "vision": "vit-bigg-14",
        "connector": {"kind": "mlp", "merge": 1},
        "image_policy": {"kind": "fixed", "image_px": 224, "tokens": 256},
        "decoder": QWEN_7B,
    })
    resolved = catalog.model(spec)
    assert resolved.vision.layers == 48
    assert resolved.decoder.id == "my-7b"


def _error(data: dict) -> str:
    with pytest.raises(CatalogError) as info:
        load_catalog(parse_inline_catalog(data, "scenario.yaml: catalog"), where="scenario.yaml: catalog")
    return str(info.value)


def test_negative_layers_names_the_field_path():
    message = _error({"decoders": [{**QWEN_7B, "layers": -1}]})
    assert message.startswith("scenario.yaml: catalog: decoders.0.layers:")


def test_heads_not_dividing_hidden_is_an_error():
    message = _error({"decoders": [QWEN_7B, {**QWEN_7B, "id": "bad", "heads": 27, "kv_heads": 3}]})
    assert "decoders.1" in message
    assert "heads (27) must divide hidden (3584)" in message


def test_unknown_gpu_in_prices_lists_known_gpus():
    message = _error({"gpu_prices": {"h1000": 2.0}})
    assert "gpu_prices.h1000" in message
    assert "unknown GPU 'h1000'" in message
    assert "h100-sxm" in message


def test_unknown_decoder_reference_names_the_model_and_lists_decoders():
    message = _error({"models": [{"id": "m", "kind": "llm", "decoder": "qwen9-7b"}]})
    assert message.startswith("scenario.yaml: catalog: models.0 (m): decoder: unknown decoder 'qwen9-7b'")
    assert "llama-3-8b" in message


def test_vlm_without_image_policy_is_an_error():
    message = _error({"models": [{"id": "v", "kind": "vlm", "vision": "clip-vit-l-336",
                                  "connector": {"kind": "mlp"}, "decoder": "vicuna-7b"}]})
    assert "image_policy: required for a vlm model" in message


def test_policy_inconsistent_with_encoder_is_an_error():
    message = _error({"models": [{"id": "v", "kind": "vlm", "vision": "clip-vit-l-336", "connector": {"kind": "mlp"},
                                  "image_policy": {"kind": "fixed", "image_px": 336, "tokens": 256},
                                  "decoder": "vicuna-7b"}]})
    assert "image_policy.tokens: 256 != (336 px / 14 px patch / merge 1)^2 = 576" in message


def test_unknown_lookups_list_known_ids(catalog):
    with pytest.raises(CatalogError, match="unknown model 'gpt-5'; known models: .*qwen2.5-vl-7b"):
        catalog.model("gpt-5")
    with pytest.raises(CatalogError, match="unknown hosted API"):
        catalog.api("nope")


# ---------------------------------------------------------------- bad bundled files


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A copy of the bundled data directory the loader reads instead, caches cleared around the test."""
    for source in catalog_module.DATA_DIR.glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(catalog_module, "DATA_DIR", tmp_path)
    catalog_module._read_section.cache_clear()
    catalog_module._bundled_catalog.cache_clear()
    yield tmp_path
    catalog_module._read_section.cache_clear()
    catalog_module._bundled_catalog.cache_clear()


def test_bad_bundled_field_names_file_and_path(data_dir):
    path = data_dir / "decoders.yaml"
    path.write_text(path.read_text().replace("heads: 28\n", "heads: 27\n", 1))
    with pytest.raises(CatalogError, match=r"profiles/data/decoders\.yaml: decoders\.2: .*heads \(27\)"):
        load_catalog()


def test_bad_bundled_yaml_is_a_catalog_error(data_dir):
    (data_dir / "apis.yaml").write_text("apis: [\n")
    with pytest.raises(CatalogError, match=r"profiles/data/apis\.yaml: invalid YAML"):
        load_catalog()


def test_duplicate_bundled_id_is_an_error(data_dir):
    path = data_dir / "gpus.yaml"
    path.write_text(path.read_text().replace("id: h100-pcie", "id: h100-sxm"))
    with pytest.raises(CatalogError, match=r"gpus\.yaml: gpus\.1\.id: duplicate id 'h100-sxm'"):
        load_catalog()


def test_misspelt_unverified_field_is_an_error(data_dir):
    path = data_dir / "gpus.yaml"
    path.write_text(path.read_text().replace("unverified: [memory_mib, pcie_gbs]", "unverified: [memory_mib, pcie_gb]"))
    with pytest.raises(CatalogError, match=r"gpus\.yaml: gpus\.3\.unverified: not fields of Gpu: pcie_gb"):
        load_catalog()


# ---------------------------------------------------------------- the catalog view


def test_render_catalog_json_lists_every_section(catalog):
    data = json.loads(render_catalog(catalog, as_json=True))
    assert set(data) == {"gpus", "models", "apis"}  # "profiles" only with profiles (tests/test_calibration_use.py)
    by_id = {row["id"]: row for row in data["models"]}
    assert by_id["llama-3-8b"]["perf_source"] == "roofline (estimated)"
    assert by_id["mixtral-8x7b"]["params_active_b"] == pytest.approx(12.9, rel=0.03)
    assert by_id["qwen2.5-vl-7b"]["kv_kib_per_token"] == 56


def test_render_catalog_text_flags_unverified(catalog):
    text = render_catalog(catalog, as_json=False)
    h100_pcie = next(line for line in text.splitlines() if line.strip().startswith("h100-pcie"))
    assert "756*" in h100_pcie
    assert "roofline (estimated)" in text
    assert "Hosted APIs" in text


def test_inline_catalog_schema_is_strict():
    with pytest.raises(CatalogError, match="gpu_price"):
        parse_inline_catalog({"gpu_price": {}}, "scenario.yaml: catalog")
    assert InlineCatalog().gpu_prices == {}
