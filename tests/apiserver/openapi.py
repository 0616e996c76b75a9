"""A minimal OpenAPI v3 surface: enough for kubectl to see that the server supports the
`fieldValidation` query parameter (so `kubectl apply/create` validate server-side), and to
find each custom resource's schema (`kubectl explain`). Built-ins carry no schemas, so kubectl
falls back to its compiled-in strategic-merge metadata for them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .registry import Registry
from .resources import ResourceType


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def root(reg: Registry) -> dict[str, Any]:
    paths = {}
    for g, versions in reg.group_versions().items():
        for v in versions:
            p = _gv_path(g, v)
            digest = (
                hashlib.sha256(json.dumps(gv_document(reg, g, v), sort_keys=True).encode())
                .hexdigest()[:16]
                .upper()
            )
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={digest}"}
    return {"paths": paths}


def _schema_name(rt: ResourceType, version: str) -> str:
    rev = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{rev}.{version}.{rt.kind}"


def gv_document(reg: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = [rt for rt in reg.types() if rt.group == group and version in rt.versions]
    if not types:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    prefix = "/" + _gv_path(group, version)
    for rt in types:
        gvk = {"group": group, "version": version, "kind": rt.kind}
        base = (
            f"{prefix}/namespaces/{{namespace}}/{rt.plural}"
            if rt.namespaced
            else f"{prefix}/{rt.plural}"
        )
        params = [
            {
                "name": "fieldValidation",
                "in": "query",
                "schema": {"type": "string", "uniqueItems": True},
            }
        ]
        op = {
            "x-kubernetes-group-version-kind": gvk,
            "x-kubernetes-action": "patch",
            "parameters": params,
            "responses": {"200": {"description": "OK"}},
        }
        if rt.is_custom:
            op["requestBody"] = {
                "content": {
                    "application/merge-patch+json": {"schema": {"type": "object"}},
                    "application/json-patch+json": {"schema": {"type": "object"}},
                }
            }
        paths[f"{base}/{{name}}"] = {"patch": op}
        post = {**op, "x-kubernetes-action": "post"}
        paths[base] = {"post": post}
        schema = rt.schemas.get(version) if rt.is_custom else None
        if schema:
            schemas[_schema_name(rt, version)] = {
                **schema,
                "x-kubernetes-group-version-kind": [gvk],
            }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
