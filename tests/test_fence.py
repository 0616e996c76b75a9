"""The detector proves the node fence before it reports ready (detector/fence.py).

Three levels: the decision (:func:`detector.fence.judge`) as tables; the proof through the real
node publisher on the test API server, which admits everything (so the fence is "open") and
where faults stand in for the policy's refusals; and the real ``aim-detector`` process under
its own service-account token on the suite's kube-apiserver, with the bundle's admission policy
installed, deleted, or waived.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from aimkit.kube import connect
from detector.agent import AgentConfig, make_fence, node_dry_run_patch
from detector.fence import (
    FOREIGN_PROBE_LABEL,
    PEER_PROBE_LABEL,
    NodeFence,
    PatchResult,
    Verdict,
    judge,
    probes,
)
from detector.metrics import Health, Metrics
from detector.publish.node import Backoff, NodePublisher
from scripts.validate_manifests import ROOT, render
from tests.controlplane.process import free_port
from tests.controlplane.users import (
    pod_on_node,
    service_account_kubeconfig,
    service_account_token,
)
from tests.fence_support import (
    FOREIGN_LABEL,
    add_node,
    dry_run_label,
    install,
    wait_for_policy,
)
from tests.hosttrees import build_host, expected_labels

OWN, PEER = probes("gpu-1", "gpu-2")
DENIED = PatchResult(403, 'nodes "gpu-1" is forbidden: ValidatingAdmissionPolicy ...')


# --- The decision --------------------------------------------------------------------------


def test_probes_target_a_foreign_label_here_and_an_own_label_elsewhere():
    assert OWN.node == "gpu-1"
    assert OWN.patch == {"metadata": {"labels": {FOREIGN_PROBE_LABEL: "1"}}}
    assert not FOREIGN_PROBE_LABEL.startswith("feature.node.kubernetes.io/aim-accelerator.")
    assert PEER.node == "gpu-2"
    assert PEER.patch == {"metadata": {"labels": {PEER_PROBE_LABEL: "1"}}}
    assert PEER_PROBE_LABEL.startswith("feature.node.kubernetes.io/aim-accelerator.")
    assert probes("gpu-1") == [OWN]
    assert probes("gpu-1", "gpu-1") == [OWN], "the own Node is no peer"


@pytest.mark.parametrize(
    ("own", "peer", "state", "says"),
    [
        (DENIED, DENIED, "proven", "refused as it must be"),
        (DENIED, None, "proven", "refused as it must be"),
        (DENIED, PatchResult(404, "not found"), "proven", "gpu-2 is not visible"),
        (PatchResult(200), DENIED, "open", "was admitted (HTTP 200)"),
        (DENIED, PatchResult(200), "open", "another Node, gpu-2"),
        (PatchResult(201), PatchResult(503), "open", "admitted"),
        (PatchResult(503, "unavailable"), DENIED, "unknown", "HTTP 503: unavailable"),
        (PatchResult(None, "connection refused"), None, "unknown", "no answer"),
        (PatchResult(404, "no such node"), None, "unknown", "HTTP 404"),
        (PatchResult(422, "invalid"), None, "unknown", "HTTP 422"),
        (DENIED, PatchResult(429), "unknown", "HTTP 429"),
    ],
    ids=[
        "both-refused",
        "own-refused-no-peer",
        "peer-gone",
        "own-admitted",
        "peer-admitted",
        "admitted-wins-over-unclear",
        "server-error",
        "no-answer",
        "own-node-not-found",
        "invalid",
        "throttled",
    ],
)
def test_which_answers_prove_the_fence(own, peer, state, says):
    results = [(OWN, own)] + ([(PEER, peer)] if peer is not None else [])
    verdict = judge(results)
    assert verdict.state == state
    assert says in verdict.reason


# --- The proof through the node publisher, on the test API server ---------------------------


@pytest.fixture
def nodes(kube):
    server = kube.require_server()
    for name in ("gpu-1", "gpu-2"):
        kube.kubectl(
            "apply", "-f", "-", input=f"apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n"
        )
    server.requests.clear()
    return server


def _fence(kube, **kwargs: Any) -> tuple[NodeFence, Metrics, Health]:
    publisher = NodePublisher(connect(kube.kubeconfig), "gpu-1", backoff=Backoff(attempts=1))
    metrics, health = Metrics(), Health(stall_after=3600)
    fence = NodeFence(
        node_dry_run_patch(publisher),
        "gpu-1",
        registry=metrics.registry,
        hold=health.hold,
        **kwargs,
    )
    return fence, metrics, health


def _state(metrics: Metrics) -> dict[str, float]:
    return {
        state: metrics.registry.get_sample_value("aim_detector_node_fence", {"state": state}) or 0
        for state in ("proven", "open", "unknown", "waived")
    }


def test_an_admitted_dry_run_means_open_and_stores_nothing(kube, nodes):
    """The test API server has no admission policy: both writes go through. Nothing may be
    stored (dryRun=All), readiness stays held, and the metric says open."""
    fence, metrics, health = _fence(kube, peer_node="gpu-2")
    assert health.readiness()[0] is False
    verdict = fence.check()
    assert verdict.state == "open"
    assert _state(metrics) == {"proven": 0, "open": 1, "unknown": 0, "waived": 0}
    ok, reason = health.readiness()
    assert not ok
    assert "node fence open" in reason
    for name in ("gpu-1", "gpu-2"):
        labels = nodes.get_object("v1", "Node", name)["metadata"].get("labels") or {}
        assert FOREIGN_PROBE_LABEL not in labels
        assert PEER_PROBE_LABEL not in labels
    sent = [r for r in nodes.requests.snapshot() if r.verb == "patch"]
    assert [(r.path, r.query.get("dryRun"), r.content_type) for r in sent] == [
        ("/api/v1/nodes/gpu-1", "All", "application/merge-patch+json"),
        ("/api/v1/nodes/gpu-2", "All", "application/merge-patch+json"),
    ]
    assert all(r.query.get("fieldManager") == "aim-detector" for r in sent)


def test_refusals_prove_the_fence_once_and_release_readiness(kube, nodes):
    nodes.faults.fail_next(1, code=403, verb="patch", path_contains="/nodes/gpu-1")
    nodes.faults.fail_next(1, code=403, verb="patch", path_contains="/nodes/gpu-2")
    fence, metrics, health = _fence(kube, peer_node="gpu-2")
    assert fence.check().state == "proven"
    assert _state(metrics)["proven"] == 1
    health.cycle_done({}, None)
    assert health.readiness() == (True, "ok")
    nodes.requests.clear()
    assert fence.check().state == "proven"
    assert nodes.requests.count(verb="patch") == 0, "proven once is proven"


def test_an_unclear_answer_is_retried_after_a_pause(kube, nodes):
    now = [0.0]
    nodes.faults.fail_next(1, code=503, verb="patch", path_contains="/nodes/gpu-1")
    fence, metrics, _ = _fence(kube, retry_after=30, clock=lambda: now[0])
    assert fence.check().state == "unknown"
    assert _state(metrics)["unknown"] == 1
    nodes.faults.fail_next(1, code=403, verb="patch", path_contains="/nodes/gpu-1")
    now[0] = 10
    assert fence.check().state == "unknown", "not again before retry_after"
    assert nodes.requests.count(verb="patch") == 1
    now[0] = 31
    assert fence.check().state == "proven"


def test_a_peer_that_does_not_exist_is_skipped(kube, nodes):
    nodes.faults.fail_next(1, code=403, verb="patch", path_contains="/nodes/gpu-1")
    fence, _, _ = _fence(kube, peer_node="gpu-9")
    verdict = fence.check()
    assert verdict.state == "proven"
    assert "gpu-9 is not visible" in verdict.reason


def test_waived_sends_nothing_and_says_so(kube, nodes, caplog):
    fence, metrics, health = _fence(kube, waived=True)
    assert fence.check() == Verdict("waived", "--waive-node-fence: the fence is not checked")
    assert nodes.requests.count(verb="patch") == 0
    assert _state(metrics)["waived"] == 1
    health.cycle_done({}, None)
    assert health.readiness() == (True, "ok")
    assert any("node fence NOT checked" in r.getMessage() for r in caplog.records)


def test_the_agent_runs_the_fence_in_node_mode_loops_only():
    metrics, health = Metrics(CollectorRegistry()), Health(stall_after=3600)
    publisher = object()  # only node mode's publisher is ever asked for the fence
    base = AgentConfig(mode="node", node_name="gpu-1")
    for config in (
        AgentConfig(mode="nfd"),
        AgentConfig(mode="node", node_name="gpu-1", once=True),
        AgentConfig(mode="node", node_name="gpu-1", cleanup=True),
    ):
        assert make_fence(config, publisher, metrics, health) is None  # type: ignore[arg-type]
    assert make_fence(base, None, metrics, health) is None, "dry run: no publisher"


# --- The real detector on a real kube-apiserver ---------------------------------------------


def _get(url: str) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return None, ""


class Detector:
    """`aim-detector` in node mode, as the DaemonSet runs it, under the bundle's detector
    service account with a token bound to a pod on gpu-1."""

    def __init__(self, plane: Any, tmp_path: Path, *extra: str) -> None:
        pod = pod_on_node(
            plane, "aim-detector", "aim-detector", "gpu-1", f"det-{secrets.token_hex(3)}"
        )
        kubeconfig = service_account_kubeconfig(
            plane, tmp_path / "detector.kubeconfig", "aim-detector", "aim-detector", bound_pod=pod
        )
        self.port = free_port()
        host = build_host(tmp_path, "mi300x-8-cpx-nps4")
        self.labels = expected_labels("mi300x-8-cpx-nps4")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIM_DETECTOR_")}
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "detector", "--node-name", "gpu-1",
                "--kubeconfig", str(kubeconfig), "--host-root", str(host),
                "--gpu-backend", "sysfs", "--interval", "0.5",
                "--metrics-address", "127.0.0.1", "--metrics-port", str(self.port), *extra,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.stderr = ""

    def get(self, path: str) -> tuple[int | None, str]:
        return _get(f"http://127.0.0.1:{self.port}{path}")

    def wait_for(self, check: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{what}; detector log:\n{self.stderr}")
            time.sleep(0.1)

    def fence_state(self) -> str | None:
        _, text = self.get("/metrics")
        for line in text.splitlines():
            if line.startswith("aim_detector_node_fence{") and line.endswith(" 1.0"):
                return line.split('state="', 1)[1].split('"', 1)[0]
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()


def _node_labels(plane: Any) -> dict[str, str]:
    status, node = plane.request("GET", "/api/v1/nodes/gpu-1")
    assert status == 200, node
    return dict(node["metadata"].get("labels") or {})


def _install_bundle(real_kube: Any) -> Any:
    plane = real_kube.require_plane()
    install(real_kube, render(ROOT / "daemonset"))
    for node in ("gpu-1", "gpu-2"):
        add_node(plane, node)
    return plane


@pytest.mark.cluster
@pytest.mark.slow
def test_detector_proves_the_fence_and_reports_ready(real_kube, tmp_path):
    plane = _install_bundle(real_kube)
    pod = pod_on_node(plane, "aim-detector", "aim-detector", "gpu-1", "fence-check")
    token = service_account_token(plane, "aim-detector", "aim-detector", bound_pod=pod)
    wait_for_policy(plane, token, "gpu-1")
    detector = Detector(plane, tmp_path, "--fence-peer-node", "gpu-2")
    try:
        detector.wait_for(lambda: detector.get("/readyz")[0] == 200, "never ready")
        assert detector.fence_state() == "proven"
        labels = _node_labels(plane)
        assert {k: v for k, v in labels.items() if k in detector.labels} == detector.labels
        assert FOREIGN_PROBE_LABEL not in labels
    finally:
        detector.stop()
    assert 'msg="node fence proven"' in detector.stderr


@pytest.mark.cluster
@pytest.mark.slow
def test_without_the_policy_the_detector_labels_but_refuses_readiness(real_kube, tmp_path):
    """The binding is gone (or never applied: an older cluster, a broken overlay): the detector
    still publishes its own labels, but /readyz stays 503 with the reason, the metric says
    open, and the log says why."""
    plane = _install_bundle(real_kube)
    real_kube.kubectl("delete", "validatingadmissionpolicybinding", "aim-detector-own-node-labels")
    pod = pod_on_node(plane, "aim-detector", "aim-detector", "gpu-1", "fence-check")
    token = service_account_token(plane, "aim-detector", "aim-detector", bound_pod=pod)
    deadline = time.monotonic() + 20
    while dry_run_label(plane, token, "gpu-1", FOREIGN_LABEL)[0] != 200:
        assert time.monotonic() < deadline, "the policy never stopped applying"
        time.sleep(0.2)
    detector = Detector(plane, tmp_path)
    try:
        detector.wait_for(lambda: detector.fence_state() == "open", "the fence never read open")
        detector.wait_for(
            lambda: set(detector.labels) <= set(_node_labels(plane)), "labels never published"
        )
        status, body = detector.get("/readyz")
        assert status == 503
        assert "node fence open" in body
        assert "was admitted" in body
        assert FOREIGN_PROBE_LABEL not in _node_labels(plane), "a dry run stores nothing"
    finally:
        detector.stop()
    assert 'msg="node fence not proven, not ready"' in detector.stderr
    assert "state=open" in detector.stderr


@pytest.mark.cluster
@pytest.mark.slow
def test_waiving_the_fence_reports_ready_loudly(real_kube, tmp_path):
    plane = _install_bundle(real_kube)
    real_kube.kubectl("delete", "validatingadmissionpolicybinding", "aim-detector-own-node-labels")
    detector = Detector(plane, tmp_path, "--waive-node-fence")
    try:
        detector.wait_for(lambda: detector.get("/readyz")[0] == 200, "never ready")
        assert detector.fence_state() == "waived"
    finally:
        detector.stop()
    assert "node fence NOT checked (--waive-node-fence)" in detector.stderr
