"""meta.k8s.io/v1 Table rendering: CRD additionalPrinterColumns and kubectl's built-in columns."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .resources import PrinterColumn, ResourceType

NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}


def human_duration(seconds: int) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any) -> str | None:
    if not isinstance(timestamp, str):
        return None
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return human_duration(int((datetime.now(UTC) - then).total_seconds()))


_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\*)\]|\[\?\(@\.([\w.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def json_path(obj: Any, path: str) -> list[Any]:
    """Evaluate the simple JSONPath printer columns use (`.a.b`, `[0]`, `[*]`, `[?(@.k=="v")]`)."""
    path = path.strip().strip("{}")
    values = [obj]
    pos = 0
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if not m:
            return []
        pos = m.end()
        field, index, fkey, fval = m.groups()
        nxt: list[Any] = []
        for v in values:
            if field is not None and isinstance(v, Mapping) and field in v:
                nxt.append(v[field])
            elif index is not None and isinstance(v, list):
                if index == "*":
                    nxt.extend(v)
                elif int(index) < len(v):
                    nxt.append(v[int(index)])
            elif fkey is not None and isinstance(v, list):
                nxt.extend(i for i in v if [str(x) for x in json_path(i, "." + fkey)[:1]] == [fval])
        values = nxt
    return values


def _cell(column: PrinterColumn, obj: Mapping[str, Any]) -> Any:
    found = json_path(obj, column.json_path)
    if not found or found[0] is None:
        return None
    value = found[0]
    if column.type == "date":
        return age(value)
    if column.type == "integer":
        return value if isinstance(value, int) else None
    if column.type == "number":
        return value if isinstance(value, (int, float)) else None
    if column.type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    if len(found) > 1:
        return ",".join(str(v) for v in found)
    return (
        json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)
    )


def _node_status(obj: Mapping[str, Any]) -> str:
    conds = (obj.get("status") or {}).get("conditions") or []
    ready = next((c.get("status") for c in conds if c.get("type") == "Ready"), None)
    state = {"True": "Ready", "False": "NotReady"}.get(str(ready), "Unknown")
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    return state


def _node_roles(obj: Mapping[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    return ",".join(r for r in roles if r) or "<none>"


Builtin = list[tuple[str, str, Callable[[Mapping[str, Any]], Any]]]


def _created(obj: Mapping[str, Any]) -> Any:
    return age((obj.get("metadata") or {}).get("creationTimestamp"))


def _event_last_seen(obj: Mapping[str, Any]) -> Any:
    series = obj.get("series") or {}
    when = series.get("lastObservedTime") or obj.get("lastTimestamp") or obj.get("eventTime")
    return age(when) or _created(obj)


def _name(obj: Mapping[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("name")


def _pod_ready(obj: Mapping[str, Any]) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


BUILTIN_COLUMNS: dict[str, Builtin] = {
    "/pods": [
        ("Ready", "string", _pod_ready),
        ("Status", "string", lambda o: (o.get("status") or {}).get("phase", "Pending")),
        ("Age", "string", _created),
    ],
    "/nodes": [
        ("Status", "string", _node_status),
        ("Roles", "string", _node_roles),
        ("Age", "string", _created),
        (
            "Version",
            "string",
            lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
        ),
    ],
    "/namespaces": [
        ("Status", "string", lambda o: (o.get("status") or {}).get("phase", "")),
        ("Age", "string", _created),
    ],
    "/configmaps": [
        ("Data", "integer", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        ("Age", "string", _created),
    ],
    "coordination.k8s.io/leases": [
        ("Holder", "string", lambda o: (o.get("spec") or {}).get("holderIdentity", "")),
        ("Age", "string", _created),
    ],
    "/events": [
        ("Last Seen", "string", _event_last_seen),
        ("Type", "string", lambda o: o.get("type", "")),
        ("Reason", "string", lambda o: o.get("reason", "")),
        (
            "Object",
            "string",
            lambda o: "{}/{}".format(
                ((o.get("involvedObject") or {}).get("kind") or "").lower(),
                (o.get("involvedObject") or {}).get("name", ""),
            ),
        ),
        ("Message", "string", lambda o: o.get("message", "")),
    ],
    "apiextensions.k8s.io/customresourcedefinitions": [
        ("Created At", "date", lambda o: (o.get("metadata") or {}).get("creationTimestamp")),
    ],
}

_DEFAULT: Builtin = [("Age", "string", _created)]


def _aged(fn: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
    return lambda o: age(fn(o))


def _object_field(obj: Mapping[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def table(
    rt: ResourceType,
    objs: list[Mapping[str, Any]],
    resource_version: str,
    include: str = "Metadata",
    cont: str = "",
) -> dict[str, Any]:
    # kubectl shows Events with the name last and only in -o wide, as kube-apiserver's table does.
    name_last = rt.key == "/events"
    columns: list[dict[str, Any]] = [] if name_last else [dict(NAME_COLUMN)]
    cell_fns: list[Callable[[Mapping[str, Any]], Any]] = [] if name_last else [_name]
    if rt.is_custom:
        printer = rt.printer_columns or (
            PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
        )
        for col in printer:
            columns.append(
                {
                    "name": col.name,
                    "type": col.type,
                    "format": col.format,
                    "description": col.description,
                    "priority": col.priority,
                }
            )
            cell_fns.append(functools.partial(_cell, col))
    else:
        for name, typ, fn in BUILTIN_COLUMNS.get(rt.key, _DEFAULT):
            columns.append(
                {"name": name, "type": typ, "format": "", "description": "", "priority": 0}
            )
            cell_fns.append(_aged(fn) if typ == "date" else fn)
        if name_last:
            columns.append({**NAME_COLUMN, "priority": 1})
            cell_fns.append(_name)
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": [f(obj) for f in cell_fns]}
        field = _object_field(obj, include)
        if field is not None:
            row["object"] = field
        rows.append(row)
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if cont:
        metadata["continue"] = cont
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    }
