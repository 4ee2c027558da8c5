"""A model stage: a pool of replicas behind a load balancer, each a continuous-batching engine.

This is the colocated engine (encoder, prefill and decode on the same GPUs);
``sim.stages.disaggregated`` splits it across pools. Seconds, USD.
"""

import simpy
from mypy_extensions import mypyc_attr

from profiles.models import ResolvedModel
from profiles.perf.base import MemoryPlan, PerfModel
from sim.batcher import BatchSettings, prefix_cache_metrics
from sim.deployment import ModelStage
from sim.journey import Journey
from sim.policies import ENGINE_HOST_S_PER_SEQUENCE
from sim.replica import Replica
from sim.router import make_balancer
from sim.sequence import Sequence
from sim.stages.base import StageRuntime
from sim.timeseries import TimeBins
from sim.workload import WorkCounter


def batch_settings(spec: ModelStage, model: ResolvedModel, encoder_inline: bool = True,
                   handoff_after_prefill: bool = False, swap: tuple[float, int] = (0.0, 0)) -> BatchSettings:
    """Engine limits and scheduling policy of a stage spec serving ``model``.

    Decode batches of a mixture-of-experts model are not padded to CUDA-graph
    sizes: the padding rows are identical dummy tokens that reach the same few
    experts, while the roofline would spread them over the experts as real
    tokens.
    """
    return BatchSettings(max_batch_size=spec.max_batch_size, max_batched_tokens=spec.max_batched_tokens,
                         chunked_prefill=spec.chunked_prefill, encoder_max_batch=spec.encoder_max_batch,
                         encoder_inline=encoder_inline, handoff_after_prefill=handoff_after_prefill,
                         engine=spec.engine,
                         capacity_scheduler=spec.trtllm.capacity_scheduler if spec.trtllm else "guaranteed_no_evict",
                         mixed_prefill=spec.sglang.enable_mixed_chunk if spec.sglang else False,
                         cuda_graph_padding=model.decoder.moe is None, prefix_caching=spec.prefix_caching_on,
                         kv_block_tokens=spec.block_tokens, encoder_cache_tokens=spec.encoder_cache_tokens,
                         swap_tokens_per_s=swap[0] if spec.preemption == "swap" else 0.0, host_kv_tokens=swap[1],
                         host_prefix_cache=spec.host_prefix_cache, host_link_tokens_per_s=swap[0],
                         batch_wait=trtllm_batch_wait(spec), async_scheduling=spec.async_scheduling_on,
                         host_s_per_sequence=ENGINE_HOST_S_PER_SEQUENCE[spec.engine])


def trtllm_batch_wait(spec: ModelStage) -> tuple[int, int]:
    """TensorRT-LLM batch waiting of a stage: (timeout steps, tokens that release the prompts); (0, 0) off."""
    options = spec.trtllm
    if spec.engine != "trtllm" or options is None:
        return (0, 0)
    tokens = int(options.batch_wait_max_tokens_ratio * spec.max_batched_tokens)
    return (options.batch_wait_timeout_iters, tokens)


def replica_metrics(replicas: list[Replica], gpus_per_replica: int, span_s: float) -> dict:
    """Utilisation, batch sizes, KV use and preemptions summed over ``replicas``. Not their GPUs: what a stage
    rents is its ``rented`` pools (``ModelPool.gpus``, reported by ``sim.metrics.stage_summary``)."""
    if not replicas:
        return {}
    steps = sum(r.steps for r in replicas)
    busy_s = sum(r.busy_s for r in replicas)
    return {
        "replicas": len(replicas),
        "gpu_utilization": busy_s / (len(replicas) * span_s) if span_s > 0 else 0.0,
        "iterations": steps,
        "mean_batch_size": sum(r.batch_seqs for r in replicas) / steps if steps else 0.0,
        "mean_tokens_per_iteration": sum(r.batch_tokens for r in replicas) / steps if steps else 0.0,
        "kv_capacity_tokens": replicas[0].kv.capacity_tokens,
        "kv_use_mean": sum(r.kv.mean_use(span_s) for r in replicas) / len(replicas),
        "kv_use_peak": max(r.kv.peak_tokens / max(1, r.kv.capacity_tokens) for r in replicas),
        "preemptions": sum(r.batcher.preemptions for r in replicas),
        "rejected_kv": sum(r.batcher.rejected_kv for r in replicas),
        **prefix_cache_metrics([r.batcher for r in replicas], gpus_per_replica),
    }


def vram_per_replica(memory: MemoryPlan, tensor_parallel: int) -> dict[str, float]:
    """GPU memory of one replica in GB: weights, KV cache (all the engine's budget left after weights and
    activations), activations, and free (outside the engine's memory share); they add up to the total."""
    gb = 1e9
    usable_gb = tensor_parallel * memory.gpu_bytes / gb
    total_gb = tensor_parallel * (memory.device_bytes or memory.gpu_bytes) / gb
    return {
        "vram_weights_gb": tensor_parallel * memory.weights_bytes_per_gpu / gb,
        "vram_kv_cache_gb": tensor_parallel * max(0, memory.free_bytes_per_gpu) / gb,
        "vram_activations_gb": tensor_parallel * memory.activation_reserve_bytes_per_gpu / gb,
        "vram_free_gb": total_gb - usable_gb,
        "vram_total_gb": total_gb,
    }


