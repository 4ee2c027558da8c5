"""Every CUDA call calibration makes, in one place: the rest of a GPU calibration is plain code.

A GPU run differs from a CPU run only in these calls (timing by CUDA events
after synchronising, the allocator's peak counters, the device's memory and
name) and in what it does with the timings (each shape timed on its own, the
median of back-to-back samples). ``Cuda`` makes the calls; ``CpuStandIn``
answers the same questions on the CPU (wall clock, resident set, RAM), so
the GPU flow (calibrate.run with a ``gpu``) is tested on a machine without one.
Seconds, bytes.
"""

import time
from collections.abc import Callable

import torch


class Cuda:
    """One CUDA device: timing, memory counters, memory size and name."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.memory_method = "torch.cuda.memory_allocated / max_memory_allocated"

    def synchronize(self) -> None:
        """Wait for the device's queued work."""
        torch.cuda.synchronize(self.device)

    def timed_s(self, fn: Callable[[], object]) -> float:
        """GPU seconds of one call between two CUDA events, after synchronising."""
        begin = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        torch.cuda.synchronize(self.device)
        return begin.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds

    def allocated_bytes(self) -> int:
        """Bytes the caching allocator has handed out now."""
        self.synchronize()
        return int(torch.cuda.memory_allocated(self.device))

    def reset_peak(self) -> None:
        """Start a new peak of allocated bytes."""
        self.synchronize()
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak_bytes(self) -> int:
        """The most bytes allocated at once since ``reset_peak``."""
        self.synchronize()
        return int(torch.cuda.max_memory_allocated(self.device))

    def memory_bytes(self) -> tuple[int, int]:
        """(free, total) bytes of the device."""
        free, total = torch.cuda.mem_get_info(self.device)
        return int(free), int(total)

    def name(self) -> str:
        """The device's name as torch reports it."""
        return torch.cuda.get_device_name(self.device)


class CpuStandIn(Cuda):
    """The same questions answered on the CPU, so the GPU flow runs (and is tested) without a GPU."""

    def __init__(self) -> None:
        from calibrate.memory import Meter, cpu_memory_unreadable

        super().__init__(torch.device("cpu"))
        unreadable = cpu_memory_unreadable()
        if unreadable is not None:
            raise RuntimeError(f"the CPU stand-in needs readable memory counters: {unreadable}")
        self._meter = Meter()
        self.memory_method = self._meter.memory_method

    def synchronize(self) -> None:
        """CPU work is synchronous."""

    def timed_s(self, fn: Callable[[], object]) -> float:
        """Wall-clock seconds of one call."""
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def allocated_bytes(self) -> int:
        """Resident bytes of the process."""
        return self._meter.allocated_bytes()

    def reset_peak(self) -> None:
        """Reset the resident high-water mark."""
        self._meter.reset_peak()

    def peak_bytes(self) -> int:
        """The resident high-water mark since ``reset_peak``."""
        return self._meter.peak_bytes()

    def memory_bytes(self) -> tuple[int, int]:
        """(available, total) RAM."""
        from calibrate.run import _available_ram_bytes, _total_ram_bytes

        return _available_ram_bytes(), _total_ram_bytes()

    def name(self) -> str:
        """The CPU model, marked as standing in for a GPU."""
        from calibrate.nvml import cpu_name

        return f"{cpu_name()} (standing in for a GPU)"
