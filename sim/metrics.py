"""The result of one simulation: the DESIGN.md metric contract per deployment, class and stage.

Contract keys (names and units fixed): ``requests``, ``completed``,
``ttft_p50_s``, ``ttft_p99_s``, ``e2e_p50_s``, ``e2e_p95_s``, ``e2e_p99_s``,
``tpot_p50_s``, ``tpot_p99_s``, ``throughput_rps``, ``gpus``,
``gpu_utilization``, ``cost_per_day_usd``, ``cost_per_1k_requests_usd``,
``slo_attainment``, ``preemptions``, ``sim_wall_s``; more keys are added.
A latency is ``None`` when no request defines it (none completed, or none
had more than one output token). Cost per day: GPUs x USD/GPU-hour x 24
plus API spend scaled from the horizon to a day, plus device costs.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from profiles.costs import HOURS_PER_DAY, SECONDS_PER_DAY, per_1k_requests, per_day
from sim.recorder import Recorder
from sim.replica import engine_replicas
from sim.slo import SloSpec
from sim.stages.base import StageRuntime
from sim.timeseries import TimeBins

OVERLOAD_UNFINISHED_SHARE = 0.01  # more unfinished than this at the end: offered load exceeds capacity
CDF_QUANTILES = tuple(range(101))


@dataclass
class SimulationResult:
    """Everything one ``simulate`` call measured; plain Python values, picklable and JSON-ready."""

    deployment: str
    metrics: dict
    per_class: dict = field(default_factory=dict)
    per_stage: dict = field(default_factory=dict)
    timeseries: dict = field(default_factory=dict)
    cdf: dict = field(default_factory=dict)

    def to_contract_dict(self) -> dict:
        """``{"name", "metrics", "per_class", "per_stage"}`` as in DESIGN.md's JSON contract."""
        return {"name": self.deployment, "metrics": self.metrics, "per_class": self.per_class,
                "per_stage": self.per_stage}


def _quantiles(values: np.ndarray, q: tuple) -> list:
    """Percentiles of the finite values, ``None`` each when there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [None] * len(q)
    return [float(v) for v in np.percentile(finite, q)]


def _mean_finite(values: np.ndarray) -> float | None:
    """Mean of the finite values, ``None`` when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _mean_itl(ttft: np.ndarray, e2e: np.ndarray, tpot: np.ndarray) -> float | None:
    """Mean inter-token latency over every gap between two output tokens of every request.

    As vLLM's bench serve computes ``mean_itl_ms`` (all requests' inter-token gaps in one
    list): a request with more output tokens weighs more, unlike the per-request mean
    TPOT. A request's gaps are (e2e - ttft) / tpot = output tokens - 1; requests with
    one output token have none.
    """
    decoding = np.isfinite(tpot) & (tpot > 0)
    if not decoding.any():
        return None
    decode_s = e2e[decoding] - ttft[decoding]
    gaps = np.rint(decode_s / tpot[decoding])
    return float(decode_s.sum() / gaps.sum())


def latency_summary(ttft: np.ndarray, e2e: np.ndarray, tpot: np.ndarray, queue: np.ndarray) -> dict:
    """Percentiles and means of the per-request latencies."""
    ttft50, ttft90, ttft99 = _quantiles(ttft, (50, 90, 99))
    e2e50, e2e90, e2e95, e2e99 = _quantiles(e2e, (50, 90, 95, 99))
    tpot50, tpot99 = _quantiles(tpot, (50, 99))
    queue50, queue99 = _quantiles(queue, (50, 99))
    return {
        "ttft_p50_s": ttft50, "ttft_p90_s": ttft90, "ttft_p99_s": ttft99,
        "e2e_p50_s": e2e50, "e2e_p90_s": e2e90, "e2e_p95_s": e2e95, "e2e_p99_s": e2e99,
        "tpot_p50_s": tpot50, "tpot_p99_s": tpot99,
        "queue_p50_s": queue50, "queue_p99_s": queue99,
        "ttft_mean_s": float(ttft.mean()) if ttft.size else None,
        # Mean TPOT as vLLM's bench serve reports it: per request (e2e - ttft) / (output - 1),
        # averaged over the requests with more than one output token.
        "tpot_mean_s": _mean_finite(tpot),
        "itl_mean_s": _mean_itl(ttft, e2e, tpot),
        "e2e_mean_s": float(e2e.mean()) if e2e.size else None,
        "queue_mean_s": float(queue.mean()) if queue.size else None,
    }


