"""A sequence: one request as an LLM engine sees it (prompt, output, KV, encoder work).

Decode progress is not stored per token: a decoding sequence remembers the
engine iteration at which it joined the decode batch, so its generated
tokens and KV length follow from the engine's iteration counter. Tokens and
seconds.
"""

from typing import TYPE_CHECKING

from sim.journey import Journey

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
        "output_tokens",
        "prefilled",
        "preprocess_s",
        "prompt_tokens",
        "replica",
        "reserved_tokens",
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
        # Set by the replica that takes it (load balancers count its outstanding work).
        self.replica: "Replica"

    @property
    def prefill_remaining(self) -> int:
        """Prompt tokens not yet in the KV cache."""
        return self.prompt_tokens - self.prefilled
