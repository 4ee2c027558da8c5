"""Routing: which stages a request visits, and which replica of a pool serves it.

``Router`` sends each arriving request along the route of its class (first
through the classifier stage when the deployment has one), hands it from
stage to stage and reports it to the recorder when it leaves the last one.
Load balancers pick a replica within a pool: round-robin; least outstanding
requests (ties to the lowest index), kept in a heap so a pick costs
O(log replicas), not a scan; or prefix-aware, which sends a conversation's
next turn to the replica that served its history (its KV blocks are there)
unless that replica is overloaded. Every balancer is told when a server
takes a request (``pick``) and when one leaves it (``released``). Seconds.
"""

import heapq
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from profiles.tokens import ImagePolicy
from sim.deployment import DeploymentSpec, Route, TieredImagePolicy
from sim.journey import Journey
from sim.request import Request
from sim.sequence import Sequence as EngineSequence


class Loaded(Protocol):
    """A replica or an encoder server: anything that counts the requests it holds."""

    outstanding: int


Server = TypeVar("Server", bound=Loaded)

# SGLang's and vLLM's cache-aware routers (sglang-gateway, vllm-router defaults, as gpustack's
# routing docs list them): follow the longest prefix match when it covers at least this share of
# the prompt, unless the load is imbalanced by more than 64 requests and 1.5x.
CACHE_THRESHOLD = 0.3
BALANCE_ABS_THRESHOLD = 64
BALANCE_REL_THRESHOLD = 1.5
MAX_PREFIX_OWNERS = 1 << 17  # part keys a prefix-aware balancer remembers (the router's own tree is bounded)


