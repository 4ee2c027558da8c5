"""A replica: one model instance (``tensor_parallel`` GPUs) with its CPU workers and LLM engine loop.

Requests first wait for one of ``cpu_workers`` preprocessing workers (decode,
resize, tile, tokenise; FACTS.md section 1), then enter the continuous
batcher. The engine loop schedules one SimPy event per iteration, or per
*jump* of identical decode iterations; a jump ends at the first iteration
boundary after the next request is ready, where it can join the batch.
Seconds throughout.
"""

import heapq
import math

import simpy

from profiles.errors import ConfigurationError
from profiles.perf.base import PerfModel
from sim.batcher import BatchSettings, ContinuousBatcher, EngineHooks, Iteration
from sim.fifo import FifoServers
from sim.kvcache import KvCache
from sim.sequence import Sequence
from sim.ticks import Tick, call_later
from sim.timeseries import TimeBins

# The engine's fastest rates are taken this many times faster than the performance model says, so that
# a request counted as beyond the run's end could not have started in time by any margin of the model.
FASTEST_WORK_MARGIN = 2.0
PREFILL_CHUNKS = (256, 1024, 4096, 16384)  # chunk sizes tried for the fastest prefill rate, tokens
LONG_QUEUE = 1024  # requests queued or preprocessing at a replica before the check runs at all


def fastest_work_s(perf: PerfModel, settings: BatchSettings) -> tuple[float, float]:
    """Lower bounds of engine seconds per prompt token prefilled and per sequence decode step.

    A decode step's time per sequence is lowest in the fullest batch over an
    empty cache; a prefill's time per token at the token budget or a smaller
    chunk, whichever the model makes cheaper. Both divided by ``FASTEST_WORK_MARGIN``.
    """
    batch = settings.max_batch_size
    try:
        step_s = perf.decode_step_s(batch, 0) / batch
    except ConfigurationError:  # a classifier never decodes: its prefill bounds it
        step_s = 0.0
    chunks = {min(tokens, settings.max_batched_tokens) for tokens in PREFILL_CHUNKS}
    chunks.add(settings.max_batched_tokens)
    token_s = min(perf.prefill_s(tokens) / tokens for tokens in chunks)
    return token_s / FASTEST_WORK_MARGIN, step_s / FASTEST_WORK_MARGIN


