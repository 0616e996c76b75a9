"""The plugin's RBAC as shipped (daemonset/plugin/, docs/plugin.md "Permissions") on a real
kube-apiserver: a ServiceAccount bound by exactly those roles runs every command, the audit log
shows that each call it made was allowed, that it only read, and that it used every rule
granted (so nothing else is granted), and without the roles it fails with one line that says
where to look."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.conftest import Kube
from tests.controller_support import MI300X, cluster_profile, create_node, gpu_labels, node_obj
from tests.controlplane.users import service_account_kubeconfig
from tests.test_plugin import CONFIG_MAP, ensure_namespace, kubectl_aim, namespaced_profile

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "daemonset" / "plugin"
USER_NAMESPACE = "platform"
USER = "aim-plugin-user"
USERNAME = f"system:serviceaccount:{USER_NAMESPACE}:{USER}"


def shipped_roles(kube: Kube) -> list[dict[str, Any]]:
    """What ``kubectl apply -k daemonset/plugin/`` applies, rendered by the real kubectl."""
    rendered = kube.kubectl("kustomize", str(BUNDLE)).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def granted(roles: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(verb, resource, resourceName or '') for every rule of ``roles``."""
    return {
        (verb, resource, name)
        for role in roles
        for rule in role["rules"]
        for verb in rule["verbs"]
        for resource in rule["resources"]
        for name in rule.get("resourceNames") or [""]
    }


def used(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for e in events:
        ref = e.get("objectRef") or {}
        name = ref.get("name", "") if ref.get("resource") == "configmaps" else ""
        out.add((e["verb"], ref.get("resource", e["requestURI"]), name))
    return out


def test_the_shipped_roles_grant_exactly_what_the_plugin_uses(real_kube: Kube, tmp_path):
    plane = real_kube.require_plane()
    roles = shipped_roles(real_kube)
    assert sorted((r["kind"], r["metadata"]["name"]) for r in roles) == [
        ("ClusterRole", "aim-plugin-reader"),
        ("Role", "aim-plugin-config-reader"),
    ]
    api = real_kube.api_client()
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    for namespace in ("aim-system", USER_NAMESPACE, "ml-team"):
        ensure_namespace(core, namespace)
    core.create_namespaced_service_account(
        USER_NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=USER))
    )
    create_node(core, node_obj("gpu-0", gpu_labels(MI300X)))
    custom.create_cluster_custom_object(
        "aim.eai.amd.com", "v1alpha2", "aimclusterprofiles", cluster_profile("one", "MI300X", 1)
    )
    custom.create_namespaced_custom_object(
        "aim.eai.amd.com", "v1alpha2", "ml-team", "aimprofiles",
        namespaced_profile("mine", "ml-team", "MI300X", 16),
    )  # fmt: skip
    core.create_namespaced_config_map(
        "aim-system", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=CONFIG_MAP), data={})
    )
    kubeconfig = service_account_kubeconfig(
        plane, tmp_path / "user.kubeconfig", USER_NAMESPACE, USER
    )
    as_user = Kube(kubeconfig, real_kube.url, None, tmp_path / "cache")

    # Without the roles: one line naming the call and where the permissions are documented.
    denied = kubectl_aim(as_user, "nodes")
    assert denied.returncode == 2
    assert denied.stderr.splitlines()[-1].startswith("error: list nodes: forbidden: ")
    assert denied.stderr.rstrip().endswith("(see docs/plugin.md#permissions)")
    assert f"ConfigMap aim-system/{CONFIG_MAP} not readable (forbidden)" in denied.stderr

    real_kube.kubectl("apply", "-k", str(BUNDLE))
    subject = f"--serviceaccount={USER_NAMESPACE}:{USER}"
    real_kube.kubectl("create", "clusterrolebinding", "aim-plugin-reader",
                      "--clusterrole=aim-plugin-reader", subject)  # fmt: skip
    real_kube.kubectl("-n", "aim-system", "create", "rolebinding", "aim-plugin-config-reader",
                      "--role=aim-plugin-config-reader", subject)  # fmt: skip

    since = len(plane.audit_events())
    runs = {
        ("nodes", "-o", "wide"): 0,
        ("nodes", "-n", "ml-team", "--model", "MI300X"): 0,
        ("check",): 1,
        ("check", "-n", "ml-team", "-o", "json"): 1,
        ("why", "one"): 0,
        ("why", "mine", "-n", "ml-team"): 1,
        ("why", "one", "-n", "ml-team"): 0,  # no AIMProfile "one" there: the cluster profile
    }
    for args, code in runs.items():
        proc = kubectl_aim(as_user, *args)
        assert proc.returncode == code, (args, proc.stderr, proc.stdout)
        assert "note:" not in proc.stderr, (args, proc.stderr)  # the ConfigMap was read

    events = [
        e
        for e in plane.audit_events()[since:]
        if e["user"]["username"] == USERNAME and e.get("stage") == "ResponseComplete"
    ]
    denials = [e["requestURI"] for e in events if e["responseStatus"]["code"] in (401, 403)]
    assert denials == []
    assert all(e["verb"] in ("get", "list") for e in events)
    assert used(events) == granted(roles)

    # And nothing beyond: a few things the plugin never needs.
    for args in (
        ("watch", "nodes"),
        ("get", "nodes"),
        ("patch", "aimclusterprofiles.aim.eai.amd.com", "--subresource=status"),
        ("list", "configmaps", "-n", "aim-system"),
        ("get", "configmaps/other", "-n", "aim-system"),
        ("get", "secrets", "-n", "aim-system"),
        ("create", "aimprofiles.aim.eai.amd.com", "-n", "ml-team"),
    ):
        answer = as_user.kubectl("auth", "can-i", *args, check=False)
        assert answer.stdout.strip() == "no", (args, answer.stdout, answer.stderr)
