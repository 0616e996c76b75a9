"""Fixture host trees: ``sys/``, ``proc/`` and ``dev/`` laid out as on real machines.

``build_host(dest_dir, name) -> Path`` writes the host ``name`` under ``dest_dir/name`` and
returns that root, usable with ``HostRoots.from_host_root(root)``; ``HOSTS`` lists the names and
``expected_labels(name)`` the labels the sysfs probe plus detector.labeling must produce for it
(``GPU_PROBE_FAILS`` names the hosts whose GPU probe must raise ProbeError instead).
``amdsmi_host(name)`` describes the same host to the C stand-in for libamd_smi.so
(tests/amdsmi_stub), with the same PCI addresses.

Layout, as the kernel makes it (checked against real dumps: the MI300A node of ROCm's
k8s-device-plugin test data, lspci trees of MI300X/MI308X servers):

* ``sys/devices/pci0000:XX/0000:XX:01.1/<BDF>/`` holds a PCI device's attributes (``vendor``,
  ``device``, ``class``, ``revision``, ... each ending in a newline); ``sys/bus/pci/devices/<BDF>``
  is a relative symlink to it (``../../../devices/pci0000:XX/...``). Every host has its platform
  devices: EPYC root complexes, IOMMUs, NICs, NVMe and the BMC's VGA; Intel's; a KVM guest's
  Q35 bridge and virtio devices.
* A GPU's ``driver`` link names its driver: ``../../../../bus/pci/drivers/amdgpu`` (and
  ``bus/pci/drivers/amdgpu/<BDF>`` links back, ``module/amdgpu/drivers/pci:amdgpu`` points at the
  driver), or ``vfio-pci``, or none while no driver is bound. Only amdgpu creates the rest: the
  partition files (``current_compute_partition`` / ``current_memory_partition`` and the
  ``available_*`` lists) of partitionable GPUs, ``mem_info_vram_total``, the DRM nodes, the KFD
  topology.
* DRM: the GPU's ``drm/cardN`` and ``drm/renderD<128+N>``; a partitionable GPU also gets its 7
  ``sys/devices/platform/amdgpu_xcp_K`` devices, each with a card and a render node, **in every
  mode**. In CPX the first partition keeps the GPU's own render node and the others are the xcp
  render nodes (KFD's ``drm_render_minor`` says which); in SPX the xcp devices carry no
  partition. Minors go in probe order: a GPU, then its 7 xcp devices.
* ``sys/class/kfd/kfd/topology``: ``generation_id``, then one CPU node per socket and one node
  per GPU partition of every amdgpu GPU. Partitions of one GPU share ``location_id`` except the
  partition id, in its low three bits (older drivers) or in bits [31:28]
  (``HostSpec.partition_id_high_bits``, newer ones).
* ``sys/devices/system/cpu``: ``online`` and per-CPU ``topology/`` with Linux's numbering (first
  threads of all cores of all sockets, then their SMT siblings).
* ``proc/cpuinfo`` with one block per logical CPU (the arm64 layout for ``arch="arm64"``),
  ``proc/meminfo``.

Denied KFD nodes (hosts with ``kfd_denied``): the GPU nodes' ``properties`` files are mode 000.
Root ignores file modes, so when the tree is built by root each such file is instead a symlink to
a file the kernel refuses to read even for root (``/proc/sys/vm/drop_caches``, write-only): the
probe then gets a genuine PermissionError from the kernel, as it does from KFD. Use
``read_is_denied(path)`` to check that the denial is in force where the tests run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from detector.labels import LABEL_PREFIX

# --------------------------------------------------------------------------------------------
# Hardware descriptions


@dataclass(frozen=True)
class CpuSpec:
    vendor: str
    family: int
    model: int
    brand: str
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    stepping: int = 1
    microcode: str = "0xa101148"
    mhz: str = "2400.000"
    arch: str = "x86"
    """``x86`` or ``arm64`` (whose cpuinfo has no vendor_id: CPU implementer/part instead)."""


@dataclass(frozen=True)
class GpuKind:
    device_id: int
    market_name: str
    pci_class: int = 0x120000
    vram_gib: int = 192
    compute_units: int = 304
    xcds: int = 1
    gfx_target_version: int = 90402
    available_compute: str | None = None
    available_memory: str | None = None
    revision: int = 0x00
    product_name: str | None = None
    """The FRU name the kernel shows in ``product_name`` (absent on boards without one)."""

    @property
    def partitionable(self) -> bool:
        return self.available_compute is not None


MI300X = GpuKind(0x74A1, "AMD Instinct MI300X", xcds=8, available_compute="SPX, DPX, QPX, CPX",
                 available_memory="NPS1, NPS4")  # fmt: skip
MI300X_VF = GpuKind(0x74B5, "AMD Instinct MI300X VF", xcds=8)
#: An SR-IOV VF that was given one XCC: the kernel calls its mode CPX (one XCC per partition).
MI300X_VF_1XCC = GpuKind(0x74B5, "AMD Instinct MI300X VF", vram_gib=24, compute_units=38, xcds=1,
                         available_compute="CPX", available_memory="NPS1")  # fmt: skip
MI308X = GpuKind(0x74A2, "AMD Instinct MI308X", compute_units=80, xcds=4,
                 available_compute="SPX, DPX, CPX", available_memory="NPS1, NPS4")  # fmt: skip
MI325X = GpuKind(0x74A5, "AMD Instinct MI325X", vram_gib=256, xcds=8,
                 available_compute="SPX, DPX, QPX, CPX", available_memory="NPS1, NPS4")  # fmt: skip
MI355X = GpuKind(0x75A3, "AMD Instinct MI355X", vram_gib=288, compute_units=256, xcds=8,
                 gfx_target_version=90500, available_compute="SPX, DPX, QPX, CPX",
                 available_memory="NPS1, NPS2")  # fmt: skip
MI210 = GpuKind(0x740F, "AMD Instinct MI210", pci_class=0x038000, vram_gib=64,
                compute_units=104, gfx_target_version=90010, revision=0x02)  # fmt: skip
#: One GCD of an MI250X module (two per module), with the board's FRU name.
MI250X_GCD = GpuKind(0x740C, "AMD Instinct MI250X / MI250", pci_class=0x038000, vram_gib=64,
                     compute_units=110, gfx_target_version=90010, revision=0x01,
                     product_name="AMD INSTINCT MI250X (MCM) OAM AC MBA MSFT")  # fmt: skip
MI50 = GpuKind(0x66A1, "AMD Instinct MI60 / MI50", pci_class=0x038000, vram_gib=32,
               compute_units=60, gfx_target_version=90006, revision=0x02)  # fmt: skip
RX7900 = GpuKind(0x744C, "AMD Radeon RX 7900 XTX", pci_class=0x030000, vram_gib=24,
                 compute_units=96, gfx_target_version=110000)  # fmt: skip
RAPHAEL_IGPU = GpuKind(0x164E, "AMD Radeon Graphics", pci_class=0x030000, vram_gib=2,
                       compute_units=2, gfx_target_version=100306)  # fmt: skip


@dataclass(frozen=True)
class GpuGroup:
    kind: GpuKind
    count: int
    compute: str | None = None
    """Current compute partition; None for GPUs that cannot be partitioned."""
    memory: str | None = None
    driver: str | None = "amdgpu"
    """The driver bound to these GPUs: ``amdgpu``, ``vfio-pci``, or None (none loaded yet)."""


@dataclass(frozen=True)
class HostSpec:
    cpu: CpuSpec
    gpus: tuple[GpuGroup, ...] = ()
    pci: bool = True
    """False: no ``sys/bus/pci`` (a container that only sees the KFD topology)."""
    kfd: bool = True
    kfd_denied: bool = False
    mem_gib: int = 1536
    garble: tuple[str, ...] = ()
    """Relative paths (under the root) to garble after building; see _apply_damage."""
    truncate: tuple[str, ...] = ()
    extra_pci: tuple[tuple[int, int, int], ...] = field(default=())
    """Additional (vendor, device, class) PCI functions, e.g. a Radeon card's audio function."""
    partition_id_high_bits: bool = False
    """KFD puts the partition id in location_id bits [31:28] (newer drivers), not bits [2:0]."""


