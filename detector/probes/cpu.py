"""The CPU probe: identity from ``/proc/cpuinfo``, core count from the sysfs CPU topology.

Identity (vendor, family, model, brand) comes from the first processor of ``/proc/cpuinfo``;
every socket of a node carries the same part. The generation comes from the kernel's
family/model table (detector.cpu_generations), so a VM whose brand is masked
(``model name : AMD EPYC``) still resolves.

Physical cores are counted over the online CPUs, SMT siblings once, all sockets included:

* ``/proc/cpuinfo`` lists the online CPUs with their ``physical id`` and ``core id``; when its
  processor count equals the sysfs ``devices/system/cpu/online`` list, the distinct pairs are
  the cores (two file reads, which matters on a 384-CPU node).
* Otherwise (cpuinfo virtualised by LXCFS, fields missing, CPUs going on- or offline while we
  read) the sysfs topology of every online CPU is walked: each core is one ``core_cpus_list``
  (``thread_siblings_list`` on old kernels) group, its socket ``physical_package_id``.
* If that walk fails too, the cpuinfo pairs are used with a warning; with neither, the probe
  raises ProbeError rather than guess.

A CPU without ``vendor_id`` in ``/proc/cpuinfo`` (arm64, RISC-V, POWER) is a known non-x86 CPU:
no label, and a healthy probe. Core counts of any CPU that gets no label are best effort.

Which CPUs count as EPYC (``is_epyc``, the only ones that get an ``EPYC_ZEN<N>`` label):

* Intel and other non-AMD vendors: never (no generation either).
* AMD with a brand naming EPYC (``AMD EPYC 9654 96-Core Processor``, masked ``AMD EPYC``): yes.
* AMD with a brand naming another product line (Ryzen, Threadripper, Athlon, Instinct MI300A's
  CPU, ...): no, even though the generation is known; the label says EPYC.
* AMD with a brand naming no product line at all (a hypervisor's generic string, an engineering
  sample): yes when the family/model is a known Zen generation, with a warning. Every Zen family
  is also a server family, and VMs that hide the brand are in practice cloud hosts on EPYC; the
  worst case is a masked Ryzen VM labelled with the matching Zen generation, whose cores run the
  same code.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from detector.cpu_generations import zen_generation
from detector.facts import CPU_SOURCE, CpuFacts, ProbeError
from detector.probes.files import BadFile, parse_cpulist, parse_int, read_attr, read_text
from detector.probes.roots import HostRoots

log = logging.getLogger(__name__)

AMD_VENDOR = "AuthenticAMD"
_CPUINFO_LIMIT = 64 * 1024 * 1024
_CPU_DIR = Path("devices/system/cpu")
_CPU_NAME_RE = re.compile(r"cpu(\d+)")
_AMD_PRODUCT_LINES = (
    "EPYC",
    "RYZEN",
    "THREADRIPPER",
    "ATHLON",
    "PHENOM",
    "SEMPRON",
    "TURION",
    "OPTERON",
    "INSTINCT",
)


class _TopologyUnavailable(Exception):
    pass


def _blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if current:
                blocks.append(current)
                current = {}
            continue
        current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _first_block(text: str) -> dict[str, str]:
    end = text.find("\n\n")
    return _blocks(text[: end if end >= 0 else len(text)])[0] if text.strip() else {}


def _int_field(path: Path, block: dict[str, str], key: str) -> int | None:
    value = block.get(key)
    if value is None:
        return None
    try:
        return int(value, 10)
    except ValueError:
        raise ProbeError(CPU_SOURCE, f"{path}: field {key!r} is not a number: {value!r}") from None


def _online_cpus(cpu_dir: Path) -> frozenset[int]:
    path = cpu_dir / "online"
    try:
        return parse_cpulist(path, read_attr(path))
    except FileNotFoundError:
        pass
    try:
        names = os.listdir(cpu_dir)
    except OSError as exc:
        raise _TopologyUnavailable(f"cannot list {cpu_dir}: {exc}") from exc
    return frozenset(int(m.group(1)) for n in names if (m := _CPU_NAME_RE.fullmatch(n)))


def _siblings(topology: Path) -> frozenset[int]:
    path = topology / "core_cpus_list"
    try:
        return parse_cpulist(path, read_attr(path))
    except FileNotFoundError:
        path = topology / "thread_siblings_list"
        return parse_cpulist(path, read_attr(path))


def _sysfs_topology(sysfs: Path) -> tuple[int, int, int]:
    """(sockets, physical cores, logical CPUs) from the online CPUs' topology."""
    cpu_dir = sysfs / _CPU_DIR
    try:
        online = _online_cpus(cpu_dir)
        if not online:
            raise _TopologyUnavailable(f"no online CPU under {cpu_dir}")
        counted: set[int] = set()
        packages: set[int] = set()
        cores = 0
        for cpu in sorted(online):
            if cpu in counted:
                continue
            topology = cpu_dir / f"cpu{cpu}" / "topology"
            package_path = topology / "physical_package_id"
            packages.add(parse_int(package_path, read_attr(package_path)))
            siblings = _siblings(topology)
            if cpu not in siblings:
                raise BadFile(topology / "core_cpus_list", f"does not list cpu{cpu} itself")
            counted.update(siblings)
            cores += 1
    except (OSError, BadFile) as exc:
        raise _TopologyUnavailable(str(exc)) from exc
    return len(packages), cores, len(online)


