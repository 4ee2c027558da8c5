"""Roofline performance model and memory plan, on models built from FACTS.md dimensions."""

import pickle

import pytest

from profiles.catalog import load_catalog
from profiles.components import Decoder, MoeSpec, VisionEncoder
from profiles.errors import ConfigurationError
from profiles.hardware import Gpu
from profiles.models import Connector, ResolvedModel
from profiles.params import (
    AttentionGroup,
    audio_attention_groups,
    audio_flops,
    audio_params,
    decoder_breakdown,
    decoder_params,
    vision_attention_groups,
    vision_flops,
    vision_params,
)
from profiles.perf import roofline_model as perf_model  # these tests pin the roofline itself
from profiles.perf.efficiency import REQUEST_OVERHEAD_S
from profiles.perf.memory import weight_bytes
from profiles.perf.roofline import effective_hot_factor, expected_experts_touched

# FACTS.md section 4 (dense TFLOPS, GB, GB/s).
H100 = Gpu(id="h100-sxm", name="H100 SXM", bf16_tflops=989.4, fp8_tflops=1979, memory_gb=80,
           bandwidth_gbs=3350, nvlink_gbs=900, pcie_gbs=128, tdp_w=700, source="FACTS.md 4")
A100 = Gpu(id="a100-80gb", name="A100 80GB", bf16_tflops=312, memory_gb=80, bandwidth_gbs=2039,
           nvlink_gbs=600, pcie_gbs=64, tdp_w=400, source="FACTS.md 4")
# FACTS.md section 3.
LLAMA3_8B = Decoder(id="llama-3-8b", layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128,
                    intermediate=14336, vocab=128256)
QWEN25_72B = Decoder(id="qwen2.5-72b", layers=80, hidden=8192, heads=64, kv_heads=8, head_dim=128,
                     intermediate=29568, vocab=152064)
LLAMA3_70B = Decoder(id="llama-3-70b", layers=80, hidden=8192, heads=64, kv_heads=8, head_dim=128,
                     intermediate=28672, vocab=128256)
MIXTRAL = Decoder(id="mixtral-8x7b", layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128,
                  intermediate=14336, vocab=32000,
                  moe=MoeSpec(experts=8, top_k=2, expert_intermediate=14336))
CLIP_L = VisionEncoder(id="clip-vit-l-336", layers=24, hidden=1024, heads=16, intermediate=4096,
                       patch_px=14, image_px=336)


def resolved(decoder: Decoder, **fields) -> ResolvedModel:
    """A text model around ``decoder``; ``fields`` override (vision, connector...)."""
    base = dict(id=decoder.id, name=decoder.id, kind="llm", vision=None, connector=None,
                image_policy=None, video=None, audio=None, decoder=decoder, precision="bf16",
                preprocess=None, quality=(), source="test", unverified=())
    base.update(fields)
    return ResolvedModel(**base)


def test_parameter_counts_match_facts():
    assert decoder_params(LLAMA3_8B)[0] == pytest.approx(8.03e9, rel=0.005)
    total, active = decoder_params(MIXTRAL)
    assert total == pytest.approx(46.70e9, rel=0.005)
    assert active == pytest.approx(12.88e9, rel=0.005)
    assert vision_params(CLIP_L) == pytest.approx(303e6, rel=0.01)


def test_published_param_count_overrides_derived():
    published = LLAMA3_8B.model_copy(update={"params_b": 8.0})
    assert decoder_params(published) == (8_000_000_000, 8_000_000_000)


def test_audio_params_of_qwen_omni_encoder_are_whisper_large_sized():
    from profiles.components import AudioEncoder

    omni = AudioEncoder(id="omni-audio", layers=32, hidden=1280, heads=20, intermediate=5120)
    assert 0.6e9 < audio_params(omni) < 0.67e9  # Whisper-large-v3 encoder ~0.635B


def test_decode_step_grows_with_batch_and_kv():
    pm = perf_model(resolved(LLAMA3_8B), H100)
    small = pm.decode_step_s(1, 1000)
    assert pm.decode_step_s(64, 1000) > small
    assert pm.decode_step_s(1, 200_000) > small
    # Weight-bandwidth bound at batch 1: 16 GB at 75% of 3.35 TB/s is ~6.4 ms, plus overheads.
    assert 6e-3 < small < 12e-3


