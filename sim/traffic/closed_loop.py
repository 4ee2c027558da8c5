"""Closed-loop traffic: a fixed number of users, each waiting for its answer before asking again.

This is how benchmark tools measure (fixed concurrency). Each user's ``k``-th
request, think time and client overhead are a function of (seed, user, ``k``)
alone, so a user's sequence of requests does not depend on how fast the
system answers it or the others (the same user sends the same requests to
every deployment: common random numbers). Draws are made in blocks, as
numpy draws cost little per value and much per call:

- up to ``GROUP_USERS`` users, each user has its own streams and draws its
  next ``BLOCK`` requests at once (about 24 kB a user while a block lasts);
- beyond, a block holds the ``k``-th draw of ``GROUP_USERS`` neighbouring
  users, from a generator keyed by (seed, the users' group, ``k``), made when
  the first of them needs it and dropped when the last has taken its own. A
  user then keeps only its three counters (24 bytes) and, while its neighbours
  run ahead, their draws for it; drawn draws not yet taken are at most
  ``MAX_KEPT_DRAWS`` a purpose (the oldest blocks go first, and are drawn
  again, the same, if a user still needs them), so a million users fit in a
  few hundred MB (README "Limits").

Units: seconds.
"""

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from sim.request import Request
from sim.traffic import sampling
from sim.traffic.arrivals import ClosedLoopArrivals
from sim.traffic.assembly import size_rows
from sim.traffic.sizes import Size
from sim.traffic.spec import TrafficSpec

BLOCK = 64  # one user's draws made at once (up to GROUP_USERS users)
# Up to this many users, each draws from its own streams (24 kB each); beyond, the k-th draws of this many
# users are made at once (1,024 values cost a numpy call 5 us each, 64 cost 26 us).
GROUP_USERS = 1_024
# Draws made but not yet taken, a purpose, beyond which the oldest blocks go (many users only): enough for every
# user's next request at once (all users start within the client's overhead, a millisecond), and more.
MAX_KEPT_DRAWS = 1_500_000
USER_STREAM = "<user>"  # stream name of closed-loop users (index = user number, or group of users)

Draw = TypeVar("Draw")  # what one draw is: a request's row or a float of seconds
Row = tuple[int, tuple]  # a drawn request: its class's index, its sizes in ``Request``'s positional order


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """Closed-loop settings the simulator reads: ``users`` and their mean think time."""

    users: int
    think_time_s: float


class ClosedLoopUsers:
    """Every user's requests, think times and client overheads for one run."""

    def __init__(self, spec: TrafficSpec, arrivals: ClosedLoopArrivals, seed: int) -> None:
        """Remember the mix; draws start on first use."""
        self._arrivals = arrivals
        self._names = [request_class.name for request_class in spec.classes]
        self._tiers = [request_class.tier for request_class in spec.classes]
        users = arrivals.users
        self._requests = UserDraws(users, seed, sampling.CLOSED_LOOP, lambda rng, n: _request_rows(spec, rng, n))
        self._thinks = UserDraws(users, seed, sampling.THINK, _size_drawer(arrivals.think_time_s))
        self._overheads = UserDraws(users, seed, sampling.CLIENT, _size_drawer(arrivals.client_overhead_s))
        self._next_id = 0

    def next_request(self, user: int, now_s: float) -> Request:
        """The next request of ``user``, stamped to arrive at ``now_s`` with the next free id."""
        k, row = self._requests.next(user)
        self._next_id += 1
        return Request(self._next_id - 1, now_s, self._names[k], *row, self._tiers[k])  # type: ignore[call-arg]

    def start_delays_s(self) -> list[float]:
        """When each user sends its first request, in user order: its place in the ramp-up plus its first client
        overhead. Drawn at once (one numpy call per ``GROUP_USERS`` users), before any user has drawn an overhead."""
        overheads = self._overheads.first_of_every_user()
        return [self._ramp_s(user) + overhead for user, overhead in enumerate(overheads)]

    def _ramp_s(self, user: int) -> float:
        """``user``'s place in the ramp-up: users start evenly over ``ramp_up_s``."""
        return self._arrivals.ramp_up_s * user / self._arrivals.users

    def think_time_s(self, user: int) -> float:
        """The next think time of ``user``, seconds."""
        return self._thinks.next(user)

    def next_gap_s(self, user: int) -> float:
        """Seconds from ``user``'s last answer to its next request: a think time plus the client's overhead."""
        think_s = self._thinks.next(user)
        return think_s + self._overheads.next(user)


