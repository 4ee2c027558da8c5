"""Device facts from NVML (nvidia-ml-py) and torch: names, driver, memory, power, clocks; the CPU's model.

Every reading that cannot be taken (no NVML library, no NVIDIA driver, a
CPU-only torch) is None with ``status = "unavailable: <reason>"``; nothing is
guessed. Memory in bytes, power in W, clocks in MHz.
"""

import platform
from pathlib import Path

import torch

from profiles.calibration import NvmlReading


def nvml_reading(index: int = 0) -> NvmlReading:
    """NVML's view of GPU ``index`` now, or why there is none."""
    try:
        import pynvml  # nvidia-ml-py; imported here so CPU-only installs still calibrate
    except ImportError as error:
        return NvmlReading(status=f"unavailable: nvidia-ml-py not installed ({error})")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        return NvmlReading(status=f"unavailable: {error}")
    try:
        return _read_device(pynvml, index)
    except pynvml.NVMLError as error:
        return NvmlReading(status=f"unavailable: {error}")
    finally:
        pynvml.nvmlShutdown()


def _read_device(pynvml, index: int) -> NvmlReading:  # noqa: ANN001 - the pynvml module
    """Name, driver, memory, power and clocks of GPU ``index`` (NVML already initialised)."""
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    return NvmlReading(
        status="ok",
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        driver=_text(pynvml.nvmlSystemGetDriverVersion()),
        memory_used_bytes=int(memory.used),
        memory_total_bytes=int(memory.total),
        power_w=pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3,  # NVML reports milliwatts
        sm_clock_mhz=int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)),
        memory_clock_mhz=int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)),
    )


def _text(value: str | bytes) -> str:
    """Older nvidia-ml-py releases return bytes."""
    return value.decode() if isinstance(value, bytes) else value


def cuda_version() -> str:
    """CUDA version torch was built with, or why there is none."""
    if torch.version.cuda is None:
        return "unavailable: torch built without CUDA"
    return torch.version.cuda


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return "CPU " + line.split(":", 1)[1].strip()
    return "CPU " + (platform.processor() or platform.machine() or "unknown")
