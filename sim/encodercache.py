"""Encoder-output cache of one replica: images and audio a conversation sends again are not redone.

A later turn of a conversation re-sends the earlier turns' screenshots and
audio. When a part's encoder outputs are still in this replica's cache (by the
part's key, least recently used out first), its CPU preprocessing and its
encoder pass are skipped; a prefix-cache hit skips the encoder too
(``sim.batcher``), this cache also covers a turn whose history's KV blocks
were evicted. vLLM keeps processed inputs (``mm_processor_cache_gb``) and
shares encoder outputs of identical inputs while they stay in its encoder
cache; the simulator models both as one cache sized in embedding tokens
(``encoder_cache_tokens`` per stage, off by default). Tokens, seconds.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the sequence module is compiled with the engine
    from sim.sequence import Sequence

# A context part with encoder work: (key, cumulative prompt tokens at its end, patches, encoder
# sequences, audio seconds, its share of CPU preprocessing in seconds, its embedding tokens).
MediaPart = tuple[int, int, int, int, float, float, int]


class EncoderCache:
    """Embedding tokens of encoded parts kept on one replica, least recently used evicted first."""

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity_tokens = capacity_tokens
        self.used_tokens = 0
        self._entries: dict[int, int] = {}  # part key -> embedding tokens, least recently used first
        self.lookups = 0  # parts looked up
        self.hits = 0  # of those, found

    def hit(self, key: int) -> bool:
        """Whether ``key``'s outputs are here (a hit becomes the most recently used)."""
        self.lookups += 1
        tokens = self._entries.pop(key, -1)
        if tokens < 0:
            return False
        self._entries[key] = tokens
        self.hits += 1
        return True

    def add(self, key: int, tokens: int) -> None:
        """Keep ``key``'s ``tokens`` embedding tokens, evicting the least recently used to make room."""
        if tokens > self.capacity_tokens or key in self._entries:
            return
        entries = self._entries
        while self.used_tokens + tokens > self.capacity_tokens:
            self.used_tokens -= entries.pop(next(iter(entries)))
        entries[key] = tokens
        self.used_tokens += tokens

    def reuse(self, seq: "Sequence") -> None:
        """Skip preprocessing and encoding of ``seq``'s cached parts; remember its new ones for later turns."""
        left: list[MediaPart] = []
        for part in seq.media:
            key, _end_tokens, patches, sequences, audio_s, preprocess_s, tokens = part
            if self.hit(key):
                seq.preprocess_s -= preprocess_s
                seq.encoder_patches -= patches
                seq.encoder_sequences -= sequences
                seq.audio_s -= audio_s
            else:
                self.add(key, tokens)
                left.append(part)
        seq.media = tuple(left)
        own_key = seq.journey.request.own_key
        if own_key >= 0 and seq.own_media_tokens:
            self.add(own_key, seq.own_media_tokens)
        seq.encoder_pending = seq.encoder_patches > 0 or seq.audio_s > 1e-9
