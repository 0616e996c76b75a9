"""What kube-apiserver checks in built-in kinds beyond their metadata, for the kinds this
project writes: Events (pkg/apis/core/validation/events.go) and Leases
(pkg/apis/coordination/validation), and the MicroTime fields both carry, which the real
server's JSON decoder only reads in the form `2006-01-02T15:04:05.000000Z07:00`."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError
from .validation import (
    FieldError,
    invalid,
    is_dns1123_subdomain,
    is_qualified_name,
    required,
)

EVENTS = "/events"
LEASES = "coordination.k8s.io/leases"

#: MicroTime fields per storage key (dotted paths).
MICRO_TIMES = {
    EVENTS: ("eventTime", "series.lastObservedTime"),
    LEASES: ("spec.acquireTime", "spec.renewTime"),
}
_MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
# Go's time.Parse, element by element: (layout element, what the value must start with).
_ELEMENTS = (
    ("2006", r"\d{4}"),
    ("-", "-"),
    ("01", r"\d{2}"),
    ("-", "-"),
    ("02", r"\d{2}"),
    ("T", "T"),
    ("15", r"\d{2}"),
    (":", ":"),
    ("04", r"\d{2}"),
    (":", ":"),
    ("05", r"\d{2}"),
    (".000000", r"\.\d{6}"),
    ("Z07:00", r"Z|[+-]\d{2}:\d{2}"),
)


def _micro_time_error(value: str) -> str | None:
    """Why Go's time.Parse(RFC3339Micro, value) fails, in its words (None: it parses)."""
    rest = value
    for i, (element, pattern) in enumerate(_ELEMENTS):
        m = re.match(pattern, rest)
        if not m:
            shown = element if len(element) > 1 else "".join(e for e, _ in _ELEMENTS[i:])
            return (
                f'parsing time "{value}" as "{_MICRO_LAYOUT}": cannot parse "{rest}" as "{shown}"'
            )
        rest = rest[m.end() :]
    if rest:
        return f'parsing time "{value}": extra text: "{rest}"'
    return None


#: metav1.Time fields (RFC 3339, stored to the second in UTC) per storage key.
TIMES = {EVENTS: ("firstTimestamp", "lastTimestamp")}


