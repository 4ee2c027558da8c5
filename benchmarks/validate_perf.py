"""Validate the performance models against published measurements.

Each point rebuilds a published setup from the bundled catalog (FACTS.md
section 5 and the seed claims), asks the performance model for the quantity
that was measured, and reports measured, predicted and the error in percent.
The model is the one ``perf_model`` picks (measured kernels where
aiconfigurator-core covers the GPU and engine, else the roofline);
``--roofline`` forces the roofline everywhere. No efficiency factor is tuned
here: ``profiles.perf.efficiency`` holds general values, and a miss is
explained, not fitted away.

Run: ``python benchmarks/validate_perf.py`` (add ``--markdown`` for a table
to paste into notes, ``--roofline`` for the roofline alone).
"""

import argparse
from typing import NamedTuple

from profiles.catalog import Catalog, load_catalog
from profiles.models import Precision
from profiles.perf import perf_model, roofline_model
from profiles.perf.base import PerfModel
from profiles.tokens import prompt_tokens

# vLLM CI latency test (FACTS.md 5d): input 32, output 128, batch 8.
CI_INPUT, CI_OUTPUT, CI_BATCH = 32, 128, 8
# MLPerf v4.1 llama2-70b (FACTS.md 5a): mean output ~290 tokens (derived);
# mean input ~290 [unverified]; 8x H100-SXM, FP8 weights and KV (TensorRT-LLM).
MLPERF_INPUT, MLPERF_OUTPUT = 290, 290
# How NVIDIA ran it [primary]: mlcommons/inference_results_v4.1,
# closed/NVIDIA/configs/llama2-70b/Offline/__init__.py, class H100_SXM_80GB_TP2x4:
# tensor_parallelism 2 on 8 GPUs (4 replicas), use_fp8, gpu_batch_size 896.
# The batch is the smaller of 896 and what the modelled KV cache holds.
MLPERF_TP, MLPERF_REPLICAS, MLPERF_MAX_BATCH = 2, 4, 896
# ArgusVLM (FACTS.md 1): COCO 2017 images are ~640x480; the captioning prompt
# plus chat template is a few dozen text tokens.
COCO_PX, CAPTION_PROMPT_TOKENS = (640, 480), 30
# Seed: a ~1700x2200 invoice in DeepSeek-OCR Gundam mode; "OCR this" prompt.
INVOICE_PX, OCR_PROMPT_TOKENS = (1700, 2200), 20
# Seed: a 70B VLM on a 4,096-token image; Qwen2.5-VL: 1792 px square = 64x64 tokens of 28 px.
VLM70_IMAGE_PX, VLM70_PROMPT_TOKENS = (1792, 1792), 100


class ValidationPoint(NamedTuple):
    """One published measurement against the model's prediction."""

    name: str
    setup: str
    unit: str
    measured: float
    predicted: float
    source: str = ""  # the performance model's provenance

    @property
    def error_pct(self) -> float:
        """(predicted - measured) / measured, percent."""
        return 100.0 * (self.predicted - self.measured) / self.measured


def latency_test_s(pm: PerfModel, batch: int, input_tokens: int, output_tokens: int) -> float:
    """End-to-end latency of a fixed batch: one prefill step of ``batch`` prompts, then a decode step per
    further token."""
    total = pm.iteration_s(((input_tokens, 0),) * batch, 0, 0)
    for generated in range(1, output_tokens):
        total += pm.decode_step_s(batch, batch * (input_tokens + generated))
    return total


