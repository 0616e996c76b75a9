"""CustomResourceDefinition handling: turn a CRD object into a served ResourceType."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import ApiError, Cause
from .resources import PrinterColumn, ResourceType

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, then higher numbers first."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    major, level, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[level]
    return (rank, -major, -minor, version)


def crd_causes(crd: Mapping[str, Any]) -> list[Cause]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[Cause] = []
    if not spec.get("group"):
        causes.append(Cause("spec.group", "Required value", "FieldValueRequired"))
    for key in ("plural", "kind"):
        if not names.get(key):
            causes.append(Cause(f"spec.names.{key}", "Required value", "FieldValueRequired"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            Cause(
                "spec.scope",
                f'Unsupported value: "{spec.get("scope")}": '
                'supported values: "Cluster", "Namespaced"',
                "FieldValueNotSupported",
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append(Cause("spec.versions", "Required value", "FieldValueRequired"))
    if versions and sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            Cause(
                "spec.versions",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    expected = f"{names.get('plural')}.{spec.get('group')}"
    name = (crd.get("metadata") or {}).get("name")
    if not causes and name != expected:
        causes.append(
            Cause(
                "metadata.name",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            )
        )
    for i, v in enumerate(versions):
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if v.get("served", True) and not isinstance(schema, Mapping):
            causes.append(
                Cause(
                    f"spec.versions[{i}].schema.openAPIV3Schema",
                    "Required value: schemas are required",
                    "FieldValueRequired",
                )
            )
    return causes


def resource_type(crd: Mapping[str, Any]) -> ResourceType:
    causes = crd_causes(crd)
    if causes:
        name = (crd.get("metadata") or {}).get("name", "")
        raise ApiError.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)
    spec = crd["spec"]
    names = spec["names"]
    versions = [v for v in spec["versions"] if v.get("served", True)]
    ordered = sorted((v["name"] for v in versions), key=version_priority)
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    first = (
        next(v for v in versions if v["name"] == ordered[0]) if versions else spec["versions"][0]
    )
    columns = tuple(
        PrinterColumn(
            name=c["name"],
            type=c.get("type", "string"),
            json_path=c.get("jsonPath", ""),
            description=c.get("description", ""),
            priority=int(c.get("priority", 0)),
            format=c.get("format", ""),
        )
        for c in first.get("additionalPrinterColumns") or []
    )
    return ResourceType(
        group=spec["group"],
        versions=tuple(ordered),
        storage_version=storage,
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec["scope"] == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        has_status="status" in (first.get("subresources") or {}),
        has_generation=True,
        is_custom=True,
        printer_columns=columns,
        selectable_fields=frozenset(
            str(f.get("jsonPath", "")).lstrip(".") for f in first.get("selectableFields") or ()
        ),
        schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") for v in versions},
    )


def established_status(crd: Mapping[str, Any], now: str) -> dict[str, Any]:
    names = dict(crd["spec"]["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    conds = [
        {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now}
        for t, r, m in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    stored = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
    return {"acceptedNames": names, "conditions": conds, "storedVersions": stored}
