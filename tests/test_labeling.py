"""Facts -> labels: the pure rules, and the whole chain over every fixture host."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.facts import CpuFacts, GpuDevice, GpuFacts, ProbeError
from detector.labeling import cpu_labels, gpu_labels, partition_scheme, partition_schemes
from detector.labels import LABEL_PREFIX, is_cpu_key, is_gpu_key, validate_labels
from detector.probes.cpu import probe_cpu
from detector.probes.gpu import probe_gpus
from detector.probes.roots import HostRoots
from tests.hosttrees import (
    GPU_PROBE_FAILS,
    HOSTS,
    expected_labels,
    read_is_denied,
    shared_host,
    shared_hosts_dir,
)

P = LABEL_PREFIX


def gpu(model: str | None = "MI300X", cp: str | None = None, mp: str | None = None,
        partitions: int = 1, bdf: str = "0000:05:00.0") -> GpuDevice:  # fmt: skip
    return GpuDevice(bdf=bdf, device_id=0x74A1, model=model, compute_partition=cp,
                     memory_partition=mp, partitions=partitions)  # fmt: skip


def cpu(vendor: str = "AuthenticAMD", generation: str | None = "ZEN5", cores: int = 128,
        is_epyc: bool = True) -> CpuFacts:  # fmt: skip
    return CpuFacts(vendor=vendor, family=26, model=2, brand="AMD EPYC 9575F 64-Core Processor",
                    generation=generation, sockets=2, physical_cores=cores,
                    logical_cpus=cores * 2, is_epyc=is_epyc)  # fmt: skip


@pytest.mark.parametrize(
    ("cp", "mp", "partitions", "scheme"),
    [
        (None, None, 1, "default"),  # cannot be partitioned (MI210)
        ("SPX", "NPS1", 1, "default"),  # the factory default: "default" (and SPX-NPS1, below)
        ("SPX", None, 1, "default"),
        ("SPX", "NPS2", 1, "SPX-NPS2"),
        ("DPX", "NPS2", 2, "DPX-NPS2"),
        ("CPX", "NPS4", 8, "CPX-NPS4"),
        ("CPX", None, 8, "CPX"),  # old kernel without current_memory_partition
        (None, None, 8, None),  # seen through KFD only: mode unknown
        ("UNKNOWN", "NPS1", 1, None),  # the kernel's UNKNOWN: no partition label
        ("SPX", "UNKNOWN", 1, None),
        ("CPX", "NPS3", 8, "CPX-NPS3"),  # NPS3 and NPS6 are in the kernel's table
        ("SPX", "NPS6", 1, "SPX-NPS6"),
    ],
)
def test_partition_scheme(
    cp: str | None, mp: str | None, partitions: int, scheme: str | None
) -> None:
    assert partition_scheme(gpu(cp=cp, mp=mp, partitions=partitions)) == scheme


def test_spx_nps1_counts_under_default_and_spx_nps1_like_aim_engine() -> None:
    """Issue 11: a partitionable GPU in SPX+NPS1 is labelled under both keys, so profiles
    written for either match; a GPU that cannot be partitioned only under ``default``."""
    assert partition_schemes(gpu(cp="SPX", mp="NPS1")) == ("default", "SPX-NPS1")
    assert partition_schemes(gpu()) == ("default",)
    assert partition_schemes(gpu(cp="SPX")) == ("default",)  # memory mode not reported
    facts = GpuFacts("sysfs", tuple(gpu(cp="SPX", mp="NPS1") for _ in range(8)))
    assert gpu_labels(facts) == {
        P + "MI300X": "8",
        P + "partitioning-scheme.default": "8",
        P + "partitioning-scheme.SPX-NPS1": "8",
    }


def test_unknown_mode_drops_only_that_gpus_partition_label() -> None:
    """Issue 10, defect 5: the kernel's UNKNOWN never costs the model label."""
    devices = (gpu(cp="UNKNOWN", mp="NPS1"), *(gpu(cp="SPX", mp="NPS1") for _ in range(7)))
    assert gpu_labels(GpuFacts("sysfs", devices)) == {
        P + "MI300X": "8",
        P + "partitioning-scheme.default": "7",
        P + "partitioning-scheme.SPX-NPS1": "7",
    }


