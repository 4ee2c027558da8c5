"""``vlmplan calibrate``: measure a model's components on this machine and write a profile.

Steps: read the device (NVML, torch), time every sweep point of the model's
components and the device's kernel grid (calibrate.kernels: GEMMs and
attention by shape, what lets the profile time any model on the device), fit
each component, run the composed whole-model check, write the profile atomically.
Each measurement is also kept in ``<out>.partial.jsonl`` (rewritten
atomically after every point), so an interrupted run resumes where it
stopped; the partial file is removed once the profile is written.
torch is imported lazily so the rest of vlmplan runs without it.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal, NamedTuple

from calibrate.partial import Partial, PartialHeader, partial_path
from profiles.calibration import (
    CalibrationProfile,
    DeviceInfo,
    DeviceKernels,
    MeasuredMemory,
    Measurement,
    NvmlReading,
    measurement_key,
    save_profile,
)
from profiles.errors import CalibrationError
from profiles.models import ResolvedModel

if TYPE_CHECKING:  # torch loads only when a calibration runs
    import torch

    from calibrate.composed import ComposedShape
    from calibrate.cuda import Cuda
    from calibrate.kernels import KernelGrid
    from calibrate.timing import CpuClock

Progress = Callable[[int, int, str], None]

# Share of free memory that one measured layer stack, or the composed model, may take.
MEMORY_SHARE = 0.5
TORCH_DTYPES = {"bf16": "bfloat16", "fp32": "float32"}


class Setup(NamedTuple):
    """Where and how the run measures."""

    device: "torch.device"
    precision: str  # "bf16" / "fp32"
    budget_bytes: int
    cpu_clock: "CpuClock"  # the CPU stopwatch; a GPU is timed with CUDA events instead
    notes: tuple[str, ...]
    gpu: "Cuda | None" = None  # the GPU's calls (calibrate.cuda); None on a CPU

    @property
    def timing_clock(self) -> Literal["cuda_events", "wall", "thread"]:
        """What times the measurements (recorded in the profile and the partial file)."""
        return "cuda_events" if self.gpu is not None else self.cpu_clock


def run_calibration(model_id: str, device: str, quick: bool, out_path: Path,  # noqa: PLR0913
                    progress: Progress | None = None, *, threads: int | None = 1,
                    cpu_clock: "CpuClock" = "thread", kernel_grid: "KernelGrid | None" = None) -> CalibrationProfile:
    """Calibrate catalog model ``model_id`` on ``device`` ("cuda" or "cpu") and write ``out_path``.

    ``threads`` sets torch's CPU threads for the run (None: torch's default);
    a CPU run is timed by ``cpu_clock``, by default the thread's CPU time with
    one thread, which other processes on a shared machine disturb least
    (calibrate.timing): the README's figures are taken so. CalibrationError
    when torch is missing or the partial file belongs to another run.
    """
    from profiles.catalog import load_catalog

    catalog = load_catalog()
    gpu_names = {gpu.id: gpu.name for gpu in catalog.gpus.values()}
    return calibrate_model(catalog.model(model_id), device, quick, Path(out_path), progress,
                           threads=threads, cpu_clock=cpu_clock, gpu_names=gpu_names, kernel_grid=kernel_grid)


def calibrate_model(model: ResolvedModel, device: str, quick: bool, out_path: Path,  # noqa: PLR0913
                    progress: Progress | None = None, *, threads: int | None = 1,
                    cpu_clock: "CpuClock" = "thread", gpu_names: dict[str, str] | None = None,
                    gpu: "Cuda | None" = None, kernel_grid: "KernelGrid | None" = None) -> CalibrationProfile:
    """Calibrate a resolved ``model`` (catalog or inline); see ``run_calibration``.

    ``gpu``: the GPU calls to use for ``device="cuda"`` instead of the real
    device's (tests pass ``calibrate.cuda.CpuStandIn`` to run the GPU flow on a CPU);
    ``kernel_grid``: the kernel shapes to time instead of the quick or full grid (tests pass a small one).
    """
    torch = _import_torch()
    if cpu_clock not in ("wall", "thread"):
        raise CalibrationError(f"cpu_clock must be 'wall' or 'thread', got {cpu_clock!r}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        setup = _setup(torch, model, device, cpu_clock, gpu)
        return _calibrate(torch, model, setup, quick, Path(out_path), progress or _silent, gpu_names or {},
                          kernel_grid)
    finally:
        torch.set_num_threads(previous_threads)


def _calibrate(torch: ModuleType, model: ResolvedModel, setup: Setup, quick: bool, out_path: Path,  # noqa: PLR0913
               progress: Progress, gpu_names: dict[str, str], kernel_grid: "KernelGrid | None") -> CalibrationProfile:
    """Measure (resuming), fit, check the composed pass, write the profile."""
    from calibrate.composed import FULL_SHAPE, QUICK_SHAPE, composed_check, prompt_tokens
    from calibrate.fit import fit_all
    from calibrate.nvml import nvml_reading

    nvml_before = nvml_reading()
    header = PartialHeader(model_id=model.id, device=setup.device.type, quick=quick, precision=setup.precision,
                           threads=torch.get_num_threads(), cpu_clock=setup.timing_clock)
    partial = Partial(partial_path(out_path), header)
    partial.load()
    measurements = _measure_all(torch, model, setup, quick, partial, progress)
    kernels = _measure_kernels(torch, setup, quick, partial, progress, kernel_grid)
    total = len(measurements) + 2
    fits, holdout_mape = fit_all(model, measurements)
    info = _device_info(torch, setup, nvml_before, nvml_reading(), gpu_names)
    profile = CalibrationProfile(model_id=model.id, model=model, precision=setup.precision,
                                 created=datetime.now(UTC).isoformat(timespec="seconds"), quick=quick,
                                 device=info, measurements=tuple(measurements), fits=fits,
                                 holdout_mape_pct=holdout_mape, composed=None, kernels=kernels,
                                 notes=setup.notes)
    progress(total - 2, total, "composed forward pass")
    shape = QUICK_SHAPE if quick else FULL_SHAPE
    measured = _composed_times(torch, model, setup, shape, quick, partial)
    if measured is None:
        note = "composed check skipped: the whole model does not fit the memory budget"
        profile = profile.model_copy(update={"notes": (*profile.notes, note)})
    else:
        check = composed_check(profile, shape, measured, prompt_tokens(model, shape))
        # validated anew, so the poor-fit mark counts the composed error
        profile = CalibrationProfile.model_validate({**dict(profile), "composed": check})
    memory, why_not = _measured_memory(torch, model, setup)
    if memory is not None:
        profile = profile.model_copy(update={"memory": memory})
    else:
        profile = profile.model_copy(update={"notes": (*profile.notes, f"memory not measured: {why_not}")})
    progress(total - 1, total, f"writing {out_path}")
    save_profile(profile, out_path)
    partial.remove()
    progress(total, total, "done")
    return profile


def _measure_all(torch: ModuleType, model: ResolvedModel, setup: Setup, quick: bool, partial: Partial,
                 progress: Progress) -> list[Measurement]:
    """Every sweep point: from the partial file when already measured, else timed now.

    The missing shapes of one component are timed together (interleaved on a
    CPU); each measurement is then saved to the partial file in sweep order.
    """
    from calibrate.measure import Bench, experts_to_build
    from calibrate.sweep import FULL_TIMING, QUICK_TIMING, sweep_points

    dtype = getattr(torch, TORCH_DTYPES[setup.precision])
    points = sweep_points(model, quick, experts_to_build(model, dtype, setup.budget_bytes))
    bench = Bench(model, setup.device, dtype, QUICK_TIMING if quick else FULL_TIMING, setup.budget_bytes,
                  setup.cpu_clock, setup.gpu)
    total = len(points) + 2
    done = 0
    for component in dict.fromkeys(p.component for p in points):
        group = [p for p in points if p.component == component]
        missing = [p for p in group if measurement_key(p.component, p.shape) not in partial.measurements]
        if missing:
            progress(done, total, f"{component}: {len(missing)} shapes")
            taken = {m.key: m for m in bench.measure(missing)}
            bench.release(component)
        for point in group:
            key = measurement_key(point.component, point.shape)
            if key not in partial.measurements:
                partial.add_measurement(taken[key])
            done += 1
            progress(done, total, key)
    return [partial.measurements[measurement_key(p.component, p.shape)] for p in points]


def _measure_kernels(torch: ModuleType, setup: Setup, quick: bool, partial: Partial,  # noqa: PLR0913
                     progress: Progress, kernel_grid: "KernelGrid | None") -> DeviceKernels:
    """The device's GEMM and attention grid (calibrate.kernels): from the partial file when already
    timed, else timed now, one kernel kind at a time."""
    from calibrate.kernels import (
        FULL_GRID,
        KERNEL_FULL_TIMING,
        KINDS,
        QUICK_GRID,
        KernelBench,
        kernel_shapes,
    )
    from calibrate.partial import kernel_key
    from calibrate.sweep import QUICK_TIMING

    dtype = getattr(torch, TORCH_DTYPES[setup.precision])
    bench = KernelBench(setup.device, dtype, QUICK_TIMING if quick else KERNEL_FULL_TIMING, setup.cpu_clock,
                        setup.gpu)
    grid = kernel_grid or (QUICK_GRID if quick else FULL_GRID)
    timings = []
    for number, kind in enumerate(KINDS):
        shapes = kernel_shapes(grid, kind)
        missing = [shape for shape in shapes if kernel_key(kind, shape) not in partial.kernels]
        if missing:
            progress(number, len(KINDS), f"kernels: {kind}, {len(missing)} shapes")
            partial.add_kernels(bench.measure(kind, missing))
        timings += [partial.kernels[kernel_key(kind, shape)] for shape in shapes]
    return DeviceKernels(dtype=TORCH_DTYPES[setup.precision], timings=tuple(timings))


def _composed_times(torch: ModuleType, model: ResolvedModel, setup: Setup, shape: "ComposedShape", quick: bool,
                    partial: Partial) -> dict[str, float] | None:
    """Measured parts of the composed pass (resumed or run now); None when the model does not fit."""
    from calibrate.composed import model_bytes, run_composed
    from calibrate.measure import dtype_bytes
    from calibrate.sweep import FULL_TIMING, QUICK_TIMING

    dtype = getattr(torch, TORCH_DTYPES[setup.precision])
    if model_bytes(model, dtype_bytes(dtype)) > setup.budget_bytes:
        return None
    if partial.composed is None:
        plan = QUICK_TIMING if quick else FULL_TIMING
        partial.add_composed(run_composed(model, shape, setup.device, dtype, plan, setup.cpu_clock, setup.gpu))
    return partial.composed


def check_device(device: str) -> None:
    """Refuse a device this machine cannot calibrate on, in one message (before any work starts).

    A CUDA calibration is meant for the GPU it names: without one it fails
    rather than measuring the CPU under a GPU's name.
    """
    torch = _import_torch()
    if device not in ("cuda", "cpu"):
        raise CalibrationError(f"--device must be 'cuda' or 'cpu', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        reason = (f"torch {torch.__version__} is built without CUDA" if torch.version.cuda is None
                  else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device")
        raise CalibrationError(f"--device cuda: {reason}; run this on the GPU box, or use --device cpu")


def _measured_memory(torch: ModuleType, model: ResolvedModel, setup: Setup) -> tuple["MeasuredMemory | None", str]:
    """The whole model's measured memory, or None and why not."""
    from calibrate.composed import model_bytes
    from calibrate.measure import dtype_bytes
    from calibrate.memory import Meter, cpu_memory_unreadable, measure_memory

    dtype = getattr(torch, TORCH_DTYPES[setup.precision])
    if model_bytes(model, dtype_bytes(dtype)) > setup.budget_bytes:
        return None, "the whole model does not fit the memory budget"
    if setup.gpu is not None:
        return measure_memory(model, setup.device, dtype, setup.gpu), ""
    unreadable = cpu_memory_unreadable()
    if unreadable is not None:
        return None, unreadable
    return measure_memory(model, setup.device, dtype, Meter()), ""