class UserDraws(Generic[Draw]):
    """One purpose's draws for every user (requests, think times or overheads): user ``u``'s ``k``-th draw
    depends on (seed, ``u``, ``k``) only, whatever order the users ask in."""

    def __init__(self, users: int, seed: int, purpose: int, drawer: Callable[[np.random.Generator, int], list[Draw]]) -> None:
        self._users = users
        self._seed = seed
        self._purpose = purpose
        self._drawer = drawer  # ``drawer(rng, n)``: n draws from rng, as a list
        self.width = 1 if users <= GROUP_USERS else GROUP_USERS  # users a block serves
        self.depth = BLOCK if self.width == 1 else 1  # draws of each of them a block holds
        self._taken = array("q", bytes(8 * users))  # per user: how many draws it has taken
        self._groups = -(-users // self.width)
        # Block number x groups + group (an int: cheaper to hash than a pair) -> draws (None once taken).
        self._blocks: dict[int, list[Draw | None]] = {}
        self._left: dict[int, int] = {}  # draws of a block still to be taken
        self._streams: dict[int, np.random.Generator] = {}  # one user's own stream (``width`` 1)
        self.kept = 0  # draws made and not yet taken

    def next(self, user: int) -> Draw:
        """``user``'s next draw."""
        k = self._taken[user]
        self._taken[user] = k + 1
        group, member = divmod(user, self.width)
        number, step = divmod(k, self.depth)
        key = number * self._groups + group
        block = self._blocks.get(key)
        if block is None:
            block = self._draw(group, number)
        slot = member * self.depth + step
        value = block[slot]
        assert value is not None  # each user takes each slot once
        block[slot] = None
        self.kept -= 1
        left = self._left[key] - 1
        if left:
            self._left[key] = left
        else:
            del self._blocks[key], self._left[key]
        return value

    def first_of_every_user(self) -> list[Draw]:
        """Every user's first draw, in user order, as ``next`` would give them; none may have drawn yet."""
        assert self.kept == 0 and not any(self._taken), "users drew already"  # noqa: PT018 - one precondition
        if self.width == 1:  # a user's own stream: its first block stays for its next draws
            return [self.next(user) for user in range(self._users)]
        firsts: list[Draw] = []
        for group in range(-(-self._users // self.width)):  # block 0 of each group, taken by all its members
            rng = sampling.stream(self._seed, USER_STREAM, self._purpose, group, 0)
            firsts.extend(self._drawer(rng, self.width)[:self._users - group * self.width])
        self._taken = array("q", [1]) * self._users
        return firsts

    def _draw(self, group: int, number: int) -> list[Draw | None]:
        """Block ``number`` of ``group``: a user's own stream goes on; a group's block has its own generator."""
        if self.width == 1:  # one user takes its blocks in order, from one stream
            rng = self._streams.get(group)
            if rng is None:
                rng = self._streams[group] = sampling.stream(self._seed, USER_STREAM, self._purpose, group)
        else:
            rng = sampling.stream(self._seed, USER_STREAM, self._purpose, group, number)
            while self.kept > MAX_KEPT_DRAWS - GROUP_USERS and self._blocks:  # the oldest blocks go first
                oldest = next(iter(self._blocks))
                self.kept -= self._left.pop(oldest)
                del self._blocks[oldest]
        block: list[Draw | None] = list(self._drawer(rng, self.width * self.depth))
        members = min(self.width, self._users - group * self.width)
        key = number * self._groups + group
        self._blocks[key] = block
        self._left[key] = members * self.depth
        self.kept += members * self.depth
        return block


def _size_drawer(size: Size) -> Callable[[np.random.Generator, int], list[float]]:
    """Draws of ``size`` as floats."""
    return lambda rng, n: sampling.draw(size, rng, n).tolist()


def _request_rows(spec: TrafficSpec, rng: np.random.Generator, n: int) -> list[Row]:
    """``n`` requests drawn by share: each its class's index and its sizes (ids and times are set when sent)."""
    shares = spec.shares()
    picks = rng.choice(len(shares), size=n, p=np.array(list(shares.values())))
    slots: list[Row | None] = [None] * n
    for k, request_class in enumerate(spec.classes):
        where = np.flatnonzero(picks == k).tolist()
        rows = size_rows(sampling.sample_class(request_class, rng, len(where)))
        for slot, row in zip(where, rows, strict=True):
            slots[slot] = (k, row)
    return slots  # type: ignore[return-value]  # every slot was filled