GENOA_9654 = CpuSpec("AuthenticAMD", 25, 0x11, "AMD EPYC 9654 96-Core Processor", 2, 96, 2)
TURIN_9575F = CpuSpec("AuthenticAMD", 26, 0x02, "AMD EPYC 9575F 64-Core Processor", 2, 64, 2,
                      stepping=0, microcode="0xb002116")  # fmt: skip
MILAN_7763 = CpuSpec("AuthenticAMD", 25, 0x01, "AMD EPYC 7763 64-Core Processor", 2, 64, 2,
                     microcode="0xa0011d1")  # fmt: skip
EPYC_VM = CpuSpec("AuthenticAMD", 25, 0x11, "AMD EPYC", 1, 8, 2, microcode="0x1000065")
#: A small CPU for trees built only to test the GPU probe.
SMALL_CPU = CpuSpec("AuthenticAMD", 25, 0x11, "AMD EPYC 9124 16-Core Processor", 1, 4, 2)
XEON_8480 = CpuSpec("GenuineIntel", 6, 143, "Intel(R) Xeon(R) Platinum 8480+", 2, 56, 2,
                    stepping=8, microcode="0x2b0004d0", mhz="2000.000")  # fmt: skip
RYZEN_7950X = CpuSpec("AuthenticAMD", 25, 0x61, "AMD Ryzen 9 7950X 16-Core Processor", 1, 16, 2,
                      stepping=2, microcode="0xa601206", mhz="4500.000")  # fmt: skip
#: Ampere Altra Max M128-30 (Neoverse N1: implementer 0x41, part 0xd0c), no SMT.
ALTRA_MAX = CpuSpec("ARM", 0, 0, "", 1, 128, 1, arch="arm64")