@mypyc_attr(allow_interpreted_subclasses=True)  # the disaggregated pools extend it
class ModelPool(StageRuntime):
    """``replicas`` colocated engines of one model on ``tensor_parallel`` GPUs each."""

    kind = "model"

    def __init__(self, spec: ModelStage, perf: PerfModel, work: WorkCounter, env: simpy.Environment,
                 rented: list[tuple[str, int, float]], busy_bins: TimeBins | None = None, final_output: bool = True,
                 settings: BatchSettings | None = None, replica_count: int | None = None) -> None:
        """``rented``: the stage's GPU pools (``sim.build.stage_gpu_pools``); ``settings`` and
        ``replica_count`` default to the spec's (a disaggregated pool passes its own)."""
        super().__init__(spec.name)
        self.spec = spec
        self.perf = perf
        self.work = work
        self.rented = rented
        self.final_output = final_output  # False for a classifier: its label is not passed on as text
        settings = settings or batch_settings(spec, work.model)
        count = spec.fixed_replicas if replica_count is None else replica_count
        self.replicas = [Replica(env, perf, settings, spec.cpu_workers, self, busy_bins) for _ in range(count)]
        self.balancer = make_balancer(spec.load_balancer, spec.block_tokens)
        self._balanced = count > 1  # a one-replica pool has no choice to track
        self.max_seq_len = spec.max_seq_len or 0  # 0: no limit but the KV cache
        self.max_new_tokens = spec.max_new_tokens or 0  # 0: the clients ask for exactly their answer
        self.rejected_over_max_seq_len = 0

    def output_tokens(self, journey: Journey) -> int:
        """Tokens this stage generates for ``journey``."""
        return self.spec.output_tokens or journey.request.output_tokens

    def submit(self, journey: Journey, now_s: float) -> None:
        """Count the request's tokens on this model and give it to a replica."""
        seq = self.work.sequence(journey, self.spec.output_tokens or journey.request.output_tokens)
        if (self.max_seq_len or self.max_new_tokens) and self.limited(seq, now_s) is None:
            return  # longer than max_seq_len: rejected
        self.balancer.pick(self.replicas, seq).submit(seq, now_s)

    def sequence(self, journey: Journey, now_s: float) -> Sequence | None:
        """The engine's sequence for ``journey`` within the stage's limits (``None``: rejected)."""
        return self.limited(self.work.sequence(journey, self.output_tokens(journey)), now_s)

    def limited(self, seq: Sequence, now_s: float) -> Sequence | None:
        """``seq`` with its output cut (in place) at ``max_new_tokens`` and ``max_seq_len``.

        A prompt longer than ``max_seq_len`` is rejected at the door, as vLLM
        refuses a prompt over ``max_model_len`` (TensorRT-LLM and SGLang refuse
        it too); ``None`` then.
        """
        limit = self.max_new_tokens
        if limit:
            seq.output_tokens = min(seq.output_tokens, limit)
            seq.max_output_tokens = limit
        if self.max_seq_len:
            room = self.max_seq_len - seq.prompt_tokens
            if room < 0:
                self.rejected_over_max_seq_len += 1
                self.reject(seq.journey, now_s)
                return None
            room = max(1, room)  # a prompt of exactly max_seq_len still samples its first token
            seq.output_tokens = min(seq.output_tokens, room)
            seq.max_output_tokens = min(seq.max_output_tokens, room)
        return seq

    # ------------------------------------------------------------ engine hooks

    def first_token(self, seq: Sequence, now_s: float) -> None:
        """Engine hook: first token sampled."""
        self.first_token_at(seq.journey, now_s)

    def finished(self, seq: Sequence, now_s: float) -> None:
        """Engine hook: last token sampled."""
        self.release(seq.replica)
        self.depart(seq.journey, now_s, seq.output_tokens if self.final_output else 0)

    def rejected(self, seq: Sequence, now_s: float) -> None:
        """Engine hook: the prompt can never fit the KV cache."""
        self.release(seq.replica)
        self.reject(seq.journey, now_s)

    def release(self, replica: Replica) -> None:
        """``replica`` no longer holds a request: its count drops and the balancer hears of it."""
        replica.outstanding -= 1
        if self._balanced:
            self.balancer.released(replica)

    def prefilled(self, seq: Sequence, now_s: float) -> None:
        """Engine hook: only prefill-only replicas hand off (see the disaggregated pools)."""
        raise NotImplementedError("a colocated replica never hands off after prefill")

    # ------------------------------------------------------------ costs and metrics

    @property
    def gpus(self) -> int:
        """GPUs the stage rents: the sum of its pools (``rented``, the one count; read for reports only)."""
        return sum(gpus for _gpu, gpus, _price in self.rented)

    def gpu_pools(self) -> list[tuple[str, int, float]]:
        """What the stage rents, pool by pool, each at its GPU's price (``sim.build.stage_gpu_pools``)."""
        return list(self.rented)

    def stage_metrics(self, span_s: float) -> dict:
        """Replica statistics plus the performance model's provenance."""
        metrics = replica_metrics(self.replicas, self.spec.tensor_parallel, span_s)
        metrics["engine"] = self.spec.engine
        metrics["rejected_over_max_seq_len"] = self.rejected_over_max_seq_len
        metrics["provenance"] = self.perf.provenance
        metrics["memory_source"] = self.perf.memory.source
        metrics["gpu"] = self.spec.gpu
        metrics["gpus_per_replica"] = self.spec.tensor_parallel
        metrics.update(vram_per_replica(self.perf.memory, self.spec.tensor_parallel))
        return metrics