def test_prefill_attention_is_quadratic_in_context():
    pm = perf_model(resolved(LLAMA3_8B), H100)
    attention = [pm.step_breakdown(((n, 0),), 0, 0).attention_s for n in (8192, 16384)]
    assert attention[1] / attention[0] == pytest.approx(4.0, rel=0.01)
    assert pm.prefill_s(2048, cached_tokens=30_000) > pm.prefill_s(2048)


def test_tp4_faster_per_step_but_not_4x():
    model = resolved(LLAMA3_8B)
    tp1, tp4 = perf_model(model, H100, 1), perf_model(model, H100, 4)
    for step in (((), 16, 16_000), (((4096, 0),), 0, 0)):
        speedup = tp1.iteration_s(*step) / tp4.iteration_s(*step)
        assert 1.2 < speedup < 4.0
    assert tp4.step_breakdown(((4096, 0),), 0, 0).allreduce_s > 0
    assert tp1.step_breakdown(((4096, 0),), 0, 0).allreduce_s == 0


def test_fp8_weights_are_half_of_bf16():
    model = resolved(LLAMA3_70B)
    bf16, fp8 = weight_bytes(model, "bf16"), weight_bytes(model, "fp8")
    assert fp8.decoder_layers == pytest.approx(bf16.decoder_layers / 2)
    assert 0.5 < fp8.total / bf16.total < 0.53  # embeddings and LM head stay BF16
    int4 = weight_bytes(model, "int4")
    assert int4.decoder_layers / bf16.decoder_layers == pytest.approx((0.5 + 2.5 / 128) / 2)


def test_fp8_kv_cache_halves_kv_bytes_and_fp8_steps_are_faster():
    model = resolved(LLAMA3_70B)
    bf16, fp8 = perf_model(model, H100, 4), perf_model(model, H100, 4, precision="fp8")
    assert fp8.memory.kv_bytes_per_token * 2 == bf16.memory.kv_bytes_per_token == 327_680
    assert fp8.decode_step_s(32, 32_000) < bf16.decode_step_s(32, 32_000)
    assert fp8.prefill_s(8192) < bf16.prefill_s(8192)


def test_fp8_on_a100_names_the_gpu():
    with pytest.raises(ConfigurationError, match="a100-80gb"):
        perf_model(resolved(LLAMA3_8B), A100, precision="fp8")


def test_distinct_experts_touched_grows_with_batch():
    touched = [expected_experts_touched(8, 2, tokens) for tokens in (1, 2, 8, 64)]
    assert touched[0] == pytest.approx(2.0)
    assert touched[2] == pytest.approx(8 * (1 - 0.75**8))
    assert touched == sorted(touched)
    assert touched[-1] == pytest.approx(8.0, abs=1e-6)


def test_hot_expert_slows_moe_and_replication_relieves_it():
    model = resolved(MIXTRAL)
    step = (((8192, 0),), 0, 0)  # a prefill chunk: expert GEMMs are compute-bound
    balanced = perf_model(model, H100, 2).iteration_s(*step)
    hot = perf_model(model, H100, 2, hot_expert_factor=3.0).iteration_s(*step)
    relieved = perf_model(model, H100, 2, hot_expert_factor=3.0, expert_replication=2).iteration_s(*step)
    assert hot > 1.5 * balanced
    assert balanced < relieved < hot
    assert effective_hot_factor(3.0, 3) == 1.0


def test_hot_expert_costs_nothing_while_experts_are_bandwidth_bound():
    model = resolved(MIXTRAL)
    balanced = perf_model(model, H100, 2).decode_step_s(1, 500)
    hot = perf_model(model, H100, 2, hot_expert_factor=3.0).decode_step_s(1, 500)
    assert hot == pytest.approx(balanced)


def test_expert_replication_costs_memory():
    model = resolved(MIXTRAL)
    plain = perf_model(model, H100, 2).memory.weights_bytes_per_gpu
    replicated = perf_model(model, H100, 2, expert_replication=3).memory.weights_bytes_per_gpu
    one_expert_all_layers = decoder_breakdown(MIXTRAL).routed_experts / 8
    assert replicated - plain == pytest.approx(2 * one_expert_all_layers * 2 / 2, rel=1e-6)


def test_72b_bf16_on_one_h100_reports_shortfall():
    with pytest.raises(ConfigurationError) as failure:
        perf_model(resolved(QWEN25_72B), H100, 1)
    message = str(failure.value)
    # 72.7B params x 2 bytes = 145 GB of weights against 72 GB usable.
    assert "qwen2.5-72b bf16 needs" in message
    assert "short by 7" in message  # ~75 GB short
    assert "tensor_parallel >= 4" in message
    assert "int4" in message
    perf_model(resolved(QWEN25_72B), H100, 4)  # and the suggestion does fit


