"""Traffic: request classes with raw input sizes, and their arrivals (see ``spec`` and ``source``)."""

from sim.traffic.closed_loop import ClosedLoop
from sim.traffic.source import TrafficSource
from sim.traffic.spec import RequestClass, TrafficSpec

__all__ = ["ClosedLoop", "RequestClass", "TrafficSource", "TrafficSpec"]
