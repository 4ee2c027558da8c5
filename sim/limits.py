"""Bounds on every input that sets how much time or memory a run takes, in one place.

The scenario schema (``Field(le=...)``), the scenario checks
(``planner.scenario``), the CLI options (``planner.cli``) and the GUI read
these numbers from here, so a file, a command-line override and an editor
accept the same inputs. Each bound is far above what a serving deployment
or a benchmark needs, and low enough that no accepted input can make a run
take hours or exhaust memory before it starts (README "Limits").
``run_volume`` estimates the requests one simulation will generate, so
``validate`` refuses a run of billions of requests before any work. Units:
seconds, requests, pixels, tokens.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from profiles.costs import SECONDS_PER_DAY  # one day, defined once (the day costs scale to)

# Time.
MAX_HORIZON_S = 31 * SECONDS_PER_DAY  # a month of simulated time; the GUI's horizon box uses it too
MIN_AUTOSCALE_WINDOW_S = 300.0  # autoscaling windows: at most 288 a day, each one simulated
# A burst or MMPP state must last this long on average, and a run may cross at most
# MAX_BURST_PERIODS of them (each costs a draw): ``mean_burst_s: 1e-300`` would never end.
MIN_BURST_PERIOD_S = 1e-3
MAX_BURST_PERIODS = 2_000_000

# Sizes of a deployment (each replica, worker or server is an object in memory).
MAX_REPLICAS = 10_000  # one pool: a stage, an encoder/prefill/decode pool, the classifier
MAX_TENSOR_PARALLEL = 128  # GPUs per replica
MAX_CPU_WORKERS = 1_024  # preprocessing workers per replica
MAX_SERVERS = 100_000  # synthetic FIFO servers, a hosted API's calls in flight
MAX_BATCH_SIZE = 1_000_000  # sequences per engine step (memory is checked against the GPU anyway)
MAX_BATCHED_TOKENS = 100_000_000  # tokens per engine step
MIN_SERVICE_S = 1e-6  # a synthetic server's mean service time: simulated time must move on

# Sizes of one request (a distribution's largest draw counts).
MAX_IMAGES_PER_REQUEST = 100
MAX_IMAGE_SIDE_PX = 65_535  # the largest JPEG side
MAX_MEDIA_S = SECONDS_PER_DAY  # audio or video seconds of one request
MAX_VIDEO_FPS = 240.0
MAX_TOKENS = 100_000_000  # prompt text or output tokens of one request

# Traffic volume.
MAX_RATE_RPS = 1e6  # offered rate of a mix; keeps a chunk's draws bounded
# An offline batch: every request arrives at time 0, before the run's first progress check (an overload
# beyond doubt on counted requests is also checked every 10,000 arrivals: sim.driver). 10,000,000 took minutes.
MAX_OFFLINE_REQUESTS = 1_000_000
# Closed-loop users: beyond 1,024 a user keeps three counters, and draws are made for 1,024 users at once
# (sim.traffic.closed_loop): a million users cost their drawn requests (some 400 bytes each) and their
# requests in flight (README "Limits": peak RSS at 1,000,000 users). A million is the case, far
# beyond the concurrency benchmark tools are run with; each user sends at least one request.
MAX_CLOSED_LOOP_USERS = 1_000_000
# Requests one simulation may generate over its horizon: checked up front for open loops, offline
# batches and traces; a closed loop (its volume depends on the deployment's speed) ends its arrivals there. About a quarter of an hour of the compiled
# engine at its measured 36,000 requests/s; a day at 350 req/s.
MAX_RUN_REQUESTS = 30_000_000

# Error messages list at most this many names (a header of 30,000 columns, 20,000 classes), each cut short.
MAX_NAMES_LISTED = 20
MAX_NAME_CHARS = 40

# Command line.
MAX_SEED = 2**63 - 1
MAX_LOCAL_WORKERS = 256  # worker processes ``plan --workers`` starts


@dataclass(frozen=True)
class RunVolume:
    """Requests a simulation is expected to generate, and the phrase that explains the figure."""

    requests: float
    how: str

    def problem(self) -> str | None:
        """Why the run is refused (too many requests), or None when it is within ``MAX_RUN_REQUESTS``."""
        if self.requests <= MAX_RUN_REQUESTS:
            return None
        return (f"about {self.requests:,.0f} requests ({self.how}), more than the {MAX_RUN_REQUESTS:,} one "
                f"simulation may run; shorten the horizon or lower the rate")


def burst_periods_problem(mean_sojourns_s: list[float], horizon_s: float) -> str | None:
    """Why a burst chain with these mean stays cannot run over ``horizon_s`` (None: it can)."""
    shortest = min(mean_sojourns_s)
    if shortest < MIN_BURST_PERIOD_S:
        return f"a mean period of {shortest:g} s is below {MIN_BURST_PERIOD_S:g} s"
    periods = horizon_s / shortest  # at most this many state changes on average
    if periods > MAX_BURST_PERIODS:
        return (f"{readable(horizon_s)} s of periods as short as {shortest:g} s is about {periods:,.0f} state changes, "
                f"more than {MAX_BURST_PERIODS:,}; lengthen the periods or shorten the horizon")
    return None


def listed(names: Sequence[str], show: Callable[[str], str] | None = None) -> str:
    """At most ``MAX_NAMES_LISTED`` names, comma-separated, then how many more; each name as ``show`` quotes it
    (a file's content: ``profiles.files.snippet``), by default cut at ``MAX_NAME_CHARS``."""
    text = ", ".join(show(name) if show else name[:MAX_NAME_CHARS] for name in names[:MAX_NAMES_LISTED])
    return text + (f" and {len(names) - MAX_NAMES_LISTED:,} more" if len(names) > MAX_NAMES_LISTED else "")


def readable(value: float) -> str:
    """A figure as people read it: 2,000,000 and 17.5, not 2e+06."""
    return f"{value:,.0f}" if value == round(value) and abs(value) < 1e15 else f"{value:,.6g}"