class Outcomes:
    """The recorder's arrays as numpy, with each request's SLO verdict."""

    def __init__(self, recorder: Recorder, slo: SloSpec) -> None:
        self.klass = np.frombuffer(recorder.klass, dtype=np.uint16) if recorder.klass else np.zeros(0, np.uint16)
        self.ttft = np.frombuffer(recorder.ttft_s) if recorder.ttft_s else np.zeros(0)
        self.e2e = np.frombuffer(recorder.e2e_s) if recorder.e2e_s else np.zeros(0)
        self.tpot = np.frombuffer(recorder.tpot_s) if recorder.tpot_s else np.zeros(0)
        self.queue = np.frombuffer(recorder.queue_s) if recorder.queue_s else np.zeros(0)
        self.arrival = np.frombuffer(recorder.arrival_s) if recorder.arrival_s else np.zeros(0)
        self.turn = np.frombuffer(recorder.turn, dtype=np.uint16) if recorder.turn else np.zeros(0, np.uint16)
        self.met = self._slo_met(recorder.class_names, slo)

    def _slo_met(self, class_names: list[str], slo: SloSpec) -> np.ndarray:
        """Whether each completed request met its class's targets (NaN TPOT counts as met)."""
        limits = np.full((3, len(class_names)), np.inf)
        for i, name in enumerate(class_names):
            targets = slo.targets(name)
            for row, value in enumerate((targets.ttft_s, targets.tpot_s, targets.e2e_s)):
                if value is not None:
                    limits[row, i] = value
        k = self.klass
        tpot_ok = ~(self.tpot > limits[1, k])  # NaN compares False: single-token requests pass
        return (self.ttft <= limits[0, k]) & tpot_ok & (self.e2e <= limits[2, k])

    def subset(self, mask: np.ndarray | slice) -> dict:
        """Latency summary of the requests selected by ``mask``."""
        return latency_summary(self.ttft[mask], self.e2e[mask], self.tpot[mask], self.queue[mask])


def cost_summary(stages: list[StageRuntime], horizon_s: float, requests: int) -> dict:
    """GPUs, and cost per day and per 1k requests (API spend scaled from the horizon to a day)."""
    gpu_usd_day = sum(s.usd_per_hour for s in stages) * HOURS_PER_DAY
    api_usd_day = per_day(sum(s.api_usd for s in stages), horizon_s)
    fixed_usd_day = sum(s.fixed_usd_per_day for s in stages)
    usd_per_day = gpu_usd_day + api_usd_day + fixed_usd_day
    requests_per_day = per_day(float(requests), horizon_s)
    return {
        "gpus": sum(s.gpus for s in stages),
        "cost_per_day_usd": usd_per_day,
        "gpu_cost_per_day_usd": gpu_usd_day,
        "api_cost_per_day_usd": api_usd_day,
        "device_cost_per_day_usd": fixed_usd_day,
        "cost_per_1k_requests_usd": per_1k_requests(usd_per_day, requests_per_day),
        "requests_per_day": requests_per_day,
    }


def stage_summary(stage: StageRuntime, span_s: float, horizon_s: float) -> dict:
    """Per-stage visits, time in stage, queueing, cost and the kind's own metrics."""
    sojourn = np.frombuffer(stage.sojourn_s) if stage.sojourn_s else np.zeros(0)
    queue = np.frombuffer(stage.queue_s) if stage.queue_s else np.zeros(0)
    s50, s99 = _quantiles(sojourn, (50, 99))
    q50, q99 = _quantiles(queue, (50, 99))
    summary = {
        "kind": stage.kind, "visits": int(sojourn.size), "rejected": stage.rejected_count,
        "stage_p50_s": s50, "stage_p99_s": s99, "queue_p50_s": q50, "queue_p99_s": q99,
        "gpus": stage.gpus,
        "cost_per_day_usd": stage.usd_per_hour * HOURS_PER_DAY + stage.fixed_usd_per_day
        + per_day(stage.api_usd, horizon_s),
    }
    pools = stage.gpu_pools()
    if pools:  # what the stage rents, so the workbook can price it again from its input cells
        summary["gpu_pools"] = [{"gpu": gpu, "gpus": gpus, "usd_per_gpu_hour": price} for gpu, gpus, price in pools]
    summary.update(stage.stage_metrics(span_s))
    return summary


