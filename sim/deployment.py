"""Deployments: a graph of stages (pools of replicas) and the routes requests take through them.

A scenario lists candidate deployments in this schema, for example::

    deployments:
      - name: generalist-72b
        stages:
          - {name: vlm, kind: model, model: qwen2.5-vl-72b, gpu: h100-sxm, tensor_parallel: 4, replicas: 2}
      - name: specialist
        router: {classifier: {model: bert-base-router, gpu: l4, replicas: 1}}
        stages:
          - {name: ocr, kind: model, model: deepseek-ocr, gpu: a100-80gb, replicas: 2, output_tokens: 300}
          - {name: text, kind: model, model: qwen2.5-7b, gpu: h100-sxm, replicas: 2, text_only_input: true}
          - {name: vlm7b, kind: model, model: qwen2.5-vl-7b, gpu: h100-sxm, replicas: 4}
        routes:
          - {classes: [invoice], path: [ocr, text]}
          - {classes: ["*"], path: [vlm7b]}
      - {name: api, stages: [{name: api, kind: hosted_api, api: gpt-4o}]}
      - {name: phone, stages: [{name: phone, kind: on_device, model: smolvlm-256m, device: jetson-agx-orin}]}
      - {name: mm1, stages: [{name: q, kind: synthetic, servers: 1,
                              service: {distribution: exponential, mean_s: 0.1}}]}

Stage kinds are a pydantic union discriminated by ``kind``; ``sim.stages``
maps each kind to the class that simulates it. Units: seconds, GB/s, USD.
"""

from collections import Counter
from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from profiles.base import StrictModel
from profiles.errors import ConfigurationError
from profiles.models import ApiRateLimits, ModelSpec, Precision
from profiles.perf import memory as engine_memory
from profiles.tokens import ImagePolicy
from sim.kvcache import ENGINE_BLOCK_TOKENS, ENGINE_PREFIX_CACHING
from sim.limits import (
    MAX_BATCH_SIZE,
    MAX_BATCHED_TOKENS,
    MAX_CPU_WORKERS,
    MAX_REPLICAS,
    MAX_SERVERS,
    MAX_TENSOR_PARALLEL,
    MAX_TOKENS,
    MIN_SERVICE_S,
)
from sim.policies import ENGINE_ASYNC_SCHEDULING

# prefix_aware: the replica that served the prompt's longest known prefix unless it is overloaded
# (SGLang's and vLLM's cache-aware routers, llm-d's prefix scorer); see sim.router.
LoadBalancer = Literal["round_robin", "least_outstanding", "prefix_aware"]
AUTO_GPU = "auto"  # ModelStage.gpu: every catalog GPU with a price that holds the model
# Bounded counts (sim.limits): each replica, worker or server is an object in memory.
PoolSize = Annotated[int, Field(gt=0, le=MAX_REPLICAS)]
Replicas = PoolSize | Literal["auto"]
TensorParallel = Annotated[int, Field(gt=0, le=MAX_TENSOR_PARALLEL)]
Tokens = Annotated[int, Field(gt=0, le=MAX_TOKENS)]
Servers = Annotated[int, Field(gt=0, le=MAX_SERVERS)]
# The serving engine a model stage runs: its scheduler and how it sizes the KV cache (sim.policies,
# profiles.perf.memory).
Engine = Literal["vllm", "sglang", "trtllm"]
KvCacheDtype = Literal["auto", "bf16", "fp8"]


class TrtllmOptions(StrictModel):
    """TensorRT-LLM settings (``engine: trtllm``)."""

    capacity_scheduler: Literal["guaranteed_no_evict", "max_utilization"] = Field(
        "guaranteed_no_evict", description="CapacitySchedulerPolicy: admit only what can run to completion "
                                           "(the default), or fill the cache and pause the newest when full")
    batch_wait_timeout_iters: NonNegativeInt = Field(
        0, le=100_000, description="Hold new prompts back for up to this many steps while decodes run (0: off)")
    batch_wait_max_tokens_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="...unless the step's tokens reach this share of max_batched_tokens")


class SglangOptions(StrictModel):
    """SGLang settings (``engine: sglang``)."""

    enable_mixed_chunk: bool = Field(False, description="Run prefill chunks in the same step as decodes "
                                                        "(off by default: a step is prefill or decode)")


class EncodeDisaggregation(StrictModel):
    """Vision/audio encoders on their own GPU pool; embeddings handed to the LLM pool (EPD, FACTS 5f)."""

    mode: Literal["encode"] = "encode"
    encoder_gpu: str | None = Field(None, description="GPU id of the encoder pool; default: the stage's gpu")
    encoder_replicas: PoolSize = 1
    link_gbs: PositiveFloat | None = Field(
        None, description="Embedding transfer bandwidth, GB/s one way; default: half the GPU's interconnect figure"
    )


