"""``vlmplan catalog``: the GPUs, models and hosted APIs as tables or JSON.

Units are in the column names: TFLOPS dense, GB, GB/s, W, USD per GPU-hour,
parameters in billions, KV cache KiB per token (BF16). In the text tables a
``*`` marks a value FACTS.md (or the entry's source) labels unverified.
``perf_source`` says where a model's latencies come from: the roofline
estimate unless a calibration profile measured it, and then on which device.
With profiles, a last section says exactly what each covers (model, device,
one device per replica, the shapes it was fitted on), and a CPU profile's
host CPU is listed among the GPUs as device ``cpu``.
"""

import json
from collections.abc import Iterable, Sequence

import pandas as pd

from planner.calibrations import with_host_devices
from profiles.calibration import CalibrationProfile
from profiles.catalog import Catalog
from profiles.hardware import Gpu
from profiles.models import HostedApi, QualityScore, ResolvedModel
from profiles.params import decoder_params, encoder_params

ROOFLINE_SOURCE = "roofline (estimated)"
UNVERIFIED_MARK = "*"


def render_catalog(catalog: Catalog, as_json: bool, profiles: Sequence[CalibrationProfile] = ()) -> str:
    """The catalog as text tables (pandas) or, with ``as_json``, a JSON object {gpus, models, apis}
    (and ``profiles``, each one's coverage, when profiles are given).

    A model a profile measured shows ``perf_source`` "calibrated on <device ids>
    (1 device per replica); elsewhere roofline (estimated)".
    """
    catalog = with_host_devices(catalog, profiles)
    gpus = [gpu_row(gpu) for gpu in catalog.gpus.values()]
    models = [model_row(model, perf_source(model.id, profiles)) for model in catalog.resolved.values()]
    apis = [api_row(api) for api in catalog.apis.values()]
    coverage = [profile.coverage() for profile in profiles]
    if as_json:
        return json.dumps({"gpus": gpus, "models": models, "apis": apis,
                           **({"profiles": coverage} if profiles else {})}, indent=2)
    sections = [
        ("GPUs", _gpu_table(catalog.gpus.values()).to_string(index=False)),
        ("Models", _model_table(models).to_string(index=False)),
        ("Hosted APIs", _api_table(apis).to_string(index=False)),
    ]
    if profiles:
        sections.append(("Calibration profiles (each times its model, and any model from its kernel timings, "
                         "on its device, one device per replica)",
                         "\n".join(map(_coverage_text, coverage))))
    text = "\n\n".join(f"{title}\n{body}" for title, body in sections)
    return f"{text}\n\n{UNVERIFIED_MARK} unverified (see the entry's source)"


def perf_source(model_id: str, profiles: Sequence[CalibrationProfile]) -> str:
    """Where ``model_id``'s latencies come from: the devices profiles measured it on, or whose kernels a
    profile timed (any model there), else the roofline."""
    devices = [_device_label(p) for p in profiles if p.model_id == model_id]
    devices += [f"{_device_label(p)} from its kernels" for p in profiles
                if p.model_id != model_id and p.kernels is not None]
    if not devices:
        return ROOFLINE_SOURCE
    return f"calibrated on {', '.join(dict.fromkeys(devices))} (1 device per replica); elsewhere {ROOFLINE_SOURCE}"


def _device_label(profile: CalibrationProfile) -> str:
    """The id a stage names the profile's device by, or why no stage can."""
    return profile.device.device_id or f"{profile.device.name} (no catalog GPU id: times no stage)"


def _coverage_text(coverage: dict) -> str:
    """One profile's coverage: model on device, precision, errors, and the shape ranges per component."""
    errors = [f"held-out error {coverage['holdout_mape_pct']:.1f}%" if coverage["holdout_mape_pct"] is not None
              else "no held-out error", f"composed {coverage['composed_error_pct']:+.1f}%"
              if coverage["composed_error_pct"] is not None else "no composed check"]
    lines = [f"{coverage['model']} on {coverage['device_id'] or 'no catalog GPU id'} ({coverage['device']}), "
             f"1 device per replica, {coverage['precision']}; {', '.join(errors)}"]
    for component, ranges in coverage["components"].items():
        lines.append(f"  {component}: {_ranges_text(ranges)}")
    kernels = coverage["kernels"]
    lines.append(f"  kernels ({coverage['kernel_dtype']}, any model on the device):" if kernels
                 else "  no kernel timings: times only its model (re-run vlmplan calibrate for them)")
    for kind, ranges in (kernels or {}).items():
        lines.append(f"    {kind}: {_ranges_text(ranges)}")
    return "\n".join(lines)


