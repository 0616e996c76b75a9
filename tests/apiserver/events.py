"""events.k8s.io/v1 Events are a view of core/v1 Events (one storage, as in Kubernetes)."""

from __future__ import annotations

from typing import Any

# (events.k8s.io/v1 field, core/v1 field) pairs that only differ in name.
_RENAMED = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
)
_SAME = (
    "metadata",
    "reason",
    "type",
    "eventTime",
    "series",
    "action",
    "related",
    "reportingInstance",
)


def to_core(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Event", "apiVersion": "v1"}
    for key in _SAME:
        if key in obj:
            out[key] = obj[key]
    for new, old in _RENAMED:
        if new in obj:
            out[old] = obj[new]
    if "deprecatedSource" in obj:
        out["source"] = obj["deprecatedSource"]
    if "involvedObject" not in out:
        out["involvedObject"] = {}
    return out


def from_core(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Event", "apiVersion": "events.k8s.io/v1"}
    for key in _SAME:
        if key in obj:
            out[key] = obj[key]
    for new, old in _RENAMED:
        if old in obj:
            out[new] = obj[old]
    if obj.get("source"):
        out["deprecatedSource"] = obj["source"]
    return out
