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


# events.k8s.io/v1 fields its JSON omits when empty (the others show as null or {}).
_OMIT_EMPTY = ("action", "reportingController", "reportingInstance", "deprecatedCount", "note")


def from_core(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "eventTime": None,
        "deprecatedSource": {},
        "deprecatedFirstTimestamp": None,
        "deprecatedLastTimestamp": None,
    }
    for key in _SAME:
        if key in obj:
            out[key] = obj[key]
    for new, old in _RENAMED:
        if old in obj:
            out[new] = obj[old]
    if obj.get("source"):
        out["deprecatedSource"] = obj["source"]
    for key in _OMIT_EMPTY:
        if not out.get(key):
            out.pop(key, None)
    return out
