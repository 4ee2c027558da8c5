"""``vlmplan plan``: capacity search, quality and the Pareto front for every candidate of a scenario.

``plan_scenario`` sizes each deployment (``planner.capacity``: fixed
replicas as written, ``auto`` stages searched), scores its quality on one
benchmark and marks the cost/p99/quality Pareto front
(``planner.compare``), and records the assumptions behind the numbers
(catalog sources, unverified marks, prices, where the timings come from).
``PlanReport.to_contract_dict`` extends the ``simulate`` JSON contract;
``planner.export`` writes it as xlsx, csv or json. Seconds, USD.
"""

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace

import pandas as pd

from planner.autoscale import (
    AUTOSCALE_ASSUMPTION,
    Schedule,
    autoscale,
    check_autoscalable,
    count_windows,
    render_schedules,
    scalable_jobs,
)
from planner.capacity import (
    CapacityPlan,
    DeploymentEvaluator,
    fixed_sizes,
    is_feasible,
    miss_reason,
    plan_capacity,
    searching_every_stage,
)
from planner.compare import (
    PARETO_AXES,
    VERDICT_INFEASIBLE,
    Candidate,
    Comparison,
    QualityEstimate,
    choose_benchmark,
    class_names,
    compare,
    deployment_quality,
    plan_pareto,
    render_comparison,
)
from planner.run import scenario_jobs
from planner.scenario import Scenario
from planner.sensitivity import Sensitivity, assumption, render_sensitivity, sensitivity
from profiles.catalog import Catalog
from sim.api import SimulationJob, SimulationResult
from sim.deployment import AUTO_GPU, DeploymentSpec
from sim.slo import SloSpec

# Metrics that price a configuration: null in the JSON of an INFEASIBLE plan (see ``closest_tried``).
PRICE_KEYS = ("gpus", "cost_per_day_usd", "gpu_cost_per_day_usd", "api_cost_per_day_usd", "device_cost_per_day_usd",
              "cost_per_1k_requests_usd")


@dataclass(frozen=True)
class Assumption:
    """One line of the assumptions sheet: a topic, the item, and what was assumed and from where."""

    topic: str
    item: str
    detail: str


@dataclass(frozen=True)
class PlanReport:
    """The plan of one scenario, deployments in the scenario's order."""

    scenario: str
    seed: int
    horizon_s: float
    start_s: float
    slo: SloSpec
    benchmark: str
    plans: tuple[CapacityPlan, ...]
    qualities: tuple[QualityEstimate, ...]
    pareto: tuple[bool, ...]
    assumptions: tuple[Assumption, ...]
    autoscale: tuple[Schedule, ...] = ()  # with ``--autoscale``: sizes window by window over the day
    sensitivity: tuple[Sensitivity, ...] = ()  # with ``--sensitivity``: the sized deployments under changed traffic
    planned: bool = True  # False: the deployments as written (a miss is "SLO missed", not INFEASIBLE)

    def comparison(self) -> Comparison:
        """The comparison every view renders (``planner.compare``); with autoscaling, its cost per day too."""
        candidates = [Candidate(plan.name, plan.result, plan.feasible, self.planned, deployment=plan.deployment,
                                replicas=plan.replicas, auto_stages=plan.auto_stages, reason=plan.reason,
                                quality=quality)
                      for plan, quality in zip(self.plans, self.qualities, strict=True)]
        comparison = compare(candidates, self.slo, self.benchmark)
        if self.autoscale:
            frame = comparison.frame
            autoscaled = {s.deployment: (s.totals() or {}).get("autoscaled_cost_per_day_usd") for s in self.autoscale}
            frame.insert(frame.columns.get_loc("$/day") + 1, "$/day autoscaled",
                         [None if verdict == VERDICT_INFEASIBLE else autoscaled.get(name)
                          for name, verdict in zip(frame.index, frame["verdict"], strict=True)])
        return comparison

    def frame(self) -> pd.DataFrame:
        """The comparison table, one row per deployment (``comparison().frame``)."""
        return self.comparison().frame

    @property
    def class_names(self) -> list[str]:
        """The request classes, in the traffic's order."""
        return class_names([plan.result for plan in self.plans])

    def to_contract_dict(self) -> dict:
        """The ``simulate`` contract plus, per deployment, replicas, feasibility, quality, Pareto, search log."""
        frame = self.frame()
        return {
            "scenario": self.scenario, "seed": self.seed, "horizon_s": self.horizon_s,
            "slo_attainment_target": self.slo.attainment, "slo": self.slo.to_dict(self.class_names),
            "benchmark": self.benchmark, "pareto_axes": list(PARETO_AXES),
            "deployments": [_deployment_dict(plan, quality, frame.loc[plan.name])
                            for plan, quality in zip(self.plans, self.qualities, strict=True)],
            "assumptions": [{"topic": a.topic, "item": a.item, "detail": a.detail} for a in self.assumptions],
            **({"autoscale": [schedule.to_dict() for schedule in self.autoscale]} if self.autoscale else {}),
            **({"sensitivity": [row.to_dict() for row in self.sensitivity]} if self.sensitivity else {}),
        }