def gpu_utilization(per_stage: dict) -> float:
    """GPU-weighted mean utilisation of the stages that rent GPUs."""
    gpus = sum(s["gpus"] for s in per_stage.values())
    if not gpus:
        return 0.0
    return sum(s["gpus"] * s.get("gpu_utilization", 0.0) for s in per_stage.values()) / gpus


def timeseries(recorder: Recorder, busy: TimeBins, gpus: int, outcomes: Outcomes) -> dict:
    """Offered and served load, requests in the system and latency per bin of simulated time."""
    width = recorder.arrivals.width_s
    arrivals = np.array(recorder.arrivals.values)
    departures = np.array(recorder.departures.values)
    bins = recorder.arrivals.count
    done_at = outcomes.arrival + outcomes.e2e
    within = done_at < bins * width  # completions in the drain after the horizon are not binned
    index = np.minimum((done_at[within] / width).astype(np.int64), bins - 1)  # float rounding at the edge
    e2e_within = outcomes.e2e[within]
    p50: list[float | None] = [None] * bins  # None: nothing finished in the bin
    p99: list[float | None] = [None] * bins
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(bins + 1))
    for b in range(bins):
        chunk = e2e_within[order[bounds[b]:bounds[b + 1]]]
        if chunk.size:
            p50[b], p99[b] = (float(v) for v in np.percentile(chunk, (50, 99)))
    return {
        "t_s": recorder.arrivals.starts_s(),
        "offered_rps": (arrivals / width).tolist(),
        "completed_rps": (np.bincount(index, minlength=bins)[:bins] / width).tolist(),
        "in_system": (np.cumsum(arrivals) - np.cumsum(departures)).tolist(),
        "e2e_p50_s": p50,
        "e2e_p99_s": p99,
        "gpu_utilization": [b / (gpus * width) if gpus else 0.0 for b in busy.values],
    }


def summarise(name: str, recorder: Recorder, stages: list[StageRuntime], slo: SloSpec, horizon_s: float,
              span_s: float, busy: TimeBins, sim_wall_s: float, seed: int,
              stopped_s: float | None = None) -> SimulationResult:
    """Turn what the run recorded into a ``SimulationResult``; ``stopped_s``: when a run stopped early, its
    arrivals having ended there (rates and costs per request are over the arrivals simulated)."""
    arrivals_s = horizon_s if stopped_s is None else stopped_s
    outcomes = Outcomes(recorder, slo)
    requests = sum(recorder.offered)
    rejected = sum(recorder.rejected)
    completed = int(outcomes.e2e.size)
    per_stage = {s.name: stage_summary(s, span_s, arrivals_s) for s in stages}
    metrics: dict[str, Any] = {"requests": requests, "completed": completed, "rejected": rejected,
                                  "unfinished": requests - completed - rejected}
    metrics.update(outcomes.subset(slice(None)))
    # Completions over the time to the last one: the offered rate when keeping up, the
    # service rate when overloaded, the maximum throughput for offline batches.
    busy_span_s = recorder.last_event_s
    metrics["throughput_rps"] = completed / busy_span_s if busy_span_s > 0 else 0.0
    metrics["offered_rps"] = requests / arrivals_s if arrivals_s > 0 else 0.0
    metrics.update(cost_summary(stages, arrivals_s, requests))
    metrics["gpu_utilization"] = gpu_utilization(per_stage)
    metrics["slo_attainment"] = float(outcomes.met.sum()) / requests if requests else None
    metrics["slo_met"] = bool(requests and slo.is_met(metrics["slo_attainment"]))
    metrics["preemptions"] = sum(s.get("preemptions", 0) for s in per_stage.values())
    metrics["overloaded"] = metrics["unfinished"] > OVERLOAD_UNFINISHED_SHARE * max(1, requests)
    # Of the unfinished: requests that could not start before the end, counted instead of queued (sim.replica).
    metrics["unfinished_beyond_end"] = (sum(replica.beyond_end for replica in engine_replicas(stages))
                                        + sum(stage.beyond_end for stage in stages))
    metrics.update({"horizon_s": horizon_s, "simulated_s": span_s, "stopped_early_s": stopped_s, "seed": seed,
                    "sim_wall_s": sim_wall_s})
    classes = per_class(recorder, outcomes, busy_span_s)
    add_task_costs(classes, recorder, metrics, per_stage, arrivals_s, span_s)
    return SimulationResult(
        deployment=name, metrics=metrics, per_class=classes,
        per_stage=per_stage,
        timeseries=timeseries(recorder, busy, metrics["gpus"], outcomes),
        cdf={"quantiles": list(CDF_QUANTILES), "e2e_s": _quantiles(outcomes.e2e, CDF_QUANTILES),
             "ttft_s": _quantiles(outcomes.ttft, CDF_QUANTILES)})


