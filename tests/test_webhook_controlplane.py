"""The webhook end to end on the real control plane (kube-apiserver v1.34 with etcd), as a user
meets it: the whole bundle applied, the matcher running as its own ServiceAccount, and pods
created through the real API server, which calls the webhook and stores what it answers.

As envtest does (controller-runtime pkg/envtest/webhook.go), the shipped configuration is
rewritten to a loopback URL, because the plane's kube-apiserver runs on 127.0.0.1 with no
Service routing; everything else is as shipped: the two objectSelectors, the namespace
exclusions, failurePolicy Fail, and the caBundle, which the matcher's leader writes itself (and
rewrites on rotation) into the real object. The plane has no controller-manager, so a
Deployment creates no pods: the test creates the ReplicaSet and its Pod the way the deployment
and replicaset controllers would, from the example Deployment's template.

``AIM_WEBHOOK_DOCS=1`` prints what docs/deploy.md shows of the run.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from matcher.core.admission import (
    AIM_ID_KEY,
    PROFILE_KEY,
    RESOLVED_GENERATION_KEY,
    RESOLVED_PROFILE_KEY,
    RESOLVED_STATUS_KEY,
    SELECTION_REASON_KEY,
)
from matcher.webhook import certs
from tests.conftest import Kube
from tests.controller_support import MI300X, create_node, gpu_labels, node_obj, wait_for
from tests.controlplane.process import free_port
from tests.controlplane.users import service_account_kubeconfig

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "aim-system"
MATCHER = f"system:serviceaccount:{NAMESPACE}:aim-matcher"
SECRET = "aim-matcher-webhook-tls"
DOCS = os.environ.get("AIM_WEBHOOK_DOCS") == "1"

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def _show(title: str, text: str) -> None:
    if DOCS:
        print(f"\n===== {title}\n{text.rstrip()}")


class Matcher:
    """``aim-matcher run`` with the bundle's flags, as the ServiceAccount aim-system/aim-matcher,
    its webhook on a loopback port."""

    def __init__(
        self, kubeconfig: Path, log: Path, webhook_port: int, extra: tuple[str, ...] = ()
    ) -> None:
        self.health_port = free_port()
        self.log_path = log
        self._log = log.open("w")
        env = {**os.environ, "PYTHONPATH": str(REPO), "POD_NAMESPACE": NAMESPACE}
        env.pop("KUBECONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "matcher", "run", "--kubeconfig", str(kubeconfig),
             "--identity", "matcher-0", "--config-map", "aim-matcher-config",
             "--health-addr", f"127.0.0.1:{self.health_port}", "--lease-duration", "3",
             "--renew-deadline", "2", "--retry-period", "0.3",
             "--webhook-addr", f"127.0.0.1:{webhook_port}", "--webhook-cert-host", "127.0.0.1",
             *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.health_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            self._log.close()


def _loopback(kube: Kube, port: int, ca_bundle: bytes | None = None) -> None:
    """Point both webhooks at the loopback listener instead of the Service (as envtest does),
    trusting ``ca_bundle`` when given (else the matcher's leader writes the caBundle)."""
    ops = []
    for index in (0, 1):
        ops += [
            {"op": "remove", "path": f"/webhooks/{index}/clientConfig/service"},
            {"op": "add", "path": f"/webhooks/{index}/clientConfig/url",
             "value": f"https://127.0.0.1:{port}/mutate-pods"},
        ]  # fmt: skip
        if ca_bundle is not None:
            ops.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle",
                 "value": base64.b64encode(ca_bundle).decode()}
            )  # fmt: skip
    kube.kubectl(
        "patch", "mutatingwebhookconfiguration", "aim-matcher", "--type=json", "-p", json.dumps(ops)
    )


def _bundles(admission: Any) -> list[bytes]:
    obj = admission.read_mutating_webhook_configuration("aim-matcher")
    return [base64.b64decode(w.client_config.ca_bundle or "") for w in obj.webhooks]


def _secret(core: Any) -> dict[str, bytes]:
    data = core.read_namespaced_secret(SECRET, NAMESPACE).data or {}
    return {k: base64.b64decode(v) for k, v in data.items()}


