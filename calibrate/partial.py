"""The partial file of a calibration run: what was measured so far, so a rerun resumes.

``<out>.partial.jsonl``: a header line (model, device, settings), then one
``Measurement`` or kernel timing (``KernelTiming``) per line, then optionally ``{"composed": {...}}`` with the
composed pass's measured seconds. Rewritten atomically after each addition,
so an interrupt never leaves half a line. A header that differs from the
current run's is an error naming the file (mixing runs would corrupt the fit).
"""

import json
from pathlib import Path
from typing import TypeVar

from pydantic import NonNegativeFloat, ValidationError

from profiles.base import StrictModel, validation_failure
from profiles.calibration import (
    KernelTiming,
    Measurement,
    implausible_timing,
    measurement_key,
    write_atomically,
)
from profiles.errors import CalibrationError
from profiles.files import parse_json_object, read_text

T = TypeVar("T", bound=StrictModel)


class PartialHeader(StrictModel):
    """First line of a partial file: which run the measurements belong to."""

    model_id: str
    device: str
    quick: bool
    precision: str
    threads: int
    cpu_clock: str


class ComposedLine(StrictModel):
    """Last line of a partial file: the composed pass's measured seconds per part."""

    composed: dict[str, NonNegativeFloat]


def partial_path(out_path: Path) -> Path:
    """``<out>.partial.jsonl`` next to the profile."""
    return out_path.with_name(out_path.name + ".partial.jsonl")


class Partial:
    """Measurements of an unfinished run, loaded from and saved to ``path``."""

    def __init__(self, path: Path, header: PartialHeader) -> None:
        self.path = path
        self.header = header
        self.measurements: dict[str, Measurement] = {}
        self.kernels: dict[str, KernelTiming] = {}
        self.composed: dict[str, float] | None = None

    def load(self) -> None:
        """Read what an earlier run of the same settings measured (nothing when there is no file)."""
        if not self.path.exists():
            return
        lines = read_text(self.path, "partial measurements", CalibrationError).splitlines()
        if not lines:
            return
        stored = _parse(self.path, 1, lines[0], PartialHeader)
        if stored != self.header:
            raise CalibrationError(
                f"{self.path}: partial measurements of another run ({stored.model_id} on {stored.device}, "
                f"quick={stored.quick}, {stored.precision}, threads={stored.threads}); "
                "delete it or choose another --out")
        for number, line in enumerate(lines[1:], start=2):
            if line.startswith('{"composed"'):
                self.composed = _parse(self.path, number, line, ComposedLine).composed
                continue
            taken = (_parse(self.path, number, line, KernelTiming) if line.startswith('{"kind"')
                     else _parse(self.path, number, line, Measurement))
            reason = implausible_timing(taken)
            if reason is not None:
                raise CalibrationError(f"{self.path}: line {number}: {reason}")
            if isinstance(taken, KernelTiming):
                self.kernels[kernel_key(taken.kind, taken.shape)] = taken
            else:
                self.measurements[taken.key] = taken

    def add_measurement(self, measurement: Measurement) -> None:
        """Record one measurement and rewrite the file."""
        self.measurements[measurement.key] = measurement
        self._save()

    def add_kernels(self, timings: list[KernelTiming]) -> None:
        """Record kernel timings and rewrite the file."""
        for timing in timings:
            self.kernels[kernel_key(timing.kind, timing.shape)] = timing
        self._save()

    def add_composed(self, parts_s: dict[str, float]) -> None:
        """Record the composed pass's measured seconds and rewrite the file."""
        self.composed = parts_s
        self._save()

    def remove(self) -> None:
        """Delete the file once the profile is written."""
        self.path.unlink(missing_ok=True)

    def _save(self) -> None:
        lines = [self.header.model_dump_json()]
        lines += [m.model_dump_json() for m in self.measurements.values()]
        lines += [k.model_dump_json() for k in self.kernels.values()]
        if self.composed is not None:
            lines.append(json.dumps({"composed": self.composed}))
        write_atomically(self.path, "\n".join(lines) + "\n")


def kernel_key(kind: str, shape: dict[str, int]) -> str:
    """Identity of a kernel shape, used to skip it when a run resumes."""
    return measurement_key(kind, shape)


def _parse(path: Path, number: int, line: str, kind: type[T]) -> T:
    """One JSON line as ``kind``; CalibrationError naming the file and line."""
    data = parse_json_object(line, path, CalibrationError, first_line=number)
    try:
        return kind.model_validate(data)
    except ValidationError as error:
        raise validation_failure(error, f"{path}: line {number}", CalibrationError) from error