HOST_SPECS: dict[str, HostSpec] = {
    "mi300x-8-spx-nps1": HostSpec(TURIN_9575F, (GpuGroup(MI300X, 8, "SPX", "NPS1"),)),
    "mi300x-8-cpx-nps4": HostSpec(GENOA_9654, (GpuGroup(MI300X, 8, "CPX", "NPS4"),)),
    "mi308x-8-cpx-nps1": HostSpec(
        GENOA_9654, (GpuGroup(MI308X, 8, "CPX", "NPS1"),), partition_id_high_bits=True
    ),
    "mi325x-8": HostSpec(TURIN_9575F, (GpuGroup(MI325X, 8, "SPX", "NPS1"),), mem_gib=2304),
    "mi355x-8-dpx-nps2": HostSpec(TURIN_9575F, (GpuGroup(MI355X, 8, "DPX", "NPS2"),)),
    "mi210-4": HostSpec(MILAN_7763, (GpuGroup(MI210, 4),), mem_gib=512),
    "mi250x-4-modules": HostSpec(MILAN_7763, (GpuGroup(MI250X_GCD, 8),), mem_gib=1024),
    "mi50-2": HostSpec(MILAN_7763, (GpuGroup(MI50, 2),), mem_gib=256),
    "mixed-mi300x-mi210": HostSpec(
        GENOA_9654, (GpuGroup(MI300X, 4, "SPX", "NPS1"), GpuGroup(MI210, 2))
    ),
    "mi300x-vf-vm": HostSpec(EPYC_VM, (GpuGroup(MI300X_VF, 1),), kfd=True, mem_gib=224),
    # The default non-privileged DaemonSet in a VM whose VF was given one XCC: KFD refused.
    "mi300x-vf-1xcc-cpx-vm": HostSpec(
        EPYC_VM, (GpuGroup(MI300X_VF_1XCC, 1, "CPX", "NPS1"),), kfd_denied=True, mem_gib=64
    ),
    # KubeVirt passthrough: every GPU bound to vfio-pci, amdgpu loaded but driving none.
    "mi300x-8-vfio": HostSpec(GENOA_9654, (GpuGroup(MI300X, 8, driver="vfio-pci"),)),
    "mi300x-4-amdgpu-4-vfio": HostSpec(
        GENOA_9654,
        (GpuGroup(MI300X, 4, "SPX", "NPS1"), GpuGroup(MI300X, 4, driver="vfio-pci")),
    ),
    # Booted, amdgpu not loaded yet (the GPU operator installs it later): no driver, no KFD.
    "mi300x-8-no-driver": HostSpec(GENOA_9654, (GpuGroup(MI300X, 8, driver=None),), kfd=False),
    "epyc-zen4-2s": HostSpec(GENOA_9654, mem_gib=768),
    "epyc-zen5-2s": HostSpec(TURIN_9575F, mem_gib=768),
    "epyc-vm-masked": HostSpec(EPYC_VM, kfd=False, mem_gib=64),
    "intel-xeon": HostSpec(XEON_8480, kfd=False, mem_gib=1024),
    "arm64-altra": HostSpec(ALTRA_MAX, kfd=False, mem_gib=512),
    "ryzen-desktop": HostSpec(
        RYZEN_7950X,
        (GpuGroup(RX7900, 1), GpuGroup(RAPHAEL_IGPU, 1)),
        mem_gib=64,
        extra_pci=((0x1002, 0xAB30, 0x040300),),  # the RX 7900's HDMI audio function
    ),
    "mi300x-8-kfd-eperm": HostSpec(
        GENOA_9654, (GpuGroup(MI300X, 8, "CPX", "NPS4"),), kfd_denied=True
    ),
    "kfd-eperm-container": HostSpec(
        GENOA_9654, (GpuGroup(MI300X, 8, "SPX", "NPS1"),), pci=False, kfd_denied=True
    ),
    "kfd-only-container": HostSpec(GENOA_9654, (GpuGroup(MI300X, 8, "CPX", "NPS4"),), pci=False),
    "mi300x-8-garbled": HostSpec(
        TURIN_9575F,
        (GpuGroup(MI300X, 8, "SPX", "NPS1"),),
        garble=("sys/bus/pci/devices/0000:25:00.0/device",),
        truncate=(
            "sys/bus/pci/devices/0000:45:00.0/current_compute_partition",
            "sys/class/kfd/kfd/topology/nodes/7/properties",
        ),
    ),
    "epyc-zen4-topology-garbled": HostSpec(
        GENOA_9654,
        mem_gib=768,
        garble=("sys/devices/system/cpu/online",),
    ),
}

HOSTS: tuple[str, ...] = tuple(HOST_SPECS)

#: Hosts whose GPU probe (sysfs) must raise ProbeError: it cannot see the GPUs (KFD denied,
#: no PCI view), or it cannot read all of them (a garbled or truncated file of a GPU).
GPU_PROBE_FAILS = frozenset({"kfd-eperm-container", "mi300x-8-garbled"})

_SPX8 = {"partitioning-scheme.default": "8", "partitioning-scheme.SPX-NPS1": "8"}
_EXPECTED: dict[str, dict[str, str]] = {
    "mi300x-8-spx-nps1": {"MI300X": "8", **_SPX8, "EPYC_ZEN5": "128"},
    "mi300x-8-cpx-nps4": {"MI300X": "8", "partitioning-scheme.CPX-NPS4": "64", "EPYC_ZEN4": "192"},
    "mi308x-8-cpx-nps1": {"MI308X": "8", "partitioning-scheme.CPX-NPS1": "32", "EPYC_ZEN4": "192"},
    "mi325x-8": {"MI325X": "8", **_SPX8, "EPYC_ZEN5": "128"},
    "mi355x-8-dpx-nps2": {"MI355X": "8", "partitioning-scheme.DPX-NPS2": "16", "EPYC_ZEN5": "128"},
    "mi210-4": {"MI210": "4", "partitioning-scheme.default": "4", "EPYC_ZEN3": "128"},
    "mi250x-4-modules": {"MI250X": "8", "partitioning-scheme.default": "8", "EPYC_ZEN3": "128"},
    "mi50-2": {"MI50": "2", "partitioning-scheme.default": "2", "EPYC_ZEN3": "128"},
    "mixed-mi300x-mi210": {
        "MI300X": "4",
        "MI210": "2",
        "partitioning-scheme.default": "6",
        "partitioning-scheme.SPX-NPS1": "4",
        "EPYC_ZEN4": "192",
    },
    "mi300x-vf-vm": {"MI300X": "1", "partitioning-scheme.default": "1", "EPYC_ZEN4": "8"},
    "mi300x-vf-1xcc-cpx-vm": {"MI300X": "1", "partitioning-scheme.CPX-NPS1": "1", "EPYC_ZEN4": "8"},
    "mi300x-8-vfio": {"EPYC_ZEN4": "192"},
    "mi300x-4-amdgpu-4-vfio": {
        "MI300X": "4",
        "partitioning-scheme.default": "4",
        "partitioning-scheme.SPX-NPS1": "4",
        "EPYC_ZEN4": "192",
    },
    "mi300x-8-no-driver": {"EPYC_ZEN4": "192"},
    "epyc-zen4-2s": {"EPYC_ZEN4": "192"},
    "epyc-zen5-2s": {"EPYC_ZEN5": "128"},
    "epyc-vm-masked": {"EPYC_ZEN4": "8"},
    "intel-xeon": {},
    "arm64-altra": {},
    "ryzen-desktop": {"RX7900": "1", "partitioning-scheme.default": "1"},
    "mi300x-8-kfd-eperm": {"MI300X": "8", "partitioning-scheme.CPX-NPS4": "64", "EPYC_ZEN4": "192"},
    "kfd-eperm-container": {"EPYC_ZEN4": "192"},
    "kfd-only-container": {"MI300X": "8", "EPYC_ZEN4": "192"},
    "mi300x-8-garbled": {"EPYC_ZEN5": "128"},
    "epyc-zen4-topology-garbled": {"EPYC_ZEN4": "192"},
}


