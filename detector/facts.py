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

#: Where a GPU's partition count came from (``GpuDevice.partitions_from``), most direct first.
PARTITIONS_FROM_MODE = "mode"
"""The mode fixes it: not partitionable, SPX 1, DPX 2, TPX 3, QPX 4 (checked against KFD)."""
PARTITIONS_FROM_KFD = "kfd"
"""The KFD topology nodes of this GPU, every one of them read."""
PARTITIONS_FROM_KFD_COUNT = "kfd-node-count"
"""The number of KFD GPU nodes on the host (their properties denied), shared out by mode."""
PARTITIONS_FROM_AMDSMI = "amdsmi"
"""The processor handles amdsmi lists for this GPU (one per partition)."""
PARTITIONS_FROM_TABLE = "table"
"""The model's XCD count (detector.pci_ids): nothing on the host could be counted."""
PARTITIONS_UNKNOWN = "unknown"
"""Nothing says how many (a mode we cannot name, a model without an XCD count): the GPU gets
no partition label, and ``partitions`` is 1."""


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One physical AMD GPU (one PCI device bound to amdgpu), however many partitions it shows."""

    bdf: str
    """PCI address of the physical device, ``0000:05:00.0`` (partition function bits dropped)."""
    device_id: int
    """PCI device id, e.g. 0x74A1."""
    model: str | None
    """Model id for labels (``MI300X``); None when the device id is not in our table."""
    compute_partition: str | None = None
    """``SPX`` .. ``CPX``, or ``UNKNOWN``; None when the GPU cannot be partitioned."""
    memory_partition: str | None = None
    """``NPS1`` .. ``NPS8``, or ``UNKNOWN``; None when not reported."""
    partitions: int = 1
    """Logical GPUs this device shows (8 for an MI300X in CPX mode)."""
    vram_mib: int | None = None
    numa_node: int | None = None
    partitions_from: str = PARTITIONS_FROM_MODE
    """Where ``partitions`` came from: one of the ``PARTITIONS_FROM_*`` values."""
    compute_units: int | None = None
    """Compute units of the whole device, when a source reported them (KFD, amdsmi)."""
    revision: int | None = None
    """PCI revision id; tells a few products that share a device id apart."""
    product_name: str | None = None
    """The board's FRU product name (``product_name`` in sysfs), when the kernel has one."""


@dataclass(frozen=True, slots=True)
class UnboundGpu:
    """An AMD GPU on PCI that is not counted: no driver yet, or one other than amdgpu."""

    bdf: str
    device_id: int
    driver: str | None
    """``vfio-pci`` (VM passthrough), another driver's name, or None when none is bound."""


@dataclass(frozen=True, slots=True)
class GpuFacts:
    source: str
    """Which backend produced them: ``amdsmi`` or ``sysfs``."""
    devices: tuple[GpuDevice, ...] = ()
    warnings: tuple[str, ...] = ()
    """Things skipped but not fatal (a garbled file on one device), already logged."""
    unbound: tuple[UnboundGpu, ...] = ()
    """AMD GPUs on PCI left out because amdgpu does not drive them."""
    fallback: str | None = None
    """In ``auto`` mode, why sysfs answered instead of amdsmi (a short reason code)."""


@dataclass(frozen=True, slots=True)
class CpuFacts:
    vendor: str
    """``AuthenticAMD``, ``GenuineIntel``, ...; for CPUs without ``vendor_id`` (arm64) a
    description such as ``ARM implementer 0x41``."""
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
