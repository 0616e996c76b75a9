"""The KFD (ROCm compute driver) topology: ``<sysfs>/class/kfd/kfd/topology/nodes/<N>/properties``.

Each node's ``properties`` holds ``key value`` lines in decimal. A GPU node has ``simd_count > 0``
(a CPU node has 0); in a partitioned mode every partition is its own node. The partitions of one
GPU share ``location_id`` (the kernel's ``pci_dev_id``: bus << 8 | devfn) apart from the
partition id, which older kernels OR into its low three bits and newer ones put in bits [31:28];
``physical_key`` drops both. ``domain`` is the PCI domain (absent on old kernels, meaning 0).

The kernel refuses every file of a GPU node with EPERM when the reader's device cgroup does not
allow that GPU, which is the case for the default non-privileged DaemonSet. The node
*directories* are still listed, and a CPU node is never refused, so a refused node is a GPU
partition: ``gpu_node_count`` counts them even when nothing else about them can be read. Such
nodes are ``denied`` (never "no GPU"); garbled or truncated ones are ``broken``.

The topology is rebuilt while a GPU switches partition mode (nodes are removed and added, and
``generation_id`` goes up each time). ``generation_id`` is read before and after the nodes, as
the ROCm runtime does; a change, or a node that vanishes between the listing and its read,
marks the reading ``unstable``: counts taken from it would be a mode switch caught half-way.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from detector.pci_ids import AMD_GPU_VENDOR_ID
from detector.probes.files import BadFile, parse_int, read_attr, read_text

log = logging.getLogger(__name__)

TOPOLOGY_DIR = Path("class/kfd/kfd/topology")
NODES_DIR = TOPOLOGY_DIR / "nodes"
_GPU_KEYS = ("vendor_id", "device_id", "location_id")
_PROPERTIES_LIMIT = 16384


@dataclass(frozen=True, slots=True)
class KfdGpuNode:
    node: str
    device_id: int
    domain: int
    location_id: int
    num_xcc: int | None
    simd_count: int
    simd_per_cu: int | None

    @property
    def physical_key(self) -> tuple[int, int, int]:
        """(domain, bus, device) of the physical GPU: the partition bits are dropped."""
        return (self.domain, (self.location_id >> 8) & 0xFF, (self.location_id >> 3) & 0x1F)

    @property
    def compute_units(self) -> int | None:
        return self.simd_count // self.simd_per_cu if self.simd_per_cu else None


@dataclass(frozen=True, slots=True)
class KfdTopology:
    gpu_nodes: tuple[KfdGpuNode, ...] = ()
    """AMD GPU nodes whose properties were read."""
    denied: tuple[str, ...] = ()
    """GPU nodes whose properties the kernel refused (EPERM/EACCES): GPUs we cannot read."""
    broken: tuple[str, ...] = ()
    """Nodes whose properties were garbled, truncated or failed to read otherwise."""
    vanished: tuple[str, ...] = ()
    """Nodes listed but gone when read: the topology changed while we read it."""
    generation_changed: bool = False
    listable: bool = True
    """False when the nodes directory itself could not be listed."""

    @property
    def stable(self) -> bool:
        """The topology did not change while it was read."""
        return not self.vanished and not self.generation_changed

    @property
    def countable(self) -> bool:
        """Every node was classified: the number of GPU nodes is known."""
        return self.listable and not self.broken and self.stable

    @property
    def complete(self) -> bool:
        """Every GPU node was read, so its partitions can be grouped by GPU."""
        return self.countable and not self.denied

    @property
    def gpu_node_count(self) -> int:
        """GPU partitions on the host: the nodes read plus the ones refused to us."""
        return len(self.gpu_nodes) + len(self.denied)

    def partitions_by_device(self) -> Counter[tuple[int, int, int]]:
        return Counter(node.physical_key for node in self.gpu_nodes)

    def problems(self) -> list[str]:
        """Why the reading cannot be trusted for counts, in words (empty when it can)."""
        found = []
        if not self.listable:
            found.append("the KFD nodes directory could not be listed")
        if self.broken:
            found.append(f"KFD node(s) {', '.join(self.broken)} unreadable")
        if self.vanished:
            found.append(f"KFD node(s) {', '.join(self.vanished)} vanished while read")
        if self.generation_changed:
            found.append("the KFD topology generation changed while it was read")
        return found


def parse_properties(path: Path, text: str) -> dict[str, int]:
    props: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        key, sep, value = line.partition(" ")
        if not sep or not key:
            raise BadFile(path, f"line {number}: expected 'key value', got {line!r}")
        try:
            props[key] = int(value)
        except ValueError:
            raise BadFile(path, f"line {number}: {key} is not a decimal integer") from None
    return props


def _gpu_node(path: Path, node: str, props: dict[str, int]) -> KfdGpuNode:
    missing = [key for key in _GPU_KEYS if key not in props]
    if missing:
        raise BadFile(path, f"truncated: GPU node lacks {', '.join(missing)}")
    return KfdGpuNode(
        node=node,
        device_id=props["device_id"],
        domain=props.get("domain", 0),
        location_id=props["location_id"],
        num_xcc=props.get("num_xcc"),
        simd_count=props["simd_count"],
        simd_per_cu=props.get("simd_per_cu") or None,
    )


def _generation(topology: Path) -> int | None:
    path = topology / "generation_id"
    try:
        return parse_int(path, read_attr(path))
    except (OSError, BadFile):
        return None  # old kernels, or not mounted: vanished nodes still show a change


def _warn(warnings: list[str], message: str) -> None:
    warnings.append(message)
    log.warning("%s", message)


def read_kfd_topology(sysfs: Path, warnings: list[str]) -> KfdTopology | None:
    """The topology's AMD GPU nodes, or None when there is no KFD topology at all.

    Problems with single nodes are appended to ``warnings`` (and logged); the node is then
    listed in ``denied``, ``broken`` or ``vanished`` so that the caller knows what it can trust.
    """
    topology = sysfs / TOPOLOGY_DIR
    nodes_dir = sysfs / NODES_DIR
    before = _generation(topology)
    try:
        names = os.listdir(nodes_dir)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _warn(warnings, f"cannot list {nodes_dir}: {exc.strerror}")
        return KfdTopology(listable=False)
    gpu_nodes: list[KfdGpuNode] = []
    denied: list[str] = []
    broken: list[str] = []
    vanished: list[str] = []
    denial = ""
    for name in sorted((n for n in names if n.isdigit()), key=int):
        path = nodes_dir / name / "properties"
        try:
            props = parse_properties(path, read_text(path, _PROPERTIES_LIMIT))
            if "simd_count" not in props:
                raise BadFile(path, "truncated: no simd_count")
            if props["simd_count"] <= 0:
                continue  # a CPU node
            node = _gpu_node(path, name, props)
        except PermissionError as exc:
            denied.append(name)
            denial = exc.strerror or "permission denied"
        except FileNotFoundError:
            vanished.append(name)
        except (OSError, BadFile) as exc:
            broken.append(name)
            _warn(warnings, f"KFD node {name} unreadable: {exc}")
        else:
            if node.device_id and props.get("vendor_id") == AMD_GPU_VENDOR_ID:
                gpu_nodes.append(node)
    after = _generation(topology)
    if denied:
        # Expected without GPU access (the default DaemonSet): said once per cycle, quietly.
        log.debug(
            "KFD GPU node(s) %s: properties not readable (%s); counted as GPU partitions",
            ", ".join(denied),
            denial,
        )
    return KfdTopology(
        gpu_nodes=tuple(gpu_nodes),
        denied=tuple(denied),
        broken=tuple(broken),
        vanished=tuple(vanished),
        generation_changed=before != after,
    )
