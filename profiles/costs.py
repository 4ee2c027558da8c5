"""The cost rule, in one place: GPU-hours x price per GPU-hour; hosted API calls billed per million tokens;
spend over the simulated horizon scaled to a day; cost per 1,000 requests.

Each function is plain arithmetic over its arguments, so the same rule evaluates floats (the simulator's
and the plan's costs) and ``planner.formulas.Formula`` cells (the workbook's live formulas, which a finance
planner can change a price in): one rule, two renderings, never a second copy. USD, hours, seconds.
"""

from collections.abc import Iterable
from typing import Any

HOURS_PER_DAY = 24.0
SECONDS_PER_DAY = 86_400.0
TOKENS_PER_PRICE_UNIT = 1e6  # API prices are USD per million tokens


def gpu_cost_usd(gpu_hours: Any, usd_per_gpu_hour: Any) -> Any:
    """Renting ``gpu_hours`` GPU-hours (GPUs x hours) at ``usd_per_gpu_hour``."""
    return gpu_hours * usd_per_gpu_hour


def pools_cost_usd(rentals: Iterable[tuple[Any, Any]]) -> Any:
    """Renting several pools of GPUs, each ``(gpu_hours, usd_per_gpu_hour)`` at its own price: a stage whose
    prefill and decode (or encoder and LLM) pools run on different GPUs pays each pool's price (0 for none)."""
    return sum(gpu_cost_usd(gpu_hours, usd_per_gpu_hour) for gpu_hours, usd_per_gpu_hour in rentals)


def api_cost_usd(input_tokens: Any, output_tokens: Any, usd_per_m_input_tokens: Any,
                 usd_per_m_output_tokens: Any) -> Any:
    """A hosted API's bill for ``input_tokens`` billed input and ``output_tokens`` output tokens."""
    return (input_tokens * usd_per_m_input_tokens + output_tokens * usd_per_m_output_tokens) / TOKENS_PER_PRICE_UNIT


def per_day(usd_over_horizon: Any, horizon_s: float) -> Any:
    """Spend over a simulated ``horizon_s`` seconds, scaled to a day (0 for an empty horizon)."""
    return usd_over_horizon * SECONDS_PER_DAY / horizon_s if horizon_s > 0 else 0.0 * usd_over_horizon


def per_1k_requests(usd_per_day: Any, requests_per_day: float) -> Any:
    """Cost per 1,000 requests at ``requests_per_day`` (None when there are none)."""
    return usd_per_day / requests_per_day * 1000 if requests_per_day else None
