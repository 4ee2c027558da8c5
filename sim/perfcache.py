"""Memoised performance-model calls for the engine loop's hot path.

A decode step's time depends on the batch size and the KV tokens read; the
engine asks for it at every jump with a slightly different KV length. The
cache rounds the KV length to about 0.4% (8 significant bits) and remembers
the answer, which changes a step time by far less than the model's own
uncertainty. Mixed steps are remembered the same way (prompt chunks repeat
with the traffic's shapes); encoder passes exactly. Seconds.
"""

from profiles.perf.base import MemoryPlan, PerfModel, PrefillChunk

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
    """A ``PerfModel`` whose decode steps are memoised on (batch size, rounded KV tokens)."""

    def __init__(self, perf: PerfModel, memory: MemoryPlan | None = None) -> None:
        """``memory``: the stage engine's own memory plan, in place of ``perf``'s."""
        self.perf = perf
        self._memory = memory or perf.memory
        self._decode: dict[tuple[int, int], float] = {}
        self._mixed: dict[tuple[tuple[PrefillChunk, ...], int, int], float] = {}
        self._encoder: dict[tuple[int, int], float] = {}
        self._audio: dict[float, float] = {}

    @property
    def provenance(self) -> str:
        """The wrapped model's provenance."""
        return self.perf.provenance

    @property
    def memory(self) -> MemoryPlan:
        """The stage engine's memory plan (else the wrapped model's)."""
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
            found = self._encoder[key] = self.perf.encoder_s(patches, sequences)
        return found

    def audio_encoder_s(self, audio_s: float) -> float:
        """Memoised audio encoder pass."""
        found = self._audio.get(audio_s)
        if found is None:
            if len(self._audio) >= MAX_ENTRIES:
                self._audio.clear()
            found = self._audio[audio_s] = self.perf.audio_encoder_s(audio_s)
        return found

    def iteration_s(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int, decode_kv_tokens: float) -> float:
        """Memoised mixed step at the rounded decode KV length (prompt shapes repeat with the traffic)."""
        key = (prefill, decode_seqs, round_tokens(decode_kv_tokens) if decode_kv_tokens else 0)
        found = self._mixed.get(key)
        if found is None:
            if len(self._mixed) >= MAX_ENTRIES:
                self._mixed.clear()
            found = self._mixed[key] = self.perf.iteration_s(prefill, decode_seqs, key[2])
        return found

    def prefill_s(self, tokens: int, cached_tokens: int = 0) -> float:
        """Pass-through."""
        return self.perf.prefill_s(tokens, cached_tokens)

    def decode_step_s(self, batch_size: int, kv_tokens: float) -> float:
        """Memoised decode step at the rounded KV length."""
        tokens = round_tokens(kv_tokens)
        key = (batch_size, tokens)
        found = self._decode.get(key)
        if found is None:
            if len(self._decode) >= MAX_ENTRIES:
                self._decode.clear()
            found = self._decode[key] = self.perf.decode_step_s(batch_size, key[1])
        return found
