"""A scenario's calibration profiles: the stages each one times, and the host CPUs they add as devices.

A profile times one model on one device (a catalog GPU id, or ``cpu`` for the
host CPU it was measured on), one device per replica. Every profile a scenario
lists must time at least one of its stages; one that times none is an error
naming the profile, its device, and each stage with the reason it cannot serve
it (``unserved_problems``). A CPU profile adds its CPU to the scenario's catalog
as device ``cpu`` (``with_host_devices``), so a model or on-device stage can run
on it.
"""

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from profiles.calibration import CalibrationProfile, load_profile
from profiles.catalog import Catalog
from profiles.errors import CalibrationError, CatalogError, ConfigurationError
from profiles.perf.calibrated import host_cpu
from sim.build import gpu_options
from sim.deployment import DeploymentSpec


class StageTarget(NamedTuple):
    """One (model, device, devices per replica) a stage may run, and where the scenario says so."""

    where: str  # "deployments.0.stages.1 'ocr'"
    model_id: str
    device_id: str
    tensor_parallel: int


def loadable_profiles(paths: Iterable[str]) -> list[CalibrationProfile]:
    """The profiles at ``paths`` that load; a broken one is reported by the scenario's own check."""
    profiles = []
    for path in paths:
        try:
            profiles.append(load_profile(Path(path)))
        except (CalibrationError, UnicodeDecodeError):
            continue
    return profiles


def with_host_devices(catalog: Catalog, profiles: Iterable[CalibrationProfile]) -> Catalog:
    """``catalog`` with the host CPU of the first CPU profile as device ``cpu`` (unchanged without one)."""
    for profile in profiles:
        device = host_cpu(profile)
        if device is not None:
            return replace(catalog, gpus={**catalog.gpus, device.id: device})
    return catalog


def stage_targets(deployments: Sequence[DeploymentSpec], catalog: Catalog) -> list[StageTarget]:
    """Every (model, device, TP) the deployments' model, on-device and classifier stages may run.

    A stage choosing among GPUs counts each option; an unknown model or GPU is
    left to the catalog check, which names it.
    """
    targets = []
    for index, deployment in enumerate(deployments):
        for number, stage in enumerate(deployment.stages):
            where = f"deployments.{index}.stages.{number} {stage.name!r}"
            if stage.kind == "on_device":
                targets += _targets(catalog, where, stage.model, [stage.device], 1)
            elif stage.kind == "model":
                try:
                    devices = gpu_options(stage, catalog)
                except (CatalogError, ConfigurationError):
                    devices = []
                split = stage.disaggregation
                devices += [getattr(split, name) for name in ("encoder_gpu", "prefill_gpu", "decode_gpu")
                            if getattr(split, name, None) is not None]
                targets += _targets(catalog, where, stage.model, devices, stage.tensor_parallel)
        classifier = deployment.router.classifier if deployment.router else None
        if classifier is not None:
            targets += _targets(catalog, f"deployments.{index}.router.classifier", classifier.model,
                                [classifier.gpu], classifier.tensor_parallel)
    return targets


def _targets(catalog: Catalog, where: str, model: object, devices: list[str], tensor_parallel: int) -> list[StageTarget]:
    """One target per device of a stage (none when its model is not in the catalog)."""
    try:
        model_id = catalog.model(model).id  # type: ignore[arg-type]  # an id or an inline ModelSpec
    except CatalogError:
        return []
    return [StageTarget(where, model_id, device, tensor_parallel) for device in dict.fromkeys(devices)]


def unserved_problems(paths: Sequence[str], deployments: Sequence[DeploymentSpec], catalog: Catalog) -> list[str]:
    """One problem per listed profile that times no stage: its file, model, device, and each stage's reason."""
    targets = stage_targets(deployments, catalog)
    problems = []
    for index, path in enumerate(paths):
        try:
            profile = load_profile(Path(path))
        except (CalibrationError, UnicodeDecodeError):
            continue  # reported as unreadable by the scenario's check
        if any(profile.applies_to(t.model_id, t.device_id, t.tensor_parallel) for t in targets):
            continue
        reasons = [f"{t.where} runs {t.tensor_parallel}x {t.device_id}: "
                   f"{profile.why_not(t.model_id, t.device_id, t.tensor_parallel)}" for t in targets]
        detail = "; ".join(reasons) if reasons else "the scenario has no model or on-device stage"
        problems.append(f"calibration_profiles.{index}: {path} ({profile.model_id} on {profile.device.label}, "
                        f"one device per replica) times no stage: {detail}")
    return problems
