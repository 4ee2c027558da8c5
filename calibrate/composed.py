"""The composed check: a whole model (ViT + connector + every decoder layer) run for real.

It prefills an image and a prompt, then decodes a few tokens greedily, timing
the encoder, the prefill and the decode steps, and compares each with what the
fitted model predicts for the same shapes. Only run when the whole model's
weights fit the memory budget. Seconds.
"""

import statistics
from collections.abc import Callable
from typing import NamedTuple, cast

import torch
from torch import nn

from calibrate.components import (
    DecoderLayer,
    KvCache,
    LmHead,
    connector_module,
    init_weights,
    vision_block,
)
from calibrate.cuda import Cuda
from calibrate.measure import SEED, part_of
from calibrate.timing import CpuClock, Sampler, TimingPlan, clock_of, gc_paused, sampler
from profiles.calibration import CalibrationProfile, ComposedCheck
from profiles.errors import CalibrationError
from profiles.models import ResolvedModel
from profiles.params import connector_params, decoder_params, vision_attention_groups, vision_params
from profiles.perf.base import MemoryPlan, PrefillChunk, StepModel
from profiles.perf.calibrated import CalibratedPerfModel


class ComposedShape(NamedTuple):
    """One image of ``tiles`` native tiles, ``text_tokens`` of prompt, ``decode_steps`` generated; timed ``passes`` times."""

    tiles: int
    text_tokens: int
    decode_steps: int
    passes: int


QUICK_SHAPE = ComposedShape(tiles=1, text_tokens=64, decode_steps=8, passes=5)
FULL_SHAPE = ComposedShape(tiles=2, text_tokens=448, decode_steps=32, passes=9)


def model_bytes(model: ResolvedModel, dtype_bytes: int) -> int:
    """Weight bytes of the whole model (vision encoder, connector, decoder)."""
    total, _ = decoder_params(model.decoder)
    if model.vision is not None:
        total += vision_params(model.vision)
        total += connector_params(model.connector, model.vision.hidden, model.decoder.hidden)
    return total * dtype_bytes


def _no_lap() -> None:
    """No lap timing (CUDA: a whole part is one sample)."""


class Laps:
    """CPU seconds between successive ``mark()`` calls, per part of one pass (a stopwatch's laps)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.segments: dict[str, list[float]] = {}
        self.part = ""
        self.last_s = 0.0

    def begin(self, part: str) -> None:
        """Start timing ``part``."""
        self.part = part
        self.segments[part] = []
        self.last_s = self.clock()

    def mark(self) -> None:
        """End one lap of the current part."""
        now_s = self.clock()
        self.segments[self.part].append(now_s - self.last_s)
        self.last_s = now_s


class ComposedModel(nn.Module):
    """The whole model with random weights: patch embedding, ViT blocks, connector, decoder, LM head."""

    def __init__(self, model: ResolvedModel) -> None:
        super().__init__()
        self.model = model
        vision, decoder = model.vision, model.decoder
        self.patch = (nn.Conv2d(3, vision.hidden, vision.patch_px, stride=vision.patch_px)
                      if vision is not None else None)
        self.blocks = nn.ModuleList(vision_block(vision) for _ in range(vision.layers)) if vision else None
        self.connector = (connector_module(model.connector, vision.hidden, decoder.hidden)
                          if vision is not None and model.connector is not None else None)
        self.embed = nn.Embedding(decoder.vocab, decoder.hidden)
        self.layers = nn.ModuleList(DecoderLayer(decoder, dense_ffn=decoder.moe is not None and i < decoder.moe.dense_layers)
                                    for i in range(decoder.layers))
        self.head = LmHead(decoder)
        if decoder.tied_embeddings:
            self.head.proj.weight = self.embed.weight

    def encode(self, pixels: torch.Tensor, lap: Callable[[], None] = _no_lap) -> torch.Tensor:
        """(tiles, 3, px, px) -> (1, visual tokens, hidden); ``lap()`` after each stage (patches, block, connector)."""
        assert self.patch is not None  # only a model with a vision encoder encodes pixels
        assert self.blocks is not None
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        lap()
        for index, block in enumerate(self.blocks):
            x = block(x) if self._attends_fully(index, x.shape[1]) else self._within_windows(block, x)
            lap()
        if self.connector is not None:
            x = self.connector(x)
        return x.reshape(1, -1, x.shape[-1])

    def _attends_fully(self, index: int, seq_len: int) -> bool:
        """Whether block ``index`` attends over whole tiles: no window, a tile within one, or a full block.

        Full blocks are every ``layers // full_attention_layers``-th one, ending
        with the last (Qwen2.5-VL: 7, 15, 23, 31; FACTS.md section 3).
        """
        vision = part_of(self.model, self.model.vision, "vision_block")
        window = vision.window_patches
        if window is None or window >= seq_len:
            return True
        if vision.full_attention_layers == 0:
            return False
        stride = vision.layers // vision.full_attention_layers
        return (index + 1) % stride == 0 and index // stride < vision.full_attention_layers

    def _within_windows(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``block`` attending within windows: the patches cut into the equal windows that
        ``profiles.params.vision_attention_groups`` costs (the last one padded), then put back."""
        tiles, seq_len, hidden = x.shape
        vision = part_of(self.model, self.model.vision, "vision_block")
        group = vision_attention_groups(vision, tiles * seq_len, tiles)[-1]
        flat = x.reshape(-1, hidden)
        padded = torch.cat([flat, flat.new_zeros(group.sequences * group.seq_len - flat.shape[0], hidden)])
        out = block(padded.view(group.sequences, group.seq_len, hidden)).reshape(-1, hidden)
        return out[: flat.shape[0]].view(tiles, seq_len, hidden)

    def prefill(self, prompt: torch.Tensor, caches: list[KvCache], lap: Callable[[], None] = _no_lap) -> torch.Tensor:
        """Run every layer over ``prompt`` (1, tokens, hidden); return the greedy next token (1,)."""
        x = prompt
        for layer, cache in zip(self.layers, caches, strict=True):
            x = layer(x, cache, 0)
            lap()
        return self.head(x[:, -1]).argmax(dim=-1)

    def decode(self, token: torch.Tensor, caches: list[KvCache], start: int, steps: int,
               lap: Callable[[], None] = _no_lap) -> torch.Tensor:
        """Generate ``steps`` tokens greedily after ``start`` cached positions; ``lap()`` after each layer."""
        for step in range(steps):
            x = self.embed(token).unsqueeze(1)
            for layer, cache in zip(self.layers, caches, strict=True):
                x = layer(x, cache, start + step)
                lap()
            token = self.head(x[:, -1]).argmax(dim=-1)
            lap()
        return token


