"""The GPU probe through AMD's real ``amdsmi`` wrapper (7.0.2 from PyPI, as locked) and a C
stand-in for ``libamd_smi.so`` built here with gcc (tests/amdsmi_stub).

Nothing of amdsmi is faked in Python: the wrapper finds the library through ``ROCM_PATH``, binds
its symbols, marshals its structs with ctypes and raises its own exceptions for the status codes
the library returns. The library serves the host described in ``AMDSMI_STUB_HOST``, written by
``tests.hosttrees.amdsmi_host`` from the same host spec as the sysfs tree the cross-check reads.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from detector.facts import BackendUnavailable, ProbeError
from detector.labeling import gpu_labels
from detector.labels import LABEL_PREFIX
from detector.probes import amdsmi_gpu, once
from detector.probes.gpu import probe_gpus
from detector.probes.roots import HostRoots
from tests.amdsmi_stub import HOST_ENV, api_symbols, build_rocm
from tests.hosttrees import (
    SMALL_CPU,
    amdsmi_host,
    build_host,
    expected_labels,
    shared_host,
    shared_hosts_dir,
)

REPO = Path(__file__).parent.parent
#: What amdsmi 7.0.2 needs that ROCm 6.4's library lacks (RLinf/RLinf#1507's traceback).
NEWER_SYMBOL = "amdsmi_get_cpu_affinity_with_scope"


def gpu_only(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if "EPYC" not in k}


def _forget_amdsmi() -> None:
    for name in [n for n in sys.modules if n == "amdsmi" or n.startswith("amdsmi.")]:
        del sys.modules[name]
    amdsmi_gpu.reset()
    once.forget()


@pytest.fixture(scope="session")
def rocm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ROCm prefix with the stand-in library (7.0.2, as the wrapper)."""
    return build_rocm(tmp_path_factory.mktemp("rocm-7.0.2"))


@pytest.fixture(scope="module")
def hosts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_hosts_dir(tmp_path_factory.getbasetemp())


Describe = Callable[[str], None]


@pytest.fixture
def smi(monkeypatch: pytest.MonkeyPatch, rocm: Path, tmp_path: Path) -> Iterator[Describe]:
    """Points the real wrapper at the stand-in; call it with a host description."""
    _forget_amdsmi()
    host = tmp_path / "amdsmi-host.txt"
    host.write_text("")
    monkeypatch.setenv("ROCM_PATH", str(rocm))
    monkeypatch.delenv("ROCM_HOME", raising=False)
    monkeypatch.setenv(HOST_ENV, str(host))
    yield host.write_text  # type: ignore[misc]
    _forget_amdsmi()


def roots_of(hosts_dir: Path, name: str) -> HostRoots:
    return HostRoots.from_host_root(shared_host(hosts_dir, name))


# --- the stand-in is the library the wrapper expects ------------------------------------------


def _wrapper_dir() -> Path:
    spec = importlib.util.find_spec("amdsmi")
    assert spec is not None, "make test installs amdsmi (dev group)"
    assert spec.origin is not None
    return Path(spec.origin).parent


def test_the_stand_in_exports_every_symbol_the_installed_wrapper_binds() -> None:
    source = (_wrapper_dir() / "amdsmi_wrapper.py").read_text()
    bound = re.findall(r"_libraries\['libamd_smi.so'\]\.(\w+)", source)
    assert bound == api_symbols(), "tests/amdsmi_stub/api.txt is not the wrapper's list any more"


def test_struct_layouts_match_the_wrappers_ctypes(smi: Describe, rocm: Path) -> None:
    """The C structs (amdsmi.h's) and the wrapper's ctypes classes must have one layout."""
    lib = ctypes.CDLL(str(rocm / "lib/libamd_smi.so"))
    lib.amdsmi_stub_layout.restype = ctypes.c_long
    lib.amdsmi_stub_layout.argtypes = [ctypes.c_char_p]
    from amdsmi import amdsmi_wrapper as w  # noqa: PLC0415

    def c(what: str) -> int:
        return int(lib.amdsmi_stub_layout(what.encode()))

    assert c("sizeof amdsmi_bdf_t") == ctypes.sizeof(w.amdsmi_bdf_t) == 8
    assert c("sizeof amdsmi_asic_info_t") == ctypes.sizeof(w.amdsmi_asic_info_t)
    for field in ("device_id", "num_of_compute_units", "target_graphics_version"):
        assert c(f"amdsmi_asic_info_t.{field}") == getattr(w.amdsmi_asic_info_t, field).offset
    assert c("sizeof amdsmi_vram_info_t") == ctypes.sizeof(w.amdsmi_vram_info_t)
    assert c("amdsmi_vram_info_t.vram_size") == w.amdsmi_vram_info_t.vram_size.offset
    assert c("sizeof amdsmi_version_t") == ctypes.sizeof(w.amdsmi_version_t)


