"""Context that requests re-send: a class's shared system prompt, and multi-turn conversations.

A class with ``system_prompt_tokens`` starts every prompt with the same
system-prompt part (one key per class: every request shares it). A class
with a ``session`` sends conversations: the first turn is drawn as any
request of the class; each later turn arrives a think time after the
previous answer, and its prompt is the system prompt, every earlier turn's
input and answer (keys of their own: a conversation's history is its own),
then the new input. The sizes of a conversation's later turns and its think
times are drawn when it starts, from the class's own session stream, so a
conversation does not depend on how fast it is answered. Tokens, seconds.
"""

from collections.abc import Iterator

from sim.request import Part, Request
from sim.traffic import sampling
from sim.traffic.spec import MAX_TURNS, RequestClass, TrafficSpec

SESSION_BLOCK = 64  # conversations drawn at once per class
CLASS_SHIFT = 56  # part keys: class | conversation | part, so keys of different classes never meet
PART_BITS = 12  # 2 parts per turn (input, answer) and the system prompt: MAX_TURNS fits


def part_key(class_index: int, conversation: int, part: int) -> int:
    """The key of ``part`` (0: the class's system prompt; 2k-1, 2k: turn k's input and answer)."""
    return ((class_index + 1) << CLASS_SHIFT) | (conversation << PART_BITS) | part


class Session:
    """One conversation: how many turns, and the later turns' inputs and think times."""

    __slots__ = ("attempt", "class_index", "first", "follow_ups", "is_task", "number", "output_tokens",
                 "started_s", "succeeds", "task_started_s", "think_s", "turns")

    def __init__(self, class_index: int, number: int, turns: int, follow_ups: list[tuple],
                 think_s: list[float], succeeds: bool = True) -> None:
        self.class_index = class_index
        self.number = number
        self.turns = turns
        self.follow_ups = follow_ups  # per later turn: (images, audio_s, text_tokens, output_tokens)
        self.think_s = think_s  # per later turn: seconds after the previous answer
        self.succeeds = succeeds  # as a task: whether this attempt succeeds
        self.is_task = False  # whether the class's conversations are tasks that can fail (success reported)
        self.started_s = 0.0
        self.attempt = 1  # as a task: 1 for the first try, 2 for the first retry, ...
        self.task_started_s = 0.0  # as a task: when its first attempt started
        self.output_tokens = 0  # generated over the task's attempts so far
        self.first: Request | None = None  # its first turn (a retry sends it again)

    def close(self) -> None:
        """The conversation is over (answered, rejected, or its next turn falls after the horizon): let go of its
        first turn. That turn and this session refer to each other, a cycle only a full collection would free,
        and runs hold those off (``sim.api.young_collections_only``). A retry has a session of its own."""
        self.first = None

    def key(self, part: int) -> int:
        """The key of one of this conversation's parts."""
        return part_key(self.class_index, self.number, part)

    def next_turn(self, last: Request, answered_s: float) -> Request | None:
        """The turn after ``last`` (answered at ``answered_s``), or None when the conversation is over."""
        turn = last.turn + 1
        if turn > self.turns:
            return None
        images, audio_s, text_tokens, output_tokens = self.follow_ups[turn - 2]
        asked: Part = (last.own_key, last.images, last.audio_s, last.text_tokens)
        answered: Part = (last.output_key, (), 0.0, last.output_tokens)
        output_key = self.key(2 * turn) if turn < self.turns else -1
        return Request(last.id, answered_s + self.think_s[turn - 2], last.request_class, images, audio_s,
                       0.0, 0.0, (0, 0), text_tokens, output_tokens, last.tier,
                       (*last.context, asked, answered), self.key(2 * turn - 1), output_key, turn, self)