def test_kv_capacity_of_llama3_8b_on_h100_is_plausible():
    plan = perf_model(resolved(LLAMA3_8B), H100).memory
    usable = 0.9 * 80e9
    weights = 8.03e9 * 2
    kv_per_token = 2 * 32 * 8 * 128 * 2  # 128 KiB
    assert plan.kv_bytes_per_token == kv_per_token
    upper = (usable - weights) / kv_per_token  # no activation reserve at all: ~427k tokens
    assert 0.9 * upper < plan.kv_capacity_tokens < upper
    assert plan.free_bytes_per_gpu == pytest.approx(plan.kv_capacity_tokens * kv_per_token, abs=kv_per_token)


def test_kv_heads_replicate_beyond_kv_head_count():
    tiny_kv = LLAMA3_8B.model_copy(update={"kv_heads": 2, "id": "gqa2"})
    tp4 = perf_model(resolved(tiny_kv), H100, 4)
    per_gpu = tp4.cost.kv_bytes_per_token
    assert per_gpu == pytest.approx(tp4.memory.kv_bytes_per_token / 2)  # 4 GPUs hold 2 heads each twice


def test_bad_tensor_parallel_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="divide"):
        perf_model(resolved(LLAMA3_8B), H100, 3)


def test_hot_factor_beyond_experts_over_topk_is_rejected():
    with pytest.raises(ConfigurationError, match="hot_expert_factor"):
        perf_model(resolved(MIXTRAL), H100, 2, hot_expert_factor=5.0)
    with pytest.raises(ConfigurationError, match="mixture-of-experts models only"):
        perf_model(resolved(LLAMA3_8B), H100, hot_expert_factor=2.0)


def test_classifier_prefills_only():
    bert = Decoder(id="bert-base", layers=12, hidden=768, heads=12, kv_heads=12, head_dim=64,
                   intermediate=3072, vocab=30522, mlp="gelu", causal=False)
    pm = perf_model(resolved(bert, kind="classifier"), H100)
    assert pm.memory.kv_bytes_per_token == 0
    assert pm.memory.kv_capacity_tokens > 1_000_000  # no KV: in-flight tokens never limit a classifier
    assert 0 < pm.prefill_s(512) < 5e-3
    with pytest.raises(ConfigurationError, match="classifier"):
        pm.decode_step_s(1, 100)


def test_encoder_time_grows_with_patches_and_needs_an_encoder():
    vlm = resolved(LLAMA3_8B, kind="vlm", vision=CLIP_L, connector=Connector(kind="mlp"))
    pm = perf_model(vlm, H100)
    one = pm.encoder_s(577, 1)
    assert 0 < one < pm.encoder_s(577 * 8, 8) < 8 * one + 1e-3
    assert pm.encoder_s(0, 0) == 0.0
    with pytest.raises(ConfigurationError, match="no vision encoder"):
        perf_model(resolved(LLAMA3_8B), H100).encoder_s(577, 1)
    with pytest.raises(ConfigurationError, match="no audio encoder"):
        pm.audio_encoder_s(30.0)


def test_preprocess_uses_the_models_cpu_costs():
    from profiles.models import CpuPreprocess

    spec = CpuPreprocess(ms_per_image=10, ms_per_megapixel=20, ms_per_1k_text_tokens=1)
    pm = perf_model(resolved(LLAMA3_8B, preprocess=spec), H100)
    frontend = REQUEST_OVERHEAD_S
    assert pm.preprocess_s(2, 1.5, 1000) == pytest.approx(frontend + (20 + 30 + 1) / 1000)
    assert pm.preprocess_s(0, 0.0, 0) == pytest.approx(frontend)


def test_int4_fits_where_bf16_does_not_and_trades_compute_for_bandwidth():
    model = resolved(QWEN25_72B)
    one_gpu = perf_model(model, H100, 1, precision="int4")
    assert one_gpu.memory.kv_capacity_tokens > 0
    assert one_gpu.provenance == "roofline (estimated)"
    int4, bf16 = perf_model(model, H100, 4, precision="int4"), perf_model(model, H100, 4)
    assert int4.decode_step_s(1, 1000) < bf16.decode_step_s(1, 1000)  # a quarter of the bytes
    assert int4.prefill_s(8192) > bf16.prefill_s(8192)  # dequantisation in the GEMM loop


