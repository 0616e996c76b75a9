"""The GPU probe: amdsmi when it works, sysfs otherwise.

``backend="auto"`` tries amdsmi first and falls back to sysfs when amdsmi is unavailable
(logged once by the amdsmi probe) or reports no GPU at all: amdsmi answering "none" inside a
container without ``/dev/kfd`` is not evidence that the node has no GPU, and the sysfs probe
knows how to tell "cannot see" from "nothing there". ``"amdsmi"`` forces amdsmi and lets
BackendUnavailable through; ``"sysfs"`` never touches amdsmi.
"""

from __future__ import annotations

import logging
from typing import Literal

from detector.facts import BackendUnavailable, GpuFacts
from detector.probes.amdsmi_gpu import probe_amdsmi_gpus
from detector.probes.roots import HostRoots
from detector.probes.sysfs_gpu import probe_sysfs_gpus

log = logging.getLogger(__name__)

GpuBackend = Literal["auto", "amdsmi", "sysfs"]
BACKENDS: tuple[GpuBackend, ...] = ("auto", "amdsmi", "sysfs")


def probe_gpus(roots: HostRoots, backend: GpuBackend = "auto") -> GpuFacts:
    """The node's AMD GPUs. Raises ProbeError (BackendUnavailable only for ``"amdsmi"``)."""
    if backend == "sysfs":
        return probe_sysfs_gpus(roots)
    if backend == "amdsmi":
        return probe_amdsmi_gpus()
    if backend != "auto":
        raise ValueError(f"unknown GPU backend {backend!r}; expected one of {BACKENDS}")
    try:
        facts = probe_amdsmi_gpus()
    except BackendUnavailable:
        return probe_sysfs_gpus(roots)
    if not facts.devices:
        log.debug("amdsmi reports no GPU; asking sysfs")
        return probe_sysfs_gpus(roots)
    return facts
