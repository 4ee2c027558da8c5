"""Scenarios: one YAML file naming traffic, SLOs, catalog additions and candidate deployments.

``load_scenario`` reads the file with a safe YAML loader (nothing in the file is
ever executed), validates it with pydantic, then checks what one field cannot
check alone: route and SLO classes exist in the traffic, catalog ids (models,
GPUs, APIs) exist, the trace and calibration files load. Every problem is a
``ScenarioError`` naming the file and the field path ("s.yaml:
deployments.1.stages.0.gpu: unknown GPU 'h1000'; ..."); a broken trace line is
a ``TraceError`` naming the trace file and line. Relative paths (trace,
calibration profiles) are relative to the scenario file and are made absolute
on load. Units: seconds.
"""

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    ValidationError,
    field_validator,
)

from planner.traces import load_trace
from profiles.base import StrictModel, validation_failure
from profiles.catalog import Catalog, InlineCatalog, load_catalog
from profiles.errors import (
    CalibrationError,
    CatalogError,
    ConfigurationError,
    ScenarioError,
    StageError,
)
from profiles.files import SAFE_LOADER, check_yaml_nesting, read_text
from sim import limits
from sim.build import gpu_options
from sim.deployment import AUTO_GPU, DeploymentSpec
from sim.limits import MAX_HORIZON_S, MAX_NAMES_LISTED, MAX_SEED, listed
from sim.request import Request
from sim.slo import SloSpec
from sim.traffic import TrafficSpec
from sim.traffic.arrivals import DiurnalArrivals, OfflineArrivals, PoissonArrivals, TraceArrivals
from sim.traffic.rates import burst_chain, diurnal_curve
from sim.traffic.sampling import size_max
from sim.traffic.sizes import Size

SCENARIO_DIR = Path(__file__).parent / "scenarios"
# libyaml's safe loader when available (several times faster), else the pure-Python one; both
# build only plain data (mappings, lists, scalars) and reject python/* tags.


class Scenario(StrictModel):
    """Everything one planning question needs: traffic, SLO, catalog additions, candidates."""

    model_config = ConfigDict(allow_inf_nan=False)

    name: str = Field(min_length=1)
    description: str = ""
    seed: NonNegativeInt = Field(0, le=MAX_SEED, description="Same seed, same requests and results")
    horizon_s: PositiveFloat = Field(3600.0, le=MAX_HORIZON_S, description="Simulated seconds (86400 = a day)")
    traffic: TrafficSpec
    slo: SloSpec
    catalog: InlineCatalog | None = Field(None, description="Models/GPUs/APIs added or overridden, GPU prices")
    calibration_profiles: list[str] = Field(
        default_factory=list, description="Calibration profile files (relative to this file)")
    deployments: list[DeploymentSpec] = Field(min_length=1)

    @field_validator("deployments")
    @classmethod
    def _unique_deployment_names(cls, deployments: list[DeploymentSpec]) -> list[DeploymentSpec]:
        counts = Counter(deployment.name for deployment in deployments)
        repeated = sorted(name for name, count in counts.items() if count > 1)
        if repeated:  # the report has one row per name: a second one would hide the first
            raise ValueError(f"deployment names must be unique, repeated: {repeated[:MAX_NAMES_LISTED]}")
        return deployments

    @property
    def start_s(self) -> float:
        """Time of day (seconds after midnight) at simulated time 0 (``traffic.start_s``)."""
        return self.traffic.start_s

    @property
    def class_names(self) -> tuple[str, ...]:
        """Declared request classes."""
        return self.traffic.class_names


def default_scenario_path() -> Path:
    """The bundled scenario built from the product's founding questions."""
    return SCENARIO_DIR / "default.yaml"


def scenario_json_schema() -> dict:
    """JSON Schema of scenario files (for editors and ``vlmplan schema``)."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "vlmplan scenario"
    return schema


def load_scenario(path: Path | str) -> Scenario:
    """Read, validate and cross-check the scenario at ``path``; paths in it become absolute."""
    path = Path(path)
    return parse_scenario(_read_text(path, str(path)), str(path), path.parent)


def parse_scenario(text: str, where: str, base_dir: Path) -> Scenario:
    """Validate and cross-check scenario YAML ``text`` (e.g. from an editor); errors name ``where``.

    Relative paths in it (trace, calibration profiles) are taken relative to ``base_dir``.
    """
    data = _read_yaml(text, where)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise validation_failure(err, where, ScenarioError, data) from None
    scenario = _with_absolute_paths(scenario, base_dir)
    check_scenario(scenario, where)
    return scenario


def _read_text(path: Path, where: str) -> str:
    """The file's text (``profiles.files.read_text``: a regular UTF-8 file only); else a ``ScenarioError``."""
    return read_text(path, "scenario", ScenarioError)


