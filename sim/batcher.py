"""Continuous batching with chunked prefill, KV admission and recompute or swap preemption.

Each engine iteration runs every decoding sequence for one token, then
spends the rest of a ``max_batched_tokens`` budget on prefill chunks:
first the partially prefilled sequences, then new ones from the waiting
queue while the batch has room (``max_batch_size``) and the engine's policy
(``sim.policies``: vLLM, TensorRT-LLM, SGLang) lets them in against the KV
cache; an engine that does not mix prefill with decode runs the prefill
chunks alone and the decodes wait. When decode tokens no longer fit the
cache the policy's victim is preempted: its KV is dropped and it goes back
to the head of the queue to be prefilled again (prompt + generated tokens),
and nothing new is admitted in that step. A stage that swaps copies the
victim's computed KV to host memory instead (while it fits there) and back
when it is readmitted: it decodes on, or prefills the rest of its prompt.

With prefix caching (``sim.kvcache``), a sequence admitted for the first
time (or again after preemption) starts its prefill after the resident
blocks of its prompt's part chain; encoder passes of prompt parts inside the
reused blocks are skipped (vLLM schedules the encoder only for inputs whose
tokens it computes). The full blocks of each prefill chunk become resident
when its step ends (vLLM caches them as it schedules the chunk), so a
request admitted later reuses them while the owner is still prefilling; a
finished conversation turn leaves its generated blocks for the next.

When an iteration would be decode-only, the batch cannot change until the
first sequence finishes or the cache fills, so ``plan`` returns one *jump*
of ``steps`` decode iterations timed as one; the replica shortens it if a
request arrives meanwhile. Tokens and seconds.
"""

import heapq
from collections import deque
from typing import Protocol

from profiles.perf.base import PerfModel, PrefillChunk
from sim.encodercache import EncoderCache
from sim.kvcache import KvCache
from sim.policies import EnginePolicy, host_step_s, make_policy
from sim.sequence import NO_PINS, Sequence

NO_PREFILL: tuple = ()  # the prefill chunks of every decode jump, shared (never mutated)


class EngineHooks(Protocol):
    """What the batcher reports to its replica."""

    def first_token(self, seq: Sequence, now_s: float) -> None:
        """``seq`` sampled its first token at ``now_s``."""

    def finished(self, seq: Sequence, now_s: float) -> None:
        """``seq`` produced its last token at ``now_s``."""

    def prefilled(self, seq: Sequence, now_s: float) -> None:
        """``seq`` finished prefill on a prefill-only replica and leaves it (disaggregation)."""

    def rejected(self, seq: Sequence, now_s: float) -> None:
        """``seq`` can never fit this replica's KV cache."""


class Iteration:
    """One planned engine step (or ``steps`` identical decode steps) and its duration."""

    __slots__ = ("decode_seqs", "duration_s", "prefill", "prefill_tokens", "start_s", "steps")

    def __init__(self, prefill: list | tuple, decode_seqs: int, steps: int, duration_s: float, start_s: float,
                 prefill_tokens: int = 0) -> None:
        self.prefill = prefill  # [(sequence, chunk_tokens)]
        self.prefill_tokens = prefill_tokens
        self.decode_seqs = decode_seqs
        self.steps = steps
        self.duration_s = duration_s
        self.start_s = start_s


