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

``compare`` builds the one ``Comparison`` every view renders: ``vlmplan
simulate`` and ``vlmplan plan`` as text, the JSON, the CSV, the workbook and
the GUI's table and plots read its frame and recompute nothing. A plan that
meets no SLO is INFEASIBLE: never on the front, and its cost columns are
empty (its closest try's cost has columns of its own). Seconds, USD, GB.
"""

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from planner.capacity import CapacityPlan, miss_reason, sizes_text
from profiles.catalog import Catalog
from profiles.errors import ScenarioError
from profiles.models import QualityScore
from sim.api import SimulationResult
from sim.deployment import DeploymentSpec
from sim.slo import TARGET_METRICS, SloSpec, SloTargets, class_p99_s, worst_miss
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


def check_benchmark(benchmark: str, catalog: Catalog) -> None:
    """Raise ``ScenarioError`` unless some model or API of ``catalog`` has a score on ``benchmark``."""
    known = set(VISUAL_BENCHMARKS + TEXT_BENCHMARKS)
    for scores in [model.quality for model in catalog.models.values()] + [api.quality for api in catalog.apis.values()]:
        known.update(score.benchmark for score in scores)
    if benchmark not in known:
        raise ScenarioError(f"--benchmark: unknown benchmark {benchmark!r}; the catalog scores "
                            f"{', '.join(sorted(known))}")


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


# ---------------------------------------------------------------- one comparison for every view

VERDICT_MET = "meets SLO"
VERDICT_MISSED = "SLO missed"  # simulated as written: a real cost, but not a plan that meets the SLO
VERDICT_OVERLOADED = "overloaded"
VERDICT_INFEASIBLE = "INFEASIBLE"  # a plan: no size the search tried meets the SLO
# Columns a plan that meets no SLO must not fill: they would read as the price of a plan.
COST_COLUMNS = ("GPUs", "$/day", "$/1k req")
CLOSEST_COLUMNS = {"GPUs": "closest tried GPUs", "$/day": "closest tried $/day"}
# VRAM per replica, stage metric key -> header part (GB; the parts add up to the replica's GPU memory).
VRAM_PARTS = {"vram_weights_gb": "weights", "vram_kv_cache_gb": "KV cache",
              "vram_activations_gb": "activations", "vram_free_gb": "free"}

# Columns of the comparison, after the planner's own: metric key -> header.
METRIC_COLUMNS = {
    "gpus": "GPUs", "cost_per_day_usd": "$/day", "cost_per_1k_requests_usd": "$/1k req",
    "ttft_p50_s": "TTFT p50 s", "ttft_p99_s": "TTFT p99 s", "e2e_p50_s": "e2e p50 s", "e2e_p95_s": "e2e p95 s",
    "e2e_p99_s": "e2e p99 s", "tpot_p50_s": "TPOT p50 s", "tpot_p99_s": "TPOT p99 s",
    "throughput_rps": "req/s", "gpu_utilization": "GPU util", "slo_attainment": "SLO met",
    "preemptions": "preemptions", "overloaded": "overloaded",
}


@dataclass(frozen=True)
class Candidate:
    """One deployment to compare: its simulation and what the caller knows of it.

    ``planned``: the sizes are a plan's answer (``vlmplan plan``), so a miss
    means no size tried meets the SLO (INFEASIBLE, no cost shown); otherwise
    the deployment ran as written and a miss is reported with its real cost.
    """

    name: str
    result: SimulationResult
    feasible: bool
    planned: bool
    deployment: DeploymentSpec | None = None
    replicas: Mapping[str, int] | None = None  # None: as the simulation ran them
    auto_stages: tuple[str, ...] = ()
    reason: str = ""
    quality: QualityEstimate | None = None

    @property
    def verdict(self) -> str:
        """One of the ``VERDICT_*`` words."""
        if self.feasible:
            return VERDICT_MET
        if self.planned:
            return VERDICT_INFEASIBLE
        return VERDICT_OVERLOADED if self.result.metrics.get("overloaded") else VERDICT_MISSED

    @property
    def sizes(self) -> Mapping[str, int]:
        """Replicas per sized stage: the plan's, or those the simulation ran."""
        if self.replicas is not None:
            return self.replicas
        return {name: int(m["replicas"]) for name, m in self.result.per_stage.items() if "replicas" in m}


@dataclass(frozen=True)
class Comparison:
    """The comparison every view renders: ``frame`` (one row per deployment: verdict, sizes, metrics,
    quality, Pareto flag, reason, each class's p99 of each metric it has a target on, VRAM per replica of each
    stage) and ``memory`` (the same VRAM, one row per deployment and model stage). Seconds, USD, GB."""

    frame: pd.DataFrame
    memory: pd.DataFrame
    targets: Mapping[str, SloTargets]
    attainment: float
    benchmark: str | None = None


def pareto_flags(candidates: Sequence[Candidate]) -> list[bool]:
    """The Pareto flags of ``candidates`` over cost per day, p99 e2e latency and quality; only those that meet
    the SLO count."""
    return pareto_front([c.result.metrics.get("cost_per_day_usd") for c in candidates],
                        [c.result.metrics.get("e2e_p99_s") for c in candidates],
                        [c.quality.score if c.quality else None for c in candidates],
                        [c.feasible for c in candidates])


def plan_pareto(plans: Sequence[CapacityPlan], qualities: Sequence[QualityEstimate]) -> list[bool]:
    """The Pareto flags of sized deployments (the same front every view of the plan shows)."""
    return pareto_flags([Candidate(p.name, p.result, p.feasible, True, quality=q)
                         for p, q in zip(plans, qualities, strict=True)])


def class_columns(targets: Mapping[str, SloTargets]) -> dict[tuple[str, str], str]:
    """``{(class, target field): header}`` of each class's p99 of every metric it has a target on."""
    return {(name, field_name): f"{name} {TARGET_METRICS[field_name]} p99 s"
            for name, t in targets.items() for field_name in t.written()}


def class_names(results: Sequence[SimulationResult]) -> list[str]:
    """The request classes, in the traffic's order (as every simulated result records them; a plan ruled out
    without a simulation records none)."""
    return next((list(result.per_class) for result in results if result.per_class), [])


def compare(candidates: Sequence[Candidate], slo: SloSpec, benchmark: str | None = None) -> Comparison:
    """The comparison of ``candidates`` (in the order given) against ``slo``."""
    targets = slo.targets_in_force(class_names([c.result for c in candidates]))
    pareto = pareto_flags(candidates)
    memory = memory_frame(candidates)
    rows = [_row(c, on_front, targets, slo.attainment, memory) for c, on_front in zip(candidates, pareto, strict=True)]
    frame = pd.DataFrame(rows, index=pd.Index([c.name for c in candidates], name="deployment"))
    return Comparison(frame, memory, targets, slo.attainment, benchmark)


def _row(candidate: Candidate, on_front: bool, targets: Mapping[str, SloTargets], attainment: float,
         memory: pd.DataFrame) -> dict:
    """One deployment's row of the frame."""
    metrics = candidate.result.metrics
    row: dict = {"verdict": candidate.verdict, "feasible": candidate.feasible,
                 "replicas": sizes_text(candidate.sizes, candidate.deployment), "searched": ", ".join(candidate.auto_stages)}
    row.update({header: metrics.get(key) for key, header in METRIC_COLUMNS.items()})
    infeasible = candidate.verdict == VERDICT_INFEASIBLE
    for header in COST_COLUMNS:  # a plan that meets nothing has no price; the closest try's is named as such
        if header in CLOSEST_COLUMNS:
            row[CLOSEST_COLUMNS[header]] = row[header] if infeasible else None
        if infeasible:
            row[header] = None
    quality = candidate.quality
    row.update({"quality": quality.score if quality else None,
                "quality benchmark": quality.benchmark if quality else None,
                "quality coverage": quality.coverage if quality else None,
                "quality unverified": quality.unverified if quality else None,
                "pareto": on_front, "reason": "" if candidate.feasible else infeasibility_message(candidate, targets, attainment)})
    for (name, field_name), header in class_columns(targets).items():
        row[header] = class_p99_s(candidate.result.per_class.get(name, {}), field_name)
    mine = memory[memory["deployment"] == candidate.name] if len(memory) else memory
    for entry in mine.itertuples(index=False):
        for part in VRAM_PARTS.values():
            row[vram_column(entry.stage, part)] = getattr(entry, _identifier(part))
    return row


def vram_column(stage: str, part: str) -> str:
    """The frame's header of one VRAM part of one stage ("vlm VRAM weights GB")."""
    return f"{stage} VRAM {part} GB"


def vram_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's VRAM columns (the same numbers as ``Comparison.memory``, one row per deployment)."""
    parts = tuple(f" VRAM {part} GB" for part in VRAM_PARTS.values())
    return [header for header in frame.columns if header.endswith(parts)]


def _identifier(part: str) -> str:
    """A VRAM part's column name in ``memory`` as an attribute ("KV cache" -> "KV_cache")."""
    return part.replace(" ", "_")


def memory_frame(candidates: Sequence[Candidate]) -> pd.DataFrame:
    """VRAM per replica of every model stage (GB): one row per deployment and stage."""
    rows = []
    for candidate in candidates:
        for stage, metrics in candidate.result.per_stage.items():
            pools = {stage: metrics} | {f"{stage} {name}": pool for name, pool in metrics.items()  # P/D: two pools
                                        if isinstance(pool, dict) and "vram_total_gb" in pool}
            for label, pool in pools.items():
                if "vram_total_gb" not in pool:
                    continue
                row = {"deployment": candidate.name, "stage": label,
                       "GPUs per replica": pool.get("gpus_per_replica"), "GPU": pool.get("gpu")}
                row.update({_identifier(part): pool[key] for key, part in VRAM_PARTS.items()})
                row["total"] = pool["vram_total_gb"]
                # Which latencies are measured and which estimated: the stage's engine and its step-time source.
                row["engine"] = pool.get("engine", metrics.get("engine"))
                row["step times"] = pool.get("provenance", metrics.get("provenance"))
                # The memory: counted from the model's dimensions, or measured by a calibration profile.
                row["memory"] = pool.get("memory_source", "counted")
                rows.append(row)
    columns = ["deployment", "stage", "GPU", "GPUs per replica", *map(_identifier, VRAM_PARTS.values()), "total",
               "engine", "step times", "memory"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- why a deployment misses


def route_hardware(deployment: DeploymentSpec, request_class: str) -> str:
    """What serves ``request_class``: "smolvlm-256m / h100-sxm", stages of a pipeline joined by " -> "."""
    parts = []
    for name in deployment.route_for(request_class).path:
        stage = deployment.stage(name)
        if stage.kind == "model":
            gpus = f"{stage.tensor_parallel}x {stage.gpu}" if stage.tensor_parallel > 1 else stage.gpu
            parts.append(f"{stage.model} / {gpus}")
        elif stage.kind == "on_device":
            parts.append(f"{stage.model} / {stage.device}")
        elif stage.kind == "hosted_api":
            parts.append(f"{stage.api} (hosted API)")
        else:
            parts.append(stage.name)
    return " -> ".join(parts)


def slo_miss_text(result: SimulationResult, targets: Mapping[str, SloTargets],
                  deployment: DeploymentSpec | None = None) -> str | None:
    """"camera: e2e p99 0.19 s > target 0.1 s on smolvlm-256m / h100-sxm": the class and metric furthest
    past its target (None when every class's p99 is within its targets)."""
    miss = worst_miss(result.per_class, dict(targets))
    if miss is None:
        return None
    where = f" on {route_hardware(deployment, miss.request_class)}" if deployment is not None else ""
    return miss.text() + where


def infeasibility_message(candidate: Candidate, targets: Mapping[str, SloTargets], attainment: float) -> str:
    """Why ``candidate`` misses: the worst class, metric, achieved and target, then the search's reason
    (``planner.capacity.miss_reason`` when there is none: attainment against ``attainment``, or the overload).
    A reason that already names that class and metric (a zero-load bound) is given alone."""
    reason = candidate.reason or miss_reason(candidate.result, attainment)
    miss = worst_miss(candidate.result.per_class, dict(targets))
    if miss is None or f"{miss.request_class}: {miss.metric} " in reason:  # e.g. "camera: e2e at zero load ..."
        return reason
    return f"{slo_miss_text(candidate.result, targets, candidate.deployment)}; {reason}"


# ---------------------------------------------------------------- text


# Text table of a plan: header -> format (None shown as "-").
# How a column of the frame reads as text: header -> format. Each table picks its columns from these.
CELL_FORMATS = {
    "replicas": "{}", "GPUs": "{:.0f}", "$/day": "{:,.0f}", "$/1k req": "{:.3f}", "TTFT p50 s": "{:.3f}",
    "TTFT p99 s": "{:.3f}", "e2e p50 s": "{:.3f}", "e2e p99 s": "{:.3f}", "TPOT p99 s": "{:.4f}",
    "GPU util": "{:.0%}", "SLO met": "{:.1%}", "preemptions": "{:.0f}",
}


def table_formats(*headers: str) -> dict[str, str]:
    """The formats of ``headers``, in that order: the columns of one text table."""
    return {header: CELL_FORMATS[header] for header in headers}


# The plan's table.
TABLE_FORMATS = table_formats("replicas", "GPUs", "$/day", "$/1k req", "TTFT p99 s", "e2e p50 s", "e2e p99 s",
                              "TPOT p99 s", "GPU util", "SLO met")
SHORT_HEADERS = {"preemptions": "preempt"}
MISS_MARK = "!"
TEXT_WIDTH = 118  # a terminal of 120 columns


def render_comparison(comparison: Comparison, formats: Mapping[str, str] = TABLE_FORMATS,
                      quality: bool = True, verdict_column: bool = True) -> str:
    """The comparison as text: the main table (``formats``: frame header -> format; "preemptions" is shown
    as "preempt"), then each class's p99 against its targets, VRAM per replica, a legend, and one line per
    deployment that misses the SLO saying why."""
    frame = comparison.frame
    shown = pd.DataFrame(index=list(frame.index))
    if verdict_column:
        shown["verdict"] = _left(list(frame["verdict"]), "verdict")
    for header, fmt in formats.items():
        cells = [format_cell(fmt, value) for value in frame[header]]
        shown[SHORT_HEADERS.get(header, header)] = _left(cells, header) if header == "replicas" else cells
    if quality and comparison.benchmark:
        shown[comparison.benchmark] = [_quality_text(q, c, u) for q, c, u in zip(
            frame["quality"], frame["quality coverage"], frame["quality unverified"], strict=True)]
    shown["Pareto"] = ["*" if flag else "" for flag in frame["pareto"]]
    lines = [_without_trailing_spaces(shown.to_string()), ""]
    for block in (class_block(comparison), memory_block(comparison)):
        lines += [*block, ""] if block else []
    lines += textwrap.wrap(_legend(comparison, quality), TEXT_WIDTH)
    for name, verdict, reason in zip(frame.index, frame["verdict"], frame["reason"], strict=True):
        if verdict != VERDICT_MET:
            lines += textwrap.wrap(f"{verdict} {name}: {reason}", TEXT_WIDTH, subsequent_indent="    ")
    return "\n".join(lines)


def _legend(comparison: Comparison, quality: bool) -> str:
    text = (f"Meeting the SLO: {comparison.attainment * 100:g}% of requests within their class's targets, "
            f"without overload. ")
    if (comparison.frame["verdict"] == VERDICT_INFEASIBLE).any():
        text += "INFEASIBLE: no size tried meets it, so no GPUs or $/day are given (the closest try is named below). "
    if quality and comparison.benchmark:
        text += (f"{comparison.benchmark}: share-weighted score of the answering models (% of traffic scored; "
                 f"? = unverified). Pareto: meets the SLO and not beaten on $/day, e2e p99 and quality at once.")
    else:
        text += "Pareto: meets the SLO and not beaten on $/day and e2e p99 at once."
    return text


def class_cell(row: pd.Series, request_class: str, targets: SloTargets) -> tuple[str, bool]:
    """A class's cell: its p99 of the metric nearest (or furthest past) its target, "TTFT 2.26!" when past;
    and whether it is past."""
    worst: tuple[float, str, float] | None = None
    for field_name, target_s in targets.written().items():
        value = row.get(f"{request_class} {TARGET_METRICS[field_name]} p99 s")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if worst is None or value / target_s > worst[0]:
            worst = (value / target_s, TARGET_METRICS[field_name], value)
    if worst is None:
        return "-", False
    ratio, metric, value = worst
    return f"{metric} {_seconds(value)}{MISS_MARK if ratio > 1 else ''}", ratio > 1


def _seconds(value: float) -> str:
    """Three significant digits, no exponent: 0.0271, 2.26, 30.3, 412."""
    return f"{value:.0f}" if value >= 100 else f"{value:#.3g}"


def class_table(comparison: Comparison) -> pd.DataFrame:
    """Each class's cell (``class_cell``) for every deployment: rows deployments, columns classes."""
    frame = comparison.frame
    table = pd.DataFrame(index=list(frame.index))
    for name, targets in comparison.targets.items():
        if targets.written():
            table[name] = [class_cell(row, name, targets)[0] for _index, row in frame.iterrows()]
    return table


def class_block(comparison: Comparison) -> list[str]:
    """The per-class table as text, under a line saying how to read it."""
    table = class_table(comparison)
    if table.columns.empty:
        return []
    return [f"p99 per class against its targets, s (the target nearest or furthest past its limit; "
            f"{MISS_MARK} = above it):", _without_trailing_spaces(table.to_string())]


def memory_block(comparison: Comparison) -> list[str]:
    """VRAM per replica of every model stage as text."""
    memory = comparison.memory
    if memory.empty:
        return []
    names = [name if name != before else "" for name, before in  # a deployment's name once, on its first stage
             zip(memory["deployment"], [None, *memory["deployment"][:-1]], strict=True)]
    shown = pd.DataFrame({"deployment": _left(names, "deployment"), "stage": _left(list(memory["stage"]), "stage"),
                          "GPUs": _left([f"{n}x {gpu}" for n, gpu in zip(memory["GPUs per replica"], memory["GPU"],
                                                                          strict=True)], "GPUs")})
    for part in [*VRAM_PARTS.values(), "total"]:
        shown[part] = [f"{value:.1f}" for value in memory[_identifier(part)]]
    shown["memory"] = _left([str(source) for source in memory["memory"]], "memory")
    shown["engine"] = _left([str(e or "") for e in memory["engine"]], "engine")
    shown["step times from"] = _left([str(p or "") for p in memory["step times"]], "step times from")
    table = _without_trailing_spaces(shown.to_string(index=False, justify="left"))
    return ["Model stages: VRAM per replica, GB (weights + KV cache + activations + free = the GPUs' memory;\n"
            "free: outside the engine's share), whether that memory is counted from the model's dimensions or\n"
            "measured by a calibration profile, the engine, and where the step times come from (measured kernels,\n"
            "a calibration profile, or the roofline estimate):", table]


def _without_trailing_spaces(text: str) -> str:
    """A table's text without the spaces an empty last column leaves at the ends of lines."""
    return "\n".join(line.rstrip() for line in text.splitlines())


def _left(values: list[str], header: str = "") -> list[str]:
    """Text padded to one width (at least the header's), so ``to_string`` shows it left-aligned."""
    width = max([len(header), *map(len, values)])
    return [value.ljust(width) for value in values]


def format_cell(fmt: str, value: object) -> str:
    """``fmt.format(value)``, or "-" for a missing value (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _quality_text(score: float | None, coverage: float, unverified: bool) -> str:
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return "-"
    return f"{score:.1f}{'?' if unverified else ''} ({coverage:.0%})"