def _read_yaml(text: str, where: str) -> dict:
    """The text's top-level mapping (safe YAML only); syntax errors name file:line:column."""
    check_yaml_nesting(text, where, ScenarioError)  # before the loader recurses into it
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader (no tags run code)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        position = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ScenarioError(f"{where}{position}: invalid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(f"{where}: invalid YAML: {err}") from None
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ScenarioError(f"{where}: a scenario is a mapping (name:, traffic:, ...), found {found}")
    return data


def _with_absolute_paths(scenario: Scenario, base: Path) -> Scenario:
    """``scenario`` with its trace and calibration paths resolved against ``base``."""
    profiles = [str(base / p) for p in scenario.calibration_profiles]
    traffic = scenario.traffic
    if traffic.arrivals.kind == "trace":
        arrivals = traffic.arrivals.model_copy(update={"path": str(base / traffic.arrivals.path)})
        traffic = traffic.model_copy(update={"arrivals": arrivals})
    return scenario.model_copy(update={"calibration_profiles": profiles, "traffic": traffic})


def scenario_trace(scenario: Scenario) -> list[Request] | None:
    """The trace a ``kind: trace`` scenario replays (time scale and window applied), else None."""
    arrivals = scenario.traffic.arrivals
    if arrivals.kind != "trace":
        return None
    return load_trace(arrivals.path, arrivals.format, time_scale=arrivals.time_scale,
                      window_s=arrivals.window_s, class_name=arrivals.class_name, seed=scenario.seed,
                      image_px=arrivals.image_px)


def scenario_catalog(scenario: Scenario, where: str = "scenario") -> Catalog:
    """The bundled catalog with the scenario's additions and its CPU profiles' host CPU (device ``cpu``);
    problems name ``where: catalog``."""
    try:
        catalog = load_catalog(scenario.catalog, where=f"{where}: catalog")
    except CatalogError as err:
        raise ScenarioError(str(err)) from None
    if not scenario.calibration_profiles:
        return catalog
    from planner.calibrations import loadable_profiles, with_host_devices

    return with_host_devices(catalog, loadable_profiles(scenario.calibration_profiles))


# ---------------------------------------------------------------- cross-field checks


def check_scenario(scenario: Scenario, where: str) -> None:
    """Checks across fields and files; the first problems found raise one ``ScenarioError``.

    Last, when nothing else is wrong, every deployment is built and probed as
    ``simulate`` would run it (``sim.preflight``): what it would refuse is
    refused here, by the same code.
    """
    catalog = scenario_catalog(scenario, where)
    trace = scenario_trace(scenario)
    classes = _known_classes(scenario, trace)
    problems = _traffic_problems(scenario) + _size_problems(scenario) + _slo_problems(scenario, classes)
    for index, deployment in enumerate(scenario.deployments):
        problems += _route_problems(deployment, index, classes)
        problems += _catalog_problems(deployment, index, catalog)
    problems += _calibration_problems(scenario, catalog)
    if problems:
        raise _failure(problems, where)
    check_run(scenario, where, scenario.horizon_s, trace)
    problems = _run_problems(scenario, trace)
    if problems:
        raise _failure(problems, where)


def _failure(problems: list[str], where: str) -> ScenarioError:
    """One error, a line per problem naming ``where``: the first ``MAX_NAMES_LISTED``, then how many more."""
    lines = [f"{where}: {problem}" for problem in problems[:MAX_NAMES_LISTED]]
    if len(problems) > MAX_NAMES_LISTED:
        lines.append(f"{where}: and {len(problems) - MAX_NAMES_LISTED:,} more problems")
    return ScenarioError("\n".join(lines))


def check_run(scenario: Scenario, where: str, horizon_s: float, trace: Sequence[Request] | None = None) -> None:
    """Refuse a run over ``horizon_s`` (the scenario's, or ``--horizon``'s) that would generate more requests or
    burst periods than ``sim.limits`` allows, naming the file and the field."""
    arrivals = scenario.traffic.arrivals
    bursts = getattr(arrivals, "bursts", None)
    if bursts is not None:
        sojourns = ([bursts.mean_gap_s, bursts.mean_burst_s] if bursts.kind == "onoff"
                    else [state.mean_sojourn_s for state in bursts.states])
        problem = limits.burst_periods_problem(sojourns, horizon_s)
        if problem:
            raise ScenarioError(f"{where}: traffic.arrivals.bursts: {problem}")
    volume = run_volume(scenario, horizon_s, trace)
    problem = None if volume is None else volume.problem()
    if problem:
        raise ScenarioError(f"{where}: traffic.arrivals: {problem}")


def run_volume(scenario: Scenario, horizon_s: float, trace: Sequence[Request] | None = None) -> limits.RunVolume | None:
    """Requests one simulation of the scenario generates (an upper estimate; None: closed loop, bounded by its
    users and the deployment's own speed)."""
    arrivals = scenario.traffic.arrivals
    if isinstance(arrivals, OfflineArrivals):
        return limits.RunVolume(arrivals.requests, "an offline batch")
    if isinstance(arrivals, TraceArrivals):
        records = len(trace if trace is not None else scenario_trace(scenario) or ())
        return limits.RunVolume(records * arrivals.rate_multiplier,
                                f"{records:,} trace records x rate_multiplier {arrivals.rate_multiplier:g}")
    if isinstance(arrivals, PoissonArrivals):
        rate_rps = arrivals.mean_rate_rps
    elif isinstance(arrivals, DiurnalArrivals):  # the peak of the day throughout: an upper bound
        rate_rps = arrivals.daily_mean_rps * diurnal_curve(arrivals, scenario.traffic.start_s).peak_factor
    else:
        return None
    return limits.RunVolume(rate_rps * horizon_s,
                            f"{limits.readable(rate_rps)} req/s for {limits.readable(horizon_s)} s")


def _known_classes(scenario: Scenario, trace: Sequence[Request] | None) -> tuple[str, ...]:
    """Declared classes, plus (for a replayed trace) the classes found in the trace."""
    found = () if trace is None else tuple(sorted({r.request_class for r in trace}))
    declared = set(scenario.class_names)
    undeclared = [name for name in found if name not in declared]
    if scenario.class_names and undeclared:
        trace_path = getattr(scenario.traffic.arrivals, "path", "traffic.arrivals")  # a trace was replayed
        more = f" and {len(undeclared) - MAX_NAMES_LISTED:,} more" if len(undeclared) > MAX_NAMES_LISTED else ""
        raise ScenarioError(f"{trace_path}: classes {undeclared[:MAX_NAMES_LISTED]}{more} are not declared in "
                            f"traffic.classes ({listed(scenario.class_names)})")
    return scenario.class_names + tuple(undeclared)


def _traffic_problems(scenario: Scenario) -> list[str]:
    """A burst chain must spend time in states with a nonzero rate."""
    bursts = getattr(scenario.traffic.arrivals, "bursts", None)
    if bursts is None:
        return []
    try:
        burst_chain(bursts)
    except ConfigurationError as err:
        return [f"traffic.arrivals.bursts: {err}"]
    return []


# Per-request sizes bounded by ``sim.limits``: (field path in a class, limit, unit). Token counts have no
# limit: a prompt no replica can hold is rejected and reported per class.
SIZE_LIMITS: tuple[tuple[str, float, str], ...] = (
    ("images.count", limits.MAX_IMAGES_PER_REQUEST, "images"),
    ("images.width_px", limits.MAX_IMAGE_SIDE_PX, "px"),
    ("images.height_px", limits.MAX_IMAGE_SIDE_PX, "px"),
    ("audio_s", limits.MAX_MEDIA_S, "s"),
    ("video.seconds", limits.MAX_MEDIA_S, "s"),
    ("video.width_px", limits.MAX_IMAGE_SIDE_PX, "px"),
    ("video.height_px", limits.MAX_IMAGE_SIDE_PX, "px"),
)


def _size_problems(scenario: Scenario) -> list[str]:
    """Each class's sizes must stay within ``SIZE_LIMITS`` at their largest draw."""
    problems = []
    for index, request_class in enumerate(scenario.traffic.classes):
        for field_path, limit, unit in SIZE_LIMITS:
            size = _field(request_class, field_path)
            if size is None or size_max(size) <= limit:
                continue
            tail = "" if isinstance(size, int | float) or getattr(size, "max", 0) is not None else \
                f"; a {size.kind} without `max` can draw any value: give max <= {limit:g}"
            problems.append(f"traffic.classes.{index}.{field_path}: can be {size_max(size):g} {unit}, "
                            f"more than the {limit:g} {unit} allowed per request{tail}")
    return problems


def _field(model: object, dotted: str) -> Size | None:
    """The size at ``dotted`` (e.g. ``images.count``) under ``model``, or None when a part is absent."""
    node: Any = model
    for part in dotted.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _slo_problems(scenario: Scenario, classes: tuple[str, ...]) -> list[str]:
    """Per-class SLO targets must name known classes."""
    known = set(classes)
    return [f"slo.per_class.{name}: unknown request class {name!r}; classes: {listed(classes)}"
            for name in scenario.slo.per_class if name not in known]


def _route_problems(deployment: DeploymentSpec, index: int, classes: tuple[str, ...]) -> list[str]:
    """Routes name known classes, and every class has a route."""
    problems = []
    known = set(classes)
    for r, route in enumerate(deployment.routes):
        problems += [f"deployments.{index}.routes.{r}.classes.{c}: unknown request class {name!r}; "
                     f"classes: {listed(classes)}"
                     for c, name in enumerate(route.classes) if name != "*" and name not in known]
    routed = {name for route in deployment.routes for name in route.classes}
    if deployment.routes and "*" not in routed:
        problems += [f"deployments.{index}.routes: no route for class {name!r} (add it, or a '*' route)"
                     for name in classes if name not in routed]
    return problems


def _run_problems(scenario: Scenario, trace: Sequence[Request] | None) -> list[str]:
    """What ``simulate`` would refuse in each deployment, found by building and probing it (``sim.preflight``)."""
    from planner.run import scenario_jobs  # planner.run imports this module
    from sim.preflight import preflight

    problems = []
    for index, job in enumerate(scenario_jobs(scenario, trace=trace)):
        name = job.deployment.name
        try:
            preflight(job)
        except StageError as err:
            problems.append(f"deployments.{index}.{err.field_path}: deployment {name!r}, {err}")
        except ConfigurationError as err:
            problems.append(f"deployments.{index}: deployment {name!r}: {err}")
    return problems


def _catalog_problems(deployment: DeploymentSpec, index: int, catalog: Catalog) -> list[str]:
    """Every model, GPU, device and API id of the deployment exists in the catalog."""
    problems = []
    for field_path, lookup, ref in _references(deployment, index):
        try:
            lookup(catalog)(ref)
        except CatalogError as err:
            problems.append(f"{field_path}: {err}")
    for s, stage in enumerate(deployment.stages):  # `gpu: auto` needs one priced GPU that holds the model
        if stage.kind == "model" and stage.gpu == AUTO_GPU and not problems:
            try:
                gpu_options(stage, catalog)
            except ConfigurationError as err:
                problems.append(f"deployments.{index}.stages.{s}.gpu: {err}")
    return problems


# (field path, catalog -> lookup method, id or inline spec)
Reference = tuple[str, Callable[[Catalog], Callable[[Any], object]], Any]


def _references(deployment: DeploymentSpec, index: int) -> list[Reference]:
    """(field path, catalog method getter, id or inline spec) for each catalog reference."""
    model, gpu, api = (lambda c: c.model), (lambda c: c.gpu), (lambda c: c.api)
    refs: list[Reference] = []
    for s, stage in enumerate(deployment.stages):
        prefix = f"deployments.{index}.stages.{s}"
        if stage.kind in ("model", "on_device"):
            refs.append((f"{prefix}.model", model, stage.model))
        if stage.kind == "model":
            if isinstance(stage.gpu, list):  # GPU options for the planner: each must exist
                refs += [(f"{prefix}.gpu.{g}", gpu, gpu_id) for g, gpu_id in enumerate(stage.gpu)]
            elif stage.gpu != AUTO_GPU:
                refs.append((f"{prefix}.gpu", gpu, stage.gpu))
            refs += [(f"{prefix}.disaggregation.{name}", gpu, getattr(stage.disaggregation, name))
                     for name in ("encoder_gpu", "prefill_gpu", "decode_gpu")
                     if getattr(stage.disaggregation, name, None) is not None]
        if stage.kind == "on_device":
            refs.append((f"{prefix}.device", gpu, stage.device))
        if stage.kind == "hosted_api":
            refs.append((f"{prefix}.api", api, stage.api))
    classifier = deployment.router.classifier if deployment.router else None
    if classifier is not None:
        prefix = f"deployments.{index}.router.classifier"
        refs += [(f"{prefix}.model", model, classifier.model), (f"{prefix}.gpu", gpu, classifier.gpu)]
    return refs


def _calibration_problems(scenario: Scenario, catalog: Catalog) -> list[str]:
    """Calibration profile files load (``load_profile``: a regular file, valid, plausible, of a known model),
    and each times at least one stage."""
    if not scenario.calibration_profiles:
        return []
    from profiles.calibration import load_profile  # only scenarios with profiles need the loader

    problems = []
    for index, profile_path in enumerate(scenario.calibration_profiles):
        if not Path(profile_path).exists():
            problems.append(f"calibration_profiles.{index}: no such file {profile_path}")
            continue
        try:
            load_profile(Path(profile_path), catalog)
        except CalibrationError as err:
            problems.append(f"calibration_profiles.{index}: {err}")
    if problems:
        return problems
    from planner.calibrations import unserved_problems

    return unserved_problems(scenario.calibration_profiles, scenario.deployments, catalog)
