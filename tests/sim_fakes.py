"""Small fakes for simulator tests: an affine performance model and a replica harness.

The fake model's times are simple enough to work out by hand, so tests can
assert exact first-token and finish times.
"""

import simpy

from profiles.perf.base import MemoryPlan
from sim.batcher import BatchSettings
from sim.journey import Journey
from sim.replica import Replica
from sim.request import Request
from sim.sequence import Sequence

STEP_S = 0.010  # fixed cost of any engine step
PREFILL_S_PER_TOKEN = 0.0001
DECODE_S_PER_SEQ = 0.0005
KV_S_PER_TOKEN = 0.000001


class AffinePerf:
    """step = 10 ms + 0.1 ms/prefill token + 0.5 ms/decoding sequence + 1 us/KV token read."""

    provenance = "fake affine model"

    def __init__(self, kv_capacity_tokens: int = 1_000_000, preprocess_s: float = 0.0) -> None:
        self.memory = MemoryPlan(gpu_bytes=80_000_000_000, weights_bytes_per_gpu=0,
                                 activation_reserve_bytes_per_gpu=0, kv_bytes_per_token=1000,
                                 kv_capacity_tokens=kv_capacity_tokens)
        self._preprocess_s = preprocess_s

    def preprocess_s(self, images: int, megapixels: float, text_tokens: int) -> float:
        return self._preprocess_s

    def encoder_s(self, patches: int, sequences: int) -> float:
        return 0.001 * patches / 1000

    def audio_encoder_s(self, audio_s: float) -> float:
        return 0.001 * audio_s

    def iteration_s(self, prefill: tuple[tuple[int, int], ...], decode_seqs: int, decode_kv_tokens: float) -> float:
        return (STEP_S + PREFILL_S_PER_TOKEN * sum(new for new, _cached in prefill) + DECODE_S_PER_SEQ * decode_seqs
                + KV_S_PER_TOKEN * decode_kv_tokens)

    def prefill_s(self, tokens: int, cached_tokens: int = 0) -> float:
        return self.iteration_s(((tokens, cached_tokens),), 0, 0)

    def decode_step_s(self, batch_size: int, kv_tokens: float) -> float:
        return self.iteration_s((), batch_size, kv_tokens)


class Log:
    """Engine hooks that remember when each request got its first and last token."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.done: dict[int, float] = {}
        self.rejected_ids: list[int] = []

    def first_token(self, seq: Sequence, now_s: float) -> None:
        self.first[seq.journey.request.id] = now_s

    def finished(self, seq: Sequence, now_s: float) -> None:
        seq.replica.outstanding -= 1
        self.done[seq.journey.request.id] = now_s

    def prefilled(self, seq: Sequence, now_s: float) -> None:
        raise AssertionError("no handoff expected")

    def rejected(self, seq: Sequence, now_s: float) -> None:
        seq.replica.outstanding -= 1
        self.rejected_ids.append(seq.journey.request.id)


def run_replica(requests: list[tuple[float, int, int]], settings: BatchSettings | None = None,
                perf: AffinePerf | None = None) -> tuple[Log, Replica]:
    """Feed (arrival_s, prompt_tokens, output_tokens) requests to one replica; run to the end."""
    env = simpy.Environment()
    log = Log()
    perf = perf or AffinePerf()
    replica = Replica(env, perf, settings or BatchSettings(), cpu_workers=2, hooks=log)

    def feed():
        for i, (arrival_s, prompt, output) in enumerate(requests):
            if arrival_s > env.now:
                yield env.timeout(arrival_s - env.now)
            request = Request(id=i, arrival_s=arrival_s, request_class="x", text_tokens=prompt, output_tokens=output)
            journey = Journey(request, 0, (None,), None, -1)
            seq = Sequence(journey, prompt, output, preprocess_s=perf.preprocess_s(0, 0.0, prompt))
            replica.submit(seq, env.now)

    env.process(feed())
    env.run()
    return log, replica
