"""What one request costs one model: prompt tokens, encoder work and CPU preprocessing time.

Counted by ``profiles.tokens.prompt_tokens`` with the model's (or the route's)
image policy, once per distinct request shape: traffic classes repeat the
same shapes, so the cache keeps token accounting off the hot path. A
text-only stage (the LLM after an OCR model) reads the request's text plus
the previous stage's output. Tokens, seconds.
"""

from typing import NamedTuple

from profiles.models import ResolvedModel
from profiles.perf.base import PerfModel
from profiles.tokens import prompt_tokens, video_frames
from sim.journey import Journey
from sim.sequence import Sequence

# A bound on distinct shapes kept; traces with continuous sizes then recount.
MAX_CACHED_SHAPES = 100_000


class Work(NamedTuple):
    """One request's cost on one model before decoding."""

    prompt_tokens: int
    encoder_patches: int
    encoder_sequences: int
    audio_s: float
    preprocess_s: float
    embedding_tokens: int  # encoder outputs handed to the LLM (image + video + audio tokens)


class WorkCounter:
    """Counts (and caches) ``Work`` of requests on one model."""

    def __init__(self, model: ResolvedModel, perf: PerfModel, text_only_input: bool) -> None:
        self.model = model
        self.perf = perf
        self.text_only_input = text_only_input
        self._cache: dict[tuple, Work] = {}

    def work(self, journey: Journey) -> Work:
        """The ``Work`` of ``journey``'s request at its current hop."""
        request = journey.request
        key: tuple
        if self.text_only_input:  # only the text counts: a short key (every request meets the classifier)
            key = (request.text_tokens, journey.prev_output_tokens)
        else:
            key = (request.images, request.audio_s, request.video_s, request.video_fps, request.video_frame_px,
                   request.text_tokens, id(journey.image_policy), journey.prev_output_tokens)
        found = self._cache.get(key)
        if found is None:
            found = self._count(journey)
            if len(self._cache) >= MAX_CACHED_SHAPES:
                self._cache.clear()
            self._cache[key] = found
        return found

    def sequence(self, journey: Journey, output_tokens: int) -> Sequence:
        """A fresh engine ``Sequence`` for ``journey`` producing ``output_tokens``."""
        prompt, patches, sequences, audio_s, preprocess_s, _ = self.work(journey)
        return Sequence(journey, prompt, output_tokens, patches, sequences, audio_s, preprocess_s)

    def _count(self, journey: Journey) -> Work:
        request = journey.request
        if self.text_only_input:
            text = request.text_tokens + journey.prev_output_tokens
            return Work(max(1, text), 0, 0, 0.0, self.perf.preprocess_s(0, 0.0, text), 0)
        text = request.text_tokens + journey.prev_output_tokens
        tokens = prompt_tokens(self.model, request.images, request.audio_s, request.video_s, request.video_fps,
                               request.video_frame_px, text, journey.image_policy)
        images, megapixels = self._decoded_pixels(journey)
        preprocess_s = self.perf.preprocess_s(images, megapixels, text)
        embedded = tokens.image + tokens.video + tokens.audio
        return Work(max(1, tokens.total), tokens.encoder_patches, tokens.encoder_sequences, tokens.audio_seconds,
                    preprocess_s, embedded)

    def _decoded_pixels(self, journey: Journey) -> tuple[int, float]:
        """Images (and sampled video frames) the CPU decodes, and their megapixels."""
        request = journey.request
        pixels = sum(w * h for w, h in request.images)
        frames = 0
        if request.video_s > 0 and self.model.video is not None:
            frames = video_frames(self.model.video, request.video_s, request.video_fps)
            width, height = request.video_frame_px
            pixels += frames * width * height
        return len(request.images) + frames, pixels / 1e6
