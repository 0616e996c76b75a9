"""``aim-detector`` as a real process: dry runs on fixture trees and on this host, flags and
environment variables, node mode against the API server, the loop, its endpoints, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from detector.labels import LABEL_PREFIX, OWNED_LABELS_ANNOTATION
from detector.publish.nfd import FILE_NAME, NfdPublisher
from tests.controlplane.process import free_port
from tests.hosttrees import build_host, expected_labels

CPX_HOST = "mi300x-8-cpx-nps4"
BLIND_HOST = "kfd-eperm-container"
INTEL_HOST = "intel-xeon"
DETECTOR = [sys.executable, "-m", "detector"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("AIM_DETECTOR_")}
CLEAN_ENV.pop("NODE_NAME", None)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("hosts")
    return {name: build_host(base, name) for name in (CPX_HOST, BLIND_HOST, INTEL_HOST)}


def detector(*args, env=None, timeout=60):
    return subprocess.run(
        [*DETECTOR, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**CLEAN_ENV, **(env or {})},
        check=False,
    )


def dry_run(root, *args, env=None):
    return detector("--once", "--dry-run", "--host-root", str(root), *args, env=env)


def test_help_is_readable_and_names_every_environment_variable():
    proc = detector("--help")
    assert proc.returncode == 0
    for text in (
        "usage: aim-detector",
        "AIM_DETECTOR_INTERVAL",
        "NODE_NAME",
        "--removal-confirmations",
        "--metrics-port",
        "exit codes",
    ):
        assert text in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 100


def test_installed_console_script_runs():
    script = Path(sys.executable).parent / "aim-detector"
    if not script.exists():
        pytest.skip("the project is not installed in this environment")
    proc = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0
    assert "aim-detector" in proc.stdout


def test_dry_run_table(trees):
    proc = dry_run(trees[CPX_HOST], "--gpu-backend", "sysfs")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["LABEL", "VALUE", "SOURCE"]
    rows = {tuple(line.split()) for line in lines[1:]}
    assert rows == {
        (LABEL_PREFIX + "EPYC_ZEN4", "192", "cpu"),
        (LABEL_PREFIX + "MI300X", "8", "gpu"),
        (LABEL_PREFIX + "partitioning-scheme.CPX-NPS4", "64", "gpu"),
    }


def test_dry_run_labels(trees):
    proc = dry_run(trees[CPX_HOST], "--gpu-backend", "sysfs", "--output", "labels")
    assert proc.returncode == 0, proc.stderr
    got = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    assert got == expected_labels(CPX_HOST)
    assert proc.stdout.splitlines() == sorted(proc.stdout.splitlines())


def test_dry_run_json_with_settings_from_the_environment(trees):
    env = {"AIM_DETECTOR_OUTPUT": "json", "AIM_DETECTOR_GPU_BACKEND": "sysfs"}
    proc = dry_run(trees[CPX_HOST], env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["labels"] == expected_labels(CPX_HOST)
    assert doc["healthy"] is True
    assert doc["errors"] == {}
    assert doc["devices"] == {"cpu": {"EPYC_ZEN4": 2}, "gpu": {"MI300X": 8}}


def test_json_stays_parseable_when_amdsmi_is_installed_without_rocm(trees, tmp_path):
    """AMD's wrapper (installed from PyPI for the tests) prints to stdout when libamd_smi.so
    is missing; auto mode falls back to sysfs and the dry run's JSON must still be the only
    thing on stdout."""
    env = {"ROCM_PATH": str(tmp_path / "no-rocm"), "ROCM_HOME": ""}
    proc = dry_run(trees[CPX_HOST], "--output", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["labels"] == expected_labels(CPX_HOST)
    assert "Unable to find libamd_smi.so" in proc.stderr


def test_a_flag_wins_over_its_environment_variable(trees):
    env = {"AIM_DETECTOR_OUTPUT": "json", "AIM_DETECTOR_GPU_BACKEND": "sysfs"}
    proc = dry_run(trees[CPX_HOST], "--output", "labels", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not proc.stdout.startswith("{")


def test_sysfs_and_procfs_roots_separately(trees):
    root = trees[CPX_HOST]
    proc = detector(
        "--once",
        "--dry-run",
        "--sysfs-root",
        str(root / "sys"),
        "--procfs-root",
        str(root / "proc"),
        "--gpu-backend",
        "sysfs",
        "--output",
        "json",
    )
    assert json.loads(proc.stdout)["labels"] == expected_labels(CPX_HOST)


def test_failed_probe_is_reported_and_exits_1(trees):
    proc = dry_run(trees[BLIND_HOST], "--gpu-backend", "sysfs")
    assert proc.returncode == 1
    assert LABEL_PREFIX + "EPYC_ZEN4" in proc.stdout
    assert "! gpu probe failed:" in proc.stdout
    doc = json.loads(
        dry_run(trees[BLIND_HOST], "--gpu-backend", "sysfs", "--output", "json").stdout
    )
    assert doc["healthy"] is False
    assert "gpu" in doc["errors"]
    assert doc["labels"] == expected_labels(BLIND_HOST)


def test_a_host_without_amd_hardware_gets_no_labels(trees):
    proc = dry_run(trees[INTEL_HOST], "--gpu-backend", "sysfs")
    assert proc.returncode == 0, proc.stderr
    assert "(no labels: no AMD accelerator or EPYC CPU found)" in proc.stdout
    labels = dry_run(trees[INTEL_HOST], "--gpu-backend", "sysfs", "--output", "labels")
    assert labels.stdout == ""


def test_once_on_a_host_without_amd_hardware_says_there_is_nothing_to_publish(tmp_path, trees):
    """Not a dry run (NFD mode, so no cluster is needed): the agent ran, found nothing and
    says so, rather than printing nothing at all."""
    features = tmp_path / "features.d"
    features.mkdir()
    args = ("--once", "--mode", "nfd", "--nfd-features-dir", str(features))
    proc = detector(*args, "--host-root", str(trees[INTEL_HOST]), "--gpu-backend", "sysfs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "nothing to publish: no AMD accelerator or EPYC CPU found "
        f"(nfd:{features / FILE_NAME} updated)\n"
    )
    assert NfdPublisher(features).read() == {}
    again = detector(*args, "--host-root", str(trees[INTEL_HOST]), "--gpu-backend", "sysfs")
    assert again.stdout == "nothing to publish: no AMD accelerator or EPYC CPU found\n"

    # Where there is hardware, the file and the labels in it.
    proc = detector(*args, "--host-root", str(trees[CPX_HOST]), "--gpu-backend", "sysfs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"published to nfd:{features / FILE_NAME}:"
    assert NfdPublisher(features).read() == expected_labels(CPX_HOST)


def test_once_with_a_failed_probe_says_what_was_kept(tmp_path, trees):
    features = tmp_path / "features.d"
    features.mkdir()
    proc = detector(
        "--once", "--mode", "nfd", "--nfd-features-dir", str(features),
        "--host-root", str(trees[BLIND_HOST]), "--gpu-backend", "sysfs",
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == f"published to nfd:{features / FILE_NAME}:"
    assert any(line.startswith(LABEL_PREFIX + "EPYC_ZEN4") for line in lines)
    assert lines[-1].startswith("! gpu probe failed: ")
    assert "nothing to publish" not in proc.stdout


def _this_host_is_a_known_epyc() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    fields = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(":") for line in text.split("\n\n")[0].splitlines())
    )
    return (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") in ("23", "25", "26")
        and "EPYC" in fields.get("model name", "")
    )


@pytest.mark.skipif(not _this_host_is_a_known_epyc(), reason="this host is not an AMD EPYC")
def test_this_host_gets_its_epyc_label():
    proc = detector("--once", "--dry-run", "--output", "labels")
    assert proc.returncode == 0, proc.stderr
    epyc = [line for line in proc.stdout.splitlines() if "aim-accelerator.EPYC_ZEN" in line]
    assert len(epyc) == 1
    assert re.fullmatch(re.escape(LABEL_PREFIX) + r"EPYC_ZEN[1-6]=[1-9][0-9]*", epyc[0])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "node mode needs the Node's name"),
        (("--dry-run", "--interval", "0"), {}, "argument --interval: '0' must be a number"),
        (("--dry-run",), {"AIM_DETECTOR_INTERVAL": "soon"}, "AIM_DETECTOR_INTERVAL='soon'"),
        (("--dry-run",), {"AIM_DETECTOR_ONCE": "maybe"}, "AIM_DETECTOR_ONCE='maybe'"),
        (("--dry-run", "--mode", "kubelet"), {}, "must be one of node, nfd"),
        (("--dry-run", "--cleanup"), {}, "cannot be combined"),
        (("--dry-run", "--removal-confirmations", "0"), {}, "1 or more"),
    ],
)
def test_bad_usage_exits_2_and_says_why(args, env, message):
    proc = detector(*args, env=env)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_unreachable_cluster_config_exits_1(tmp_path):
    missing = tmp_path / "missing"
    proc = detector("--once", "--node-name", "n1", "--kubeconfig", str(missing), "--host-root", "/")
    assert proc.returncode == 1
    assert "cannot set up publishing" in proc.stderr
    assert f"kubeconfig {missing}: no such file" in proc.stderr


def test_version():
    proc = detector("--version")
    assert proc.returncode == 0
    assert re.fullmatch(r"aim-detector \S+ \(aim-accelerator, Python 3\.\d+\.\d+\)\n", proc.stdout)


@pytest.mark.parametrize("flag", ["--host-root", "--sysfs-root", "--procfs-root"])
def test_a_wrong_host_root_names_the_missing_path(tmp_path, flag):
    proc = detector("--once", "--dry-run", flag, str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert f"{flag} {tmp_path / 'nope'}: no such directory" in proc.stderr


def test_an_unreachable_api_server_is_one_log_line(tmp_path, trees):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: c, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: c}}]\n"
    )
    proc = detector(
        "--once", "--node-name", "gpu-1", "--kubeconfig", str(config),
        "--host-root", str(trees[CPX_HOST]), "--gpu-backend", "sysfs",
        env={"AIM_DETECTOR_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert proc.returncode == 1
    entries = [json.loads(line) for line in proc.stderr.splitlines()]
    problems = [e for e in entries if e["level"] in ("warning", "error")]
    assert [(e["msg"], e["error"]) for e in problems] == [
        (
            "cannot read the published labels",
            f"GET node gpu-1: cannot reach http://127.0.0.1:{port}: connection refused",
        )
    ]
    (settings,) = [e for e in entries if e["msg"] == "settings"]
    assert settings["mode"] == "node"
    assert settings["node_name"] == "gpu-1"
    assert settings["roots.sysfs"] == str(trees[CPX_HOST] / "sys")


# --- node mode against the API server ----------------------------------------------------------


@pytest.mark.cluster
def test_node_mode_once_then_unchanged_then_cleanup(kube, trees):
    api = kube.api_client()
    core = client.CoreV1Api(api)
    name = kube.unique("gpu-node")
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name, labels={"zone": "a"})))
    common = ("--kubeconfig", str(kube.kubeconfig), "--host-root", str(trees[CPX_HOST]))
    env = {"NODE_NAME": name, "AIM_DETECTOR_GPU_BACKEND": "sysfs"}
    try:
        proc = detector("--once", *common, env=env)
        assert proc.returncode == 0, proc.stderr
        meta = core.read_node(name).metadata
        assert meta is not None
        assert meta.labels == {"zone": "a", **expected_labels(CPX_HOST)}
        assert (meta.annotations or {})[OWNED_LABELS_ANNOTATION]
        assert 'msg="node patched"' in proc.stderr
        # What it published, and where, on stdout: the labels now on the Node.
        head, header, *rows = proc.stdout.splitlines()
        assert head == f"published to node/{name}:"
        assert header.split() == ["LABEL", "VALUE", "SOURCE"]
        assert {r.split()[0]: r.split()[1] for r in rows} == expected_labels(CPX_HOST)

        patches = kube.server.requests.count(verb="patch") if kube.server else 0
        again = detector("--once", *common, env=env)
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines()[0] == (
            f"published to node/{name} (already there, nothing written):"
        )
        assert again.stdout.splitlines()[1:] == proc.stdout.splitlines()[1:]
        if kube.server is not None:
            assert kube.server.requests.count(verb="patch") == patches

        as_json = json.loads(detector("--once", *common, "--output", "json", env=env).stdout)
        assert as_json["target"] == f"node/{name}"
        assert as_json["wrote"] is False
        assert as_json["labels"] == expected_labels(CPX_HOST)

        proc = detector("--cleanup", *common, env=env)
        assert proc.returncode == 0, proc.stderr
        meta = core.read_node(name).metadata
        assert meta is not None
        assert meta.labels == {"zone": "a"}
        assert OWNED_LABELS_ANNOTATION not in (meta.annotations or {})
    finally:
        core.delete_node(name)


# --- the loop as a process ---------------------------------------------------------------------


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return None, ""


def test_loop_serves_health_and_stops_cleanly_on_sigterm(tmp_path, trees):
    port = free_port()
    features = tmp_path / "features.d"
    proc = subprocess.Popen(
        [
            *DETECTOR,
            "--mode",
            "nfd",
            "--nfd-features-dir",
            str(features),
            "--host-root",
            str(trees[CPX_HOST]),
            "--gpu-backend",
            "sysfs",
            "--interval",
            "0.2",
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(port),
        ],
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            status, _ = http_get(f"http://127.0.0.1:{port}/readyz")
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        code, text = http_get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        assert 'aim_detector_devices{model="MI300X",source="gpu"} 8.0' in text
        assert NfdPublisher(features).read() == expected_labels(CPX_HOST)

        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "signal=SIGTERM" in stderr
    assert 'msg="agent stopped"' in stderr
    assert (features / FILE_NAME).exists(), "stopping is not uninstalling: the labels stay"


@pytest.mark.parametrize(
    ("pod_ip", "addresses"),
    [(None, ["127.0.0.1"]), ("127.0.0.2", ["127.0.0.2", "127.0.0.1"])],
)
def test_metrics_listen_on_loopback_outside_a_pod_and_on_the_pod_ip_in_one(
    tmp_path, trees, pod_ip, addresses
):
    port = free_port()
    env = {k: v for k, v in CLEAN_ENV.items() if k not in ("POD_IP", "KUBERNETES_SERVICE_HOST")}
    if pod_ip:
        env["POD_IP"] = pod_ip  # the downward API's status.podIP (a loopback stand-in here)
    proc = subprocess.Popen(
        [*DETECTOR, "--mode", "nfd", "--nfd-features-dir", str(tmp_path / "features.d"),
         "--host-root", str(trees[CPX_HOST]), "--gpu-backend", "sysfs", "--interval", "5",
         "--metrics-port", str(port), "--log-format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and http_get(f"http://127.0.0.1:{port}/healthz")[0] != 200
        ):
            time.sleep(0.05)
        for address in addresses:
            assert http_get(f"http://{address}:{port}/healthz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    (serving,) = [e for e in map(json.loads, stderr.splitlines()) if e["msg"] == "serving metrics"]
    assert serving["addresses"] == ",".join(f"{a}:{port}" for a in addresses)


def test_once_output_names_labels_kept_for_removal():
    """A label whose hardware a probe no longer sees stays until the confirmations are in:
    --once says which, rather than pretending it is still detected."""
    from detector.agent import CycleReport  # noqa: PLC0415
    from detector.cli import render_published  # noqa: PLC0415
    from detector.reconcile import ProbeResult, State, reconcile  # noqa: PLC0415

    key = LABEL_PREFIX + "MI300X"
    state = State(labels={key: "8"})
    decision = reconcile(state, [ProbeResult.ok("gpu", {}), ProbeResult.ok("cpu", {})], 2)
    report = CycleReport(decision, {}, target="node/gpu-1")
    lines = render_published(report, "table").splitlines()
    assert [line.split() for line in lines[:3]] == [
        ["published", "to", "node/gpu-1", "(already", "there,", "nothing", "written):"],
        ["LABEL", "VALUE", "SOURCE"],
        [key, "8", "gpu"],
    ]
    assert lines[3:] == [
        f"~ {key}: not seen by 1 probe(s) in a row; kept until --removal-confirmations probes in "
        "a row miss it",
    ]