def _ranges_text(ranges: dict[str, list[int]]) -> str:
    """'tokens 16-256, context 0-512'."""
    return ", ".join(f"{key} {low}" if low == high else f"{key} {low}-{high}" for key, (low, high) in ranges.items())


# ---------------------------------------------------------------- rows (JSON-ready)


def gpu_row(gpu: Gpu) -> dict:
    """One GPU as plain values."""
    price = gpu.price
    return {
        "id": gpu.id,
        "name": gpu.name,
        "kind": gpu.kind,
        "bf16_tflops": gpu.bf16_tflops,
        "fp8_tflops": gpu.fp8_tflops,
        "memory_gb": gpu.memory_gb,
        "bandwidth_gbs": gpu.bandwidth_gbs,
        "nvlink_gbs": gpu.nvlink_gbs,
        "pcie_gbs": gpu.pcie_gbs,
        "tdp_w": gpu.tdp_w,
        "usd_per_gpu_hour": price.usd_per_gpu_hour if price else None,
        "price_as_of": price.as_of if price else None,
        "price_source": price.source if price else None,
        "price_unverified": price.unverified if price else False,
        "source": gpu.source,
        "unverified": list(gpu.unverified),
    }


def model_params(model: ResolvedModel) -> tuple[int, int]:
    """(total, active) parameters of the whole model: encoders, connector and decoder."""
    total, active = decoder_params(model.decoder)
    extra = encoder_params(model)
    return total + extra, active + extra


def model_row(model: ResolvedModel, perf_source: str = ROOFLINE_SOURCE) -> dict:
    """One model as plain values."""
    total, active = model_params(model)
    return {
        "id": model.id,
        "name": model.name,
        "kind": model.kind,
        "params_total_b": round(total / 1e9, 3),
        "params_active_b": round(active / 1e9, 3),
        "vision_encoder": model.vision.id if model.vision else None,
        "audio_encoder": model.audio.id if model.audio else None,
        "image_policy": model.image_policy.kind if model.image_policy else None,
        "decoder": model.decoder.id,
        "precision": model.precision,
        "kv_kib_per_token": model.decoder.kv_bytes_per_token_bf16 / 1024,
        "quality": [_quality_dict(score) for score in model.quality],
        "perf_source": perf_source,
        "source": model.source,
        "unverified": list(model.unverified),
    }


def api_row(api: HostedApi) -> dict:
    """One hosted API as plain values (rate limits None where the catalog does not know them)."""
    limits = api.rate_limits
    return {
        "id": api.id,
        "name": api.name,
        "usd_per_m_input_tokens": api.usd_per_m_input_tokens,
        "usd_per_m_output_tokens": api.usd_per_m_output_tokens,
        "image_tokens": api.image_tokens,
        "image_token_multiplier": api.image_token_multiplier,
        "ttft_p50_s": api.ttft.p50_s,
        "ttft_p99_s": api.ttft.p99_s,
        "ttft_reference_input_tokens": api.ttft_reference_input_tokens,
        "prefill_s_per_1k_input_tokens": api.prefill_s_per_1k_input_tokens,
        "ttft_s_per_image": api.ttft_s_per_image,
        "tpot_s": api.tpot_s,
        "requests_per_minute": limits.requests_per_minute if limits else None,
        "tokens_per_minute": limits.tokens_per_minute if limits else None,
        "rate_limit_tier": limits.tier if limits else None,
        "rate_limit_source": limits.source if limits else None,
        "rate_limit_unverified": limits.unverified if limits else False,
        "quality": [_quality_dict(score) for score in api.quality],
        "source": api.source,
        "unverified": api.unverified,
    }


def _quality_dict(score: QualityScore) -> dict:
    """A quality score as plain values."""
    return {"benchmark": score.benchmark, "score": score.score, "unverified": score.unverified}


# ---------------------------------------------------------------- text tables


def _mark(value: object, unverified: bool) -> str:
    """A cell's text, with the unverified mark when needed; '-' for missing values."""
    if value is None:
        return "-"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text + UNVERIFIED_MARK if unverified else text


