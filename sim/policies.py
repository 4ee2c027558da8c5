"""How each serving engine admits sequences into its batch and whom it evicts when the KV cache fills.

One small policy object per replica, chosen once when the replica is built
(``make_policy``), so the engine loop never compares engine names. The
batcher (``sim.batcher``) owns the queue, the batch and the KV cache; a
policy answers four questions: may the head of the queue join now
(``fits``), what to note when a sequence joins or leaves (``admitted``,
``left``), whom to evict when a decode step has no KV slot left
(``victim``), and whether prefill chunks share a step with decodes
(``mixed_prefill``). Tokens.

- vLLM v1 (vllm-project/vllm ``vllm/v1/core/sched/scheduler.py``): running
  requests first, then waiting ones while the token budget, ``max_num_seqs``
  and free KV blocks allow; when a running request gets no block, the most
  recently admitted one is preempted (recompute) and nothing new is admitted
  in that step.
- TensorRT-LLM (NVIDIA/TensorRT-LLM ``cpp/tensorrt_llm/batch_manager/
  capacityScheduler.cpp``): in-flight batching. ``GUARANTEED_NO_EVICT`` (the
  default) admits a request only if the blocks every scheduled request needs
  *to completion* (prompt + max new tokens) still fit, so it never evicts;
  ``MAX_UTILIZATION`` schedules against the blocks of the next step only and
  pauses the last started request when the cache is full (its KV is freed and
  recomputed later, as vLLM's preemption). Batch waiting (``BatchWait``, off by
  default) holds new prompts back while decodes run, to batch more of them.
- SGLang (sgl-project/sglang ``python/sglang/srt/managers/scheduler.py`` and
  ``schedule_policy.py``): a step is a prefill batch when new requests can be
  admitted, else a decode batch (``enable_mixed_chunk`` mixes them). A request
  is admitted if its prompt plus ``new_token_ratio`` x its max new tokens
  (clipped at 4,096) fits beside the same estimate for the running ones; the
  ratio starts at 0.7 and decays to 0.098 over 600 decode steps [constants
  recalled from the source, unverified]. When a decode step finds no room, the
  request with the fewest output tokens is retracted (recompute) and the
  ratio returns to its start. FCFS order: SGLang's longest-prefix-match
  scheduling order is not modelled (its radix cache is: ``sim.kvcache``).

What each engine does by default, and where that fact lives (after the
arrow: the field of ``sim.deployment.ModelStage`` that overrides it):

- admission and eviction: ``make_policy``; TensorRT-LLM's capacity scheduler
  and batch waiting ``sim.deployment.TrtllmOptions`` -> ``trtllm``; SGLang's
  mixed steps ``sim.deployment.SglangOptions`` -> ``sglang``
- scheduling a step ahead: ``ENGINE_ASYNC_SCHEDULING`` -> ``async_scheduling``
- vLLM's CUDA-graph decode sizes: ``VLLM_CUDAGRAPH_SIZES``
- KV block size: ``sim.kvcache.ENGINE_BLOCK_TOKENS`` -> ``kv_block_tokens``
- prefix caching: ``sim.kvcache.ENGINE_PREFIX_CACHING`` -> ``prefix_caching``
- memory fraction: ``profiles.perf.memory.default_memory_fraction`` (vLLM and
  TensorRT-LLM ``profiles.perf.memory.ENGINE_MEMORY_FRACTION``, SGLang
  ``profiles.perf.memory.sglang_memory_fraction``) -> ``gpu_memory_utilization``
- token budget and batch limit, also what the activation peak is profiled
  with: ``profiles.perf.memory.MAX_BATCHED_TOKENS`` -> ``max_batched_tokens``,
  ``profiles.perf.memory.MAX_NUM_SEQS`` -> ``max_batch_size``
- KV element size when the dtype is "auto": ``profiles.perf.memory.KV_BYTES``
  -> ``kv_cache_dtype``
- chunked prefill on, recompute on eviction: the defaults of
  ``chunked_prefill`` and ``preemption``
- host swap space: ``sim.build.VLLM_SWAP_SPACE_BYTES_PER_GPU`` -> ``host_kv_gb``
- host time a step and a request: ``profiles.perf.efficiency.STEP_OVERHEAD_S``,
  ``profiles.perf.efficiency.REQUEST_OVERHEAD_S``; per sequence in a step:
  ``ENGINE_HOST_S_PER_SEQUENCE``
"""

from typing import TYPE_CHECKING

from sim.sequence import Sequence