def test_roofline_model_pickles():
    pm = perf_model(resolved(MIXTRAL), H100, 2, hot_expert_factor=2.0)
    again = pickle.loads(pickle.dumps(pm))
    assert again.iteration_s(((100, 0),), 8, 800) == pm.iteration_s(((100, 0),), 8, 800)


def test_edge_device_runs_on_one_gpu():
    orin = Gpu(id="jetson-agx-orin", name="Jetson AGX Orin 64GB", kind="edge", bf16_tflops=42.5,
               memory_gb=64, bandwidth_gbs=204.8, pcie_gbs=16, tdp_w=60, source="FACTS.md 4")
    with pytest.raises(ConfigurationError, match="edge device"):
        perf_model(resolved(LLAMA3_8B), orin, 2)
    with pytest.raises(ConfigurationError) as failure:
        perf_model(resolved(QWEN25_72B), orin, 1)
    assert "tensor_parallel" not in str(failure.value)  # only precision can help on one device
    assert "int4" in str(failure.value)


def test_every_catalog_model_builds_or_says_why_on_every_gpu():
    from profiles.catalog import load_catalog

    catalog = load_catalog()
    built, refusals = 0, []
    for model_id in catalog.models:
        model = catalog.model(model_id)
        for gpu_id in catalog.gpus:
            try:
                pm = perf_model(model, catalog.gpu(gpu_id))
            except ConfigurationError as error:
                refusals.append((model_id, gpu_id, str(error)))
                continue
            built += 1
            assert pm.prefill_s(512) > 0
            if model.decoder.causal:
                assert pm.decode_step_s(4, 4000) > 0
                assert pm.memory.kv_capacity_tokens >= 4096
    assert built > len(catalog.models)
    assert all(model_id in text and gpu_id in text for model_id, gpu_id, text in refusals)


# FACTS.md section 3: the Qwen2.5-VL ViT (32 blocks, 112 px windows, full attention in 4 blocks).
QWEN25_VL_VIT = VisionEncoder(id="qwen2.5-vl-vit", layers=32, hidden=1280, heads=16, intermediate=3420,
                              mlp="swiglu", patch_px=14, image_px=448, attention_window_px=112,
                              full_attention_layers=4)


def test_windowed_vit_attends_within_64_patch_windows_in_28_of_32_blocks():
    """1792 px square = 128x128 = 16,384 patches in one image: 4 full blocks, 28 blocks over 256 windows."""
    flops = vision_flops(QWEN25_VL_VIT, 16_384, 1)
    full = 4 * 4.0 * 1280 * 16_384**2
    windowed = 28 * 4.0 * 1280 * 64**2 * 256
    assert flops.attention == pytest.approx(full + windowed)
    unwindowed = vision_flops(QWEN25_VL_VIT.model_copy(update={"attention_window_px": None}), 16_384, 1)
    assert flops.dense == unwindowed.dense  # windows change who attends to whom, not the weights
    assert unwindowed.attention / flops.attention == pytest.approx(32 / (4 + 28 * 64 / 16_384), rel=1e-9)


def test_a_tile_no_larger_than_a_window_is_attended_in_full():
    assert vision_attention_groups(QWEN25_VL_VIT, 48, 1) == (AttentionGroup(32, 1, 48),)
    assert vision_attention_groups(QWEN25_VL_VIT, 130, 1) == (AttentionGroup(4, 1, 130), AttentionGroup(28, 3, 44))


def test_a_window_must_be_whole_patches_and_full_blocks_at_most_all():
    with pytest.raises(ValueError, match="multiple of patch_px"):
        VisionEncoder.model_validate(QWEN25_VL_VIT.model_dump() | {"attention_window_px": 100})
    with pytest.raises(ValueError, match="exceeds layers"):
        VisionEncoder.model_validate(QWEN25_VL_VIT.model_dump() | {"full_attention_layers": 33})


def test_omni_audio_attends_within_2_s_blocks():
    """30 s at 50 encoder tokens/s: 15 blocks of 100 tokens, not one sequence of 1,500."""
    audio = load_catalog().audio_encoders["qwen2.5-omni-audio"]
    assert audio_attention_groups(audio, 30.0) == (AttentionGroup(32, 15, 100),)
    whisper_window = audio.model_copy(update={"attention_window_s": 30.0})
    assert audio_flops(whisper_window, 30.0).attention == pytest.approx(15 * audio_flops(audio, 30.0).attention)
