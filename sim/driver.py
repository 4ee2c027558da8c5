"""The run loop: feeds traffic into a built deployment and advances simulated time in chunks.

Open-loop arrivals come from ``TrafficSource.requests`` (a lazy generator);
closed-loop users start over a ramp-up and send their next request a think
time plus the client's overhead after the previous one finished. Arrivals
stop at the horizon; requests in flight get ``drain_s`` more simulated
seconds, then the run ends whatever is left
(overload shows as unfinished requests, never as a run that does not end).
A conversation's next turn arrives a think time after its previous answer,
if that is before the horizon; a closed-loop user in a conversation sends
its turns, then thinks as usual.
Between chunks the driver reports progress and asks whether to cancel.
"""

from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
import simpy

from sim.journey import Journey
from sim.limits import MAX_RUN_REQUESTS
from sim.recorder import Recorder
from sim.request import Request
from sim.router import Router
from sim.ticks import Tick, call_at, call_later
from sim.traffic.source import TrafficSource

CHUNKS = 100  # progress/cancel checks per run
# Between progress checks, arrivals also bring on an overload check (``stop_early`` with rates not judged),
# every this many: a check costs microseconds a replica, these arrivals tens of milliseconds. A closed loop
# of a million users sends a million requests in its first millisecond, long before the first progress check.
ARRIVALS_PER_CHECK = 10_000


# Why a run stopped before its end (``Driver.stopped_because``; the JSON's ``stopped_because``).
OVERLOAD = "overload"  # an overload beyond doubt (sim.api.OverloadWatch)
REQUEST_LIMIT = "request_limit"  # a closed loop sent the MAX_RUN_REQUESTS one simulation may run


class _StoppedEarly(Exception):  # noqa: N818 - not an error: unwinds the event loop from an arrival
    """Raised from an arrival when ``stop_early`` said stop; ``Driver.run`` ends the run there."""


class SimulationCancelled(Exception):  # noqa: N818 - reads better than "...Error" at call sites
    """Raised by ``simulate`` when its ``cancel`` callback returned True between chunks."""


