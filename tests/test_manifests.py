"""The install bundle: it renders, validates, grants least privilege and hardens every pod.

Every test works on what ``kubectl kustomize`` renders (the default install in ``daemonset/``
and the variants in ``examples/install/``), so the checks hold for what a cluster receives.
Flags in the manifests are checked against the real CLIs' ``--help``, the ConfigMap against
the matcher's own parser, the pod user against the Dockerfile, the RBAC rules against every
request the real detector and matcher send to the test API server, and docs/configuration.md
against the CLIs' flags.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.labels import accelerator_label_key
from detector.publish.nfd import NfdPublisher
from matcher.core.config import MatcherConfig
from scripts import check_dockerfile
from scripts.validate_manifests import (
    DETECTOR_NAMESPACE,
    MATCHER_NAMESPACE,
    ROOT,
    VARIANTS,
    applied_name,
    apply_size_problems,
    check_objects,
    client_dry_run,
    reference_problems,
    render,
    schema_problems,
    serve_builtin_kinds,
    structural_problems,
    validate_variant,
)
from tests.fence_support import install
from tests.hosttrees import HOSTS, build_host

BIN = Path(sys.executable).parent
DETECTOR_SA = (DETECTOR_NAMESPACE, "aim-detector")
MATCHER_SA = (MATCHER_NAMESPACE, "aim-matcher")
WEBHOOK_SECRET = "aim-matcher-webhook-tls"
#: The non-root user of the image (Dockerfile USER) that every long-running container runs as.
AGENT_UID = 65532


@cache
def bundle(variant: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(ROOT / VARIANTS[variant]))


def objects(variant: str, kind: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(o) for o in bundle(variant) if o["kind"] == kind]


def one(variant: str, kind: str, name: str) -> dict[str, Any]:
    [obj] = [o for o in objects(variant, kind) if o["metadata"]["name"] == name]
    return obj


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def workloads(variant: str) -> Iterator[dict[str, Any]]:
    for obj in bundle(variant):
        if obj["kind"] in {"DaemonSet", "Deployment"}:
            yield copy.deepcopy(obj)


@cache
def help_text(*command: str) -> str:
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:], "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


# --- Renders and validates -------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_renders_and_validates(variant):
    report = validate_variant(variant)
    assert report.problems == ()
    kinds = {o["kind"] for o in bundle(variant)}
    assert {
        "Namespace",
        "CustomResourceDefinition",
        "DaemonSet",
        "Deployment",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    } <= kinds


@pytest.mark.cluster
def test_kubectl_apply_client_dry_run(kube):
    """`kubectl apply -k <variant> --dry-run=client` (it needs discovery from an API server)."""
    if kube.server is not None:
        serve_builtin_kinds(kube.server)
    for variant in VARIANTS:
        assert client_dry_run(ROOT / VARIANTS[variant], kube.kubeconfig) == []


@pytest.mark.cluster
def test_install_and_uninstall_on_the_test_api_server(kube):
    """The one-command install creates every object; `kubectl delete -k` removes them."""
    server = kube.require_server()
    serve_builtin_kinds(server)
    out = kube.kubectl("apply", "-k", str(ROOT / "daemonset")).stdout
    for obj in bundle("default"):
        # The fixture may have loaded the CRDs already: those are "configured".
        assert re.search(rf"^{re.escape(applied_name(obj))} (created|configured)$", out, re.M)
    stored = server.get_object("apps/v1", "DaemonSet", "aim-detector", DETECTOR_NAMESPACE)
    assert stored is not None
    assert stored["spec"]["template"]["spec"]["serviceAccountName"] == "aim-detector"
    # Applying again changes nothing. (kubectl always re-sends a PodDisruptionBudget's selector,
    # whose patch strategy is "replace", so that one reports "configured" on real clusters too.)
    again = kube.kubectl("apply", "-k", str(ROOT / "daemonset")).stdout.splitlines()
    assert [line for line in again if not line.endswith(" unchanged")] == [
        "poddisruptionbudget.policy/aim-matcher configured"
    ]
    kube.kubectl("delete", "-k", str(ROOT / "daemonset"), "--ignore-not-found")
    assert server.get_object("apps/v1", "DaemonSet", "aim-detector", DETECTOR_NAMESPACE) is None
    assert (
        server.get_object(
            "admissionregistration.k8s.io/v1",
            "ValidatingAdmissionPolicy",
            "aim-detector-own-node-labels",
        )
        is None
    )


def test_bundle_carries_the_generated_crds_unchanged():
    generated = sorted((ROOT / "daemonset" / "crds").glob("*.yaml"))
    assert [p.name for p in generated] == [
        "aim.eai.amd.com_aimclusterprofiles.yaml",
        "aim.eai.amd.com_aimprofiles.yaml",
    ]
    rendered = {o["metadata"]["name"]: o for o in objects("default", "CustomResourceDefinition")}
    for path in generated:
        crd = yaml.safe_load(path.read_text())
        got = rendered[crd["metadata"]["name"]]
        assert got["spec"] == crd["spec"]
        assert structural_problems(got) == []


def test_schema_validation_names_the_bad_field():
    deployment = one("default", "Deployment", "aim-matcher")
    pod_spec(deployment)["containers"][0]["securityContxt"] = {}
    [problem] = schema_problems(deployment)
    assert "Deployment aim-system/aim-matcher" in problem
    assert "spec.template.spec.containers.0" in problem
    assert "securityContxt" in problem

    daemonset = one("default", "DaemonSet", "aim-detector")
    pod_spec(daemonset)["containers"][0]["resources"]["requests"]["memory"] = ["64Mi"]
    assert any("resources.requests.memory" in p for p in schema_problems(daemonset))


def test_unknown_kind_is_reported():
    problems = schema_problems(
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    )
    assert problems
    assert "not a built-in kind" in problems[0]


def test_non_structural_crd_is_reported():
    crd = objects("default", "CustomResourceDefinition")[0]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    del schema["properties"]["spec"]["type"]
    schema["properties"]["status"]["anyOf"] = [{"properties": {"bogus": {"type": "string"}}}]
    problems = structural_problems(crd)
    assert any("properties.spec: no type" in p for p in problems)
    assert any("anyOf[0].properties.bogus" in p and "outside" in p for p in problems)


def test_bad_cel_and_dangling_references_are_reported():
    objs = [copy.deepcopy(o) for o in bundle("default")]
    policy = next(o for o in objs if o["kind"] == "ValidatingAdmissionPolicy")
    policy["spec"]["validations"][0]["expression"] = "request.operation == "
    binding = next(o for o in objs if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == DETECTOR_NAMESPACE
    binding["subjects"][0]["name"] = "nobody"
    objs = [o for o in objs if o["kind"] != "ConfigMap"]
    problems = check_objects(objs)
    assert any("validations[0].expression: CEL does not parse" in p for p in problems)
    assert any("ServiceAccount aim-detector/nobody is missing" in p for p in problems)
    assert any("ConfigMap aim-matcher-config is missing" in p for p in problems)


def test_objects_fit_kubectl_apply_and_oversized_ones_are_reported():
    for variant in VARIANTS:
        assert [p for o in bundle(variant) for p in apply_size_problems(o)] == []
    config_map = one("default", "ConfigMap", "aim-matcher-config")
    config_map["data"]["blob"] = "x" * 300_000
    [problem] = apply_size_problems(config_map)
    assert "ConfigMap aim-system/aim-matcher-config" in problem
    assert "--server-side" in problem


def test_namespaces():
    for variant in VARIANTS:
        assert reference_problems(list(bundle(variant))) == []
        for obj in bundle(variant):
            namespace = obj["metadata"].get("namespace")
            assert namespace in (None, DETECTOR_NAMESPACE, MATCHER_NAMESPACE), obj["metadata"]
    for obj in bundle("default"):
        if obj["metadata"]["name"].startswith("aim-detector") and "namespace" in obj["metadata"]:
            assert obj["metadata"]["namespace"] == DETECTOR_NAMESPACE, obj["kind"]
        if obj["metadata"]["name"].startswith("aim-matcher") and "namespace" in obj["metadata"]:
            assert obj["metadata"]["namespace"] == MATCHER_NAMESPACE, obj["kind"]


def test_a_namespace_the_bundle_does_not_create_is_reported():
    objs = [copy.deepcopy(o) for o in bundle("default") if o["kind"] != "Namespace"]
    problems = reference_problems(objs)
    assert any(
        "DaemonSet aim-detector/aim-detector: namespace aim-detector is not one the bundle" in p
        for p in problems
    )


# --- Least privilege ---------------------------------------------------------------------


def _rules_for(variant: str, subject: tuple[str, str]) -> list[tuple[str | None, dict[str, Any]]]:
    """(namespace or None for cluster-wide, rule) for every rule bound to a service account."""
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in bundle(variant)
        if o["kind"] in {"Role", "ClusterRole"}
    }
    granted = []
    for binding in bundle(variant):
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        if not any(
            s["kind"] == "ServiceAccount" and (s.get("namespace"), s["name"]) == subject
            for s in binding.get("subjects", [])
        ):
            continue
        scope = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role_ns = scope if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], role_ns, ref["name"])]
        granted += [(scope, rule) for rule in role.get("rules", [])]
    return granted


#: One grant: (namespace or None for cluster-wide, API group, resource, verb, resource name or
#: None for any). A rule grants the product of its lists.
Grant = tuple[str | None, str, str, str, str | None]


def grants(variant: str, subject: tuple[str, str]) -> set[Grant]:
    return {
        (scope, group, resource, verb, name)
        for scope, rule in _rules_for(variant, subject)
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
        for name in rule.get("resourceNames") or [None]
    }


def grant_for(
    variant: str,
    subject: tuple[str, str],
    verb: str,
    resource: str,
    *,
    group: str = "",
    namespace: str | None = None,
    name: str | None = None,
) -> Grant | None:
    """The grant RBAC allows one request by (no wildcards are used in the bundle; tested
    below), or None when it is denied."""
    for grant in sorted(grants(variant, subject), key=lambda g: (g[0] or "", g[4] or "")):
        scope, g_group, g_resource, g_verb, g_name = grant
        if (
            (scope is None or scope == namespace)
            and (g_group, g_resource, g_verb) == (group, resource, verb)
            and (g_name is None or g_name == name)
        ):
            return grant
    return None


def can(
    variant: str,
    subject: tuple[str, str],
    verb: str,
    resource: str,
    *,
    group: str = "",
    namespace: str | None = None,
    name: str | None = None,
) -> bool:
    """RBAC's decision for one request."""
    found = grant_for(variant, subject, verb, resource, group=group, namespace=namespace, name=name)
    return found is not None


