"""The GPU probe: sysfs always, amdsmi when it loads and agrees with sysfs.

``backend="sysfs"`` never touches amdsmi. ``"auto"`` reads sysfs and, when amdsmi is usable
(decided once per process: detector.probes.amdsmi_gpu), asks amdsmi too and cross-checks the two
(detector.probes.crosscheck): amdsmi's reading is used only when it lists exactly the GPUs PCI
shows, in the same modes, with the same partition counts; otherwise sysfs answers, the reason
is logged once and ``GpuFacts.fallback`` carries it (for the metrics). ``"amdsmi"`` demands
amdsmi: unavailable or disagreeing, the probe fails (and the agent keeps its last labels).

Either way a sysfs view that cannot be read fails the probe: without it nothing can confirm
what amdsmi says.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Literal

from detector.facts import GPU_SOURCE, BackendUnavailable, GpuFacts, ProbeError
from detector.probes.amdsmi_gpu import probe_amdsmi
from detector.probes.crosscheck import compare, merge
from detector.probes.once import say_once
from detector.probes.roots import HostRoots
from detector.probes.sysfs_gpu import probe_sysfs_gpus

log = logging.getLogger(__name__)

GpuBackend = Literal["auto", "amdsmi", "sysfs"]
BACKENDS: tuple[GpuBackend, ...] = ("auto", "amdsmi", "sysfs")

#: ``GpuFacts.fallback`` values: why sysfs answered in ``auto`` mode.
FALLBACK_UNAVAILABLE = "amdsmi-unavailable"
FALLBACK_DISAGREES = "amdsmi-disagrees"


def probe_gpus(roots: HostRoots, backend: GpuBackend = "auto") -> GpuFacts:
    """The node's AMD GPUs. Raises ProbeError (BackendUnavailable only for ``"amdsmi"``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown GPU backend {backend!r}; expected one of {BACKENDS}")
    if backend == "sysfs":
        return probe_sysfs_gpus(roots)
    try:
        reading = probe_amdsmi()
    except BackendUnavailable:
        if backend == "amdsmi":
            raise
        return replace(probe_sysfs_gpus(roots), fallback=FALLBACK_UNAVAILABLE)
    sysfs = probe_sysfs_gpus(roots)
    disagreement = compare(reading, sysfs)
    if disagreement is None:
        return merge(reading, sysfs)
    message = f"amdsmi disagrees with sysfs ({disagreement.kind}): {disagreement.message}"
    if backend == "amdsmi":
        raise ProbeError(GPU_SOURCE, message)
    say_once(log, f"{message}; using sysfs")
    return replace(sysfs, fallback=f"{FALLBACK_DISAGREES}:{disagreement.kind}")
