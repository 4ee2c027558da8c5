"""Turning a sweep point into a timed measurement: build the component once, feed it random inputs.

Layered components are timed one layer at a time, except that a decoder is
timed as a stack of distinct layers run back to back (``decoder_stack_depth``)
so that its weights stream from memory as in the full model instead of
staying in a cache sized for one layer; the time per layer is the stack's
divided by its depth. An MoE layer holds as many routed experts as the memory
budget allows (``experts_to_build``). Seconds and bytes.
"""

import math
from collections.abc import Callable
from typing import TypeVar, cast

import torch
from torch import nn

from calibrate.components import (
    DecoderLayer,
    KvCache,
    LmHead,
    audio_block,
    connector_module,
    init_weights,
    vision_block,
)
from calibrate.cuda import Cuda
from calibrate.preprocess import encode_jpeg, preprocess_image, synthetic_image
from calibrate.sweep import SweepPoint
from calibrate.timing import CpuClock, Timing, TimingPlan, time_call, time_interleaved
from profiles.calibration import Measurement
from profiles.errors import CalibrationError
from profiles.models import ResolvedModel

# Weights a decoder stack should span so no cache (H100 L2 50 MB, server L3s) holds them.
STACK_TARGET_BYTES = 128 * 2**20
SEED = 20_260_622


def dtype_bytes(dtype: torch.dtype) -> int:
    """Bytes per element of ``dtype``."""
    return torch.empty((), dtype=dtype).element_size()


def decoder_layer_bytes(model: ResolvedModel, dtype: torch.dtype, experts: int | None) -> int:
    """Weight bytes of one decoder layer as built (``experts`` routed experts for MoE)."""
    dec = model.decoder
    gated = 3 if dec.mlp == "swiglu" else 2
    elems = 2 * dec.hidden * dec.head_dim * (dec.heads + dec.kv_heads)
    if dec.moe is None:
        elems += gated * dec.hidden * dec.intermediate
    else:
        built = dec.moe.experts if experts is None else experts
        elems += dec.moe.shared_experts * gated * dec.hidden * dec.moe.shared_intermediate
        elems += built * (dec.hidden + gated * dec.hidden * dec.moe.expert_intermediate)
    return elems * dtype_bytes(dtype)