# --- readings that agree with sysfs -----------------------------------------------------------


def test_eight_mi300x_cpx_nps4_through_the_real_wrapper(smi: Describe, hosts_dir: Path) -> None:
    smi(amdsmi_host("mi300x-8-cpx-nps4"))
    import amdsmi  # noqa: PLC0415

    amdsmi.amdsmi_init()
    handles = amdsmi.amdsmi_get_processor_handles()
    assert len(handles) == 64
    assert amdsmi.amdsmi_get_gpu_device_bdf(handles[9]) == "0000:25:00.1"
    amdsmi.amdsmi_shut_down()
    facts = probe_gpus(roots_of(hosts_dir, "mi300x-8-cpx-nps4"), "auto")
    assert (facts.source, facts.fallback) == ("amdsmi", None)
    assert {(d.model, d.compute_partition, d.memory_partition, d.partitions, d.compute_units,
             d.vram_mib) for d in facts.devices} == {
        ("MI300X", "CPX", "NPS4", 8, 304, 192 * 1024)
    }  # fmt: skip
    assert gpu_labels(facts) == gpu_only(expected_labels("mi300x-8-cpx-nps4"))


@pytest.mark.parametrize(
    "name",
    ["mi300x-8-spx-nps1", "mi308x-8-cpx-nps1", "mi325x-8", "mi355x-8-dpx-nps2", "mi210-4",
     "mi250x-4-modules", "mixed-mi300x-mi210", "mi300x-vf-vm", "mi300x-4-amdgpu-4-vfio",
     "ryzen-desktop"],
)  # fmt: skip
def test_same_labels_as_the_sysfs_probe(smi: Describe, hosts_dir: Path, name: str) -> None:
    smi(amdsmi_host(name))
    roots = roots_of(hosts_dir, name)
    facts = probe_gpus(roots, "auto")
    assert (facts.source, facts.fallback) == ("amdsmi", None)
    assert gpu_labels(facts) == gpu_labels(probe_gpus(roots, "sysfs"))
    assert gpu_labels(facts) == gpu_only(expected_labels(name))


def test_an_unsupported_partition_query_is_a_gpu_that_cannot_be_partitioned(
    smi: Describe, hosts_dir: Path
) -> None:
    """MI210: the library answers AMDSMI_STATUS_NOT_SUPPORTED, the wrapper raises."""
    smi(amdsmi_host("mi210-4"))
    import amdsmi  # noqa: PLC0415

    amdsmi.amdsmi_init()
    handle = amdsmi.amdsmi_get_processor_handles()[0]
    with pytest.raises(amdsmi.AmdSmiLibraryException) as raised:
        amdsmi.amdsmi_get_gpu_compute_partition(handle)
    assert raised.value.get_error_code() == amdsmi_gpu.STATUS_NOT_SUPPORTED
    amdsmi.amdsmi_shut_down()
    facts = probe_gpus(roots_of(hosts_dir, "mi210-4"), "amdsmi")
    assert {(d.model, d.compute_partition, d.memory_partition) for d in facts.devices} == {
        ("MI210", None, None)
    }