class Driver:
    """Connects a traffic source, a router and a recorder on one SimPy environment."""

    def __init__(self, env: simpy.Environment, source: TrafficSource, recorder: Recorder,
                 horizon_s: float, drain_s: float) -> None:
        """The router is set afterwards (``driver.router = ...``): it calls back into the driver."""
        self.env = env
        self.source = source
        self.router: Router
        self.recorder = recorder
        self.horizon_s = horizon_s
        self._sending_until_s = horizon_s  # closed-loop users and conversations send before this (or the limit's time)
        self.drain_s = drain_s
        self._arrivals: Iterator[Request] = iter(())
        self._sent = 0  # closed-loop requests sent so far
        self._arrival_count = 0  # requests arrived so far (every kind of arrival)
        self._next_check = ARRIVALS_PER_CHECK  # arrivals at which the next overload check between chunks runs
        self._starts_s: list[float] = []  # each closed-loop user's start time
        self._start_order: list[int] = []  # users by start time
        self._started = 0  # users of ``_start_order`` that have started
        # Asked between chunks before the horizon, and every ARRIVALS_PER_CHECK arrivals (with False: rates are
        # not judged then): True stops the run there (sim.api.OverloadWatch: an overload beyond doubt).
        self.stop_early: Callable[[float, bool], bool] | None = None
        self.stopped_s: float | None = None  # when the run stopped early (None: it ran to its end)
        self.stopped_because = OVERLOAD  # why it stopped early, if it did

    def start(self) -> None:
        """Schedule the traffic: open-loop arrivals, or the first request of every closed-loop user."""
        try:
            self._start_traffic()
        except _StoppedEarly:  # an offline batch (or users starting at once) overloaded at time 0
            self.stopped_s = float(self.env.now)

    def _start_traffic(self) -> None:
        closed = self.source.closed_loop
        if closed is None:
            self._arrivals = iter(self.source.requests(self.horizon_s))
            self._admit_due(next(self._arrivals, None))
            return
        # Users start in the order of their start times, one pending event at a time (a million users
        # waiting in SimPy's queue took 250 MB and a fifth of the run's time), each at its time exactly.
        starts_s = self.source.start_delays_s()
        self._starts_s = starts_s
        self._start_order = np.argsort(starts_s, kind="stable").tolist()  # stable: ties in user order
        self._started = 0
        self._start_due(None)

    def _start_due(self, event: Tick | None) -> None:
        """Send the first request of every user whose start time has come; wait for the next one.

        A start with nothing else due before it is made at once, the clock moved to it as SimPy's own step
        would move it for that start's event (a million users start within a millisecond: an event each cost
        a tenth of the run's time); otherwise it waits for an event of its own, after those due first."""
        env, order, starts_s = self.env, self._start_order, self._starts_s
        now_s = env.now
        while self._started < len(order):
            user = order[self._started]
            start_s = starts_s[user]
            if start_s > now_s:
                # Not from an event (not yet running: the chunk's end is not scheduled), or something is due
                # first (or at once, scheduled before it).
                if event is None or start_s >= env.peek():
                    call_at(env, start_s, self._start_due)
                    return
                env._now = now_s = start_s  # noqa: SLF001 - as Environment.step sets it for the next event
            self._started += 1
            self._send(user)
        self._starts_s, self._start_order = [], []  # every user has started

    # NOTE: open-loop arrivals are a chain of timeouts with a callback, not a SimPy
    # process: one event per request, without a generator to resume.
    def _admit_due(self, request: Request | None) -> None:
        """Admit ``request`` and the next ones while they are due; schedule the first one still to come."""
        env, arrivals = self.env, self._arrivals
        now_s = env.now
        while request is not None:
            delay = request.arrival_s - now_s
            if delay > 0:
                call_later(env, delay, self._arrived, request)
                return
            self._arrive(request, now_s)
            request = next(arrivals, None)

    def _arrived(self, event: Tick) -> None:
        self._arrive(cast(Request, event.value), self.env.now)  # _admit_due scheduled it with the request
        self._admit_due(next(self._arrivals, None))

    def _send(self, user: int) -> None:
        now_s = self.env.now
        if now_s >= self._sending_until_s:
            return
        if self._sent >= MAX_RUN_REQUESTS:  # a closed loop's volume shows only as it runs: no check before can say
            # Its arrivals end here, as at the horizon: the requests in flight get their drain time.
            self._sending_until_s = self.stopped_s = float(now_s)
            self.stopped_because = REQUEST_LIMIT
            return
        self._sent += 1
        self._arrive(self.source.next_request(user, now_s), now_s, user)

    def _arrive(self, request: Request, now_s: float, user: int = -1) -> None:
        """``request`` enters the deployment and is recorded; every ``ARRIVALS_PER_CHECK`` arrivals, an overload
        check."""
        self.recorder.arrived(self.router.arrive(request, now_s, user).class_index, now_s, request.turn)
        self._arrival_count += 1
        if self._arrival_count >= self._next_check:
            self._check_between_chunks(now_s)

    def _check_between_chunks(self, now_s: float) -> None:
        """Every ``ARRIVALS_PER_CHECK`` arrivals: stop here if the overload is beyond doubt on counted requests."""
        self._next_check = self._arrival_count + ARRIVALS_PER_CHECK
        if now_s < self._sending_until_s and self.stop_early is not None and self.stop_early(now_s, False):
            raise _StoppedEarly

    def finished(self, journey: Journey, now_s: float) -> None:
        """Router hook: record the request; its conversation goes on, or a closed-loop user thinks and sends."""
        self.recorder.finished(journey, now_s)
        request = journey.request
        session = request.session
        if session is not None:
            session.output_tokens += journey.prev_output_tokens
            follow_up = self.source.next_turn(request, now_s)
            if follow_up is None:
                self.recorder.conversation_done(journey.class_index, request, now_s)
                follow_up = self.source.retry(request, now_s)  # a failed agent task starts again
                if follow_up is None and session.is_task:
                    self.recorder.task_done(journey.class_index, session, now_s)
                session.close()
            if follow_up is not None and follow_up.arrival_s < self._sending_until_s:
                call_later(self.env, follow_up.arrival_s - now_s, self._turn, (follow_up, journey.user))
                return
            if follow_up is not None and follow_up.session is not None:  # after the horizon: never sent
                follow_up.session.close()
        self._next_for(journey.user)

    def _turn(self, event: Tick) -> None:
        """A conversation's next turn arrives."""
        request, user = cast(tuple[Request, int], event.value)
        self._arrive(request, self.env.now, user)

    def rejected(self, journey: Journey, now_s: float) -> None:
        """Router hook: record the rejection (a conversation ends there); a closed-loop user moves on."""
        self.recorder.dropped(journey, now_s)
        if journey.request.session is not None:
            journey.request.session.close()
        self._next_for(journey.user)

    def _next_for(self, user: int) -> None:
        if user >= 0:
            self._after(self.source.next_gap_s(user), user)

    def _after(self, delay_s: float, user: int) -> None:
        """Closed-loop ``user`` sends its next request ``delay_s`` from now (a bare ``Tick``: a million users wait
        at once)."""
        call_later(self.env, delay_s, self._user_ready, user)

    def _user_ready(self, event: Tick) -> None:
        self._send(cast(int, event.value))

    def let_go(self) -> None:
        """Drop the events still pending and the drawn requests, once the run is measured (``Replica.let_go``)."""
        self.env._queue.clear()  # noqa: SLF001 - SimPy's event queue: the run is over
        self.source.let_go()
        self._starts_s, self._start_order = [], []

    def run(self, progress: Callable[[float], None] | None, cancel: Callable[[], bool] | None) -> float:
        """Advance to the horizon, then drain; return the simulated end time."""
        end_s = self.horizon_s + self.drain_s
        step_s = end_s / CHUNKS
        t_s = 0.0
        if self.stopped_s is not None:  # overloaded beyond doubt as the traffic started (an offline batch)
            end_s = t_s = self.stopped_s
        while t_s < end_s:
            t_s = min(end_s, t_s + step_s)
            try:
                self.env.run(until=t_s)
            except _StoppedEarly:  # an arrival's check: the run ends at that arrival
                self.stopped_s = t_s = float(self.env.now)
                break
            if progress is not None:
                progress(t_s / end_s)
            if cancel is not None and cancel():
                raise SimulationCancelled(f"cancelled at {t_s:.0f} of {end_s:.0f} simulated seconds")
            if t_s >= self._sending_until_s and self.recorder.in_flight == 0:
                break
            if t_s < self._sending_until_s and self.stop_early is not None and self.stop_early(t_s, True):
                self.stopped_s = t_s
                break
        if progress is not None:
            progress(1.0)
        return t_s
