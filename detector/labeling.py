"""Facts -> node labels. Pure: plain data in, a ``{key: value}`` dict out (keys: detector.labels).

GPU labels:

* ``aim-accelerator.<MODEL>=<physical GPUs of that model>``, one per model (a node with two
  models gets two). GPUs whose device id we do not know (``model=None``) get no label at all,
  not even a partition label: an unknown device may be an integrated GPU rather than an
  accelerator.
* Partition labels, as in AIM's design: ``aim-accelerator.partitioning-scheme.default=<GPUs>``
  counts GPUs that are not partitioned, and ``...partitioning-scheme.<CP>-<MP>=<partitions>``
  counts the logical GPUs of every other mode (``CPX-NPS4=64`` for 8 x MI300X in CPX-NPS4).
  "Not partitioned" means one partition in SPX (or no partition support) with NPS1 (or no memory
  partition support). A partitionable GPU in exactly SPX with NPS1 is counted under both
  ``default`` and ``SPX-NPS1`` (AIM Engine's label table), so profiles written for either key
  match; SPX with another memory mode is named (``SPX-NPS2``). A compute-partitioned GPU whose
  memory mode is not reported (old kernels) is named by its compute mode alone (``CPX``). A GPU
  whose mode is ``UNKNOWN`` (the kernel's word mid-switch, or a value we cannot name) gets no
  partition label, and so does one whose partitions nothing could count; its model label
  stays.

All labels of one GPU source come from one reading, so they never contradict each other (the
agent publishes a source's labels as a whole: see detector.reconcile).

CPU labels: ``aim-accelerator.EPYC_ZEN<N>=<physical cores over all sockets>`` when the CPU is an
EPYC of a known generation (see detector.probes.cpu for who counts as EPYC); none otherwise.
"""

from __future__ import annotations

from collections import Counter

from detector.facts import PARTITIONS_UNKNOWN, CpuFacts, GpuDevice, GpuFacts
from detector.labels import (
    CANONICAL_UNPARTITIONED_SCHEME,
    DEFAULT_SCHEME,
    accelerator_label_key,
    count_value,
    epyc_id,
    partition_label_key,
    validate_labels,
)
from detector.pci_ids import UNKNOWN_MODE


def partition_schemes(device: GpuDevice) -> tuple[str, ...]:
    """The partitioning-scheme names a GPU is counted under (none when it cannot be named)."""
    compute, memory = device.compute_partition, device.memory_partition
    if UNKNOWN_MODE in (compute, memory) or device.partitions_from == PARTITIONS_UNKNOWN:
        return ()
    if compute in (None, "SPX") and memory in (None, "NPS1") and device.partitions == 1:
        if (compute, memory) == ("SPX", "NPS1"):
            return (DEFAULT_SCHEME, CANONICAL_UNPARTITIONED_SCHEME)
        return (DEFAULT_SCHEME,)
    if compute is None:
        return ()
    return (f"{compute}-{memory}" if memory else compute,)


def partition_scheme(device: GpuDevice) -> str | None:
    """The main scheme a GPU is counted under (``default`` for SPX-NPS1), or None."""
    schemes = partition_schemes(device)
    return schemes[0] if schemes else None


def gpu_labels(facts: GpuFacts) -> dict[str, str]:
    models: Counter[str] = Counter()
    schemes: Counter[str] = Counter()
    for device in facts.devices:
        if device.model is None:
            continue
        models[device.model] += 1
        for scheme in partition_schemes(device):
            schemes[scheme] += device.partitions
    labels = {accelerator_label_key(model): count_value(n) for model, n in sorted(models.items())}
    for scheme, n in sorted(schemes.items()):
        labels[partition_label_key(scheme)] = count_value(n)
    validate_labels(labels)
    return labels


def cpu_labels(facts: CpuFacts) -> dict[str, str]:
    if not facts.is_epyc or facts.generation is None or facts.physical_cores <= 0:
        return {}
    labels = {accelerator_label_key(epyc_id(facts.generation)): count_value(facts.physical_cores)}
    validate_labels(labels)
    return labels