# Whether each engine schedules step n+1 while step n runs, by default: vLLM's async scheduling (default
# from v0.14.0, vllm-project/vllm#27614), TensorRT-LLM's overlap scheduler (`disable_overlap_scheduler`
# false by default in the PyTorch backend) and SGLang's overlap schedule (`--disable-overlap-schedule` to
# turn it off, default on since v0.4). A stage's `async_scheduling` overrides it.
ENGINE_ASYNC_SCHEDULING = {"vllm": True, "sglang": True, "trtllm": True}

# Host seconds an engine spends per sequence in a step (scheduling it, preparing its inputs, handing its
# token on), beyond the flat per-step time (STEP_OVERHEAD_S in profiles/perf/efficiency.py). Without async
# scheduling it adds to the step; with it, it runs beside the GPU step, which lasts the longer of the two
# (``host_step_s``). vLLM: 46 us, fitted on ONE set of measured runs, the median of (measured - predicted
# TPOT) / users over the 30 AIConfigurator vLLM 0.12 rows (async scheduling off, Qwen3-32B, H100) at 1,024
# output tokens, where that excess is flat from 8 to 128 users and at TP 2, 4 and 8 (so not GPU work).
# SGLang: vLLM's figure (its scheduler and TokenizerManager also handle every sequence in Python each step,
# sgl-project/sglang#6553); the held-out check is SGLang's rows. TensorRT-LLM: none (MLPerf's offline runs,
# its C++ executor without overlap at ~800 sequences a step, agree within 2 %, i.e. at most ~3 us each).
# README "Simulator against 5,221 measured serving runs" gives the held-out errors.
ENGINE_HOST_S_PER_SEQUENCE = {"vllm": 46e-6, "sglang": 46e-6, "trtllm": 0.0}


def host_step_s(gpu_step_s: float, sequences: int, host_s_per_sequence: float, overlapped: bool) -> float:
    """A step of ``sequences`` sequences whose GPU work (with the flat host time) takes ``gpu_step_s``: the
    per-sequence host work adds to it, or, when ``overlapped`` (async scheduling), runs beside it."""
    host_s = host_s_per_sequence * sequences
    if overlapped:
        return gpu_step_s if gpu_step_s >= host_s else host_s
    return gpu_step_s + host_s


if TYPE_CHECKING:  # the batcher module imports this one
    from sim.batcher import ContinuousBatcher

# SGLang new-token-ratio admission (schedule_policy.py / scheduler.py, env defaults) [recalled, unverified].
SGLANG_INIT_NEW_TOKEN_RATIO = 0.7
SGLANG_MIN_NEW_TOKEN_RATIO = 0.7 * 0.14
SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS = 600
SGLANG_CLIP_MAX_NEW_TOKENS = 4096
# vLLM v1 captures CUDA graphs for decode batches of 1, 2, 4, then every 8 up to 248, then every 16,
# up to min(2 x max_num_seqs, 512) (vllm/config/compilation.py defaults) [recalled, unverified]; a
# decode batch runs as the next captured size, padded, and above the largest one eagerly.
VLLM_CUDAGRAPH_SIZES = (1, 2, 4, *range(8, 256, 8), *range(256, 513, 16))


class BatchWait:
    """TensorRT-LLM batch waiting: hold prompts back while decodes run, until enough tokens gather.

    ``batch_wait_timeout_iters`` and ``batch_wait_max_tokens_ratio`` (LLM API
    options, 0 by default). PyExecutor._schedule calls _waiting_requests
    (tensorrt_llm/_torch/pyexecutor/py_executor.py) only when the step has both
    context and generation requests: the context requests run if this step's
    context tokens plus generation tokens reach ratio x max_num_tokens, or
    once ``timeout_iters`` steps have held them; otherwise the step decodes
    alone and the count of held steps grows. Releasing them resets the count.
    """

    __slots__ = ("min_tokens", "since_iteration", "timeout_iters")

    def __init__(self, timeout_iters: int, min_tokens: int) -> None:
        self.timeout_iters = timeout_iters
        self.min_tokens = min_tokens  # ratio x max_num_tokens
        self.since_iteration = -1  # the engine step the current hold began at; -1: not holding

    def held_steps(self, step_tokens: int, iterations: int) -> int:
        """Steps the waiting prompts are still held (0: they run in this step), given this step's tokens."""
        if step_tokens >= self.min_tokens:
            self.since_iteration = -1
            return 0
        if self.since_iteration < 0:
            self.since_iteration = iterations
        waited = iterations - self.since_iteration
        if waited >= self.timeout_iters:
            self.since_iteration = -1
            return 0
        return self.timeout_iters - waited