def _setup(torch: ModuleType, model: ResolvedModel, device: str, cpu_clock: "CpuClock",
           gpu: "Cuda | None" = None) -> Setup:
    """The torch device, precision, memory budget and GPU calls (``check_device`` refuses a missing GPU)."""
    from calibrate.cuda import Cuda

    notes: list[str] = []
    if gpu is None:
        check_device(device)
        gpu = Cuda(torch.device(device)) if device == "cuda" else None
    if gpu is not None:
        if model.precision != "bf16":
            notes.append(f"model precision {model.precision} measured in bf16: plain torch has no "
                         f"{model.precision} GEMM kernels; use the roofline's {model.precision} factor")
        free_bytes, _ = gpu.memory_bytes()
        # bf16 on a GPU; a CPU standing in for one (tests) runs fp32, as CPUs do
        precision = "bf16" if gpu.device.type == "cuda" else "fp32"
        return Setup(gpu.device, precision, int(free_bytes * MEMORY_SHARE), cpu_clock, tuple(notes), gpu)
    torch_device = torch.device(device)
    notes.append(f"CPU run in fp32 (CPU inference precision; the model serves in {model.precision} on GPUs)")
    return Setup(torch_device, "fp32", int(_available_ram_bytes() * MEMORY_SHARE), cpu_clock, tuple(notes))


