"""How many partitions each GPU shows, counted from the device and checked against its mode.

Pure: the GPUs (from PCI) and the KFD topology in, counts out. The kernel makes one partition
per XCC a device actually has in CPX (``__aqua_vanjaram_calc_xcp_mode``: one XCC per partition
*is* CPX), so a one-XCC SR-IOV VF in CPX has one partition, not the eight of a bare-metal
MI300X. The count therefore comes from what the host shows, most direct first:

1. ``kfd``: every KFD GPU node readable: the nodes at each GPU's PCI address.
2. ``kfd-node-count``: GPU nodes refused to us (the default non-privileged DaemonSet): their
   number is still known; the fixed modes take theirs (SPX 1, DPX 2, TPX 3, QPX 4) and the CPX
   GPUs share the rest, when they are all the same device id.
3. ``table``: no KFD topology at all: the model's XCD count (a full part), logged as such.

A reading the modes cannot explain is a topology caught mid-switch (KFD nodes are removed and
recreated when a GPU changes mode), never a count: ProbeError, and the agent keeps the last
labels and tries again next cycle. That is: a fixed-mode GPU with another number of nodes, a
CPX GPU with none or with more than its model has XCCs, CPX GPUs of one device id with
different counts, or host totals that do not share out evenly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from detector.facts import (
    GPU_SOURCE,
    PARTITIONS_FROM_KFD,
    PARTITIONS_FROM_KFD_COUNT,
    PARTITIONS_FROM_MODE,
    PARTITIONS_FROM_TABLE,
    PARTITIONS_UNKNOWN,
    ProbeError,
)
from detector.pci_ids import UNKNOWN_MODE, XCD_COUNT, fixed_partitions, partitions_for_mode
from detector.probes.kfd import KfdTopology
from detector.probes.once import say_once

log = logging.getLogger(__name__)

Key = tuple[int, int, int]
Count = tuple[int, str]
"""(partitions, where the number came from)."""


@dataclass(frozen=True, slots=True)
class GpuMode:
    """What counting needs to know about one physical GPU."""

    key: Key
    bdf: str
    device_id: int
    model: str | None
    compute_partition: str | None


class PartitionsInFlux(ProbeError):
    """The partitions on the host do not fit the GPUs' modes: a mode switch in progress."""

    def __init__(self, message: str) -> None:
        super().__init__(
            GPU_SOURCE, f"{message}: a partition switch in progress? keeping the last labels"
        )


def _variable(gpu: GpuMode) -> bool:
    return fixed_partitions(gpu.compute_partition) is None


def _table(gpu: GpuMode) -> Count:
    if gpu.compute_partition == UNKNOWN_MODE:
        return (1, PARTITIONS_UNKNOWN)
    count = partitions_for_mode(gpu.model, gpu.compute_partition)
    return (count, PARTITIONS_FROM_TABLE) if count else (1, PARTITIONS_UNKNOWN)


def _check_cpx(gpu: GpuMode, count: int) -> None:
    most = XCD_COUNT.get(gpu.model or "")
    if count < 1 or (most is not None and count > most):
        limit = f"(an {gpu.model} has at most {most} XCCs)" if most else ""
        raise PartitionsInFlux(f"{gpu.bdf} in CPX shows {count} partition(s) {limit}".rstrip())


def check_counts(gpus: Sequence[GpuMode], counts: dict[Key, int], where: str) -> None:
    """Raise PartitionsInFlux unless per-GPU partition counts fit the GPUs' modes."""
    cpx_counts: dict[int, set[int]] = {}
    for gpu in gpus:
        count = counts.get(gpu.key, 0)
        fixed = fixed_partitions(gpu.compute_partition)
        if fixed is not None:
            if count not in (0, fixed):  # none: a GPU the compute stack does not drive
                raise PartitionsInFlux(
                    f"{gpu.bdf} is in {gpu.compute_partition or 'no partition mode'} "
                    f"({fixed} partition(s)) but {where} shows {count}"
                )
        elif gpu.compute_partition == "CPX":
            _check_cpx(gpu, count)
            cpx_counts.setdefault(gpu.device_id, set()).add(count)
    for device_id, seen in cpx_counts.items():
        if len(seen) > 1:
            raise PartitionsInFlux(
                f"GPUs 0x{device_id:04x} in CPX show different partition counts "
                f"({', '.join(map(str, sorted(seen)))}) in {where}"
            )


