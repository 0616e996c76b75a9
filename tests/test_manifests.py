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
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from matcher.core.config import MatcherConfig
from scripts import check_dockerfile
from scripts.validate_manifests import (
    NAMESPACE,
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
from tests.hosttrees import build_host

BIN = Path(sys.executable).parent
DETECTOR_SA = ("aim-system", "aim-detector")
MATCHER_SA = ("aim-system", "aim-matcher")


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
    stored = server.get_object("apps/v1", "DaemonSet", "aim-detector", "aim-system")
    assert stored is not None
    assert stored["spec"]["template"]["spec"]["serviceAccountName"] == "aim-detector"
    # Applying again changes nothing. (kubectl always re-sends a PodDisruptionBudget's selector,
    # whose patch strategy is "replace", so that one reports "configured" on real clusters too.)
    again = kube.kubectl("apply", "-k", str(ROOT / "daemonset")).stdout.splitlines()
    assert [line for line in again if not line.endswith(" unchanged")] == [
        "poddisruptionbudget.policy/aim-matcher configured"
    ]
    kube.kubectl("delete", "-k", str(ROOT / "daemonset"), "--ignore-not-found")
    assert server.get_object("apps/v1", "DaemonSet", "aim-detector", "aim-system") is None
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
    binding["subjects"][0]["name"] = "nobody"
    objs = [o for o in objs if o["kind"] != "ConfigMap"]
    problems = check_objects(objs)
    assert any("validations[0].expression: CEL does not parse" in p for p in problems)
    assert any("ServiceAccount aim-system/nobody is missing" in p for p in problems)
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
            assert namespace in (None, NAMESPACE), obj["metadata"]["name"]


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
    """RBAC's decision for one request (no wildcards are used in the bundle; tested below)."""
    for scope, rule in _rules_for(variant, subject):
        if scope is not None and scope != namespace:
            continue
        if (
            group in rule.get("apiGroups", [])
            and resource in rule.get("resources", [])
            and verb in rule.get("verbs", [])
            and (not rule.get("resourceNames") or name in rule["resourceNames"])
        ):
            return True
    return False


def test_no_wildcards_and_no_escalation_verbs():
    for variant in VARIANTS:
        for role in objects(variant, "ClusterRole") + objects(variant, "Role"):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
                assert "secrets" not in rule["resources"]


def test_detector_may_get_and_patch_nodes_and_nothing_else():
    rules = [rule for _, rule in _rules_for("default", DETECTOR_SA)]
    assert rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    assert can("default", DETECTOR_SA, "get", "nodes", name="gpu-1")
    assert can("default", DETECTOR_SA, "patch", "nodes", name="gpu-1")
    for verb in ("list", "watch", "update", "create", "delete"):
        assert not can("default", DETECTOR_SA, verb, "nodes")
    assert not can("default", DETECTOR_SA, "patch", "nodes/status")
    assert not can("default", DETECTOR_SA, "get", "pods", namespace=NAMESPACE)


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
        for verb in ("get", "list", "watch"):
            assert can("default", m, verb, resource, group=group, namespace="ml-team")
        for verb in ("create", "update", "patch", "delete"):
            assert not can("default", m, verb, resource, group=group, namespace="ml-team")
    for resource in ("aimprofiles/status", "aimclusterprofiles/status"):
        assert can("default", m, "patch", resource, group="aim.eai.amd.com", namespace="x")
        assert not can("default", m, "update", resource, group="aim.eai.amd.com")
    assert can("default", m, "create", "events", namespace="default")
    assert not can("default", m, "delete", "events", namespace="default")
    # Its ConfigMap: in its namespace only.
    assert can("default", m, "watch", "configmaps", namespace=NAMESPACE)
    assert not can("default", m, "get", "configmaps", namespace="kube-system")
    assert not can("default", m, "update", "configmaps", namespace=NAMESPACE)
    # Its Lease: created in its namespace, read and renewed by name.
    lease = {"group": "coordination.k8s.io", "namespace": NAMESPACE}
    assert can("default", m, "create", "leases", **lease)
    for verb in ("get", "update"):
        assert can("default", m, verb, "leases", name="aim-matcher", **lease)
        assert not can("default", m, verb, "leases", name="kube-scheduler", **lease)
    assert not can(
        "default", m, "create", "leases", group="coordination.k8s.io", namespace="kube-system"
    )


def test_matcher_rbac_covers_what_the_controller_calls():
    """The lease name, ConfigMap name and Event API the controller uses are the granted ones."""
    deployment = one("default", "Deployment", "aim-matcher")
    args = pod_spec(deployment)["containers"][0]["args"]
    assert "--lease-name=aim-matcher" in args
    assert "--config-map=aim-matcher-config" in args
    events = (ROOT / "matcher" / "controller" / "events.py").read_text()
    assert "create_namespaced_event" in events  # core/v1 Events


# --- Pods --------------------------------------------------------------------------------

#: hostPath volumes each variant may mount writable; everything else must be read-only.
WRITABLE_HOST_PATHS = {
    "default": set(),
    "amdsmi": {"/dev/kfd"},
    "nfd": {"/etc/kubernetes/node-feature-discovery/features.d"},
    "cleanup": set(),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_pod_is_hardened(variant):
    uid, gid = check_dockerfile.final_user() or (None, None)
    assert uid
    assert uid != 0
    for workload in workloads(variant):
        spec = pod_spec(workload)
        name = f"{variant}: {workload['metadata']['name']}"
        assert not spec.get("hostNetwork")
        assert not spec.get("hostPID")
        assert not spec.get("hostIPC")
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        nfd_detector = variant == "nfd" and workload["kind"] == "DaemonSet"
        if nfd_detector:  # writes root's features.d; documented in the component
            assert spec["securityContext"]["runAsUser"] == 0
        else:
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["runAsUser"] == uid, name
            assert spec["securityContext"]["runAsGroup"] == gid, name
        host_paths = {
            v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v
        }
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert not sc.get("privileged"), name
            assert container["resources"]["requests"]["memory"], name
            assert container["resources"]["requests"]["cpu"], name
            assert container["resources"]["limits"]["memory"], name
            if container in spec["containers"] and "ports" in container:  # a server: probed
                ports = {p["name"] for p in container["ports"]}
                for probe in ("livenessProbe", "readinessProbe"):
                    assert container[probe]["httpGet"]["port"] in ports, (name, probe)
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            for mount in container.get("volumeMounts", []):
                path = host_paths.get(mount["name"])
                if path is not None and path not in WRITABLE_HOST_PATHS[variant]:
                    assert mount.get("readOnly") is True, (name, mount)


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
    spec = pod_spec(one(variant, "DaemonSet", "aim-detector"))
    [container] = [
        c
        for c in spec["containers"] + spec.get("initContainers", [])
        if c["command"] == ["aim-detector"]
    ]
    text = help_text("aim-detector")
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
    # Host /sys and the host's /proc/cpuinfo, read-only, where the flags point.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/host/sys"]["name"]]["hostPath"]["path"] == "/sys"
    assert volumes[mounts["/host/proc/cpuinfo"]["name"]]["hostPath"]["path"] == "/proc/cpuinfo"
    assert "--sysfs-root=/host/sys" in container["args"]
    assert "--procfs-root=/host/proc" in container["args"]
    port = container["ports"][0]["containerPort"]
    assert f"--metrics-port={port}" in container["args"]


@pytest.mark.parametrize("host", ["mi300x-8-cpx-nps4", "epyc-vm-masked"])
def test_detector_needs_only_cpuinfo_from_procfs(tmp_path, host):
    """The DaemonSet mounts only the host's /proc/cpuinfo: with nothing else in procfs the
    detector, run with the DaemonSet's root flags, must find exactly what it finds with the
    whole host tree."""
    root = build_host(tmp_path, host)
    only_cpuinfo = tmp_path / "proc-mount"
    only_cpuinfo.mkdir()
    shutil.copy(root / "proc" / "cpuinfo", only_cpuinfo / "cpuinfo")

    def labels(*roots: str) -> dict[str, str]:
        result = subprocess.run(
            [str(BIN / "aim-detector"), "--once", "--dry-run", "--output", "json", *roots],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        report = json.loads(result.stdout)
        assert report["errors"] == {}
        labels: dict[str, str] = report["labels"]
        return labels

    full = labels("--host-root", str(root))
    assert full  # the fixture has AMD hardware
    mounted = labels("--sysfs-root", str(root / "sys"), "--procfs-root", str(only_cpuinfo))
    assert mounted == full


def test_amdsmi_variant_mounts_gpu_devices_without_privilege():
    spec = pod_spec(one("amdsmi", "DaemonSet", "aim-detector"))
    container = spec["containers"][0]
    paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert {"/dev/kfd", "/dev/dri", "/sys", "/proc/cpuinfo"} == paths
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


def _denied(records, subject) -> list[str]:
    denied = []
    for rec in records:
        group, resource, namespace, name = _request_target(rec.path)
        if not can(
            "default", subject, rec.verb, resource, group=group, namespace=namespace, name=name
        ):
            denied.append(f"{rec.verb} {rec.path}")
    return denied


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
def test_rbac_allows_every_request_the_programs_make(kube, tmp_path):
    """Run the real detector and matcher against the test API server, record every request
    they send, and check each against the bundle's RBAC, as the API server's authorizer would."""
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
        ],
        env={**os.environ, "POD_NAMESPACE": NAMESPACE, "POD_NAME": "aim-matcher-test"},
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
        kube.kubectl("cordon", "gpu-0")  # a flip: an Event
        wait_for("qwen-qwen3-32b-mi300x-lat-fp8", "NotAvailable")
    finally:
        matcher.send_signal(signal.SIGTERM)  # releases the Lease
        assert matcher.wait(timeout=30) == 0
    matcher_requests = _program_requests(server)

    server.requests.clear()
    subprocess.run([*detector, "--cleanup"], env=env, check=True, timeout=60)
    detector_requests += _program_requests(server)

    assert _denied(detector_requests, DETECTOR_SA) == []
    assert _denied(matcher_requests, MATCHER_SA) == []
    # The run exercised every permission it is meant to check.
    done = {(r.verb, _request_target(r.path)[1]) for r in matcher_requests}
    assert {
        ("list", "nodes"),
        ("watch", "nodes"),
        ("list", "aimprofiles"),
        ("patch", "aimclusterprofiles/status"),
        ("patch", "aimprofiles/status"),
        ("create", "events"),
        ("create", "leases"),
        ("update", "leases"),
        ("list", "configmaps"),
    } <= done
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