def test_no_wildcards_and_no_escalation_verbs():
    for variant in VARIANTS:
        for role in objects(variant, "ClusterRole") + objects(variant, "Role"):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
                if "secrets" in rule["resources"]:
                    # The one Secret: the webhook's certificate, by name, never created.
                    assert rule["resources"] == ["secrets"]
                    assert rule["resourceNames"] == [WEBHOOK_SECRET], rule
                    assert set(rule["verbs"]) <= {"list", "watch", "patch"}, rule


def test_detector_may_get_and_patch_nodes_and_nothing_else():
    rules = [rule for _, rule in _rules_for("default", DETECTOR_SA)]
    assert rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    assert can("default", DETECTOR_SA, "get", "nodes", name="gpu-1")
    assert can("default", DETECTOR_SA, "patch", "nodes", name="gpu-1")
    for verb in ("list", "watch", "update", "create", "delete"):
        assert not can("default", DETECTOR_SA, verb, "nodes")
    assert not can("default", DETECTOR_SA, "patch", "nodes/status")
    assert not can("default", DETECTOR_SA, "get", "pods", namespace=DETECTOR_NAMESPACE)


def test_detector_in_nfd_mode_has_no_api_access():
    assert _rules_for("nfd", DETECTOR_SA) == []
    assert (
        pod_spec(one("nfd", "DaemonSet", "aim-detector"))["automountServiceAccountToken"] is False
    )