def test_partitions_nothing_could_count_get_no_partition_label() -> None:
    device = GpuDevice(bdf="0000:05:00.0", device_id=0x74A1, model="MI300X",
                       compute_partition="CPX", memory_partition="NPS4",
                       partitions_from="unknown")  # fmt: skip
    assert gpu_labels(GpuFacts("sysfs", (device,))) == {P + "MI300X": "1"}


def test_eight_mi300x_cpx_nps4() -> None:
    facts = GpuFacts("sysfs", tuple(gpu(cp="CPX", mp="NPS4", partitions=8) for _ in range(8)))
    assert gpu_labels(facts) == {
        P + "MI300X": "8",
        P + "partitioning-scheme.CPX-NPS4": "64",
    }


def test_two_models_and_mixed_modes() -> None:
    devices = (
        *(gpu(cp="CPX", mp="NPS4", partitions=8) for _ in range(4)),
        *(gpu(cp="SPX", mp="NPS1") for _ in range(4)),
        *(gpu(model="MI210") for _ in range(2)),
    )
    assert gpu_labels(GpuFacts("sysfs", devices)) == {
        P + "MI300X": "8",
        P + "MI210": "2",
        P + "partitioning-scheme.CPX-NPS4": "32",
        P + "partitioning-scheme.default": "6",
        P + "partitioning-scheme.SPX-NPS1": "4",
    }


def test_unknown_model_gets_no_label_at_all() -> None:
    facts = GpuFacts("sysfs", (gpu(model=None), gpu(model="RX7900")))
    assert gpu_labels(facts) == {P + "RX7900": "1", P + "partitioning-scheme.default": "1"}


def test_no_gpu_no_labels() -> None:
    assert gpu_labels(GpuFacts("sysfs")) == {}


def test_gpu_keys_belong_to_the_gpu_source() -> None:
    labels = gpu_labels(GpuFacts("sysfs", (gpu(cp="CPX", mp="NPS4", partitions=8),)))
    assert all(is_gpu_key(key) and not is_cpu_key(key) for key in labels)


def test_epyc_label_counts_physical_cores() -> None:
    labels = cpu_labels(cpu())
    assert labels == {P + "EPYC_ZEN5": "128"}
    assert all(is_cpu_key(key) for key in labels)


@pytest.mark.parametrize(
    "facts",
    [
        cpu(vendor="GenuineIntel", generation=None, is_epyc=False),
        cpu(generation="ZEN4", is_epyc=False),  # Ryzen / Threadripper
        cpu(generation=None),  # EPYC of a generation the table does not know yet
        cpu(cores=0),
    ],
)
def test_no_cpu_label(facts: CpuFacts) -> None:
    assert cpu_labels(facts) == {}


@pytest.fixture(scope="module")
def hosts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_hosts_dir(tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("name", HOSTS)
def test_every_fixture_host_end_to_end(hosts_dir: Path, name: str) -> None:
    """Fixture tree -> sysfs and CPU probes -> labels, as the agent computes them."""
    roots = HostRoots.from_host_root(shared_host(hosts_dir, name))
    labels = cpu_labels(probe_cpu(roots))
    if name in GPU_PROBE_FAILS:
        denied = roots.sysfs / "class/kfd/kfd/topology/nodes/2/properties"
        if name == "kfd-eperm-container" and not read_is_denied(denied):
            pytest.skip("this environment cannot make the kernel refuse the read")
        with pytest.raises(ProbeError):
            probe_gpus(roots, "sysfs")
    else:
        labels |= gpu_labels(probe_gpus(roots, "sysfs"))
    validate_labels(labels)
    assert labels == expected_labels(name)