def experts_to_build(model: ResolvedModel, dtype: torch.dtype, budget_bytes: int) -> int | None:
    """Routed experts one measured MoE layer holds: all of them, or as many as fit ``budget_bytes``."""
    moe = model.decoder.moe
    if moe is None:
        return None
    one_expert = decoder_layer_bytes(model, dtype, 1) - decoder_layer_bytes(model, dtype, 0)
    fixed = decoder_layer_bytes(model, dtype, 0)
    room = max(moe.top_k, (budget_bytes - fixed) // max(1, one_expert))
    return int(min(moe.experts, room))


def decoder_stack_depth(model: ResolvedModel, dtype: torch.dtype, experts: int | None,
                        budget_bytes: int) -> int:
    """Distinct layers to run back to back: enough to exceed ``STACK_TARGET_BYTES``, within budget."""
    layer_bytes = max(1, decoder_layer_bytes(model, dtype, experts))
    wanted = math.ceil(STACK_TARGET_BYTES / layer_bytes)
    return max(1, min(model.decoder.layers, wanted, budget_bytes // layer_bytes))


Part = TypeVar("Part")


def part_of(model: ResolvedModel, part: Part | None, component: str) -> Part:
    """The model part a component measures; a ``CalibrationError`` when the model has none."""
    if part is None:
        raise CalibrationError(f"{model.id} has no part for the {component!r} component")
    return part


class Bench:
    """Builds each component of ``model`` once (lazily) and times sweep points on ``device``."""

    def __init__(self, model: ResolvedModel, device: torch.device, dtype: torch.dtype,  # noqa: PLR0913
                 plan: TimingPlan, budget_bytes: int, cpu_clock: CpuClock, gpu: Cuda | None = None) -> None:
        self.model = model
        self.device = device
        self.gpu = gpu  # the GPU's timing calls; None on a CPU
        self.dtype = dtype
        self.plan = plan
        self.budget_bytes = budget_bytes
        self.cpu_clock = cpu_clock
        self._modules: dict[str, nn.Module] = {}

    def measure(self, points: list[SweepPoint]) -> list[Measurement]:
        """Time ``points`` (shapes of one component); results are per layer for layered components.

        On a GPU each shape is timed in turn (median of back-to-back samples);
        on the CPU (preprocessing always) the shapes are timed interleaved and
        the fastest sample counts (calibrate.timing explains why).
        """
        gpu = self._timing_gpu(points[0].component) if points else self.gpu
        if gpu is not None:
            return [self._measure_on_gpu(point, gpu) for point in points]
        if self._inputs_bytes(points) > self.budget_bytes // 2:  # one at a time: their inputs would not fit
            return [self._measure_interleaved([point])[0] for point in points]
        return self._measure_interleaved(points)

    def _measure_interleaved(self, points: list[SweepPoint]) -> list[Measurement]:
        """CPU: the shapes timed interleaved, each its fastest sample."""
        calls = [self._call(point.component, point.shape) for point in points]
        timings = time_interleaved([call for call, _ in calls], self.plan, self.cpu_clock)
        return [_measurement(point, timing, layers)
                for point, timing, (_, layers) in zip(points, timings, calls, strict=True)]

    def _measure_on_gpu(self, point: SweepPoint, gpu: Cuda) -> Measurement:
        """GPU: one shape on its own, the median of back-to-back samples."""
        call, layers = self._call(point.component, point.shape)
        return _measurement(point, time_call(call, gpu, self.plan), layers)

    def _inputs_bytes(self, points: list[SweepPoint]) -> int:
        """Bytes of the inputs and KV caches of ``points`` held at once when they are timed interleaved."""
        decoder, elems = self.model.decoder, 0
        kv_row = 2 * decoder.kv_heads * decoder.head_dim
        for point in points:
            shape = point.shape
            if point.component == "decoder_prefill":
                elems += shape["tokens"] * decoder.hidden + kv_row * (shape["context"] + shape["tokens"])
            elif point.component == "decoder_decode":
                elems += shape["batch"] * (decoder.hidden + kv_row * (shape["kv_per_seq"] + 1))
            elif "sequences" in shape:
                elems += shape["sequences"] * shape["seq_len"] * decoder.hidden * 4  # a generous width
        return elems * dtype_bytes(self.dtype)

    def _timing_gpu(self, component: str) -> Cuda | None:
        """Preprocessing is CPU work whatever the accelerator."""
        return None if component == "preprocess" else self.gpu

    def _call(self, component: str, shape: dict[str, int]) -> tuple[Callable[[], object], int]:
        """(the call to time, layers it runs) for one shape."""
        if component == "preprocess":
            encoded = encode_jpeg(synthetic_image(shape["width"], shape["height"], SEED))
            return (lambda: preprocess_image(self.model, encoded)), 1
        if component in ("decoder_prefill", "decoder_decode"):
            return self._decoder_call(component, shape)
        module = self._module(component)
        if component == "lm_head":
            rows = self._random((shape["rows"], self.model.decoder.hidden))
            return (lambda: module(rows)), 1
        encoder = self.model.audio if component == "audio_block" else self.model.vision
        width = part_of(self.model, encoder, component).hidden
        x = self._random((shape["sequences"], shape["seq_len"], width))
        return (lambda: module(x)), 1

    def _decoder_call(self, component: str, shape: dict[str, int]) -> tuple[Callable[[], object], int]:
        """A stack of distinct decoder layers sharing one KV cache of the shape's size."""
        stack = cast(nn.ModuleList, self._module("decoder_stack"))
        decoder = self.model.decoder
        if component == "decoder_prefill":
            sequences, tokens, start = 1, shape["tokens"], shape["context"]
        else:
            sequences, tokens, start = shape["batch"], 1, shape["kv_per_seq"]
        x = self._random((sequences, tokens, decoder.hidden))
        cache = KvCache(*(self._random((sequences, decoder.kv_heads, start + tokens, decoder.head_dim))
                          for _ in range(2)))

        def run() -> torch.Tensor:
            out = x
            for layer in stack:
                out = layer(out, cache, start)
            return out

        return run, len(stack)

    def release(self, component: str) -> None:
        """Drop the module(s) ``component`` used, to free memory for the next component."""
        self._modules.pop("decoder_stack" if component.startswith("decoder_") else component, None)

    def _module(self, name: str) -> nn.Module:
        """The module ``name``, built at the model's dims on first use."""
        if name not in self._modules:
            module = self._build(name)
            self._modules[name] = module.to(device=self.device, dtype=self.dtype).eval()
        return self._modules[name]

    def _build(self, name: str) -> nn.Module:
        """Random-weight module ``name`` (seeded)."""
        model = self.model
        if name == "vision_block":
            return init_weights(vision_block(part_of(model, model.vision, name)), SEED)
        if name == "connector":
            vision = part_of(model, model.vision, name)
            return init_weights(connector_module(part_of(model, model.connector, name), vision.hidden,
                                                 model.decoder.hidden), SEED)
        if name == "audio_block":
            return init_weights(audio_block(part_of(model, model.audio, name)), SEED)
        if name == "lm_head":
            return init_weights(LmHead(model.decoder), SEED)
        experts = experts_to_build(model, self.dtype, self.budget_bytes)
        depth = decoder_stack_depth(model, self.dtype, experts, self.budget_bytes)
        return nn.ModuleList(init_weights(DecoderLayer(model.decoder, experts=experts), SEED + i)
                             for i in range(depth))

    def _random(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Seeded standard-normal input of ``shape`` on the device, in the dtype."""
        generator = torch.Generator().manual_seed(SEED)
        return torch.randn(shape, generator=generator).to(device=self.device, dtype=self.dtype)


def _measurement(point: SweepPoint, timing: Timing, layers: int) -> Measurement:
    """The measurement of ``point`` from its timing over ``layers`` layers run back to back."""
    return Measurement(component=point.component, shape=point.shape, seconds=timing.seconds / layers,
                       samples_s=tuple(s / layers for s in timing.samples_s), layers_timed=layers,
                       peak_memory_bytes=timing.peak_memory_bytes, holdout=point.holdout)
