"""The shapes a calibration measures: those the simulator asks the performance model about.

Per component, a training grid (what the fit sees) and held-out shapes inside
the grid's range (what the fit's error is measured on). ``quick`` keeps the
lighter shapes so a CPU run takes about a minute; the full sweep reaches the
batch sizes, contexts and tile counts of GPU serving.
Shape keys: vision/connector/audio ``sequences, seq_len``; prefill ``tokens,
context``; decode ``batch, kv_per_seq``; LM head ``rows``; preprocess
``width, height`` (px, 4:3 as the prediction assumes).
"""

from typing import NamedTuple

from calibrate.timing import TimingPlan
from profiles.models import ResolvedModel
from profiles.perf.calibrated_features import audio_shape


class SweepPoint(NamedTuple):
    """One shape of one component to time."""

    component: str
    shape: dict[str, int]
    holdout: bool


QUICK_TIMING = TimingPlan(warmup=1, min_samples=5, max_samples=15, min_total_s=0.5, min_sample_s=0.02)
FULL_TIMING = TimingPlan(warmup=3, min_samples=7, max_samples=50, min_total_s=2.0, min_sample_s=0.05)

# (sequences, fraction of the native tile's patches): train, then held out.
_ENCODER_QUICK = ([(1, 1.0), (3, 1.0), (1, 0.25), (4, 0.25), (8, 0.25)], [(2, 1.0), (2, 0.25)])
_ENCODER_FULL = ([(1, 1.0), (2, 1.0), (4, 1.0), (8, 1.0), (16, 1.0), (1, 0.25), (4, 0.25), (16, 0.25),
                  (1, 4.0), (2, 4.0)], [(3, 1.0), (12, 1.0), (8, 0.25), (1, 2.25)])
# (tokens, context)
_PREFILL_QUICK = ([(t, c) for t in (16, 32, 64, 128, 256) for c in (0, 512)],
                  [(48, 0), (96, 256), (192, 0)])
_PREFILL_FULL = ([(t, c) for t in (16, 64, 256, 1024, 2048) for c in (0, 1024, 4096)],
                 [(32, 0), (512, 512), (1536, 2048), (128, 3000)])
# (batch, kv_per_seq)
_DECODE_QUICK = ([(b, k) for b in (1, 2, 3, 4, 8, 16) for k in (64, 1024)], [(6, 256), (6, 512), (12, 128)])
_DECODE_FULL = ([(b, k) for b in (1, 2, 3, 4, 16, 64, 256) for k in (128, 1024, 4096)],
                [(2, 512), (8, 2048), (32, 256), (128, 3000)])
# rows
_LM_HEAD_QUICK = ([1, 2, 3, 4, 8, 16, 64, 128, 256], [6, 24, 96])
_LM_HEAD_FULL = ([1, 2, 3, 4, 8, 16, 64, 256, 1024], [6, 32, 128, 512])
# windows per pass of a windowed ViT's blocks (of ``window_patches`` each)
_WINDOWS = ([4, 16, 64, 256], [32])
# audio seconds
_AUDIO_QUICK = ([2, 10, 30, 60], [5, 20])
_AUDIO_FULL = ([2, 5, 10, 30, 60, 120], [15, 45, 90])
# image width px (height = 3/4 width)
_PREPROCESS_QUICK = ([480, 640, 960, 1280, 2048, 2880, 3600], [1024, 1600])
_PREPROCESS_FULL = ([480, 640, 1280, 2048, 2880, 4032], [1024, 1600, 3200])


def sweep_points(model: ResolvedModel, quick: bool, experts: int | None = None) -> list[SweepPoint]:
    """Every shape to time for ``model``, training points first within each component.

    ``experts``: routed experts the MoE layer is built with (None for a dense
    decoder); recorded in decoder shapes so the fit counts the weights read.
    """
    points: list[SweepPoint] = []
    if model.vision is not None:
        native = (model.vision.image_px // model.vision.patch_px) ** 2
        grid = _ENCODER_QUICK if quick else _ENCODER_FULL
        encoder_shapes = _split(grid, lambda s: {"sequences": s[0], "seq_len": round(native * s[1])})
        window = model.vision.window_patches
        if window is not None:  # windowed blocks run many short sequences (Qwen2.5-VL: 64 patches each)
            encoder_shapes += _split(_WINDOWS, lambda count: {"sequences": count, "seq_len": window})
            encoder_shapes.sort(key=lambda item: item[1])  # training points first (stable)
        points += [SweepPoint("vision_block", shape, hold) for shape, hold in encoder_shapes]
        if model.connector is not None:
            points += [SweepPoint("connector", shape, hold) for shape, hold in encoder_shapes]
    if model.audio is not None:
        audio = model.audio
        points += [SweepPoint("audio_block", shape, hold) for shape, hold in _split(
            _AUDIO_QUICK if quick else _AUDIO_FULL,
            lambda s: dict(zip(("sequences", "seq_len"), audio_shape(audio, s), strict=True)))]
    moe = {} if experts is None else {"experts": experts}
    points += [SweepPoint("decoder_prefill", shape, hold) for shape, hold in _split(
        _PREFILL_QUICK if quick else _PREFILL_FULL, lambda s: {"tokens": s[0], "context": s[1], **moe})]
    points += [SweepPoint("decoder_decode", shape, hold) for shape, hold in _split(
        _DECODE_QUICK if quick else _DECODE_FULL, lambda s: {"batch": s[0], "kv_per_seq": s[1], **moe})]
    points += [SweepPoint("lm_head", shape, hold) for shape, hold in _split(
        _LM_HEAD_QUICK if quick else _LM_HEAD_FULL, lambda s: {"rows": s})]
    if model.vision is not None and model.image_policy is not None:
        points += [SweepPoint("preprocess", shape, hold) for shape, hold in _split(
            _PREPROCESS_QUICK if quick else _PREPROCESS_FULL, lambda w: {"width": w, "height": w * 3 // 4})]
    return points


def _split(grid: tuple[list, list], to_shape) -> list[tuple[dict[str, int], bool]]:  # noqa: ANN001
    """(shape, holdout) for the training list then the held-out list of ``grid``."""
    train, held = grid
    return [(to_shape(s), False) for s in train] + [(to_shape(s), True) for s in held]