def expected_labels(name: str) -> dict[str, str]:
    """Full label keys and values the host must get (GPU labels omitted for GPU_PROBE_FAILS)."""
    return {LABEL_PREFIX + short: value for short, value in _EXPECTED[name].items()}


# --------------------------------------------------------------------------------------------
# Writing trees


def _write(path: Path, text: str) -> None:
    try:
        out = open(path, "w")  # noqa: SIM115 - closed below; mkdir only when needed (fast)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        out = open(path, "w")  # noqa: SIM115
    with out:
        out.write(text)


def _link(link: Path, target: Path) -> None:
    """A relative symlink, as sysfs makes them."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def garble(path: Path) -> None:
    """Replace a file's content by binary junk (bytes no kernel attribute contains)."""
    path.write_bytes(b"\xff\xfe\x00\x13garbage\x9c")


def truncate(path: Path) -> None:
    """Cut a file short in the middle of its content, as an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, len(data) * 2 // 3 - 1)].rstrip(b"\n"))


_DENYING_FILES = (Path("/proc/sys/vm/drop_caches"), Path("/proc/sys/vm/compact_memory"))


def read_is_denied(path: Path) -> bool:
    """True when opening ``path`` for reading fails with a permission error here and now."""
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True


_DENYING_DIRS = (Path("/proc/1/map_files"), Path("/proc/1/root"))


def list_is_denied(path: Path) -> bool:
    """True when listing the directory ``path`` fails with a permission error here and now."""
    try:
        os.listdir(path)
        return False
    except PermissionError:
        return True


def deny_listing(path: Path) -> None:
    """Make the directory ``path`` unlistable, as the kernel refuses a directory to a reader.

    Mode 000 for an ordinary user; root ignores modes, so for root ``path`` becomes a symlink
    to a directory the kernel refuses to list even to root (one of ``_DENYING_DIRS``, where
    the process lacks CAP_SYS_PTRACE/CAP_SYS_ADMIN). Check with ``list_is_denied``.
    """
    path.chmod(0)
    if os.geteuid() != 0:
        return
    for target in _DENYING_DIRS:
        if list_is_denied(target):
            path.chmod(0o755)
            os.rename(path, path.with_name(path.name + ".hidden"))
            path.symlink_to(target)
            return


def _deny(path: Path) -> None:
    path.chmod(0)
    if os.geteuid() != 0:
        return
    for target in _DENYING_FILES:
        if target.exists() and read_is_denied(target):
            path.unlink()
            path.symlink_to(target)
            return


class _PciBus:
    """Allocates PCI addresses under the host's root complexes and writes device directories."""

    ROOT_BUSES = (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0)

    def __init__(self, sysfs: Path, enabled: bool) -> None:
        self.sysfs = sysfs
        self.enabled = enabled
        self.slot = 0

    def device_dir(self, bdf: str) -> Path:
        bus = int(bdf[5:7], 16)
        root = bus & 0xE0
        base = self.sysfs / "devices" / f"pci0000:{root:02x}"
        if bus == root:
            return base / bdf
        return base / f"0000:{root:02x}:01.1" / bdf

    def add(
        self,
        bdf: str,
        vendor: int,
        device: int,
        pci_class: int,
        *,
        numa: int = 0,
        revision: int = 0,
    ) -> Path:
        path = self.device_dir(bdf)
        attrs = {
            "vendor": f"0x{vendor:04x}",
            "device": f"0x{device:04x}",
            "class": f"0x{pci_class:06x}",
            "subsystem_vendor": f"0x{vendor:04x}",
            "subsystem_device": f"0x{device:04x}",
            "revision": f"0x{revision:02x}",
            "numa_node": str(numa),
            "enable": "1",
            "irq": "0",
        }
        for name, value in attrs.items():
            _write(path / name, value + "\n")
        if self.enabled:
            _link(self.sysfs / "bus/pci/devices" / bdf, path)
        return path

    def next_endpoint(self) -> str:
        root = self.ROOT_BUSES[self.slot % len(self.ROOT_BUSES)]
        bus = root + 0x05 + self.slot // len(self.ROOT_BUSES)
        self.slot += 1
        return f"0000:{bus:02x}:00.0"


