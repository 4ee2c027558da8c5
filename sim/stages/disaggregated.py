"""Disaggregated model stages: encoder pool apart from the LLM (E/PD), or prefill apart from decode (P/D).

E/PD (FACTS.md 5f: EPD, ModServe): requests with images/audio are
preprocessed and encoded on an encoder pool, in batches of up to
``encoder_max_batch``; the embeddings cross the link to an LLM replica that
never runs the encoder. P/D: prefill replicas run the prompt and sample the
first token, then the KV cache (prompt tokens x KV bytes/token) crosses the
link to a decode replica. Transfers on one sender's link go one at a time.
Seconds, bytes, USD.
"""

from collections import deque
from collections.abc import Callable
from typing import cast

import simpy

from profiles.perf.base import PerfModel
from sim.deployment import EncodeDisaggregation, ModelStage, PrefillDecodeDisaggregation
from sim.fifo import FifoServers
from sim.journey import Journey
from sim.replica import Replica
from sim.router import make_balancer
from sim.sequence import Sequence
from sim.stages.model import ModelPool, batch_settings, replica_metrics, vram_per_replica
from sim.timeseries import TimeBins
from sim.workload import WorkCounter

BF16_BYTES = 2  # embeddings cross the link in BF16


class EncoderServer:
    """One encoder-pool GPU: CPU workers, then batched encoder passes, then the outgoing link."""

    def __init__(self, env: simpy.Environment, perf: PerfModel, cpu_workers: int, max_batch: int,
                 link_bytes_s: float, embedding_bytes_per_token: int, deliver: Callable[[Sequence, float], None],
                 busy_bins: TimeBins | None) -> None:
        self.env = env
        self.perf = perf
        self.cpu = FifoServers(cpu_workers)
        self.link = FifoServers(1)
        self.max_batch = max_batch
        self.link_bytes_s = link_bytes_s
        self.embedding_bytes_per_token = embedding_bytes_per_token
        self.deliver = deliver  # deliver(seq, now_s): hand the encoded request to the LLM pool
        self.busy_bins = busy_bins
        self.released: Callable[[EncoderServer], None] = _nobody  # the pool's balancer hears of finished work
        self.queue: deque[Sequence] = deque()
        self.outstanding = 0
        self.busy = False
        self.busy_s = 0.0
        self.batches = 0
        self.batched = 0

    def submit(self, seq: Sequence, now_s: float) -> None:
        """Preprocess on the CPU workers, then queue for the encoder."""
        self.outstanding += 1
        start_s, finish_s = self.cpu.admit(now_s, seq.preprocess_s)
        seq.journey.queue_s += start_s - now_s
        seq.preprocess_s = 0.0  # done here; the LLM replica does not preprocess again
        event = self.env.timeout(finish_s - now_s, seq)
        event.callbacks.append(self._preprocessed)

    def _preprocessed(self, event: simpy.Event) -> None:
        seq = cast(Sequence, event.value)
        seq.enqueued_s = self.env.now
        self.queue.append(seq)
        if not self.busy:
            self._start()

    def _start(self) -> None:
        now_s = self.env.now
        batch = [self.queue.popleft() for _ in range(min(self.max_batch, len(self.queue)))]
        if not batch:
            self.busy = False
            return
        self.busy = True
        patches = sum(s.encoder_patches for s in batch)
        sequences = sum(s.encoder_sequences for s in batch)
        audio_s = sum(s.audio_s for s in batch)
        duration_s = self.perf.encoder_s(patches, sequences) + self.perf.audio_encoder_s(audio_s)
        for seq in batch:
            seq.journey.queue_s += now_s - seq.enqueued_s
        self.busy_s += duration_s
        self.batches += 1
        self.batched += len(batch)
        if self.busy_bins is not None:
            self.busy_bins.add_interval(now_s, now_s + duration_s)
        event = self.env.timeout(duration_s, batch)
        event.callbacks.append(self._encoded)

    def _encoded(self, event: simpy.Event) -> None:
        now_s = self.env.now
        for seq in cast(list[Sequence], event.value):
            seq.encoder_pending = False
            self.outstanding -= 1
            self.released(self)
            nbytes = seq.embedding_tokens * self.embedding_bytes_per_token
            _, finish_s = self.link.admit(now_s, nbytes / self.link_bytes_s)
            sent = self.env.timeout(finish_s - now_s, seq)
            sent.callbacks.append(self._sent)
        self._start()

    def _sent(self, event: simpy.Event) -> None:
        self.deliver(cast(Sequence, event.value), self.env.now)


def _nobody(server: EncoderServer) -> None:
    """No balancer to tell (an encoder server outside a pool)."""


