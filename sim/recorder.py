"""Per-request outcomes as compact arrays (8 bytes per value), and arrivals/completions per time bin.

A million requests cost about 45 MB here; nothing per request survives
beyond these arrays. Times are simulated seconds; ``tpot_s`` is NaN for
requests with a single output token.
"""

from array import array
from typing import TYPE_CHECKING

from sim.journey import Journey
from sim.request import Request
from sim.timeseries import TimeBins

if TYPE_CHECKING:  # traffic is not part of the compiled engine
    from sim.traffic.sessions import Session


class Recorder:
    """Collects what the user saw of every request."""

    def __init__(self, class_names: tuple[str, ...] | list[str], horizon_s: float, bins: int) -> None:
        self.class_names: list[str] = list(class_names)
        self.class_index: dict[str, int] = {name: i for i, name in enumerate(self.class_names)}
        self.offered = [0] * len(self.class_names)
        self.rejected = [0] * len(self.class_names)
        self.klass = array("H")
        self.arrival_s = array("d")
        self.ttft_s = array("d")
        self.e2e_s = array("d")
        self.tpot_s = array("d")
        self.queue_s = array("d")
        self.turn = array("H")  # conversation turn of each completed request (0: not in a conversation)
        self.offered_turns: dict[tuple[int, int], int] = {}  # (class index, turn) -> turns sent
        # Per class index: seconds from each finished conversation's first request to its last answer,
        # and its turns.
        self.conversation_s: dict[int, array] = {}
        self.conversation_turns: dict[int, array] = {}
        # Per class index, agent tasks that ended (succeeded, or failed with no retry left):
        # (seconds from the first attempt's start, attempts, succeeded, output tokens over the attempts).
        self.tasks: dict[int, list[tuple[float, int, bool, int]]] = {}
        self.arrivals = TimeBins(horizon_s, bins)
        self.departures = TimeBins(horizon_s, bins)  # completions and rejections
        self.in_flight = 0
        self.last_event_s = 0.0

    def index_of(self, request_class: str) -> int:
        """The class's index (classes first seen in a trace are appended)."""
        index = self.class_index.get(request_class)
        if index is None:
            index = self.class_index[request_class] = len(self.class_names)
            self.class_names.append(request_class)
            self.offered.append(0)
            self.rejected.append(0)
        return index

    def arrived(self, class_index: int, now_s: float, turn: int = 0) -> None:
        """A request of class ``class_index`` (see ``index_of``) was offered (``turn`` of a conversation, or 0)."""
        self.offered[class_index] += 1
        if turn:
            key = (class_index, turn)
            self.offered_turns[key] = self.offered_turns.get(key, 0) + 1
        self.arrivals.add(now_s)
        self.in_flight += 1

    def finished(self, journey: Journey, now_s: float) -> None:
        """``journey`` left its last stage at ``now_s``."""
        arrival = journey.request.arrival_s
        first = journey.first_token_s if journey.first_token_s >= 0 else now_s
        output = journey.prev_output_tokens
        self.klass.append(journey.class_index)
        self.arrival_s.append(arrival)
        self.ttft_s.append(first - arrival)
        self.e2e_s.append(now_s - arrival)
        self.tpot_s.append((now_s - first) / (output - 1) if output > 1 else float("nan"))
        self.queue_s.append(journey.queue_s)
        self.turn.append(min(journey.request.turn, 65535))
        self.departures.add(now_s)
        self.in_flight -= 1
        self.last_event_s = now_s

    def conversation_done(self, class_index: int, last: Request, now_s: float) -> None:
        """The last turn of a conversation (``last``) was answered at ``now_s``."""
        session = last.session
        assert session is not None  # the driver reports only conversations
        started_s = session.started_s
        if class_index not in self.conversation_s:
            self.conversation_s[class_index] = array("d")
            self.conversation_turns[class_index] = array("H")
        self.conversation_s[class_index].append(now_s - started_s)
        self.conversation_turns[class_index].append(min(last.turn, 65535))

    def task_done(self, class_index: int, session: "Session", now_s: float) -> None:
        """An agent task ended at ``now_s`` with the attempt ``session``."""
        record = (now_s - session.task_started_s, session.attempt, session.succeeds, session.output_tokens)
        self.tasks.setdefault(class_index, []).append(record)

    def dropped(self, journey: Journey, now_s: float) -> None:
        """``journey`` was rejected by a stage."""
        self.rejected[journey.class_index] += 1
        self.departures.add(now_s)
        self.in_flight -= 1

    @property
    def completed(self) -> int:
        """Requests finished so far."""
        return len(self.e2e_s)
