"""Comparing candidate deployments: expected quality, the cost/p99/quality Pareto front, the table.

Quality is a published benchmark score (0-100) of the model that answers
each request class (the last stage of the class's route; a pipeline is
scored by its last model), weighted by the class's share of the traffic.
One benchmark for all deployments, so the numbers compare: by default the
candidate relevant to the traffic (document/chart benchmarks when most
requests carry images or video, text benchmarks otherwise) that scores
the most traffic across the deployments. Classes whose answering model has
no score on it are left out and ``coverage`` says how much traffic was
scored. Scores marked unverified in the catalog keep that mark.

The Pareto front: among feasible deployments, those no other feasible one
beats on cost per day, p99 end-to-end latency and quality at once (lower
cost, lower latency, higher quality; an unknown quality ranks last).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from planner.capacity import CapacityPlan, sizes_text
from profiles.catalog import Catalog
from profiles.models import QualityScore
from sim.deployment import DeploymentSpec
from sim.traffic import TrafficSpec

# Benchmarks tried, in order of preference, for visual and for text-only traffic.
VISUAL_BENCHMARKS = ("DocVQA", "ChartQA", "OCRBench", "MMMU")
TEXT_BENCHMARKS = ("MMLU", "MMMU")
PARETO_AXES = ("cost_per_day_usd", "e2e_p99_s", "quality")


@dataclass(frozen=True)
class ClassQuality:
    """The score of the model answering one request class (``score`` None: no such benchmark)."""

    request_class: str
    share: float
    answered_by: str | None
    score: float | None
    unverified: bool
    source: str


@dataclass(frozen=True)
class QualityEstimate:
    """A deployment's share-weighted benchmark score, the traffic share it covers, and per-class detail."""

    benchmark: str
    score: float | None
    coverage: float
    unverified: bool
    per_class: tuple[ClassQuality, ...]

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"benchmark": self.benchmark, "score": self.score, "coverage": self.coverage,
                "unverified": self.unverified,
                "per_class": {c.request_class: {"share": c.share, "answered_by": c.answered_by, "score": c.score,
                                                "unverified": c.unverified, "source": c.source}
                              for c in self.per_class}}


def answering_scores(deployment: DeploymentSpec, request_class: str,
                     catalog: Catalog) -> tuple[str | None, tuple[QualityScore, ...]]:
    """The model or API that produces ``request_class``'s answer, and its published scores."""
    stage = deployment.stage(deployment.route_for(request_class).path[-1])
    if stage.kind in ("model", "on_device"):
        model = catalog.model(stage.model)
        return model.id, model.quality
    if stage.kind == "hosted_api":
        api = catalog.api(stage.api)
        return api.id, api.quality
    return None, ()  # a synthetic server has no quality


def _score(scores: Sequence[QualityScore], benchmark: str) -> QualityScore | None:
    """The first score on ``benchmark`` (names compared without case)."""
    wanted = benchmark.casefold()
    return next((s for s in scores if s.benchmark.casefold() == wanted), None)


def deployment_quality(deployment: DeploymentSpec, shares: Mapping[str, float], catalog: Catalog,
                       benchmark: str) -> QualityEstimate:
    """Share-weighted ``benchmark`` score of the models answering each class of ``deployment``."""
    rows = []
    for name, share in shares.items():
        answered_by, scores = answering_scores(deployment, name, catalog)
        found = _score(scores, benchmark)
        rows.append(ClassQuality(name, share, answered_by, found.score if found else None,
                                 bool(found and found.unverified), found.source if found else ""))
    covered = [(row.share, row.score, row.unverified) for row in rows if row.score is not None]
    coverage = sum(share for share, _score, _unverified in covered)
    score = sum(share * score for share, score, _unverified in covered) / coverage if coverage > 0 else None
    return QualityEstimate(benchmark, score, coverage, any(unverified for _s, _v, unverified in covered),
                           tuple(rows))


def visual_share(traffic: TrafficSpec, shares: Mapping[str, float]) -> float:
    """Share of the traffic whose requests carry images or video."""
    visual = {c.name for c in traffic.classes if c.images is not None or c.video is not None}
    return sum(share for name, share in shares.items() if name in visual)


def choose_benchmark(deployments: Sequence[DeploymentSpec], shares: Mapping[str, float], catalog: Catalog,
                     traffic: TrafficSpec) -> str:
    """The candidate benchmark (by modality) that scores the most traffic across ``deployments``."""
    candidates = VISUAL_BENCHMARKS if visual_share(traffic, shares) >= 0.5 else TEXT_BENCHMARKS

    def covered(benchmark: str) -> float:
        return sum(deployment_quality(d, shares, catalog, benchmark).coverage for d in deployments)

    return max(candidates, key=covered)  # ties: the earlier (preferred) benchmark