class EncodeSplitPool(ModelPool):
    """E/PD: an encoder pool in front of LLM replicas that skip the encoder."""

    def __init__(self, spec: ModelStage, perf: PerfModel, encoder_perf: PerfModel, work: WorkCounter,
                 env: simpy.Environment, rented: list[tuple[str, int, float]], link_gbs: float,
                 busy_bins: TimeBins | None = None) -> None:
        super().__init__(spec, perf, work, env, rented, busy_bins,
                         settings=batch_settings(spec, work.model, encoder_inline=False))
        split = spec.disaggregation
        assert isinstance(split, EncodeDisaggregation)  # build_model picks the pool by mode
        hidden = work.model.decoder.hidden
        self.encoders = [EncoderServer(env, encoder_perf, spec.cpu_workers, spec.encoder_max_batch,
                                       link_gbs * 1e9, hidden * BF16_BYTES, self._to_llm, busy_bins)
                         for _ in range(split.encoder_replicas)]
        # Encoders hold no KV cache: a prefix-aware stage balances them by load.
        self.encoder_balancer = make_balancer("least_outstanding" if spec.load_balancer == "prefix_aware"
                                              else spec.load_balancer)
        for encoder in self.encoders:
            encoder.released = self.encoder_balancer.released

    def submit(self, journey: Journey, now_s: float) -> None:
        """Requests with images/audio go through the encoder pool; text-only ones straight to the LLM."""
        work = self.work.work(journey)
        seq = self.sequence(journey, now_s)
        if seq is None:  # longer than max_seq_len: rejected
            return
        if seq.encoder_pending:
            seq.embedding_tokens = work.embedding_tokens
            self.encoder_balancer.pick(self.encoders, seq).submit(seq, now_s)
        else:
            self.balancer.pick(self.replicas, seq).submit(seq, now_s)

    def _to_llm(self, seq: Sequence, now_s: float) -> None:
        self.balancer.pick(self.replicas, seq).receive(seq, now_s)

    def stage_metrics(self, span_s: float) -> dict:
        """LLM pool metrics plus the encoder pool's utilisation and batch size."""
        metrics = super().stage_metrics(span_s)
        batches = sum(e.batches for e in self.encoders)
        metrics["encoder_replicas"] = len(self.encoders)
        metrics["encoder_utilization"] = sum(e.busy_s for e in self.encoders) / (len(self.encoders) * span_s)
        metrics["encoder_mean_batch"] = sum(e.batched for e in self.encoders) / batches if batches else 0.0
        return metrics


class PrefillDecodePool(ModelPool):
    """P/D: prefill replicas hand the KV cache over the link to decode replicas."""

    def __init__(self, spec: ModelStage, prefill_perf: PerfModel, decode_perf: PerfModel, work: WorkCounter,
                 env: simpy.Environment, rented: list[tuple[str, int, float]], link_gbs: float,
                 busy_bins: TimeBins | None = None) -> None:
        split = spec.disaggregation
        assert isinstance(split, PrefillDecodeDisaggregation)  # build_model picks the pool by mode
        super().__init__(spec, prefill_perf, work, env, rented, busy_bins,
                         settings=batch_settings(spec, work.model, handoff_after_prefill=True),
                         replica_count=split.prefill_replicas)
        self.env = env
        self.decoders = [Replica(env, decode_perf, batch_settings(spec, work.model), spec.cpu_workers, self, busy_bins)
                         for _ in range(split.decode_replicas)]
        self.decode_balancer = make_balancer(spec.load_balancer, spec.block_tokens)
        self.links = {id(r): FifoServers(1) for r in self.replicas}
        self.link_bytes_s = link_gbs * 1e9
        self.kv_bytes_per_token = prefill_perf.memory.kv_bytes_per_token
        self.decode_perf = decode_perf
        self.kv_transferred_bytes = 0.0

    def prefilled(self, seq: Sequence, now_s: float) -> None:
        """Engine hook: send the prompt's KV cache to a decode replica."""
        sender = seq.replica
        self.release(sender)
        seq.admitted = False  # waiting for room on the decode pool is queueing too
        nbytes = seq.prompt_tokens * self.kv_bytes_per_token
        self.kv_transferred_bytes += nbytes
        _, finish_s = self.links[id(sender)].admit(now_s, nbytes / self.link_bytes_s)
        event = self.env.timeout(finish_s - now_s, seq)
        event.callbacks.append(self._arrived)

    def _arrived(self, event: simpy.Event) -> None:
        seq = cast(Sequence, event.value)
        self.decode_balancer.pick(self.decoders, seq).receive(seq, self.env.now)

    def release(self, replica: Replica) -> None:
        """A prefill or decode replica no longer holds a request (each balancer tracks its own pool)."""
        super().release(replica)
        self.decode_balancer.released(replica)

    def stage_metrics(self, span_s: float) -> dict:
        """Metrics of each pool under ``prefill``/``decode`` and the KV bytes moved."""
        tp = self.spec.tensor_parallel
        prefill = replica_metrics(self.replicas, tp, span_s)
        decode = replica_metrics(self.decoders, tp, span_s)
        (prefill_gpu, prefill_gpus, _), (decode_gpu, decode_gpus, _) = self.rented  # sim.build.stage_gpu_pools
        # Each pool's own GPU, memory and step-time source: the decode pool may run on another GPU type.
        prefill.update(gpu=prefill_gpu, gpus=prefill_gpus, gpus_per_replica=tp, provenance=self.perf.provenance,
                       memory_source=self.perf.memory.source, **vram_per_replica(self.perf.memory, tp))
        decode.update(gpu=decode_gpu, gpus=decode_gpus, gpus_per_replica=tp,
                      provenance=self.decode_perf.provenance, memory_source=self.decode_perf.memory.source,
                      **vram_per_replica(self.decode_perf.memory, tp))
        busy = sum(r.busy_s for r in self.replicas + self.decoders)
        return {
            "gpu_utilization": busy / ((len(self.replicas) + len(self.decoders)) * span_s) if span_s > 0 else 0.0,
            "preemptions": prefill["preemptions"] + decode["preemptions"],
            "kv_transferred_gb": self.kv_transferred_bytes / 1e9,
            "prefill": prefill,
            "decode": decode,
            "engine": self.spec.engine,
            "provenance": self.perf.provenance,
        }
