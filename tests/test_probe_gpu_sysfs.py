"""The sysfs GPU probe against fixture trees laid out as on real machines (tests/hosttrees.py).

The tests named after issue 10's defects failed with the probe as it was before the fix.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from detector.facts import GpuFacts, ProbeError, UnboundGpu
from detector.labeling import gpu_labels
from detector.labels import LABEL_PREFIX
from detector.probes.gpu import probe_gpus
from detector.probes.kfd import read_kfd_topology
from detector.probes.roots import HostRoots
from tests.hosttrees import (
    HOST_SPECS,
    MI300X,
    SMALL_CPU,
    GpuGroup,
    build_host,
    build_spec,
    deny_listing,
    garble,
    list_is_denied,
    read_is_denied,
    shared_host,
    shared_hosts_dir,
    truncate,
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
    assert {(d.model, d.compute_partition, d.memory_partition, d.partitions, d.partitions_from)
            for d in facts.devices} == {("MI300X", "CPX", "NPS4", 8, "kfd")}  # fmt: skip
    assert {d.compute_units for d in facts.devices} == {304}


def test_xcp_platform_devices_exist_in_every_mode(hosts_dir: Path) -> None:
    """The realistic layout: 7 amdgpu_xcp devices per GPU, each with a render node, in SPX too;
    KFD's render minors say which ones carry a partition."""
    spx = shared_host(hosts_dir, "mi300x-8-spx-nps1")
    assert len(list((spx / "sys/devices/platform").glob("amdgpu_xcp_*/drm/renderD*"))) == 56
    assert [d.partitions for d in probe(spx).devices] == [1] * 8
    driver = spx / "sys/bus/pci/devices/0000:05:00.0/driver"
    assert os.readlink(driver) == "../../../../bus/pci/drivers/amdgpu"
    assert (spx / "sys/module/amdgpu/drivers/pci:amdgpu/0000:05:00.0").resolve() == (
        driver.parent.resolve()
    )


def test_partition_id_in_location_id_bits_31_28(hosts_dir: Path) -> None:
    """Newer drivers put the partition id in location_id[31:28]: MI308X (4 XCDs) in CPX."""
    root = shared_host(hosts_dir, "mi308x-8-cpx-nps1")
    locations = {
        int(line.split()[1])
        for node in (root / KFD_NODES).iterdir()
        for line in (node / "properties").read_text().splitlines()
        if line.startswith("location_id")
    }
    assert 0x3 << 28 | 0x0500 in locations
    facts = probe(root)
    assert [(d.model, d.partitions) for d in facts.devices] == [("MI308X", 4)] * 8


def test_defect7_kfd_count_that_does_not_fit_the_mode_is_a_switch_in_progress(
    tmp_path: Path,
) -> None:
    """A GPU in CPX with 7 KFD nodes next to GPUs with 8: KFD caught mid-rebuild, not a count."""
    root = build_host(tmp_path, "mi300x-8-cpx-nps4", SMALL_CPU)
    shutil.rmtree(root / KFD_NODES / "1")  # node 0 is the CPU, 1-8 the first GPU's partitions
    with pytest.raises(ProbeError, match="partition switch in progress"):
        probe(root)


def test_defect7_denied_kfd_with_59_of_64_nodes_keeps_the_last_labels(tmp_path: Path) -> None:
    """The default DaemonSet counts refused KFD nodes; 59 do not share out over 8 GPUs."""
    root = build_host(tmp_path, "mi300x-8-kfd-eperm", SMALL_CPU)
    for node in ("60", "61", "62", "63", "64"):
        shutil.rmtree(root / KFD_NODES / node)
    with pytest.raises(ProbeError, match=r"59 GPU node\(s\).*cannot share evenly"):
        probe(root)