def test_defect5_unknown_modes_the_same_way_in_amdsmi_and_sysfs(
    smi: Describe, tmp_path: Path
) -> None:
    """The kernel's UNKNOWN: sysfs shows the word, the library fails the query (43,
    UNEXPECTED_DATA). Both drop that GPU's partition label, never its model label."""
    root = build_host(tmp_path, "mi300x-8-spx-nps1", SMALL_CPU)
    (root / "sys/bus/pci/devices/0000:05:00.0/current_compute_partition").write_text("UNKNOWN\n")
    smi(amdsmi_host("mi300x-8-spx-nps1", modes={0: ("!43", "NPS1")}))
    roots = HostRoots.from_host_root(root)
    via_amdsmi = probe_gpus(roots, "amdsmi")
    assert via_amdsmi.devices[0].compute_partition == "UNKNOWN"
    assert (
        gpu_labels(via_amdsmi)
        == gpu_labels(probe_gpus(roots, "sysfs"))
        == {
            LABEL_PREFIX + "MI300X": "8",
            LABEL_PREFIX + "partitioning-scheme.default": "7",
            LABEL_PREFIX + "partitioning-scheme.SPX-NPS1": "7",
        }
    )


def test_defect3_amdsmi_counts_a_vfs_partitions_where_sysfs_has_only_the_table(
    smi: Describe, tmp_path: Path
) -> None:
    """No KFD view in sysfs: its CPX count is the model's 8; the library lists one handle."""
    root = build_host(tmp_path, "mi300x-vf-1xcc-cpx-vm")
    shutil.rmtree(root / "sys/class/kfd")
    smi(amdsmi_host("mi300x-vf-1xcc-cpx-vm"))
    facts = probe_gpus(HostRoots.from_host_root(root), "auto")
    assert [(d.partitions, d.partitions_from) for d in facts.devices] == [(1, "amdsmi")]
    assert gpu_labels(facts)[LABEL_PREFIX + "partitioning-scheme.CPX-NPS1"] == "1"


# --- readings that do not ---------------------------------------------------------------------


