"""The sysfs GPU probe against fixture trees laid out as on real machines (tests/hosttrees.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from detector.facts import GpuFacts, ProbeError
from detector.probes.gpu import probe_gpus
from detector.probes.roots import HostRoots
from tests.hosttrees import (
    SMALL_CPU,
    build_host,
    garble,
    read_is_denied,
    shared_host,
    shared_hosts_dir,
)

KFD_NODES = "sys/class/kfd/kfd/topology/nodes"


@pytest.fixture(scope="module")
def hosts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_hosts_dir(tmp_path_factory.getbasetemp())


def probe(root: Path) -> GpuFacts:
    return probe_gpus(HostRoots.from_host_root(root), "sysfs")


def test_pci_device_dirs_are_symlinks_into_devices_tree(hosts_dir: Path) -> None:
    root = shared_host(hosts_dir, "mi300x-8-spx-nps1")
    link = root / "sys/bus/pci/devices/0000:05:00.0"
    assert link.is_symlink()
    assert os.readlink(link) == "../../../devices/pci0000:00/0000:00:01.1/0000:05:00.0"
    card = root / "sys/class/drm/card0"
    assert card.is_symlink()
    assert (card / "device").resolve() == link.resolve()


def test_eight_mi300x_spx_nps1(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "mi300x-8-spx-nps1"))
    assert facts.source == "sysfs"
    assert facts.warnings == ()
    assert len(facts.devices) == 8
    assert len({d.bdf for d in facts.devices}) == 8
    for device in facts.devices:
        assert device.model == "MI300X"
        assert device.device_id == 0x74A1
        assert (device.compute_partition, device.memory_partition) == ("SPX", "NPS1")
        assert device.partitions == 1
        assert device.vram_mib == 192 * 1024
    assert {d.numa_node for d in facts.devices} == {0, 1}


def test_cpx_nps4_counts_partitions_from_kfd_but_gpus_by_pci(hosts_dir: Path) -> None:
    root = shared_host(hosts_dir, "mi300x-8-cpx-nps4")
    assert len(list((root / KFD_NODES).iterdir())) == 2 + 64  # two CPU nodes, 64 partitions
    assert len(list((root / "sys/devices/platform").glob("amdgpu_xcp_*"))) == 56
    facts = probe(root)
    assert facts.warnings == ()
    assert [d.bdf for d in facts.devices] == [
        f"0000:{bus:02x}:00.0" for bus in (0x05, 0x25, 0x45, 0x65, 0x85, 0xA5, 0xC5, 0xE5)
    ]
    assert {(d.model, d.compute_partition, d.memory_partition, d.partitions)
            for d in facts.devices} == {("MI300X", "CPX", "NPS4", 8)}  # fmt: skip


def test_kfd_node_count_wins_over_the_mode(tmp_path: Path) -> None:
    """What KFD exposes is what the node has (e.g. a partition that failed to come up)."""
    root = build_host(tmp_path, "mi300x-8-cpx-nps4", SMALL_CPU)
    shutil.rmtree(root / KFD_NODES / "1")  # node 0 is the CPU, 1-8 the first GPU's partitions
    facts = probe(root)
    assert [d.partitions for d in facts.devices] == [7, 8, 8, 8, 8, 8, 8, 8]


def test_without_kfd_partitions_follow_mode_and_xcd_count(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi300x-8-cpx-nps4", SMALL_CPU)
    shutil.rmtree(root / "sys/class/kfd")
    facts = probe(root)
    assert [d.partitions for d in facts.devices] == [8] * 8
    assert facts.warnings == ()


def test_dpx_on_mi355x(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "mi355x-8-dpx-nps2"))
    assert {(d.model, d.compute_partition, d.memory_partition, d.partitions)
            for d in facts.devices} == {("MI355X", "DPX", "NPS2", 2)}  # fmt: skip
    assert facts.devices[0].vram_mib == 288 * 1024


def test_mi325x(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "mi325x-8"))
    assert [d.model for d in facts.devices] == ["MI325X"] * 8


def test_mi210_display_class_without_partition_files(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "mi210-4"))
    assert len(facts.devices) == 4
    for device in facts.devices:
        assert device.model == "MI210"
        assert device.compute_partition is None
        assert device.memory_partition is None
        assert device.partitions == 1


def test_node_with_two_models(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "mixed-mi300x-mi210"))
    assert sorted(d.model or "" for d in facts.devices) == ["MI210"] * 2 + ["MI300X"] * 4


def test_virtual_function_in_a_vm_is_the_vms_gpu(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "mi300x-vf-vm"))
    assert [(d.device_id, d.model) for d in facts.devices] == [(0x74B5, "MI300X")]


def test_virtual_functions_on_the_host_are_not_counted_again(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi300x-8-spx-nps1", SMALL_CPU)
    pf = (root / "sys/bus/pci/devices/0000:05:00.0").resolve()
    vf = pf.parent / "0000:05:02.0"
    vf.mkdir()
    for name, value in (("vendor", "0x1002"), ("device", "0x74b5"), ("class", "0x120000")):
        (vf / name).write_text(value + "\n")
    (vf / "physfn").symlink_to("../0000:05:00.0")
    (root / "sys/bus/pci/devices/0000:05:02.0").symlink_to(
        os.path.relpath(vf, root / "sys/bus/pci/devices")
    )
    assert len(probe(root).devices) == 8


@pytest.mark.parametrize("name", ["epyc-zen4-2s", "epyc-zen5-2s", "intel-xeon", "epyc-vm-masked"])
def test_hosts_without_amd_gpu(hosts_dir: Path, name: str) -> None:
    """Includes the BMC's ASPEED VGA (display class, another vendor) and AMD 0x1022 bridges."""
    facts = probe(shared_host(hosts_dir, name))
    assert facts.devices == ()
    assert facts.warnings == ()