def test_defect7_fixed_mode_with_another_number_of_kfd_nodes(tmp_path: Path) -> None:
    """Leftover CPX nodes after a switch back to SPX: more nodes than SPX makes."""
    root = build_host(tmp_path, "mi300x-8-cpx-nps4", SMALL_CPU)
    for link in (root / "sys/bus/pci/devices").iterdir():
        mode = link / "current_compute_partition"
        if mode.exists():
            mode.write_text("SPX\n")
    with pytest.raises(ProbeError, match=r"in SPX .* but the KFD topology shows 8"):
        probe(root)


def test_defect7_a_node_that_vanishes_while_read_is_a_switch_in_progress(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi300x-8-cpx-nps4", SMALL_CPU)
    (root / KFD_NODES / "9" / "properties").unlink()  # listed, gone when read (torn down)
    with pytest.raises(ProbeError, match="vanished while read"):
        probe(root)


def _reader_gone(fifo: Path) -> bool:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # ENXIO: nobody has the FIFO open for reading
        return True
    return False


@pytest.mark.timeout(30)
def test_defect7_kfd_generation_changing_while_read(tmp_path: Path) -> None:
    """``generation_id`` goes up on every topology change; it is read before and after."""
    root = build_host(tmp_path, "mi300x-8-cpx-nps4", SMALL_CPU)
    generation = root / "sys/class/kfd/kfd/topology/generation_id"
    generation.unlink()
    os.mkfifo(generation)

    def kernel() -> None:  # answers the two reads with the generation before and after a change
        for value in (b"7\n", b"8\n"):
            with open(generation, "wb") as fifo:  # blocks until the probe opens the file
                fifo.write(value)
            while not _reader_gone(generation):  # one answer per read
                threading.Event().wait(0.001)

    writer = threading.Thread(target=kernel, daemon=True)
    writer.start()
    warnings: list[str] = []
    topology = read_kfd_topology(root / "sys", warnings)
    writer.join(5)
    assert topology is not None
    assert topology.generation_changed
    assert topology.problems() == ["the KFD topology generation changed while it was read"]


def test_defect3_one_xcc_vf_in_cpx_has_one_partition_not_the_models_eight(
    hosts_dir: Path,
) -> None:
    """An SR-IOV VF given one XCC reports CPX; with KFD refused (the default DaemonSet) the
    partitions are counted from the KFD nodes there are, not XCD_COUNT['MI300X']."""
    root = shared_host(hosts_dir, "mi300x-vf-1xcc-cpx-vm")
    if not read_is_denied(root / KFD_NODES / "1" / "properties"):
        pytest.skip("this environment cannot make the kernel refuse the read")
    facts = probe(root)
    assert [(d.model, d.compute_partition, d.partitions, d.partitions_from)
            for d in facts.devices] == [("MI300X", "CPX", 1, "kfd-node-count")]  # fmt: skip
    assert gpu_labels(facts)[LABEL_PREFIX + "partitioning-scheme.CPX-NPS1"] == "1"


def test_without_kfd_cpx_counts_come_from_the_table_and_say_so(tmp_path: Path) -> None:
    """The last resort, logged: no KFD topology at all (KFD not loaded or not mounted)."""
    root = build_host(tmp_path, "mi300x-8-cpx-nps4", SMALL_CPU)
    shutil.rmtree(root / "sys/class/kfd")
    facts = probe(root)
    assert [(d.partitions, d.partitions_from) for d in facts.devices] == [(8, "table")] * 8
    assert any("taken from the model table" in w for w in facts.warnings)


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


def test_kfd_eperm_with_pci_counts_the_refused_nodes(hosts_dir: Path) -> None:
    root = shared_host(hosts_dir, "mi300x-8-kfd-eperm")
    if not read_is_denied(root / KFD_NODES / "2" / "properties"):
        pytest.skip("this environment cannot make the kernel refuse the read")
    facts = probe(root)
    assert [(d.partitions, d.partitions_from) for d in facts.devices] == [(8, "kfd-node-count")] * 8
    assert facts.warnings == ()


def test_kfd_only_view_groups_partitions_by_pci_address(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "kfd-only-container"))
    assert len(facts.devices) == 8
    assert facts.devices[0].bdf == "0000:05:00.0"
    for device in facts.devices:
        assert (device.model, device.partitions) == ("MI300X", 8)
        assert device.compute_partition == "UNKNOWN"  # no PCI files to say which mode


