"""Closed-loop traffic: a fixed number of users, each waiting for its answer before asking again.

This is how benchmark tools measure (fixed concurrency). Each user has its own
random streams (class choice and sizes; think times; the client's overhead
before each request), so a user's sequence of
requests does not depend on how fast the system answers the others. Draws are
made in blocks of ``BLOCK`` requests per user to keep per-request cost low.
Units: seconds.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from sim.request import Request
from sim.traffic import sampling
from sim.traffic.arrivals import ClosedLoopArrivals
from sim.traffic.assembly import build_request
from sim.traffic.sizes import Size
from sim.traffic.spec import TrafficSpec

BLOCK = 64  # requests (or think times) drawn at once per user
USER_STREAM = "<user>"  # stream name of closed-loop users (index = user number)


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """Closed-loop settings the simulator reads: ``users`` and their mean think time."""

    users: int
    think_time_s: float


class ClosedLoopUsers:
    """Per-user request and think-time streams for one run."""

    def __init__(self, spec: TrafficSpec, arrivals: ClosedLoopArrivals, seed: int) -> None:
        """Remember the mix; each user's streams and buffers start on first use."""
        self._spec = spec
        self._arrivals = arrivals
        self._seed = seed
        self._requests: dict[int, _UserStream] = {}
        self._thinks: dict[int, _UserStream] = {}
        self._overheads: dict[int, _UserStream] = {}
        self._next_id = 0

    def next_request(self, user: int, now_s: float) -> Request:
        """The next request of ``user``, stamped to arrive at ``now_s`` with the next free id."""
        stream = self._requests.get(user)
        if stream is None:
            stream = self._requests[user] = _UserStream(
                sampling.stream(self._seed, USER_STREAM, sampling.CLOSED_LOOP, user))
        if not stream.buffer:
            stream.buffer = _request_block(self._spec, stream.rng)
        template = stream.buffer.pop()
        self._next_id += 1
        return replace(template, id=self._next_id - 1, arrival_s=now_s)

    def start_delay_s(self, user: int) -> float:
        """When ``user`` sends its first request: its place in the ramp-up plus the client's overhead."""
        ramp_s = self._arrivals.ramp_up_s * user / self._arrivals.users
        return ramp_s + self._draw(self._overheads, sampling.CLIENT, self._arrivals.client_overhead_s, user)

    def think_time_s(self, user: int) -> float:
        """The next think time of ``user``, seconds."""
        return self._draw(self._thinks, sampling.THINK, self._arrivals.think_time_s, user)

    def next_gap_s(self, user: int) -> float:
        """Seconds from ``user``'s last answer to its next request: a think time plus the client's overhead."""
        think_s = self.think_time_s(user)
        return think_s + self._draw(self._overheads, sampling.CLIENT, self._arrivals.client_overhead_s, user)

    def _draw(self, streams: "dict[int, _UserStream]", purpose: int, size: Size, user: int) -> float:
        """The next draw of ``size`` from ``user``'s own stream for ``purpose``."""
        stream = streams.get(user)
        if stream is None:
            stream = streams[user] = _UserStream(sampling.stream(self._seed, USER_STREAM, purpose, user))
        if not stream.buffer:
            stream.buffer = sampling.draw(size, stream.rng, BLOCK).tolist()[::-1]
        return stream.buffer.pop()


@dataclass(slots=True)
class _UserStream:
    """One user's generator and the draws not yet handed out (next one last)."""

    rng: np.random.Generator
    buffer: list = field(default_factory=list)


def _request_block(spec: TrafficSpec, rng: np.random.Generator) -> list[Request]:
    """``BLOCK`` requests drawn by share, next one last (ids and times are set when handed out)."""
    shares = spec.shares()
    picks = rng.choice(len(shares), size=BLOCK, p=np.array(list(shares.values())))
    slots: list[Request | None] = [None] * BLOCK
    for k, request_class in enumerate(spec.classes):
        where = np.flatnonzero(picks == k).tolist()
        sizes = sampling.sample_class(request_class, rng, len(where))
        for i, slot in enumerate(where):
            slots[slot] = build_request(0, 0.0, request_class, sizes, i)
    return [slot for slot in reversed(slots) if slot is not None]  # every slot was filled
