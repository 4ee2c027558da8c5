"""``TrafficSource``: a ``TrafficSpec`` plus a seed as a stream of ``Request``s for one run.

Open loop (poisson, diurnal, bursty, offline, trace): ``requests(horizon_s)``
is a lazy, time-ordered generator. Closed loop: the simulator runs ``users``
loops, started at ``start_delays_s()`` (ramp-up, client overhead); each
calls ``next_request(user, now_s)`` ``next_gap_s(user)`` (think time,
client overhead) after its last request returns. Same seed, same requests, in
any process. Units: seconds, requests per second.
"""

import heapq
import math
from collections.abc import Iterator, Sequence

from profiles.errors import ConfigurationError
from sim.request import Request
from sim.traffic import sampling
from sim.traffic.arrivals import ClosedLoopArrivals, OfflineArrivals, TraceArrivals
from sim.traffic.closed_loop import ClosedLoop, ClosedLoopUsers
from sim.traffic.offline import offline_requests
from sim.traffic.open_loop import intensity, open_loop_requests
from sim.traffic.replay import replay_trace, trace_rates
from sim.traffic.sessions import Conversations
from sim.traffic.spec import TrafficSpec

TRACE_STREAM = "<trace>"  # stream name of the trace rate multiplier


class TrafficSource:
    """Requests for one simulation run of ``spec`` with ``seed`` (and, for ``kind: trace``, the trace)."""

    def __init__(self, spec: TrafficSpec, seed: int, trace: Sequence[Request] | None = None) -> None:
        """Hold the inputs; nothing is drawn until requests are asked for."""
        if spec.arrivals.kind == "trace" and trace is None:
            raise ConfigurationError("traffic.arrivals: kind 'trace' needs the loaded trace requests")
        self._spec = spec
        self._seed = seed
        self._trace = trace
        self._users: ClosedLoopUsers | None = None
        self._conversations = Conversations(spec, seed)

    @property
    def _replayed(self) -> Sequence[Request]:
        """The trace of a ``kind: trace`` source (``__init__`` made sure there is one)."""
        assert self._trace is not None
        return self._trace

    @property
    def spec(self) -> TrafficSpec:
        """The traffic description this source draws from."""
        return self._spec

    @property
    def class_names(self) -> tuple[str, ...]:
        """Declared classes (file order), then further classes found in a replayed trace (sorted)."""
        declared = self._spec.class_names
        if self._trace is None:
            return declared
        extra = sorted({r.request_class for r in self._trace} - set(declared))
        return declared + tuple(extra)

    @property
    def closed_loop(self) -> ClosedLoop | None:
        """Closed-loop settings (users, mean think time), or None for open-loop traffic."""
        arrivals = self._spec.arrivals
        if not isinstance(arrivals, ClosedLoopArrivals):
            return None
        return ClosedLoop(arrivals.users, sampling.size_mean(arrivals.think_time_s))

    @property
    def mean_rate_rps(self) -> float:
        """Mean offered load, requests/s; nan for closed loop and offline (no offered rate)."""
        return self._rates()[0]

    @property
    def peak_rate_rps(self) -> float:
        """Peak offered load, requests/s: diurnal peak x top burst state, or a trace's busiest minute."""
        return self._rates()[1]

    def requests(self, horizon_s: float) -> Iterator[Request]:
        """Open-loop arrivals in [0, ``horizon_s``), time-ordered and generated lazily.

        Empty for closed loop. Each call starts afresh from the seed, so two
        calls yield the same requests. Requests of classes with a system
        prompt or conversations carry their context (``sim.traffic.sessions``);
        a conversation's later turns come from ``next_turn``.
        """
        conversations = Conversations(self._spec, self._seed)
        self._conversations = conversations
        drawn = self._drawn_requests(horizon_s)
        return conversations.dressed(drawn) if conversations.active else drawn

    def every_request(self, horizon_s: float) -> Iterator[Request]:
        """What ``requests`` yields, each conversation's later turns and each failed task's retries too, in order
        of arrival: the load a run of ``horizon_s`` offers, for sizing without simulating (``planner.bounds``,
        autoscaling).

        Every answer is taken to come the moment its request arrives: a later turn follows after its think
        time alone and counts while that is within the horizon; a retry is drawn then, in time order with the
        first turns (as a run draws them, when the failed attempt ends). Under load turns arrive later, so a run
        of the same horizon sees these or fewer (a conversation cut by the horizon loses its last turns).
        """
        firsts = self.requests(horizon_s)
        upcoming = next(firsts, None)
        answered: list[tuple[float, int, Request]] = []  # (answered at, order, request) still to follow up
        order = 0
        while upcoming is not None or answered:
            if upcoming is not None and (not answered or upcoming.arrival_s <= answered[0][0]):
                request: Request | None = upcoming
                upcoming = next(firsts, None)  # drawn now, as a run draws the next arrival on this one's
            else:
                answered_s, _, last = heapq.heappop(answered)
                request = self.next_turn(last, answered_s)
                if request is None:
                    request = self.retry(last, answered_s)
            if request is not None and request.arrival_s < horizon_s:
                yield request
                order += 1
                heapq.heappush(answered, (request.arrival_s, order, request))

    def next_turn(self, last: Request, answered_s: float) -> Request | None:
        """The next turn of ``last``'s conversation, stamped to arrive after a think time; None when over."""
        session = last.session
        if session is None:
            return None
        return session.next_turn(last, answered_s)

    def retry(self, last: Request, now_s: float) -> Request | None:
        """A failed agent task's next attempt (its first request, arriving at ``now_s``), or None."""
        return self._conversations.retry(last, now_s)

    def _drawn_requests(self, horizon_s: float) -> Iterator[Request]:
        """Open-loop arrivals as drawn, before their context is added."""
        arrivals = self._spec.arrivals
        if isinstance(arrivals, ClosedLoopArrivals):
            return iter(())
        if isinstance(arrivals, OfflineArrivals):
            return offline_requests(self._spec, self._seed, arrivals.requests)
        if isinstance(arrivals, TraceArrivals):
            rng = sampling.stream(self._seed, TRACE_STREAM, sampling.TRACE)
            return replay_trace(self._replayed, self._spec, arrivals.rate_multiplier, rng, horizon_s)
        return open_loop_requests(self._spec, self._seed, horizon_s)

    def next_request(self, user: int, now_s: float) -> Request:
        """The next request of closed-loop ``user`` (0-based), arriving at ``now_s``."""
        return self._conversations.dress(self._closed_loop_users().next_request(user, now_s))

    def start_delays_s(self) -> list[float]:
        """When each closed-loop user sends its first request (ramp-up and client overhead), in user order,
        seconds (drawn at once: call before any user draws)."""
        return self._closed_loop_users().start_delays_s()

    def let_go(self) -> None:
        """Drop the closed loop's drawn requests (``sim.api.simulate``, once the run is measured)."""
        self._users = None

    def think_time_s(self, user: int) -> float:
        """The next think time of closed-loop ``user``, drawn from its own stream, seconds."""
        return self._closed_loop_users().think_time_s(user)

    def next_gap_s(self, user: int) -> float:
        """Seconds between closed-loop ``user``'s last answer and its next request (think + client overhead)."""
        return self._closed_loop_users().next_gap_s(user)

    def _closed_loop_users(self) -> ClosedLoopUsers:
        """The per-user streams of this run (created on first use)."""
        if self._users is None:
            arrivals = self._spec.arrivals
            if not isinstance(arrivals, ClosedLoopArrivals):
                raise ConfigurationError(
                    f"traffic.arrivals: closed-loop requests need kind 'closed_loop', not '{arrivals.kind}'")
            self._users = ClosedLoopUsers(self._spec, arrivals, self._seed)
        return self._users

    def _rates(self) -> tuple[float, float]:
        """(mean, peak) offered rate, requests/s."""
        arrivals = self._spec.arrivals
        if isinstance(arrivals, TraceArrivals):
            return trace_rates(self._replayed, arrivals.rate_multiplier)
        offered = intensity(self._spec)
        return (math.nan, math.nan) if offered is None else (offered.mean_rps, offered.peak_rps)