def _deployment_dict(plan: CapacityPlan, quality: QualityEstimate, row: pd.Series) -> dict:
    """One deployment of the plan's JSON, from its row of the comparison. An INFEASIBLE plan has no price:
    its cost keys are null and what the closest configuration tried cost is under ``closest_tried``."""
    entry = plan.result.to_contract_dict()
    if row["verdict"] == VERDICT_INFEASIBLE:
        metrics = plan.result.metrics
        entry["metrics"] = {key: None if key in PRICE_KEYS else value for key, value in metrics.items()}
        entry["closest_tried"] = {"replicas": dict(plan.replicas),
                                  **{key: metrics.get(key) for key in PRICE_KEYS},
                                  "slo_attainment": metrics.get("slo_attainment")}
    entry.update({
        "replicas": dict(plan.replicas), "auto_stages": list(plan.auto_stages), "feasible": plan.feasible,
        "verdict": row["verdict"], "reason": row["reason"], "quality": quality.score,
        "quality_detail": quality.to_dict(), "pareto": bool(row["pareto"]),
        "search": [{"replicas": dict(p.replicas), "slo_attainment": p.slo_attainment, "overloaded": p.overloaded,
                    "feasible": p.feasible, **({"gpus": dict(p.gpus)} if p.gpus else {})} for p in plan.probes],
        "simulations": plan.simulations, "simulated": plan.simulated,
        "gpu_alternatives": [a.to_dict() for a in plan.alternatives],
    })
    return entry