def pareto_front(cost: Sequence[float | None], latency: Sequence[float | None], quality: Sequence[float | None],
                 eligible: Sequence[bool]) -> list[bool]:
    """For each candidate, whether it is eligible and no eligible candidate dominates it."""
    points = [(_number(c, math.inf), _number(p, math.inf), -_number(q, -math.inf))
              for c, p, q in zip(cost, latency, quality, strict=True)]

    def dominates(a: tuple, b: tuple) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    return [ok and not any(other_ok and dominates(other, point)
                           for other, other_ok in zip(points, eligible, strict=True))
            for point, ok in zip(points, eligible, strict=True)]


def _number(value: float | None, missing: float) -> float:
    """``value`` as a float, ``missing`` for None or NaN."""
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def plan_pareto(plans: Sequence[CapacityPlan], qualities: Sequence[QualityEstimate]) -> list[bool]:
    """The Pareto flags of the feasible plans over cost per day, p99 e2e latency and quality."""
    return pareto_front([p.result.metrics.get("cost_per_day_usd") for p in plans],
                        [p.result.metrics.get("e2e_p99_s") for p in plans],
                        [q.score for q in qualities], [p.feasible for p in plans])


# Columns of the comparison, after the planner's own: metric key -> header.
METRIC_COLUMNS = {
    "gpus": "GPUs", "cost_per_day_usd": "$/day", "cost_per_1k_requests_usd": "$/1k req",
    "ttft_p50_s": "TTFT p50 s", "ttft_p99_s": "TTFT p99 s", "e2e_p50_s": "e2e p50 s", "e2e_p95_s": "e2e p95 s",
    "e2e_p99_s": "e2e p99 s", "tpot_p50_s": "TPOT p50 s", "tpot_p99_s": "TPOT p99 s",
    "throughput_rps": "req/s", "gpu_utilization": "GPU util", "slo_attainment": "SLO met",
    "preemptions": "preemptions", "overloaded": "overloaded",
}


def comparison_frame(plans: Sequence[CapacityPlan], qualities: Sequence[QualityEstimate],
                     pareto: Sequence[bool]) -> pd.DataFrame:
    """One row per deployment (index: name): feasibility, replicas, metrics, quality, Pareto flag."""
    rows = []
    for plan, quality, on_front in zip(plans, qualities, pareto, strict=True):
        row = {"feasible": plan.feasible,
               "replicas": sizes_text(plan.replicas),
               "searched": ", ".join(plan.auto_stages)}
        row.update({header: plan.result.metrics.get(key) for key, header in METRIC_COLUMNS.items()})
        row.update({"quality": quality.score, "quality benchmark": quality.benchmark,
                    "quality coverage": quality.coverage, "quality unverified": quality.unverified,
                    "pareto": on_front, "reason": plan.reason})
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index([plan.name for plan in plans], name="deployment"))


# Text table: header -> format (None shown as "-").
TABLE_FORMATS = {
    "replicas": "{}", "GPUs": "{:.0f}", "$/day": "{:,.0f}", "$/1k req": "{:.3f}", "TTFT p99 s": "{:.3f}",
    "e2e p50 s": "{:.3f}", "e2e p99 s": "{:.3f}", "TPOT p99 s": "{:.4f}", "GPU util": "{:.0%}", "SLO met": "{:.1%}",
}


def render_comparison(frame: pd.DataFrame, benchmark: str, target: float) -> str:
    """The comparison as aligned text, then one line per infeasible deployment saying why."""
    shown = pd.DataFrame(index=frame.index)
    shown["ok"] = ["yes" if ok else "NO" for ok in frame["feasible"]]
    for header, fmt in TABLE_FORMATS.items():
        shown[header] = [format_cell(fmt, value) for value in frame[header]]
    shown[benchmark] = [_quality_text(q, c, u) for q, c, u in
                        zip(frame["quality"], frame["quality coverage"], frame["quality unverified"], strict=True)]
    shown["Pareto"] = ["*" if flag else "" for flag in frame["pareto"]]
    lines = [shown.to_string(),
             f"ok: meets the SLO ({target:.0%} of requests within targets) without overload. "
             f"{benchmark}: share-weighted score of the answering models (% of traffic scored; "
             f"? = unverified). Pareto: not beaten on $/day, e2e p99 and quality at once."]
    lines += [f"INFEASIBLE {name}: {reason}" for name, reason, ok in
              zip(frame.index, frame["reason"], frame["feasible"], strict=True) if not ok]
    return "\n".join(lines)


def format_cell(fmt: str, value: object) -> str:
    """``fmt.format(value)``, or "-" for a missing value (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _quality_text(score: float | None, coverage: float, unverified: bool) -> str:
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return "-"
    return f"{score:.1f}{'?' if unverified else ''} ({coverage:.0%})"