def run_composed(model: ResolvedModel, shape: ComposedShape, device: torch.device, dtype: torch.dtype,  # noqa: PLR0913
                 plan: TimingPlan, cpu_clock: CpuClock, gpu: Cuda | None = None) -> dict[str, float]:
    """Seconds of the encoder, prefill and decode parts of a real forward pass, and their total.

    On a GPU (``gpu``) each part is one sample per pass and the median over
    passes counts. On a CPU the stopwatch also reads the clock between layers
    (laps; the pass itself is unchanged) and each lap counts its fastest pass,
    as each component's shapes count their fastest sample (calibrate.timing): a
    burst of load from another process then slows one lap of one pass, not a
    whole 3 s encoder sample. A part is the sum of its laps, the total the sum of the parts.
    """
    net = cast(ComposedModel, init_weights(ComposedModel(model), SEED).to(device=device, dtype=dtype).eval())
    generator = torch.Generator().manual_seed(SEED)
    vision = model.vision
    pixels = (torch.randn((shape.tiles, 3, vision.image_px, vision.image_px), generator=generator)
              .to(device=device, dtype=dtype) if vision is not None else None)
    text = torch.randint(0, model.decoder.vocab, (1, shape.text_tokens), generator=generator).to(device)
    if gpu is None:
        return _fastest_laps(net, pixels, text, shape, sampler(cpu_clock), cpu_clock)
    runs: list[dict[str, float]] = []
    with torch.inference_mode(), gc_paused():
        for run in range(plan.warmup + shape.passes):
            timed = _one_pass(net, pixels, text, shape, gpu.timed_s, None)
            if run >= plan.warmup:
                runs.append(timed)
    parts = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    parts["total"] = statistics.median(sum(r.values()) for r in runs)
    return parts


def _fastest_laps(net: "ComposedModel", pixels: torch.Tensor | None, text: torch.Tensor, shape: ComposedShape,
                  sample: Sampler, cpu_clock: CpuClock) -> dict[str, float]:
    """CPU: every part as the sum of its laps' fastest passes (a cold first pass never wins: no warm-up)."""
    passes: list[Laps] = []
    with torch.inference_mode(), gc_paused():
        for _ in range(shape.passes):
            laps = Laps(clock_of(cpu_clock))
            _one_pass(net, pixels, text, shape, sample, laps)
            passes.append(laps)
    parts = {name: sum(min(lap) for lap in zip(*(p.segments[name] for p in passes), strict=True))
             for name in passes[0].segments}
    parts["total"] = sum(parts.values())
    return parts


