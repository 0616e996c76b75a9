"""AMD GPUs from sysfs alone: PCI devices first, the KFD topology where PCI is not enough.

What counts, and why:

* A GPU is a PCI device (``<sysfs>/bus/pci/devices/<BDF>``) of vendor 0x1002 whose class is a
  processing accelerator (0x12xxxx, Instinct) or a display controller (0x03xxxx, older Instinct
  and Radeon). Audio functions of Radeon cards (0x0403xx) are not GPUs. A virtual function that
  has a ``physfn`` link belongs to a physical function on this same host and is not counted
  again (inside a VM a passed-through VF has no such link and is the VM's GPU).
* One physical GPU is one PCI device however many partitions it shows. Its partition count is
  the number of KFD GPU nodes at its PCI address when the KFD topology was read completely;
  otherwise it follows from the compute-partition mode and the model's XCD count (CPX = one per
  XCD: 8 on MI300X/MI325X/MI350X/MI355X, 6 on MI300A, 4 on MI308X; DPX 2, TPX 3, QPX 4).
* Where PCI shows no AMD GPU (a container that only sees the KFD topology), the physical GPUs
  are the KFD GPU nodes grouped by PCI address; their partition modes are then unknown.
* EPERM on a KFD GPU node means "this reader may not see that GPU", never "no GPU". When PCI
  already proved the GPUs, the probe still reports them (partition counts then come from the
  mode files) and adds a warning; when PCI proved nothing, the probe raises ProbeError so the
  agent keeps its previous GPU labels instead of removing them.
* A garbled or truncated file of an AMD GPU is logged (naming the file) and that device is
  skipped, and the probe then raises ProbeError: a count that silently left one GPU out would
  change the node's labels from bad input, so the agent keeps its last good GPU labels and
  reports itself unhealthy instead. The probe never guesses a model. A bad file of another
  device (a NIC, a bridge) changes nothing, and neither does a bad informational file
  (``numa_node``, VRAM size) of a GPU. An unknown AMD device id is reported with
  ``model=None`` (no label).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from detector.facts import GPU_SOURCE, GpuDevice, GpuFacts, ProbeError
from detector.pci_ids import (
    AMD_GPU_VENDOR_ID,
    COMPUTE_PARTITIONS,
    MEMORY_PARTITIONS,
    model_for,
    partitions_for_mode,
)
from detector.probes.files import BadFile, parse_hex, parse_int, read_attr, read_optional_attr
from detector.probes.kfd import KfdTopology, read_kfd_topology
from detector.probes.roots import HostRoots

log = logging.getLogger(__name__)

SOURCE_NAME = "sysfs"
PCI_DEVICES_DIR = Path("bus/pci/devices")
_GPU_CLASSES = (0x12, 0x03)  # PCI base class: processing accelerator, display controller


@dataclass(frozen=True, slots=True)
class _PciGpu:
    bdf: str
    device_id: int
    model: str | None
    compute_partition: str | None
    memory_partition: str | None
    vram_mib: int | None
    numa_node: int | None

    @property
    def physical_key(self) -> tuple[int, int, int]:
        domain, bus, rest = self.bdf.split(":")
        return (int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16))


class _Report:
    """Warnings of one probe run, logged as they are found."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s", message)


def _bdf_of(key: tuple[int, int, int]) -> str:
    domain, bus, device = key
    return f"{domain:04x}:{bus:02x}:{device:02x}.0"


def _partition_attr(path: Path, allowed: frozenset[str]) -> str | None:
    value = read_optional_attr(path)
    if value is not None and value not in allowed:
        raise BadFile(path, f"expected one of {', '.join(sorted(allowed))}, got {value!r}")
    return value


def _optional_int(path: Path, report: _Report) -> int | None:
    """Informational attributes: a bad one costs the value, not the device."""
    try:
        value = read_optional_attr(path)
        return None if value is None else parse_int(path, value)
    except (OSError, BadFile) as exc:
        report.warn(f"ignoring {path}: {exc}")
        return None


def _is_amd_gpu(device_dir: Path) -> bool:
    """Class, then vendor. Raises OSError/BadFile only for a device that may be an AMD GPU.

    The class goes first so that a bad ``vendor`` file of a NIC or bridge never makes a device
    a "candidate we could not read"; when the class itself is unreadable, a readable vendor
    other than AMD's still rules the device out.
    """
    class_path = device_dir / "class"
    vendor_path = device_dir / "vendor"
    try:
        pci_class = parse_hex(class_path, read_attr(class_path), 6)
    except (OSError, BadFile):
        if parse_hex(vendor_path, read_attr(vendor_path), 4) != AMD_GPU_VENDOR_ID:
            return False
        raise
    if pci_class >> 16 not in _GPU_CLASSES:
        return False
    return parse_hex(vendor_path, read_attr(vendor_path), 4) == AMD_GPU_VENDOR_ID


def _read_pci_gpu(device_dir: Path, report: _Report) -> _PciGpu:
    device_path = device_dir / "device"
    device_id = parse_hex(device_path, read_attr(device_path), 4)
    model = model_for(device_id)
    if model is None:
        report.warn(f"{device_dir.name}: unknown AMD device id 0x{device_id:04x}, no model label")
    compute = _partition_attr(device_dir / "current_compute_partition", COMPUTE_PARTITIONS)
    memory = _partition_attr(device_dir / "current_memory_partition", MEMORY_PARTITIONS)
    vram_bytes = _optional_int(device_dir / "mem_info_vram_total", report)
    numa = _optional_int(device_dir / "numa_node", report)
    return _PciGpu(
        bdf=device_dir.name,
        device_id=device_id,
        model=model,
        compute_partition=compute,
        memory_partition=memory,
        vram_mib=None if vram_bytes is None else vram_bytes // (1024 * 1024),
        numa_node=None if numa is None or numa < 0 else numa,
    )


