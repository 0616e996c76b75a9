"""The KFD (ROCm compute driver) topology: ``<sysfs>/class/kfd/kfd/topology/nodes/<N>/properties``.

Each node's ``properties`` holds ``key value`` lines in decimal. A GPU node has ``simd_count > 0``
(a CPU node has 0); in a partitioned mode every partition is its own node, and the partitions of
one GPU share ``location_id`` (PCI bus/device/function as the kernel's ``pci_dev_id``) except its
low three bits, which carry the partition number. ``domain`` is the PCI domain (absent on old
kernels, meaning 0).

The kernel refuses a GPU node's ``properties`` with EPERM when the reader's device cgroup does
not allow that GPU. This module reports such nodes as ``denied`` (never as "no GPU") and lets the
caller decide what the rest of the evidence proves.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from detector.pci_ids import AMD_GPU_VENDOR_ID
from detector.probes.files import BadFile, read_text

log = logging.getLogger(__name__)

NODES_DIR = Path("class/kfd/kfd/topology/nodes")
_GPU_KEYS = ("vendor_id", "device_id", "location_id")
_PROPERTIES_LIMIT = 16384


@dataclass(frozen=True, slots=True)
class KfdGpuNode:
    node: str
    device_id: int
    domain: int
    location_id: int
    num_xcc: int | None

    @property
    def physical_key(self) -> tuple[int, int, int]:
        """(domain, bus, device) of the physical GPU: the partition bits are dropped."""
        return (self.domain, (self.location_id >> 8) & 0xFF, (self.location_id >> 3) & 0x1F)


@dataclass(frozen=True, slots=True)
class KfdTopology:
    gpu_nodes: tuple[KfdGpuNode, ...]
    denied: tuple[str, ...] = ()
    """Nodes whose properties the kernel refused (EPERM/EACCES): GPUs we cannot see."""
    broken: tuple[str, ...] = ()
    """Nodes whose properties were garbled, truncated or failed to read otherwise."""

    @property
    def complete(self) -> bool:
        """True when every node was read, so counting partitions from it is trustworthy."""
        return not self.denied and not self.broken

    def partitions_by_device(self) -> Counter[tuple[int, int, int]]:
        return Counter(node.physical_key for node in self.gpu_nodes)


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
    )


def read_kfd_topology(sysfs: Path, warnings: list[str]) -> KfdTopology | None:
    """The topology's AMD GPU nodes, or None when there is no KFD topology at all.

    Problems with single nodes are appended to ``warnings`` (and logged); the node is then
    listed in ``denied`` or ``broken`` so that the caller knows the picture is incomplete.
    """
    nodes_dir = sysfs / NODES_DIR
    try:
        names = os.listdir(nodes_dir)
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        warnings.append(f"cannot list {nodes_dir}: {exc.strerror}")
        log.warning("%s", warnings[-1])
        return KfdTopology(gpu_nodes=(), denied=("*",))
    gpu_nodes: list[KfdGpuNode] = []
    denied: list[str] = []
    broken: list[str] = []
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
            pass  # a node that went away while we listed (hot-unplug)
        except (OSError, BadFile) as exc:
            broken.append(name)
            warnings.append(f"KFD node {name} skipped: {exc}")
            log.warning("%s", warnings[-1])
        else:
            if node.device_id and props.get("vendor_id") == AMD_GPU_VENDOR_ID:
                gpu_nodes.append(node)
    if denied:
        warnings.append(
            f"KFD node(s) {', '.join(denied)} under {nodes_dir}: properties not readable "
            f"({denial}); GPUs this reader may not see"
        )
        log.warning("%s", warnings[-1])
    return KfdTopology(gpu_nodes=tuple(gpu_nodes), denied=tuple(denied), broken=tuple(broken))