class EnginePolicy:
    """vLLM v1: admit while the prompt fits the free KV now; evict the newest sequence when full."""

    def __init__(self, mixed_prefill: bool = True) -> None:
        self.mixed_prefill = mixed_prefill  # prefill chunks share a step with the decodes
        self.graph_sizes: tuple[int, ...] = ()  # CUDA-graph decode batch sizes (none: no padding modelled)
        self.batch_wait: BatchWait | None = None  # TRT-LLM batch waiting, when configured
        # Without chunked prefill, steps that prefill run no decodes (vLLM V0, SGLang); TRT-LLM instead
        # keeps in-flight batching and only refuses to split a prompt over steps.
        self.prefill_only_unchunked = True

    def decode_batches(self, max_batch_size: int) -> list[int]:
        """``table[n]``: the batch a decode-only step of ``n`` sequences runs as (padded to a captured size)."""
        sizes = sorted(self.graph_sizes)
        table = list(range(max_batch_size + 1))
        index = 0
        for n in range(1, max_batch_size + 1):
            while index < len(sizes) and sizes[index] < n:
                index += 1
            if index < len(sizes):
                table[n] = sizes[index]
        return table

    def fits(self, seq: Sequence, batcher: "ContinuousBatcher") -> bool:
        """Whether ``seq`` may join: its prompt (less cached blocks others hold) and next token fit besides this
        step's decode tokens."""
        needed = batcher.uncached_tokens(seq) if seq.prefix else seq.prompt_tokens
        return needed + 1 <= batcher.kv.free_tokens - batcher.n_decode

    def never_fits(self, seq: Sequence, capacity_tokens: int) -> bool:
        """Whether ``seq`` could not be admitted even into an empty cache (the engine rejects it)."""
        return seq.prompt_tokens + 1 > capacity_tokens

    def admitted(self, seq: Sequence, batcher: "ContinuousBatcher") -> None:
        """``seq`` joined the batch."""

    def left(self, seq: Sequence) -> None:
        """``seq`` left the batch (finished, handed off or evicted)."""

    def victim(self, batcher: "ContinuousBatcher") -> Sequence:
        """The sequence to evict when a decode step has no KV slot: the most recently admitted."""
        return next(reversed(batcher.running))

    def evicted(self, batcher: "ContinuousBatcher") -> None:
        """A sequence was evicted in this step."""


class NoEvictPolicy(EnginePolicy):
    """TensorRT-LLM GUARANTEED_NO_EVICT: admit only what can run to completion beside everything admitted."""

    def __init__(self) -> None:
        super().__init__(mixed_prefill=True)
        self.committed_tokens = 0  # sum over the batch of KV tokens at completion

    def fits(self, seq: Sequence, batcher: "ContinuousBatcher") -> bool:
        """Whether the KV of every admitted sequence at completion, and ``seq``'s, fits the cache."""
        return self.committed_tokens + _tokens_at_completion(seq) <= batcher.kv.capacity_tokens

    def never_fits(self, seq: Sequence, capacity_tokens: int) -> bool:
        """A request whose KV at completion exceeds the whole cache would wait forever: rejected."""
        return _tokens_at_completion(seq) > capacity_tokens

    def admitted(self, seq: Sequence, batcher: "ContinuousBatcher") -> None:
        """Set aside ``seq``'s KV to completion."""
        seq.reserved_tokens = _tokens_at_completion(seq)
        self.committed_tokens += seq.reserved_tokens

    def left(self, seq: Sequence) -> None:
        """Give back what ``seq`` had set aside."""
        self.committed_tokens -= seq.reserved_tokens
        seq.reserved_tokens = 0


