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
  partition support): SPX-NPS1 is the factory default and is ``default``, not ``SPX-NPS1``.
  SPX with another memory mode is named (``SPX-NPS2``). A compute-partitioned GPU whose memory
  mode is not reported (old kernels) is named by its compute mode alone (``CPX``), and one whose
  modes are unknown altogether (seen through KFD only) gets no partition label.

CPU labels: ``aim-accelerator.EPYC_ZEN<N>=<physical cores over all sockets>`` when the CPU is an
EPYC of a known generation (see detector.probes.cpu for who counts as EPYC); none otherwise.
"""

from __future__ import annotations

from collections import Counter

from detector.facts import CpuFacts, GpuDevice, GpuFacts
from detector.labels import (
    DEFAULT_SCHEME,
    accelerator_label_key,
    count_value,
    epyc_id,
    partition_label_key,
    validate_labels,
)


def partition_scheme(device: GpuDevice) -> str | None:
    """The partitioning-scheme name a GPU is counted under, or None when it cannot be named."""
    compute, memory = device.compute_partition, device.memory_partition
    if compute in (None, "SPX") and memory in (None, "NPS1") and device.partitions == 1:
        return DEFAULT_SCHEME
    if compute is None:
        return None
    return f"{compute}-{memory}" if memory else compute


def gpu_labels(facts: GpuFacts) -> dict[str, str]:
    models: Counter[str] = Counter()
    schemes: Counter[str] = Counter()
    for device in facts.devices:
        if device.model is None:
            continue
        models[device.model] += 1
        scheme = partition_scheme(device)
        if scheme is not None:
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
