"""Time-varying arrival intensity: the 24-hour curve and burst modulation.

The offered rate at simulated time ``t`` (seconds) is
``mean_rps * diurnal(t) * burst(t)``; both factors have mean 1 (the diurnal
curve over a day, the burst chain in its stationary regime), so bursts and
daily cycles reshape the load without changing requests per day.
"""

from dataclasses import dataclass

import numpy as np

from profiles.errors import ConfigurationError
from sim.traffic.arrivals import SECONDS_PER_DAY, Bursts, DiurnalArrivals, MmppBursts, OnOffBursts

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class DiurnalCurve:
    """Relative rate by time of day (mean 1 over 24 h); simulated time 0 is ``start_s`` after midnight."""

    hourly_weights: tuple[float, ...] | None
    amplitude: float  # sinusoid: 1 + amplitude * cos(...); unused with hourly weights
    peak_hour: float
    start_s: float

    def factor(self, t_s: np.ndarray) -> np.ndarray:
        """Relative rate at simulated times ``t_s``."""
        hour = ((t_s + self.start_s) % SECONDS_PER_DAY) / SECONDS_PER_HOUR
        if self.hourly_weights is None:
            return 1.0 + self.amplitude * np.cos(2 * np.pi * (hour - self.peak_hour) / 24.0)
        weights = np.asarray(self.hourly_weights)
        # Linear between hour centres, wrapping around midnight.
        centres = np.arange(-0.5, 25.0, 1.0)
        values = np.concatenate(([weights[-1]], weights, [weights[0]])) / weights.mean()
        return np.interp(hour, centres, values)

    @property
    def peak_factor(self) -> float:
        """Highest relative rate of the day."""
        if self.hourly_weights is None:
            return 1.0 + self.amplitude
        return max(self.hourly_weights) / (sum(self.hourly_weights) / 24.0)


def diurnal_curve(spec: DiurnalArrivals, start_s: float) -> DiurnalCurve:
    """The curve described by ``spec``; a peak/trough ratio r gives amplitude (r-1)/(r+1)."""
    if spec.hourly_weights is not None:
        return DiurnalCurve(tuple(spec.hourly_weights), 0.0, spec.peak_hour, start_s)
    ratio = spec.peak_to_trough
    assert ratio is not None  # the validator requires weights or a ratio
    return DiurnalCurve(None, (ratio - 1.0) / (ratio + 1.0), spec.peak_hour, start_s)


@dataclass(frozen=True, slots=True)
class BurstChain:
    """A continuous-time Markov chain of rate multipliers, normalised to stationary mean 1."""

    multipliers: np.ndarray  # relative rate per state, normalised
    mean_sojourn_s: np.ndarray
    jumps: np.ndarray  # row-stochastic jump matrix, zero diagonal
    stationary: np.ndarray  # long-run share of time in each state

    @property
    def peak_factor(self) -> float:
        """Largest rate multiplier."""
        return float(self.multipliers.max())


def burst_chain(spec: Bursts) -> BurstChain:
    """The chain for on/off or MMPP bursts; on/off is the two-state case (calm, burst)."""
    if isinstance(spec, OnOffBursts):
        rates = np.array([1.0, spec.burst_multiplier])
        sojourns = np.array([spec.mean_gap_s, spec.mean_burst_s])
        jumps = np.array([[0.0, 1.0], [1.0, 0.0]])
    else:
        rates, sojourns, jumps = _mmpp_arrays(spec)
    stationary = _time_shares(jumps, sojourns)
    mean = float(stationary @ rates)
    if not mean > 0:
        raise ConfigurationError("the burst chain stays in states whose rate_multiplier is 0")
    return BurstChain(rates / mean, sojourns, jumps, stationary)


def _mmpp_arrays(spec: MmppBursts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rates, mean stays and jump matrix (default: uniform to the other states)."""
    size = len(spec.states)
    rates = np.array([s.rate_multiplier for s in spec.states])
    sojourns = np.array([s.mean_sojourn_s for s in spec.states])
    if spec.transitions is None:
        jumps = (np.ones((size, size)) - np.eye(size)) / (size - 1)
    else:
        jumps = np.asarray(spec.transitions, dtype=float)
    return rates, sojourns, jumps


def _time_shares(jumps: np.ndarray, sojourns: np.ndarray) -> np.ndarray:
    """Long-run share of time per state: embedded-chain visits weighted by mean stay."""
    size = len(sojourns)
    system = np.vstack([jumps.T - np.eye(size), np.ones(size)])
    target = np.concatenate([np.zeros(size), [1.0]])
    visits = np.clip(np.linalg.lstsq(system, target, rcond=None)[0], 0.0, None)
    shares = visits * sojourns
    return shares / shares.sum()


class BurstPath:
    """One sampled path of a ``BurstChain``, extended lazily as simulated time advances."""

    def __init__(self, chain: BurstChain, rng: np.random.Generator) -> None:
        """Start the path at time 0 in a state drawn from the stationary shares (drawn on first use)."""
        self._chain = chain
        self._rng = rng
        self._starts: list[float] = []
        self._states: list[int] = []
        self._end_s = 0.0

    def factor(self, t_s: np.ndarray) -> np.ndarray:
        """Rate multiplier at sorted times ``t_s`` (all at or after the last ``forget_before``)."""
        if len(t_s):
            self._extend_to(float(t_s[-1]))
        if not self._starts:
            return np.ones(len(t_s))
        segment = np.searchsorted(np.asarray(self._starts), t_s, side="right") - 1
        return self._chain.multipliers[np.asarray(self._states)[segment]]

    def forget_before(self, t_s: float) -> None:
        """Drop segments that end before ``t_s`` (keeps memory flat over long horizons)."""
        keep = max(0, int(np.searchsorted(np.asarray(self._starts), t_s, side="right")) - 1)
        del self._starts[:keep], self._states[:keep]

    def _extend_to(self, t_s: float) -> None:
        """Draw state changes until the path covers ``t_s``."""
        chain = self._chain
        if not self._starts:
            self._states.append(int(self._rng.choice(len(chain.stationary), p=chain.stationary)))
            self._starts.append(0.0)
            self._end_s = float(self._rng.exponential(chain.mean_sojourn_s[self._states[-1]]))
        while self._end_s <= t_s:
            state = int(self._rng.choice(len(chain.stationary), p=chain.jumps[self._states[-1]]))
            self._states.append(state)
            self._starts.append(self._end_s)
            self._end_s += float(self._rng.exponential(chain.mean_sojourn_s[state]))
