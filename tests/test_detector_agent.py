"""The agent's cycle and loop with the real probes on fixture host trees.

The host under the agent changes between cycles the way a real one would look different: a
symlink ``host`` points at one fixture tree, then at another (GPUs pulled, a container that
cannot read the KFD topology, ...). The agent always probes ``host/sys`` and ``host/proc``.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from kubernetes import client

from aimkit.kube import connect
from detector.agent import Agent, CycleReport, Reading, host_probes
from detector.facts import CPU_SOURCE, GPU_SOURCE, ProbeError
from detector.labels import OWNED_LABELS_ANNOTATION
from detector.metrics import Health, Metrics, serve
from detector.probes import amdsmi_gpu
from detector.probes.roots import HostRoots
from detector.publish.nfd import FILE_NAME, NfdPublisher
from detector.publish.node import Backoff, NodePublisher
from tests.amdsmi_stub import HOST_ENV, build_rocm
from tests.hosttrees import GENOA_9654, amdsmi_host, build_host, expected_labels, read_is_denied

CPX_HOST = "mi300x-8-cpx-nps4"
NO_GPU_HOST = "epyc-zen4-2s"  # same CPUs as CPX_HOST, GPUs gone
BLIND_HOST = "kfd-eperm-container"  # the GPU probe fails: it cannot see the GPUs
FOREIGN = {"kubernetes.io/hostname": "gpu-1", "nvidia.com/gpu.present": "false"}


class Host:
    """A host root whose contents can be swapped for another fixture between cycles."""

    def __init__(self, tmp_path, trees, name):
        self._trees = trees
        self.root = tmp_path / "host"
        self.roots = HostRoots.from_host_root(self.root)
        self.become(name)

    def become(self, name):
        tmp = self.root.with_name("host.new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self._trees[name])
        tmp.replace(self.root)


def gpu_only(labels):
    return {k: v for k, v in labels.items() if "EPYC" not in k}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """The fixture trees, built once: the probes only read them."""
    base = tmp_path_factory.mktemp("trees")
    return {name: build_host(base, name) for name in (CPX_HOST, NO_GPU_HOST, BLIND_HOST)}


@pytest.fixture
def host(tmp_path, trees):
    return Host(tmp_path, trees, CPX_HOST)


def sample(agent, name, **labels):
    return agent.metrics.registry.get_sample_value(name, labels)


def make_agent(host, publisher, **kwargs):
    return Agent(host_probes(host.roots, "sysfs"), publisher, **kwargs)


# --- NFD mode, no cluster --------------------------------------------------------------------


def test_nfd_mode_publishes_the_fixture_labels_and_rewrites_nothing_when_unchanged(tmp_path, host):
    features = tmp_path / "features.d"
    agent = make_agent(host, NfdPublisher(features))
    report = agent.run_cycle()
    assert report.ok
    assert report.wrote
    assert NfdPublisher(features).read() == expected_labels(CPX_HOST)
    assert report.readings[GPU_SOURCE].devices == {"MI300X": 8}
    assert not agent.run_cycle().wrote


def test_nfd_mode_removes_gone_gpus_after_two_cycles(tmp_path, host):
    features = tmp_path / "features.d"
    agent = make_agent(host, NfdPublisher(features))
    agent.run_cycle()
    host.become(NO_GPU_HOST)
    first = agent.run_cycle()
    assert not first.wrote, "one probe without the GPUs changes nothing"
    assert set(first.decision.pending_removal) == set(gpu_only(expected_labels(CPX_HOST)))
    assert agent.run_cycle().wrote
    assert NfdPublisher(features).read() == expected_labels(NO_GPU_HOST)


def test_restart_in_nfd_mode_keeps_labels_when_the_first_probe_fails(tmp_path, host):
    features = tmp_path / "features.d"
    make_agent(host, NfdPublisher(features)).run_cycle()
    host.become(BLIND_HOST)
    restarted = make_agent(host, NfdPublisher(features))
    report = restarted.run_cycle()
    assert not report.ok
    assert GPU_SOURCE in report.errors
    assert NfdPublisher(features).read() == expected_labels(CPX_HOST)


# --- node mode against the API ---------------------------------------------------------------

FAST = Backoff(attempts=3, base=0.01, cap=0.02)


@pytest.fixture
def node(kube):
    """(the publisher's client, the Node's name); the Node is read back with the official client."""
    official = kube.api_client()
    name = kube.unique("gpu-node")
    body = client.V1Node(metadata=client.V1ObjectMeta(name=name, labels=dict(FOREIGN)))
    client.CoreV1Api(official).create_node(body)
    api = connect(kube.kubeconfig)
    yield api, name
    api.close()
    client.CoreV1Api(official).delete_node(name)


def node_labels(kube, name):
    meta = client.CoreV1Api(kube.api_client()).read_node(name).metadata
    assert meta is not None
    return dict(meta.labels or {}), dict(meta.annotations or {})


def patch_count(kube, name):
    return kube.require_server().requests.count(verb="patch", path_contains=f"/nodes/{name}")


def settled_patch_count(kube, name, expect):
    deadline = time.monotonic() + 5
    while patch_count(kube, name) < expect and time.monotonic() < deadline:
        time.sleep(0.01)
    return patch_count(kube, name)


@pytest.mark.cluster
def test_node_mode_full_story(kube, host, node):
    """Labels appear; unchanged cycles write nothing; a blind probe changes nothing; gone GPUs
    go after two cycles; foreign labels stay throughout."""
    api, name = node
    agent = make_agent(host, NodePublisher(api, name, backoff=FAST))

    assert agent.run_cycle().wrote
    labels, annotations = node_labels(kube, name)
    assert labels == {**FOREIGN, **expected_labels(CPX_HOST)}
    assert annotations[OWNED_LABELS_ANNOTATION] == ",".join(sorted(expected_labels(CPX_HOST)))

    if kube.server is not None:
        writes = settled_patch_count(kube, name, 1)
        for _ in range(5):
            assert not agent.run_cycle().wrote
        assert patch_count(kube, name) == writes

    host.become(BLIND_HOST)
    for _ in range(3):
        report = agent.run_cycle()
        assert GPU_SOURCE in report.errors
        assert not report.wrote
    assert node_labels(kube, name)[0] == {**FOREIGN, **expected_labels(CPX_HOST)}

    host.become(NO_GPU_HOST)
    assert not agent.run_cycle().wrote
    assert node_labels(kube, name)[0] == {**FOREIGN, **expected_labels(CPX_HOST)}
    report = agent.run_cycle()
    assert report.wrote
    assert report.ok
    assert node_labels(kube, name)[0] == {**FOREIGN, **expected_labels(NO_GPU_HOST)}


@pytest.mark.cluster
def test_node_mode_restart_reads_the_annotation(kube, host, node):
    api, name = node
    make_agent(host, NodePublisher(api, name, backoff=FAST)).run_cycle()
    host.become(BLIND_HOST)
    restarted = make_agent(host, NodePublisher(api, name, backoff=FAST))
    assert not restarted.run_cycle().wrote
    host.become(NO_GPU_HOST)
    restarted.run_cycle()
    restarted.run_cycle()
    assert node_labels(kube, name)[0] == {**FOREIGN, **expected_labels(NO_GPU_HOST)}


@pytest.mark.cluster
def test_node_mode_api_outage_then_recovery(kube, host, node):
    api, name = node
    srv = kube.require_server()
    agent = make_agent(host, NodePublisher(api, name, backoff=FAST))
    srv.faults.fail_next(100, code=503, verb="get")
    report = agent.run_cycle()
    assert report.publish_error is not None
    assert "503" in report.publish_error
    assert sample(agent, "aim_detector_label_writes_total", result="error") == 1
    srv.faults.clear()
    report = agent.run_cycle()
    assert report.ok
    assert report.wrote
    assert node_labels(kube, name)[0] == {**FOREIGN, **expected_labels(CPX_HOST)}


@pytest.mark.cluster
def test_node_mode_cleanup_removes_only_ours(kube, host, node):
    api, name = node
    agent = make_agent(host, NodePublisher(api, name, backoff=FAST))
    agent.run_cycle()
    assert agent.cleanup() is True
    labels, annotations = node_labels(kube, name)
    assert labels == FOREIGN
    assert OWNED_LABELS_ANNOTATION not in annotations


# --- probe timeouts and the loop ------------------------------------------------------------


def test_a_hung_probe_times_out_and_keeps_its_labels(tmp_path, host):
    real = host_probes(host.roots, "sysfs")
    release = threading.Event()
    hang = {"on": False}

    def gpu() -> Reading:
        if hang["on"]:
            release.wait(30)
        return real[GPU_SOURCE]()

    features = tmp_path / "features.d"
    agent = Agent(
        {GPU_SOURCE: gpu, CPU_SOURCE: real[CPU_SOURCE]}, NfdPublisher(features), probe_timeout=1.0
    )
    agent.run_cycle()
    hang["on"] = True
    report = agent.run_cycle()
    assert report.errors[GPU_SOURCE].startswith("no answer within 1s")
    again = agent.run_cycle()
    assert again.errors[GPU_SOURCE] == "the previous probe is still running"
    assert NfdPublisher(features).read() == expected_labels(CPX_HOST)
    assert sample(agent, "aim_detector_probe_errors_total", source="gpu", reason="timeout") == 2
    hang["on"] = False
    release.set()
    deadline = time.monotonic() + 5
    while not agent.run_cycle().ok and time.monotonic() < deadline:
        time.sleep(0.01)
    assert agent.run_cycle().ok


def test_a_probe_exception_is_a_failed_probe(tmp_path, host):
    def broken() -> Reading:
        raise ProbeError(GPU_SOURCE, "amdsmi_init failed")

    real = host_probes(host.roots, "sysfs")
    agent = Agent({GPU_SOURCE: broken, CPU_SOURCE: real[CPU_SOURCE]}, None)
    report = agent.run_cycle()
    assert report.errors == {GPU_SOURCE: "gpu: amdsmi_init failed"}
    assert report.decision is not None
    assert report.decision.labels == {
        k: v for k, v in expected_labels(CPX_HOST).items() if "EPYC" in k
    }
    assert sample(agent, "aim_detector_probe_errors_total", source="gpu", reason="error") == 1


def test_loop_runs_until_stopped(tmp_path, host):
    agent = make_agent(host, NfdPublisher(tmp_path / "features.d"))
    stop = threading.Event()
    reports: list[CycleReport] = []

    def on_cycle(report):
        reports.append(report)
        if len(reports) == 3:
            stop.set()

    thread = threading.Thread(
        target=agent.run_loop, args=(stop, 0.01, 0.1), kwargs={"on_cycle": on_cycle}, daemon=True
    )
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert len(reports) == 3
    assert all(r.ok for r in reports)
    assert agent.health.liveness() == (False, "the loop has stopped")


def test_stop_ends_a_long_wait_at_once(tmp_path, host):
    agent = make_agent(host, NfdPublisher(tmp_path / "features.d"))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_loop, args=(stop, 3600.0), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (tmp_path / "features.d" / FILE_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(10)
    assert not thread.is_alive(), "the loop waits on the stop event, not in time.sleep"


# --- metrics and health endpoints -------------------------------------------------------------


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_and_health_endpoints(tmp_path, host):
    metrics = Metrics()
    health = Health(stall_after=3600)
    server = serve(metrics, health, ["127.0.0.1"], 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        agent = make_agent(
            host, NfdPublisher(tmp_path / "features.d"), metrics=metrics, health=health
        )
        assert get(base + "/healthz")[0] == 200
        code, body = get(base + "/readyz")
        assert code == 503
        assert "no cycle" in body

        agent.run_cycle()
        assert get(base + "/readyz") == (200, "ok\n")
        code, text = get(base + "/metrics")
        assert code == 200
        assert re.search(
            r'^aim_detector_build_info\{python_version="[\d.]+",version="[^"]+"\} 1\.0$', text, re.M
        )
        for line in (
            'aim_detector_devices{model="MI300X",source="gpu"} 8.0',
            'aim_detector_devices{model="EPYC_ZEN4",source="cpu"} 2.0',
            'aim_detector_label_writes_total{result="success"} 1.0',
            "aim_detector_healthy 1.0",
            "aim_detector_labels 3.0",
        ):
            assert line in text
        assert 'aim_detector_probe_duration_seconds_count{source="gpu"} 1.0' in text
        assert 'aim_detector_last_good_probe_timestamp_seconds{source="cpu"}' in text

        host.become(BLIND_HOST)
        agent.run_cycle()
        code, body = get(base + "/readyz")
        assert code == 503
        assert "[-]probes failed: gpu probe failed" in body
        assert "[+]publish ok" in body
        code, text = get(base + "/metrics")
        assert 'aim_detector_probe_errors_total{reason="error",source="gpu"} 1.0' in text
        assert "aim_detector_healthy 0.0" in text
        assert 'aim_detector_devices{model="MI300X",source="gpu"} 8.0' in text, "last good kept"
        assert get(base + "/healthz")[0] == 200
        assert get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_liveness_fails_when_the_loop_stalls():
    now = [0.0]
    health = Health(stall_after=10, clock=lambda: now[0])
    assert health.liveness()[0]
    now[0] = 11
    ok, reason = health.liveness()
    assert not ok
    assert "no cycle completed for 11s" in reason
    health.cycle_done({}, None)
    assert health.liveness()[0]
    assert health.readiness() == (True, "ok")
    health.cycle_done({}, "HTTP 403")
    assert health.readiness() == (False, "publish failed: HTTP 403")


# --- issue 10 through the agent: what a node shows while its GPUs change ------------------------


@pytest.fixture(scope="module")
def gpu_trees(tmp_path_factory):
    """One CPU (2 x EPYC 9654) under every GPU state, so only the GPU labels move."""
    base = tmp_path_factory.mktemp("gpu-states")
    trees = {
        name: build_host(base, name, GENOA_9654)
        for name in (
            "mi300x-8-spx-nps1",
            "mi300x-8-cpx-nps4",
            "mi300x-8-no-driver",
            "mi300x-8-vfio",
            "mi300x-8-kfd-eperm",
        )
    }
    switching = build_host(base / "switching", "mi300x-8-kfd-eperm", GENOA_9654)
    for node in ("60", "61", "62", "63", "64"):  # KFD torn down half-way through a switch
        shutil.rmtree(switching / "sys/class/kfd/kfd/topology/nodes" / node)
    trees["switching"] = switching
    return trees


def _gpu_labels(report):
    assert report.decision is not None
    return gpu_only(report.decision.labels)


SPX_LABELS = gpu_only(expected_labels("mi300x-8-spx-nps1"))
CPX_LABELS = gpu_only(expected_labels("mi300x-8-cpx-nps4"))


def test_a_partition_switch_shows_one_scheme_at_a_time(tmp_path, gpu_trees):
    """SPX-NPS1 -> (KFD half rebuilt) -> CPX-NPS4, the default DaemonSet's view (KFD refused):
    the node carries the old scheme or the new one, never both, never a half count."""
    host = Host(tmp_path, gpu_trees, "mi300x-8-spx-nps1")
    agent = Agent(host_probes(host.roots, "sysfs"), NfdPublisher(tmp_path / "features.d"))
    seen = [_gpu_labels(agent.run_cycle())]
    host.become("switching")
    report = agent.run_cycle()
    assert "partition switch" in report.errors[GPU_SOURCE]
    seen.append(_gpu_labels(report))
    host.become("mi300x-8-kfd-eperm")
    seen += [_gpu_labels(agent.run_cycle()) for _ in range(3)]
    assert seen == [SPX_LABELS, SPX_LABELS, SPX_LABELS, CPX_LABELS, CPX_LABELS]
    assert NfdPublisher(tmp_path / "features.d").read() == expected_labels("mi300x-8-cpx-nps4")


def test_a_node_whose_driver_loads_after_boot(tmp_path, gpu_trees):
    """Before amdgpu loads the GPUs are not counted (no default=8 from missing partition
    files); once it has loaded, CPX-NPS4 appears at once, alone."""
    host = Host(tmp_path, gpu_trees, "mi300x-8-no-driver")
    agent = Agent(host_probes(host.roots, "sysfs"), None)
    booting = agent.run_cycle()
    assert booting.ok
    assert _gpu_labels(booting) == {}
    assert sample(agent, "aim_detector_gpus_not_counted", driver="none") == 8
    host.become("mi300x-8-cpx-nps4")
    loaded = agent.run_cycle()
    assert _gpu_labels(loaded) == CPX_LABELS
    assert sample(agent, "aim_detector_gpus_not_counted", driver="none") is None
    assert sample(agent, "aim_detector_gpu_partition_count_source", source="kfd") == 8
    assert sample(agent, "aim_detector_gpu_backend", backend="sysfs", reason="chosen") == 1


def test_passthrough_gpus_are_visible_in_the_metrics_only(tmp_path, gpu_trees):
    host = Host(tmp_path, gpu_trees, "mi300x-8-vfio")
    agent = Agent(host_probes(host.roots, "sysfs"), None)
    report = agent.run_cycle()
    assert report.ok
    assert _gpu_labels(report) == {}
    assert sample(agent, "aim_detector_gpus_not_counted", driver="vfio-pci") == 8


def test_partition_counts_from_refused_kfd_nodes_are_labelled_in_the_metrics(tmp_path, gpu_trees):
    host = Host(tmp_path, gpu_trees, "mi300x-8-kfd-eperm")
    agent = Agent(host_probes(host.roots, "sysfs"), None)
    if not read_is_denied(host.roots.sysfs / "class/kfd/kfd/topology/nodes/2/properties"):
        pytest.skip("this environment cannot make the kernel refuse the read")
    assert _gpu_labels(agent.run_cycle()) == CPX_LABELS
    assert sample(agent, "aim_detector_gpu_partition_count_source", source="kfd-node-count") == 8


def test_amdsmi_disagreement_is_counted_and_sysfs_answers(tmp_path, gpu_trees, monkeypatch):
    """The real wrapper on the C stand-in, listing one GPU of eight (a pod given one)."""
    rocm = build_rocm(tmp_path / "rocm")
    description = tmp_path / "amdsmi-host.txt"
    description.write_text(amdsmi_host("mi300x-8-cpx-nps4", only=1))
    monkeypatch.setenv("ROCM_PATH", str(rocm))
    monkeypatch.setenv(HOST_ENV, str(description))
    for name in [n for n in sys.modules if n == "amdsmi" or n.startswith("amdsmi.")]:
        monkeypatch.delitem(sys.modules, name)
    amdsmi_gpu.reset()
    try:
        host = Host(tmp_path, gpu_trees, "mi300x-8-cpx-nps4")
        agent = Agent(host_probes(host.roots, "auto"), None)
        for _ in range(2):
            assert _gpu_labels(agent.run_cycle()) == CPX_LABELS
        reason = "amdsmi-disagrees:gpus"
        assert sample(agent, "aim_detector_gpu_backend", backend="sysfs", reason=reason) == 1
        assert sample(agent, "aim_detector_amdsmi_disagreements_total", kind="gpus") == 2
        description.write_text(amdsmi_host("mi300x-8-cpx-nps4"))
        agent.run_cycle()
        assert sample(agent, "aim_detector_gpu_backend", backend="amdsmi", reason="chosen") == 1
        assert sample(agent, "aim_detector_gpu_backend", backend="sysfs", reason=reason) is None
    finally:
        amdsmi_gpu.reset()


@pytest.mark.cluster
def test_a_failed_probe_never_marks_a_node_as_searched_and_found_nothing(kube, node, tmp_path):
    """The empty ownership annotation says "ran and found nothing", which the matcher reports.
    A cycle in which a probe failed does not know that: it neither adds the mark nor removes
    one that a complete cycle wrote before."""
    api, name = node
    intel = HostRoots.from_host_root(build_host(tmp_path, "intel-xeon"))
    real = host_probes(intel, "sysfs")
    gpu_works = False

    def gpu() -> Reading:
        if not gpu_works:
            raise ProbeError(GPU_SOURCE, "amdsmi_init failed")
        return real[GPU_SOURCE]()

    agent = Agent({GPU_SOURCE: gpu, CPU_SOURCE: real[CPU_SOURCE]}, NodePublisher(api, name))
    report = agent.run_cycle()
    assert GPU_SOURCE in report.errors
    assert not report.wrote
    assert OWNED_LABELS_ANNOTATION not in node_labels(kube, name)[1]

    gpu_works = True
    assert agent.run_cycle().wrote
    assert node_labels(kube, name)[1][OWNED_LABELS_ANNOTATION] == ""

    gpu_works = False
    assert not agent.run_cycle().wrote
    assert node_labels(kube, name)[1][OWNED_LABELS_ANNOTATION] == ""