def _gpu_table(gpus: Iterable[Gpu]) -> pd.DataFrame:
    """GPU specs with unverified values marked; link is NVLink where present, else PCIe."""
    rows = []
    for gpu in gpus:
        flagged = set(gpu.unverified)
        price = gpu.price
        link = f"NVLink {gpu.nvlink_gbs:g}" if gpu.nvlink_gbs else f"PCIe {gpu.pcie_gbs:g}"
        link_flag = "nvlink_gbs" in flagged if gpu.nvlink_gbs else "pcie_gbs" in flagged
        rows.append({
            "id": gpu.id,
            "bf16 TFLOPS": _mark(gpu.bf16_tflops, "bf16_tflops" in flagged),
            "fp8 TFLOPS": _mark(gpu.fp8_tflops, "fp8_tflops" in flagged),
            "memory GB": _mark(gpu.memory_gb, "memory_gb" in flagged),
            "bandwidth GB/s": _mark(gpu.bandwidth_gbs, "bandwidth_gbs" in flagged),
            "link GB/s": _mark(link, link_flag),
            "TDP W": _mark(gpu.tdp_w, "tdp_w" in flagged),
            "$/GPU-h": _mark(price.usd_per_gpu_hour if price else None, bool(price and price.unverified)),
            "price as of": price.as_of if price else "-",
        })
    return pd.DataFrame(rows)


def _quality_text(quality: list[dict]) -> str:
    """'DocVQA 95.7*, MMMU 58.6*' or '-'."""
    return ", ".join(_mark(f"{q['benchmark']} {q['score']:g}", q["unverified"]) for q in quality) or "-"


def _model_table(models: list[dict]) -> pd.DataFrame:
    """Model rows as display text."""
    rows = [
        {
            "id": row["id"],
            "kind": row["kind"],
            "params B (total/active)": f"{row['params_total_b']:.2f}/{row['params_active_b']:.2f}",
            "encoder": _mark(row["vision_encoder"], "vision" in row["unverified"]),
            "audio": row["audio_encoder"] or "-",
            "decoder": _mark(row["decoder"], "decoder" in row["unverified"]),
            "precision": row["precision"],
            "KV KiB/token": f"{row['kv_kib_per_token']:g}",
            "quality": _quality_text(row["quality"]),
            "perf_source": row["perf_source"],
        }
        for row in models
    ]
    return pd.DataFrame(rows)


def _api_table(apis: list[dict]) -> pd.DataFrame:
    """Hosted API rows as display text (all FACTS.md-unverified)."""
    rows = [
        {
            "id": row["id"],
            "$/M in": _mark(row["usd_per_m_input_tokens"], row["unverified"]),
            "$/M out": _mark(row["usd_per_m_output_tokens"], row["unverified"]),
            "image tokens": _image_rule_text(row),
            "TTFT p50/p99 s": _mark(f"{row['ttft_p50_s']:g}/{row['ttft_p99_s']:g} @"
                                    f"{row['ttft_reference_input_tokens']:,} tok", row["unverified"]),
            "+s/1k in": _mark(row["prefill_s_per_1k_input_tokens"], row["unverified"]),
            "+s/image": _mark(row["ttft_s_per_image"], row["unverified"]),
            "TPOT s": _mark(row["tpot_s"], row["unverified"]),
            "RPM/TPM (tier)": _rate_limit_text(row),
            "quality": _quality_text(row["quality"]),
        }
        for row in apis
    ]
    return pd.DataFrame(rows)


def _image_rule_text(row: dict) -> str:
    """'openai_tiles', or 'openai_tiles x33.33' when images are billed at a multiple of the rule."""
    multiplier = row["image_token_multiplier"]
    return row["image_tokens"] if multiplier == 1 else f"{row['image_tokens']} x{multiplier:g}"


def _rate_limit_text(row: dict) -> str:
    """'10,000/30,000,000* (OpenAI usage tier 5)', '-' where the catalog knows no limits."""
    if row["requests_per_minute"] is None and row["tokens_per_minute"] is None:
        return "-"
    limits = "/".join("-" if value is None else f"{value:,}" for value in
                      (row["requests_per_minute"], row["tokens_per_minute"]))
    tier = f" ({row['rate_limit_tier']})" if row["rate_limit_tier"] else ""
    return f"{_mark(limits, row['rate_limit_unverified'])}{tier}"
