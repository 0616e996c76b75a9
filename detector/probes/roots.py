"""Where the probes look: the roots of sysfs and procfs.

Both are configurable so that tests point the probes at fixture trees and a containerised
agent reads the host's trees mounted elsewhere (``--host-root /host`` -> ``/host/sys`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class HostRoots:
    sysfs: Path = Path("/sys")
    procfs: Path = Path("/proc")

    @classmethod
    def from_host_root(cls, root: Path | str) -> HostRoots:
        """``/host`` -> ``/host/sys``, ``/host/proc``.

        (amdsmi needs no root: it opens the real ``/dev/kfd`` and ``/dev/dri`` itself.)
        """
        base = Path(root)
        return cls(sysfs=base / "sys", procfs=base / "proc")