def _scan_pci(sysfs: Path, report: _Report) -> tuple[list[_PciGpu], int] | None:
    """AMD GPUs on PCI and how many candidates were skipped; None when there is no PCI view."""
    devices_dir = sysfs / PCI_DEVICES_DIR
    try:
        names = sorted(os.listdir(devices_dir))
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        report.warn(f"cannot list {devices_dir}: {exc.strerror}")
        return None
    if not names:
        return None
    gpus: list[_PciGpu] = []
    skipped = 0
    for name in names:
        device_dir = devices_dir / name
        try:
            if not _is_amd_gpu(device_dir):
                continue
            if os.path.lexists(device_dir / "physfn"):
                continue  # a VF of a GPU on this host, counted through its physical function
            gpus.append(_read_pci_gpu(device_dir, report))
        except FileNotFoundError as exc:
            if not os.path.lexists(device_dir):
                continue  # the device went away while we listed (hot-unplug)
            skipped += 1
            report.warn(f"PCI device {name} skipped: {exc.filename} is missing")
        except (OSError, BadFile) as exc:
            skipped += 1
            report.warn(f"PCI device {name} skipped: {exc}")
    return gpus, skipped


def _mode_partitions(gpu: _PciGpu, report: _Report) -> int:
    count = partitions_for_mode(gpu.model, gpu.compute_partition)
    if count is None:
        report.warn(
            f"{gpu.bdf}: cannot tell how many partitions {gpu.compute_partition} makes on "
            f"device 0x{gpu.device_id:04x}; counting it as 1"
        )
        return 1
    return count


def _from_pci(
    gpus: list[_PciGpu], kfd: KfdTopology | None, report: _Report
) -> tuple[GpuDevice, ...]:
    counts = kfd.partitions_by_device() if kfd is not None and kfd.complete else None
    if kfd is not None and not kfd.complete and gpus:
        report.warn(
            "KFD topology incomplete (nodes denied or unreadable); partition counts "
            "derived from each GPU's compute-partition mode"
        )
    known = {gpu.physical_key for gpu in gpus}
    if counts is not None:
        for key in sorted(set(counts) - known):
            report.warn(f"KFD GPU at {_bdf_of(key)} has no matching PCI device; ignored")
    devices = []
    for gpu in gpus:
        partitions = counts.get(gpu.physical_key) if counts is not None else None
        devices.append(
            GpuDevice(
                bdf=gpu.bdf,
                device_id=gpu.device_id,
                model=gpu.model,
                compute_partition=gpu.compute_partition,
                memory_partition=gpu.memory_partition,
                partitions=partitions or _mode_partitions(gpu, report),
                vram_mib=gpu.vram_mib,
                numa_node=gpu.numa_node,
            )
        )
    return tuple(devices)


def _from_kfd(kfd: KfdTopology, report: _Report) -> tuple[GpuDevice, ...]:
    """Physical GPUs from the KFD topology alone (no PCI view); partition modes unknown."""
    if kfd.broken:
        report.warn("some KFD nodes were unreadable; GPUs and partitions may be undercounted")
    by_key: dict[tuple[int, int, int], list[int]] = {}
    for node in kfd.gpu_nodes:
        by_key.setdefault(node.physical_key, []).append(node.device_id)
    devices = []
    for key, device_ids in sorted(by_key.items()):
        model = model_for(device_ids[0])
        if model is None:
            report.warn(f"{_bdf_of(key)}: unknown AMD device id 0x{device_ids[0]:04x}")
        devices.append(
            GpuDevice(
                bdf=_bdf_of(key), device_id=device_ids[0], model=model, partitions=len(device_ids)
            )
        )
    return tuple(devices)


def probe_sysfs_gpus(roots: HostRoots) -> GpuFacts:
    """The node's AMD GPUs from sysfs. Raises ProbeError when it cannot see them."""
    report = _Report()
    pci = _scan_pci(roots.sysfs, report)
    kfd = read_kfd_topology(roots.sysfs, report.warnings)
    gpus, skipped = pci if pci is not None else ([], 0)
    if skipped:
        raise ProbeError(
            GPU_SOURCE,
            f"{skipped} of {skipped + len(gpus)} AMD GPU device(s) unreadable, so the GPU "
            f"count is unknown: {'; '.join(report.warnings)}",
        )
    if gpus:
        devices = _from_pci(gpus, kfd, report)
    elif kfd is not None and kfd.denied:
        raise ProbeError(
            GPU_SOURCE,
            f"KFD GPU node(s) {', '.join(kfd.denied)} are not readable (EPERM) and PCI shows "
            "no AMD GPU: cannot see this node's GPUs (device cgroup?)",
        )
    elif kfd is not None and kfd.gpu_nodes:
        if pci is not None:
            report.warn("PCI shows no AMD GPU but the KFD topology does; using the KFD view")
        devices = _from_kfd(kfd, report)
    else:
        devices = ()
    return GpuFacts(source=SOURCE_NAME, devices=devices, warnings=tuple(report.warnings))