class PrefillDecodeDisaggregation(StrictModel):
    """Prefill and decode on separate pools; the KV cache crosses the link after prefill."""

    mode: Literal["prefill_decode"] = "prefill_decode"
    prefill_replicas: PoolSize = 1
    decode_replicas: PoolSize = 1
    prefill_gpu: str | None = Field(None, description="GPU id of the prefill pool; default: the stage's gpu")
    decode_gpu: str | None = Field(None, description="GPU id of the decode pool; default: the stage's gpu")
    link_gbs: PositiveFloat | None = Field(
        None, description="KV transfer bandwidth, GB/s one way; default: half the slower GPU's interconnect figure"
    )


class NoDisaggregation(StrictModel):
    """Encoder, prefill and decode share each replica (the usual engine)."""

    mode: Literal["none"] = "none"


Disaggregation = Annotated[
    NoDisaggregation | EncodeDisaggregation | PrefillDecodeDisaggregation, Field(discriminator="mode")
]


class ModelStage(StrictModel):
    """A pool of ``replicas`` identical model instances, each on ``tensor_parallel`` GPUs."""

    kind: Literal["model"] = "model"
    name: str
    model: str | ModelSpec = Field(description="Catalog model id or an inline model definition")
    gpu: str | list[str] = Field(description="GPU id; or a list of GPU ids, or `auto` (every catalog GPU with a price "
                                             "that holds the model), for the planner to choose the cheapest; "
                                             "`simulate` runs the first listed (for `auto`: the cheapest)")
    tensor_parallel: TensorParallel = 1
    replicas: Replicas = 1
    min_replicas: PoolSize = Field(1, description="Lower bound for `auto`; `simulate` uses it as written")
    max_replicas: PoolSize = Field(64, description="Upper bound for the planner's `auto` search")
    load_balancer: LoadBalancer = "least_outstanding"
    precision: Precision | None = None
    usd_per_gpu_hour: PositiveFloat | None = Field(None, description="Price override; default: catalog price")
    # engine settings
    engine: Engine = Field("vllm", description="Serving engine whose scheduler and KV sizing the stage follows")
    trtllm: TrtllmOptions | None = Field(None, description="TensorRT-LLM options (engine: trtllm only)")
    sglang: SglangOptions | None = Field(None, description="SGLang options (engine: sglang only)")
    max_batch_size: PositiveInt = Field(engine_memory.MAX_NUM_SEQS, le=MAX_BATCH_SIZE,
                                        description="Most sequences in one LLM iteration (vLLM max_num_seqs, "
                                                    "TRT-LLM max_batch_size, SGLang max_running_requests)")
    max_batched_tokens: PositiveInt = Field(engine_memory.MAX_BATCHED_TOKENS, le=MAX_BATCHED_TOKENS,
                                            description="Token budget of one iteration (vLLM "
                                                        "max_num_batched_tokens, TRT-LLM max_num_tokens, "
                                                        "SGLang chunked_prefill_size)")
    chunked_prefill: bool = Field(
        True, description="Split prompts over steps within the token budget (vLLM V1, SGLang chunked prefill, "
                          "TRT-LLM enable_chunked_prefill); off: a step that prefills runs no decodes (vLLM V0, "
                          "SGLang), or, for TRT-LLM, only whole prompts join the decodes")
    async_scheduling: bool | None = Field(
        None, description="The engine schedules step n+1 while step n runs (vLLM async scheduling, TRT-LLM "
                          "overlap scheduler, SGLang overlap schedule): a request that arrives during a step "
                          "joins the step after next; default: the engine's own (on for all three)")
    prefix_caching: bool | None = Field(
        None, description="Reuse the KV blocks of prompt prefixes already computed on the replica (vLLM "
                          "enable_prefix_caching, SGLang radix cache, TRT-LLM enable_block_reuse); default: "
                          "the engine's own (on for all three)")
    kv_block_tokens: PositiveInt | None = Field(
        None, description="KV block (page) size in tokens, the unit prefix caching reuses; default: the "
                          "engine's (vLLM 16, SGLang 1, TRT-LLM 32)")
    preemption: Literal["recompute", "swap"] = Field(
        "recompute", description="How a sequence evicted from a full KV cache gets its KV back: recompute its "
                                 "prefill (vLLM V1, SGLang), or swap it to host memory over the host link and back "
                                 "(vLLM V0's swap space, TRT-LLM's host offload) while host memory holds it")
    host_kv_gb: PositiveFloat | None = Field(
        None, description="Host memory per replica for swapped KV and the host prefix-cache tier, GB; default: "
                          "4 GiB per GPU (vLLM V0's swap_space)")
    host_prefix_cache: bool = Field(
        False, description="Keep KV blocks evicted from the GPU prefix cache in host memory (host_kv_gb, beside "
                           "swapped sequences) as a second tier: a prompt finding them there loads them over the "
                           "host link instead of prefilling them (SGLang HiCache, vLLM's CPU offloading, LMCache)")
    host_link_gbs: PositiveFloat | None = Field(
        None, description="Host link per GPU, one way, GB/s; default: half the GPU's bidirectional PCIe figure")
    encoder_cache_tokens: NonNegativeInt = Field(
        0, description="Encoder outputs (embedding tokens) each replica keeps: images and audio a conversation "
                       "re-sends are found here and neither preprocessed nor encoded again (LRU); 0: none")
    cpu_workers: PositiveInt = Field(8, le=MAX_CPU_WORKERS, description="CPU preprocessing workers per replica")
    encoder_max_batch: PositiveInt = Field(16, le=MAX_BATCH_SIZE,
                                           description="Most requests batched in one encoder pass")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="The engine's memory fraction: vLLM gpu_memory_utilization (of the total), "
                                      "TRT-LLM free_gpu_memory_fraction (of what weights and activations leave), "
                                      "SGLang mem_fraction_static (weights + KV); default: the engine's own")
    kv_cache_dtype: KvCacheDtype = Field("auto", description="KV cache element type; auto: FP8 with FP8 weights, "
                                                             "else BF16")
    max_seq_len: Tokens | None = Field(
        None, description="Longest sequence (prompt + output) the engine accepts (vLLM max_model_len): longer "
                          "prompts are rejected, outputs cut at it; default: no limit but the KV cache")
    max_new_tokens: Tokens | None = Field(
        None, description="max_tokens the clients send: outputs are cut at it, and TRT-LLM and SGLang reserve KV "
                          "against it; default: each request's own output length")
    # MoE load imbalance
    hot_expert_factor: float = Field(1.0, ge=1.0, le=1000.0, description="Hot expert's load over the mean expert's")
    expert_replication: PositiveInt = Field(1, le=MAX_REPLICAS, description="Copies of each hot expert")
    # pipeline roles
    output_tokens: Tokens | None = Field(None, description="Overrides the request's output length (e.g. OCR 300)")
    text_only_input: bool = Field(False, description="Reads the previous stage's output as text, no images/audio")
    disaggregation: Disaggregation = NoDisaggregation()

    @model_validator(mode="after")
    def _replica_bounds(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self

    @model_validator(mode="after")
    def _options_match_engine(self) -> Self:
        for option in ("trtllm", "sglang"):
            if getattr(self, option) is not None and self.engine != option:
                raise ValueError(f"{option} options apply to engine: {option} (this stage runs {self.engine})")
        return self

    @model_validator(mode="after")
    def _gpu_choices(self) -> Self:
        if isinstance(self.gpu, list):
            if not self.gpu:
                raise ValueError("gpu: an empty list; name at least one GPU id, or `auto`")
            if AUTO_GPU in self.gpu:
                raise ValueError("gpu: `auto` stands alone, not inside a list")
            repeated = sorted({g for g in self.gpu if self.gpu.count(g) > 1})
            if repeated:
                raise ValueError(f"gpu: repeated GPU ids {repeated}")
        return self

    @property
    def gpu_choice(self) -> bool:
        """Whether the stage leaves its GPU to the planner (a list of ids, or `auto`)."""
        return isinstance(self.gpu, list) or self.gpu == AUTO_GPU

    @property
    def prefix_caching_on(self) -> bool:
        """Whether the stage's engine caches prefixes (the setting, else the engine's default)."""
        return ENGINE_PREFIX_CACHING[self.engine] if self.prefix_caching is None else self.prefix_caching

    @property
    def async_scheduling_on(self) -> bool:
        """Whether the stage's engine schedules a step ahead (the setting, else the engine's default)."""
        return ENGINE_ASYNC_SCHEDULING[self.engine] if self.async_scheduling is None else self.async_scheduling

    @property
    def block_tokens(self) -> int:
        """The KV block size in tokens (the setting, else the engine's default)."""
        return self.kv_block_tokens or ENGINE_BLOCK_TOKENS[self.engine]

    @property
    def fixed_replicas(self) -> int:
        """Replicas as `simulate` runs them: the number given, or ``min_replicas`` for ``auto``."""
        return self.min_replicas if self.replicas == "auto" else self.replicas


class HostedApiStage(StrictModel):
    """A hosted model priced per token and timed by its catalog entry, under the account's rate limits."""

    kind: Literal["hosted_api"] = "hosted_api"
    name: str
    api: str
    max_concurrency: Servers | None = Field(None, description="Client limit: calls in flight; None: unlimited")
    rate_limits: ApiRateLimits | None = Field(
        None, description="Requests/tokens per minute of your account, replacing the catalog's; {}: no limits")
    on_rate_limit: Literal["wait", "fail"] = Field(
        "wait", description="A call over the rate limits waits for room (queued, FIFO) or fails (HTTP 429: "
                            "rejected, not billed, an SLO miss)")
    output_tokens: Tokens | None = None
    text_only_input: bool = False


class OnDeviceStage(StrictModel):
    """Each user's own device runs the model: no queue across users, no server cost."""

    kind: Literal["on_device"] = "on_device"
    name: str
    model: str | ModelSpec
    device: str = Field(description="Catalog GPU id of the device, e.g. jetson-agx-orin")
    precision: Precision | None = None
    device_usd_per_day: NonNegativeFloat = Field(0.0, description="Amortised device cost per day, fleet-wide")
    output_tokens: Tokens | None = None
    text_only_input: bool = False


class ServiceTime(StrictModel):
    """A named service-time distribution with mean ``mean_s`` (lognormal also takes ``cv``)."""

    distribution: Literal["deterministic", "exponential", "lognormal"]
    mean_s: float = Field(ge=MIN_SERVICE_S, description="Mean service time, seconds")
    cv: PositiveFloat = Field(1.0, description="Coefficient of variation (lognormal only)")


class SyntheticStage(StrictModel):
    """``servers`` FIFO servers with a drawn service time: for checks against queueing theory."""

    kind: Literal["synthetic"] = "synthetic"
    name: str
    servers: Servers = 1
    service: ServiceTime
    usd_per_server_hour: NonNegativeFloat = 0.0


Stage = Annotated[ModelStage | HostedApiStage | OnDeviceStage | SyntheticStage, Field(discriminator="kind")]


class TieredImagePolicy(StrictModel):
    """Request tiering: the image policy chosen by the request's ``tier`` ('default' when unlisted)."""

    by_tier: dict[str, ImagePolicy]


class Route(StrictModel):
    """Requests of ``classes`` (``"*"``: any other class) visit the stages in ``path`` in order."""

    classes: list[str] = Field(min_length=1)
    path: list[str] = Field(min_length=1)
    image_policy: ImagePolicy | TieredImagePolicy | None = Field(
        None, description="Overrides the models' image policy on this route (a policy, or by_tier)"
    )


class ClassifierSpec(StrictModel):
    """A small text classifier every request passes first (e.g. a BERT router)."""

    model: str | ModelSpec
    gpu: str
    replicas: PoolSize = 1
    tensor_parallel: TensorParallel = 1
    load_balancer: LoadBalancer = "least_outstanding"
    usd_per_gpu_hour: PositiveFloat | None = None


class RouterSpec(StrictModel):
    """How requests are dispatched to routes; the classifier adds its own latency and GPUs."""

    classifier: ClassifierSpec | None = None


class DeploymentSpec(StrictModel):
    """One candidate architecture: its stages and which route each request class takes."""

    name: str
    description: str = ""
    stages: list[Stage] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list, description="Default: every class through all stages in order")
    router: RouterSpec | None = None

    @model_validator(mode="after")
    def _routes_name_stages(self) -> Self:
        names = [stage.name for stage in self.stages]
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(f"stage names must be unique, repeated: {duplicates}")
        known = set(names)
        for index, route in enumerate(self.routes):
            unknown = [n for n in route.path if n not in known]
            if unknown:
                raise ValueError(f"routes.{index}.path names unknown stages {unknown}; stages are {names}")
        return self

    def route_for(self, request_class: str) -> Route:
        """The first route listing ``request_class``, else the first ``"*"`` route, else all stages."""
        for route in self.routes:
            if request_class in route.classes:
                return route
        for route in self.routes:
            if "*" in route.classes:
                return route
        if self.routes:
            raise ConfigurationError(
                f"deployment {self.name!r}: no route for request class {request_class!r} (add a '*' route)"
            )
        return Route(classes=["*"], path=[stage.name for stage in self.stages])

    def stage(self, name: str) -> Stage:
        """The stage called ``name``."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)
