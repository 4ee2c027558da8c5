"""The workbook's inputs and the live cost formulas over them.

The "Assumptions" sheet starts with the input cells a finance planner edits: the price of each GPU
(USD per GPU-hour), of each hosted API (USD per million input and output tokens), and the GPUs of every
stage of every deployment. Every cost cell of the workbook (per stage, per deployment, per day and per
1,000 requests, the autoscale schedule and its totals) is a formula over those cells, built by calling
the cost rule of ``profiles.costs`` with ``planner.formulas.Formula`` arguments: the same rule the
simulator prices with, so the value cached in each cell is the plan's own number, and a changed price
moves every cost. Sizes the plan chose for each autoscale window and simulated quantities (tokens billed,
requests per day, device fleets' fixed cost) stay numbers inside the formulas.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from planner.autoscale import Schedule, Window
from planner.formulas import Formula
from planner.plan import PlanReport
from profiles.costs import (
    HOURS_PER_DAY,
    SECONDS_PER_DAY,
    api_cost_usd,
    per_1k_requests,
    per_day,
    pools_cost_usd,
)

SHEET = "Assumptions"
PRICE_COL, API_INPUT_COL, API_OUTPUT_COL, COUNT_COL = 1, 1, 2, 3
CENTS = 1e-9  # below this a stage's cost not explained by its GPUs and API calls is rounding


@dataclass(frozen=True)
class Pool:
    """GPUs of one kind in one stage: the price label (a row of the price table) and the count."""

    price_label: str
    gpus: int


@dataclass
class Inputs:
    """Where each input cell sits on the Assumptions sheet (rows from 0), with its value."""

    prices: dict[str, tuple[int, float]] = field(default_factory=dict)  # price label -> row, USD/GPU-hour
    apis: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # API -> row, USD/M in, USD/M out
    counts: dict[tuple[str, str, int], tuple[int, Pool]] = field(default_factory=dict)  # (deployment, stage, i)
    labels: dict[tuple[str, float], str] = field(default_factory=dict)  # (GPU id, USD/GPU-hour) -> price label

    def price(self, label: str) -> Formula:
        """The USD-per-GPU-hour cell of price row ``label``."""
        row, value = self.prices[label]
        return Formula.cell(SHEET, row, PRICE_COL, value)

    def pool_price(self, gpu: str, usd_per_gpu_hour: float) -> Formula:
        """The price cell of a pool of ``gpu`` priced ``usd_per_gpu_hour`` in a simulation; the number itself
        when no plan rents that GPU at that price (then no price row holds it)."""
        label = self.labels.get((gpu, float(usd_per_gpu_hour)))
        return self.price(label) if label is not None else Formula.number(usd_per_gpu_hour)

    def count(self, deployment: str, stage: str, index: int) -> Formula:
        """The GPUs cell of a stage's ``index``-th pool."""
        row, pool = self.counts[(deployment, stage, index)]
        return Formula.cell(SHEET, row, COUNT_COL, pool.gpus)

    def api_prices(self, api: str) -> tuple[Formula, Formula]:
        """The USD-per-million input and output token cells of ``api``."""
        row, usd_in, usd_out = self.apis[api]
        return Formula.cell(SHEET, row, API_INPUT_COL, usd_in), Formula.cell(SHEET, row, API_OUTPUT_COL, usd_out)


def stage_pools(report: PlanReport) -> tuple[dict[tuple[str, str], list[Pool]], dict[tuple[str, float], str]]:
    """Every stage's GPU pools, keyed (deployment, stage), and the price label of each (GPU, price): one label
    per distinct pair, the GPU's id unless a stage overrides its price."""
    labels: dict[tuple[str, float], str] = {}
    pools: dict[tuple[str, str], list[Pool]] = {}
    for plan in report.plans:
        for stage, metrics in plan.result.per_stage.items():
            for pool in metrics.get("gpu_pools") or []:
                key = (pool["gpu"], float(pool["usd_per_gpu_hour"]))
                if key not in labels:
                    taken = pool["gpu"] in labels.values()
                    labels[key] = f"{pool['gpu']} ({plan.name}/{stage})" if taken else pool["gpu"]
                pools.setdefault((plan.name, stage), []).append(Pool(labels[key], int(pool["gpus"])))
    return pools, labels