def plan_scenario(scenario: Scenario, executor: Executor, *, seed: int | None = None,
                  horizon_s: float | None = None, only: Sequence[str] = (), benchmark: str | None = None,
                  autoscale_window_s: float | None = None, with_sensitivity: bool = False, size_all: bool = False,
                  progress: Callable[[float], None] | None = None,
                  cancel: Callable[[], bool] | None = None,
                  simulation_progress: Callable[[DeploymentSpec, float], None] | None = None) -> PlanReport:
    """Size, score and compare the deployments of ``scenario`` (``only``: a subset by name).

    With ``autoscale_window_s``, also size the ``auto`` stages window by
    window over the day (``planner.autoscale``); with ``with_sensitivity``,
    simulate the sized deployments under changed traffic
    (``planner.sensitivity``). ``size_all`` searches every model stage,
    not only the ``auto`` ones. ``cancel`` is asked during the sizing
    simulations, and ``simulation_progress(deployment, fraction)`` hears each
    of them from inside the run (a thread executor: neither is sent to
    worker processes).
    """
    if size_all:
        scenario = scenario.model_copy(
            update={"deployments": [searching_every_stage(d) for d in scenario.deployments]})
    jobs = scenario_jobs(scenario, seed=seed, horizon_s=horizon_s, only=only)
    parts = _progress_parts(progress, 1 + (autoscale_window_s is not None) + with_sensitivity)
    schedules: tuple[Schedule, ...] = ()
    noted: list[Assumption] = []
    counted = None
    if autoscale_window_s is not None:  # first: a scenario it cannot scale fails before the long search
        check_autoscalable(jobs[0].traffic, autoscale_window_s)
        # The windows' requests are counted while the search starts (beside its bounds, one task too).
        counted = executor.submit(count_windows, scalable_jobs(jobs), autoscale_window_s)
    cache: dict = {}  # simulations by job and configuration: the autoscale windows reuse the plan's
    plans = plan_capacity([job.deployment for job in jobs], DeploymentEvaluator(jobs[0], cancel, simulation_progress),
                          executor,
                          target=scenario.slo.attainment, progress=next(parts), cache=cache)
    if autoscale_window_s is not None:
        schedules = autoscale(jobs, executor, target=scenario.slo.attainment, peak=plans,
                              window_s=autoscale_window_s, progress=next(parts), cache=cache, counted=counted)
        noted.append(Assumption("capacity", "autoscaling", AUTOSCALE_ASSUMPTION))
    catalog = jobs[0].catalog
    assert catalog is not None  # scenario_jobs gives every job the scenario's catalog
    report = plan_report(scenario, catalog, plans, jobs[0].seed, jobs[0].horizon_s, benchmark)
    report = replace(report, autoscale=schedules, assumptions=report.assumptions + tuple(noted))
    if with_sensitivity:
        report = with_sensitivity_runs(report, jobs[0], executor, progress=next(parts))
    return report


def with_sensitivity_runs(report: PlanReport, job: SimulationJob, executor: Executor,
                          progress: Callable[[float], None] | None = None,
                          cancel: Callable[[], bool] | None = None,
                          simulation_progress: Callable[[int, int, float], None] | None = None) -> PlanReport:
    """``report`` with its sized deployments simulated under changed traffic (``planner.sensitivity``);
    ``job`` gives the traffic, seed and horizon."""
    rows = sensitivity(report.plans, job, executor, progress=progress, cancel=cancel,
                       simulation_progress=simulation_progress)
    noted = Assumption("sensitivity", "perturbations", assumption())
    return replace(report, sensitivity=rows,
                   assumptions=tuple(a for a in report.assumptions if a.topic != "sensitivity") + (noted,))


def _progress_parts(progress: Callable[[float], None] | None, count: int) -> Iterator:
    """``count`` progress callbacks, each reporting its share of one run in turn (None without ``progress``)."""
    for index in range(count):
        yield None if progress is None else (lambda fraction, k=index: progress((k + fraction) / count))


def plan_as_written(scenario: Scenario, catalog: Catalog, seed: int, horizon_s: float,
                    results: Sequence[SimulationResult]) -> PlanReport:
    """The plan of deployments simulated as written (no search): ``results`` in the scenario's order."""
    target = scenario.slo.attainment
    plans = [
        CapacityPlan(deployment=deployment, replicas=fixed_sizes(deployment, {}), auto_stages=(),
                     feasible=is_feasible(result), reason="" if is_feasible(result) else miss_reason(result, target),
                     result=result, probes=())
        for deployment, result in zip(scenario.deployments, results, strict=True)
    ]
    return replace(plan_report(scenario, catalog, plans, seed, horizon_s), planned=False)


def plan_report(scenario: Scenario, catalog: Catalog, plans: Sequence[CapacityPlan], seed: int, horizon_s: float,
                benchmark: str | None = None) -> PlanReport:
    """Score sized deployments (quality on ``benchmark``, chosen from the traffic when None) and compare them."""
    shares = _shares(scenario, [plan.result for plan in plans])
    deployments = [plan.deployment for plan in plans]
    chosen = benchmark or choose_benchmark(deployments, shares, catalog, scenario.traffic)
    qualities = tuple(deployment_quality(deployment, shares, catalog, chosen) for deployment in deployments)
    return PlanReport(
        scenario=scenario.name, seed=seed, horizon_s=horizon_s, start_s=scenario.start_s,
        slo=scenario.slo, benchmark=chosen, plans=tuple(plans), qualities=qualities,
        pareto=tuple(plan_pareto(plans, qualities)),
        assumptions=tuple(assumptions(scenario, catalog, plans, qualities, seed, horizon_s)),
    )