class SglangPolicy(EnginePolicy):
    """SGLang: admission against a decaying estimate of the batch's future tokens; retract the least advanced."""

    def __init__(self, mixed_prefill: bool) -> None:
        super().__init__(mixed_prefill)
        self.committed_tokens = 0  # sum over the batch of prompt + clipped max new tokens at admission
        self.ratio_start_step = 0  # decode step from which the ratio decays

    def new_token_ratio(self, batcher: "ContinuousBatcher") -> float:
        """The share of their remaining max new tokens running requests are expected to still produce."""
        decay = (SGLANG_INIT_NEW_TOKEN_RATIO - SGLANG_MIN_NEW_TOKEN_RATIO) / SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS
        steps = batcher.decode_steps - self.ratio_start_step
        return max(SGLANG_MIN_NEW_TOKEN_RATIO, SGLANG_INIT_NEW_TOKEN_RATIO - decay * steps)

    def fits(self, seq: Sequence, batcher: "ContinuousBatcher") -> bool:
        """Prompt + ratio x max new tokens fits beside the running requests' expected growth."""
        kv = batcher.kv
        # SGLang counts the extend length, not the radix-cache match.
        needed = batcher.uncached_tokens(seq) if seq.prefix else seq.prompt_tokens
        if needed + 1 > kv.free_tokens - batcher.n_decode:
            return False
        if not batcher.running:  # an idle engine takes the request whatever its estimate
            return True
        ratio = self.new_token_ratio(batcher)
        expected_growth = ratio * max(0, self.committed_tokens - kv.used_tokens)
        return needed + ratio * _clipped_new_tokens(seq) <= kv.free_tokens - expected_growth

    def admitted(self, seq: Sequence, batcher: "ContinuousBatcher") -> None:
        """Count ``seq``'s prompt and clipped max new tokens; an idle engine restarts the ratio."""
        if len(batcher.running) == 1:
            self.ratio_start_step = batcher.decode_steps
        seq.reserved_tokens = seq.prompt_tokens + _clipped_new_tokens(seq)
        self.committed_tokens += seq.reserved_tokens

    def left(self, seq: Sequence) -> None:
        """Forget ``seq``'s estimate."""
        self.committed_tokens -= seq.reserved_tokens
        seq.reserved_tokens = 0

    def victim(self, batcher: "ContinuousBatcher") -> Sequence:
        """The running sequence with the fewest output tokens (the longest prompt among equals)."""
        steps = batcher.decode_steps

        def fewest_outputs(seq: Sequence) -> tuple[int, int]:
            generated = seq.generated + (steps - seq.join_iter if seq.prefilled == seq.prompt_tokens else 0)
            return generated, -seq.prompt_tokens

        return min(batcher.running, key=fewest_outputs)  # the first of equals, in admission order

    def evicted(self, batcher: "ContinuousBatcher") -> None:
        """A retraction: the estimate was too low, start the ratio again."""
        self.ratio_start_step = batcher.decode_steps


def _tokens_at_completion(seq: Sequence) -> int:
    """KV tokens ``seq`` holds when its last allowed token is out (its prompt includes tokens already made)."""
    return seq.prompt_tokens + seq.max_output_tokens - seq.generated


def _clipped_new_tokens(seq: Sequence) -> int:
    """Max new tokens still to come, clipped as SGLang clips its estimate."""
    return min(seq.max_output_tokens - seq.generated, SGLANG_CLIP_MAX_NEW_TOKENS)


def vllm_cudagraph_sizes(max_num_seqs: int) -> tuple[int, ...]:
    """vLLM's default CUDA-graph capture sizes for a ``max_num_seqs`` engine."""
    largest = min(2 * max_num_seqs, VLLM_CUDAGRAPH_SIZES[-1])
    return tuple(size for size in VLLM_CUDAGRAPH_SIZES if size <= largest)


def make_policy(engine: str, capacity_scheduler: str = "guaranteed_no_evict", mixed_prefill: bool = False,
                max_batch_size: int = 256, batch_wait: tuple[int, int] = (0, 0)) -> EnginePolicy:
    """The policy object of ``engine`` (``capacity_scheduler``: TRT-LLM's; ``mixed_prefill``: SGLang's;
    ``batch_wait``: TRT-LLM's (timeout steps, tokens), off when the timeout is 0, as TRT-LLM's own test
    ``iters_count >= timeout_iters`` releases at once).

    Only vLLM's CUDA-graph padding is modelled: TensorRT-LLM pads only with
    ``cuda_graph_config.enable_padding`` (off by default) [recalled]; SGLang's
    capture list is not modelled.
    """
    if engine == "trtllm":
        policy = NoEvictPolicy() if capacity_scheduler == "guaranteed_no_evict" else EnginePolicy()
        policy.prefill_only_unchunked = False  # enable_chunked_prefill off: whole prompts beside the decodes
        if batch_wait[0] > 0:
            policy.batch_wait = BatchWait(batch_wait[0], batch_wait[1])
        return policy
    if engine == "sglang":
        return SglangPolicy(mixed_prefill)
    if engine == "vllm":
        policy = EnginePolicy()
        policy.graph_sizes = vllm_cudagraph_sizes(max_batch_size)
        return policy
    raise ValueError(f"unknown engine {engine!r}; engines are vllm, sglang, trtllm")
