"""The one interface the simulator asks for durations and memory.

Two sources stand behind it: ``profiles.perf.roofline`` (datasheet FLOPS and
bandwidth with documented efficiency factors) and ``profiles.perf.calibrated``
(coefficients fitted by calibrate/ from real measurements). ``perf_model()``
in ``profiles.perf`` picks the calibrated one when a profile exists.
All times are seconds; all sizes bytes.
"""

from typing import Protocol

from profiles.base import StrictModel


class MemoryPlan(StrictModel):
    """Per-GPU memory of one replica (``tensor_parallel`` GPUs)."""

    gpu_bytes: int
    weights_bytes_per_gpu: int
    activation_reserve_bytes_per_gpu: int
    kv_bytes_per_token: int = 0  # whole replica, all layers, K and V
    kv_capacity_tokens: int = 0  # whole replica

    @property
    def free_bytes_per_gpu(self) -> int:
        """What is left for the KV cache on each GPU."""
        return self.gpu_bytes - self.weights_bytes_per_gpu - self.activation_reserve_bytes_per_gpu


class PerfModel(Protocol):
    """Durations and memory of one model on ``tensor_parallel`` GPUs of one type."""

    @property
    def provenance(self) -> str:
        """'roofline (estimated)' or 'calibrated on <device>, <date>'."""
        ...

    @property
    def memory(self) -> MemoryPlan:
        """Weights, activation reserve and KV capacity of the replica."""
        ...

    def preprocess_s(self, images: int, megapixels: float, text_tokens: int) -> float:
        """CPU preprocessing of one request on one CPU worker."""
        ...

    def encoder_s(self, patches: int, sequences: int) -> float:
        """Vision encoder + connector pass over ``patches`` patch tokens in ``sequences`` tiles/frames."""
        ...

    def audio_encoder_s(self, audio_s: float) -> float:
        """Audio encoder pass over ``audio_s`` seconds of audio."""
        ...

    def iteration_s(
        self, prefill_tokens: int, prefill_context_tokens: int, decode_seqs: int, decode_kv_tokens: int
    ) -> float:
        """One continuous-batching step of the LLM.

        ``prefill_tokens`` new prompt tokens (a chunk) whose sequences already
        hold ``prefill_context_tokens`` cached tokens in total, batched with
        ``decode_seqs`` decoding sequences that read ``decode_kv_tokens`` KV
        tokens in total.
        """
        ...

    def prefill_s(self, tokens: int, cached_tokens: int = 0) -> float:
        """A prefill-only step."""
        ...

    def decode_step_s(self, batch_size: int, kv_tokens: int) -> float:
        """A decode-only step producing one token for each of ``batch_size`` sequences."""
        ...