def per_class(recorder: Recorder, outcomes: Outcomes, span_s: float) -> dict:
    """Counts, latencies and SLO attainment of each request class."""
    result = {}
    for index, name in enumerate(recorder.class_names):
        mask = outcomes.klass == index
        offered = recorder.offered[index]
        completed = int(mask.sum())
        summary: dict[str, Any] = {"requests": offered, "completed": completed,
                                      "rejected": recorder.rejected[index],
                                      "unfinished": offered - completed - recorder.rejected[index]}
        summary.update(outcomes.subset(mask))
        summary["throughput_rps"] = completed / span_s if span_s > 0 else 0.0
        summary["slo_attainment"] = float(outcomes.met[mask].sum()) / offered if offered else None
        summary.update(conversation_summary(recorder, outcomes, index, mask))
        result[name] = summary
    return result


def conversation_summary(recorder: Recorder, outcomes: Outcomes, index: int, mask: np.ndarray) -> dict:
    """For a conversational class: latencies per turn, and conversations finished, their length and turns."""
    turns = sorted(turn for (k, turn) in recorder.offered_turns if k == index)
    if not turns:
        return {}
    per_turn = {}
    for turn in turns:
        selected = mask & (outcomes.turn == turn)
        ttft50, ttft99 = _quantiles(outcomes.ttft[selected], (50, 99))
        e2e50, e2e99 = _quantiles(outcomes.e2e[selected], (50, 99))
        per_turn[str(turn)] = {"requests": recorder.offered_turns[(index, turn)], "completed": int(selected.sum()),
                               "ttft_p50_s": ttft50, "ttft_p99_s": ttft99, "e2e_p50_s": e2e50, "e2e_p99_s": e2e99}
    durations = np.frombuffer(recorder.conversation_s[index]) if index in recorder.conversation_s else np.zeros(0)
    lengths = (np.frombuffer(recorder.conversation_turns[index], dtype=np.uint16)
               if index in recorder.conversation_turns else np.zeros(0, np.uint16))
    duration50, duration99 = _quantiles(durations, (50, 99))
    return {"per_turn": per_turn, "conversations": {
        "started": recorder.offered_turns.get((index, 1), 0), "completed": int(durations.size),
        "turns_mean": float(lengths.mean()) if lengths.size else None,
        "duration_p50_s": duration50, "duration_p99_s": duration99}}


def add_task_costs(classes: dict, recorder: Recorder, metrics: dict, per_stage: dict, horizon_s: float,
                   span_s: float) -> None:
    """For classes of agent tasks: tasks ended, success rate, attempts, latency, tokens, GPU-s and cost per success.

    GPU-seconds (busy) and cost over the horizon are shared among classes in
    proportion to their requests (one model call each), then divided by the
    class's successful tasks.
    """
    requests = sum(recorder.offered)
    busy_gpu_s = sum(s["gpus"] * s.get("gpu_utilization", 0.0) for s in per_stage.values()) * span_s
    cost_usd = metrics["cost_per_day_usd"] * horizon_s / SECONDS_PER_DAY
    for index, name in enumerate(recorder.class_names):
        tasks = recorder.tasks.get(index)
        if not tasks:
            continue
        succeeded = [t for t in tasks if t[2]]
        share = recorder.offered[index] / requests if requests else 0.0
        latency50, latency99 = _quantiles(np.array([t[0] for t in succeeded]), (50, 99))
        classes[name]["tasks"] = {
            "ended": len(tasks), "succeeded": len(succeeded), "success_rate": len(succeeded) / len(tasks),
            "attempts_mean": float(np.mean([t[1] for t in tasks])),
            "latency_p50_s": latency50, "latency_p99_s": latency99,
            "output_tokens_per_task": float(np.mean([t[3] for t in tasks])),
            "gpu_s_per_successful_task": busy_gpu_s * share / len(succeeded) if succeeded else None,
            "cost_per_successful_task_usd": cost_usd * share / len(succeeded) if succeeded else None,
        }