class RoundRobin:
    """Replicas in turn, whatever their load."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, replicas: Sequence[Server], seq: EngineSequence | None = None) -> Server:
        """The next replica in turn."""
        replica = replicas[self._next % len(replicas)]
        self._next += 1
        return replica

    def released(self, server: Loaded) -> None:
        """``server`` finished or dropped a request (nothing to track)."""


class LeastOutstanding:
    """The replica with the fewest requests assigned and not yet finished.

    A heap of (outstanding, index) entries, one pushed at every change; an
    entry whose count no longer matches its server's is stale and dropped
    when it reaches the top. The top valid entry is the least loaded server,
    the lowest index among equals, as a scan with ``min`` would choose.
    """

    def __init__(self) -> None:
        self._servers: Sequence[Loaded] = ()
        self._heap: list[tuple[int, int]] = []
        self._index: dict[int, int] = {}  # id(server) -> its position in the pool

    def pick(self, replicas: Sequence[Server], seq: EngineSequence | None = None) -> Server:
        """The least loaded replica; the caller hands it the request at once."""
        if len(replicas) == 1:  # single-replica pools (the classifier) skip the heap
            return replicas[0]
        load, index = self._least(replicas)
        heapq.heapreplace(self._heap, (load + 1, index))  # it is about to take one more
        return replicas[index]

    def released(self, server: Loaded) -> None:
        """``server`` finished or dropped a request: its lower count enters the heap."""
        index = self._index.get(id(server))
        if index is None:
            return
        heap = self._heap
        heapq.heappush(heap, (server.outstanding, index))
        if len(heap) > 4 * len(self._servers) + 64:  # stale entries pile up below: rebuild
            self._rebuild(self._servers)

    def _least(self, replicas: Sequence[Loaded]) -> tuple[int, int]:
        """The top valid (outstanding, index) entry, stale ones dropped."""
        if replicas is not self._servers:
            self._rebuild(replicas)
        heap = self._heap
        load, index = heap[0]
        while replicas[index].outstanding != load:
            heapq.heappop(heap)
            load, index = heap[0]
        return load, index

    def _rebuild(self, replicas: Sequence[Loaded]) -> None:
        self._servers = replicas
        self._index = {id(server): i for i, server in enumerate(replicas)}
        self._heap = [(server.outstanding, i) for i, server in enumerate(replicas)]
        heapq.heapify(self._heap)


SHARED_PART = -1  # the owner of a part recorded on more than one replica


class PrefixAware(LeastOutstanding):
    """The replica that served the longest part of the prompt, else the least loaded.

    Like SGLang's and vLLM's cache-aware routers, the balancer keeps its own
    record of where prompts went rather than asking the replicas: each part
    of a prompt (a turn's history, a trace's prefix blocks), its own input
    and its answer are recorded under the replica that served it, so the
    next turn, or any request that re-sends them, follows them when they
    cover at least ``CACHE_THRESHOLD`` of its prompt. Prompts of different
    conversations meet in their first part (a class's system prompt, a
    trace's shared first block), and a part recorded on two replicas is
    shared: every replica soon holds those, and following one would pile its
    requests onto one replica, so a match that ends there is left to load
    balancing. The load
    cap: when the chosen replica holds more than ``BALANCE_ABS_THRESHOLD``
    requests above the least loaded one and more than
    ``BALANCE_REL_THRESHOLD`` times as many, the least loaded one serves
    instead (SGLang compares the busiest and idlest replicas of the whole
    pool; comparing the chosen one keeps the pick O(log replicas)).
    """

    def __init__(self, block_tokens: int = 16) -> None:
        super().__init__()
        self.block_tokens = block_tokens  # the pool's KV block: the unit of the prompts' part chains
        self._owners: dict[int, int] = {}  # part key -> index of the replica that last computed it
        self.affinity_picks = 0  # picks that followed a recorded prefix

    def pick(self, replicas: Sequence[Server], seq: EngineSequence | None = None) -> Server:
        """The prefix holder within the load cap, else the least loaded replica."""
        if len(replicas) == 1:
            return replicas[0]
        load, index = self._least(replicas)
        holder = self._holder(seq) if seq is not None else -1
        if 0 <= holder < len(replicas):
            holder_load = replicas[holder].outstanding
            if not (holder_load - load > BALANCE_ABS_THRESHOLD and holder_load > BALANCE_REL_THRESHOLD * load):
                self.affinity_picks += 1
                load, index = holder_load, holder
        heapq.heappush(self._heap, (load + 1, index))  # it is about to take one more
        if seq is not None:
            self._record(seq, index)
        return replicas[index]

    def _holder(self, seq: EngineSequence) -> int:
        """The replica of the deepest recorded part of ``seq``'s prompt after its first, if it covers enough of
        it and is not shared (-1: none)."""
        owners, prefix = self._owners, seq.prefix
        for position in range(len(prefix) - 1, 0, -1):
            key, end_blocks = prefix[position]
            owner = owners.get(key)
            if owner is not None:
                return owner if end_blocks * self.block_tokens >= CACHE_THRESHOLD * seq.prompt_tokens else -1
        return -1

    def _record(self, seq: EngineSequence, index: int) -> None:
        """Remember where the request's prompt parts, own input and answer will be resident."""
        request = seq.journey.request
        for key, _end_blocks in seq.prefix:
            self._own(key, index)
        for key in (request.own_key, request.output_key):
            if key >= 0:
                self._own(key, index)

    def _own(self, key: int, index: int) -> None:
        """Record part ``key`` on replica ``index``; one recorded on another replica becomes shared."""
        owners = self._owners
        owner = owners.get(key)
        if owner is None:
            if len(owners) >= MAX_PREFIX_OWNERS:
                del owners[next(iter(owners))]  # the oldest record goes first
            owners[key] = index
        elif owner != index:
            owners[key] = SHARED_PART


Balancer = RoundRobin | LeastOutstanding


def make_balancer(name: str, block_tokens: int = 16) -> Balancer:
    """The load balancer called ``name`` (a stage's ``load_balancer``) for a pool with ``block_tokens`` KV blocks."""
    if name == "round_robin":
        return RoundRobin()
    if name == "least_outstanding":
        return LeastOutstanding()
    if name == "prefix_aware":
        return PrefixAware(block_tokens)
    raise ValueError(f"unknown load balancer {name!r}; balancers are round_robin, least_outstanding, prefix_aware")


def route_image_policy(route: Route, tier: str) -> ImagePolicy | None:
    """The image policy a route imposes on a request of ``tier`` (``None``: the model's own)."""
    policy = route.image_policy
    if isinstance(policy, TieredImagePolicy):
        return policy.by_tier.get(tier, policy.by_tier.get("default"))
    return policy


class Router:
    """Dispatches requests along their routes and collects them when done."""

    def __init__(self, deployment: DeploymentSpec, stages: dict, classifier: object | None,
                 class_of: Callable[[str], int], finished: Callable[[Journey, float], None],
                 rejected: Callable[[Journey, float], None]) -> None:
        self._deployment = deployment
        self._stages = stages  # stage name -> stage runtime
        self._classifier = classifier
        self._class_of = class_of
        self._finished = finished
        self._rejected = rejected
        self._routes: dict[str, tuple[tuple, Route]] = {}
        # (class, tier) -> (stage runtimes, image policy, class index)
        self._dispatch: dict[tuple[str, str], tuple[tuple, ImagePolicy | None, int]] = {}

    def route_of(self, request_class: str) -> tuple[tuple, Route]:
        """Stage runtimes and route of a class (resolved once per class)."""
        cached = self._routes.get(request_class)
        if cached is None:
            route = self._deployment.route_for(request_class)
            path = tuple(self._stages[name] for name in route.path)
            if self._classifier is not None:
                path = (self._classifier, *path)
            cached = self._routes[request_class] = (path, route)
        return cached

    def arrive(self, request: Request, now_s: float, user: int = -1) -> Journey:
        """A new request enters the deployment."""
        key = (request.request_class, request.tier)
        dispatch = self._dispatch.get(key)
        if dispatch is None:
            path, route = self.route_of(request.request_class)
            dispatch = self._dispatch[key] = (path, route_image_policy(route, request.tier),
                                              self._class_of(request.request_class))
        path, policy, index = dispatch
        journey = Journey(request, index, path, policy, user)
        for stage in path:  # each has it still to pass (StageRuntime.pending)
            stage.pending += 1
        path[0].submit(journey, now_s)
        return journey

    def leave(self, journey: Journey, now_s: float) -> None:
        """``journey`` finished its current stage: on to the next, or done."""
        journey.path[journey.hop].pending -= 1
        if journey.hop == len(journey.path) - 1:
            self._finished(journey, now_s)
            return
        journey.hop += 1
        journey.stage_enter_s = now_s
        journey.queue_at_enter_s = journey.queue_s
        journey.path[journey.hop].submit(journey, now_s)

    def reject(self, journey: Journey, now_s: float) -> None:
        """A stage cannot serve ``journey`` at all (e.g. its prompt exceeds the KV cache)."""
        for stage in journey.path[journey.hop:]:  # it will pass none of them
            stage.pending -= 1
        self._rejected(journey, now_s)
