"""GPU and device specifications and their prices.

Units: FLOPS in dense TFLOPS (10^12/s, no 2:4 sparsity), memory in GB (10^9
bytes), bandwidth and links in GB/s, power in W, prices in USD per GPU-hour.
"""

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from profiles.base import StrictModel


class Price(StrictModel):
    """An on-demand price with the date it was seen and where; users override it per scenario."""

    usd_per_gpu_hour: PositiveFloat
    as_of: str = Field(description="Date or period the price was quoted, as written in the source")
    source: str
    unverified: bool = False


class Gpu(StrictModel):
    """One accelerator model (or an edge device) as the roofline sees it."""

    id: str
    name: str
    kind: Literal["datacenter", "workstation", "edge", "cpu"] = Field(
        "datacenter", description="'cpu': the host CPU of a calibration profile (profiles.perf.calibrated.host_cpu)")
    bf16_tflops: PositiveFloat = Field(description="Dense BF16/FP16 tensor TFLOPS")
    fp8_tflops: PositiveFloat | None = Field(None, description="Dense FP8 TFLOPS; None if the GPU has no FP8 tensor cores")
    memory_gb: PositiveFloat
    memory_mib: PositiveInt | None = Field(
        None, description="Total memory as the driver reports it (nvidia-smi), MiB; engines size their KV cache "
                          "from this figure, not from the marketing GB (an '80 GB' H100 reports 81,559 MiB)")
    bandwidth_gbs: PositiveFloat = Field(description="Memory bandwidth, GB/s")
    nvlink_gbs: PositiveFloat | None = Field(None, description="NVLink bandwidth per GPU (bidirectional), GB/s; None without NVLink")
    pcie_gbs: PositiveFloat = Field(description="Host/peer PCIe bandwidth per GPU (bidirectional), GB/s")
    tdp_w: PositiveFloat | None = Field(description="Board power, W; None for a host CPU (not measured)")
    price: Price | None = Field(None, description="None for devices bought, not rented (edge)")
    source: str
    unverified: tuple[str, ...] = Field((), description="Names of fields FACTS.md marks unverified")

    @property
    def memory_bytes(self) -> int:
        """Device memory in bytes: the driver's MiB figure where the catalog has it, else ``memory_gb`` x 1e9."""
        return self.memory_mib * 2**20 if self.memory_mib else int(self.memory_gb * 1e9)

    @property
    def interconnect_gbs(self) -> float:
        """The fastest GPU-to-GPU link: NVLink where present, else PCIe."""
        return self.nvlink_gbs or self.pcie_gbs