def layout(report: PlanReport) -> Inputs:
    """Decide every input cell's row: title, GPU prices, API prices, GPU counts."""
    pools, labels = stage_pools(report)
    inputs = Inputs(labels=labels)
    prices = {label: price for (_, price), label in labels.items()}
    row = 3  # 0: title, 2: section name, 3: header
    for label in sorted(prices):
        row += 1
        inputs.prices[label] = (row, prices[label])
    row += 3  # blank, section name, header
    for api, usd_in, usd_out in _api_prices(report):
        row += 1
        inputs.apis[api] = (row, usd_in, usd_out)
    row += 3
    for (deployment, stage), stage_list in pools.items():
        for index, pool in enumerate(stage_list):
            row += 1
            inputs.counts[(deployment, stage, index)] = (row, pool)
    return inputs


def _api_prices(report: PlanReport) -> list[tuple[str, float, float]]:
    """Each hosted API the plans call, with the prices the simulation billed at."""
    found: dict[str, tuple[float, float]] = {}
    for plan in report.plans:
        for metrics in plan.result.per_stage.values():
            if metrics.get("api") is not None and "usd_per_m_input_tokens" in metrics:
                found.setdefault(metrics["api"], (metrics["usd_per_m_input_tokens"],
                                                  metrics["usd_per_m_output_tokens"]))
    return [(api, usd_in, usd_out) for api, (usd_in, usd_out) in sorted(found.items())]


def write_inputs(book, sheet, inputs: Inputs) -> None:  # noqa: ANN001 - xlsxwriter workbook and worksheet
    """The input tables at the top of the Assumptions sheet; input cells yellow."""
    bold = book.add_format({"bold": True})
    header = book.add_format({"bold": True, "bottom": 1})
    money = book.add_format({"num_format": '"$"#,##0.00##', "bg_color": "#fff2cc", "border": 1})  # $0.075 stays
    count = book.add_format({"num_format": "0", "bg_color": "#fff2cc", "border": 1})
    sheet.write(0, 0, "Inputs: change a yellow cell and every cost in this workbook follows "
                      "(GPU-hours x price per GPU-hour; API tokens x price per million tokens).", bold)
    sheet.write(2, 0, "GPU prices", bold)
    sheet.write_row(3, 0, ["GPU", "USD per GPU-hour"], header)
    for label, (row, value) in inputs.prices.items():
        sheet.write(row, 0, label)
        sheet.write_number(row, PRICE_COL, value, money)
    first_api = 4 + len(inputs.prices) + 3
    sheet.write(first_api - 2, 0, "Hosted API prices", bold)
    sheet.write_row(first_api - 1, 0, ["API", "USD per M input tokens", "USD per M output tokens"], header)
    if not inputs.apis:
        sheet.write(first_api, 0, "(no hosted API in this plan)")
    for api, (row, usd_in, usd_out) in inputs.apis.items():
        sheet.write(row, 0, api)
        sheet.write_number(row, API_INPUT_COL, usd_in, money)
        sheet.write_number(row, API_OUTPUT_COL, usd_out, money)
    first_count = first_api + len(inputs.apis) + 3
    sheet.write(first_count - 2, 0, "GPU counts (the plan's sizes)", bold)
    sheet.write_row(first_count - 1, 0, ["deployment", "stage", "GPU (price row)", "GPUs"], header)
    for (deployment, stage, _), (row, pool) in inputs.counts.items():
        sheet.write_row(row, 0, [deployment, stage, pool.price_label])
        sheet.write_number(row, COUNT_COL, pool.gpus, count)
    sheet.write(first_count + len(inputs.counts) + 1, 0, "Sources of these numbers and every other assumption: "
                                                        "the Sources sheet.")


# ---------------------------------------------------------------- cost formulas


def stage_cost_per_day(inputs: Inputs, deployment: str, stage: str, metrics: Mapping,
                       horizon_s: float) -> Formula | None:
    """A stage's USD per day: its GPUs for 24 hours at their prices, its API calls scaled to a day, and
    whatever else it costs (a device fleet's fixed cost) as a number; None when it was not simulated."""
    if "cost_per_day_usd" not in metrics:
        return None
    pools = range(len(metrics.get("gpu_pools") or []))
    terms: list[Formula] = [pools_cost_usd(  # each pool at its own GPU's price
        (inputs.count(deployment, stage, index) * HOURS_PER_DAY,
         inputs.price(inputs.counts[(deployment, stage, index)][1].price_label)) for index in pools)] if pools else []
    if metrics.get("api") in inputs.apis:
        usd_in, usd_out = inputs.api_prices(metrics["api"])
        terms.append(per_day(api_cost_usd(metrics["input_tokens"], metrics["output_tokens"], usd_in, usd_out),
                             horizon_s))
    rest = float(metrics["cost_per_day_usd"] or 0.0) - sum(term.value for term in terms)  # a device fleet's
    if abs(rest) > CENTS or not terms:
        terms.append(Formula.number(rest))
    return sum(terms[1:], terms[0])


