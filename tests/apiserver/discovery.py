"""Discovery documents: /api, /apis, /api/v1, /apis/<group>[/<version>], /version."""

from __future__ import annotations

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


def _entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(ALL_VERBS),
        "storageVersionHash": hashlib.sha256(rt.key.encode()).hexdigest()[:12],
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