def test_matcher_reads_cluster_and_writes_only_status_events_and_its_lease():
    m = MATCHER_SA
    for resource, group in (
        ("nodes", ""),
        ("aimprofiles", "aim.eai.amd.com"),
        ("aimclusterprofiles", "aim.eai.amd.com"),
    ):
        for verb in ("list", "watch"):
            assert can("default", m, verb, resource, group=group, namespace="ml-team")
        # Informers only: no single-object reads, no writes.
        for verb in ("get", "create", "update", "patch", "delete"):
            assert not can("default", m, verb, resource, group=group, namespace="ml-team")
    for resource in ("aimprofiles/status", "aimclusterprofiles/status"):
        assert can("default", m, "patch", resource, group="aim.eai.amd.com", namespace="x")
        assert not can("default", m, "update", resource, group="aim.eai.amd.com")
    assert can("default", m, "create", "events", namespace="default")
    assert not can("default", m, "delete", "events", namespace="default")
    # Its ConfigMap: by name, in its namespace only, and only listed/watched (field selector).
    config = {"namespace": MATCHER_NAMESPACE}
    for verb in ("list", "watch"):
        assert can("default", m, verb, "configmaps", name="aim-matcher-config", **config)
        assert not can("default", m, verb, "configmaps", **config), "an unselected list"
        assert not can("default", m, verb, "configmaps", name="other", **config)
    assert not can("default", m, "get", "configmaps", name="aim-matcher-config", **config)
    assert not can("default", m, "update", "configmaps", name="aim-matcher-config", **config)
    assert not can("default", m, "list", "configmaps", namespace="kube-system")
    # Its Lease: created in its namespace, read and renewed by name.
    lease = {"group": "coordination.k8s.io", "namespace": MATCHER_NAMESPACE}
    assert can("default", m, "create", "leases", **lease)
    for verb in ("get", "update"):
        assert can("default", m, verb, "leases", name="aim-matcher", **lease)
        assert not can("default", m, verb, "leases", name="kube-scheduler", **lease)
    assert not can(
        "default", m, "create", "leases", group="coordination.k8s.io", namespace="kube-system"
    )


def test_the_webhook_may_touch_only_its_own_secret_and_configuration():
    m = MATCHER_SA
    secret = {"namespace": MATCHER_NAMESPACE, "name": WEBHOOK_SECRET}
    for verb in ("list", "watch", "patch"):
        assert can("default", m, verb, "secrets", **secret)
    for verb in ("get", "create", "update", "delete"):
        assert not can("default", m, verb, "secrets", **secret)
    for verb in ("list", "watch", "get", "patch"):
        assert not can("default", m, verb, "secrets", namespace=MATCHER_NAMESPACE, name="other")
        assert not can("default", m, verb, "secrets", namespace=MATCHER_NAMESPACE)
        assert not can("default", m, verb, "secrets", namespace="ml-team", name=WEBHOOK_SECRET)
    hooks = {"group": "admissionregistration.k8s.io"}
    for verb in ("list", "watch", "patch"):
        assert can("default", m, verb, "mutatingwebhookconfigurations", name="aim-matcher", **hooks)
        assert not can("default", m, verb, "mutatingwebhookconfigurations", name="x", **hooks)
        assert not can("default", m, verb, "validatingwebhookconfigurations", **hooks)
    for verb in ("create", "update", "delete"):
        assert not can("default", m, verb, "mutatingwebhookconfigurations", **hooks)
    assert not can("default", m, "list", "mutatingwebhookconfigurations", **hooks), "unselected"
    # The same by name in the Deployment's flags.
    args = pod_spec(one("default", "Deployment", "aim-matcher"))["containers"][0]["args"]
    assert "--webhook-addr=:9443" in args
    assert one("default", "Secret", WEBHOOK_SECRET)["type"] == "Opaque"


def test_the_webhook_configuration_asks_only_for_opted_in_pods():
    [configuration] = objects("default", "MutatingWebhookConfiguration")
    assert configuration["metadata"]["name"] == "aim-matcher"
    labels = []
    for hook in configuration["webhooks"]:
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["timeoutSeconds"] <= 5
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"] == [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
             "resources": ["pods"], "scope": "Namespaced"}
        ]  # fmt: skip
        assert hook["namespaceSelector"] == {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                 "values": ["kube-system", MATCHER_NAMESPACE]}
            ]
        }  # fmt: skip
        [expression] = hook["objectSelector"]["matchExpressions"]
        assert expression["operator"] == "Exists"
        labels.append(expression["key"])
        service = hook["clientConfig"]["service"]
        assert (service["namespace"], service["name"], service["path"]) == (
            MATCHER_NAMESPACE,
            "aim-matcher-webhook",
            "/mutate-pods",
        )
        assert "caBundle" not in hook["clientConfig"]  # the matcher's leader writes it
    assert labels == ["aim.eai.amd.com/profile", "aim.eai.amd.com/aim-id"]
    service = one("default", "Service", "aim-matcher-webhook")
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]


