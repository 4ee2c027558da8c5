"""Routing: which stages a request visits, and which replica of a pool serves it.

``Router`` sends each arriving request along the route of its class (first
through the classifier stage when the deployment has one), hands it from
stage to stage and reports it to the recorder when it leaves the last one.
Load balancers pick a replica within a pool: round-robin, or least
outstanding requests (ties to the lowest index). Seconds.
"""

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TypeVar

from profiles.tokens import ImagePolicy
from sim.deployment import DeploymentSpec, Route, TieredImagePolicy
from sim.journey import Journey
from sim.request import Request

_outstanding = attrgetter("outstanding")
Server = TypeVar("Server")  # a replica or an encoder server: anything with ``outstanding``


class RoundRobin:
    """Replicas in turn, whatever their load."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, replicas: Sequence[Server]) -> Server:
        """The next replica in turn."""
        replica = replicas[self._next % len(replicas)]
        self._next += 1
        return replica


class LeastOutstanding:
    """The replica with the fewest requests assigned and not yet finished."""

    def pick(self, replicas: Sequence[Server]) -> Server:
        """The least loaded replica (the first one on ties, as ``min`` keeps)."""
        if len(replicas) == 1:  # single-replica pools (the classifier) skip the keyed min
            return replicas[0]
        return min(replicas, key=_outstanding)


LOAD_BALANCERS: dict[str, type[RoundRobin] | type[LeastOutstanding]] = {
    "round_robin": RoundRobin,
    "least_outstanding": LeastOutstanding,
}


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
        path[0].submit(journey, now_s)
        return journey

    def leave(self, journey: Journey, now_s: float) -> None:
        """``journey`` finished its current stage: on to the next, or done."""
        if journey.hop == len(journey.path) - 1:
            self._finished(journey, now_s)
            return
        journey.hop += 1
        journey.stage_enter_s = now_s
        journey.queue_at_enter_s = journey.queue_s
        journey.path[journey.hop].submit(journey, now_s)

    def reject(self, journey: Journey, now_s: float) -> None:
        """A stage cannot serve ``journey`` at all (e.g. its prompt exceeds the KV cache)."""
        self._rejected(journey, now_s)