def _one_pass(net: ComposedModel, pixels: torch.Tensor | None, text: torch.Tensor, shape: ComposedShape,
              sample: Sampler, laps: Laps | None) -> dict[str, float]:
    """Seconds of each part of one forward pass (encoder, prefill, decode), laps into ``laps`` if given."""
    lap = laps.mark if laps is not None else _no_lap
    begin = laps.begin if laps is not None else (lambda part: None)
    state: dict[str, torch.Tensor] = {"prompt": net.embed(text)}
    timed: dict[str, float] = {}
    if pixels is not None:
        def encode() -> None:
            begin("encoder")
            state["prompt"] = torch.cat([net.encode(pixels, lap), net.embed(text)], dim=1)
            lap()
        timed["encoder"] = sample(encode)
    prompt_len = state["prompt"].shape[1]
    caches = [KvCache.empty(net.model.decoder, 1, prompt_len + shape.decode_steps,
                            state["prompt"]) for _ in net.layers]

    def prefill() -> None:
        begin("prefill")
        state["token"] = net.prefill(state["prompt"], caches, lap)
        lap()

    def decode() -> None:
        begin("decode")
        net.decode(state["token"], caches, prompt_len, shape.decode_steps, lap)

    timed["prefill"] = sample(prefill)
    timed["decode"] = sample(decode)
    return timed


def predicted_parts(profile: CalibrationProfile, shape: ComposedShape, prompt_tokens: int) -> dict[str, float]:
    """What the fitted model predicts for the same parts (no roofline fallback allowed)."""
    perf = CalibratedPerfModel(profile, fallback=_Unmeasured())
    parts: dict[str, float] = {}
    vision = profile.model.vision
    if vision is not None:
        patches = shape.tiles * (vision.image_px // vision.patch_px) ** 2
        parts["encoder"] = perf.encoder_s(patches, shape.tiles)
    parts["prefill"] = perf.prefill_s(prompt_tokens, 0)
    parts["decode"] = sum(perf.decode_step_s(1, prompt_tokens + step) for step in range(shape.decode_steps))
    parts["total"] = sum(parts.values())
    return parts


def composed_check(profile: CalibrationProfile, shape: ComposedShape, measured: dict[str, float],
                   prompt_tokens: int) -> ComposedCheck:
    """Compare measured and predicted parts of the composed forward pass."""
    predicted = predicted_parts(profile, shape, prompt_tokens)
    error = 100.0 * (predicted["total"] - measured["total"]) / measured["total"]
    description = (f"{shape.tiles} tile(s) + {shape.text_tokens} text tokens -> prefill {prompt_tokens} "
                   f"tokens, then {shape.decode_steps} decode steps, all layers, batch 1")
    return ComposedCheck(description=description, measured_s=measured["total"], predicted_s=predicted["total"],
                         error_pct=error, parts_measured_s=measured, parts_predicted_s=predicted)


def prompt_tokens(model: ResolvedModel, shape: ComposedShape) -> int:
    """Prefill length of the composed pass: visual tokens of the tiles plus the text."""
    connector, vision = model.connector, model.vision
    if vision is None:
        return shape.text_tokens
    patches = (vision.image_px // vision.patch_px) ** 2
    if connector is None:
        per_tile = patches
    elif connector.kind == "qformer":
        per_tile = connector.queries or 0
    else:
        per_tile = patches // connector.merge**2
    return shape.tiles * per_tile + shape.text_tokens


class _Unmeasured(StepModel):
    """A fallback that refuses: the composed check must be predicted from measurements only."""

    provenance = "none"

    @property
    def memory(self) -> MemoryPlan:
        """Not needed by the check."""
        raise CalibrationError("composed check: memory is not part of the calibration")

    def preprocess_s(self, images: int, megapixels: float, text_tokens: int) -> float:
        """Not part of the composed pass."""
        raise CalibrationError("composed check: preprocessing was not measured")

    def encoder_s(self, patches: int, sequences: int) -> float:
        """Refuse: the encoder should have a fit."""
        raise CalibrationError("composed check: the vision encoder or connector was not measured")

    def audio_encoder_s(self, audio_s: float) -> float:
        """Not part of the composed pass."""
        raise CalibrationError("composed check: the audio encoder was not measured")

    def iteration_s(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int, decode_kv_tokens: int) -> float:
        """Refuse: the decoder should have fits."""
        raise CalibrationError("composed check: the decoder was not measured")