def test_defect1_a_partial_list_is_not_trusted(
    smi: Describe, hosts_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A detector pod given one GPU: the library lists 8 handles (one GPU's partitions) of 64.
    The node keeps MI300X=8 and CPX-NPS4=64, from sysfs; said once; forced amdsmi fails."""
    smi(amdsmi_host("mi300x-8-cpx-nps4", only=1))
    roots = roots_of(hosts_dir, "mi300x-8-cpx-nps4")
    with caplog.at_level(logging.WARNING, logger="detector.probes.gpu"):
        first = probe_gpus(roots, "auto")
        second = probe_gpus(roots, "auto")
    for facts in (first, second):
        assert (facts.source, facts.fallback) == ("sysfs", "amdsmi-disagrees:gpus")
        assert gpu_labels(facts) == gpu_only(expected_labels("mi300x-8-cpx-nps4"))
    said = [r.getMessage() for r in caplog.records if "amdsmi disagrees" in r.getMessage()]
    assert len(said) == 1
    assert "amdsmi lists 1 GPU(s) (0000:05:00.0) but PCI shows 8 amdgpu-bound" in said[0]
    with pytest.raises(ProbeError, match="amdsmi disagrees with sysfs"):
        probe_gpus(roots, "amdsmi")


def test_defect1_zero_bdfs_never_merge_gpus(smi: Describe, hosts_dir: Path) -> None:
    """Two GPUs whose render nodes the library could not open come back as 0000:00:00.0;
    grouped by BDF they would be one GPU (MI300X=7)."""
    smi(amdsmi_host("mi300x-8-spx-nps1", zero_bdf=frozenset({2, 3})))
    facts = probe_gpus(roots_of(hosts_dir, "mi300x-8-spx-nps1"), "auto")
    assert (facts.source, facts.fallback) == ("sysfs", "amdsmi-disagrees:incomplete")
    assert gpu_labels(facts) == gpu_only(expected_labels("mi300x-8-spx-nps1"))


def test_defect1_two_gpus_under_one_bdf_are_a_disagreement(smi: Describe, hosts_dir: Path) -> None:
    description = amdsmi_host("mi300x-8-spx-nps1").replace("0000:25:00.0", "0000:05:00.0")
    smi(description)
    facts = probe_gpus(roots_of(hosts_dir, "mi300x-8-spx-nps1"), "auto")
    assert facts.fallback == "amdsmi-disagrees:gpus"
    assert gpu_labels(facts) == gpu_only(expected_labels("mi300x-8-spx-nps1"))


def test_a_library_that_lists_gpus_amdgpu_does_not_drive(smi: Describe, hosts_dir: Path) -> None:
    """The cross-check is against amdgpu-bound GPUs: vfio-pci ones never enter the count."""
    smi(amdsmi_host("mi300x-8-spx-nps1"))  # 8 GPUs, where the host drives 4
    facts = probe_gpus(roots_of(hosts_dir, "mi300x-4-amdgpu-4-vfio"), "auto")
    assert facts.fallback == "amdsmi-disagrees:gpus"
    assert gpu_labels(facts)[LABEL_PREFIX + "MI300X"] == "4"


# --- when amdsmi cannot be used: decided once -------------------------------------------------


def test_defect2_wrapper_newer_than_the_library(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    hosts_dir: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """amdsmi 7.0.2 on a ROCm 6.4 library: the import raises AttributeError (undefined symbol).
    auto uses sysfs, and the import is not tried again: one decision, one log line."""
    old = build_rocm(tmp_path / "rocm-6.4", omit=[NEWER_SYMBOL], rocm_version="6.4.1-103")
    _forget_amdsmi()
    monkeypatch.setenv("ROCM_PATH", str(old))
    with pytest.raises(AttributeError, match=f"undefined symbol: {NEWER_SYMBOL}"):
        import amdsmi  # noqa: F401, PLC0415
    _forget_amdsmi()
    roots = roots_of(hosts_dir, "mi210-4")
    with pytest.raises(BackendUnavailable, match=f"AttributeError: .*{NEWER_SYMBOL}"):
        probe_gpus(roots, "amdsmi")
    assert "amdsmi" not in sys.modules
    facts = probe_gpus(roots, "auto")
    assert (facts.source, facts.fallback) == ("sysfs", "amdsmi-unavailable")
    assert "amdsmi" not in sys.modules, "the failed import is remembered, not tried again"
    assert capfd.readouterr().out == ""
    _forget_amdsmi()


def test_init_failure_is_decided_once(smi: Describe, tmp_path: Path, hosts_dir: Path) -> None:
    smi(amdsmi_host("mi325x-8", init_status=34))  # AMDSMI_STATUS_DRIVER_NOT_LOADED
    with pytest.raises(BackendUnavailable, match=r"(?s)amdsmi_init failed.*DRIVER_NOT_LOADED"):
        probe_gpus(roots_of(hosts_dir, "mi325x-8"), "amdsmi")
    smi(amdsmi_host("mi325x-8"))  # the library would answer now: the decision stands
    facts = probe_gpus(roots_of(hosts_dir, "mi325x-8"), "auto")
    assert (facts.source, facts.fallback) == ("sysfs", "amdsmi-unavailable")


def test_handle_listing_failure(smi: Describe, hosts_dir: Path) -> None:
    smi(amdsmi_host("mi325x-8", handles_status=10))  # AMDSMI_STATUS_NO_PERM
    with pytest.raises(BackendUnavailable, match="amdsmi_get_processor_handles failed"):
        probe_gpus(roots_of(hosts_dir, "mi325x-8"), "amdsmi")


def test_no_library_at_all(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    hosts_dir: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The pip wrapper without ROCm: it prints its complaint and raises KeyError."""
    _forget_amdsmi()
    monkeypatch.setenv("ROCM_PATH", str(tmp_path / "no-rocm"))
    with pytest.raises(BackendUnavailable, match=r"KeyError: 'libamd_smi.so'") as failure:
        probe_gpus(roots_of(hosts_dir, "mi210-4"), "amdsmi")
    assert "Unable to find libamd_smi.so" in str(failure.value)
    assert capfd.readouterr().out == "", "nothing on stdout (the dry run's output)"
    assert probe_gpus(roots_of(hosts_dir, "mi210-4"), "auto").source == "sysfs"
    _forget_amdsmi()


def test_amdsmi_not_installed(monkeypatch: pytest.MonkeyPatch, hosts_dir: Path) -> None:
    _forget_amdsmi()
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # what a missing package looks like
    with pytest.raises(BackendUnavailable, match="ModuleNotFoundError"):
        probe_gpus(roots_of(hosts_dir, "mi325x-8"), "amdsmi")
    assert probe_gpus(roots_of(hosts_dir, "mi325x-8"), "auto").source == "sysfs"
    amdsmi_gpu.reset()


def test_a_wrapper_from_another_rocm_release_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hosts_dir: Path
) -> None:
    """Every symbol binds, but the pip wrapper (7.0.2) is not the one of this ROCm (6.4)."""
    other = build_rocm(tmp_path / "rocm-6.4", rocm_version="6.4.1-103")
    _forget_amdsmi()
    monkeypatch.setenv("ROCM_PATH", str(other))
    monkeypatch.setenv(HOST_ENV, str(tmp_path / "unused"))
    with pytest.raises(BackendUnavailable, match=r"does not match ROCm 6\.4\.1"):
        probe_gpus(roots_of(hosts_dir, "mi210-4"), "amdsmi")
    check = amdsmi_gpu.install_check()
    assert check is not None
    assert (check.wrapper_version, check.rocm_version, check.bundled) == ("7.0.2", "6.4.1", False)
    _forget_amdsmi()


def test_the_wrapper_shipped_with_rocm_is_preferred_and_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hosts_dir: Path
) -> None:
    """A ROCm install's own wrapper (<rocm>/share/amd_smi) is imported ahead of the PyPI one,
    and it belongs to its library whatever the version strings say."""
    prefix = build_rocm(tmp_path / "rocm-6.4", rocm_version="6.4.1-103")
    shipped = prefix / "share/amd_smi"
    shutil.copytree(_wrapper_dir(), shipped / "amdsmi")
    _forget_amdsmi()
    monkeypatch.setattr(sys, "path", list(sys.path))  # the probe puts the wrapper first
    monkeypatch.setenv("ROCM_PATH", str(prefix))
    host = tmp_path / "host.txt"
    host.write_text(amdsmi_host("mi210-4"))
    monkeypatch.setenv(HOST_ENV, str(host))
    facts = probe_gpus(roots_of(hosts_dir, "mi210-4"), "amdsmi")
    check = amdsmi_gpu.install_check()
    assert check is not None
    assert check.bundled
    assert check.wrapper_path == str((shipped / "amdsmi").resolve())
    assert sys.path[0] == str(shipped)
    assert check.library_version == "26.0.2"
    assert facts.source == "amdsmi"
    _forget_amdsmi()


