"""meta.k8s.io/v1 Table rendering: CRD additionalPrinterColumns and kubectl's built-in columns."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .resources import PrinterColumn, ResourceType


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
    """printNode: NotReady for any Ready condition that is not True (Unknown too); Unknown
    only when the node reports no Ready condition."""
    conds = (obj.get("status") or {}).get("conditions") or []
    ready = [c.get("status") for c in conds if c.get("type") == "Ready"]
    state = ["Unknown"] if not ready else ["Ready" if ready[-1] == "True" else "NotReady"]
    if (obj.get("spec") or {}).get("unschedulable"):
        state.append("SchedulingDisabled")
    return ",".join(state)


def _node_roles(obj: Mapping[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")}
    if labels.get("kubernetes.io/role"):
        roles.add(labels["kubernetes.io/role"])
    return ",".join(sorted(r for r in roles if r)) or "<none>"


def _node_address(kind: str) -> Callable[[Mapping[str, Any]], str]:
    def cell(obj: Mapping[str, Any]) -> str:
        for a in (obj.get("status") or {}).get("addresses") or []:
            if a.get("type") == kind:
                return str(a.get("address", ""))
        return "<none>"

    return cell


def _node_info(key: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get(key) or "<unknown>"


Cell = Callable[[Mapping[str, Any]], Any]


def _since(timestamp: Any) -> str:
    """translateTimestampSince: `<unknown>` for a zero time."""
    return age(timestamp) or "<unknown>"


def _created(obj: Mapping[str, Any]) -> Any:
    return _since((obj.get("metadata") or {}).get("creationTimestamp"))


def _name(obj: Mapping[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("name")


def _event_first_seen(obj: Mapping[str, Any]) -> str:
    return _since(obj.get("firstTimestamp") or obj.get("eventTime"))


def _event_last_seen(obj: Mapping[str, Any]) -> str:
    series = obj.get("series") or {}
    if series:
        return _since(series.get("lastObservedTime"))
    return _since(obj.get("lastTimestamp")) if obj.get("lastTimestamp") else _event_first_seen(obj)


def _event_count(obj: Mapping[str, Any]) -> int:
    series = obj.get("series") or {}
    if series:
        return int(series.get("count") or 0)
    return int(obj.get("count") or 0) or 1


def _event_object(obj: Mapping[str, Any]) -> str:
    involved = obj.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    return f"{kind}/{involved['name']}" if involved.get("name") else kind


def _event_source(obj: Mapping[str, Any]) -> str:
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingComponent") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else component


def _pod_ready(obj: Mapping[str, Any]) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    return str(status.get("reason") or status.get("phase") or "")


def _pod_restarts(obj: Mapping[str, Any]) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    return str(sum(int(s.get("restartCount") or 0) for s in statuses))


def _pod_ip(obj: Mapping[str, Any]) -> str:
    ips = (obj.get("status") or {}).get("podIPs") or []
    return (ips[0].get("ip") if ips else "") or "<none>"


def _pod_gates(obj: Mapping[str, Any]) -> str:
    gates = (obj.get("spec") or {}).get("readinessGates") or []
    if not gates:
        return "<none>"
    conds = {
        c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []
    }
    ready = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
    return f"{ready}/{len(gates)}"


def _created_at(obj: Mapping[str, Any]) -> Any:
    """The default table convertor's date cell: the timestamp itself (kubectl ages it)."""
    return (obj.get("metadata") or {}).get("creationTimestamp")


#: The cells of kube-apiserver's printers (pkg/printers/internalversion), wide columns
#: included, in the order of the recorded column definitions (testdata/table_columns.json).
BUILTIN_CELLS: dict[str, list[Cell]] = {
    "/nodes": [
        _name,
        _node_status,
        _node_roles,
        _created,
        lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
        _node_address("InternalIP"),
        _node_address("ExternalIP"),
        _node_info("osImage"),
        _node_info("kernelVersion"),
        _node_info("containerRuntimeVersion"),
    ],
    "/namespaces": [_name, lambda o: (o.get("status") or {}).get("phase", ""), _created],
    "/configmaps": [
        _name,
        lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}),
        _created,
    ],
    "coordination.k8s.io/leases": [
        _name,
        lambda o: (o.get("spec") or {}).get("holderIdentity") or "",
        _created,
    ],
    "/events": [
        _event_last_seen,
        lambda o: o.get("type", ""),
        lambda o: o.get("reason", ""),
        _event_object,
        lambda o: (o.get("involvedObject") or {}).get("fieldPath", ""),
        _event_source,
        lambda o: str(o.get("message") or "").strip(),
        _event_first_seen,
        _event_count,
        _name,
    ],
    "/pods": [
        _name,
        _pod_ready,
        _pod_status,
        _pod_restarts,
        _created,
        _pod_ip,
        lambda o: (o.get("spec") or {}).get("nodeName") or "<none>",
        lambda o: (o.get("status") or {}).get("nominatedNodeName") or "<none>",
        _pod_gates,
    ],
    "apiextensions.k8s.io/customresourcedefinitions": [_name, _created_at],
}
_DEFAULT_KEY = "apiextensions.k8s.io/customresourcedefinitions"


@functools.cache
def builtin_columns() -> dict[str, list[dict[str, Any]]]:
    doc = json.loads((Path(__file__).parent / "testdata" / "table_columns.json").read_text())
    return {k: v for k, v in doc.items() if not k.startswith("_")}


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
    columns: list[dict[str, Any]]
    cell_fns: list[Cell]
    if rt.is_custom:
        name_column = builtin_columns()[_DEFAULT_KEY][0]
        columns, cell_fns = [dict(name_column)], [_name]
        printer = rt.printer_columns or (
            PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
        )
        for col in printer:
            description = col.description or (
                f"Custom resource definition column (in JSONPath format): {col.json_path}"
            )
            columns.append(
                {
                    "name": col.name,
                    "type": col.type,
                    "format": col.format,
                    "description": description,
                    "priority": col.priority,
                }
            )
            cell_fns.append(functools.partial(_cell, col))
    else:
        key = rt.key if rt.key in BUILTIN_CELLS else _DEFAULT_KEY
        columns = [dict(c) for c in builtin_columns()[key]]
        cell_fns = BUILTIN_CELLS[key]
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