def test_radeon_card_audio_and_unknown_integrated_gpu(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "ryzen-desktop"))
    by_id = {d.device_id: d for d in facts.devices}
    assert set(by_id) == {0x744C, 0x164E}  # the HDMI audio function (class 0x0403) is not a GPU
    assert by_id[0x744C].model == "RX7900"
    assert by_id[0x164E].model is None
    assert any("0x164e" in w for w in facts.warnings)


def test_kfd_eperm_without_pci_is_cannot_see_not_zero(hosts_dir: Path) -> None:
    root = shared_host(hosts_dir, "kfd-eperm-container")
    properties = root / KFD_NODES / "2" / "properties"
    if not read_is_denied(properties):
        pytest.skip("this environment cannot make the kernel refuse the read")
    assert not (root / "sys/bus/pci/devices").exists()
    assert not read_is_denied(root / KFD_NODES / "0" / "properties")  # CPU nodes stay readable
    with pytest.raises(ProbeError, match="not readable") as info:
        probe(root)
    assert info.value.source == "gpu"


def test_kfd_eperm_with_pci_reports_gpus_and_partitions_from_mode(hosts_dir: Path) -> None:
    root = shared_host(hosts_dir, "mi300x-8-kfd-eperm")
    if not read_is_denied(root / KFD_NODES / "2" / "properties"):
        pytest.skip("this environment cannot make the kernel refuse the read")
    facts = probe(root)
    assert [d.partitions for d in facts.devices] == [8] * 8
    assert any("not readable" in w for w in facts.warnings)
    assert any("partition counts derived" in w for w in facts.warnings)


def test_kfd_only_view_groups_partitions_by_pci_address(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "kfd-only-container"))
    assert len(facts.devices) == 8
    assert facts.devices[0].bdf == "0000:05:00.0"
    for device in facts.devices:
        assert (device.model, device.partitions) == ("MI300X", 8)
        assert device.compute_partition is None  # no PCI files to say which mode


