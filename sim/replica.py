"""A replica: one model instance (``tensor_parallel`` GPUs) with its CPU workers and LLM engine loop.

Requests first wait for one of ``cpu_workers`` preprocessing workers (decode,
resize, tile, tokenise; FACTS.md section 1), then enter the continuous
batcher. The engine loop schedules one SimPy event per iteration, or per
*jump* of identical decode iterations; an arrival during a jump cuts it at
the next iteration boundary, where the new request can join the batch.
Seconds throughout.
"""

import simpy

from profiles.perf.base import PerfModel
from sim.batcher import BatchSettings, ContinuousBatcher, EngineHooks, Iteration
from sim.fifo import FifoServers
from sim.kvcache import KvCache
from sim.sequence import Sequence
from sim.timeseries import TimeBins


class Replica:
    """CPU preprocessing pool + continuous-batching engine of one model instance."""

    def __init__(self, env: simpy.Environment, perf: PerfModel, settings: BatchSettings, cpu_workers: int,
                 hooks: EngineHooks, busy_bins: TimeBins | None = None) -> None:
        self.env = env
        self.kv = KvCache(perf.memory.kv_capacity_tokens)
        self.batcher = ContinuousBatcher(perf, self.kv, settings, hooks)
        self.cpu = FifoServers(cpu_workers)
        self.busy_bins = busy_bins
        self.outstanding = 0  # requests assigned and not yet gone (load balancers read it)
        self.busy_s = 0.0
        self.steps = 0
        self.batch_seqs = 0  # sum over steps of sequences in the step
        self.batch_tokens = 0  # sum over steps of tokens computed in the step
        self._current: Iteration | None = None
        self._event: simpy.Event | None = None

    # ------------------------------------------------------------ entry points

    def submit(self, seq: Sequence, now_s: float) -> None:
        """A request assigned to this replica: CPU preprocessing first, then the engine queue."""
        self.outstanding += 1
        seq.replica = self
        if seq.preprocess_s <= 0:
            self.enqueue(seq, now_s)
            return
        start_s, finish_s = self.cpu.admit(now_s, seq.preprocess_s)
        seq.journey.queue_s += start_s - now_s
        event = self.env.timeout(finish_s - now_s, seq)
        event.callbacks.append(self._preprocessed)

    def receive(self, seq: Sequence, now_s: float) -> None:
        """A sequence handed over already preprocessed (and perhaps prefilled) by another pool."""
        self.outstanding += 1
        seq.replica = self
        self.enqueue(seq, now_s)

    def enqueue(self, seq: Sequence, now_s: float) -> None:
        """Put ``seq`` in the engine's waiting queue; wake or cut short the engine loop."""
        seq.enqueued_s = now_s
        self.batcher.waiting.append(seq)
        current = self._current
        if current is None:
            self._start(now_s)
        elif current.steps > 1:
            self._shorten(current, now_s)

    # ------------------------------------------------------------ engine loop

    def _preprocessed(self, event: simpy.Event) -> None:
        self.enqueue(event.value, self.env.now)

    def _start(self, now_s: float) -> None:
        self.kv.observe(now_s)
        iteration = self.batcher.plan(now_s)
        self._current = iteration
        if iteration is None:
            return
        event = self.env.timeout(iteration.duration_s)
        event.callbacks.append(self._ended)
        self._event = event

    def _shorten(self, current: Iteration, now_s: float) -> None:
        """End a decode jump at the first iteration boundary after ``now_s``."""
        step_s = current.duration_s / current.steps
        steps = int((now_s - current.start_s) / step_s) + 1
        if steps >= current.steps:
            return
        current.steps = steps
        current.duration_s = steps * step_s
        event = self.env.timeout(max(0.0, current.start_s + current.duration_s - now_s))
        event.callbacks.append(self._ended)
        self._event = event

    def _ended(self, event: simpy.Event) -> None:
        if event is not self._event:  # a jump that was cut short
            return
        now_s = self.env.now
        iteration = self._current
        self._account(iteration, now_s)
        self.kv.observe(now_s)
        self.batcher.apply(iteration, now_s)
        self._start(now_s)

    def _account(self, iteration: Iteration, now_s: float) -> None:
        """GPU-busy time, batch sizes and tokens of a finished iteration."""
        self.busy_s += iteration.duration_s
        steps = iteration.steps
        self.steps += steps
        prefill_tokens = sum(chunk for _, chunk in iteration.prefill)
        self.batch_seqs += iteration.decode_seqs * steps + len(iteration.prefill)
        self.batch_tokens += iteration.decode_seqs * steps + prefill_tokens
        if self.busy_bins is not None:
            self.busy_bins.add_interval(iteration.start_s, now_s)

    @property
    def idle(self) -> bool:
        """Whether the engine has nothing running or queued."""
        return self._current is None
