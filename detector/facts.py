"""What the probes find, as plain data: the contract between probes, labeling and publishing.

Each probe returns one of these or raises ProbeError. A ProbeError means "could not look",
never "nothing there": the agent then keeps the labels that source produced last time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ProbeError(Exception):
    """A probe could not produce trustworthy facts (exception, timeout, unreadable files)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


class BackendUnavailable(ProbeError):
    """The probe's backend is not there at all (amdsmi not installed, no libamd_smi.so).

    Distinct from ProbeError so that ``auto`` GPU mode can fall back to sysfs.
    """


#: Probe source names; labels are kept or replaced per source.
GPU_SOURCE = "gpu"
CPU_SOURCE = "cpu"


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One physical AMD GPU (one PCI device), however many partitions it shows."""

    bdf: str
    """PCI address of the physical device, ``0000:05:00.0`` (partition function bits dropped)."""
    device_id: int
    """PCI device id, e.g. 0x74A1."""
    model: str | None
    """Model id for labels (``MI300X``); None when the device id is not in our table."""
    compute_partition: str | None = None
    """``SPX``, ``DPX``, ``TPX``, ``QPX``, ``CPX``; None when the GPU cannot be partitioned."""
    memory_partition: str | None = None
    """``NPS1``, ``NPS2``, ``NPS4``, ``NPS8``; None when not reported."""
    partitions: int = 1
    """Logical GPUs this device shows (8 for an MI300X in CPX mode)."""
    vram_mib: int | None = None
    numa_node: int | None = None


@dataclass(frozen=True, slots=True)
class GpuFacts:
    source: str
    """Which backend produced them: ``amdsmi`` or ``sysfs``."""
    devices: tuple[GpuDevice, ...] = ()
    warnings: tuple[str, ...] = ()
    """Things skipped but not fatal (a garbled file on one device), already logged."""


@dataclass(frozen=True, slots=True)
class CpuFacts:
    vendor: str
    """``AuthenticAMD``, ``GenuineIntel``, ..."""
    family: int | None
    model: int | None
    brand: str
    """The ``model name`` line, e.g. ``AMD EPYC 9575F 64-Core Processor`` or just ``AMD EPYC``."""
    generation: str | None
    """``ZEN1`` .. ``ZEN6`` from the kernel's family/model table; None when unknown or not AMD."""
    sockets: int
    physical_cores: int
    """Physical cores across all sockets (SMT siblings counted once)."""
    logical_cpus: int
    is_epyc: bool
    """True for server parts (brand says EPYC, or a masked brand on a server family)."""
    warnings: tuple[str, ...] = field(default=())
