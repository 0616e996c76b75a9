"""The webhook's install with cert-manager: the component rendered and validated (the Issuer and
Certificate against cert-manager's own CRDs, the release pinned in tools/cert-manager), applied
whole on kube-apiserver with those CRDs installed, and the matcher serving a Secret shaped as
cert-manager writes it, under the component's smaller RBAC, with a test CA in the caBundle as
envtest (or cainjector) would put it. cert-manager's controllers do not run here: nothing
issues the Certificate, the test writes the Secret itself."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from matcher.controller.webhook import WebhookSettings
from matcher.core.admission import PROFILE_KEY, RESOLVED_PROFILE_KEY
from matcher.webhook import certs
from scripts.k8s_tools import cert_manager_crds
from scripts.validate_manifests import (
    check_objects,
    client_dry_run,
    describe,
    render,
    schema_problems,
    serve_builtin_kinds,
)
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
    theirs = {describe(o) for o in objects if o["kind"] in CERT_MANAGER_KINDS}
    assert theirs == {
        "Issuer aim-system/aim-matcher-webhook",
        "Certificate aim-system/aim-matcher-webhook",
    }
    assert check_objects(objects) == []
    # Without the Certificate nothing would write the Secret the matcher serves.
    ours = [o for o in objects if o["kind"] not in CERT_MANAGER_KINDS]
    assert check_objects(ours) == [
        "Deployment aim-system/aim-matcher: serves the webhook but a Certificate writing "
        f"Secret {SECRET} is missing"
    ]
    # A field cert-manager does not know is named.
    certificate = copy.deepcopy(one(objects, "Certificate", "aim-matcher-webhook"))
    certificate["spec"]["renewBeforePercent"] = "a third"
    assert any("renewBeforePercent" in p for p in schema_problems(certificate))


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


@pytest.mark.cluster
def test_client_dry_run(kube):
    if kube.server is not None:
        serve_builtin_kinds(kube.server)
    kube.apply_crds(cert_manager_crds())
    assert client_dry_run(VARIANT, kube.kubeconfig) == []


@pytest.mark.cluster
@pytest.mark.slow
def test_the_matcher_serves_cert_manager_s_secret_under_the_component_s_rbac(real_kube, tmp_path):
    plane = real_kube.require_plane()
    since = len(plane.audit_events())
    real_kube.apply_crds(cert_manager_crds())
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