class BatchSettings:
    """Engine limits (from the stage spec) and the replica's role."""

    __slots__ = ("capacity_scheduler", "chunked_prefill", "cuda_graph_padding", "decode_jumps", "encoder_inline",
                 "encoder_cache_tokens", "encoder_max_batch", "engine", "handoff_after_prefill", "host_kv_tokens",
                 "host_link_tokens_per_s", "host_prefix_cache", "kv_block_tokens", "max_batch_size",
                 "max_batched_tokens", "mixed_prefill", "prefix_caching", "swap_tokens_per_s", "batch_wait",
                 "async_scheduling", "host_s_per_sequence")

    def __init__(self, max_batch_size: int = 256, max_batched_tokens: int = 8192, chunked_prefill: bool = True,
                 encoder_max_batch: int = 16, encoder_inline: bool = True,
                 handoff_after_prefill: bool = False, decode_jumps: bool = True, engine: str = "vllm",
                 capacity_scheduler: str = "guaranteed_no_evict", mixed_prefill: bool = False,
                 cuda_graph_padding: bool = True, prefix_caching: bool = False, kv_block_tokens: int = 16,
                 encoder_cache_tokens: int = 0, swap_tokens_per_s: float = 0.0, host_kv_tokens: int = 0,
                 host_prefix_cache: bool = False, host_link_tokens_per_s: float = 0.0,
                 batch_wait: tuple[int, int] = (0, 0), async_scheduling: bool = False,
                 host_s_per_sequence: float = 0.0) -> None:
        self.max_batch_size = max_batch_size
        self.max_batched_tokens = max_batched_tokens
        self.chunked_prefill = chunked_prefill
        self.encoder_max_batch = encoder_max_batch
        self.encoder_inline = encoder_inline  # vision/audio encoder runs inside the LLM step
        self.handoff_after_prefill = handoff_after_prefill  # prefill pool of a P/D split
        self.decode_jumps = decode_jumps  # False: one event per decode step (the reference for tests)
        self.engine = engine  # vllm, sglang or trtllm: picks the batcher's policy (sim.policies)
        self.capacity_scheduler = capacity_scheduler  # TRT-LLM: guaranteed_no_evict or max_utilization
        self.mixed_prefill = mixed_prefill  # SGLang enable_mixed_chunk (vLLM and TRT-LLM always mix)
        self.cuda_graph_padding = cuda_graph_padding  # decode batches run padded to the engine's graph sizes
        self.prefix_caching = prefix_caching  # reuse resident KV blocks of prompt prefixes (sim.kvcache)
        self.kv_block_tokens = kv_block_tokens  # the unit of reuse
        self.encoder_cache_tokens = encoder_cache_tokens  # encoder outputs kept for re-sent inputs (0: none)
        # Swap preemption: KV tokens per second over the host link (0: recompute), host memory for them.
        self.swap_tokens_per_s = swap_tokens_per_s
        self.host_kv_tokens = host_kv_tokens
        # Host memory as a second prefix-cache tier (blocks evicted from the GPU), read over the host link.
        self.host_prefix_cache = host_prefix_cache
        self.host_link_tokens_per_s = host_link_tokens_per_s or swap_tokens_per_s
        self.batch_wait = batch_wait  # TRT-LLM batch waiting: (timeout steps, tokens) (sim.policies.BatchWait)
        # Step n+1 is scheduled when step n starts: a request queued during a step joins the step after next.
        self.async_scheduling = async_scheduling
        # Host time per sequence in a step (sim.policies.ENGINE_HOST_S_PER_SEQUENCE; 0: none modelled).
        self.host_s_per_sequence = host_s_per_sequence