def _at(obj: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    """The dict holding `path`'s last key (None if a parent is missing), and that key."""
    *parents, last = path.split(".")
    holder: Any = obj
    for part in parents:
        holder = holder.get(part) if isinstance(holder, dict) else None
    return (holder if isinstance(holder, dict) else None), last


def decode_times(rkey: str, kind: str, obj: dict[str, Any]) -> None:
    """Read MicroTime and Time fields as kube-apiserver's decoder does: 400 for a value it
    cannot parse; stored in UTC (MicroTime with six fractional digits, Time to the second)."""
    for path, micro in [(p, True) for p in MICRO_TIMES.get(rkey, ())] + [
        (p, False) for p in TIMES.get(rkey, ())
    ]:
        holder, key = _at(obj, path)
        value = holder.get(key) if holder is not None else None
        if value is None:
            continue
        if not isinstance(value, str):
            why = f"json: cannot unmarshal {type(value).__name__} into Go value of type string"
        elif micro:
            why = _micro_time_error(value) or ""
        else:
            why = "" if _RFC3339.match(value) else f'parsing time "{value}" as RFC 3339'
        if why:
            raise ApiError.bad_request(
                f'{kind} in version "v1" cannot be handled as a {kind}: {why}'
            )
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
        assert holder is not None
        holder[key] = (
            when.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if micro else when.strftime("%Y-%m-%dT%H:%M:%SZ")
        )


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
#: What a typed core/v1 Event always carries (Go zero values its JSON does not omit).
EVENT_ZERO_VALUES: dict[str, Any] = {
    "source": {},
    "firstTimestamp": None,
    "lastTimestamp": None,
    "eventTime": None,
    "reportingComponent": "",
    "reportingInstance": "",
}


def decode(rkey: str, kind: str, obj: dict[str, Any]) -> None:
    """What decoding into the typed Go object does to a built-in kind's JSON."""
    decode_times(rkey, kind, obj)
    if rkey == EVENTS:
        for key, zero in EVENT_ZERO_VALUES.items():
            obj.setdefault(key, copy.deepcopy(zero))
    if rkey == LEASES and isinstance(obj.get("spec"), dict):
        # CoordinatedLeaderElection is off by default: its fields are dropped, not refused.
        obj["spec"].pop("strategy", None)
        obj["spec"].pop("preferredHolder", None)


# -- Events -------------------------------------------------------------------------------------
_LIMITS = {"reportingInstance": 128, "action": 128, "reason": 128}
_NOTE_LIMIT = 1024


def _unset(value: Any) -> bool:
    return value in (None, "", 0, {}) or value == {"component": "", "host": ""}


def event_errors(
    event: dict[str, Any], old: dict[str, Any] | None, *, strict: bool
) -> list[FieldError]:
    """ValidateEventCreate/ValidateEventUpdate on the core/v1 form of an Event. `strict`:
    the request came through events.k8s.io/v1 (core/v1 only gets the legacy checks)."""
    errs = _legacy_event_errors(event, strict=strict)
    if not strict:
        return errs
    if old is None:
        if event.get("series"):
            errs += _series_errors(event["series"])
        if not event.get("eventTime"):
            errs.append(required("eventTime"))
        if event.get("type") not in ("Normal", "Warning"):
            errs.append(invalid("type", "", f"has invalid value: {event.get('type') or ''}"))
        for name in ("firstTimestamp", "lastTimestamp", "count"):
            if not _unset(event.get(name)):
                errs.append(invalid(name, "", "needs to be unset"))
        if not _unset(event.get("source")):
            errs.append(invalid("source", "", "needs to be unset"))
        return errs
    if event.get("series") != old.get("series") and event.get("series"):
        errs += _series_errors(event["series"])
    for name in (
        "involvedObject",
        "reason",
        "message",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "type",
        "eventTime",
        "action",
        "related",
        "reportingComponent",
        "reportingInstance",
    ):
        if event.get(name) != old.get(name):
            path = "reportingController" if name == "reportingComponent" else name
            errs.append(invalid(path, event.get(name), "field is immutable"))
    return errs


def _series_errors(series: dict[str, Any]) -> list[FieldError]:
    errs = []
    if int(series.get("count") or 0) < 2:
        errs.append(invalid("series.count", "", "should be at least 2"))
    if not series.get("lastObservedTime"):
        errs.append(required("series.lastObservedTime"))
    return errs


def _legacy_event_errors(event: dict[str, Any], *, strict: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    namespace = event["metadata"].get("namespace") or ""
    involved_ns = (event.get("involvedObject") or {}).get("namespace") or ""
    controller = "reportingController" if strict else "reportingComponent"
    if not event.get("eventTime"):
        # An "old" event: its namespace must agree with the object's.
        if not involved_ns:
            if namespace not in ("", "default"):
                errs.append(
                    invalid("involvedObject.namespace", "", "does not match event.namespace")
                )
        elif namespace != involved_ns:
            errs.append(_namespace_mismatch(involved_ns))
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errs.append(_namespace_mismatch(""))
        reporting = event.get("reportingComponent") or ""
        if not reporting:
            errs.append(required(controller))
        errs += [invalid(controller, reporting, m) for m in is_qualified_name(reporting)]
        instance = event.get("reportingInstance") or ""
        if not instance:
            errs.append(required("reportingInstance"))
        for name in ("reportingInstance", "action", "reason"):
            value = event.get(name) or ""
            if name != "reportingInstance" and not value:
                errs.append(required(name))
            if len(value) > _LIMITS[name]:
                errs.append(invalid(name, "", f"can have at most {_LIMITS[name]} characters"))
        if len(event.get("message") or "") > _NOTE_LIMIT:
            errs.append(invalid("message", "", f"can have at most {_NOTE_LIMIT} characters"))
    errs += [invalid("namespace", namespace, m) for m in is_dns1123_subdomain(namespace)]
    return errs


def _namespace_mismatch(involved_ns: str) -> FieldError:
    return invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")


def path_segment_name_errors(name: str) -> list[FieldError]:
    """path.ValidatePathSegmentName: what any object's name must be (core/v1 Events get no
    more than this)."""
    msgs = []
    if name in (".", ".."):
        msgs.append(f"may not be '{name}'")
    for bad in ("/", "%"):
        if bad in name:
            msgs.append(f"may not contain '{bad}'")
    return [invalid("metadata.name", name, m) for m in msgs]


# -- Leases -------------------------------------------------------------------------------------
def lease_errors(lease: dict[str, Any]) -> list[FieldError]:
    """ValidateLeaseSpec."""
    spec = lease.get("spec") or {}
    errs: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errs.append(
            invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0")
        )
    return errs
