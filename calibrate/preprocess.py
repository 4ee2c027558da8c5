"""CPU image preprocessing as a VLM server does it: decode, resize, tile, normalise.

Images are generated (a document-like page: text lines, a photo-like
gradient, sensor noise) with a seeded numpy generator and encoded to JPEG with
Pillow, so decoding does real entropy decoding. The views produced follow the
model's image policy (profiles.perf.calibrated_features.preprocess_resizes,
which the fitted model also counts): as many views as encoder sequences. Output is float32
(views, 3, height, width) normalised with the CLIP/SigLIP mean and std, written
view by view into the image's one pixel-values array (the batch the encoder
takes) in a single scale-and-shift pass, as a fused normalise does, rather
than through per-view float temporaries (rescale, subtract, divide, transpose,
stack): those only add page-faulted allocations, whose cost varies with the
machine's memory pressure more than with the image.
"""

import io

import numpy as np
from PIL import Image

from profiles.models import ResolvedModel
from profiles.perf.calibrated_features import preprocess_resizes

NORM_MEAN = np.array([0.5, 0.5, 0.5], dtype=np.float32)  # SigLIP; CLIP's differ only in value
NORM_STD = np.array([0.5, 0.5, 0.5], dtype=np.float32)
NORM_SCALE = (1.0 / (255.0 * NORM_STD)).reshape(3, 1, 1)
NORM_OFFSET = (-NORM_MEAN / NORM_STD).reshape(3, 1, 1)
JPEG_QUALITY = 90


def synthetic_image(width_px: int, height_px: int, seed: int) -> np.ndarray:
    """An RGB uint8 page: white background, dark text-like lines, a colour gradient block, noise."""
    rng = np.random.default_rng(seed)
    page = np.full((height_px, width_px, 3), 245, dtype=np.uint8)
    line_px = max(4, height_px // 60)
    for top in range(line_px, height_px - line_px, 2 * line_px):
        length = int(rng.uniform(0.3, 0.9) * width_px)
        page[top:top + line_px // 2, width_px // 20:width_px // 20 + length] = rng.integers(0, 80)
    rows, cols = np.mgrid[0:height_px // 3, 0:width_px // 2]
    gradient = np.stack([rows * 255 // max(1, rows.max()), cols * 255 // max(1, cols.max()),
                         (rows + cols) * 127 // max(1, rows.max() + cols.max())], axis=-1)
    page[height_px // 3:height_px // 3 + rows.shape[0], width_px // 4:width_px // 4 + cols.shape[1]] = gradient
    noise = rng.integers(-12, 13, size=page.shape, dtype=np.int16)
    return np.clip(page.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """JPEG bytes of an RGB uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def preprocess_image(model: ResolvedModel, encoded: bytes) -> np.ndarray:
    """Decode ``encoded``, build the policy's views, normalise: float32 (views, 3, h, w) pixel values."""
    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    return normalise(views(model, image))


def views(model: ResolvedModel, image: Image.Image) -> list[Image.Image]:
    """The resized views the vision encoder sees: grid tiles, then the whole image at tile size."""
    out: list[Image.Image] = []
    for resize in preprocess_resizes(model, *image.size):
        resized = image.resize((resize.width, resize.height), Image.Resampling.BICUBIC)
        if resize.tiles <= 1:
            out.append(resized)
            continue
        tile = resize.tile_px
        out += [resized.crop((left, top, left + tile, top + tile))
                for top in range(0, resize.height, tile) for left in range(0, resize.width, tile)]
    return out


def normalise(images: list[Image.Image]) -> np.ndarray:
    """uint8 HWC views (all one size) -> float32 (views, 3, h, w): x / 255 scaled by mean and std.

    (x / 255 - mean) / std is computed as x * scale + offset straight into the output.
    """
    width, height = images[0].size
    out = np.empty((len(images), 3, height, width), dtype=np.float32)
    for index, view in enumerate(images):
        np.multiply(np.asarray(view).transpose(2, 0, 1), NORM_SCALE, out=out[index])
        out[index] += NORM_OFFSET
    return out