class Replica:
    """CPU preprocessing pool + continuous-batching engine of one model instance."""

    def __init__(self, env: simpy.Environment, perf: PerfModel, settings: BatchSettings, cpu_workers: int,
                 hooks: EngineHooks, busy_bins: TimeBins | None = None) -> None:
        self.env = env
        self.kv = KvCache(perf.memory.kv_capacity_tokens, settings.kv_block_tokens, settings.prefix_caching)
        self.batcher = ContinuousBatcher(perf, self.kv, settings, hooks)
        self.cpu = FifoServers(cpu_workers)
        self.busy_bins = busy_bins
        self.outstanding = 0  # requests assigned and not yet gone (load balancers read it)
        self.busy_s = 0.0
        self._current: Iteration | None = None
        self._event: Tick | None = None
        self._pending: list = []  # (ready_s, tiebreak, seq): preprocessing, not yet in the queue
        self._tiebreak = 0
        self._wake_s = math.inf
        self._wake_event: Tick | None = None
        # Overload accounting (module docstring): the run's end, and the work assigned so far.
        self.serve_until_s = math.inf  # set by sim.api.prepare
        self.beyond_end = 0  # requests counted, not queued: they could not start before serve_until_s
        self._perf = perf
        self._prompt_token_s = self._step_s = -1.0  # fastest_work_s, computed when a queue first grows long
        self._prompt_tokens_ahead = 0
        self._steps_ahead = 0
        self._longest_prompt = 0
        self._most_steps = 0
        self._counted_from_s = math.inf  # ready time of the first request counted: all ready later are too
        self._phantoms: list[float] = []  # heap of their ready times: the engine still ends a jump at each

    # ------------------------------------------------------------ entry points

    def submit(self, seq: Sequence, now_s: float) -> None:
        """A request assigned to this replica: CPU preprocessing first, then the engine queue."""
        self.outstanding += 1
        seq.replica = self
        ready_s = now_s
        if self.batcher.encoder_cache is not None and (seq.media or seq.own_media_tokens):
            self.batcher.encoder_cache.reuse(seq)  # a conversation's re-sent images: done already?
        if seq.preprocess_s > 0:
            start_s, ready_s = self.cpu.admit(now_s, seq.preprocess_s)
            seq.journey.queue_s += start_s - now_s
        if self._starts_too_late(seq, ready_s):
            self._arrive_counted(ready_s, now_s)
        else:
            self._arrive(seq, ready_s, now_s)

    def receive(self, seq: Sequence, now_s: float) -> None:
        """A sequence handed over already preprocessed (and perhaps prefilled) by another pool."""
        self.outstanding += 1
        seq.replica = self
        if self._starts_too_late(seq, now_s):
            self._arrive_counted(now_s, now_s)
        else:
            self._arrive(seq, now_s, now_s)

    def _starts_too_late(self, seq: Sequence, ready_s: float) -> bool:
        """Add ``seq``'s work to the work ahead; True (and counted in ``beyond_end``) when the work ahead of
        it cannot be done before ``serve_until_s``: it stays outstanding, as it would have, but is not kept."""
        settings = self.batcher.settings
        # Requests that arrived earlier but are not ahead of it: running in the batch, or still in
        # preprocessing when it is ready (the CPU pool starts requests in order, finishes them out of order).
        others = settings.max_batch_size - 1 + (self.cpu.servers or 1) - 1
        prompts_ahead = self._prompt_tokens_ahead - others * self._longest_prompt
        steps_ahead = self._steps_ahead - others * self._most_steps
        if self.batcher.policy.never_fits(seq, self.kv.capacity_tokens):
            prompt = steps = 0  # rejected when it reaches the head: no engine work
        else:
            prompt = seq.prefill_remaining
            steps = 1 if settings.handoff_after_prefill else max(1, seq.output_tokens - 1)
        self._prompt_tokens_ahead += prompt
        self._steps_ahead += steps
        self._longest_prompt = max(self._longest_prompt, prompt)
        self._most_steps = max(self._most_steps, steps)
        if ready_s < self._counted_from_s:  # else behind a request that cannot start in time: nor can it
            if ready_s <= self.serve_until_s and len(self._pending) + len(self.batcher.waiting) < LONG_QUEUE:
                return False  # a short queue costs little memory: keep it
            if self._step_s < 0:
                self._prompt_token_s, self._step_s = fastest_work_s(self._perf, settings)
            earliest_s = max(prompts_ahead * self._prompt_token_s, steps_ahead * self._step_s, ready_s)
            if earliest_s <= self.serve_until_s:
                return False
            self._counted_from_s = ready_s
        self.beyond_end += 1
        return True

    def _arrive_counted(self, ready_s: float, now_s: float) -> None:
        """A counted request becomes ready at ``ready_s``: the engine ends a jump there as it would for it."""
        if ready_s > self.serve_until_s:
            return  # ready after the end: no jump left to end
        heapq.heappush(self._phantoms, ready_s)
        current = self._current
        if current is None:
            self._wake_at(ready_s, now_s)
        elif current.steps > 1:
            self._shorten(current, ready_s, now_s)

    def _arrive(self, seq: Sequence, ready_s: float, now_s: float) -> None:
        """``seq`` can join the engine queue at ``ready_s``: wake the engine or cut its jump then.

        Requests still in preprocessing wait in a heap by ready time; the engine
        loop moves them into its queue at its next iteration boundary, so a
        busy engine needs no event per preprocessed request.
        """
        seq.enqueued_s = ready_s
        self._tiebreak += 1
        heapq.heappush(self._pending, (ready_s, self._tiebreak, seq))
        current = self._current
        if current is None:
            self._wake_at(ready_s, now_s)
        elif current.steps > 1:
            self._shorten(current, ready_s, now_s)

    # ------------------------------------------------------------ engine loop

    def _wake_at(self, t_s: float, now_s: float) -> None:
        """Start the idle engine at ``t_s`` (unless an earlier wake-up is already due)."""
        if t_s >= self._wake_s:
            return
        self._wake_s = t_s
        self._wake_event = call_later(self.env, t_s - now_s, self._woken)

    def _woken(self, event: Tick) -> None:
        if event is not self._wake_event:
            return
        self._wake_s = math.inf
        if self._current is None:
            self.kv.observe(self.env.now)
            self._start(self.env.now)

    def _release_ready(self, now_s: float) -> None:
        """Move preprocessed requests into the engine's waiting queue, in ready order (counted ones vanish)."""
        pending, waiting, phantoms = self._pending, self.batcher.waiting, self._phantoms
        while pending and pending[0][0] <= now_s:
            waiting.append(heapq.heappop(pending)[2])
        while phantoms and phantoms[0] <= now_s:
            heapq.heappop(phantoms)

    def _next_ready_s(self) -> float:
        """When the next request still in preprocessing (stored or counted) is ready; inf when none is."""
        pending, phantoms = self._pending, self._phantoms
        next_s = pending[0][0] if pending else math.inf
        return min(next_s, phantoms[0]) if phantoms else next_s

    def _start(self, now_s: float) -> None:
        next_ready_s = self._next_ready_s()
        if next_ready_s <= now_s:
            self._release_ready(now_s)
            next_ready_s = self._next_ready_s()
        iteration = self.batcher.plan(now_s)
        self._current = iteration
        if iteration is None:
            if next_ready_s < math.inf:
                self._wake_at(next_ready_s, now_s)
            return
        if next_ready_s < math.inf and iteration.steps > 1:
            self._limit_jump(iteration, next_ready_s)
        self._event = call_later(self.env, iteration.duration_s, self._ended)

    def _limit_jump(self, current: Iteration, ready_s: float) -> bool:
        """End a decode jump at the first iteration boundary at or after ``ready_s``; True if shortened."""
        jump_s, start_s = self.batcher.jump_s, current.start_s
        steps = max(1, math.ceil((ready_s - start_s) * current.steps / current.duration_s))
        if steps >= current.steps:
            return False
        # The mean-step guess can be off by a step or two: steps grow slower or faster as KV grows.
        while steps > 1 and start_s + jump_s(steps - 1) >= ready_s:
            steps -= 1
        duration_s = jump_s(steps)
        while start_s + duration_s < ready_s and steps < current.steps:
            steps += 1
            duration_s = jump_s(steps)
        if steps >= current.steps:
            return False
        current.steps = steps
        current.duration_s = duration_s
        return True

    def _shorten(self, current: Iteration, ready_s: float, now_s: float) -> None:
        """Cut the running decode jump so a request ready at ``ready_s`` can join the batch."""
        if not self._limit_jump(current, ready_s):
            return
        # The jump's original end event is now stale.
        self._event = call_later(self.env, max(0.0, current.start_s + current.duration_s - now_s), self._ended)

    def _ended(self, event: Tick) -> None:
        if event is not self._event:  # a jump that was cut short
            return
        now_s = self.env.now
        iteration = self._current
        assert iteration is not None  # an engine event always has its iteration
        # GPU-busy time, in total and per time bin (inlined: once per engine event).
        self.busy_s += iteration.duration_s
        if self.busy_bins is not None:
            self.busy_bins.add_interval(iteration.start_s, now_s)
        self.kv.observe(now_s)
        self.batcher.apply(iteration, now_s)
        self._start(now_s)

    def let_go(self) -> None:
        """Drop the requests still waiting, once the run is measured: the run's objects refer to each other,
        so only a full garbage collection (seconds over a million requests) would free them otherwise."""
        self._pending.clear()
        self._phantoms.clear()
        self.batcher.waiting.clear()

    @property
    def steps(self) -> int:
        """Engine steps run so far."""
        return self.batcher.iterations

    @property
    def batch_seqs(self) -> int:
        """Sum over steps of the sequences in the step."""
        return self.batcher.batch_seqs

    @property
    def batch_tokens(self) -> int:
        """Sum over steps of the tokens computed in the step."""
        return self.batcher.batch_tokens

    @property
    def queued(self) -> int:
        """Requests kept waiting: in preprocessing or in the engine's queue."""
        return len(self._pending) + len(self.batcher.waiting)

    @property
    def idle(self) -> bool:
        """Whether the engine has nothing running, queued or in preprocessing."""
        return self._current is None and not self._pending


def engine_replicas(stages: list) -> list[Replica]:
    """Every LLM engine replica of ``stages`` (a model pool's ``replicas``, a P/D split's ``decoders`` too)."""
    return [replica for stage in stages for pool in ("replicas", "decoders")
            for replica in getattr(stage, pool, ()) if isinstance(replica, Replica)]