def _shares(scenario: Scenario, results: Sequence[SimulationResult]) -> dict[str, float]:
    """Class shares as declared; for an undeclared trace, as the first simulation counted them."""
    if scenario.traffic.classes:
        return scenario.traffic.shares()
    counts = {name: c["requests"] for name, c in results[0].per_class.items()} if results else {}
    total = sum(counts.values())
    return {name: n / total for name, n in counts.items()} if total else {}


def render_search(plans: Sequence[CapacityPlan]) -> str:
    """How many simulations the sizing took, and what the other GPU choices would cost."""
    searched = [plan for plan in plans if plan.auto_stages]
    if not searched:
        return ""
    lines = [f"\nsizing: {sum(plan.simulations for plan in plans)} simulations in all ("
             + ", ".join(f"{plan.name} {plan.simulations}" for plan in searched) + ")"]
    for plan in plans:
        if plan.alternatives:  # one line per other GPU combination: what it would cost, or why not
            gpus = ", ".join(f"{s.name} on {s.gpu}" for s in plan.deployment.stages if s.kind == "model")
            lines.append(f"GPU choice {plan.name}: chosen {gpus}" + ("" if plan.feasible else " (closest tried)"))
            lines += [f"  {a.label}: would cost ${a.cost_per_day_usd:,.0f}/day" if a.feasible
                      else f"  {a.label}: {a.note}" for a in plan.alternatives]
    return "\n".join(lines)


def render_plan(report: PlanReport) -> str:
    """The plan as text: a heading, the comparison table, and the reasons of infeasible candidates."""
    hour = report.start_s / 3600
    heading = (f"plan {report.scenario!r}: {report.horizon_s:,.0f} s simulated from {int(hour):02d}:"
               f"{int(round(hour % 1 * 60)):02d}, seed {report.seed}; auto stages sized to the cheapest "
               f"replicas ($/day) that meet the SLO")
    text = "\n".join([heading, *report.slo.text(report.class_names), render_comparison(report.comparison())])
    text += render_search(report.plans)
    if report.sensitivity:
        text += render_sensitivity(report.sensitivity, report.plans)
    if report.autoscale:
        text += render_schedules(report.autoscale)
    return text


# ---------------------------------------------------------------- assumptions and provenance


def assumptions(scenario: Scenario, catalog: Catalog, plans: Sequence[CapacityPlan],
                qualities: Sequence[QualityEstimate], seed: int, horizon_s: float) -> list[Assumption]:
    """What the plan's numbers rest on: run settings, SLO, prices, catalog sources, quality, timings."""
    rows = [
        Assumption("scenario", scenario.name, scenario.description.strip()),
        Assumption("run", "seed / horizon", f"seed {seed}; {horizon_s:,.0f} s simulated starting "
                                            f"{scenario.start_s:,.0f} s after midnight"),
        *[Assumption("SLO target", name, targets.text() or "no target")
          for name, targets in scenario.slo.targets_in_force(class_names([plan.result for plan in plans])).items()],
        Assumption("SLO", "attainment", f"at least {scenario.slo.attainment:.1%} of requests meet their class's "
                                        f"targets; only the targets the scenario writes apply"),
        Assumption("capacity", "auto replicas",
                   "cheapest sizes (USD/day) of the auto stages together with SLO attainment >= target over the "
                   "simulated horizon and no overload (<= 1% of requests unfinished); a deployment whose requests "
                   "miss their targets even at zero load is ruled out unsimulated; growth from each stage's "
                   "throughput bound, then every cheaper configuration decided (misses assumed to fall with "
                   "replicas; classes whose routes share no stage independent); a stage listing GPUs: each "
                   "combination searched, the cheapest feasible chosen"),
        Assumption("cost", "cost per day",
                   "GPUs x USD/GPU-hour x 24 h + hosted-API spend scaled from the horizon to a day + devices"),
    ]
    used = [p.deployment for p in plans]
    rows += _gpu_rows(catalog, used) + _model_rows(catalog, used)
    rows += _quality_rows(qualities)
    rows += [Assumption("performance", f"{plan.name} / {stage}", str(metrics["provenance"]))
             for plan in plans for stage, metrics in plan.result.per_stage.items() if metrics.get("provenance")]
    return rows