def _replicaset_and_pod(apps: Any, core: Any, deployment: dict[str, Any]) -> dict[str, Any]:
    """What the deployment and replicaset controllers would create for ``deployment``: a
    ReplicaSet owned by it, and one Pod from the ReplicaSet's template (generateName)."""
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    stored = apps.read_namespaced_deployment(name, namespace)
    template = json.loads(json.dumps(deployment["spec"]["template"]))
    pod_hash = "5d8c7b9f64"
    template["metadata"]["labels"]["pod-template-hash"] = pod_hash
    selector = {**deployment["spec"]["selector"]["matchLabels"], "pod-template-hash": pod_hash}
    rs_name = f"{name}-{pod_hash}"
    replicaset = apps.create_namespaced_replica_set(
        namespace,
        {
            "metadata": {
                "name": rs_name,
                "labels": template["metadata"]["labels"],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                     "uid": stored.metadata.uid, "controller": True,
                                     "blockOwnerDeletion": True}],
            },
            "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": template},
        },
    )  # fmt: skip
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **template["metadata"],
            "generateName": f"{rs_name}-",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                                 "uid": replicaset.metadata.uid, "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": template["spec"],
    }  # fmt: skip
    created = core.create_namespaced_pod(namespace, pod)
    answer: dict[str, Any] = core.api_client.sanitize_for_serialization(created)
    return answer


def _bare_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml-team", "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]},
    }