class ContinuousBatcher:
    """Waiting queue, running batch and KV cache of one replica; plans and applies iterations."""

    def __init__(self, perf: PerfModel, kv: KvCache, settings: BatchSettings, hooks: EngineHooks) -> None:
        self.perf = perf
        self.kv = kv
        self.settings = settings
        self.hooks = hooks
        self.policy: EnginePolicy = make_policy(settings.engine, settings.capacity_scheduler, settings.mixed_prefill,
                                                settings.max_batch_size, settings.batch_wait)
        self._mixed = self.policy.mixed_prefill
        self._decode_batch = (self.policy.decode_batches(settings.max_batch_size) if settings.cuda_graph_padding
                              else list(range(settings.max_batch_size + 1)))  # CUDA-graph padding
        self.waiting: deque[Sequence] = deque()
        self.prefilling: list[Sequence] = []
        self.running: dict[Sequence, None] = {}  # admission order: the last is preempted first
        self._decode_heap: list = []  # (finish_iter, tiebreak, epoch, seq)
        self._tiebreak = 0
        self.n_decode = 0
        self.kv_decode_tokens = 0
        self.iterations = 0  # engine steps run
        # Decode steps run: the clock of every decoding sequence. A prefill-only step
        # (chunked_prefill off) advances ``iterations`` but generates no token.
        self.decode_steps = 0
        self.batch_seqs = 0  # sum over steps of sequences in the step
        self.batch_tokens = 0  # sum over steps of tokens computed in the step
        self.preemptions = 0
        self.rejected_kv = 0  # sequences the KV cache could never admit
        self.prefill_tokens = 0  # prompt tokens computed (prefix-cache hits excluded)
        self.queried_tokens = 0  # prompt tokens looked up in the prefix cache (each admission)
        self.hit_tokens = 0  # of those, tokens reused from resident blocks
        self.saved_s = 0.0  # prefill time the reused tokens would have cost (one-sequence steps)
        self.encoder_cache = EncoderCache(settings.encoder_cache_tokens) if settings.encoder_cache_tokens else None
        self.host_tokens = 0  # KV tokens of swapped-out sequences in host memory
        self.swap_s = 0.0  # host-link transfer time the next step carries
        self.swapped_out = 0  # preemptions that swapped instead of recomputing
        self.swapped_tokens = 0  # KV tokens moved over the host link, out and in
        self.host_hit_tokens = 0  # prompt tokens loaded from the host tier instead of prefilled
        self.host_load_s = 0.0  # host-link time of those loads
        if settings.host_prefix_cache and settings.host_kv_tokens and settings.host_link_tokens_per_s > 0:
            kv.host_capacity_tokens = kv.host_limit_tokens = settings.host_kv_tokens
        # Async scheduling: when the step planned next was scheduled (the start of the last step run),
        # and when that step ended; requests queued after the first wait one more step.
        self._scheduled_at_s = 0.0
        self._step_end_s = -1.0

    # ------------------------------------------------------------ planning

    def plan(self, now_s: float) -> Iteration | None:
        """The next iteration, or ``None`` when there is nothing to run; it carries any swap transfer owed."""
        it = self._plan(now_s)
        if self.swap_s and it is not None:  # copies to and from host memory hold the step up
            if it.steps > 1:
                it.steps = 1
                it.duration_s = self.jump_s(1)
            it.duration_s += self.swap_s
            self.swap_s = 0.0
        return it

    def _plan(self, now_s: float) -> Iteration | None:
        """The next step: decode room first, then prefill chunks, else a decode jump."""
        kv = self.kv
        evicted = False
        if self.n_decode and kv.capacity_tokens - kv.used_tokens < self.n_decode:
            self._make_room_for_decode()
            evicted = True
        if not self.waiting and not self.prefilling:  # the usual case between arrivals
            return self._decode_jump(now_s) if self.n_decode else None
        if self.policy.batch_wait is not None and self.n_decode:
            held = self.policy.batch_wait.held_steps(self._step_tokens(), self.iterations)
            if held:  # the prompts wait: decode alone, for at most the steps they are still held
                return self._decode_jump(now_s, held)
        if not self.settings.chunked_prefill and self.policy.prefill_only_unchunked:
            return self._prefill_only(now_s)
        decode_seqs = self.n_decode if self._mixed else 0
        budget = self.settings.max_batched_tokens - decode_seqs
        prefill: list = []
        budget = self._continue_prefills(prefill, budget)
        # Async scheduling: this step was scheduled when the last one started, before later arrivals.
        cutoff_s = self._scheduled_at_s if self._step_end_s == now_s and self.settings.async_scheduling else now_s
        if not evicted:  # vLLM admits nothing in a step that preempted
            self._admit(prefill, budget, now_s, cutoff_s)
        if not prefill:
            if self.n_decode:  # prompts queued during the last step join after one decode step
                return self._decode_jump(now_s, 1 if self.waiting and cutoff_s < now_s else 0)
            if not self.waiting or evicted:
                return None
            self._admit(prefill, budget, now_s, now_s)  # an engine with nothing to run takes them at once
            if not prefill:
                return None
        return self._timed(prefill, decode_seqs, now_s)

    def _step_tokens(self) -> int:
        """Tokens of a step that ran the decodes and the prompts next in line (within the token budget)."""
        budget = self.settings.max_batched_tokens
        tokens = self.n_decode
        for seq in self.prefilling:
            tokens += seq.prefill_remaining
        for seq in self.waiting:
            if tokens + seq.prefill_remaining > budget:
                break
            tokens += seq.prefill_remaining
        return min(tokens, budget)

    def _make_room_for_decode(self) -> None:
        """Preempt the newest sequences until every decoding sequence has a slot for its next token."""
        kv = self.kv
        while self.n_decode and kv.capacity_tokens - kv.used_tokens < self.n_decode:
            self._preempt(self.policy.victim(self))
        self.policy.evicted(self)

    def _continue_prefills(self, prefill: list, budget: int) -> int:
        """Give chunks to the sequences already being prefilled; return the budget left."""
        for seq in self.prefilling:
            if budget <= 0:
                break
            chunk = min(seq.prefill_remaining, budget)
            prefill.append((seq, chunk))
            budget -= chunk
        return budget

    def _reject_oversized(self, now_s: float) -> None:
        """Drop queue heads the engine could never admit into the whole KV cache (vLLM rejects them)."""
        waiting, policy, capacity = self.waiting, self.policy, self.kv.capacity_tokens
        while waiting and policy.never_fits(waiting[0], capacity):
            self.rejected_kv += 1
            self.hooks.rejected(waiting.popleft(), now_s)

    def _head_fits(self) -> bool:
        """Whether the head of the queue could be admitted now (batch size and the policy's KV test)."""
        if not self.waiting or len(self.running) >= self.settings.max_batch_size:
            return False
        return self.policy.fits(self.waiting[0], self)

    def _admit(self, prefill: list, budget: int, now_s: float, cutoff_s: float) -> None:
        """Move sequences queued by ``cutoff_s`` into the batch while budget, batch size and KV allow."""
        settings, waiting = self.settings, self.waiting
        encoders = 0
        capacity = self.kv.capacity_tokens
        while waiting and budget > 0 and len(self.running) < settings.max_batch_size:
            if self.policy.never_fits(waiting[0], capacity):
                self._reject_oversized(now_s)
                if not waiting:
                    break
            seq = waiting[0]
            if seq.enqueued_s > cutoff_s or not self.policy.fits(seq, self):
                break
            if not settings.chunked_prefill and prefill and seq.prompt_tokens - seq.prefilled > budget:
                break  # whole prompts only (TRT-LLM without context chunking): it runs in a later step
            needs_encoder = seq.encoder_pending and settings.encoder_inline
            if needs_encoder and encoders >= settings.encoder_max_batch:
                break
            waiting.popleft()
            self._take(seq, now_s)
            remaining = seq.prompt_tokens - seq.prefilled
            if remaining == 0:  # prefilled elsewhere (P/D split): decode from this step on
                self._join_decode(seq)
                continue
            encoders += needs_encoder
            chunk = min(remaining, budget) if settings.chunked_prefill else remaining
            self.prefilling.append(seq)
            prefill.append((seq, chunk))
            budget -= chunk

    def uncached_tokens(self, seq: Sequence) -> int:
        """KV tokens admitting ``seq`` takes from the free pool: its prompt less the cached blocks of it that
        running sequences already hold (``KvCache.shared_tokens``)."""
        if not seq.prefix or seq.prefilled or not self.kv.prefix_caching:
            return seq.prompt_tokens
        kv = self.kv
        return seq.prompt_tokens - kv.shared_tokens(seq.prefix, (seq.prompt_tokens - 1) // kv.block_tokens)

    def _take(self, seq: Sequence, now_s: float) -> None:
        """Admit ``seq``: reuse its cached prefix, reserve KV for the rest; its first admission ends its queueing."""
        if seq.prefilled == 0:
            self.queried_tokens += seq.prompt_tokens
            if seq.prefix and self.kv.prefix_caching:
                self._reuse_prefix(seq)
        self.kv.allocate(seq.prompt_tokens - seq.node_tokens)
        if seq.swapped:  # its computed KV comes back from host memory: it decodes on or prefills the rest
            seq.swapped = False
            self.host_tokens -= seq.prefilled
            self._swap(seq.prefilled)
            if self.kv.host_capacity_tokens:
                self.kv.limit_host(self.settings.host_kv_tokens - self.host_tokens)
        self.running[seq] = None
        self.policy.admitted(seq, self)
        if not seq.admitted:
            seq.admitted = True
            seq.journey.queue_s += now_s - seq.enqueued_s

    def _reuse_prefix(self, seq: Sequence) -> None:
        """Start ``seq``'s prefill after the resident blocks of its prompt (at least one token is computed)."""
        kv = self.kv
        seq.pinned = []
        max_blocks = (seq.prompt_tokens - 1) // kv.block_tokens
        blocks = kv.acquire(seq.prefix, max_blocks, seq.pinned)
        resident = blocks * kv.block_tokens
        loaded = 0  # from the host tier, into the sequence's own slots (its next chunk caches them again)
        if kv.host_capacity_tokens and blocks < max_blocks:
            loaded = kv.host_blocks(seq.prefix, blocks, max_blocks) * kv.block_tokens
            if loaded:
                load_s = loaded / self.settings.host_link_tokens_per_s  # its step waits for the copy
                self.swap_s += load_s
                self.host_load_s += load_s
                self.host_hit_tokens += loaded
        hit = resident + loaded
        if not hit:
            return
        seq.node_tokens = resident
        seq.prefilled = hit
        self.hit_tokens += hit
        self.saved_s += self.perf.prefill_s(seq.prompt_tokens, 0) - self.perf.prefill_s(seq.prompt_tokens - hit, hit)
        if seq.encoder_pending and seq.media:
            self._skip_cached_encoder(seq, hit)

    def _skip_cached_encoder(self, seq: Sequence, hit: int) -> None:
        """Drop the encoder work of prompt parts whose tokens all lie in the reused blocks."""
        for _key, end_tokens, patches, sequences, audio_s, _preprocess_s, _tokens in seq.media:
            if end_tokens > hit:
                break
            seq.encoder_patches -= patches
            seq.encoder_sequences -= sequences
            seq.audio_s -= audio_s
        seq.encoder_pending = seq.encoder_patches > 0 or seq.audio_s > 1e-9

    def _prefill_only(self, now_s: float) -> Iteration | None:
        """Without chunked prefill: whole prompts, no decode in the same step (vLLM v0 default)."""
        if self.waiting and self.policy.never_fits(self.waiting[0], self.kv.capacity_tokens):
            self._reject_oversized(now_s)
        prefill: list = []
        budget = self.settings.max_batched_tokens
        for seq in self.prefilling:  # preempted partials restart whole
            prefill.append((seq, seq.prefill_remaining))
            budget -= seq.prefill_remaining
        encoders = 0
        while self._head_fits() and (not prefill or self.waiting[0].prefill_remaining <= budget):
            seq = self.waiting[0]
            needs_encoder = seq.encoder_pending and self.settings.encoder_inline
            if needs_encoder and encoders >= self.settings.encoder_max_batch:
                break
            self.waiting.popleft()
            self._take(seq, now_s)
            if seq.prefill_remaining == 0:
                self._join_decode(seq)
                continue
            encoders += needs_encoder
            self.prefilling.append(seq)
            prefill.append((seq, seq.prefill_remaining))
            budget -= seq.prefill_remaining
        if not prefill:
            return self._decode_jump(now_s) if self.n_decode else None
        return self._timed(prefill, 0, now_s)

    def _decode_jump(self, now_s: float, most_steps: int = 0) -> Iteration:
        """Decode-only steps until the first sequence finishes or the KV cache fills (or ``most_steps``, if set)."""
        heap = self._decode_heap
        top = heap[0]
        while top[2] != top[3].epoch:  # a stale entry of a preempted sequence
            heapq.heappop(heap)
            top = heap[0]
        n = self.n_decode
        steps = 1
        if self.settings.decode_jumps:
            kv = self.kv
            steps = max(1, min(top[0] - self.decode_steps, (kv.capacity_tokens - kv.used_tokens) // n))
            if most_steps:
                steps = min(steps, most_steps)
        return Iteration(NO_PREFILL, n, steps, self.jump_s(steps), now_s)

    def jump_s(self, steps: int) -> float:
        """Time of ``steps`` decode-only steps of the current batch.

        KV grows by one token per sequence per step; the step time is taken at
        the jump's mean KV length (exact when it is affine in the KV read, as
        memory-bound decode is). The batch runs padded to the engine's next
        CUDA-graph size (the padding rows read no KV).
        """
        n = self.n_decode
        mean_kv_tokens = self.kv_decode_tokens + n * (steps - 1) / 2  # CachedPerf rounds it to whole tokens
        step_s = self.perf.decode_step_s(self._decode_batch[n], mean_kv_tokens)  # type: ignore[arg-type]
        settings = self.settings
        if settings.host_s_per_sequence:
            step_s = host_step_s(step_s, n, settings.host_s_per_sequence, settings.async_scheduling)
        return steps * step_s

    def _timed(self, prefill: list, decode_seqs: int, now_s: float) -> Iteration:
        """A mixed iteration: prefill chunks (+ inline encoder passes) batched with ``decode_seqs`` decodes."""
        tokens = patches = sequences = 0
        audio_s = 0.0
        chunks: list[PrefillChunk] = []
        for seq, chunk in prefill:
            tokens += chunk
            chunks.append((chunk, seq.prefilled))
            if seq.encoder_pending and self.settings.encoder_inline:
                patches += seq.encoder_patches
                sequences += seq.encoder_sequences
                audio_s += seq.audio_s
        kv_decode = self.kv_decode_tokens if decode_seqs else 0
        duration_s = self.perf.iteration_s(tuple(chunks), decode_seqs, kv_decode)
        if patches:
            duration_s += self.perf.encoder_s(patches, sequences)
        if audio_s:
            duration_s += self.perf.audio_encoder_s(audio_s)
        settings = self.settings
        if settings.host_s_per_sequence:
            duration_s = host_step_s(duration_s, decode_seqs + len(chunks), settings.host_s_per_sequence,
                                     settings.async_scheduling)
        return Iteration(prefill, decode_seqs, 1, duration_s, now_s, tokens)

    # ------------------------------------------------------------ applying

    def apply(self, it: Iteration, now_s: float) -> None:
        """Account for ``it`` having run to ``now_s``: tokens, KV, first tokens, completions."""
        steps = it.steps
        if self.settings.async_scheduling:  # the next step was scheduled as the last one of ``it`` started
            self._scheduled_at_s = it.start_s + it.duration_s * (steps - 1) / steps
            self._step_end_s = now_s
        self.iterations += steps
        grown = it.decode_seqs * steps  # steps >= 1: grown is 0 exactly when nothing decoded
        prefill = it.prefill
        self.batch_seqs += grown + len(prefill)
        self.batch_tokens += grown + it.prefill_tokens
        self.prefill_tokens += it.prefill_tokens
        if grown:
            self.decode_steps += steps
            self.kv.allocate(grown)
            self.kv_decode_tokens += grown
        for seq, chunk in prefill:
            seq.encoder_pending = False
            seq.prefilled += chunk
            if seq.prefilled == seq.prompt_tokens and seq in self.running:
                self.prefilling.remove(seq)
                self._prefill_done(seq, now_s)
            elif seq.prefix and self.kv.prefix_caching and seq in self.running:
                self._publish(seq, seq.prefilled // self.kv.block_tokens)
        heap = self._decode_heap
        if heap and heap[0][0] <= self.decode_steps:
            self._complete_decodes(now_s)

    def _prefill_done(self, seq: Sequence, now_s: float) -> None:
        """The step that completes a prompt samples the first token; then decode, finish or hand off."""
        if seq.prefix and self.kv.prefix_caching:
            self._publish(seq, seq.prompt_tokens // self.kv.block_tokens)
        if seq.generated == 0:
            seq.generated = 1
            self.hooks.first_token(seq, now_s)
        if seq.generated >= seq.output_tokens:
            self._leave(seq, seq.prompt_tokens, True)
            self.hooks.finished(seq, now_s)
        elif self.settings.handoff_after_prefill:
            self._leave(seq, seq.prompt_tokens)
            self.hooks.prefilled(seq, now_s)
        else:
            self._join_decode(seq)

    def _publish(self, seq: Sequence, computed_blocks: int) -> None:
        """Make the full blocks ``seq`` has computed of its prompt reusable by others (vLLM caches each chunk's)."""
        if seq.pinned is NO_PINS:
            seq.pinned = []
        seq.node_tokens += self.kv.publish(seq.prefix, seq.pinned, computed_blocks)

    def _join_decode(self, seq: Sequence) -> None:
        """Start decoding ``seq`` from the current iteration."""
        seq.join_iter = self.decode_steps
        seq.finish_iter = self.decode_steps + seq.output_tokens - seq.generated
        self._tiebreak += 1
        heapq.heappush(self._decode_heap, (seq.finish_iter, self._tiebreak, seq.epoch, seq))
        self.n_decode += 1
        self.kv_decode_tokens += seq.prompt_tokens

    def _complete_decodes(self, now_s: float) -> None:
        """Finish every decoding sequence whose last token came out by now."""
        heap = self._decode_heap
        while heap and heap[0][0] <= self.decode_steps:
            _, _, epoch, seq = heapq.heappop(heap)
            if epoch != seq.epoch:
                continue
            kv_tokens = seq.prompt_tokens + self.decode_steps - seq.join_iter
            self.n_decode -= 1
            self.kv_decode_tokens -= kv_tokens
            self._leave(seq, kv_tokens, True)
            self.hooks.finished(seq, now_s)

    def _leave(self, seq: Sequence, kv_tokens: int, finished: bool = False) -> None:
        """Drop ``seq`` from the batch and free its KV (its cached prefix stays, evictable once unused)."""
        del self.running[seq]
        if seq.pinned:
            self._unpin(seq, kv_tokens, finished)
        else:
            self.kv.release(kv_tokens)
        self.policy.left(seq)

    def _unpin(self, seq: Sequence, kv_tokens: int, finished: bool) -> None:
        """Free ``seq``'s own slots and its pins; a finished turn first leaves its output for the next one."""
        kv = self.kv
        own_tokens = kv_tokens - seq.node_tokens
        if finished and seq.output_key >= 0:
            own_tokens -= kv.publish_tail(seq.prefix[-1][0], seq.output_key, kv_tokens // kv.block_tokens)
        kv.release(own_tokens)
        kv.release_pins(seq.pinned)
        seq.pinned = NO_PINS
        seq.node_tokens = 0

    def _swap(self, tokens: int) -> None:
        """Owe the next step the host-link time of ``tokens`` KV tokens."""
        self.swap_s += tokens / self.settings.swap_tokens_per_s
        self.swapped_tokens += tokens

    def _preempt(self, seq: Sequence) -> None:
        """Free ``seq``'s KV and queue it first: swapped to host memory where the stage swaps and it fits (what
        it has computed, prompt and output so far), else recomputed (prefill prompt + output again)."""
        self.preemptions += 1
        prefilling = seq in self.prefilling
        if self.settings.swap_tokens_per_s > 0 and (seq.prefilled or not prefilling):
            kv_tokens = seq.prefilled if prefilling else seq.prompt_tokens + self.decode_steps - seq.join_iter
            if self.host_tokens + kv_tokens <= self.settings.host_kv_tokens:
                self._swap_out(seq, kv_tokens, prefilling)
                return
        if prefilling:
            self.prefilling.remove(seq)
            kv_tokens = seq.prompt_tokens
        else:
            steps = self.decode_steps - seq.join_iter
            kv_tokens = seq.prompt_tokens + steps
            seq.generated += steps
            seq.epoch += 1
            self.n_decode -= 1
            self.kv_decode_tokens -= kv_tokens
        self._leave(seq, kv_tokens)
        seq.prompt_tokens = kv_tokens
        seq.prefilled = 0
        self.waiting.appendleft(seq)

    def _swap_out(self, seq: Sequence, kv_tokens: int, prefilling: bool) -> None:
        """Swap preemption: copy ``seq``'s computed KV (``kv_tokens``) to host memory; when readmitted it gets
        it back and decodes on, or prefills the rest of its prompt."""
        if prefilling:
            self.prefilling.remove(seq)
            self._leave(seq, seq.prompt_tokens)  # its whole prompt was reserved at admission
        else:
            seq.generated += self.decode_steps - seq.join_iter
            seq.epoch += 1
            self.n_decode -= 1
            self.kv_decode_tokens -= kv_tokens
            self._leave(seq, kv_tokens)
            seq.prompt_tokens = seq.prefilled = kv_tokens
        seq.swapped = True
        self.host_tokens += kv_tokens
        if self.kv.host_capacity_tokens:  # swapped sequences come first in host memory
            self.kv.limit_host(self.settings.host_kv_tokens - self.host_tokens)
        self.swapped_out += 1
        self._swap(kv_tokens)
        self.waiting.appendleft(seq)

    @property
    def queue_length(self) -> int:
        """Sequences waiting to be admitted."""
        return len(self.waiting)


def prefix_cache_metrics(batchers: list[ContinuousBatcher], gpus_per_replica: int) -> dict:
    """Prompt tokens computed and reused, hit rate and GPU-seconds saved, summed over a pool's replicas."""
    queried = sum(b.queried_tokens for b in batchers)
    hits = sum(b.hit_tokens for b in batchers)
    kv = batchers[0].kv if batchers else None
    return {
        "prefix_caching": bool(kv and kv.prefix_caching),
        "kv_block_tokens": kv.block_tokens if kv else 0,
        "prefill_tokens": sum(b.prefill_tokens for b in batchers),
        "prefix_cache_queried_tokens": queried,
        "prefix_cache_hit_tokens": hits,
        "prefix_cache_hit_rate": hits / queried if queried else 0.0,
        "prefix_cache_saved_gpu_s": sum(b.saved_s for b in batchers) * gpus_per_replica,
        "prefix_cache_evicted_blocks": sum(b.kv.evicted_blocks for b in batchers),
        **encoder_cache_metrics([b.encoder_cache for b in batchers if b.encoder_cache is not None]),
        **swap_metrics(batchers),
        **host_tier_metrics(batchers),
    }


def host_tier_metrics(batchers: list[ContinuousBatcher]) -> dict:
    """The host tier of the prefix cache: its capacity per replica, the prompt tokens loaded from it (of the
    hits) and the host-link seconds those loads took."""
    if not batchers or not batchers[0].kv.host_capacity_tokens:
        return {}
    return {"host_prefix_cache_tokens": batchers[0].kv.host_capacity_tokens,
            "prefix_cache_host_hit_tokens": sum(b.host_hit_tokens for b in batchers),
            "prefix_cache_host_load_s": sum(b.host_load_s for b in batchers)}


def swap_metrics(batchers: list[ContinuousBatcher]) -> dict:
    """Preemptions that swapped to host memory and the KV tokens moved, for a stage that swaps."""
    if not batchers or not batchers[0].settings.swap_tokens_per_s:
        return {}
    return {"preemptions_swapped": sum(b.swapped_out for b in batchers),
            "swapped_kv_tokens": sum(b.swapped_tokens for b in batchers)}


def encoder_cache_metrics(caches: list[EncoderCache]) -> dict:
    """Parts looked up in the replicas' encoder-output caches, and the share found."""
    if not caches:
        return {}
    lookups = sum(c.lookups for c in caches)
    return {"encoder_cache_tokens": caches[0].capacity_tokens, "encoder_cache_lookups": lookups,
            "encoder_cache_hit_rate": sum(c.hits for c in caches) / lookups if lookups else 0.0}
