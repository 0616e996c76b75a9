"""AMD GPUs from sysfs alone: PCI devices first, the KFD topology where PCI is not enough.

What counts, and why:

* GPUs are the amdgpu-bound AMD GPU functions on PCI (detector.probes.pci); one physical GPU is
  one PCI device however many partitions it shows. Functions bound to another driver or to none
  are reported as ``unbound`` and not counted.
* Each GPU's partition count is counted from the device and checked against its mode
  (detector.probes.partitions); a topology caught mid-switch fails the probe.
* Where there is no PCI view at all (a container given only the KFD topology), the physical
  GPUs are the KFD GPU nodes grouped by PCI address, and their modes are unknown: partitionable
  models then get no partition label. Every node must be read for that: EPERM, a garbled or
  truncated node fails the probe, because a GPU left out would lower the count.
* The model comes from the device id, with the compute units (KFD) and FRU product name as the
  evidence the few shared ids need (detector.pci_ids.identify).

The rule throughout: a GPU that cannot be read fails the probe (ProbeError naming the file), and
the agent keeps its last good GPU labels. A bad file of another device (a NIC, a bridge)
changes nothing, and neither does a bad informational file (``numa_node``, VRAM size) of a GPU.
"""

from __future__ import annotations

import logging
from collections import Counter

from detector.facts import (
    GPU_SOURCE,
    PARTITIONS_FROM_KFD,
    GpuDevice,
    GpuFacts,
    ProbeError,
)
from detector.pci_ids import UNKNOWN_MODE, XCD_COUNT, identify
from detector.probes.kfd import KfdTopology, read_kfd_topology
from detector.probes.once import say_once
from detector.probes.partitions import GpuMode, count_partitions
from detector.probes.pci import PciGpu, bdf_of, scan_pci
from detector.probes.roots import HostRoots

log = logging.getLogger(__name__)

SOURCE_NAME = "sysfs"


def _compute_units(kfd: KfdTopology | None) -> dict[tuple[int, int, int], int]:
    """Compute units per GPU, summed over its partitions, when every node was read."""
    if kfd is None or not kfd.complete:
        return {}
    units: Counter[tuple[int, int, int]] = Counter()
    for node in kfd.gpu_nodes:
        if node.compute_units is None:
            return {}
        units[node.physical_key] += node.compute_units
    return dict(units)


def _model(gpu: PciGpu, units: int | None, warnings: list[str]) -> str | None:
    model = identify(gpu.device_id, gpu.revision, units, gpu.product_name)
    if model is None:
        message = f"{gpu.bdf}: unknown AMD device id 0x{gpu.device_id:04x}, no model label"
        warnings.append(message)
        log.warning("%s", message)
    return model


def _from_pci(
    gpus: list[PciGpu], kfd: KfdTopology | None, warnings: list[str]
) -> tuple[GpuDevice, ...]:
    units = _compute_units(kfd)
    models = {gpu.bdf: _model(gpu, units.get(gpu.physical_key), warnings) for gpu in gpus}
    modes = [
        GpuMode(g.physical_key, g.bdf, g.device_id, models[g.bdf], g.compute_partition)
        for g in gpus
    ]
    counts = count_partitions(modes, kfd, warnings)
    return tuple(
        GpuDevice(
            bdf=gpu.bdf,
            device_id=gpu.device_id,
            model=models[gpu.bdf],
            compute_partition=gpu.compute_partition,
            memory_partition=gpu.memory_partition,
            partitions=counts[gpu.physical_key][0],
            vram_mib=gpu.vram_mib,
            numa_node=gpu.numa_node,
            partitions_from=counts[gpu.physical_key][1],
            compute_units=units.get(gpu.physical_key),
            revision=gpu.revision,
            product_name=gpu.product_name,
        )
        for gpu in gpus
    )


def _from_kfd(kfd: KfdTopology | None, warnings: list[str]) -> tuple[GpuDevice, ...]:
    """Physical GPUs from the KFD topology alone (no PCI view); partition modes unknown."""
    if kfd is None:
        raise ProbeError(
            GPU_SOURCE, "no PCI view and no KFD topology under this sysfs: cannot see GPUs"
        )
    problems = kfd.problems()
    if problems:
        raise ProbeError(GPU_SOURCE, f"no PCI view, and the KFD view is not whole: {problems}")
    if kfd.denied:
        raise ProbeError(
            GPU_SOURCE,
            f"KFD GPU node(s) {', '.join(kfd.denied)} are not readable (EPERM) and there is no "
            "PCI view: cannot see this node's GPUs (device cgroup?)",
        )
    by_key: dict[tuple[int, int, int], list[int]] = {}
    for node in kfd.gpu_nodes:
        by_key.setdefault(node.physical_key, []).append(node.device_id)
    units = _compute_units(kfd)
    devices = []
    for key, device_ids in sorted(by_key.items()):
        model = identify(device_ids[0], compute_units=units.get(key))
        if model is None:
            message = f"{bdf_of(key)}: unknown AMD device id 0x{device_ids[0]:04x}"
            warnings.append(message)
            log.warning("%s", message)
        # Partitionable parts in an unknown mode: no partition label rather than a wrong one.
        mode = UNKNOWN_MODE if model in XCD_COUNT else None
        devices.append(
            GpuDevice(
                bdf=bdf_of(key),
                device_id=device_ids[0],
                model=model,
                compute_partition=mode,
                partitions=len(device_ids),
                partitions_from=PARTITIONS_FROM_KFD,
                compute_units=units.get(key),
            )
        )
    return tuple(devices)


def probe_sysfs_gpus(roots: HostRoots) -> GpuFacts:
    """The node's AMD GPUs from sysfs. Raises ProbeError when it cannot see them."""
    warnings: list[str] = []
    pci = scan_pci(roots.sysfs)
    kfd = read_kfd_topology(roots.sysfs, warnings)
    if pci is None:
        devices = _from_kfd(kfd, warnings)
        return GpuFacts(source=SOURCE_NAME, devices=devices, warnings=tuple(warnings))
    warnings += pci.warnings
    if pci.unreadable:
        total = len(pci.unreadable) + len(pci.gpus)
        raise ProbeError(
            GPU_SOURCE,
            f"{len(pci.unreadable)} of {total} AMD GPU device(s) unreadable, so the GPU count "
            f"is unknown: {'; '.join(pci.unreadable)}",
        )
    if not pci.gpus and kfd is not None and kfd.gpu_node_count:
        raise ProbeError(
            GPU_SOURCE,
            f"PCI shows no amdgpu-bound GPU but the KFD topology has {kfd.gpu_node_count} GPU "
            "node(s): the two views disagree",
        )
    for gpu in pci.unbound:
        say_once(
            log,
            f"{gpu.bdf}: AMD GPU 0x{gpu.device_id:04x} is "
            + (
                f"bound to {gpu.driver}"
                if gpu.driver
                else "bound to no driver (amdgpu not loaded?)"
            )
            + ", not amdgpu: not counted (no pod on this node can use it)",
        )
    devices = _from_pci(pci.gpus, kfd, warnings)
    return GpuFacts(
        source=SOURCE_NAME,
        devices=devices,
        warnings=tuple(warnings),
        unbound=tuple(pci.unbound),
    )
