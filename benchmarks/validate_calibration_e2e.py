"""The whole calibration loop on this machine: calibrate the CPU, plan on it, check against the real model.

    python benchmarks/validate_calibration_e2e.py [--profile P.json | --save-profile P.json] [--requests 20]
        [--passes 2] [--seed 7] [--model smolvlm-256m | smolvlm-500m]

1. Calibrates SmolVLM-256M on this CPU (``--quick``, fp32, one torch thread,
   thread CPU time: what ``vlmplan calibrate --device cpu --quick`` does), or
   reads ``--profile``.
2. Simulates an on-device request stream of ``--model`` on the calibrated CPU
   (an ``on_device`` stage with ``device: cpu``, the profile listed in the
   scenario): photos, thumbnails, wide documents split into more tiles,
   text-only chat, with 8 to 64 output tokens. ``smolvlm-256m`` is the model
   the profile measured (its component fits time it); ``smolvlm-500m`` is
   held out: SmolVLM-500M's architecture (the same SigLIP-B/16 encoder and
   tiling, the SmolLM2-360M decoder: 32 layers of width 960, FACTS.md), added
   in the scenario's catalog and timed from the same profile's kernel
   timings (GEMMs, attention) and the rest of a layer it measured.
3. Runs the same requests (the simulator's own request stream, same seed) for
   real on the same CPU: JPEG decode, resize, tile, normalise
   (calibrate.preprocess), then the composed torch model (calibrate.composed:
   ViT, connector, every decoder layer, LM head) prefilling the image tokens
   and the prompt and decoding greedily to the request's output length.
4. Prints simulated against measured p50 and p99 end-to-end latency, and per class.

Timing: one torch thread, the thread's CPU time (``time.thread_time``), as the
calibration times; other processes on a shared machine then still slow a run
down (shared caches, memory bandwidth, a hyper-thread sibling), never speed it
up. Each request is run ``--passes`` times and counted two ways: its fastest
whole run; and, as the calibration's composed check counts, the clock read
between stages (preprocessing, each ViT block, the connector, each decoder
layer, the LM head) and each stage's fastest pass summed ("laps"), so that a
burst of load slows one lap of one pass rather than a whole run. Wall-clock
p50/p99 (fastest whole run) are printed too. The simulator's figures include the
roofline's 5 ms per-request front-end overhead and text tokenisation, which the
real run (token ids in, no tokenizer) does not do. Seconds.
"""

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import yaml

from calibrate.components import KvCache, init_weights
from calibrate.composed import ComposedModel, Laps
from calibrate.measure import SEED
from calibrate.preprocess import encode_jpeg, preprocess_image, synthetic_image
from calibrate.run import run_calibration
from calibrate.timing import gc_paused
from planner.run import simulate_scenario
from planner.scenario import parse_scenario
from profiles.calibration import CalibrationProfile, load_profile, save_profile
from profiles.catalog import load_catalog
from profiles.models import ResolvedModel
from profiles.perf import roofline_model
from profiles.perf.calibrated import host_cpu
from profiles.perf.calibrated_kernels import device_tables, fit_rest
from profiles.tokens import SmolVlmSplitting
from sim.request import Request
from sim.traffic.source import TrafficSource

MODEL_ID = "smolvlm-256m"
GOAL_PCT = 15.0


class RequestClass(NamedTuple):
    """One kind of on-device request: an image (or none) under a SmolVLM longest-edge policy, prompt, output."""

    name: str
    share: float
    image_px: tuple[int, int] | None
    longest_edge_px: int  # SmolVLM's resize before tiling: 512 -> one tile, 1024 -> up to 2x2 tiles + global
    text_tokens: int
    output_tokens: int


CLASSES = (
    RequestClass("photo", 0.35, (1280, 960), 512, 32, 24),
    RequestClass("thumbnail", 0.2, (480, 360), 512, 16, 8),
    RequestClass("document", 0.2, (1600, 800), 1024, 48, 32),  # 2x1 tiles + the global view
    RequestClass("chat", 0.25, None, 512, 96, 64),
)