def _platform_devices(bus: _PciBus, cpu: CpuSpec) -> None:
    """What a host has on PCI besides the GPUs: never an empty bus (every machine has a host
    bridge), and never another AMD GPU."""
    if cpu.arch == "arm64":  # Ampere: its own root ports, a NIC and NVMe behind them
        for root in bus.ROOT_BUSES[:4]:
            bus.add(f"0000:{root:02x}:00.0", 0x1DEF, 0xE100, 0x060000)
            bus.add(f"0000:{root:02x}:01.0", 0x1DEF, 0xE101, 0x060400)
            bus.add(f"0000:{root + 0x0B:02x}:00.0", 0x144D, 0xA80A, 0x010802)
        bus.add("0000:0a:00.0", 0x15B3, 0x1021, 0x020000)
        return
    if cpu.brand == "AMD EPYC":  # a KVM guest: Q35 chipset, VGA and virtio devices
        bus.add("0000:00:00.0", 0x8086, 0x29C0, 0x060000)
        bus.add("0000:00:01.0", 0x1234, 0x1111, 0x030000)
        bus.add("0000:00:02.0", 0x1AF4, 0x1041, 0x020000)
        bus.add("0000:00:03.0", 0x1AF4, 0x1042, 0x010000)
        bus.add("0000:00:1f.0", 0x8086, 0x2918, 0x060100)
        return
    if cpu.vendor == "GenuineIntel":  # Sapphire Rapids: Intel root complexes, NICs, NVMe, BMC
        for root in bus.ROOT_BUSES[: 4 * cpu.sockets]:
            bus.add(f"0000:{root:02x}:00.0", 0x8086, 0x09A2, 0x088000)
            bus.add(f"0000:{root:02x}:01.1", 0x8086, 0x352A, 0x060400)
            bus.add(f"0000:{root + 0x0A:02x}:00.0", 0x15B3, 0x1021, 0x020000)
            bus.add(f"0000:{root + 0x0B:02x}:00.0", 0x144D, 0xA80A, 0x010802)
        bus.add("0000:c2:00.0", 0x1A03, 0x1150, 0x060400)
        bus.add("0000:c3:00.0", 0x1A03, 0x2000, 0x030000)
        return
    # EPYC: AMD (0x1022) root complexes, IOMMUs, root ports, NICs, NVMe drives and the BMC's
    # ASPEED VGA (a display-class device of another vendor).
    for root in bus.ROOT_BUSES[: 4 * cpu.sockets]:
        bus.add(f"0000:{root:02x}:00.0", 0x1022, 0x14A4, 0x060000)
        bus.add(f"0000:{root:02x}:00.2", 0x1022, 0x149E, 0x080600)
        for dev in (1, 2, 3, 4, 5, 7):
            bus.add(f"0000:{root:02x}:{dev:02x}.0", 0x1022, 0x149F, 0x060000)
        bus.add(f"0000:{root:02x}:01.1", 0x1022, 0x14AB, 0x060400)
        bus.add(f"0000:{root + 0x0A:02x}:00.0", 0x15B3, 0x1021, 0x020000)
        bus.add(f"0000:{root + 0x0B:02x}:00.0", 0x144D, 0xA80A, 0x010802)
    bus.add("0000:c2:00.0", 0x1A03, 0x1150, 0x060400)
    bus.add("0000:c3:00.0", 0x1A03, 0x2000, 0x030000)


_KFD_CPU_PROPERTIES = (
    "cpu_cores_count {cores}\nsimd_count 0\nmem_banks_count 1\ncaches_count 0\n"
    "io_links_count {links}\np2p_links_count 0\ncpu_core_id_base {core_base}\nsimd_id_base 0\n"
    "max_waves_per_simd 0\nlds_size_in_kb 0\ngds_size_in_kb 0\nnum_gws 0\nwave_front_size 0\n"
    "array_count 0\nsimd_arrays_per_engine 0\ncu_per_simd_array 0\nsimd_per_cu 0\n"
    "max_slots_scratch_cu 0\ngfx_target_version 0\nvendor_id 0\ndevice_id 0\nlocation_id 0\n"
    "domain 0\ndrm_render_minor 0\nhive_id 0\nnum_sdma_engines 0\nnum_sdma_xgmi_engines 0\n"
    "num_sdma_queues_per_engine 0\nnum_cp_queues 0\nmax_engine_clk_ccompute 2400\n"
)
_KFD_GPU_PROPERTIES = (
    "cpu_cores_count 0\nsimd_count {simds}\nmem_banks_count 1\ncaches_count 240\n"
    "io_links_count 1\np2p_links_count {p2p}\ncpu_core_id_base 0\nsimd_id_base {simd_base}\n"
    "max_waves_per_simd 8\nlds_size_in_kb 64\ngds_size_in_kb 0\nnum_gws 64\n"
    "wave_front_size 64\narray_count {arrays}\nsimd_arrays_per_engine 1\ncu_per_simd_array 10\n"
    "simd_per_cu 4\nmax_slots_scratch_cu 32\ngfx_target_version {gfx}\nvendor_id 4098\n"
    "device_id {device_id}\nlocation_id {location}\ndomain 0\ndrm_render_minor {minor}\n"
    "hive_id 0\nnum_sdma_engines 2\nnum_sdma_xgmi_engines 14\nnum_sdma_queues_per_engine 8\n"
    "num_cp_queues 24\nmax_engine_clk_fcompute 2100\nlocal_mem_size 0\nfw_version 177\n"
    "capability 1951850624\ndebug_prop 1495\nsdma_fw_version 19\nunique_id {unique}\n"
    "num_xcc {xcc}\nmax_engine_clk_ccompute 2400\n"
)


