"""A journey: one user request on its way along its route through a deployment's stages.

The router creates it at arrival and moves it from stage to stage; each
stage adds its queueing time, and the last stage sets the first-token and
finish times the user sees. Times are simulated seconds since the start.
"""

from profiles.tokens import ImagePolicy
from sim.request import Request


class Journey:
    """Mutable progress of one request (slots: thousands are alive at once)."""

    __slots__ = (
        "class_index",
        "first_token_s",
        "hop",
        "image_policy",
        "path",
        "prev_output_tokens",
        "queue_at_enter_s",
        "queue_s",
        "request",
        "stage_enter_s",
        "user",
    )

    def __init__(self, request: Request, class_index: int, path: tuple, image_policy: ImagePolicy | None,
                 user: int) -> None:
        self.request = request
        self.class_index = class_index
        self.path = path  # stage runtimes in visiting order
        self.image_policy = image_policy  # an ImagePolicy or None (the model's own)
        self.user = user  # closed-loop user id, -1 for open-loop arrivals
        self.hop = 0
        self.queue_s = 0.0
        self.queue_at_enter_s = 0.0  # queue_s when it entered the current stage
        self.first_token_s = -1.0
        self.stage_enter_s = request.arrival_s
        self.prev_output_tokens = 0

    @property
    def is_last_hop(self) -> bool:
        """Whether the current stage is the route's last (its tokens are the ones the user sees)."""
        return self.hop == len(self.path) - 1
