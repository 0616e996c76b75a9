"""The AMD GPUs on PCI (``<sysfs>/bus/pci/devices``), and which of them amdgpu drives.

A GPU is a PCI function of vendor 0x1002 whose class is a processing accelerator (0x12xxxx,
Instinct) or a display controller (0x03xxxx, older Instinct and Radeon); the audio function of
a Radeon card (0x0403xx) is not one. A virtual function with a ``physfn`` link belongs to a
physical function on this host and is not counted again (inside a VM, a passed-through VF has no
such link and is the VM's GPU).

Only functions bound to the ``amdgpu`` driver count, as AMD's device plugin counts only
``/sys/module/amdgpu/drivers/pci:amdgpu/*``: a GPU bound to ``vfio-pci`` (KubeVirt or VM
passthrough), to another driver, or to none yet (the driver is not loaded) is reported in
``unbound`` and is no GPU a pod on this node can use. amdgpu is also what creates the partition
files, so an unbound GPU has no mode to read either.

What "cannot see" means here, as opposed to "nothing there":

* ``bus/pci/devices`` missing while ``<sysfs>/bus`` lists no ``pci`` at all: the kernel has no
  PCI bus, so there are no PCI GPUs (an empty, successful reading).
* ``bus/pci/devices`` missing otherwise (a container given only part of /sys): no PCI view,
  ``scan_pci`` returns None and the caller decides what else it can trust.
* a PCI directory that cannot be listed, or is empty (every real machine has a host bridge):
  raises ProbeError.
* a candidate GPU whose files are garbled, truncated or unreadable: ``unreadable`` names it,
  and the caller fails the probe (one GPU left out would change the count).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from detector.facts import GPU_SOURCE, ProbeError, UnboundGpu
from detector.pci_ids import AMD_GPU_VENDOR_ID, COMPUTE_PARTITIONS, MEMORY_PARTITIONS, UNKNOWN_MODE
from detector.probes.files import BadFile, parse_hex, parse_int, read_attr, read_optional_attr

log = logging.getLogger(__name__)

PCI_DEVICES_DIR = Path("bus/pci/devices")
AMDGPU_DRIVER = "amdgpu"
_GPU_CLASSES = (0x12, 0x03)  # PCI base class: processing accelerator, display controller
_MODE_RE = re.compile(r"[A-Z][A-Z0-9]*")


@dataclass(frozen=True, slots=True)
class PciGpu:
    """An amdgpu-bound AMD GPU as its PCI directory describes it."""

    bdf: str
    device_id: int
    revision: int | None
    compute_partition: str | None
    memory_partition: str | None
    vram_mib: int | None
    numa_node: int | None
    product_name: str | None

    @property
    def physical_key(self) -> tuple[int, int, int]:
        domain, bus, rest = self.bdf.split(":")
        return (int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16))


@dataclass(slots=True)
class PciView:
    gpus: list[PciGpu] = field(default_factory=list)
    unbound: list[UnboundGpu] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """One message per AMD GPU candidate whose files could not be read."""
    warnings: list[str] = field(default_factory=list)


def bdf_of(key: tuple[int, int, int]) -> str:
    domain, bus, device = key
    return f"{domain:04x}:{bus:02x}:{device:02x}.0"


def _warn(view: PciView, message: str) -> None:
    view.warnings.append(message)
    log.warning("%s", message)


def _mode_attr(path: Path, known: frozenset[str], view: PciView) -> str | None:
    """A partition mode file: None when absent; any kernel-legal value is accepted.

    ``UNKNOWN`` is what the kernel writes for a mode it cannot name; a well-formed word we do
    not know (a newer kernel's mode) is treated the same way: that GPU's partition label is
    dropped, its model label stays. A file that is not one word is garbled.
    """
    value = read_optional_attr(path)
    if value is None or value in known or value == UNKNOWN_MODE:
        return value
    if not _MODE_RE.fullmatch(value):
        raise BadFile(path, f"expected a partition mode such as {min(known)}, got {value!r}")
    _warn(view, f"{path}: partition mode {value!r} is not one we know; no partition label")
    return UNKNOWN_MODE


def _optional_int(path: Path, view: PciView) -> int | None:
    """Informational attributes: a bad one costs the value, not the device."""
    try:
        value = read_optional_attr(path)
        return None if value is None else parse_int(path, value)
    except (OSError, BadFile) as exc:
        _warn(view, f"ignoring {path}: {exc}")
        return None


def _revision(path: Path, view: PciView) -> int | None:
    """Only a few shared ids need it (detector.pci_ids.identify): a bad one costs the hint."""
    try:
        value = read_optional_attr(path)
        return None if value is None else parse_hex(path, value, 2)
    except (OSError, BadFile) as exc:
        _warn(view, f"ignoring {path}: {exc}")
        return None


def _optional_text(path: Path) -> str | None:
    try:
        return read_optional_attr(path) or None
    except (OSError, BadFile):
        return None  # the FRU name is only a hint


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


def _driver(device_dir: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(device_dir / "driver"))
    except FileNotFoundError:
        return None


def _read_gpu(device_dir: Path, device_id: int, view: PciView) -> PciGpu:
    compute = _mode_attr(device_dir / "current_compute_partition", COMPUTE_PARTITIONS, view)
    memory = _mode_attr(device_dir / "current_memory_partition", MEMORY_PARTITIONS, view)
    vram_bytes = _optional_int(device_dir / "mem_info_vram_total", view)
    numa = _optional_int(device_dir / "numa_node", view)
    return PciGpu(
        bdf=device_dir.name,
        device_id=device_id,
        revision=_revision(device_dir / "revision", view),
        compute_partition=compute,
        memory_partition=memory,
        vram_mib=None if vram_bytes is None else vram_bytes // (1024 * 1024),
        numa_node=None if numa is None or numa < 0 else numa,
        product_name=_optional_text(device_dir / "product_name"),
    )


def _no_pci_bus(sysfs: Path) -> bool:
    """True when sysfs is readable and the kernel registered no PCI bus type at all."""
    try:
        return "pci" not in os.listdir(sysfs / "bus")
    except OSError:
        return False


def scan_pci(sysfs: Path) -> PciView | None:
    """The AMD GPUs on PCI; None when this reader has no PCI view (see the module docstring)."""
    devices_dir = sysfs / PCI_DEVICES_DIR
    try:
        names = sorted(os.listdir(devices_dir))
    except FileNotFoundError:
        return PciView() if _no_pci_bus(sysfs) else None
    except OSError as exc:
        raise ProbeError(
            GPU_SOURCE, f"cannot list {devices_dir} ({exc.strerror}): the PCI view is unreadable"
        ) from exc
    if not names:
        raise ProbeError(
            GPU_SOURCE,
            f"{devices_dir} is empty (every machine has a host bridge): the PCI view is "
            "not readable here",
        )
    view = PciView()
    for name in names:
        device_dir = devices_dir / name
        try:
            if not _is_amd_gpu(device_dir):
                continue
            if os.path.lexists(device_dir / "physfn"):
                continue  # a VF of a GPU on this host, counted through its physical function
            device_path = device_dir / "device"
            device_id = parse_hex(device_path, read_attr(device_path), 4)
            driver = _driver(device_dir)
            if driver != AMDGPU_DRIVER:
                view.unbound.append(UnboundGpu(name, device_id, driver))
                continue
            view.gpus.append(_read_gpu(device_dir, device_id, view))
        except FileNotFoundError as exc:
            if not os.path.lexists(device_dir):
                continue  # the device went away while we listed (hot-unplug)
            view.unreadable.append(f"PCI device {name}: {exc.filename} is missing")
        except (OSError, BadFile) as exc:
            view.unreadable.append(f"PCI device {name}: {exc}")
    for message in view.unreadable:
        log.warning("%s", message)
    return view
