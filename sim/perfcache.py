"""Memoised performance-model calls for the engine loop's hot path.

``CachedPerf`` is the only wrapper between the engine and a performance model
and it only remembers answers: every step (mixed, prefill-only, decode-only)
goes through one memoised ``iteration_s``, the two special steps being the
same call with no decode or no prefill (as ``profiles.perf.base.StepModel``
derives them). A decode step's time depends on the batch size and the KV
tokens read; the engine asks for it at every jump with a slightly different
KV length. The cache rounds the KV length to about 0.4% (8 significant bits),
which changes a step time by far less than the model's own uncertainty.
Prompt chunks repeat with the traffic's shapes; encoder passes are remembered
exactly. Seconds.

``time_scale`` multiplies every GPU pass it answers (steps and encoder passes, not
the CPU's preprocessing): 1 in a plan; ``vlmplan plan --sensitivity`` runs each
sized deployment once with its steps slower by the validation's typical error
(``planner.sensitivity``).
"""

from profiles.perf.base import NO_PREFILL_CHUNKS, MemoryPlan, PerfModel, PrefillChunk

KV_SIGNIFICANT_BITS = 8
MAX_ENTRIES = 200_000


def round_tokens(tokens: float) -> int:
    """``tokens`` rounded to ``KV_SIGNIFICANT_BITS`` significant bits."""
    whole = int(tokens + 0.5)
    shift = whole.bit_length() - KV_SIGNIFICANT_BITS
    if shift <= 0:
        return whole
    half = 1 << (shift - 1)
    return ((whole + half) >> shift) << shift


class CachedPerf:
    """A ``PerfModel`` whose steps are memoised on (prefill chunks, batch size, rounded KV tokens)."""

    def __init__(self, perf: PerfModel, time_scale: float = 1.0) -> None:
        self.perf = perf
        self._time_scale = time_scale
        self._memory = perf.memory  # asked per replica build and per report: remembered
        self._mixed: dict[tuple[tuple[PrefillChunk, ...], int, int], float] = {}
        self._encoder: dict[tuple[int, int], float] = {}
        self._audio: dict[float, float] = {}

    @property
    def provenance(self) -> str:
        """The wrapped model's provenance."""
        return self.perf.provenance

    @property
    def memory(self) -> MemoryPlan:
        """The wrapped model's memory plan (sized as the stage's engine sizes it)."""
        return self._memory

    def preprocess_s(self, images: int, megapixels: float, text_tokens: int) -> float:
        """Pass-through."""
        return self.perf.preprocess_s(images, megapixels, text_tokens)

    def encoder_s(self, patches: int, sequences: int) -> float:
        """Memoised vision encoder pass."""
        key = (patches, sequences)
        found = self._encoder.get(key)
        if found is None:
            if len(self._encoder) >= MAX_ENTRIES:
                self._encoder.clear()
            found = self._encoder[key] = self.perf.encoder_s(patches, sequences) * self._time_scale
        return found

    def audio_encoder_s(self, audio_s: float) -> float:
        """Memoised audio encoder pass."""
        found = self._audio.get(audio_s)
        if found is None:
            if len(self._audio) >= MAX_ENTRIES:
                self._audio.clear()
            found = self._audio[audio_s] = self.perf.audio_encoder_s(audio_s) * self._time_scale
        return found

    def iteration_s(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int, decode_kv_tokens: float) -> float:
        """Memoised mixed step at the rounded decode KV length (prompt shapes repeat with the traffic)."""
        key = (prefill, decode_seqs, round_tokens(decode_kv_tokens) if decode_kv_tokens else 0)
        found = self._mixed.get(key)
        if found is None:
            if len(self._mixed) >= MAX_ENTRIES:
                self._mixed.clear()
            found = self._mixed[key] = self.perf.iteration_s(prefill, decode_seqs, key[2]) * self._time_scale
        return found

    def prefill_s(self, tokens: int, cached_tokens: int = 0) -> float:
        """A memoised prefill-only step of one sequence."""
        return self.iteration_s(((tokens, cached_tokens),), 0, 0)

    def decode_step_s(self, batch_size: int, kv_tokens: float) -> float:
        """A memoised decode-only step at the rounded KV length."""
        return self.iteration_s(NO_PREFILL_CHUNKS, batch_size, kv_tokens)