def _create(kube: Kube, pod: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kube.kubectl("create", "-f", "-", input=json.dumps(pod), check=False)


def test_pods_get_their_profile_from_the_real_api_server(real_kube, tmp_path):
    plane = real_kube.require_plane()
    since = len(plane.audit_events())
    real_kube.kubectl("apply", "--server-side", "-k", str(REPO / "daemonset"))
    port = free_port()
    _loopback(real_kube, port)
    api = real_kube.api_client()
    core: Any = client.CoreV1Api(api)
    apps: Any = client.AppsV1Api(api)
    admission: Any = client.AdmissionregistrationV1Api(api)
    create_node(core, node_obj("mi300x-0", gpu_labels(MI300X), gpus=8))
    for ns in ("ml-team", "dev-team"):
        core.create_namespace({"metadata": {"name": ns}})
        # No controller-manager: the ServiceAccount admission plugin needs "default" to exist.
        core.create_namespaced_service_account(ns, {"metadata": {"name": "default"}})
    real_kube.kubectl("apply", "-f", str(REPO / "examples" / "profiles"))

    # Opted-in pods with the webhook not running yet: refused (failurePolicy Fail); any other
    # pod is untouched (the objectSelector never sends it).
    refused = _create(real_kube, _bare_pod("early", {PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}))
    assert refused.returncode != 0
    assert 'failed calling webhook "profile.pods.aim.eai.amd.com"' in refused.stderr
    _show("kubectl create (the webhook not running)", refused.stderr)
    plain = _create(real_kube, _bare_pod("plain", {"app": "other"}))
    assert plain.returncode == 0, plain.stderr

    kubeconfig = service_account_kubeconfig(
        plane, tmp_path / "matcher.kubeconfig", NAMESPACE, "aim-matcher"
    )
    matcher = Matcher(kubeconfig, tmp_path / "matcher.log", port)
    try:
        wait_for(matcher.ready, 30, "the matcher ready (caches synced, certificate loaded)")
        data = _secret(core)
        wait_for(lambda: _bundles(admission) == [data[certs.CA_CERT]] * 2, 10, "the caBundle")

        # The example Deployment, its ReplicaSet and Pod: the stored pod carries the profile.
        deployment = yaml.safe_load((REPO / "examples" / "deploy" / "qwen3-32b.yaml").read_text())
        real_kube.kubectl("apply", "-f", str(REPO / "examples" / "deploy" / "qwen3-32b.yaml"))
        pod = _replicaset_and_pod(apps, core, deployment)
        spec = pod["spec"]
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"] == [
            {"matchExpressions": [
                {"key": MI300X, "operator": "Exists"},
                {"key": "feature.node.kubernetes.io/aim-accelerator.partitioning-scheme.default",
                 "operator": "Exists"},
            ]}
        ]  # fmt: skip
        assert spec["containers"][0]["resources"] == {
            "limits": {"amd.com/gpu": "1"},
            "requests": {"amd.com/gpu": "1", "cpu": "4", "memory": "32Gi"},
        }
        annotations = pod["metadata"]["annotations"]
        assert (
            annotations[RESOLVED_PROFILE_KEY] == "AIMClusterProfile/qwen-qwen3-32b-mi300x-lat-fp8"
        )
        assert annotations[RESOLVED_STATUS_KEY] == "Ready"
        assert annotations[RESOLVED_GENERATION_KEY] == "1"
        name = pod["metadata"]["name"]
        _show(
            "kubectl -n ml-team get pod -o yaml (metadata.annotations, spec.affinity, resources)",
            yaml.safe_dump(
                {
                    "metadata": {"name": name, "annotations": annotations},
                    "spec": {
                        "affinity": spec["affinity"],
                        "containers": [
                            {"name": c["name"], "resources": c["resources"]}
                            for c in spec["containers"]
                        ],
                    },
                },
                sort_keys=False,
            ),
        )

        # Automatic selection through the same ranking as `aim-matcher select`.
        auto = yaml.safe_load((REPO / "examples" / "deploy" / "qwen3-32b-auto.yaml").read_text())
        real_kube.kubectl("apply", "-f", str(REPO / "examples" / "deploy" / "qwen3-32b-auto.yaml"))
        chosen = _replicaset_and_pod(apps, core, auto)
        recorded = chosen["metadata"]["annotations"]
        assert recorded[RESOLVED_PROFILE_KEY] == "AIMClusterProfile/qwen-qwen3-32b-mi300x-lat-fp8"
        assert recorded[SELECTION_REASON_KEY].startswith("aimId qwen/qwen3-32b: cluster, primary")
        _show("selection annotations", yaml.safe_dump(recorded, sort_keys=False))

        # A NotAvailable profile: refused with the profile's own reason.
        refused = _create(
            real_kube, _bare_pod("fp4", {PROFILE_KEY: "qwen-qwen3-32b-mi355x-lat-fp4"})
        )
        assert refused.returncode != 0
        assert (
            'admission webhook "profile.pods.aim.eai.amd.com" denied the request: '
            "AIMClusterProfile qwen-qwen3-32b-mi355x-lat-fp4 is NotAvailable: No node has label "
            f"{MI300X.replace('MI300X', 'MI355X')}"
        ) in refused.stderr
        _show("kubectl create (a NotAvailable profile)", refused.stderr)
        unknown = _create(real_kube, _bare_pod("typo", {AIM_ID_KEY: "qwen--qwen3-23b"}))
        assert "no profile has aimId qwen/qwen3-23b" in unknown.stderr
        _show("kubectl create (an aimId no profile has)", unknown.stderr)

        # A warning reaches the client: the container's own GPU count is kept over the profile's.
        own = _bare_pod("own-gpus", {PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"})
        own["spec"]["containers"][0]["resources"] = {"limits": {"amd.com/gpu": "2"}}
        warned = _create(real_kube, own)
        assert warned.returncode == 0, warned.stderr
        # The API server defaulted the request from the limit before calling the webhook.
        assert warned.stderr == (
            "Warning: container main sets amd.com/gpu requests 2, limits 2; kept over the "
            "profile's requests 1, limits 1\n"
        )
        _show("kubectl create (own GPU count)", warned.stderr + warned.stdout)
        stored = core.read_namespaced_pod("own-gpus", "ml-team")
        assert stored.spec.containers[0].resources.requests["amd.com/gpu"] == "2"

        # Rotation on the real server: a CA near its end is replaced, the new caBundle (both
        # CAs) is patched in, a pair signed by the new CA is served, and admissions go on.
        aging = certs.make_ca(datetime.now(UTC) - timedelta(days=3000))
        hosts = ["aim-matcher-webhook.aim-system.svc", "127.0.0.1"]
        aging_pair = certs.make_serving(aging, hosts, datetime.now(UTC))
        core.patch_namespaced_secret(
            SECRET,
            NAMESPACE,
            {"data": {k: base64.b64encode(v).decode() for k, v in {
                certs.CA_CERT: aging.cert_pem, certs.CA_KEY: aging.key_pem,
                certs.TLS_CERT: aging_pair.cert_pem, certs.TLS_KEY: aging_pair.key_pem}.items()}},
        )  # fmt: skip
        rotated = wait_for(
            lambda: (d := _secret(core))[certs.TLS_CERT] != aging_pair.cert_pem and d,
            15,
            "the matcher rotates the CA and the serving pair",
        )
        bundle = rotated[certs.CA_CERT]
        assert len(certs.split_pems(bundle)) == 2
        wait_for(lambda: _bundles(admission) == [bundle, bundle], 10, "the new caBundle")
        after = wait_for(
            lambda: (r := _create(real_kube, _bare_pod("after-rotation", {
                PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}))).returncode == 0 and r,
            15,
            "an admission through the rotated certificate",
        )  # fmt: skip
        assert after.returncode == 0
    finally:
        code = matcher.stop()
    log = matcher.log_path.read_text()
    assert code == 0, log

    # The webhook down: a pod without the label is still untouched.
    untouched = _create(real_kube, _bare_pod("plain-2", {"app": "other"}))
    assert untouched.returncode == 0, untouched.stderr
    stored = core.read_namespaced_pod("plain-2", "ml-team")
    assert stored.spec.affinity is None
    assert stored.metadata.annotations is None

    # Every call the matcher made under its own RBAC (Secret and configuration by name) passed.
    made = [
        e
        for e in plane.audit_events()[since:]
        if e["user"]["username"] == MATCHER and e.get("stage") == "ResponseComplete"
    ]
    denied = [e["requestURI"] for e in made if e["responseStatus"]["code"] in (401, 403)]
    assert denied == [], log
    writes = {(e["objectRef"]["resource"], e["verb"]) for e in made if e["verb"] == "patch"}
    assert {("secrets", "patch"), ("mutatingwebhookconfigurations", "patch")} <= writes
