"""What only a real kube-apiserver can show: the install bundle applied whole, and both agents
running with their own ServiceAccounts' tokens under the bundle's RBAC and admission policy.

The detector's token comes from the TokenRequest API bound to a Pod whose `spec.nodeName` is
its node, exactly what the kubelet mounts, so it carries the node-name claim the policy checks.
Every request either agent makes is read back from the API server's audit log: all must be
allowed, and every attack a compromised detector could try must be denied by the real server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from detector.labels import LABEL_PREFIX, OWNED_LABELS_ANNOTATION, accelerator_label_key
from scripts.validate_manifests import VARIANTS, applied_name, render
from tests.conftest import Kube
from tests.controller_support import create_node, gpu_labels, node_obj, wait_for
from tests.controlplane.users import (
    pod_on_node,
    service_account_kubeconfig,
    service_account_token,
)
from tests.hosttrees import SMALL_CPU, build_host

REPO = Path(__file__).resolve().parent.parent
#: The detector and the matcher live in namespaces of their own (Pod Security levels).
DETECTOR_NAMESPACE = "aim-detector"
NAMESPACE = "aim-system"
DETECTOR = f"system:serviceaccount:{DETECTOR_NAMESPACE}:aim-detector"
MATCHER = f"system:serviceaccount:{NAMESPACE}:aim-matcher"
#: The one warning the bundle is expected to print: the detector's namespace warns at
#: "restricted", which its host paths (and, in NFD mode, its init step's uid 0) break.
EXPECTED_WARNING = re.compile(
    r'^Warning: would violate PodSecurity "restricted:latest": .*hostPath.*$', re.M
)
MI300X = accelerator_label_key("MI300X")

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.pop("KUBECONFIG", None)
    return env


def _apply_bundle(kube: Kube, variant: str = "default") -> subprocess.CompletedProcess[str]:
    return kube.kubectl("apply", "--server-side", "-k", str(REPO / VARIANTS[variant]))


def _requests_by(plane: Any, user: str, since: int = 0) -> list[dict[str, Any]]:
    """`user`'s requests in the audit log from event number `since` on (the log spans the
    whole run: other tests act as the same service accounts)."""
    return [
        e
        for e in plane.audit_events()[since:]
        if e["user"]["username"] == user and e.get("stage") == "ResponseComplete"
    ]


def _denied(events: list[dict[str, Any]]) -> list[str]:
    return [
        f"{e['verb']} {e['requestURI']} -> {e['responseStatus']['code']}"
        f" {e['responseStatus'].get('message', '')}"
        for e in events
        if e["responseStatus"]["code"] in (401, 403)
    ]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_install_bundle_applies_whole_on_kube_apiserver(real_kube, variant):
    result = _apply_bundle(real_kube, variant)
    # Every rendered object is created, and nothing warns (PodSecurity would, for a pod
    # template its namespace's level does not admit).
    applied = set(result.stdout.split())
    for obj in render(REPO / VARIANTS[variant]):
        assert any(applied_name(obj).split("/", 1)[1] in line for line in applied), obj
    assert "Warning" not in EXPECTED_WARNING.sub("", result.stderr), result.stderr
    policies = json.loads(
        real_kube.kubectl("get", "validatingadmissionpolicies,validatingadmissionpolicybindings",
                          "-o", "json").stdout
    )["items"]  # fmt: skip
    kinds = {p["kind"] for p in policies if p["metadata"]["name"].startswith("aim-detector")}
    assert kinds == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    # The policy's CEL compiled and type-checked on the real server.
    for p in policies:
        if p["kind"] == "ValidatingAdmissionPolicy":
            assert not (p.get("status") or {}).get("typeChecking", {}).get("expressionWarnings")
    # The CRDs as a user sees them, served by the real server.
    explain = real_kube.kubectl("explain", "aimclusterprofile.spec.acceleratorModel").stdout
    assert "acceleratorModel" in explain
    assert "FIELD" in explain
    got = real_kube.kubectl("get", "aimclusterprofiles")
    assert "No resources found" in got.stderr


def _policy_in_force(plane: Any, token: str) -> float:
    """Seconds until the admission policy denies a foreign-label patch (as a dry run).

    A ValidatingAdmissionPolicy is enforced only once the API server's policy informer has
    seen it and its binding: for a moment after `kubectl apply` nothing is checked. This is
    why the detector proves the fence itself before it reports ready.
    """
    started = time.monotonic()
    path = "/api/v1/nodes/gpu-a?dryRun=All"
    body = {"metadata": {"labels": {"example.com/fence": "x"}}}
    wait_for(
        lambda: plane.request("PATCH", path, body, token=token)[0] == 403,
        timeout=30,
        what="the admission policy in force",
    )
    return time.monotonic() - started


def _detector_once(kube: Kube, kubeconfig: Path, node: str, root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "detector", "--once", "--node-name", node,
         "--kubeconfig", str(kubeconfig), "--host-root", str(root), "--gpu-backend", "sysfs",
         "--metrics-port", "0"],
        capture_output=True, text=True, timeout=60, env=_env(), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"aim-detector --once: {proc.stderr}{proc.stdout}"


#: What a compromised detector on node gpu-a might try, with its own bound token.
ATTACKS = [
    ("label another Node", "PATCH", "/api/v1/nodes/gpu-b",
     {"metadata": {"labels": {MI300X: "8"}}}),
    ("add a label outside the prefix", "PATCH", "/api/v1/nodes/gpu-a",
     {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}}),
    ("remove a label outside the prefix", "PATCH", "/api/v1/nodes/gpu-a",
     {"metadata": {"labels": {"kubernetes.io/hostname": None}}}),
    ("add a foreign annotation", "PATCH", "/api/v1/nodes/gpu-a",
     {"metadata": {"annotations": {"example.com/x": "y"}}}),
    ("cordon its Node", "PATCH", "/api/v1/nodes/gpu-a", {"spec": {"unschedulable": True}}),
    ("taint its Node", "PATCH", "/api/v1/nodes/gpu-a",
     {"spec": {"taints": [{"key": "evict", "effect": "NoExecute"}]}}),
    ("write nodes/status", "PATCH", "/api/v1/nodes/gpu-a/status",
     {"status": {"allocatable": {"amd.com/gpu": "64"}}}),
    ("delete a Node", "DELETE", "/api/v1/nodes/gpu-b", None),
    ("create a Node", "POST", "/api/v1/nodes", {"metadata": {"name": "rogue"}}),
    ("read a Secret", "GET", f"/api/v1/namespaces/{DETECTOR_NAMESPACE}/secrets", None),
]  # fmt: skip


def test_detector_under_its_own_bound_token(real_kube, tmp_path):
    plane = real_kube.require_plane()
    since = len(plane.audit_events())
    _apply_bundle(real_kube)
    core: Any = client.CoreV1Api(real_kube.api_client())
    for name in ("gpu-a", "gpu-b"):
        create_node(core, node_obj(name, gpus=8))
    pod = pod_on_node(plane, DETECTOR_NAMESPACE, "aim-detector", "gpu-a", "aim-detector-gpu-a")
    kubeconfig = service_account_kubeconfig(
        plane, tmp_path / "detector.kubeconfig", DETECTOR_NAMESPACE, "aim-detector", bound_pod=pod
    )

    # On a host with no AMD GPU or EPYC CPU it leaves its mark: the ownership annotation, empty
    # (the fence admits that write), so the matcher can tell "found nothing" from "not run".
    _detector_once(real_kube, kubeconfig, "gpu-a", build_host(tmp_path / "hosts", "intel-xeon"))
    node = core.read_node("gpu-a")
    assert node.metadata.annotations[OWNED_LABELS_ANNOTATION] == ""
    assert not any(k.startswith(LABEL_PREFIX) for k in node.metadata.labels)
    root = build_host(tmp_path / "hosts", "mi300x-8-spx-nps1", cpu=SMALL_CPU)
    _detector_once(real_kube, kubeconfig, "gpu-a", root)
    node = core.read_node("gpu-a")
    assert node.metadata.labels[MI300X] == "8"
    assert MI300X in node.metadata.annotations[OWNED_LABELS_ANNOTATION]
    # Every call the detector made was allowed.
    made = _requests_by(plane, DETECTOR, since)
    assert {e["verb"] for e in made} >= {"get", "patch"}, made
    assert _denied(made) == []

    before = {n: core.read_node(n) for n in ("gpu-a", "gpu-b")}
    token = service_account_token(plane, DETECTOR_NAMESPACE, "aim-detector", bound_pod=pod)
    _policy_in_force(plane, token)
    for what, method, path, body in ATTACKS:
        status, answer = plane.request(method, path, body, token=token)
        assert status == 403, f"{what}: {status} {answer}"
    # A token without the node-name claim cannot write even its "own" labels.
    unbound = service_account_token(plane, DETECTOR_NAMESPACE, "aim-detector")
    status, answer = plane.request(
        "PATCH", "/api/v1/nodes/gpu-a", {"metadata": {"labels": {MI300X: "9"}}}, token=unbound
    )
    assert status == 403, answer
    assert "bound to" in answer["message"]

    # Nothing changed (the real server's own not-ready taint included).
    after = {n: core.read_node(n) for n in ("gpu-a", "gpu-b")}
    for name, node in after.items():
        assert node.metadata.resource_version == before[name].metadata.resource_version, name
    assert not any(k.startswith(LABEL_PREFIX) for k in after["gpu-b"].metadata.labels)
    assert core.list_node(field_selector="metadata.name=rogue").items == []


def test_policy_denials_name_the_rule(real_kube):
    """The messages a detector (or its operator) reads when the policy denies a request."""
    plane = real_kube.require_plane()
    _apply_bundle(real_kube)
    core: Any = client.CoreV1Api(real_kube.api_client())
    create_node(core, node_obj("gpu-a", gpus=8))
    create_node(core, node_obj("gpu-b", gpus=8))
    pod = pod_on_node(plane, DETECTOR_NAMESPACE, "aim-detector", "gpu-a", "aim-detector-gpu-a")
    token = service_account_token(plane, DETECTOR_NAMESPACE, "aim-detector", bound_pod=pod)
    print(f"admission policy in force {_policy_in_force(plane, token):.2f}s after apply")
    expectations = {
        "label another Node": "bound to",
        "add a label outside the prefix": "labels under",
        "cordon its Node": "spec",
        "write nodes/status": "nodes/status",
    }
    for what, method, path, body in ATTACKS:
        if what not in expectations:
            continue
        status, answer = plane.request(method, path, body, token=token)
        assert status == 403
        assert expectations[what] in answer["message"], (what, answer["message"])


class Matcher:
    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.log_path = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "matcher", "run", "--kubeconfig", str(kubeconfig),
             "--identity", "matcher-0", "--lease-namespace", NAMESPACE,
             "--config-map-namespace", NAMESPACE, "--config-map", "aim-matcher-config",
             "--health-addr", "127.0.0.1:0", "--lease-duration", "3", "--renew-deadline", "2",
             "--retry-period", "0.3"],
            stdout=self._log, stderr=subprocess.STDOUT, env=_env(),
        )  # fmt: skip

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            self._log.close()


def _status(core_custom: Any, name: str) -> str | None:
    obj = core_custom.get_cluster_custom_object(
        "aim.eai.amd.com", "v1alpha2", "aimclusterprofiles", name
    )
    return (obj.get("status") or {}).get("status")


def test_matcher_under_its_own_token(real_kube, tmp_path):
    plane = real_kube.require_plane()
    since = len(plane.audit_events())
    _apply_bundle(real_kube)
    api = real_kube.api_client()
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    create_node(core, node_obj("mi300x-0", gpu_labels(MI300X), gpus=8))
    for ns in ("ml-team", "dev-team"):
        core.create_namespace({"metadata": {"name": ns}})
    real_kube.kubectl("apply", "-f", str(REPO / "examples" / "profiles"))
    kubeconfig = service_account_kubeconfig(
        plane, tmp_path / "matcher.kubeconfig", NAMESPACE, "aim-matcher"
    )
    matcher = Matcher(kubeconfig, tmp_path / "matcher.log")
    try:
        wait_for(
            lambda: _status(custom, "qwen-qwen3-32b-mi300x-lat-fp8") == "Ready",
            timeout=30,
            what="the matcher writes a status with its own token",
        )
        wait_for(
            lambda: _status(custom, "qwen-qwen3-32b-mi355x-lat-fp4") == "NotAvailable",
            timeout=30,
            what="the MI355X profile NotAvailable",
        )
        # A flip: an MI355X node joins, the profile becomes Ready and an Event is recorded.
        create_node(core, node_obj("mi355x-0", gpu_labels(accelerator_label_key("MI355X")), gpus=8))
        wait_for(
            lambda: _status(custom, "qwen-qwen3-32b-mi355x-lat-fp4") == "Ready",
            timeout=30,
            what="the MI355X profile flips to Ready",
        )
        wait_for(
            lambda: any(
                e["verb"] == "create" and e["objectRef"]["resource"] == "events"
                for e in _requests_by(plane, MATCHER, since)
            ),
            timeout=15,
            what="an Event for the flip",
        )
    finally:
        code = matcher.stop()
    log = matcher.log_path.read_text()
    assert code == 0, log
    made = _requests_by(plane, MATCHER, since)
    assert _denied(made) == [], log
    created = {
        (e["objectRef"]["resource"], e["responseStatus"]["code"])
        for e in made
        if e["verb"] == "create"
    }
    # The Lease and the Events were valid objects to the real server.
    assert ("leases", 201) in created
    assert ("events", 201) in created
    assert not [e for e in made if e["verb"] == "create" and e["responseStatus"]["code"] >= 400]
    patches = [e for e in made if e["verb"] == "patch"]
    assert patches
    assert all(e["objectRef"].get("subresource") == "status" for e in patches)
    assert all(e["responseStatus"]["code"] < 300 for e in patches), patches