def test_matcher_rbac_covers_what_the_controller_calls():
    """The lease name, ConfigMap name and Event API the controller uses are the granted ones."""
    deployment = one("default", "Deployment", "aim-matcher")
    args = pod_spec(deployment)["containers"][0]["args"]
    assert "--lease-name=aim-matcher" in args
    assert "--config-map=aim-matcher-config" in args
    events = (ROOT / "matcher" / "controller" / "events.py").read_text()
    assert '"POST", f"/api/v1/namespaces/{namespace}/events"' in events  # core/v1 Events


# --- Pods --------------------------------------------------------------------------------

#: hostPath volumes each variant may mount writable; everything else must be read-only.
WRITABLE_HOST_PATHS = {
    "default": set(),
    "amdsmi": {"/dev/kfd"},
    "nfd": {"/etc/kubernetes/node-feature-discovery/features.d"},
    "cleanup": set(),
    "mixed": {"/dev/kfd"},
    "plugin": set(),
}
#: The one container that runs as uid 0: the NFD variant's init step that makes features.d
#: group-writable (no capability; daemonset/components/nfd).
ROOT_INIT_CONTAINERS = {("nfd", "features-dir")}


def _effective(spec: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    return container["securityContext"].get(key, spec["securityContext"].get(key))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_pod_is_hardened(variant):
    uid, gid = check_dockerfile.final_user() or (None, None)
    assert (uid, gid) == (AGENT_UID, AGENT_UID)
    for workload in workloads(variant):
        spec = pod_spec(workload)
        name = f"{variant}: {workload['metadata']['name']}"
        assert not spec.get("hostNetwork")
        assert not spec.get("hostPID")
        assert not spec.get("hostIPC")
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == uid, name
        assert spec["securityContext"]["runAsGroup"] == gid, name
        host_paths = {
            v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v
        }
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{name}/{container['name']}"
            sc = container["securityContext"]
            if (variant, container["name"]) in ROOT_INIT_CONTAINERS:
                assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (0, gid, False)
            else:
                assert _effective(spec, container, "runAsNonRoot") is True, where
                assert _effective(spec, container, "runAsUser") == uid, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert not sc.get("privileged"), where
            assert container["resources"]["requests"]["memory"], where
            assert container["resources"]["requests"]["cpu"], where
            assert container["resources"]["limits"]["memory"], where
            if container in spec["containers"] and "ports" in container:  # a server: probed
                ports = {p["name"] for p in container["ports"]}
                for probe in ("livenessProbe", "readinessProbe"):
                    assert container[probe]["httpGet"]["port"] in ports, (where, probe)
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            for mount in container.get("volumeMounts", []):
                path = host_paths.get(mount["name"])
                if path is not None and path not in WRITABLE_HOST_PATHS[variant]:
                    assert mount.get("readOnly") is True, (where, mount)
                    # Submounts read-only too, where the runtime can (1.31+).
                    assert mount.get("recursiveReadOnly") == "IfPossible", (where, mount)


def _restricted_problems(spec: dict[str, Any]) -> list[str]:
    """What Pod Security "restricted" (v1.30) would refuse in a pod spec: host namespaces,
    host paths and other volume types outside its list, privilege, added capabilities other
    than NET_BIND_SERVICE, root, privilege escalation, seccomp, host ports."""
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}  # fmt: skip
    problems = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(key)
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            problems.append(f"volume {volume['name']}: {sorted(kinds)}")
    for container in spec["containers"] + spec.get("initContainers", []):
        sc = container.get("securityContext", {})
        if sc.get("privileged"):
            problems.append(f"{container['name']}: privileged")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{container['name']}: capabilities added")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{container['name']}: capabilities not dropped")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{container['name']}: allowPrivilegeEscalation")
        if _effective(spec, container, "runAsNonRoot") is not True:
            problems.append(f"{container['name']}: runAsNonRoot")
        if _effective(spec, container, "runAsUser") == 0:
            problems.append(f"{container['name']}: runAsUser 0")
        seccomp = _effective(spec, container, "seccompProfile") or {}
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{container['name']}: seccompProfile")
        if any(p.get("hostPort") for p in container.get("ports", [])):
            problems.append(f"{container['name']}: hostPort")
    return problems


