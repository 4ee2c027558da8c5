"""A sequence: one request as an LLM engine sees it (prompt, output, KV, encoder work).

Decode progress is not stored per token: a decoding sequence remembers the
engine iteration at which it joined the decode batch, so its generated
tokens and KV length follow from the engine's iteration counter. Tokens and
seconds.
"""

from typing import TYPE_CHECKING

from sim.journey import Journey
from sim.kvcache import PrefixChain, PrefixNode

NO_PINS: list[PrefixNode] = []  # the pins of every sequence that uses no prefix cache (never appended to)

if TYPE_CHECKING:  # the replica module imports this one
    from sim.replica import Replica


class Sequence:
    """One request inside one replica's continuous batch."""

    __slots__ = (
        "admitted",
        "audio_s",
        "embedding_tokens",
        "encoder_patches",
        "encoder_pending",
        "encoder_sequences",
        "enqueued_s",
        "epoch",
        "finish_iter",
        "generated",
        "join_iter",
        "journey",
        "max_output_tokens",
        "media",
        "node_tokens",
        "output_key",
        "output_tokens",
        "own_media_tokens",
        "pinned",
        "prefix",
        "prefilled",
        "preprocess_s",
        "prompt_tokens",
        "replica",
        "reserved_tokens",
        "swapped",
    )

    def __init__(
        self,
        journey: Journey,
        prompt_tokens: int,
        output_tokens: int,
        encoder_patches: int = 0,
        encoder_sequences: int = 0,
        audio_s: float = 0.0,
        preprocess_s: float = 0.0,
        max_output_tokens: int = 0,
        prefix: PrefixChain = (),
    ) -> None:
        self.journey = journey
        self.prompt_tokens = prompt_tokens  # tokens to prefill (grows by the generated ones on recompute)
        self.output_tokens = output_tokens
        # The client's max_tokens: what an engine that reserves ahead (TRT-LLM, SGLang) counts on;
        # 0: the output length itself.
        self.max_output_tokens = max_output_tokens or output_tokens
        self.reserved_tokens = 0  # KV tokens the engine's policy set aside for it at admission
        self.encoder_patches = encoder_patches
        self.encoder_sequences = encoder_sequences
        self.audio_s = audio_s
        self.encoder_pending = encoder_patches > 0 or audio_s > 0
        self.preprocess_s = preprocess_s
        self.prefilled = 0
        self.generated = 0  # tokens sampled before joining the decode batch
        self.join_iter = 0
        self.finish_iter = 0
        self.epoch = 0  # bumped on preemption: stale decode-heap entries are skipped
        self.admitted = False
        self.enqueued_s = 0.0
        self.embedding_tokens = 0  # encoder outputs sent over the link (E/PD split)
        # Prefix caching: the prompt's cacheable part chain, the cache nodes it pins while running,
        # and how many of its KV tokens live in those nodes rather than in its own slots.
        self.prefix = prefix
        self.pinned = NO_PINS  # a list of its own once it reuses or fills the prefix cache
        self.node_tokens = 0
        self.output_key = -1  # the key its generated tokens have in the conversation's next turn (-1: none)
        # Context parts with encoder work a cache hit can skip (sim.encodercache.MediaPart), in prompt
        # order, and the embedding tokens of its own input (kept for the conversation's next turn).
        self.media: tuple[tuple[int, int, int, int, float, float, int], ...] = ()
        self.own_media_tokens = 0
        self.swapped = False  # preempted with its KV copied to host memory (swap preemption)
        # Set by the replica that takes it (load balancers count its outstanding work).
        self.replica: "Replica"

    @property
    def prefill_remaining(self) -> int:
        """Prompt tokens not yet in the KV cache."""
        return self.prompt_tokens - self.prefilled