def test_kfd_gpus_without_an_amdgpu_pci_device_are_a_view_that_disagrees(tmp_path: Path) -> None:
    root = build_host(tmp_path, "kfd-only-container", SMALL_CPU)
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    other = root / "sys/devices/pci0000:00/0000:00:00.0"
    (root / "sys/bus/pci/devices/0000:00:00.0").symlink_to(
        os.path.relpath(other, root / "sys/bus/pci/devices")
    )
    with pytest.raises(ProbeError, match="the two views disagree"):
        probe(root)


def test_defect10_one_garbled_kfd_gpu_in_a_kfd_only_view_fails_the_probe(tmp_path: Path) -> None:
    """Without PCI, MI300X=8 must not become 7 because one GPU's properties are garbled."""
    spec = replace(
        HOST_SPECS["kfd-only-container"],
        cpu=SMALL_CPU,
        gpus=(GpuGroup(MI300X, 8, "SPX", "NPS1"),),
    )
    root = build_spec(tmp_path / "kfd-only-spx", spec)
    garble(root / KFD_NODES / "4" / "properties")  # node 0 is the CPU: the fourth GPU
    with pytest.raises(ProbeError, match=r"KFD node.* 4 unreadable"):
        probe(root)


def test_defect10_all_partitions_of_one_gpu_truncated(tmp_path: Path) -> None:
    root = build_host(tmp_path, "kfd-only-container", SMALL_CPU)
    for node in range(1, 9):  # node 0 is the CPU, 1-8 the first GPU's partitions
        truncate(root / KFD_NODES / str(node) / "properties")
    with pytest.raises(ProbeError, match="unreadable"):
        probe(root)