def _namespace_labels(variant: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = one(variant, "Namespace", name)["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pod_security_levels_fit_each_namespace(variant):
    """The matcher's namespace enforces "restricted" and its pods meet it; the detector's
    enforces only "privileged" (host paths need it) and warns and audits at "restricted",
    and its pods break "restricted" only by their host paths (and the NFD init step's uid 0)."""
    matcher_ns = _namespace_labels(variant, MATCHER_NAMESPACE)
    assert matcher_ns["pod-security.kubernetes.io/enforce"] == "restricted"
    detector_ns = _namespace_labels(variant, DETECTOR_NAMESPACE)
    assert detector_ns["pod-security.kubernetes.io/enforce"] == "privileged"
    for labels in (matcher_ns, detector_ns):
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
        assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    for workload in workloads(variant):
        problems = _restricted_problems(pod_spec(workload))
        if workload["metadata"]["namespace"] == MATCHER_NAMESPACE:
            assert problems == [], workload["metadata"]["name"]
        else:
            expected_root = ["features-dir: runAsNonRoot", "features-dir: runAsUser 0"]
            host_paths = ("volume host-", "volume dev-", "volume nfd-")
            assert [p for p in problems if not p.startswith(host_paths)] == (
                expected_root if variant == "nfd" else []
            )


@pytest.mark.cluster
@pytest.mark.slow
def test_pod_security_is_enforced_on_kube_apiserver(real_kube):
    """On kube-apiserver's own Pod Security admission: the matcher's pod is admitted in its
    namespace, the same pod with a host path is refused there, and the detector's pod is
    admitted in its own namespace with the "restricted" warning."""
    install(real_kube, list(bundle("default")))

    def create_pod(namespace: str, spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "pss-check", "namespace": namespace}, "spec": spec}  # fmt: skip
        result: subprocess.CompletedProcess[str] = real_kube.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
        )
        return result

    matcher = pod_spec(one("default", "Deployment", "aim-matcher"))
    assert create_pod(MATCHER_NAMESPACE, matcher).returncode == 0
    with_host_path = copy.deepcopy(matcher)
    with_host_path["volumes"] = [{"name": "h", "hostPath": {"path": "/sys"}}]
    refused = create_pod(MATCHER_NAMESPACE, with_host_path)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:v1.30"' in refused.stderr
    detector = pod_spec(one("default", "DaemonSet", "aim-detector"))
    admitted = create_pod(DETECTOR_NAMESPACE, {**detector, "nodeName": "gpu-1"})
    assert admitted.returncode == 0, admitted.stderr
    assert 'would violate PodSecurity "restricted:latest"' in admitted.stderr
    assert "hostPath" in admitted.stderr


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_network_policies_admit_only_prometheus_to_the_metrics_ports(variant):
    policies = objects(variant, "NetworkPolicy")
    for workload in workloads(variant):
        namespace = workload["metadata"]["namespace"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selecting = [
            p
            for p in policies
            if p["metadata"]["namespace"] == namespace
            and all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items())
        ]
        assert len(selecting) == 1, workload["metadata"]["name"]
        [policy] = selecting
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        ports = {p["name"] for c in pod_spec(workload)["containers"] for p in c.get("ports", [])}
        if not ports:  # the cleanup variant serves nothing
            continue
        # The webhook's port is open to the API server, wherever it calls from.
        webhook = (
            [{"ports": [{"port": "webhook", "protocol": "TCP"}]}] if "webhook" in ports else []
        )
        ports.discard("webhook")
        assert policy["spec"]["ingress"] == [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                        }
                    }
                ],
                "ports": [{"port": port, "protocol": "TCP"} for port in sorted(ports)],
            },
            *webhook,
        ]


def test_detector_is_node_critical():
    for variant in VARIANTS:
        for ds in objects(variant, "DaemonSet"):
            assert pod_spec(ds)["priorityClassName"] == "system-node-critical", variant


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_images_and_commands_are_the_project_s(variant):
    scripts = {"aim-detector", "aim-matcher", "python"}
    for workload in workloads(variant):
        spec = pod_spec(workload)
        for container in spec["containers"] + spec.get("initContainers", []):
            assert re.fullmatch(r"aim-accelerator:[\w.-]+", container["image"]), container
            assert container["command"][0] in scripts


def _flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_detector_flags_exist(variant):
    text = help_text("aim-detector")
    for ds in objects(variant, "DaemonSet"):
        spec = pod_spec(ds)
        [container] = [
            c
            for c in spec["containers"] + spec.get("initContainers", [])
            if c["command"] == ["aim-detector"]
        ]
        for flag in _flags(container["args"]):
            assert re.search(rf"{re.escape(flag)}\b", text), f"aim-detector has no {flag}"


def test_matcher_flags_exist():
    container = pod_spec(one("default", "Deployment", "aim-matcher"))["containers"][0]
    assert container["command"] == ["aim-matcher", "run"]
    text = help_text("aim-matcher", "run")
    for flag in _flags(container["args"]):
        assert re.search(rf"{re.escape(flag)}\b", text), f"aim-matcher run has no {flag}"


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("valueFrom", e.get("value")) for e in container.get("env", [])}


