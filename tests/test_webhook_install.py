"""The webhook's install: the cert-manager component rendered and checked, applied whole on
kube-apiserver, and the matcher serving cert-manager's Secret under the component's smaller
RBAC there, with a test CA in the caBundle as envtest (or cainjector) would put it.

cert-manager itself does not run here: its two kinds are served by stand-in CRDs that accept
any spec (tests/controlplane has no cert-manager), so what is checked is everything of ours
around them, and the Certificate's fields against what the matcher needs."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from matcher.controller.webhook import WebhookSettings
from matcher.core.admission import PROFILE_KEY, RESOLVED_PROFILE_KEY
from matcher.webhook import certs
from scripts.validate_manifests import (
    check_objects,
    client_dry_run,
    describe,
    render,
    serve_builtin_kinds,
)
from tests.apiserver.resources import ResourceType
from tests.controller_support import MI300X, create_node, gpu_labels, node_obj, wait_for
from tests.controlplane.process import free_port
from tests.controlplane.users import service_account_kubeconfig
from tests.test_webhook_controlplane import NAMESPACE, SECRET, Matcher, _bare_pod, _loopback

REPO = Path(__file__).resolve().parent.parent
VARIANT = REPO / "examples" / "install" / "cert-manager"
CERT_MANAGER_KINDS = {"Issuer", "Certificate"}
MATCHER = f"system:serviceaccount:{NAMESPACE}:aim-matcher"


def rendered() -> list[dict[str, Any]]:
    return render(VARIANT)


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_the_cert_manager_component_renders_and_validates():
    objects = rendered()
    ours = [o for o in objects if o["kind"] not in CERT_MANAGER_KINDS]
    theirs = {describe(o) for o in objects if o["kind"] in CERT_MANAGER_KINDS}
    assert theirs == {
        "Issuer aim-system/aim-matcher-webhook",
        "Certificate aim-system/aim-matcher-webhook",
    }
    # Every problem is about cert-manager's kinds being unknown to Kubernetes' own schemas.
    problems = check_objects(objects)
    assert [p for p in problems if not any(p.startswith(t) for t in theirs)] == []
    assert check_objects(ours) == [
        "Deployment aim-system/aim-matcher: serves the webhook but a Certificate writing "
        f"Secret {SECRET} is missing"
    ]


def test_the_component_hands_the_certificate_to_cert_manager():
    objects = rendered()
    assert not [o for o in objects if o["kind"] == "Secret"], "cert-manager creates the Secret"
    configuration = one(objects, "MutatingWebhookConfiguration", "aim-matcher")
    assert configuration["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NAMESPACE}/aim-matcher-webhook"
    }
    args = one(objects, "Deployment", "aim-matcher")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert "--webhook-addr=:9443" in args
    assert args[-1] == "--webhook-certs=external"
    # RBAC: only reading its Secret; nothing on the configuration.
    assert one(objects, "Role", "aim-matcher-webhook")["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET],
         "verbs": ["list", "watch"]}
    ]  # fmt: skip
    assert not [o for o in objects if o["metadata"]["name"] == "aim-matcher-webhook"
                and o["kind"] in ("ClusterRole", "ClusterRoleBinding")]  # fmt: skip
    certificate = one(objects, "Certificate", "aim-matcher-webhook")
    issuer = one(objects, "Issuer", "aim-matcher-webhook")
    spec = certificate["spec"]
    assert spec["secretName"] == SECRET
    assert spec["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    assert issuer["spec"] == {"selfSigned": {}}
    # The names the API server dials (the Service's), as the matcher's own certificate has.
    assert spec["dnsNames"] == list(WebhookSettings(namespace=NAMESPACE).hosts[:2])
    assert "server auth" in spec["usages"]


def _stand_in_crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                      "listKind": f"{kind}List"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                "openAPIV3Schema": {"type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }  # fmt: skip


@pytest.mark.cluster
def test_client_dry_run(kube):
    if kube.server is not None:
        serve_builtin_kinds(kube.server)
        for kind, plural in (("Issuer", "issuers"), ("Certificate", "certificates")):
            kube.server.registry.register(
                ResourceType(group="cert-manager.io", versions=("v1",), storage_version="v1",
                             kind=kind, plural=plural, singular=kind.lower(), namespaced=True)
            )  # fmt: skip
    else:
        _apply_stand_ins(kube)
    assert client_dry_run(VARIANT, kube.kubeconfig) == []


def _apply_stand_ins(kube: Any) -> None:
    for kind, plural in (("Issuer", "issuers"), ("Certificate", "certificates")):
        kube.kubectl("apply", "-f", "-", input=json.dumps(_stand_in_crd(kind, plural)))
        kube.kubectl(
            "wait", "--for=condition=Established", f"crd/{plural}.cert-manager.io", "--timeout=60s"
        )


@pytest.mark.cluster
@pytest.mark.slow
def test_the_matcher_serves_cert_manager_s_secret_under_the_component_s_rbac(real_kube, tmp_path):
    plane = real_kube.require_plane()
    since = len(plane.audit_events())
    _apply_stand_ins(real_kube)
    real_kube.kubectl("apply", "--server-side", "-k", str(VARIANT))
    api = real_kube.api_client()
    core: Any = client.CoreV1Api(api)
    # What cert-manager would write (a kubernetes.io/tls Secret) and cainjector inject: here a
    # throwaway test CA for the loopback address, as envtest provisions one.
    now = datetime.now(UTC)
    ca = certs.make_ca(now)
    pair = certs.make_serving(ca, ["127.0.0.1"], now)
    core.create_namespaced_secret(
        NAMESPACE,
        {"metadata": {"name": SECRET}, "type": "kubernetes.io/tls",
         "data": {"tls.crt": base64.b64encode(pair.cert_pem).decode(),
                  "tls.key": base64.b64encode(pair.key_pem).decode(),
                  "ca.crt": base64.b64encode(ca.cert_pem).decode()}},
    )  # fmt: skip
    port = free_port()
    _loopback(real_kube, port, ca_bundle=ca.cert_pem)
    create_node(core, node_obj("mi300x-0", gpu_labels(MI300X), gpus=8))
    core.create_namespace({"metadata": {"name": "ml-team"}})
    core.create_namespaced_service_account("ml-team", {"metadata": {"name": "default"}})
    real_kube.kubectl(
        "apply", "-f", str(REPO / "examples" / "profiles" / "qwen-qwen3-32b-mi300x-lat-fp8.yaml")
    )
    kubeconfig = service_account_kubeconfig(
        plane, tmp_path / "matcher.kubeconfig", NAMESPACE, "aim-matcher"
    )
    matcher = Matcher(kubeconfig, tmp_path / "matcher.log", port, ("--webhook-certs=external",))
    try:
        wait_for(matcher.ready, 30, "the matcher ready")
        created = real_kube.kubectl(
            "create", "-f", "-", "-o", "json",
            input=json.dumps(_bare_pod("qwen", {PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"})),
        )  # fmt: skip
        stored = json.loads(created.stdout)
        assert stored["metadata"]["annotations"][RESOLVED_PROFILE_KEY] == (
            "AIMClusterProfile/qwen-qwen3-32b-mi300x-lat-fp8"
        )
    finally:
        code = matcher.stop()
    assert code == 0, matcher.log_path.read_text()
    made = [
        e
        for e in plane.audit_events()[since:]
        if e["user"]["username"] == MATCHER and e.get("stage") == "ResponseComplete"
    ]
    assert [e["requestURI"] for e in made if e["responseStatus"]["code"] in (401, 403)] == []
    touched = {(e["objectRef"]["resource"], e["verb"]) for e in made}
    assert ("secrets", "watch") in touched
    assert not [t for t in touched if t[0] in ("secrets", "mutatingwebhookconfigurations")
                and t[1] not in ("list", "watch")]  # fmt: skip
