"""The amdsmi GPU probe with a stand-in ``amdsmi`` package (tests/fakes) on sys.path.

The probe code is unmodified: it imports whatever ``amdsmi`` the path provides, exactly as it
would import AMD's package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detector.facts import BackendUnavailable, ProbeError
from detector.labeling import gpu_labels
from detector.probes import amdsmi_gpu
from detector.probes.gpu import probe_gpus
from detector.probes.roots import HostRoots
from tests.hosttrees import amdsmi_gpus, shared_host, shared_hosts_dir

FAKES = Path(__file__).parent / "fakes"
REPO = Path(__file__).parent.parent


def _forget_amdsmi() -> None:
    for name in [n for n in sys.modules if n == "amdsmi" or n.startswith("amdsmi.")]:
        del sys.modules[name]
    amdsmi_gpu.forget_import_failure()


@pytest.fixture
def isolated_amdsmi(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _forget_amdsmi()
    yield
    _forget_amdsmi()


@pytest.fixture
def fake_amdsmi(monkeypatch: pytest.MonkeyPatch, isolated_amdsmi: None) -> Any:
    monkeypatch.syspath_prepend(str(FAKES))
    import amdsmi  # noqa: PLC0415 - the stand-in, importable only now

    return amdsmi


@pytest.fixture(scope="module")
def hosts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_hosts_dir(tmp_path_factory.getbasetemp())


def configure(fake: Any, **kwargs: Any) -> None:
    fake.fake_config.configure(**kwargs)


def test_cpx_shows_one_handle_per_partition_and_one_device_per_gpu(fake_amdsmi: Any) -> None:
    configure(fake_amdsmi, gpus=amdsmi_gpus("mi300x-8-cpx-nps4"))
    fake_amdsmi.amdsmi_init()
    assert len(fake_amdsmi.amdsmi_get_processor_handles()) == 64
    fake_amdsmi.amdsmi_shut_down()
    facts = probe_gpus(HostRoots(), "amdsmi")
    assert facts.source == "amdsmi"
    assert len(facts.devices) == 8
    assert facts.devices[0].bdf == "0000:05:00.0"
    for device in facts.devices:
        assert (device.model, device.device_id) == ("MI300X", 0x74A1)
        assert (device.compute_partition, device.memory_partition) == ("CPX", "NPS4")
        assert device.partitions == 8
        assert device.vram_mib == 192 * 1024
    calls = fake_amdsmi.fake_config.STATE.calls
    assert calls[0] == "amdsmi_init"
    assert calls[-1] == "amdsmi_shut_down"


@pytest.mark.parametrize(
    "name",
    ["mi300x-8-spx-nps1", "mi300x-8-cpx-nps4", "mi325x-8", "mi355x-8-dpx-nps2", "mi210-4",
     "mixed-mi300x-mi210", "mi300x-vf-vm", "ryzen-desktop"],
)  # fmt: skip
def test_same_labels_as_the_sysfs_probe(fake_amdsmi: Any, hosts_dir: Path, name: str) -> None:
    configure(fake_amdsmi, gpus=amdsmi_gpus(name))
    via_amdsmi = probe_gpus(HostRoots(), "amdsmi")
    via_sysfs = probe_gpus(HostRoots.from_host_root(shared_host(hosts_dir, name)), "sysfs")
    assert gpu_labels(via_amdsmi) == gpu_labels(via_sysfs)
    assert [d.bdf for d in via_amdsmi.devices] == [d.bdf for d in via_sysfs.devices]


def test_unpartitionable_gpu_reports_no_partition(fake_amdsmi: Any) -> None:
    configure(fake_amdsmi, gpus=amdsmi_gpus("mi210-4"))
    facts = probe_gpus(HostRoots(), "amdsmi")
    assert {(d.model, d.compute_partition, d.memory_partition) for d in facts.devices} == {
        ("MI210", None, None)
    }


def test_unknown_device_id_has_no_model(fake_amdsmi: Any) -> None:
    gpu = {"bdf": "0000:03:00.0", "device_id": 0x7999, "market_name": "AMD Radeon Future"}
    configure(fake_amdsmi, gpus=[gpu])
    facts = probe_gpus(HostRoots(), "amdsmi")
    assert [(d.device_id, d.model) for d in facts.devices] == [(0x7999, None)]
    assert "0x7999" in facts.warnings[0]


def test_init_failure_is_backend_unavailable(fake_amdsmi: Any, hosts_dir: Path) -> None:
    configure(fake_amdsmi, gpus=amdsmi_gpus("mi325x-8"), init_error=34)  # driver not loaded
    with pytest.raises(BackendUnavailable, match="amdsmi_init failed"):
        probe_gpus(HostRoots(), "amdsmi")
    roots = HostRoots.from_host_root(shared_host(hosts_dir, "mi300x-8-spx-nps1"))
    facts = probe_gpus(roots, "auto")
    assert facts.source == "sysfs"
    assert len(facts.devices) == 8


def test_handle_listing_failure_still_shuts_down(fake_amdsmi: Any) -> None:
    configure(fake_amdsmi, gpus=amdsmi_gpus("mi325x-8"), handles_error=10)
    with pytest.raises(BackendUnavailable, match="amdsmi_get_processor_handles"):
        probe_gpus(HostRoots(), "amdsmi")
    assert fake_amdsmi.fake_config.STATE.calls[-1] == "amdsmi_shut_down"
    assert not fake_amdsmi.fake_config.STATE.initialized


def test_auto_uses_amdsmi_when_it_sees_gpus(fake_amdsmi: Any, hosts_dir: Path) -> None:
    configure(fake_amdsmi, gpus=amdsmi_gpus("mi325x-8"))
    roots = HostRoots.from_host_root(shared_host(hosts_dir, "epyc-zen4-2s"))
    facts = probe_gpus(roots, "auto")
    assert facts.source == "amdsmi"
    assert [d.model for d in facts.devices] == ["MI325X"] * 8


def test_auto_asks_sysfs_when_amdsmi_sees_nothing(fake_amdsmi: Any, hosts_dir: Path) -> None:
    configure(fake_amdsmi, gpus=[])
    assert probe_gpus(HostRoots(), "amdsmi").devices == ()
    roots = HostRoots.from_host_root(shared_host(hosts_dir, "mi210-4"))
    facts = probe_gpus(roots, "auto")
    assert (facts.source, len(facts.devices)) == ("sysfs", 4)


def test_all_handles_unreadable_is_an_error(fake_amdsmi: Any) -> None:
    configure(fake_amdsmi, gpus=[{"bdf": "0000:05:00.0", "device_id": 0}])
    with pytest.raises(ProbeError, match="none could be read"):
        probe_gpus(HostRoots(), "amdsmi")


def test_one_unreadable_gpu_fails_the_probe_instead_of_undercounting(fake_amdsmi: Any) -> None:
    gpus = amdsmi_gpus("mi300x-8-spx-nps1")
    gpus[3] = {**gpus[3], "device_id": 0}  # asic info without a device id, as "N/A"
    configure(fake_amdsmi, gpus=gpus)
    with pytest.raises(ProbeError, match="amdsmi listed GPUs but 1 could not be read"):
        probe_gpus(HostRoots(), "amdsmi")


def test_missing_libamd_smi_is_backend_unavailable_and_not_retried(
    monkeypatch: pytest.MonkeyPatch,
    isolated_amdsmi: None,
    hosts_dir: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(str(FAKES / "amdsmi_missing_lib"))
    with pytest.raises(BackendUnavailable, match=r"KeyError: 'libamd_smi.so'") as failure:
        probe_gpus(HostRoots(), "amdsmi")
    # What the wrapper prints goes into the reason, not onto stdout (the dry run's output).
    assert "Unable to find libamd_smi.so" in str(failure.value)
    assert capfd.readouterr().out == ""
    roots = HostRoots.from_host_root(shared_host(hosts_dir, "mi210-4"))
    assert probe_gpus(roots, "auto").source == "sysfs"
    assert capfd.readouterr().out == ""  # the failed import is remembered, not repeated


def test_amdsmi_not_installed(isolated_amdsmi: None, hosts_dir: Path) -> None:
    try:
        import amdsmi  # noqa: F401, PLC0415
    except ImportError:
        pass
    else:
        pytest.skip("a real amdsmi is installed here")
    with pytest.raises(BackendUnavailable, match="ModuleNotFoundError"):
        probe_gpus(HostRoots(), "amdsmi")
    roots = HostRoots.from_host_root(shared_host(hosts_dir, "mi325x-8"))
    assert probe_gpus(roots, "auto").source == "sysfs"


def test_configuration_through_the_environment_in_a_subprocess(tmp_path: Path) -> None:
    """How end-to-end tests drive the stand-in in a real agent process."""
    config = tmp_path / "amdsmi.json"
    config.write_text(json.dumps({"gpus": amdsmi_gpus("mi300x-8-cpx-nps4")}))
    code = (
        "from detector.probes.gpu import probe_gpus\n"
        "from detector.probes.roots import HostRoots\n"
        "from detector.labeling import gpu_labels\n"
        "print(sorted(gpu_labels(probe_gpus(HostRoots(), 'amdsmi')).items()))\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{FAKES}{os.pathsep}{REPO}", AMDSMI_FAKE_CONFIG=str(config))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "('feature.node.kubernetes.io/aim-accelerator.MI300X', '8')" in out
    assert "partitioning-scheme.CPX-NPS4', '64')" in out