def test_detector_daemonset():
    ds = one("default", "DaemonSet", "aim-detector")
    spec = pod_spec(ds)
    container = spec["containers"][0]
    assert _env(container)["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert {"operator": "Exists"} in spec["tolerations"]  # GPU taints included
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert "--mode=node" in container["args"]
    # Only the sysfs trees the probes read, and the host's /proc/cpuinfo, each at its host
    # path under /host so that sysfs's relative links resolve; the flags point there.
    assert _host_mounts(spec, container) == {
        "/host/sys/bus/pci": "/sys/bus/pci",
        "/host/sys/class": "/sys/class",
        "/host/sys/devices": "/sys/devices",
        "/host/proc/cpuinfo": "/proc/cpuinfo",
    }
    assert "--sysfs-root=/host/sys" in container["args"]
    assert "--procfs-root=/host/proc" in container["args"]
    port = container["ports"][0]["containerPort"]
    assert f"--metrics-port={port}" in container["args"]


def _host_mounts(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """mountPath -> host path of a container's hostPath mounts."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    return {
        m["mountPath"]: volumes[m["name"]]["hostPath"]["path"]
        for m in container["volumeMounts"]
        if "hostPath" in volumes[m["name"]]
    }


def _mount_like_the_daemonset(host: Path, mounts: dict[str, str], dest: Path) -> Path:
    """The container's view of `host`: each mounted host path copied to its mount path under
    `dest` (links kept as links, so only what the mounts include resolves); nothing else."""
    for mount_path, host_path in mounts.items():
        source = host / host_path.lstrip("/")
        target = dest / mount_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        elif source.exists():
            shutil.copy(source, target)
    return dest


@pytest.mark.parametrize("host", HOSTS)
def test_detector_sees_through_its_mounts_what_it_sees_on_the_host(tmp_path, host):
    """The DaemonSet mounts only some sysfs trees and one procfs file: run with the
    DaemonSet's own flags on a copy of just what it mounts, the detector must find exactly what
    it finds with the whole host tree, on every fixture host."""
    spec = pod_spec(one("default", "DaemonSet", "aim-detector"))
    container = spec["containers"][0]
    root = build_host(tmp_path, host)
    for path in _host_mounts(spec, container).values():
        # Fixtures leave out what their case does not need; every real host has these (the
        # hostPath types require them), so give both views the same empty directory.
        if not (root / path[1:]).exists() and not path.startswith("/proc/"):
            (root / path[1:]).mkdir(parents=True)
    view = _mount_like_the_daemonset(root, _host_mounts(spec, container), tmp_path / "view")
    flags = [a.replace("=/host/", f"={view}/host/") for a in container["args"]
             if a.startswith(("--sysfs-root=", "--procfs-root="))]  # fmt: skip
    assert len(flags) == 2

    def report(*roots: str) -> dict[str, Any]:
        result = subprocess.run(
            [str(BIN / "aim-detector"), "--once", "--dry-run", "--output", "json",
             "--gpu-backend", "sysfs", *roots],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    full = report("--host-root", str(root))
    mounted = report(*flags)
    assert mounted["labels"] == full["labels"]
    assert mounted["errors"].keys() == full["errors"].keys()


def test_amdsmi_variant_mounts_gpu_devices_without_privilege():
    spec = pod_spec(one("amdsmi", "DaemonSet", "aim-detector"))
    container = spec["containers"][0]
    paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert paths == {
        "/dev/kfd", "/dev/dri", "/sys/bus/pci", "/sys/class", "/sys/devices", "/proc/cpuinfo"
    }  # fmt: skip
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/dev/kfd", "/dev/dri"}
    assert container["image"].endswith("-amdsmi")
    assert "--gpu-backend=auto" in container["args"]
    assert not container["securityContext"].get("privileged")


def test_nfd_variant_writes_features_d():
    spec = pod_spec(one("nfd", "DaemonSet", "aim-detector"))
    container = spec["containers"][0]
    assert "--mode=nfd" in container["args"]
    assert "--mode=node" not in container["args"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert volumes[mounts["/host/features.d"]] == (
        "/etc/kubernetes/node-feature-discovery/features.d"
    )
    assert "--nfd-features-dir=/host/features.d" in container["args"]


def test_nfd_variant_runs_the_agent_as_non_root_after_a_capability_free_init_step():
    spec = pod_spec(one("nfd", "DaemonSet", "aim-detector"))
    [init] = spec["initContainers"]
    assert init["name"] == "features-dir"
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in init["volumeMounts"]} == {"/host/features.d"}
    assert spec["securityContext"]["runAsUser"] == AGENT_UID
    assert "runAsUser" not in spec["containers"][0]["securityContext"]
    assert spec["automountServiceAccountToken"] is False


def _as(uid: int, gid: int) -> list[str]:
    """Run as uid:gid with no capability at all (none permitted, none inheritable, an empty
    bounding set), as a container with `capabilities: drop: [ALL]` does."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]  # fmt: skip


_PUBLISH = """
import sys
sys.path.insert(0, {root!r})
from detector.publish.nfd import NfdPublisher
NfdPublisher({features!r}).publish({labels!r})
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as uid 0 without capabilities and as uid 65532",
)
def test_nfd_init_step_lets_the_non_root_agent_write_root_s_features_dir():
    """On a features.d that root owns (0755), holding the file and a stale temporary file of a
    root-mode install: the agent as 65532 cannot publish; after the component's init step, run
    as uid 0 without any capability, it can, and it replaces root's file atomically."""
    python = "/usr/bin/python3"  # any Python 3.11 that user 65532 may execute
    if not os.access(python, os.X_OK):
        pytest.skip(f"{python} is missing")
    base = Path(tempfile.mkdtemp(prefix="aim-nfd-"))
    try:
        base.chmod(0o755)
        features = base / "features.d"
        features.mkdir(mode=0o755)
        (features / "aim-accelerator").write_text("aim-accelerator.MI300X=4\n")
        (features / ".aim-accelerator").write_text("half a file")
        labels = {accelerator_label_key("MI300X"): "8"}
        publish = [python, "-c", _PUBLISH.format(root=str(ROOT), features=str(features),
                                                  labels=labels)]  # fmt: skip
        before = subprocess.run([*_as(AGENT_UID, AGENT_UID), *publish], capture_output=True,
                                text=True, check=False, timeout=60)  # fmt: skip
        assert before.returncode != 0
        assert "Permission denied" in before.stderr

        spec = pod_spec(one("nfd", "DaemonSet", "aim-detector"))
        [init] = spec["initContainers"]
        assert init["command"][:2] == ["python", "-c"]
        script = init["command"][2].replace("/host/features.d", str(features))
        step = subprocess.run([*_as(0, AGENT_UID), python, "-c", script], capture_output=True,
                              text=True, check=False, timeout=60)  # fmt: skip
        assert step.returncode == 0, step.stderr
        assert not (features / ".aim-accelerator").exists()

        after = subprocess.run([*_as(AGENT_UID, AGENT_UID), *publish], capture_output=True,
                               text=True, check=False, timeout=60)  # fmt: skip
        assert after.returncode == 0, after.stderr
        written = features / "aim-accelerator"
        assert NfdPublisher(features).read() == labels
        assert (written.stat().st_uid, written.stat().st_gid) == (AGENT_UID, AGENT_UID)
        assert features.stat().st_uid == 0, "the directory still belongs to root"
    finally:
        shutil.rmtree(base)


def test_matcher_deployment():
    deployment = one("default", "Deployment", "aim-matcher")
    spec = pod_spec(deployment)
    container = spec["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-elect" in container["args"]
    env = _env(container)
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert {c["topologyKey"] for c in spec["topologySpreadConstraints"]} >= {
        "kubernetes.io/hostname"
    }
    pdb = one("default", "PodDisruptionBudget", "aim-matcher")
    assert pdb["spec"]["minAvailable"] == 1
    service = one("default", "Service", "aim-matcher-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_matcher_configmap_holds_the_documented_defaults():
    config_map = one("default", "ConfigMap", "aim-matcher-config")
    assert MatcherConfig.from_configmap_data(config_map["data"]) == MatcherConfig()
    documented = (ROOT / "docs" / "configuration.md").read_text()
    for key in config_map["data"]:
        assert f"`{key}`" in documented


def test_cleanup_variant_runs_the_detector_cleanup_once_per_node():
    base = pod_spec(one("default", "DaemonSet", "aim-detector"))
    spec = pod_spec(one("cleanup", "DaemonSet", "aim-detector"))
    [cleanup] = spec["initContainers"]
    detector = base["containers"][0]
    assert cleanup["command"] == ["aim-detector"]
    assert cleanup["args"] == [*detector["args"], "--cleanup"]
    assert cleanup["env"] == detector["env"]  # NODE_NAME: its own Node, as the policy demands
    assert cleanup["image"] == detector["image"]
    assert spec["serviceAccountName"] == base["serviceAccountName"]
    assert spec["volumes"] == base["volumes"]
    [done] = spec["containers"]
    assert done["image"] == detector["image"]
    assert "readinessProbe" not in done  # Ready as soon as the cleanup has succeeded


def test_cleanup_component_composes_with_nfd(tmp_path):
    """An NFD-mode install cleans up with both components: the cleanup keeps --mode=nfd."""
    daemonset = Path(os.path.relpath(ROOT / "daemonset", tmp_path))  # kustomize: no absolute
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(daemonset)],
                "components": [
                    str(daemonset / "components" / "nfd"),
                    str(daemonset / "components" / "cleanup"),
                ],
            }
        )
    )
    rendered = render(tmp_path)
    assert check_objects(rendered) == []
    [ds] = [o for o in rendered if o["kind"] == "DaemonSet"]
    [cleanup] = pod_spec(ds)["initContainers"]
    assert "--mode=nfd" in cleanup["args"]
    assert cleanup["args"][-1] == "--cleanup"
    mounts = {m["mountPath"] for m in cleanup["volumeMounts"]}
    assert "/host/features.d" in mounts
    # The install made features.d group-writable; the cleanup deletes the file as the agent.
    assert pod_spec(ds)["securityContext"]["runAsUser"] == AGENT_UID
    assert "runAsUser" not in cleanup["securityContext"]


