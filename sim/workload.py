"""What one request costs one model: prompt tokens, encoder work and CPU preprocessing time.

Counted by ``profiles.tokens.prompt_tokens`` with the model's (or the route's)
image policy, once per distinct request shape: traffic classes repeat the
same shapes, so the cache keeps token accounting off the hot path. A
text-only stage (the LLM after an OCR model) reads the request's text plus
the previous stage's output. Tokens, seconds.

A request with context (a system prompt, earlier conversation turns) costs
its own input plus every context part, each counted once per shape; its
sequence carries the prompt's part chain in the engine's KV blocks for
prefix caching, and where each part's encoder work ends in the prompt.
"""

from typing import NamedTuple

from profiles.models import ResolvedModel
from profiles.perf.base import PerfModel
from profiles.tokens import prompt_tokens, video_frames
from sim.encodercache import MediaPart
from sim.journey import Journey
from sim.kvcache import PrefixChain
from sim.request import Part
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


class PartWork(NamedTuple):
    """One context part's tokens and encoder work on one model, and what its CPU preprocessing reads."""

    tokens: int
    encoder_patches: int
    encoder_sequences: int
    audio_s: float
    images: int
    megapixels: float


class WorkCounter:
    """Counts (and caches) ``Work`` of requests on one model."""

    def __init__(self, model: ResolvedModel, perf: PerfModel, text_only_input: bool,
                 block_tokens: int = 16) -> None:
        self.model = model
        self.perf = perf
        self.text_only_input = text_only_input
        self.block_tokens = block_tokens  # the engine's KV block: the prefix chain counts whole ones
        self._cache: dict[tuple, Work] = {}
        self._parts: dict[tuple, PartWork] = {}

    def work(self, journey: Journey) -> Work:
        """The ``Work`` of ``journey``'s request at its current hop (its context included)."""
        own = self.own_work(journey)
        if not journey.request.context or self.text_only_input:
            return own
        return self._with_context(journey, own)

    def own_work(self, journey: Journey) -> Work:
        """The ``Work`` of the request's own input at its current hop (no context)."""
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
        seq = Sequence(journey, prompt, output_tokens, patches, sequences, audio_s, preprocess_s)
        request = journey.request
        if (request.context or request.own_key >= 0) and not self.text_only_input:
            seq.prefix, seq.media = self._chain(journey, prompt)
            seq.output_key = request.output_key
            seq.own_media_tokens = self.own_work(journey).embedding_tokens
        return seq

    def part_work(self, part: Part, journey: Journey) -> PartWork:
        """Tokens and encoder work of one context part (cached per shape and image policy)."""
        _, images, audio_s, text = part
        key = (images, audio_s, text, id(journey.image_policy))
        found = self._parts.get(key)
        if found is None:
            counted = prompt_tokens(self.model, images, audio_s, 0.0, 0.0, (0, 0), text, journey.image_policy)
            megapixels = sum(w * h for w, h in images) / 1e6
            found = PartWork(counted.total, counted.encoder_patches, counted.encoder_sequences,
                             counted.audio_seconds, len(images), megapixels)
            if len(self._parts) >= MAX_CACHED_SHAPES:
                self._parts.clear()
            self._parts[key] = found
        return found

    def _with_context(self, journey: Journey, own: Work) -> Work:
        """``own`` plus the request's context parts; preprocessing reads every image and token again."""
        tokens, patches, sequences, audio_s = own.prompt_tokens, own.encoder_patches, own.encoder_sequences, own.audio_s
        embedded = own.embedding_tokens
        images, megapixels = self._decoded_pixels(journey)
        text = journey.request.text_tokens + journey.prev_output_tokens
        for part in journey.request.context:
            counted = self.part_work(part, journey)
            tokens += counted.tokens
            patches += counted.encoder_patches
            sequences += counted.encoder_sequences
            audio_s += counted.audio_s
            images += counted.images
            megapixels += counted.megapixels
            text += part[3]
            embedded += counted.tokens - part[3]
        return Work(tokens, patches, sequences, audio_s, self.perf.preprocess_s(images, megapixels, text), embedded)

    def _chain(self, journey: Journey, prompt: int) -> tuple[PrefixChain, tuple[MediaPart, ...]]:
        """The prompt's part chain in whole KV blocks, and each context part's encoder and preprocessing work."""
        block, end_tokens, last_blocks = self.block_tokens, 0, 0
        chain: list[tuple[int, int]] = []
        skips: list[MediaPart] = []
        bare_s = self.perf.preprocess_s(0, 0.0, 0)  # a request's own overhead, not a part's
        for part in journey.request.context:
            counted = self.part_work(part, journey)
            end_tokens += counted.tokens
            if end_tokens // block > last_blocks:
                last_blocks = end_tokens // block
                chain.append((part[0], last_blocks))
            if counted.encoder_patches or counted.audio_s:
                preprocess_s = self.perf.preprocess_s(counted.images, counted.megapixels, 0) - bare_s
                skips.append((part[0], end_tokens, counted.encoder_patches, counted.encoder_sequences,
                              counted.audio_s, preprocess_s, counted.tokens - part[3]))
        own_key = journey.request.own_key
        if own_key >= 0 and prompt // block > last_blocks:
            chain.append((own_key, prompt // block))
        return tuple(chain), tuple(skips)

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
