"""Closed forms of M/M/c (Erlang C) and M/D/1 waiting and sojourn times, for checking the simulator.

Rates per second, times in seconds. Percentiles are found by bisection on
the exact distribution functions.
"""

import math


def erlang_c(servers: int, offered: float) -> float:
    """Probability an arrival waits in M/M/c with offered load ``offered`` = lambda / mu erlangs."""
    rho = offered / servers
    top = offered**servers / math.factorial(servers) / (1 - rho)
    bottom = sum(offered**k / math.factorial(k) for k in range(servers)) + top
    return top / bottom


def mmc_wait_mean_s(lam: float, mu: float, servers: int) -> float:
    """Mean waiting time in queue."""
    return erlang_c(servers, lam / mu) / (servers * mu - lam)


def mmc_wait_tail(lam: float, mu: float, servers: int, t_s: float) -> float:
    """P(W > t) = C e^{-(c mu - lambda) t}."""
    return erlang_c(servers, lam / mu) * math.exp(-(servers * mu - lam) * t_s)


def mmc_sojourn_tail(lam: float, mu: float, servers: int, t_s: float) -> float:
    """P(W + S > t), W the wait and S ~ Exp(mu) independent of it."""
    c, gap = erlang_c(servers, lam / mu), servers * mu - lam
    if abs(gap - mu) < 1e-12:
        return math.exp(-mu * t_s) * (1 + c * mu * t_s)
    return math.exp(-mu * t_s) + c * mu / (mu - gap) * (math.exp(-gap * t_s) - math.exp(-mu * t_s))


def md1_wait_mean_s(lam: float, service_s: float) -> float:
    """Pollaczek-Khinchine mean wait with deterministic service."""
    rho = lam * service_s
    return rho * service_s / (2 * (1 - rho))


def md1_wait_cdf(lam: float, service_s: float, t_s: float) -> float:
    """Erlang's M/D/1 waiting-time distribution: (1-rho) sum_k [lam(kD-t)]^k/k! e^{-lam(kD-t)}."""
    rho = lam * service_s
    total = 0.0
    for k in range(int(t_s / service_s) + 1):
        x = lam * (k * service_s - t_s)
        total += x**k / math.factorial(k) * math.exp(-x)
    return (1 - rho) * total


def quantile(tail, q: float, hi: float = 1.0) -> float:
    """The t with tail(t) = 1 - q (``tail`` decreasing), by bisection."""
    target = 1 - q
    while tail(hi) > target:
        hi *= 2
    lo = 0.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if tail(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