# --- The configuration page names exactly the real flags ---------------------------------


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _help_flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)) - {"--help"}


@pytest.mark.parametrize(
    ("heading", "command"),
    [("aim-detector", ("aim-detector",)), ("aim-matcher run", ("aim-matcher", "run"))],
)
def test_configuration_page_lists_every_flag_and_no_other(heading, command):
    page = _section((ROOT / "docs" / "configuration.md").read_text(), heading)
    documented = _help_flags(page)
    real = _help_flags(help_text(*command))
    # --no-leader-elect is the negative form argparse adds; the page writes it out too.
    assert real - documented == set(), f"undocumented flags of {heading}"
    assert documented - real == set(), f"flags documented but not in {heading} --help"


# --- RBAC covers what the programs really do ---------------------------------------------


def _request_target(path: str) -> tuple[str, str, str | None, str | None]:
    """(group, resource[/subresource], namespace, name) of an API path."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    namespace = None
    if len(rest) > 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    return group, resource, namespace, name


def _selected_name(query: dict[str, str]) -> str | None:
    """The name a list or watch is authorized for: kube-apiserver takes it from a field
    selector that requires metadata.name exactly (k8s.io/apiserver
    pkg/endpoints/request/requestinfo.go: FieldSelector.RequiresExactMatch("metadata.name"))."""
    for term in (query.get("fieldSelector") or "").split(","):
        field, op, value = term.partition("==") if "==" in term else term.partition("=")
        if op and field.strip() == "metadata.name" and not field.endswith("!"):
            return value.strip()
    return None


def request_grant(variant: str, subject: tuple[str, str], rec: Any) -> Grant | None:
    group, resource, namespace, name = _request_target(rec.path)
    if rec.verb in ("list", "watch") and name is None:
        name = _selected_name(rec.query)
    return grant_for(
        variant, subject, rec.verb, resource, group=group, namespace=namespace, name=name
    )


def _denied(records, subject) -> list[str]:
    return [
        f"{rec.verb} {rec.path}?{rec.query}"
        for rec in records
        if request_grant("default", subject, rec) is None
    ]


def test_a_field_selected_list_is_authorized_by_name():
    assert _selected_name({"fieldSelector": "metadata.name=aim-matcher-config"}) == (
        "aim-matcher-config"
    )
    assert _selected_name({"fieldSelector": "metadata.name==x,status.phase=Running"}) == "x"
    assert _selected_name({"fieldSelector": "metadata.name!=x"}) is None
    assert _selected_name({}) is None


def _program_requests(server) -> list[Any]:
    # kubectl's own requests (the test's setup) are not the programs'.
    return [r for r in server.requests.snapshot() if not r.user_agent.startswith("kubectl")]


PROFILES = """
apiVersion: aim.eai.amd.com/v1alpha2
kind: AIMClusterProfile
metadata: {name: qwen-qwen3-32b-mi300x-lat-fp8}
spec:
  aimId: qwen/qwen3-32b
  metric: latency
  precision: fp8
  acceleratorModel: MI300X
  acceleratorType: gpu
  acceleratorCount: 1
  image: amdenterpriseai/aim-qwen-qwen3-32b:0.8.5