class _ClassContext:
    """The system prompt of one class and, for a conversational class, its conversations to come."""

    def __init__(self, request_class: RequestClass, class_index: int, seed: int) -> None:
        self.request_class = request_class
        self.class_index = class_index
        tokens = request_class.system_prompt_tokens
        self.system: tuple[Part, ...] = ((part_key(class_index, 0, 0), (), 0.0, tokens),) if tokens else ()
        self._rng = sampling.stream(seed, request_class.name, sampling.SESSIONS)
        self._drawn: list[Session] = []  # next one last
        self._started = 0

    def dress(self, request: Request) -> Request:
        """``request`` with the system prompt before it and, in a conversation, as its first turn."""
        if self.request_class.session is None:
            return Request(request.id, request.arrival_s, request.request_class, request.images, request.audio_s,
                           request.video_s, request.video_fps, request.video_frame_px, request.text_tokens,
                           request.output_tokens, request.tier, self.system)
        if not self._drawn:
            self._drawn = self._draw_block()
        session = self._drawn.pop()
        session.started_s = session.task_started_s = request.arrival_s
        output_key = session.key(2) if session.turns > 1 else -1
        first = Request(request.id, request.arrival_s, request.request_class, request.images, request.audio_s,
                        request.video_s, request.video_fps, request.video_frame_px, request.text_tokens,
                        request.output_tokens, request.tier, self.system, session.key(1), output_key, 1, session)
        session.first = first
        return first

    def retry(self, failed: Session, now_s: float) -> Request | None:
        """A new attempt of ``failed``'s task from its first request, or None when out of retries."""
        session_spec = self.request_class.session
        first = failed.first
        if failed.succeeds or session_spec is None or failed.attempt > session_spec.max_retries or first is None:
            return None
        if not self._drawn:
            self._drawn = self._draw_block()
        session = self._drawn.pop()
        session.attempt, session.task_started_s = failed.attempt + 1, failed.task_started_s
        session.output_tokens, session.started_s = failed.output_tokens, now_s
        output_key = session.key(2) if session.turns > 1 else -1
        # The same task message after the same system prompt: its key (and cached blocks) are the first try's.
        session.first = Request(first.id, now_s, first.request_class, first.images, first.audio_s, first.video_s,
                                first.video_fps, first.video_frame_px, first.text_tokens, first.output_tokens,
                                first.tier, first.context, first.own_key, output_key, 1, session)
        return session.first

    def _draw_block(self) -> list[Session]:
        """``SESSION_BLOCK`` conversations, next one last: turns, later turns' sizes, think times."""
        spec, rng = self.request_class, self._rng
        session = spec.session
        assert session is not None  # dress() draws only for conversational classes
        turns = sampling.draw_int(session.turns, rng, SESSION_BLOCK, 1).clip(1, MAX_TURNS).tolist()
        later = sum(turns) - len(turns)
        follow = session.follow_up
        text = sampling.draw_int(follow.text_tokens if follow else spec.text_tokens, rng, later, 0).tolist()
        output_size = follow.output_tokens if follow and follow.output_tokens is not None else spec.output_tokens
        output = sampling.draw_int(output_size, rng, later, 1).tolist()
        audio = sampling.draw(follow.audio_s if follow else spec.audio_s, rng, later).tolist()
        images = sampling.draw_images(follow.images if follow else spec.images, rng, later)
        think = sampling.draw(session.think_time_s, rng, later).tolist()
        succeeds = (rng.uniform(size=SESSION_BLOCK) < session.success_probability).tolist()
        rows = list(zip(images, audio, text, output, strict=True))
        sessions, start = [], 0
        for count, success in zip(turns, succeeds, strict=True):
            self._started += 1
            drawn = Session(self.class_index, self._started, count, rows[start:start + count - 1],
                            think[start:start + count - 1], success)
            drawn.is_task = session.is_task
            sessions.append(drawn)
            start += count - 1
        return sessions[::-1]


class Conversations:
    """The context of every class that has some; ``dress`` gives a drawn request its context."""

    def __init__(self, spec: TrafficSpec, seed: int) -> None:
        self._classes = {c.name: _ClassContext(c, index, seed) for index, c in enumerate(spec.classes)
                         if c.has_context}

    @property
    def active(self) -> bool:
        """Whether any class carries context."""
        return bool(self._classes)

    def dress(self, request: Request) -> Request:
        """``request`` with its class's context (unchanged for a class without any)."""
        context = self._classes.get(request.request_class)
        return request if context is None else context.dress(request)

    def retry(self, last: Request, now_s: float) -> Request | None:
        """The first request of a new attempt when ``last`` ended a failed task with retries left, else None."""
        context = self._classes.get(last.request_class)
        if context is None or last.session is None:
            return None
        return context.retry(last.session, now_s)

    def dressed(self, requests: Iterator[Request]) -> Iterator[Request]:
        """``requests`` each with its class's context."""
        for request in requests:
            yield self.dress(request)


def mean_turns(request_class: RequestClass) -> float:
    """Mean turns per conversation of the class (1 for a class without sessions)."""
    if request_class.session is None:
        return 1.0
    return min(float(MAX_TURNS), max(1.0, sampling.size_mean(request_class.session.turns)))