def _partitions(group: GpuGroup) -> int:
    return {None: 1, "SPX": 1, "DPX": 2, "TPX": 3, "QPX": 4, "CPX": group.kind.xcds}[group.compute]


#: Partition platform devices amdgpu creates per partitionable GPU (MAX_XCP - 1), in every mode.
XCP_PER_GPU = 7


class _Drm:
    """Allocates DRM minors in probe order, as the kernel does (a GPU, then its xcp devices)."""

    def __init__(self, sysfs: Path) -> None:
        self.sysfs = sysfs
        self.minor = 0
        self.xcp = 0

    def _nodes(self, parent: Path) -> int:
        """A card and a render node under ``parent``; returns the render minor."""
        card, render = self.minor, 128 + self.minor
        self.minor += 1
        for name, dev in ((f"card{card}", card), (f"renderD{render}", render)):
            drm = parent / "drm" / name
            _write(drm / "dev", f"226:{dev}\n")
            _link(drm / "device", parent)
            _link(self.sysfs / "class/drm" / name, drm)
        return render

    def gpu(self, gpu_dir: Path, partitionable: bool) -> list[int]:
        """The GPU's render minor, then (partitionable GPUs) those of its 7 xcp devices."""
        minors = [self._nodes(gpu_dir)]
        if partitionable:
            for _ in range(XCP_PER_GPU):
                platform = self.sysfs / "devices/platform" / f"amdgpu_xcp_{self.xcp}"
                _write(
                    platform / "uevent",
                    f"DRIVER=amdgpu_xcp_drv\nMODALIAS=platform:amdgpu_xcp_{self.xcp}\n",
                )
                minors.append(self._nodes(platform))
                self.xcp += 1
        return minors


def _bind(sysfs: Path, gpu_dir: Path, driver: str) -> None:
    drivers = sysfs / "bus/pci/drivers" / driver
    drivers.mkdir(parents=True, exist_ok=True)
    _link(gpu_dir / "driver", drivers)
    _link(drivers / gpu_dir.name, gpu_dir)
    module_link = sysfs / "module" / driver / "drivers" / f"pci:{driver}"
    if not os.path.lexists(module_link):
        _link(module_link, drivers)


def _write_gpus(root: Path, spec: HostSpec, bus: _PciBus) -> None:
    sysfs = root / "sys"
    nodes = sysfs / "class/kfd/kfd/topology/nodes"
    bound = [g for g in spec.gpus if g.driver == "amdgpu"]
    total_partitions = sum(_partitions(g) * g.count for g in bound)
    total_gpus = sum(g.count for g in spec.gpus)
    drm = _Drm(sysfs)
    card = 0
    node = spec.cpu.sockets
    for group in spec.gpus:
        kind = group.kind
        parts = _partitions(group)
        for _ in range(group.count):
            bdf = bus.next_endpoint()
            numa = (card * spec.cpu.sockets) // max(total_gpus, 1)
            gpu_dir = bus.add(
                bdf, 0x1002, kind.device_id, kind.pci_class, numa=numa, revision=kind.revision
            )
            card += 1
            if group.driver is not None and bus.enabled:
                _bind(sysfs, gpu_dir, group.driver)
            if group.driver != "amdgpu":
                continue  # only amdgpu creates the files below
            _write(gpu_dir / "mem_info_vram_total", f"{kind.vram_gib * 1024**3}\n")
            if kind.product_name:
                _write(gpu_dir / "product_name", f"{kind.product_name}\n")
            if group.compute is not None:
                _write(gpu_dir / "current_compute_partition", f"{group.compute}\n")
                _write(gpu_dir / "available_compute_partition", f"{kind.available_compute}\n")
            if group.memory is not None:
                _write(gpu_dir / "current_memory_partition", f"{group.memory}\n")
                _write(gpu_dir / "available_memory_partition", f"{kind.available_memory}\n")
            minors = drm.gpu(gpu_dir, kind.partitionable)
            if spec.kfd:
                bus_no, dev_no = int(bdf[5:7], 16), int(bdf[8:10], 16)
                for part in range(parts):
                    location = (bus_no << 8) | (dev_no << 3)
                    if parts > 1:
                        location |= part << 28 if spec.partition_id_high_bits else part
                    props = _KFD_GPU_PROPERTIES.format(
                        simds=kind.compute_units * 4 // parts,
                        p2p=max(total_partitions - 1, 0),
                        simd_base=0x80001000 + 0x1000 * node,
                        arrays=max(kind.xcds * 4 // parts, 4),
                        gfx=kind.gfx_target_version,
                        device_id=kind.device_id,
                        location=location,
                        minor=minors[part],
                        unique=0x3E0D7B0F5A1C0000 + (card << 4) + part,
                        xcc=max(kind.xcds // parts, 1),
                    )
                    path = nodes / str(node) / "properties"
                    _write(path, props)
                    _write(nodes / str(node) / "gpu_id", f"{10000 + node * 7}\n")
                    _write(nodes / str(node) / "name", "ip_discovery\n")
                    if spec.kfd_denied:
                        _deny(path)
                    node += 1
            dev = root / "dev/dri"
            dev.mkdir(parents=True, exist_ok=True)
            for minor in minors:
                (dev / f"renderD{minor}").touch()
                (dev / f"card{minor - 128}").touch()
    for kind_vendor, device, pci_class in spec.extra_pci:
        bus.add(bus.next_endpoint(), kind_vendor, device, pci_class)


def _write_kfd_cpus(sysfs: Path, cpu: CpuSpec) -> None:
    topology = sysfs / "class/kfd/kfd/topology"
    _write(topology / "generation_id", "3\n")
    _write(topology / "system_properties", "platform_oem 0\nplatform_id 0\nplatform_rev 0\n")
    cores = cpu.cores_per_socket * cpu.threads_per_core
    for socket in range(cpu.sockets):
        node = topology / "nodes" / str(socket)
        props = _KFD_CPU_PROPERTIES.format(cores=cores, links=2, core_base=socket * cores)
        _write(node / "properties", props)
        _write(node / "gpu_id", "0\n")
        _write(node / "name", "\n")


_AMD_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
    "nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 pcid "
    "sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm "
    "extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext "
    "perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 hw_pstate ssbd mba "
    "ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a avx512f "
    "avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl "
    "xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local "
    "avx512_bf16 clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin cppc arat npt lbrv svm_lock "
    "nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic "
    "v_vmsave_vmload vgif x2avic v_spec_ctrl vnmi avx512vbmi umip pku ospke avx512_vbmi2 gfni "
    "vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq la57 rdpid overflow_recov "
    "succor smca fsrm flush_l1d"
)
_INTEL_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi "
    "mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon "
    "pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni "
    "pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca "
    "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm "
    "abm 3dnowprefetch cpuid_fault epb cat_l3 cat_l2 cdp_l3 invpcid_single intel_ppin cdp_l2 "
    "ssbd mba ibrs ibpb stibp ibrs_enhanced tpr_shadow flexpriority ept vpid ept_ad fsgsbase "
    "tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm cqm rdt_a avx512f avx512dq rdseed adx "
    "smap avx512ifma clflushopt clwb intel_pt avx512cd sha_ni avx512bw avx512vl xsaveopt "
    "xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local split_lock_detect "
    "avx_vnni avx512_bf16 wbnoinvd dtherm ida arat pln pts hfi vnmi avx512vbmi umip pku ospke "
    "waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme "
    "avx512_vpopcntdq la57 rdpid bus_lock_detect cldemote movdiri movdir64b enqcmd fsrm "
    "md_clear serialize tsxldtrk pconfig arch_lbr ibt amx_bf16 avx512_fp16 amx_tile amx_int8 "
    "flush_l1d arch_capabilities"
)


