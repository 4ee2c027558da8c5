"""Seeded random draws for the simulator, in blocks for speed, one stream per purpose.

Streams come from ``numpy.random.SeedSequence((seed, *key))``: the same
scenario seed gives the same draws in any process (no ``hash()`` of strings).
"""

import math

import numpy as np

BLOCK = 4096
Z_P99 = 2.3263478740408408  # standard normal quantile at 0.99


def stream(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for ``(seed, *key)``."""
    return np.random.default_rng(np.random.SeedSequence((seed, *key)))


class Draws:
    """Standard normal and unit exponential variates drawn ``BLOCK`` at a time."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._normal: list[float] = []
        self._exponential: list[float] = []

    def normal(self) -> float:
        """One N(0, 1) variate."""
        if not self._normal:
            self._normal = self._rng.standard_normal(BLOCK).tolist()[::-1]
        return self._normal.pop()

    def exponential(self) -> float:
        """One Exp(1) variate."""
        if not self._exponential:
            self._exponential = self._rng.standard_exponential(BLOCK).tolist()[::-1]
        return self._exponential.pop()


def lognormal_from_p50_p99(p50: float, p99: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with median ``p50`` and 99th percentile ``p99``."""
    return math.log(p50), max(0.0, math.log(p99 / p50) / Z_P99)


def lognormal_from_mean_cv(mean: float, cv: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with mean ``mean`` and coefficient of variation ``cv``."""
    sigma2 = math.log1p(cv * cv)
    return math.log(mean) - sigma2 / 2, math.sqrt(sigma2)