def deployment_cost_per_day(inputs: Inputs, deployment: str, per_stage: Mapping, horizon_s: float) -> Formula | None:
    """The sum of the stages' costs per day (None when the configuration was not simulated)."""
    stages = [stage_cost_per_day(inputs, deployment, name, metrics, horizon_s) for name, metrics in per_stage.items()]
    known = [stage for stage in stages if stage is not None]
    if not known or len(known) != len(stages):
        return None
    return sum(known[1:], known[0])


def deployment_gpus(inputs: Inputs, deployment: str, per_stage: Mapping) -> Formula | None:
    """The deployment's GPUs: the sum of the count cells of its GPU stages (a synthetic server is no GPU)."""
    cells = [inputs.count(d, s, i) for d, s, i in _gpu_pool_keys(inputs, deployment, per_stage)]
    return sum(cells[1:], cells[0]) if cells else None


def _gpu_pool_keys(inputs: Inputs, deployment: str, per_stage: Mapping) -> list[tuple[str, str, int]]:
    """The count cells' keys of the pools of ``deployment``'s GPU stages."""
    return [(d, s, i) for (d, s, i) in inputs.counts if d == deployment and (per_stage.get(s) or {}).get("gpus")]


def cost_per_1k(cost_per_day: Formula, requests_per_day: float) -> Formula | None:
    """USD per 1,000 requests from a cost-per-day cell (the rule of ``profiles.costs``)."""
    result = per_1k_requests(cost_per_day, requests_per_day)
    return result if isinstance(result, Formula) else None


# ---------------------------------------------------------------- autoscale schedule


def window_cost_per_day(inputs: Inputs, window: Window, gpus_cell: Formula) -> Formula:
    """A window's USD per day at its sizes: each GPU pool of each stage all day at its own price (when every
    pool has one price, the window's GPUs cell ``gpus_cell``, which the planner may edit, at that price), plus
    its API and device spend (a number: as simulated for that window)."""
    pools = [(gpus, inputs.pool_price(gpu, price)) for stage_pools in window.gpu_pools.values()
             for gpu, gpus, price in stage_pools]
    if len({price.text for _, price in pools}) == 1:
        gpu_cost = pools_cost_usd([(gpus_cell * HOURS_PER_DAY, pools[0][1])])
    else:
        gpu_cost = pools_cost_usd((gpus * HOURS_PER_DAY, price) for gpus, price in pools)
    other = window.cost_per_day_usd - sum(window.gpu_cost_by_stage.values())
    return _with_other(gpu_cost, other)


def autoscale_totals(inputs: Inputs, report: PlanReport, schedule: Schedule,
                     windows_sum: Formula) -> tuple[Formula, Formula]:
    """Autoscaled USD/day (each window for its share of the day, plus replicas loading before they serve) and
    static USD/day (the plan's sizing all day: its GPU count cells), over the sum of the window cells and the
    price cells; every pool at its own GPU's price, by the schedule's own rules."""
    share = schedule.window_s / SECONDS_PER_DAY
    loading = pools_cost_usd((hours, inputs.pool_price(gpu, price))
                             for (gpu, price), hours in schedule.loading_gpu_hours().items())
    autoscaled = windows_sum * share + loading
    other = sum(w.cost_per_day_usd - sum(w.gpu_cost_by_stage.values()) for w in schedule.windows) * share
    plan = next(p for p in report.plans if p.name == schedule.deployment)
    keys = _gpu_pool_keys(inputs, schedule.deployment, plan.result.per_stage)
    static = pools_cost_usd((inputs.count(*key) * HOURS_PER_DAY, inputs.price(inputs.counts[key][1].price_label))
                            for key in keys) if keys else Formula.number(schedule.peak_gpu_cost_per_day_usd)
    return autoscaled, _with_other(static, other)


def _with_other(gpu_cost: Formula | float, other_usd: float) -> Formula:
    """A GPU cost plus spend that is not GPUs (a number), leaving out a rounding remainder."""
    if not isinstance(gpu_cost, Formula):  # no GPU pool at all
        return Formula.number(gpu_cost + other_usd)
    return gpu_cost + other_usd if abs(other_usd) > CENTS else gpu_cost