def _cpu_number(cpu: CpuSpec, socket: int, core: int, thread: int) -> int:
    """Linux's numbering: thread 0 of every core of every socket first, then thread 1 ..."""
    return thread * cpu.sockets * cpu.cores_per_socket + socket * cpu.cores_per_socket + core


_ARM64_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
    "dcpop asimddp ssbs"
)


def _arm64_cpuinfo_block(number: int) -> str:
    """arch/arm64/kernel/cpuinfo.c's layout: no vendor_id, model name or physical id."""
    return (
        f"processor\t: {number}\nBogoMIPS\t: 50.00\nFeatures\t: {_ARM64_FEATURES}\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n"
        "CPU part\t: 0xd0c\nCPU revision\t: 1\n\n"
    )


def _cpuinfo_block(cpu: CpuSpec, number: int, socket: int, core: int) -> str:
    if cpu.arch == "arm64":
        return _arm64_cpuinfo_block(number)
    amd = cpu.vendor == "AuthenticAMD"
    threads = cpu.cores_per_socket * cpu.threads_per_core
    apic = (socket << 8) | (core << 1) | (number >= cpu.sockets * cpu.cores_per_socket)
    lines = [
        ("processor", str(number)),
        ("vendor_id", cpu.vendor),
        ("cpu family", str(cpu.family)),
        ("model", str(cpu.model)),
        ("model name", cpu.brand),
        ("stepping", str(cpu.stepping)),
        ("microcode", cpu.microcode),
        ("cpu MHz", cpu.mhz),
        ("cache size", "1024 KB" if amd else "107520 KB"),
        ("physical id", str(socket)),
        ("siblings", str(threads)),
        ("core id", str(core)),
        ("cpu cores", str(cpu.cores_per_socket)),
        ("apicid", str(apic)),
        ("initial apicid", str(apic)),
        ("fpu", "yes"),
        ("fpu_exception", "yes"),
        ("cpuid level", "16" if amd else "32"),
        ("wp", "yes"),
        ("flags", _AMD_FLAGS if amd else _INTEL_FLAGS),
        ("bugs", "sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass srso"),
        ("bogomips", "4800.00"),
    ]
    if amd:
        lines.append(("TLB size", "3584 4K pages"))
    lines += [
        ("clflush size", "64"),
        ("cache_alignment", "64"),
        ("address sizes", "52 bits physical, 57 bits virtual"),
        ("power management", "ts ttp tm hwpstate cpb eff_freq_ro [13] [14]" if amd else ""),
    ]
    out = []
    for key, value in lines:
        tabs = "\t" if len(key) >= 8 else "\t\t"
        out.append(f"{key}{tabs}: {value}".rstrip() if value else f"{key}{tabs}:")
    return "\n".join(out) + "\n\n"