# The held-out model: SmolVLM-500M as FACTS.md sections 2-3 give it (SmolVLM-256M's encoder, connector and
# tiling; SmolLM2-360M as its LM), not in the bundled catalog, so the scenario adds it.
HELD_OUT_MODEL = {"id": "smolvlm-500m", "name": "SmolVLM-500M (held out of the calibration)", "kind": "vlm",
                  "vision": "siglip-b16-512", "connector": {"kind": "pixel_shuffle_mlp", "merge": 4},
                  "image_policy": {"kind": "smolvlm", "tile_px": 512, "longest_edge_px": 2048,
                                   "tokens_per_tile": 64},
                  "decoder": "smollm2-360m",
                  "preprocess": {"ms_per_image": 300.0, "ms_per_megapixel": 70.0, "source": "as smolvlm-256m"},
                  "source": "FACTS.md section 2 (SmolVLM-256M/500M) and 3 (SmolLM2-360M, the SmolVLM-500M LM)"}
MODELS = (MODEL_ID, HELD_OUT_MODEL["id"])


def scenario_yaml(profile_name: str, requests: int, seed: int, model_id: str = MODEL_ID) -> str:
    """The planning question: the stream above on each user's own CPU (the calibrated one), running ``model_id``."""
    classes = []
    for cls in CLASSES:
        entry: dict = {"name": cls.name, "share": cls.share, "text_tokens": cls.text_tokens,
                       "output_tokens": cls.output_tokens}
        if cls.image_px is not None:
            entry["images"] = {"count": 1, "width_px": cls.image_px[0], "height_px": cls.image_px[1]}
        classes.append(entry)
    routes = [{"classes": [cls.name], "path": ["laptop"],
               "image_policy": {"kind": "smolvlm", "longest_edge_px": cls.longest_edge_px}} for cls in CLASSES]
    return yaml.safe_dump({
        "name": "calibrated-cpu-on-device", "seed": seed, "horizon_s": 3600,
        "calibration_profiles": [profile_name],
        "traffic": {"arrivals": {"kind": "offline", "requests": requests}, "classes": classes},
        "slo": {"e2e_s": 10},
        **({"catalog": {"models": [HELD_OUT_MODEL]}} if model_id == HELD_OUT_MODEL["id"] else {}),
        "deployments": [{"name": "laptop-cpu", "stages": [
            {"name": "laptop", "kind": "on_device", "model": model_id, "device": "cpu"}], "routes": routes}],
    }, sort_keys=False)


class RealRunner:
    """The composed model (random weights, fp32) on the CPU, running one request at a time."""

    def __init__(self, model: ResolvedModel) -> None:
        self.model = model
        self.net = init_weights(ComposedModel(model), SEED).to(dtype=torch.float32).eval()
        self.generator = torch.Generator().manual_seed(SEED)

    def inputs(self, request: Request, cls: RequestClass) -> tuple[ResolvedModel, bytes | None, torch.Tensor]:
        """The model under the class's image policy, the request's JPEG (or None), its prompt token ids."""
        policy = SmolVlmSplitting(longest_edge_px=cls.longest_edge_px)
        model = self.model.model_copy(update={"image_policy": policy})
        jpeg = None
        if request.images:
            width, height = request.images[0]
            jpeg = encode_jpeg(synthetic_image(width, height, SEED + request.id))
        text = torch.randint(0, self.model.decoder.vocab, (1, request.text_tokens), generator=self.generator)
        return model, jpeg, text

    def run(self, model: ResolvedModel, jpeg: bytes | None, text: torch.Tensor, output_tokens: int,
            lap: Callable[[], None]) -> None:
        """Preprocess, encode, prefill, decode ``output_tokens - 1`` more tokens (the first comes from prefill);
        ``lap()`` after each stage and layer."""
        net = self.net
        prompt = net.embed(text)
        if jpeg is not None:
            pixels = torch.from_numpy(preprocess_image(model, jpeg))
            lap()
            prompt = torch.cat([net.encode(pixels, lap), prompt], dim=1)
            lap()
        length = prompt.shape[1]
        caches = [KvCache.empty(model.decoder, 1, length + output_tokens, prompt) for _ in net.layers]
        token = net.prefill(prompt, caches, lap)
        lap()
        if output_tokens > 1:
            net.decode(token, caches, length, output_tokens - 1, lap)


