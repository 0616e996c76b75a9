"""Does what amdsmi lists agree with what sysfs shows? Pure: two readings in, a verdict out.

amdsmi cannot be trusted on its own: rocm_smi (under libamd_smi) silently drops every GPU whose
KFD ``properties`` it cannot read, and inside a pod the device cgroup refuses exactly the GPUs
the pod was not given, so a detector given one GPU sees one. Older libraries also leave a BDF
zeroed. The PCI scan sees every GPU whatever the cgroup, so an amdsmi reading is used only when:

* it has no problems of its own (zero or malformed BDFs, unreadable handles);
* its GPUs are exactly the amdgpu-bound GPUs on PCI (same addresses, same device ids), so a
  partial list or two GPUs merged under one BDF never pass;
* every GPU is in the same partition modes in both;
* each GPU's partition count agrees with the one counted from sysfs, where sysfs counted it
  (KFD nodes, or the mode); where sysfs only had the model table, amdsmi's count, which comes
  from the device, is taken instead.

Otherwise the verdict names the first disagreement, and the caller uses sysfs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from detector.facts import (
    PARTITIONS_FROM_AMDSMI,
    PARTITIONS_FROM_TABLE,
    GpuDevice,
    GpuFacts,
)
from detector.pci_ids import identify
from detector.probes.amdsmi_gpu import SOURCE_NAME, AmdsmiGpu, AmdsmiReading
from detector.probes.partitions import GpuMode, PartitionsInFlux, check_counts

#: Disagreement kinds (the ``reason`` of the disagreement metric).
INCOMPLETE = "incomplete"
GPUS = "gpus"
IDENTITY = "identity"
MODES = "modes"
PARTITIONS = "partitions"


@dataclass(frozen=True, slots=True)
class Disagreement:
    kind: str
    message: str


def _key(bdf: str) -> tuple[int, int, int]:
    domain, bus, rest = bdf.split(":")
    return (int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16))


def _names(bdfs: list[str]) -> str:
    return ", ".join(bdfs) if len(bdfs) <= 4 else f"{', '.join(bdfs[:3])}, ... ({len(bdfs)})"


def compare(amdsmi: AmdsmiReading, sysfs: GpuFacts) -> Disagreement | None:
    """The first reason not to trust ``amdsmi``, or None when it agrees with ``sysfs``."""
    if amdsmi.problems:
        return Disagreement(INCOMPLETE, "; ".join(amdsmi.problems))
    smi = {gpu.physical_key: gpu for gpu in amdsmi.gpus}
    pci = {_key(device.bdf): device for device in sysfs.devices}
    if smi.keys() != pci.keys():
        return Disagreement(
            GPUS,
            f"amdsmi lists {len(smi)} GPU(s) ({_names([g.bdf for g in amdsmi.gpus])}) but PCI "
            f"shows {len(pci)} amdgpu-bound ({_names([d.bdf for d in sysfs.devices])}): a device "
            "cgroup that hides GPUs from the library, or BDFs it could not read",
        )
    for key, device in sorted(pci.items()):
        gpu = smi[key]
        if gpu.device_id != device.device_id:
            return Disagreement(
                IDENTITY,
                f"{device.bdf}: amdsmi says device 0x{gpu.device_id or 0:04x}, PCI "
                f"0x{device.device_id:04x}",
            )
        modes = (gpu.compute_partition, gpu.memory_partition)
        if modes != (device.compute_partition, device.memory_partition):
            return Disagreement(
                MODES,
                f"{device.bdf}: amdsmi reports modes {modes}, sysfs "
                f"{(device.compute_partition, device.memory_partition)}",
            )
        if device.partitions_from != PARTITIONS_FROM_TABLE and gpu.partitions != device.partitions:
            return Disagreement(
                PARTITIONS,
                f"{device.bdf}: amdsmi lists {gpu.partitions} partition(s), sysfs counts "
                f"{device.partitions} ({device.partitions_from})",
            )
    modes_for_check = [
        GpuMode(key, d.bdf, d.device_id, d.model, d.compute_partition) for key, d in pci.items()
    ]
    try:
        check_counts(modes_for_check, {k: g.partitions for k, g in smi.items()}, "amdsmi")
    except PartitionsInFlux as exc:
        return Disagreement(PARTITIONS, exc.message)
    return None


def _merged(device: GpuDevice, gpu: AmdsmiGpu) -> GpuDevice:
    units = gpu.compute_units or device.compute_units
    merged = replace(
        device,
        model=identify(device.device_id, device.revision, units, device.product_name),
        compute_units=units,
        vram_mib=gpu.vram_mib or device.vram_mib,
    )
    if device.partitions_from == PARTITIONS_FROM_TABLE:
        merged = replace(merged, partitions=gpu.partitions, partitions_from=PARTITIONS_FROM_AMDSMI)
    return merged


def merge(amdsmi: AmdsmiReading, sysfs: GpuFacts) -> GpuFacts:
    """The facts of an amdsmi reading that :func:`compare` found in agreement with ``sysfs``.

    The GPUs and modes are the same in both; amdsmi adds what the library knows better: the
    compute units (which tell an MI250X from an MI250), VRAM, and partition counts where sysfs
    had only the model table.
    """
    smi = {gpu.physical_key: gpu for gpu in amdsmi.gpus}
    devices = tuple(_merged(device, smi[_key(device.bdf)]) for device in sysfs.devices)
    return replace(sysfs, source=SOURCE_NAME, devices=devices)
