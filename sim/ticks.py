"""A bare SimPy event that calls one callback at a future simulated time (seconds).

``env.timeout`` builds a full ``Timeout`` (delay check, value, then a list to
append the callback to); the engine loop and the arrival chain schedule
hundreds of thousands of events per simulated hour and only need "call this
then". A ``Tick`` carries just what ``Environment.step`` reads (``callbacks``,
``_ok``) plus a value, and is scheduled at ``env.now + delay_s`` exactly as a
``Timeout`` would be, so runs stay bit-identical.
"""

from collections.abc import Callable
from heapq import heappush

import simpy
from simpy.events import NORMAL


class Tick:
    """A successful event with one callback (``value`` is what the callback reads)."""

    __slots__ = ("_ok", "callbacks", "value")

    def __init__(self, callback: Callable[["Tick"], None], value: object) -> None:
        self.callbacks: list | None = [callback]  # SimPy sets None once processed
        self.value = value
        self._ok = True  # Environment.step checks it: a Tick never fails


def call_later(env: simpy.Environment, delay_s: float, callback: Callable[[Tick], None],
               value: object = None) -> Tick:
    """Call ``callback(tick)`` at ``env.now + delay_s`` (``delay_s >= 0``, the caller's to ensure)."""
    tick = Tick(callback, value)
    env.schedule(tick, NORMAL, delay_s)  # type: ignore[arg-type]  # a Tick quacks like an Event
    return tick


def call_at(env: simpy.Environment, time_s: float, callback: Callable[[Tick], None], value: object = None) -> Tick:
    """Call ``callback(tick)`` at simulated time ``time_s`` (``>= env.now``) exactly, as if scheduled at time 0
    with delay ``time_s`` (``env.now + (time_s - env.now)`` can round off ``time_s``): SimPy's own queue entry."""
    tick = Tick(callback, value)
    heappush(env._queue, (time_s, NORMAL, next(env._eid), tick))  # type: ignore[misc]  # noqa: SLF001 - as schedule
    return tick
