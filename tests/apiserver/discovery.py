"""Discovery documents: /api, /apis, /api/v1, /apis/<group>[/<version>], /version."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from .registry import Registry
from .resources import ALL_VERBS, STATUS_VERBS, ResourceType


def api_versions(address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(reg: Registry) -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in sorted(reg.group_versions().items()) if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(reg: Registry, group: str) -> dict[str, Any] | None:
    versions = reg.group_versions().get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """discovery.StorageVersionHash: 8 bytes of sha256("group/version/kind"), base64."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _verbs(rt: ResourceType) -> list[str]:
    """In kube-apiserver's order: sorted for built-ins (Namespaces have no deletecollection),
    the apiextensions handler's own order for custom resources."""
    if rt.is_custom:
        return ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
    if rt.key == "/namespaces":
        return [v for v in ALL_VERBS if v != "deletecollection"]
    return list(ALL_VERBS)


def _entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": _verbs(rt),
        "storageVersionHash": storage_version_hash(rt.group, rt.storage_version, rt.kind),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    if rt.has_status:
        out.append(
            {
                "name": f"{rt.plural}/status",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(STATUS_VERBS),
            }
        )
    return out


def resource_list(reg: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = [rt for rt in reg.types() if rt.group == group and version in rt.versions]
    if not types:
        return None
    resources = [e for rt in sorted(types, key=lambda t: t.plural) for e in _entries(rt)]
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }


VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-aim-test",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
