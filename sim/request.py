"""A request as the simulator carries it: raw inputs, not tokens.

Tokens depend on the model that serves the request (each model's image
policy), so traffic produces raw inputs and every stage counts its own tokens.
Sizes: pixels, seconds, tokens.

A request may carry *context* before its own input: a class's shared system
prompt and, in a conversation, every earlier turn (its inputs and the
answer). Each context part has a key unique to its content and to the parts
before it, which is what prefix caching matches (``sim.kvcache``).
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the sessions module builds requests
    from sim.traffic.sessions import Session

# One context part: (key, images as (width_px, height_px) each, audio seconds, text tokens).
Part = tuple[int, tuple[tuple[int, int], ...], float, int]


# NOTE: not frozen, for speed: a frozen dataclass sets each field through
# object.__setattr__, which made building requests 10% of a simulation. Treat a
# Request as immutable all the same (derive new ones with dataclasses.replace).
@dataclass(slots=True, unsafe_hash=True)
class Request:
    """One user request (immutable by convention, hashable)."""

    id: int
    arrival_s: float
    request_class: str
    images: tuple[tuple[int, int], ...] = ()  # (width_px, height_px) each
    audio_s: float = 0.0
    video_s: float = 0.0
    video_fps: float = 0.0
    video_frame_px: tuple[int, int] = (0, 0)
    text_tokens: int = 0
    output_tokens: int = 1
    tier: str = "default"  # what the router may read, e.g. "high_res"
    context: tuple[Part, ...] = ()  # what the prompt re-sends before the request's own input
    own_key: int = -1  # key of the own input as a part of later prompts (-1: a one-off, never re-sent)
    output_key: int = -1  # key of the answer as a part of the next turn's prompt (-1: no next turn)
    turn: int = 0  # 1, 2, ... within a conversation; 0 for a single request
    session: "Session | None" = field(default=None, compare=False)  # the conversation of this turn
