"""The CPU probe on fixture /proc and /sys trees, the kernel's generation table, and this host."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from detector.cpu_generations import zen_generation
from detector.facts import CpuFacts, ProbeError
from detector.labeling import cpu_labels
from detector.probes.cpu import probe_cpu
from detector.probes.files import BadFile, parse_cpulist
from detector.probes.roots import HostRoots
from tests.hosttrees import build_host, garble, shared_host, shared_hosts_dir

CPU_DIR = "sys/devices/system/cpu"


@pytest.fixture(scope="module")
def hosts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_hosts_dir(tmp_path_factory.getbasetemp())


def probe(root: Path) -> CpuFacts:
    return probe_cpu(HostRoots.from_host_root(root))


@pytest.mark.parametrize(
    ("family", "model", "generation"),
    [
        (23, 0x01, "ZEN1"),  # EPYC 7001 Naples
        (23, 0x2F, "ZEN1"),
        (23, 0x30, "ZEN2"),
        (23, 0x31, "ZEN2"),  # EPYC 7002 Rome
        (23, 0x50, "ZEN1"),
        (23, 0x60, "ZEN2"),
        (23, 0x91, "ZEN2"),
        (23, 0x92, None),
        (23, 0xA0, "ZEN2"),
        (25, 0x01, "ZEN3"),  # EPYC 7003 Milan
        (25, 0x11, "ZEN4"),  # EPYC 9004 Genoa
        (25, 0x1F, "ZEN4"),
        (25, 0x20, "ZEN3"),
        (25, 0x5F, "ZEN3"),
        (25, 0x60, "ZEN4"),
        (25, 0xA0, "ZEN4"),  # EPYC 9754 Bergamo
        (25, 0xB0, None),
        (26, 0x02, "ZEN5"),  # EPYC 9005 Turin
        (26, 0x11, "ZEN5"),  # EPYC 9005 Turin dense
        (26, 0x30, None),
        (26, 0x44, "ZEN5"),
        (26, 0x50, "ZEN6"),
        (26, 0x70, "ZEN5"),
        (26, 0x80, "ZEN6"),
        (26, 0xC0, "ZEN6"),
        (26, 0xD0, None),
        (24, 0x00, None),  # Hygon Dhyana, not AMD's table
        (6, 143, None),  # Intel Sapphire Rapids
        (None, 0x11, None),
        (25, None, None),
    ],
)
def test_generation_table(family: int | None, model: int | None, generation: str | None) -> None:
    assert zen_generation(family, model) == generation


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0-3,8,10-11", {0, 1, 2, 3, 8, 10, 11}), ("5,197", {5, 197})],
)
def test_cpulist(text: str, cpus: set[int]) -> None:
    assert parse_cpulist(Path("online"), text) == cpus


@pytest.mark.parametrize("text", ["", "0-", "3-1", "a", "0,,1"])
def test_bad_cpulist(text: str) -> None:
    with pytest.raises(BadFile, match="online"):
        parse_cpulist(Path("online"), text)


def test_dual_socket_genoa(hosts_dir: Path) -> None:
    cpu = probe(shared_host(hosts_dir, "epyc-zen4-2s"))
    assert (cpu.vendor, cpu.family, cpu.model) == ("AuthenticAMD", 25, 0x11)
    assert cpu.brand == "AMD EPYC 9654 96-Core Processor"
    assert cpu.generation == "ZEN4"
    assert (cpu.sockets, cpu.physical_cores, cpu.logical_cpus) == (2, 192, 384)
    assert cpu.is_epyc
    assert cpu.warnings == ()


def test_dual_socket_turin(hosts_dir: Path) -> None:
    cpu = probe(shared_host(hosts_dir, "epyc-zen5-2s"))
    assert (cpu.generation, cpu.sockets, cpu.physical_cores, cpu.logical_cpus) == (
        "ZEN5",
        2,
        128,
        256,
    )
    assert cpu.is_epyc


def test_milan(hosts_dir: Path) -> None:
    cpu = probe(shared_host(hosts_dir, "mi210-4"))
    assert (cpu.generation, cpu.physical_cores, cpu.is_epyc) == ("ZEN3", 128, True)


def test_brand_masked_vm_resolves_by_family_and_model(hosts_dir: Path) -> None:
    cpu = probe(shared_host(hosts_dir, "epyc-vm-masked"))
    assert cpu.brand == "AMD EPYC"
    assert (cpu.generation, cpu.is_epyc) == ("ZEN4", True)
    assert (cpu.sockets, cpu.physical_cores, cpu.logical_cpus) == (1, 8, 16)
    assert cpu.warnings == ()


def test_intel_gets_no_generation(hosts_dir: Path) -> None:
    cpu = probe(shared_host(hosts_dir, "intel-xeon"))
    assert cpu.vendor == "GenuineIntel"
    assert (cpu.generation, cpu.is_epyc) == (None, False)
    assert (cpu.sockets, cpu.physical_cores, cpu.logical_cpus) == (2, 112, 224)


def test_defect8_arm64_is_a_healthy_probe_without_a_label(hosts_dir: Path) -> None:
    """arm64's /proc/cpuinfo has no vendor_id (CPU implementer/part instead): not AMD x86,
    so no CPU label, and no failed probe (which kept the pod unready for good)."""
    root = shared_host(hosts_dir, "arm64-altra")
    assert "vendor_id" not in (root / "proc/cpuinfo").read_text()
    cpu = probe(root)
    assert cpu.vendor == "ARM implementer 0x41"
    assert (cpu.generation, cpu.is_epyc) == (None, False)
    assert (cpu.sockets, cpu.physical_cores, cpu.logical_cpus) == (1, 128, 128)
    assert cpu_labels(cpu) == {}


def test_a_cpu_without_a_label_is_healthy_even_when_its_cores_cannot_be_counted(
    tmp_path: Path,
) -> None:
    root = build_host(tmp_path, "arm64-altra")
    shutil.rmtree(root / CPU_DIR)
    cpu = probe(root)
    assert (cpu.physical_cores, cpu.is_epyc) == (0, False)
    assert "CPU cores not counted" in cpu.warnings[0]


def test_ryzen_has_a_generation_but_is_not_epyc(hosts_dir: Path) -> None:
    cpu = probe(shared_host(hosts_dir, "ryzen-desktop"))
    assert (cpu.generation, cpu.is_epyc, cpu.physical_cores) == ("ZEN4", False, 16)


def _rewrite_cpuinfo(root: Path, old: str, new: str) -> None:
    path = root / "proc/cpuinfo"
    path.write_text(path.read_text().replace(old, new))


def test_fully_masked_brand_on_a_zen_family_counts_as_epyc_with_warning(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-vm-masked")
    _rewrite_cpuinfo(
        root, "model name\t: AMD EPYC\n", "model name\t: QEMU Virtual CPU version 2.5+\n"
    )
    cpu = probe(root)
    assert (cpu.generation, cpu.is_epyc) == ("ZEN4", True)
    assert "names no AMD product line" in cpu.warnings[0]


def test_unknown_model_is_no_generation_and_no_crash(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-vm-masked")
    _rewrite_cpuinfo(root, "model\t\t: 17\n", "model\t\t: 255\n")
    cpu = probe(root)
    assert (cpu.model, cpu.generation, cpu.is_epyc) == (255, None, True)
    assert cpu.physical_cores == 8


def _keep_cpuinfo_blocks(root: Path, count: int) -> None:
    path = root / "proc/cpuinfo"
    path.write_text("\n\n".join(path.read_text().split("\n\n")[:count]) + "\n\n")


def _drop_cpuinfo_field(root: Path, field: str) -> None:
    path = root / "proc/cpuinfo"
    path.write_text("".join(x for x in path.read_text().splitlines(True) if field not in x))


def test_virtualised_cpuinfo_is_not_trusted_for_counting(tmp_path: Path) -> None:
    """LXCFS shows a container only its cpuset in /proc/cpuinfo; sysfs still has the node."""
    root = build_host(tmp_path, "epyc-vm-masked")
    _keep_cpuinfo_blocks(root, 4)
    cpu = probe(root)
    assert (cpu.sockets, cpu.physical_cores, cpu.logical_cpus) == (1, 8, 16)
    assert cpu.warnings == ()


def test_cpuinfo_without_core_ids_walks_sysfs(tmp_path: Path) -> None:
    root = build_host(tmp_path, "intel-xeon")
    _drop_cpuinfo_field(root, "core id")
    cpu = probe(root)
    assert (cpu.sockets, cpu.physical_cores, cpu.logical_cpus) == (2, 112, 224)


def test_smt_disabled_counts_the_same_cores(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-vm-masked")
    (root / CPU_DIR / "online").write_text("0-7\n")
    cpu = probe(root)
    assert (cpu.physical_cores, cpu.logical_cpus) == (8, 8)


def test_old_kernel_without_core_cpus_list(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-vm-masked")
    for path in (root / CPU_DIR).glob("cpu*/topology/core_cpus_list"):
        path.unlink()
    _drop_cpuinfo_field(root, "core id")  # so that the sysfs walk is what counts
    assert probe(root).physical_cores == 8


def test_garbled_topology_falls_back_to_cpuinfo(hosts_dir: Path) -> None:
    cpu = probe(shared_host(hosts_dir, "epyc-zen4-topology-garbled"))
    assert (cpu.sockets, cpu.physical_cores, cpu.logical_cpus) == (2, 192, 384)
    assert "system/cpu/online: garbled" in cpu.warnings[0]


def test_garbled_core_list_in_the_walk_falls_back_to_cpuinfo(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-vm-masked")
    _keep_cpuinfo_blocks(root, 12)  # cpuinfo and sysfs disagree: walk sysfs
    garble(root / CPU_DIR / "cpu3/topology/core_cpus_list")
    cpu = probe(root)
    assert (cpu.physical_cores, cpu.logical_cpus) == (8, 12)  # what cpuinfo can still tell
    assert "cpu3/topology/core_cpus_list: garbled" in cpu.warnings[0]


def test_missing_sysfs_topology_falls_back_to_cpuinfo(tmp_path: Path) -> None:
    root = build_host(tmp_path, "intel-xeon")
    shutil.rmtree(root / CPU_DIR)
    cpu = probe(root)
    assert (cpu.sockets, cpu.physical_cores, cpu.logical_cpus) == (2, 112, 224)
    assert "counting cores from" in cpu.warnings[0]


def test_no_topology_anywhere_is_an_error(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-vm-masked")
    shutil.rmtree(root / CPU_DIR)
    _drop_cpuinfo_field(root, "core id")
    with pytest.raises(ProbeError, match="core id"):
        probe(root)


def test_garbled_cpuinfo_is_an_error_naming_the_file(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-vm-masked")
    garble(root / "proc/cpuinfo")
    with pytest.raises(ProbeError, match="proc/cpuinfo") as info:
        probe(root)
    assert info.value.source == "cpu"


def test_x86_cpuinfo_without_vendor_names_the_field(tmp_path: Path) -> None:
    """No vendor_id and no other architecture's fields: a damaged file, not an arm64 CPU."""
    root = build_host(tmp_path, "epyc-vm-masked")
    _rewrite_cpuinfo(root, "vendor_id\t: AuthenticAMD\n", "")
    with pytest.raises(ProbeError, match="vendor_id"):
        probe(root)


def test_non_numeric_family_names_the_field(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-vm-masked")
    _rewrite_cpuinfo(root, "cpu family\t: 25\n", "cpu family\t: twenty-five\n")
    with pytest.raises(ProbeError, match="cpu family"):
        probe(root)


def test_this_machine() -> None:
    """The real /proc and /sys of wherever the tests run: facts, sane, and no crash."""
    cpu = probe_cpu(HostRoots())
    assert cpu.vendor
    assert cpu.sockets >= 1
    assert 1 <= cpu.physical_cores <= cpu.logical_cpus
    if cpu.vendor != "AuthenticAMD":
        assert cpu.generation is None
        assert not cpu.is_epyc