def test_kfd_gpus_without_amd_pci_device_are_used(tmp_path: Path) -> None:
    root = build_host(tmp_path, "kfd-only-container", SMALL_CPU)
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    other = root / "sys/devices/pci0000:00/0000:00:00.0"
    (root / "sys/bus/pci/devices/0000:00:00.0").symlink_to(
        os.path.relpath(other, root / "sys/bus/pci/devices")
    )
    facts = probe(root)
    assert len(facts.devices) == 8
    assert any("PCI shows no AMD GPU" in w for w in facts.warnings)


def test_garbled_and_truncated_gpu_files_fail_the_probe_naming_them(
    hosts_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two of eight GPUs unreadable: reporting six would change the labels from bad input, so
    the probe fails (the agent keeps its last good GPU labels), and says which files."""
    root = shared_host(hosts_dir, "mi300x-8-garbled")
    with pytest.raises(ProbeError, match="2 of 8 AMD GPU device") as failure:
        probe(root)
    text = str(failure.value)
    assert "0000:25:00.0/device: garbled" in text
    assert "current_compute_partition: truncated" in text
    assert "0000:25:00.0/device: garbled" in caplog.text  # logged as found


def test_every_candidate_unreadable_is_an_error_not_zero_gpus(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi210-4", SMALL_CPU)
    for link in (root / "sys/bus/pci/devices").iterdir():
        if (link / "device").read_text() == "0x740f\n":
            garble(link / "device")
    with pytest.raises(ProbeError, match="unreadable"):
        probe(root)


def test_garbled_file_of_a_non_gpu_device_changes_nothing(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-zen4-2s", SMALL_CPU)
    garble(root / "sys/bus/pci/devices/0000:0a:00.0/vendor")  # a NIC
    assert probe(root) == GpuFacts(source="sysfs")


def test_unknown_partition_mode_fails_the_probe(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi300x-8-spx-nps1", SMALL_CPU)
    (root / "sys/bus/pci/devices/0000:05:00.0/current_compute_partition").write_text("XPX\n")
    with pytest.raises(ProbeError, match="expected one of CPX, DPX, QPX, SPX, TPX, got 'XPX'"):
        probe(root)


def test_unreadable_class_of_a_non_amd_device_changes_nothing(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-zen4-2s", SMALL_CPU)
    garble(root / "sys/bus/pci/devices/0000:0a:00.0/class")  # a NIC: its vendor still rules it out
    assert probe(root) == GpuFacts(source="sysfs")


def test_unreadable_class_of_an_amd_gpu_fails_the_probe(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi210-4", SMALL_CPU)
    gpu = next(
        link
        for link in sorted((root / "sys/bus/pci/devices").iterdir())
        if (link / "device").read_text() == "0x740f\n"
    )
    garble(gpu / "class")
    with pytest.raises(ProbeError, match=f"{gpu.name}/class: garbled"):
        probe(root)


def test_bad_informational_file_keeps_the_device(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi300x-8-spx-nps1", SMALL_CPU)
    garble(root / "sys/bus/pci/devices/0000:05:00.0/numa_node")
    facts = probe(root)
    assert len(facts.devices) == 8
    assert facts.devices[0].numa_node is None
    assert any("numa_node" in w for w in facts.warnings)


def test_unknown_backend_is_rejected(hosts_dir: Path) -> None:
    roots = HostRoots.from_host_root(shared_host(hosts_dir, "epyc-vm-masked"))
    with pytest.raises(ValueError, match="unknown GPU backend"):
        probe_gpus(roots, "nvml")  # type: ignore[arg-type]


def test_real_host_sysfs_does_not_crash() -> None:
    """This machine's own /sys: whatever it has, the probe answers with facts or ProbeError."""
    try:
        facts = probe_gpus(HostRoots(), "sysfs")
    except ProbeError:
        return
    assert facts.source == "sysfs"
    for device in facts.devices:
        assert device.partitions >= 1