---
apiVersion: aim.eai.amd.com/v1alpha2
kind: AIMProfile
metadata: {name: qwen-custom, namespace: ml-team}
spec:
  aimId: qwen/qwen3-32b
  metric: latency
  precision: fp8
  acceleratorModel: MI300X
  acceleratorType: gpu
  acceleratorCount: 2
  image: amdenterpriseai/aim-base:0.8.5
"""


@pytest.mark.cluster
@pytest.mark.slow
def test_rbac_grants_exactly_the_requests_the_programs_make(kube, tmp_path):
    """Run the real detector and matcher against the test API server, record every request
    they send, and check them against the bundle's RBAC as the API server's authorizer would:
    every request is allowed, and every grant (verb x resource x name x scope) is used by one.
    A grant no code path uses, or a call no grant covers, fails here."""
    server = kube.require_server()
    kube.kubectl(
        "apply",
        "-f",
        "-",
        input=(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: aim-system}\n---\n"
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml-team}\n---\n"
            "apiVersion: v1\nkind: Node\nmetadata: {name: gpu-0}\n"
        ),
    )
    kube.kubectl(
        "patch",
        "node",
        "gpu-0",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "allocatable": {"amd.com/gpu": "8", "cpu": "190", "memory": "2000Gi"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                }
            }
        ),
    )
    kube.kubectl("apply", "-f", str(ROOT / "daemonset" / "matcher" / "configmap.yaml"))
    serve_builtin_kinds(server)
    for name in ("secret.yaml", "mutatingwebhookconfiguration.yaml"):
        kube.kubectl("apply", "-f", str(ROOT / "daemonset" / "webhook" / name))
    kube.kubectl("apply", "-f", "-", input=PROFILES)
    host = build_host(tmp_path, "mi300x-8-spx-nps1")
    env = {**os.environ, "NODE_NAME": "gpu-0"}
    detector = [
        str(BIN / "aim-detector"),
        "--kubeconfig",
        str(kube.kubeconfig),
        "--host-root",
        str(host),
        "--log-level",
        "warning",
    ]

    server.requests.clear()
    subprocess.run([*detector, "--once"], env=env, check=True, timeout=60)
    detector_requests = _program_requests(server)

    server.requests.clear()
    matcher = subprocess.Popen(
        [
            str(BIN / "aim-matcher"),
            "run",
            "--kubeconfig",
            str(kube.kubeconfig),
            "--metrics-port",
            "0",
            "--log-level",
            "warning",
            # As the Deployment runs it: the webhook on, so its Secret and caBundle are written.
            "--webhook-addr",
            "127.0.0.1:0",
        ],
        env={**os.environ, "POD_NAMESPACE": MATCHER_NAMESPACE, "POD_NAME": "aim-matcher-test"},
    )
    try:

        def status_of(name: str) -> str:
            return str(
                kube.kubectl(
                    "get", "aimclusterprofile", name, "-o", "jsonpath={.status.status}"
                ).stdout
            )

        def wait_for(name: str, status: str) -> None:
            deadline = time.monotonic() + 30
            while status_of(name) != status:
                assert time.monotonic() < deadline, f"{name} never became {status}"
                time.sleep(0.1)

        wait_for("qwen-qwen3-32b-mi300x-lat-fp8", "Ready")

        def bundle_written() -> bool:
            got = kube.kubectl(
                "get", "mutatingwebhookconfiguration", "aim-matcher",
                "-o", "jsonpath={.webhooks[1].clientConfig.caBundle}",
            )  # fmt: skip
            return bool(got.stdout)

        deadline = time.monotonic() + 30
        while not bundle_written():
            assert time.monotonic() < deadline, "the caBundle was never written"
            time.sleep(0.1)
        kube.kubectl("cordon", "gpu-0")  # a flip: an Event
        wait_for("qwen-qwen3-32b-mi300x-lat-fp8", "NotAvailable")
    finally:
        matcher.send_signal(signal.SIGTERM)  # releases the Lease
        assert matcher.wait(timeout=30) == 0
    matcher_requests = _program_requests(server)

    server.requests.clear()
    subprocess.run([*detector, "--cleanup"], env=env, check=True, timeout=60)
    detector_requests += _program_requests(server)

    # Every request is allowed (no grant missing) ...
    assert _denied(detector_requests, DETECTOR_SA) == []
    assert _denied(matcher_requests, MATCHER_SA) == []
    # ... and every grant was used by some request (no grant unused).
    for subject, requests in ((DETECTOR_SA, detector_requests), (MATCHER_SA, matcher_requests)):
        used = {request_grant("default", subject, rec) for rec in requests}
        assert grants("default", subject) - used == set(), subject
    assert {(r.verb, _request_target(r.path)[1]) for r in detector_requests} == {
        ("get", "nodes"),
        ("patch", "nodes"),
    }


# --- Documentation links -----------------------------------------------------------------


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_docs_links_resolve():
    docs = ROOT / "docs"
    anchors = {
        page.name: {_anchor(h) for h in re.findall(r"^#+ (.+)$", page.read_text(), re.M)}
        for page in docs.glob("*.md")
    }
    broken = []
    for page in docs.glob("*.md"):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors.get(file.name, set()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
