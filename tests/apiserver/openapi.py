"""A minimal OpenAPI v3 surface: enough for kubectl to see that the server supports the
`fieldValidation` query parameter (so `kubectl apply/create` validate server-side), and to
find each custom resource's schema (`kubectl explain`, metadata included, from the meta.k8s.io
schemas recorded from kube-apiserver). Built-ins carry no schemas, so kubectl falls back to
its compiled-in strategic-merge metadata for them and validates nothing client-side."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
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


@functools.cache
def _meta() -> dict[str, Any]:
    return dict(
        json.loads((Path(__file__).parent / "testdata" / "openapi_meta_v1.json").read_text())
    )


def _published(schema: Mapping[str, Any], gvk: dict[str, str]) -> dict[str, Any]:
    """A CRD's schema as kube-apiserver publishes it: apiVersion and kind described, and
    metadata a reference to ObjectMeta (so that `kubectl explain <kind>.metadata` works)."""
    meta = _meta()
    props = dict(schema.get("properties") or {})
    props.update(apiVersion=meta["apiVersion"], kind=meta["kind"], metadata=meta["metadata"])
    return {
        **schema,
        "properties": props,
        "x-kubernetes-group-version-kind": [gvk],
    }


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
            schemas[_schema_name(rt, version)] = _published(schema, gvk)
            schemas.update(_meta()["schemas"])
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