def test_defect9_empty_pci_directory_is_a_failed_probe_not_zero_gpus(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi300x-8-spx-nps1", SMALL_CPU)
    shutil.rmtree(root / "sys/class/kfd")
    for link in (root / "sys/bus/pci/devices").iterdir():
        link.unlink()
    with pytest.raises(ProbeError, match="empty"):
        probe(root)


def test_defect9_unlistable_pci_directory_is_a_failed_probe(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi300x-8-spx-nps1", SMALL_CPU)
    shutil.rmtree(root / "sys/class/kfd")
    devices = root / "sys/bus/pci/devices"
    deny_listing(devices)
    if not list_is_denied(devices):
        pytest.skip("this environment cannot make the kernel refuse the listing")
    with pytest.raises(ProbeError, match="PCI view is unreadable"):
        probe(root)


def test_a_kernel_without_pci_has_no_pci_gpus(tmp_path: Path) -> None:
    """``/sys/bus`` readable and no ``pci`` bus registered: a real, empty answer."""
    root = build_host(tmp_path, "arm64-altra")
    shutil.rmtree(root / "sys/bus/pci")
    assert probe(root) == GpuFacts(source="sysfs")


def test_no_pci_view_and_no_kfd_cannot_see(tmp_path: Path) -> None:
    root = build_host(tmp_path, "epyc-vm-masked")
    shutil.rmtree(root / "sys/bus")
    with pytest.raises(ProbeError, match="cannot see GPUs"):
        probe(root)


@pytest.mark.parametrize(
    ("name", "drivers"),
    [("mi300x-8-vfio", ["vfio-pci"] * 8), ("mi300x-8-no-driver", [None] * 8)],
)
def test_defect4_gpus_amdgpu_does_not_drive_are_not_counted(
    hosts_dir: Path, name: str, drivers: list[str | None]
) -> None:
    """KubeVirt passthrough (vfio-pci), or amdgpu not loaded yet: no pod can use them."""
    facts = probe(shared_host(hosts_dir, name))
    assert facts.devices == ()
    assert [(g.device_id, g.driver) for g in facts.unbound] == [(0x74A1, d) for d in drivers]
    assert gpu_labels(facts) == {}


def test_defect4_only_the_amdgpu_half_of_a_node_counts(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "mi300x-4-amdgpu-4-vfio"))
    assert len(facts.devices) == 4
    assert facts.unbound == tuple(
        UnboundGpu(f"0000:{bus:02x}:00.0", 0x74A1, "vfio-pci") for bus in (0x85, 0xA5, 0xC5, 0xE5)
    )
    assert gpu_labels(facts)[LABEL_PREFIX + "MI300X"] == "4"


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


@pytest.mark.parametrize(
    ("compute", "memory", "expected"),
    [
        ("UNKNOWN", "NPS1", {"default": "7", "SPX-NPS1": "7"}),  # the kernel's own UNKNOWN
        ("SPX", "UNKNOWN", {"default": "7", "SPX-NPS1": "7"}),
        ("XPX", "NPS1", {"default": "7", "SPX-NPS1": "7"}),  # a mode a newer kernel may add
        ("SPX", "NPS3", {"default": "7", "SPX-NPS1": "7", "SPX-NPS3": "1"}),
        ("SPX", "NPS6", {"default": "7", "SPX-NPS1": "7", "SPX-NPS6": "1"}),
    ],
)
def test_defect5_kernel_legal_modes_keep_the_model_label(
    tmp_path: Path, compute: str, memory: str, expected: dict[str, str]
) -> None:
    """UNKNOWN, NPS3 and NPS6 are in the kernel's tables: never a failed probe; an unknown
    mode drops only that GPU's partition label."""
    root = build_host(tmp_path, "mi300x-8-spx-nps1", SMALL_CPU)
    gpu = root / "sys/bus/pci/devices/0000:05:00.0"
    (gpu / "current_compute_partition").write_text(f"{compute}\n")
    (gpu / "current_memory_partition").write_text(f"{memory}\n")
    labels = gpu_labels(probe(root))
    scheme = LABEL_PREFIX + "partitioning-scheme."
    assert labels == {
        LABEL_PREFIX + "MI300X": "8",
        **{scheme + name: count for name, count in expected.items()},
    }


def test_a_partition_file_that_is_not_a_mode_is_garbled(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi300x-8-spx-nps1", SMALL_CPU)
    (root / "sys/bus/pci/devices/0000:05:00.0/current_compute_partition").write_text("spx x\n")
    with pytest.raises(ProbeError, match="expected a partition mode"):
        probe(root)


def test_defect6_mi250x_modules_are_two_devices_each(hosts_dir: Path) -> None:
    """0x740C is "MI250X / MI250"; the FRU name (and 110 CUs per GCD) say MI250X."""
    facts = probe(shared_host(hosts_dir, "mi250x-4-modules"))
    assert [(d.device_id, d.model, d.compute_units) for d in facts.devices] == [
        (0x740C, "MI250X", 110)
    ] * 8


def test_defect6_0x740c_without_evidence_never_claims_mi250x(tmp_path: Path) -> None:
    root = build_host(tmp_path, "mi250x-4-modules", SMALL_CPU)
    shutil.rmtree(root / "sys/class/kfd")
    for link in (root / "sys/bus/pci/devices").iterdir():
        (link / "product_name").unlink(missing_ok=True)
    assert {d.model for d in probe(root).devices} == {"MI250"}


def test_defect6_mi50(hosts_dir: Path) -> None:
    facts = probe(shared_host(hosts_dir, "mi50-2"))
    assert [(d.device_id, d.revision, d.model) for d in facts.devices] == [(0x66A1, 2, "MI50")] * 2


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