def _available_ram_bytes() -> int:
    """Available physical memory (Linux /proc/meminfo), else total pages."""
    return _meminfo_bytes("MemAvailable:")


def _total_ram_bytes() -> int:
    """Physical memory of the host (Linux /proc/meminfo), else total pages."""
    return _meminfo_bytes("MemTotal:")


def _meminfo_bytes(field: str) -> int:
    """A /proc/meminfo field in bytes; where there is none (not Linux), the physical pages."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text(encoding="utf-8").splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _device_info(torch: ModuleType, setup: Setup, before: NvmlReading, after: NvmlReading,
                 gpu_names: dict[str, str]) -> DeviceInfo:
    """Device, driver, versions and NVML readings for the profile."""
    from calibrate.nvml import cpu_name, cuda_version

    gpu = setup.gpu
    name = (before.name or gpu.name()) if gpu is not None else cpu_name()
    memory = gpu.memory_bytes()[1] if gpu is not None else _total_ram_bytes()
    return DeviceInfo(kind="cuda" if gpu is not None else "cpu", name=name,
                      gpu_id=match_gpu(name, gpu_names) if gpu is not None else None,
                      driver=before.driver or before.status, cuda=cuda_version(), torch=torch.__version__,
                      threads=torch.get_num_threads(), timing_clock=setup.timing_clock,
                      nvml_before=before, nvml_after=after, memory_total_bytes=memory)


def match_gpu(device_name: str, gpu_names: dict[str, str]) -> str | None:
    """The catalog GPU id whose id words best match ``device_name`` ("NVIDIA H100 PCIe" -> h100-pcie).

    The first word of the id (the model: h100, l4, a100) must appear; more
    matching words win; None when nothing matches.
    """
    words = set(_words(device_name))
    best, best_score = None, 0
    for gpu_id in gpu_names:
        id_words = _words(gpu_id)
        if not id_words or id_words[0] not in words:
            continue
        score = sum(word in words for word in id_words)
        if score > best_score:
            best, best_score = gpu_id, score
    return best


def _words(text: str) -> list[str]:
    """Lower-case alphanumeric words."""
    import re

    return re.findall(r"[a-z0-9]+", text.lower())


def _import_torch() -> ModuleType:
    """torch, or a CalibrationError saying how to install it."""
    try:
        import torch
    except ImportError as error:
        raise CalibrationError("calibration needs torch: pip install 'vlmplan[calibrate]'") from error
    return torch


def _silent(done: int, total: int, label: str) -> None:
    """No progress output."""


@contextmanager
def tqdm_progress() -> Iterator[Progress]:
    """A progress callback drawing a tqdm bar on stderr, closed on exit."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="shape", dynamic_ncols=True)

    def update(done: int, total: int, label: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_description_str(label[:48])
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
