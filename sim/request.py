"""A request as the simulator carries it: raw inputs, not tokens.

Tokens depend on the model that serves the request (each model's image
policy), so traffic produces raw inputs and every stage counts its own tokens.
Sizes: pixels, seconds, tokens.
"""

from dataclasses import dataclass


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