def _gpu_ids(deployment: DeploymentSpec) -> list[str]:
    """Every GPU or device id a deployment names."""
    ids = []
    for stage in deployment.stages:
        gpu = getattr(stage, "gpu", None)  # a list (or `auto`) when the planner chooses: not simulated as such
        ids += [*(gpu if isinstance(gpu, list) else [gpu if gpu != AUTO_GPU else None]), getattr(stage, "device", None)]
        split = getattr(stage, "disaggregation", None)
        ids += [getattr(split, name, None) for name in ("encoder_gpu", "prefill_gpu", "decode_gpu")]
    if deployment.router and deployment.router.classifier:
        ids.append(deployment.router.classifier.gpu)
    return [gpu_id for gpu_id in ids if gpu_id]


def _gpu_rows(catalog: Catalog, deployments: Sequence[DeploymentSpec]) -> list[Assumption]:
    rows = []
    for gpu_id in dict.fromkeys(g for d in deployments for g in _gpu_ids(d)):
        gpu = catalog.gpu(gpu_id)
        marks = f" [unverified: {', '.join(gpu.unverified)}]" if gpu.unverified else ""
        rows.append(Assumption("GPU", gpu.id, f"{gpu.name}: {gpu.source}{marks}"))
        if gpu.price is not None:
            flag = " [unverified]" if gpu.price.unverified else ""
            rows.append(Assumption("GPU price", gpu.id, f"${gpu.price.usd_per_gpu_hour:.2f}/GPU-hour as of "
                                                        f"{gpu.price.as_of}: {gpu.price.source}{flag}"))
    return rows


def _model_rows(catalog: Catalog, deployments: Sequence[DeploymentSpec]) -> list[Assumption]:
    refs = []
    for deployment in deployments:
        for stage in deployment.stages:
            if stage.kind in ("model", "on_device"):
                refs.append(("model", stage.model))
            elif stage.kind == "hosted_api":
                refs.append(("hosted API", stage.api))
        if deployment.router and deployment.router.classifier:
            refs.append(("model", deployment.router.classifier.model))
    rows, seen = [], set()
    for topic, ref in refs:
        entry = catalog.model(ref) if topic == "model" else catalog.api(str(ref))
        if entry.id in seen:
            continue
        seen.add(entry.id)
        unverified = entry.unverified
        marks = (" [unverified]" if unverified is True else
                 f" [unverified: {', '.join(unverified)}]" if unverified else "")
        rows.append(Assumption(topic, entry.id, f"{entry.name}: {entry.source}{marks}"))
    return rows


def _quality_rows(qualities: Sequence[QualityEstimate]) -> list[Assumption]:
    if not qualities:
        return []
    benchmark = qualities[0].benchmark
    rows = [Assumption("quality", benchmark, "share-weighted score of the model answering each class (a pipeline: "
                                             "its last model); classes without a score are left out (coverage); "
                                             "image-resolution tiering is not reflected")]
    seen = set()
    for quality in qualities:
        for row in quality.per_class:
            if row.score is None or row.answered_by in seen:
                continue
            seen.add(row.answered_by)
            flag = " [unverified]" if row.unverified else ""
            rows.append(Assumption("quality score", f"{row.answered_by} {benchmark}", f"{row.score}: {row.source}{flag}"))
    return rows
