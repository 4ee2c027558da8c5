"""The index of engine defaults in ``sim.policies``' docstring points at names that exist, and lists every
stage setting that defaults to the engine's own."""

import ast
import importlib
import re
from pathlib import Path

import sim.policies
from sim.deployment import ModelStage

REFERENCE = re.compile(r"``([A-Za-z_][\w.]*)``")


def _index() -> str:
    """The docstring from the index's heading on (read from the source: mypyc drops a compiled module's)."""
    source = Path(__file__).resolve().parents[1] / "sim" / "policies.py"
    doc = ast.get_docstring(ast.parse(source.read_text(encoding="utf-8"))) or ""
    return doc[doc.index("What each engine does by default"):]


def _resolves(name: str) -> bool:
    """A dotted name (module, then attributes or a pydantic model's field), or a name of ``sim.policies``
    or a field of ``ModelStage``."""
    if "." not in name:
        return hasattr(sim.policies, name) or name in ModelStage.model_fields
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            fields = getattr(found, "model_fields", {})
            found = fields[attribute] if attribute in fields else getattr(found, attribute, None)
            if found is None:
                return False
        return True
    return False


def test_every_name_in_the_engine_defaults_index_exists():
    references = REFERENCE.findall(_index())
    assert len(references) >= 20
    assert [name for name in references if not _resolves(name)] == []


def test_every_setting_that_defaults_to_the_engines_own_is_in_the_index():
    """A field whose description says its default is the engine's is listed after an arrow."""
    overridden = set(re.findall(r"-> ``(\w+)``", _index()))
    engines_own = {name for name, field in ModelStage.model_fields.items()
                   if "default: the engine's" in (field.description or "")}
    assert engines_own >= {"async_scheduling", "prefix_caching", "kv_block_tokens", "gpu_memory_utilization"}
    assert engines_own <= overridden