# --- the agent in its own process -------------------------------------------------------------


def test_dry_run_in_a_subprocess_with_the_real_wrapper(rocm: Path, tmp_path: Path) -> None:
    """``aim-detector --once --dry-run`` as a user runs it, amdsmi and all: first a library
    that sees every GPU, then one that sees a single GPU (a pod given one)."""
    root = build_host(tmp_path, "mi300x-8-cpx-nps4")
    host = tmp_path / "amdsmi-host.txt"
    env = dict(os.environ, ROCM_PATH=str(rocm), **{HOST_ENV: str(host)})
    env.pop("ROCM_HOME", None)
    command = [sys.executable, "-m", "detector", "--once", "--dry-run", "--output", "json",
               "--host-root", str(root), "--log-level", "info"]  # fmt: skip
    whole, partial = amdsmi_host("mi300x-8-cpx-nps4"), amdsmi_host("mi300x-8-cpx-nps4", only=1)
    for description, backend in ((whole, "chosen"), (partial, "disagrees")):
        host.write_text(description)
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, cwd=REPO, check=False
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["labels"] == expected_labels("mi300x-8-cpx-nps4")
        if backend == "chosen":
            assert "amdsmi wrapper 7.0.2" in done.stderr
        else:
            assert "amdsmi disagrees with sysfs (gpus)" in done.stderr


def test_real_host_does_not_crash() -> None:
    """This machine's own /sys with whatever amdsmi it has: facts or ProbeError, nothing else."""
    _forget_amdsmi()
    try:
        facts = probe_gpus(HostRoots(), "auto")
    except ProbeError:
        return
    finally:
        _forget_amdsmi()
    assert facts.source in ("sysfs", "amdsmi")
    assert all(device.partitions >= 1 for device in facts.devices)