def _write_cpus(root: Path, cpu: CpuSpec) -> None:
    sysfs_cpu = root / "sys/devices/system/cpu"
    logical = cpu.sockets * cpu.cores_per_socket * cpu.threads_per_core
    for name in ("online", "possible", "present"):
        _write(sysfs_cpu / name, f"0-{logical - 1}\n")
    blocks: list[tuple[int, str]] = []
    for socket in range(cpu.sockets):
        for core in range(cpu.cores_per_socket):
            siblings = [_cpu_number(cpu, socket, core, t) for t in range(cpu.threads_per_core)]
            sibling_list = ",".join(str(n) for n in siblings)
            for number in siblings:
                topology = sysfs_cpu / f"cpu{number}" / "topology"
                _write(topology / "physical_package_id", f"{socket}\n")
                _write(topology / "core_id", f"{core}\n")
                _write(topology / "core_cpus_list", f"{sibling_list}\n")
                _write(topology / "thread_siblings_list", f"{sibling_list}\n")
                blocks.append((number, _cpuinfo_block(cpu, number, socket, core)))
    blocks.sort()
    _write(root / "proc/cpuinfo", "".join(block for _, block in blocks))


def _write_meminfo(root: Path, gib: int) -> None:
    kib = gib * 1024 * 1024
    _write(
        root / "proc/meminfo",
        f"MemTotal:       {kib} kB\nMemFree:        {kib * 9 // 10} kB\n"
        f"MemAvailable:   {kib * 19 // 20} kB\nBuffers:           10240 kB\n"
        f"Cached:          {kib // 50} kB\nSwapCached:            0 kB\n"
        f"HugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n",
    )


def build_spec(root: Path, spec: HostSpec) -> Path:
    """Write the tree of ``spec`` at ``root`` (which must not exist yet) and return ``root``."""
    root.mkdir(parents=True)
    sysfs = root / "sys"
    (root / "dev").mkdir()
    if any(g.driver == "amdgpu" for g in spec.gpus) and spec.kfd:
        (root / "dev/kfd").touch()
    if spec.pci:
        (sysfs / "bus/pci/devices").mkdir(parents=True)
    bus = _PciBus(sysfs, enabled=spec.pci)
    _platform_devices(bus, spec.cpu)
    if spec.kfd and spec.gpus:
        _write_kfd_cpus(sysfs, spec.cpu)
    _write_gpus(root, spec, bus)
    _write_cpus(root, spec.cpu)
    _write_meminfo(root, spec.mem_gib)
    for relative in spec.garble:
        garble(root / relative)
    for relative in spec.truncate:
        truncate(root / relative)
    return root


def build_host(dest_dir: Path, name: str, cpu: CpuSpec | None = None) -> Path:
    """Write fixture host ``name`` under ``dest_dir/name`` and return that root.

    ``cpu`` replaces the host's CPUs (e.g. ``SMALL_CPU`` for GPU tests that modify a fresh tree:
    a two-socket EPYC is most of a tree's files).
    """
    if name not in HOST_SPECS:
        raise KeyError(f"unknown fixture host {name!r}; known: {', '.join(HOSTS)}")
    spec = HOST_SPECS[name]
    if cpu is not None:
        spec = replace(spec, cpu=cpu)
    return build_spec(Path(dest_dir) / name, spec)


def amdsmi_host(
    name: str,
    *,
    only: int | None = None,
    zero_bdf: frozenset[int] = frozenset(),
    modes: dict[int, tuple[str, str]] | None = None,
    init_status: int | None = None,
    handles_status: int | None = None,
) -> str:
    """Host ``name`` as the C stand-in for libamd_smi.so reads it (tests/amdsmi_stub).

    Lists the amdgpu-bound GPUs at the PCI addresses the tree gives them, one line per partition
    (the partition id in the BDF's function bits, or function 0 for drivers that put it in
    location_id bits [31:28]). Variations, by GPU index: ``only`` lists the first N GPUs (what
    a device cgroup leaves the library), ``zero_bdf`` reports a zero BDF for those GPUs (an
    older library that could not open their render nodes), ``modes`` overrides the (compute,
    memory) strings as the library returns them ("-" unsupported, "!43" a status).
    """
    spec = HOST_SPECS[name]
    bus = _PciBus(Path("/nonexistent"), enabled=False)
    lines = []
    if init_status is not None:
        lines.append(f"init {init_status}")
    if handles_status is not None:
        lines.append(f"handles {handles_status}")
    index = 0
    for group in spec.gpus:
        kind = group.kind
        parts = _partitions(group)
        for _ in range(group.count):
            bdf = bus.next_endpoint()
            if group.driver != "amdgpu":
                continue  # rocm_smi enumerates what amdgpu drives
            if only is not None and index >= only:
                break
            compute, memory = (modes or {}).get(index, (group.compute or "-", group.memory or "-"))
            for part in range(parts):
                function = 0 if spec.partition_id_high_bits or parts == 1 else part
                address = "0000:00:00.0" if index in zero_bdf else f"{bdf[:-2]}.{function}"
                lines.append(
                    f"gpu {address} 0x{kind.device_id:04x} 0x{kind.revision:02x} "
                    f"{kind.compute_units // parts} {kind.vram_gib * 1024} {compute} {memory} "
                    f"{kind.market_name}"
                )
            index += 1
    return "\n".join(lines) + "\n"


_shared: dict[Path, Path] = {}


def shared_host(base_dir: Path, name: str) -> Path:
    """``build_host`` once per process for ``(base_dir, name)``; callers must not modify it.

    Pass the same ``base_dir`` from every test module (e.g. ``shared_hosts_dir(...)``) so that
    a test session builds each host once.
    """
    root = Path(base_dir) / name
    if root not in _shared:
        _shared[root] = build_host(Path(base_dir), name)
    return _shared[root]


def shared_hosts_dir(session_base: Path) -> Path:
    """The directory for shared hosts under a session's base temp dir
    (``tmp_path_factory.getbasetemp()``)."""
    path = Path(session_base) / "shared-hosttrees"
    path.mkdir(exist_ok=True)
    return path