class Measured(NamedTuple):
    """Seconds of each request: fastest whole run (thread CPU, wall), and its laps' fastest passes summed."""

    cpu_s: list[float]
    wall_s: list[float]
    laps_s: list[float]


def measure(runner: RealRunner, requests: list[Request], by_name: dict[str, RequestClass],
            passes: int) -> Measured:
    """Each request of the stream run ``passes`` times (the stream in order, pass after pass)."""
    prepared = [runner.inputs(r, by_name[r.request_class]) for r in requests]
    cpu_s = [float("inf")] * len(requests)
    wall_s = [float("inf")] * len(requests)
    laps: list[list[list[float]]] = [[] for _ in requests]
    with torch.inference_mode(), gc_paused():
        runner.run(*prepared[0], requests[0].output_tokens, lambda: None)  # warm-up: first-call allocations
        for _ in range(passes):
            for index, (request, (model, jpeg, text)) in enumerate(zip(requests, prepared, strict=True)):
                stopwatch = Laps(time.thread_time)
                wall_start = time.perf_counter()
                stopwatch.begin("request")
                runner.run(model, jpeg, text, request.output_tokens, stopwatch.mark)
                wall_s[index] = min(wall_s[index], time.perf_counter() - wall_start)
                cpu_s[index] = min(cpu_s[index], sum(stopwatch.segments["request"]))
                laps[index].append(stopwatch.segments["request"])
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    laps_s = [sum(min(lap) for lap in zip(*runs, strict=True)) for runs in laps]
    return Measured(cpu_s, wall_s, laps_s)


def calibrated_profile(path: str | None, folder: Path) -> tuple[CalibrationProfile, Path, float]:
    """The profile given, or a quick calibration now; and the seconds the calibration took (0 when given)."""
    if path is not None:
        return load_profile(path), Path(path).resolve(), 0.0
    out = folder / "cpu-profile.json"
    start = time.perf_counter()
    profile = run_calibration(MODEL_ID, "cpu", True, out, None, threads=1, cpu_clock="thread")
    return profile, out, time.perf_counter() - start


def rest_line(profile: CalibrationProfile) -> str:
    """The rest of a layer the kernels do not time, as the profile's own model measured it."""
    device = host_cpu(profile)
    tables = device_tables(profile)
    if device is None or tables is None:
        return "no kernel timings in the profile"
    rest = fit_rest(profile, tables, roofline_model(profile.model, device))
    parts = [f"{name} {fit.const_s * 1e6:.0f} us + {fit.s_per_element * 1e9:.2f} ns per activation element "
             f"(composed layer vs measured: {fit.mape_pct:.1f}% over {fit.points} shapes)"
             for name, fit in (("decoder layer", rest.decoder), ("ViT block", rest.vision)) if fit is not None]
    return "rest of a layer beyond the kernels: " + "; ".join(parts)


def _error(simulated: float, measured: float) -> str:
    return f"{100 * (simulated - measured) / measured:+.1f}%"


