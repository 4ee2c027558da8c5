"""The one interface the simulator asks for durations and memory.

Three sources stand behind it: ``profiles.perf.calibrated`` (coefficients
fitted by calibrate/ from measurements on the user's device),
``profiles.perf.measured`` (kernel timings NVIDIA measured per GPU and engine,
shipped by aiconfigurator-core) and ``profiles.perf.roofline`` (datasheet
FLOPS and bandwidth with documented efficiency factors). ``perf_model()`` in
``profiles.perf`` picks them in that order. All times are seconds; all sizes bytes.
"""

from typing import Protocol

from profiles.base import StrictModel
from profiles.params import causal_pairs

# One prefilling sequence's part of a step: (new prompt tokens in this step, tokens of the same
# sequence already in the KV cache). A step's prefill is a tuple of these, one per sequence, because
# attention is per sequence: eight 2,048-token prompts attend within their own prompts (8 x 2,048^2 / 2
# pairs), not across one merged 16,384-token sequence (8x as many).
PrefillChunk = tuple[int, int]
NO_PREFILL_CHUNKS: tuple[PrefillChunk, ...] = ()


def prefill_tokens(prefill: tuple[PrefillChunk, ...]) -> int:
    """New prompt tokens in a step's prefill."""
    return sum(new for new, _cached in prefill)


def causal_prefill_pairs(prefill: tuple[PrefillChunk, ...]) -> float:
    """(query, key) pairs of a step's prefill: each chunk attends causally within its own sequence."""
    return sum(causal_pairs(new, cached) for new, cached in prefill)


def prefill_kv_read_tokens(prefill: tuple[PrefillChunk, ...]) -> int:
    """KV tokens a step's prefill attention reads: each sequence's cache plus its new chunk."""
    return sum(new + cached for new, cached in prefill)


class MemoryPlan(StrictModel):
    """Per-GPU memory of one replica (``tensor_parallel`` GPUs)."""

    gpu_bytes: int
    weights_bytes_per_gpu: int
    activation_reserve_bytes_per_gpu: int
    kv_bytes_per_token: int = 0  # whole replica, all layers, K and V
    kv_capacity_tokens: int = 0  # whole replica
    device_bytes: int = 0  # each GPU's whole memory as its driver reports it (0: unknown, take gpu_bytes)
    source: str = "counted"  # "counted" from the dimensions, or "measured (<dtype>)" by a calibration profile

    @property
    def free_bytes_per_gpu(self) -> int:
        """What is left for the KV cache on each GPU."""
        return self.gpu_bytes - self.weights_bytes_per_gpu - self.activation_reserve_bytes_per_gpu


class PerfModel(Protocol):
    """Durations and memory of one model on ``tensor_parallel`` GPUs of one type."""

    @property
    def provenance(self) -> str:
        """'calibrated on <device>, <date>', 'measured kernels (<system>, <engine> <version>)' [+ roofline
        for <parts>] or 'roofline (estimated)' [with why no measured kernels serve]."""
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

    def iteration_s(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int, decode_kv_tokens: int) -> float:
        """One continuous-batching step of the LLM.

        ``prefill`` holds one ``(new tokens, cached tokens)`` chunk per
        prefilling sequence, batched with ``decode_seqs`` decoding sequences
        that read ``decode_kv_tokens`` KV tokens in total.
        """
        ...

    def prefill_s(self, tokens: int, cached_tokens: int = 0) -> float:
        """A prefill-only step of one sequence (``StepModel`` derives it from ``iteration_s``)."""
        ...

    def decode_step_s(self, batch_size: int, kv_tokens: int) -> float:
        """A decode-only step producing one token for each of ``batch_size`` sequences."""
        ...


class StepModel:
    """The two special steps, derived once from ``iteration_s`` for every source that subclasses this."""

    def iteration_s(self, prefill: tuple[PrefillChunk, ...], decode_seqs: int, decode_kv_tokens: int) -> float:
        """Implemented by each source."""
        raise NotImplementedError

    def prefill_s(self, tokens: int, cached_tokens: int = 0) -> float:
        """A prefill-only step: ``tokens`` new tokens of one sequence after ``cached_tokens`` cached ones."""
        return self.iteration_s(((tokens, cached_tokens),), 0, 0)

    def decode_step_s(self, batch_size: int, kv_tokens: int) -> float:
        """A decode-only step for ``batch_size`` sequences reading ``kv_tokens`` KV tokens in total."""
        return self.iteration_s(NO_PREFILL_CHUNKS, batch_size, kv_tokens)