def _from_complete(gpus: Sequence[GpuMode], kfd: KfdTopology) -> dict[Key, Count]:
    by_device = kfd.partitions_by_device()
    check_counts(gpus, dict(by_device), "the KFD topology")
    known = {gpu.key for gpu in gpus}
    for key in sorted(set(by_device) - known):
        log.warning("KFD GPU at %04x:%02x:%02x.0 has no amdgpu-bound PCI device; ignored", *key)
    result: dict[Key, Count] = {}
    for gpu in gpus:
        fixed = fixed_partitions(gpu.compute_partition)
        if fixed is not None:
            result[gpu.key] = (fixed, PARTITIONS_FROM_MODE)
        elif gpu.compute_partition == UNKNOWN_MODE:
            result[gpu.key] = (max(by_device.get(gpu.key, 1), 1), PARTITIONS_UNKNOWN)
        else:
            result[gpu.key] = (by_device[gpu.key], PARTITIONS_FROM_KFD)
    return result


def _from_node_count(
    gpus: Sequence[GpuMode], kfd: KfdTopology, warnings: list[str]
) -> dict[Key, Count]:
    total = kfd.gpu_node_count
    variable = [gpu for gpu in gpus if _variable(gpu)]
    fixed_total = sum(fixed_partitions(gpu.compute_partition) or 0 for gpu in gpus)
    rest = total - fixed_total
    result: dict[Key, Count] = {
        gpu.key: (fixed_partitions(gpu.compute_partition) or 0, PARTITIONS_FROM_MODE)
        for gpu in gpus
        if not _variable(gpu)
    }
    if not variable:
        if rest > 0:
            raise PartitionsInFlux(
                f"the KFD topology has {total} GPU node(s), more than the GPUs' modes make "
                f"({fixed_total})"
            )
        return result
    ids = {gpu.device_id for gpu in variable}
    if len(ids) == 1 and all(gpu.compute_partition == "CPX" for gpu in variable):
        share, left = divmod(rest, len(variable))
        if rest < len(variable) or left:
            raise PartitionsInFlux(
                f"the KFD topology has {total} GPU node(s): {fixed_total} for the fixed-mode "
                f"GPUs leaves {rest}, which {len(variable)} GPU(s) in CPX cannot share evenly"
            )
        for gpu in variable:
            _check_cpx(gpu, share)
            result[gpu.key] = (share, PARTITIONS_FROM_KFD_COUNT)
        return result
    message = (
        f"cannot share {rest} KFD GPU node(s) among GPUs of different ids or unknown modes; "
        "CPX partition counts taken from the model table"
    )
    warnings.append(message)
    say_once(log, message)
    for gpu in variable:
        result[gpu.key] = _table(gpu)
    return result


def count_partitions(
    gpus: Sequence[GpuMode], kfd: KfdTopology | None, warnings: list[str]
) -> dict[Key, Count]:
    """Each GPU's partition count and its source (module docstring). Raises ProbeError."""
    if not gpus:
        return {}
    if kfd is not None and kfd.listable:
        problems = kfd.problems()
        if problems:
            raise PartitionsInFlux("; ".join(problems))
        if kfd.complete:
            return _from_complete(gpus, kfd)
        return _from_node_count(gpus, kfd, warnings)
    result = {}
    for gpu in gpus:
        fixed = fixed_partitions(gpu.compute_partition)
        result[gpu.key] = (fixed, PARTITIONS_FROM_MODE) if fixed is not None else _table(gpu)
    tabled = [gpu.bdf for gpu in gpus if result[gpu.key][1] == PARTITIONS_FROM_TABLE]
    if tabled:
        message = (
            f"no KFD topology to count partitions: CPX partition counts of {', '.join(tabled)} "
            "taken from the model table (right for a full part only)"
        )
        warnings.append(message)
        say_once(log, message)
    return result