def main() -> None:
    """Calibrate, simulate, run for real, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="a CPU profile of smolvlm-256m from this machine (default: calibrate now)")
    parser.add_argument("--requests", type=int, default=20, help="requests in the stream")
    parser.add_argument("--passes", type=int, default=2, help="runs of the stream; each request counts its fastest")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--save-profile", help="also write the profile calibrated now to this file")
    parser.add_argument("--model", choices=MODELS, default=MODEL_ID,
                        help=f"the model planned and run ({MODEL_ID}: the one calibrated; {MODELS[1]}: held out)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        profile, profile_path, calibration_s = calibrated_profile(args.profile, Path(folder))
        if args.save_profile and calibration_s:
            save_profile(profile, Path(args.save_profile))
        planned = {}  # both models planned from the one profile; the chosen one is then run for real
        for model_id in MODELS:
            text = scenario_yaml(profile_path.name, args.requests, args.seed, model_id)
            planned[model_id] = parse_scenario(text, "calibrated-cpu-on-device", profile_path.parent)
        results = {model_id: simulate_scenario(scenario).results[0] for model_id, scenario in planned.items()}
    scenario, result = planned[args.model], results[args.model]
    requests = list(TrafficSource(scenario.traffic, scenario.seed).requests(scenario.horizon_s))
    by_name = {cls.name: cls for cls in CLASSES}
    start = time.perf_counter()
    model = load_catalog(scenario.catalog).model(args.model)
    measured = measure(RealRunner(model), requests, by_name, args.passes)
    run_s = time.perf_counter() - start

    composed = f"{profile.composed.error_pct:+.1f}%" if profile.composed else "-"
    print(f"{profile.model_id} on {profile.device.name}: {profile.precision}, {profile.device.threads} thread(s), "
          f"{profile.device.timing_clock} clock; held-out error {profile.holdout_mape_pct:.1f}%, "
          f"composed {composed}" + (f"; calibration took {calibration_s:.0f} s" if calibration_s else ""))
    for model_id, planned_result in results.items():
        print(f"planned from this one profile: {model_id}: e2e p50 {planned_result.metrics['e2e_p50_s']:.3f} s, "
              f"p99 {planned_result.metrics['e2e_p99_s']:.3f} s; {planned_result.per_stage['laptop']['provenance']}")
    print(rest_line(profile))
    print(f"planned and run: {args.model}" + (" (the model calibrated)" if args.model == profile.model_id
                                               else " (held out: timed from the profile's kernels)"))
    print(f"{len(requests)} requests (seed {args.seed}), each run {args.passes}x for real "
          f"(fastest counts), {run_s:.0f} s; simulator provenance: {result.per_stage['laptop']['provenance']}")
    sim_p50, sim_p99 = result.metrics["e2e_p50_s"], result.metrics["e2e_p99_s"]
    laps_p50, laps_p99 = (float(v) for v in np.percentile(measured.laps_s, (50, 99)))
    runs_p50, runs_p99 = (float(v) for v in np.percentile(measured.cpu_s, (50, 99)))
    wall_p50, wall_p99 = (float(v) for v in np.percentile(measured.wall_s, (50, 99)))
    print(f"{'':18s} {'simulated':>9s} {'laps':>7s} {'error':>7s} {'runs':>7s} {'error':>7s} {'wall':>7s}")
    for label, simulated, laps_s, runs_s, wall in (("e2e p50 s", sim_p50, laps_p50, runs_p50, wall_p50),
                                                   ("e2e p99 s", sim_p99, laps_p99, runs_p99, wall_p99)):
        print(f"{label:18s} {simulated:9.3f} {laps_s:7.3f} {_error(simulated, laps_s):>7s} {runs_s:7.3f} "
              f"{_error(simulated, runs_s):>7s} {wall:7.3f}")
    for cls in CLASSES:
        picked = [i for i, r in enumerate(requests) if r.request_class == cls.name]
        if not picked:
            continue
        simulated = result.per_class[cls.name]["e2e_p50_s"]
        laps_s = float(np.median([measured.laps_s[i] for i in picked]))
        runs_s = float(np.median([measured.cpu_s[i] for i in picked]))
        label = f"  {cls.name} ({len(picked)}) p50"
        print(f"{label:18s} {simulated:9.3f} {laps_s:7.3f} {_error(simulated, laps_s):>7s} {runs_s:7.3f} "
              f"{_error(simulated, runs_s):>7s}")
    worst = max(abs(sim_p50 - laps_p50) / laps_p50, abs(sim_p99 - laps_p99) / laps_p99) * 100
    print(f"goal: p50 and p99 within {GOAL_PCT:.0f}% of the measured laps: {'met' if worst <= GOAL_PCT else 'NOT met'} "
          f"(worst {worst:.1f}%)")


if __name__ == "__main__":
    main()
