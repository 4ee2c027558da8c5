"""What every stage runtime shares: a name, its router, and per-visit latency records.

A stage receives a journey with ``submit(journey, now_s)`` and, when done
with it, calls ``depart`` (on to the next stage) or ``reject``. Subclasses
override ``submit`` and report their GPUs, rental price and API spend; the
recorder reads ``stage_metrics``. Seconds, USD.
"""

import math
from array import array

from mypy_extensions import mypyc_attr

from profiles.costs import pools_cost_usd
from sim.journey import Journey
from sim.router import Router


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled (setup.py); the other stages are not
class StageRuntime:
    """Base of the stage simulations; override ``submit`` (and the cost properties)."""

    kind = "stage"

    def __init__(self, name: str) -> None:
        self.name = name
        self.router: Router  # set by bind()
        self.sojourn_s = array("d")  # one entry per visit
        self.queue_s = array("d")
        self.rejected_count = 0
        self.api_usd = 0.0
        # The run's end (sim.api.prepare sets it): a visit finishing later is counted, not scheduled.
        self.serve_until_s = math.inf
        self.beyond_end = 0
        # Requests in flight that have still to pass this stage, at it or upstream on their route (the router
        # counts them): what an overload check weighs against what the stage can serve (sim.api.OverloadWatch).
        self.pending = 0

    def bind(self, router: Router) -> None:
        """Connect the stage to the router that moves journeys on."""
        self.router = router

    def submit(self, journey: Journey, now_s: float) -> None:
        """Take ``journey`` at ``now_s`` (the hook every stage implements)."""
        raise NotImplementedError

    def depart(self, journey: Journey, now_s: float, output_tokens: int) -> None:
        """``journey`` is done here after producing ``output_tokens``; record the visit and move on."""
        self.sojourn_s.append(now_s - journey.stage_enter_s)
        self.queue_s.append(journey.queue_s - journey.queue_at_enter_s)
        journey.prev_output_tokens = output_tokens
        self.router.leave(journey, now_s)

    def reject(self, journey: Journey, now_s: float) -> None:
        """This stage can never serve ``journey``."""
        self.rejected_count += 1
        self.router.reject(journey, now_s)

    def first_token_at(self, journey: Journey, now_s: float) -> None:
        """The user's first token, when this is the route's last stage."""
        if journey.hop == len(journey.path) - 1 and journey.first_token_s < 0:
            journey.first_token_s = now_s

    @property
    def gpus(self) -> int:
        """GPUs the stage rents (0 for APIs and devices)."""
        return 0

    def gpu_pools(self) -> list[tuple[str, int, float]]:
        """What the stage rents, one entry per kind: (GPU id, GPUs, USD per GPU-hour); none for APIs and devices."""
        return []

    @property
    def usd_per_hour(self) -> float:
        """Rental cost of the stage's GPUs or servers per hour: each pool's GPU-hours in an hour at its price."""
        return float(pools_cost_usd((float(gpus), price) for _, gpus, price in self.gpu_pools()))

    @property
    def fixed_usd_per_day(self) -> float:
        """Costs per day that do not scale with time simulated or requests (devices)."""
        return 0.0

    def stage_metrics(self, span_s: float) -> dict:
        """Kind-specific metrics (utilisation, batches, KV...) over ``span_s`` simulated seconds."""
        return {}
