"""The catalog: GPUs, encoders, decoders, models and hosted APIs by id.

Bundled entries live in ``profiles/data/*.yaml`` (one file per section, each
entry citing FACTS.md); a scenario may add entries or override them by id, and
override GPU prices (USD per GPU-hour), through an ``InlineCatalog``.
``load_catalog`` validates everything and resolves every model's component
references up front, so a bad entry fails at load time with a
``CatalogError`` naming the file (or scenario) and the field path.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import PositiveFloat, ValidationError

from profiles.base import StrictModel, validation_failure
from profiles.components import AudioEncoder, Decoder, VisionEncoder
from profiles.errors import CatalogError
from profiles.hardware import Gpu, Price
from profiles.models import HostedApi, ModelSpec, ResolvedModel
from profiles.tokens import (
    DEEPSEEK_PATCH_PX,
    DeepSeekOcrMode,
    FixedResize,
    NativeResolution,
    PanAndScan,
    QFormerQueries,
    SmolVlmSplitting,
    Tiling,
)

DATA_DIR = Path(__file__).parent / "data"
SECTIONS = ("gpus", "vision_encoders", "audio_encoders", "decoders", "models", "apis")
VISUAL_KINDS = ("vlm", "omni", "ocr")

Entry = TypeVar("Entry", Gpu, VisionEncoder, AudioEncoder, Decoder, ModelSpec, HostedApi, ResolvedModel)


class InlineCatalog(StrictModel):
    """Entries a scenario adds to (or overrides in) the bundled catalog, plus GPU price overrides."""

    gpus: tuple[Gpu, ...] = ()
    vision_encoders: tuple[VisionEncoder, ...] = ()
    audio_encoders: tuple[AudioEncoder, ...] = ()
    decoders: tuple[Decoder, ...] = ()
    models: tuple[ModelSpec, ...] = ()
    apis: tuple[HostedApi, ...] = ()
    gpu_prices: dict[str, PositiveFloat] = {}


@dataclass(frozen=True)
class Catalog:
    """Every known entry by id; models are stored both as written and resolved.

    Treat the dicts as read-only: the bundled catalog is shared (cached).
    """

    gpus: dict[str, Gpu]
    vision_encoders: dict[str, VisionEncoder]
    audio_encoders: dict[str, AudioEncoder]
    decoders: dict[str, Decoder]
    models: dict[str, ModelSpec]
    apis: dict[str, HostedApi]
    resolved: dict[str, ResolvedModel] = field(repr=False)

    def gpu(self, gpu_id: str) -> Gpu:
        """The GPU ``gpu_id``; ``CatalogError`` listing known ids if there is none."""
        return lookup(self.gpus, gpu_id, "GPU")

    def api(self, api_id: str) -> HostedApi:
        """The hosted API ``api_id``; ``CatalogError`` listing known ids if there is none."""
        return lookup(self.apis, api_id, "hosted API")

    def model(self, id_or_spec: str | ModelSpec) -> ResolvedModel:
        """A model by catalog id, or a ``ModelSpec`` whose component references are resolved here."""
        if isinstance(id_or_spec, str):
            return lookup(self.resolved, id_or_spec, "model")
        return resolve_model(self, id_or_spec, f"model {id_or_spec.id!r}")


def lookup(table: Mapping[str, Entry], entry_id: str, label: str, referrer: str = "") -> Entry:
    """``table[entry_id]`` or a ``CatalogError`` naming the id, who asked, and the known ids."""
    if entry_id in table:
        return table[entry_id]
    prefix = f"{referrer}: " if referrer else ""
    known = ", ".join(sorted(table)) or "(none)"
    raise CatalogError(f"{prefix}unknown {label} {entry_id!r}; known {label}s: {known}")


# ---------------------------------------------------------------- loading


def load_catalog(extra: InlineCatalog | None = None, where: str = "inline catalog") -> Catalog:
    """The bundled catalog, with ``extra`` entries added/overriding by id and GPU prices overridden.

    ``where`` names the source of ``extra`` in error messages (e.g. ``"scenario.yaml: catalog"``).
    """
    bundled = _bundled_catalog()
    if extra is None:
        return bundled
    sections = {name: dict(getattr(bundled, name)) for name in SECTIONS}
    origins = dict(_bundled_origins())
    for name in SECTIONS:
        for index, entry in enumerate(getattr(extra, name)):
            _check_unverified_names(entry, f"{where}: {name}.{index}.unverified")
            sections[name][entry.id] = entry
            if name == "models":
                origins[entry.id] = f"{where}: models.{index}"
    sections["gpus"] = _with_prices(sections["gpus"], extra.gpu_prices, where)
    return _assemble(sections, origins)


def parse_inline_catalog(data: object, where: str) -> InlineCatalog:
    """Validate raw (YAML-loaded) ``data`` as an ``InlineCatalog``; errors name ``where`` and the field path."""
    try:
        return InlineCatalog.model_validate(data)
    except ValidationError as err:
        raise validation_failure(err, where, CatalogError) from None


@cache
def _bundled_catalog() -> Catalog:
    # Pure function of the package's data files: parse and resolve them once per process.
    sections = {name: dict(_read_section(name)) for name in SECTIONS}
    return _assemble(sections, _bundled_origins())


def _bundled_origins() -> dict[str, str]:
    """Model id -> "profiles/data/models.yaml: models.<i>" for error messages."""
    models = _read_section("models")
    return {model_id: f"{_data_label('models')}: models.{index}" for index, model_id in enumerate(models)}


def _data_label(section: str) -> str:
    """How error messages name a bundled data file."""
    return f"profiles/data/{section}.yaml"


@cache
def _read_section(section: str) -> dict:
    """Entries of one bundled file by id, validated; ``CatalogError`` naming file and field path."""
    where = _data_label(section)
    path = DATA_DIR / f"{section}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CatalogError(f"{where}: invalid YAML: {err}") from None
    if not isinstance(data, dict) or set(data) != {section}:
        raise CatalogError(f"{where}: expected one top-level key {section!r}")
    entries = getattr(parse_inline_catalog(data, where), section)
    return _by_id(entries, f"{where}: {section}")


def _by_id(entries: Iterable[Entry], where: str) -> dict[str, Entry]:
    """Entries keyed by id; a repeated id is an error (it would silently shadow the first)."""
    table: dict[str, Entry] = {}
    for index, entry in enumerate(entries):
        if entry.id in table:
            raise CatalogError(f"{where}.{index}.id: duplicate id {entry.id!r}")
        _check_unverified_names(entry, f"{where}.{index}.unverified")
        table[entry.id] = entry
    return table


def _check_unverified_names(entry: StrictModel, where: str) -> None:
    """Every name in ``unverified`` must be a field of the entry (a typo would hide a caveat)."""
    unverified = getattr(entry, "unverified", ())  # entries that carry caveats have the field
    names = unverified if isinstance(unverified, tuple) else ()
    unknown = [name for name in names if name not in type(entry).model_fields]
    if unknown:
        raise CatalogError(f"{where}: not fields of {type(entry).__name__}: {', '.join(unknown)}")


def _with_prices(gpus: dict[str, Gpu], prices: Mapping[str, float], where: str) -> dict[str, Gpu]:
    """GPUs with scenario prices (USD per GPU-hour) replacing the bundled ones."""
    updated = dict(gpus)
    for gpu_id, usd in prices.items():
        gpu = lookup(gpus, gpu_id, "GPU", f"{where}: gpu_prices.{gpu_id}")
        price = Price(usd_per_gpu_hour=usd, as_of="scenario override", source=f"{where}: gpu_prices")
        updated[gpu_id] = gpu.model_copy(update={"price": price})
    return updated


def _assemble(sections: dict[str, dict], origins: Mapping[str, str]) -> Catalog:
    """Build the catalog and resolve every model (so bad references fail now, not mid-simulation)."""
    catalog = Catalog(**sections, resolved={})
    for model_id, spec in sections["models"].items():
        catalog.resolved[model_id] = resolve_model(catalog, spec, origins.get(model_id, f"model {model_id!r}"))
    return catalog


# ---------------------------------------------------------------- resolving and checking


def resolve_model(catalog: Catalog, spec: ModelSpec, where: str) -> ResolvedModel:
    """``spec`` with its component ids looked up in ``catalog``, after consistency checks."""
    referrer = f"{where} ({spec.id})"
    vision = _component(spec.vision, catalog.vision_encoders, "vision encoder", f"{referrer}: vision")
    audio = _component(spec.audio, catalog.audio_encoders, "audio encoder", f"{referrer}: audio")
    decoder = _component(spec.decoder, catalog.decoders, "decoder", f"{referrer}: decoder")
    resolved = ResolvedModel(
        id=spec.id, name=spec.name or spec.id, kind=spec.kind, vision=vision, connector=spec.connector,
        image_policy=spec.image_policy, video=spec.video, audio=audio, decoder=decoder,
        precision=spec.precision, fp8_scaling=spec.fp8_scaling, preprocess=spec.preprocess, quality=spec.quality,
        source=spec.source, unverified=spec.unverified,
    )
    problems = model_problems(resolved)
    if problems:
        raise CatalogError("\n".join(f"{referrer}: {problem}" for problem in problems))
    return resolved


def _component(ref: str | Entry | None, table: Mapping[str, Entry], label: str, referrer: str) -> Entry | None:
    """An inline component as is, or a catalog id looked up in ``table``."""
    if ref is None or not isinstance(ref, str):
        return ref
    return lookup(table, ref, label, referrer)


def model_problems(model: ResolvedModel) -> list[str]:
    """Why ``model`` cannot be served as described ("field: reason"), or an empty list."""
    problems = _kind_problems(model)
    if model.vision is not None and model.image_policy is not None and model.connector is not None:
        problems += _policy_problems(model)
    if model.connector is not None and model.connector.kind == "qformer" and not isinstance(
        model.image_policy, QFormerQueries
    ):
        problems.append("image_policy: a qformer connector needs the qformer image policy")
    return problems


def _kind_problems(model: ResolvedModel) -> list[str]:
    """Inputs each kind must (or must not) have."""
    problems = []
    if model.kind in VISUAL_KINDS:
        problems += [
            f"{part}: required for a {model.kind} model"
            for part in ("vision", "connector", "image_policy")
            if getattr(model, part) is None
        ]
    elif model.vision is not None or model.image_policy is not None:
        problems.append(f"vision: a {model.kind} model takes no images (use kind vlm)")
    if model.kind == "omni" and model.audio is None:
        problems.append("audio: an omni model needs an audio encoder")
    if model.video is not None and model.vision is None:
        problems.append("video: a video policy needs a vision encoder")
    if model.kind != "classifier" and not model.decoder.causal:
        problems.append(f"decoder: {model.decoder.id!r} is not causal; only a classifier can use it")
    return problems


def _policy_problems(model: ResolvedModel) -> list[str]:
    """The image policy's token count must follow from the encoder's patches and the connector's merge."""
    assert model.vision is not None  # model_problems calls this only for a vision model with a connector
    assert model.connector is not None
    policy, patch_px, merge = model.image_policy, model.vision.patch_px, model.connector.merge
    if isinstance(policy, NativeResolution):
        if policy.px_per_token_side != patch_px * merge:
            return [f"image_policy.px_per_token_side: {policy.px_per_token_side} != patch_px {patch_px} x merge {merge}"]
        return []
    if isinstance(policy, DeepSeekOcrMode):
        if patch_px != DEEPSEEK_PATCH_PX:
            return [f"vision.patch_px: DeepSeek-OCR modes assume {DEEPSEEK_PATCH_PX} px patches, got {patch_px}"]
        return []
    view = _policy_view(policy)
    if view is None:
        return []
    view_px, tokens, field_name = view
    if view_px % patch_px:
        return [f"image_policy: view of {view_px} px is not a whole number of {patch_px} px patches"]
    expected = (view_px // patch_px // merge) ** 2
    if tokens != expected:
        return [f"image_policy.{field_name}: {tokens} != ({view_px} px / {patch_px} px patch / merge {merge})^2 = {expected}"]
    return []


def _policy_view(policy: object) -> tuple[int, int, str] | None:
    """(view side px, LLM tokens per view, token field name) of a fixed-grid policy; None otherwise."""
    if isinstance(policy, FixedResize):
        return policy.image_px, policy.tokens, "tokens"
    if isinstance(policy, Tiling):
        return policy.tile_px, policy.tokens_per_tile, "tokens_per_tile"
    if isinstance(policy, SmolVlmSplitting):
        return policy.tile_px, policy.tokens_per_tile, "tokens_per_tile"
    if isinstance(policy, PanAndScan):
        return policy.image_px, policy.tokens_per_crop, "tokens_per_crop"
    return None