def _cpuinfo_pairs(text: str) -> list[tuple[str | None, str | None]]:
    """(physical id, core id) of every processor in cpuinfo, None where a field is missing.

    A line scan, not a full parse: cpuinfo of a big node is most of a megabyte.
    """
    pairs: list[tuple[str | None, str | None]] = []
    package: str | None = None
    core: str | None = None
    started = False
    for line in text.splitlines():
        if line.startswith("processor"):
            if started:
                pairs.append((package, core))
            started, package, core = True, None, None
        elif line.startswith("physical id"):
            package = line.partition(":")[2].strip()
        elif line.startswith("core id"):
            core = line.partition(":")[2].strip()
    if started:
        pairs.append((package, core))
    return pairs


def _pair_counts(pairs: list[tuple[str | None, str | None]]) -> tuple[int, int, int]:
    return len({package for package, _ in pairs}), len(set(pairs)), len(pairs)


def _count_cores(
    roots: HostRoots, path: Path, text: str, warnings: list[str]
) -> tuple[int, int, int]:
    """(sockets, physical cores, logical CPUs); see the module docstring for the order."""
    pairs = _cpuinfo_pairs(text)
    complete = bool(pairs) and all(p is not None and c is not None for p, c in pairs)
    try:
        online: frozenset[int] | None = _online_cpus(roots.sysfs / _CPU_DIR)
    except (OSError, BadFile, _TopologyUnavailable):
        online = None
    if complete and online is not None and len(online) == len(pairs):
        return _pair_counts(pairs)
    try:
        return _sysfs_topology(roots.sysfs)
    except _TopologyUnavailable as exc:
        if not complete:
            raise ProbeError(
                CPU_SOURCE,
                f"no CPU topology: the sysfs topology is unusable ({exc}) and {path} lacks "
                "'physical id'/'core id' for some processor",
            ) from exc
        warnings.append(f"sysfs CPU topology unusable ({exc}); counting cores from {path}")
        return _pair_counts(pairs)


def _is_epyc(vendor: str, brand: str, generation: str | None) -> tuple[bool, str | None]:
    """Whether the CPU gets an EPYC label, and a warning when that was decided without a brand."""
    if vendor != AMD_VENDOR:
        return False, None
    upper = brand.upper()
    if "EPYC" in upper:
        return True, None
    if any(line in upper for line in _AMD_PRODUCT_LINES) or generation is None:
        return False, None
    return True, (
        f"CPU brand {brand!r} names no AMD product line; treating this {generation} part as EPYC"
    )


def _not_x86(first: dict[str, str]) -> str | None:
    """Which non-x86 CPU a first cpuinfo block without ``vendor_id`` describes, if any.

    arm64 kernels write ``CPU implementer``/``CPU architecture``, RISC-V ``isa : rv64...``,
    POWER ``cpu : POWER9``; s390x and every x86 write ``vendor_id``. A block with none of these
    is not a CPU description we know: the probe fails rather than guess.
    """
    if "CPU implementer" in first or "CPU architecture" in first:
        return f"ARM implementer {first.get('CPU implementer', 'unknown')}"
    if first.get("isa", "").startswith("rv"):
        return "RISC-V"
    if first.get("cpu", "").upper().startswith("POWER"):
        return "IBM POWER"
    return None


def _counts_if_possible(
    roots: HostRoots, path: Path, text: str, warnings: list[str]
) -> tuple[int, int, int]:
    """Core counts of a CPU that gets no label: informational, so a failure costs only them."""
    try:
        return _count_cores(roots, path, text, warnings)
    except ProbeError as exc:
        warnings.append(f"CPU cores not counted: {exc.message}")
        return 0, 0, 0


def probe_cpu(roots: HostRoots) -> CpuFacts:
    """The node's CPUs. Raises ProbeError naming the file or field it could not use.

    A CPU that is not AMD x86 (Intel, arm64, ...) gets no label, so only what could make a
    label wrong fails the probe: its core counts are best effort.
    """
    path = roots.procfs / "cpuinfo"
    try:
        text = read_text(path, _CPUINFO_LIMIT)
    except (OSError, BadFile) as exc:
        raise ProbeError(CPU_SOURCE, f"cannot read {path}: {exc}") from exc
    first = _first_block(text)
    vendor = first.get("vendor_id")
    warnings: list[str] = []
    if not vendor:
        arch = _not_x86(first)
        if arch is None:
            raise ProbeError(CPU_SOURCE, f"{path}: no 'vendor_id' in the first processor entry")
        sockets, cores, logical = _counts_if_possible(roots, path, text, warnings)
        for message in warnings:
            log.warning("%s", message)
        return CpuFacts(arch, None, None, first.get("model name", ""), None, sockets, cores,
                        logical, is_epyc=False, warnings=tuple(warnings))  # fmt: skip
    family = _int_field(path, first, "cpu family")
    model = _int_field(path, first, "model")
    brand = first.get("model name", "")
    generation = zen_generation(family, model) if vendor == AMD_VENDOR else None
    is_epyc, why = _is_epyc(vendor, brand, generation)
    if why:
        warnings.append(why)
    if is_epyc:
        sockets, cores, logical = _count_cores(roots, path, text, warnings)
    else:
        sockets, cores, logical = _counts_if_possible(roots, path, text, warnings)
    for message in warnings:
        log.warning("%s", message)
    return CpuFacts(
        vendor=vendor,
        family=family,
        model=model,
        brand=brand,
        generation=generation,
        sockets=sockets,
        physical_cores=cores,
        logical_cpus=logical,
        is_epyc=is_epyc,
        warnings=tuple(warnings),
    )