def steady_state_tokens_per_s(pm: PerfModel, input_tokens: int, output_tokens: int,
                              max_batch: int) -> tuple[float, int]:
    """Offline output tokens/s of one replica and the batch it runs.

    In steady state ``batch`` sequences decode at a mean context of
    input + output/2 tokens, and each step prefills input/output new tokens
    per sequence to replace the ones that finish.
    """
    mean_context = input_tokens + output_tokens / 2
    batch = min(max_batch, int(pm.memory.kv_capacity_tokens // mean_context))
    # The prompts replacing finished sequences arrive whole, one sequence each.
    prompts = ((input_tokens, 0),) * round(batch / output_tokens)
    step_s = pm.iteration_s(prompts, batch, round(batch * mean_context))
    return batch / step_s, batch


def ttft_s(pm: PerfModel, catalog: Catalog, model_id: str, image_px: tuple[int, int],
           text_tokens: int) -> float:
    """Batch-1 TTFT of one image request: CPU preprocessing + vision encoder + prefill."""
    tokens = prompt_tokens(catalog.model(model_id), [image_px], 0.0, 0.0, 0.0, (0, 0), text_tokens)
    megapixels = image_px[0] * image_px[1] / 1e6
    return (pm.preprocess_s(1, megapixels, text_tokens)
            + pm.encoder_s(tokens.encoder_patches, tokens.encoder_sequences)
            + pm.prefill_s(tokens.total))


# Set by --roofline: every point on the roofline instead of the source perf_model picks.
ROOFLINE_ONLY = False


def _model(catalog: Catalog, model_id: str, gpu_id: str, tp: int,
           precision: Precision | None = None, engine: str = "vllm") -> PerfModel:
    """The performance model of a catalog model on ``tp`` catalog GPUs served by ``engine``."""
    if ROOFLINE_ONLY:
        return roofline_model(catalog.model(model_id), catalog.gpu(gpu_id), tp, precision=precision)
    return perf_model(catalog.model(model_id), catalog.gpu(gpu_id), tp, precision=precision, engine=engine)


def vllm_latency_points(catalog: Catalog) -> list[ValidationPoint]:
    """vLLM CI latency test on H200 (FACTS.md 5d), mean end-to-end ms."""
    runs = (("llama-3-8b", 1, 833.4), ("llama-3-70b", 4, 2077.5), ("mixtral-8x7b", 2, 1917.4))
    points = []
    for model_id, tp, measured_ms in runs:
        pm = _model(catalog, model_id, "h200", tp)
        predicted = latency_test_s(pm, CI_BATCH, CI_INPUT, CI_OUTPUT) * 1000
        points.append(ValidationPoint(f"vLLM CI latency {model_id}", f"H200 TP{tp}, bf16, batch 8, 32 in / 128 out",
                                      "ms", measured_ms, predicted, pm.provenance))
    return points


def mlperf_point(catalog: Catalog) -> ValidationPoint:
    """MLPerf v4.1 Llama-2-70B offline on 8x H100-SXM, FP8 (FACTS.md 5a), tokens/s."""
    pm = _model(catalog, "llama-2-70b", "h100-sxm", MLPERF_TP, "fp8", engine="trtllm")  # NVIDIA's submission
    per_replica, batch = steady_state_tokens_per_s(pm, MLPERF_INPUT, MLPERF_OUTPUT, MLPERF_MAX_BATCH)
    return ValidationPoint("MLPerf v4.1 llama2-70b offline",
                           f"8x H100 as {MLPERF_REPLICAS}x TP{MLPERF_TP}, fp8, batch {batch}/replica",
                           "tok/s", 24_524.9, per_replica * MLPERF_REPLICAS, pm.provenance)


def argus_points(catalog: Catalog) -> list[ValidationPoint]:
    """ArgusVLM baseline TTFT at batch 1 on one H100 (FACTS.md 1), ms."""
    points = []
    for model_id, measured_ms in (("smolvlm-256m", 344.7), ("internvl3-2b", 124.0),
                                  ("smolvlm-256m-optimized", 22.8), ("internvl3-2b-optimized", 57.7)):
        pm = _model(catalog, model_id, "h100-sxm", 1)
        predicted = ttft_s(pm, catalog, model_id, COCO_PX, CAPTION_PROMPT_TOKENS) * 1000
        points.append(ValidationPoint(f"ArgusVLM TTFT {model_id}", "H100, batch 1, 640x480 COCO image",
                                      "ms", measured_ms, predicted, pm.provenance))
    return points


def seed_points(catalog: Catalog) -> list[ValidationPoint]:
    """The seed's claims: DeepSeek-OCR invoice ~200 ms; 70B VLM on 4,096 image tokens ~1.5 s (TTFT)."""
    points = []
    for gpu_id in ("a100-80gb", "h100-sxm"):
        pm = _model(catalog, "deepseek-ocr", gpu_id, 1)
        predicted = ttft_s(pm, catalog, "deepseek-ocr", INVOICE_PX, OCR_PROMPT_TOKENS) * 1000
        points.append(ValidationPoint("seed: DeepSeek-OCR reads an invoice", f"{gpu_id}, batch 1, "
                                      "1700x2200 Gundam, TTFT", "ms", 200.0, predicted, pm.provenance))
    for gpu_id in ("h100-sxm", "a100-80gb"):
        pm = _model(catalog, "qwen2.5-vl-72b", gpu_id, 4)
        predicted = ttft_s(pm, catalog, "qwen2.5-vl-72b", VLM70_IMAGE_PX, VLM70_PROMPT_TOKENS) * 1000
        points.append(ValidationPoint("seed: 70B VLM on a 4,096-token image",
                                      f"qwen2.5-vl-72b, 4x {gpu_id} TP4, bf16, batch 1, TTFT",
                                      "ms", 1500.0, predicted, pm.provenance))
    return points


def validation_points(catalog: Catalog | None = None) -> list[ValidationPoint]:
    """Every validation point, in table order."""
    catalog = catalog or load_catalog()
    return [*vllm_latency_points(catalog), mlperf_point(catalog), *argus_points(catalog),
            *seed_points(catalog)]


def format_table(points: list[ValidationPoint], markdown: bool) -> str:
    """The points as a plain-text or Markdown table."""
    header = ("point", "setup", "measured", "predicted", "error %", "source")
    rows = [(p.name, p.setup, f"{p.measured:,.1f} {p.unit}", f"{p.predicted:,.1f} {p.unit}",
             f"{p.error_pct:+.1f}", p.source) for p in points]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))
                     for r in [header, *rows])


def main() -> None:
    """Print the validation table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--roofline", action="store_true", help="the roofline everywhere (no measured kernels)")
    args = parser.parse_args()
    global ROOFLINE_ONLY
    ROOFLINE_ONLY = args.roofline
    print(format_table(validation_points(), args.markdown))


if __name__ == "__main__":
    main()
