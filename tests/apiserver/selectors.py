"""Label selectors (full grammar) and field selectors, as the API server parses them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_NAME_RE = re.compile(rf"^{_NAME}$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def label_key_error(key: str) -> str | None:
    """Why `key` is not a valid label/annotation key (None when it is)."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return "prefix part must be non-empty"
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character, at most 63 characters"
        )
    return None


def label_value_error(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _NAME_RE.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return None


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in (">", "<"):
            # Kubernetes: the label must exist and parse as an integer (else no match).
            try:
                have, want = int(value or ""), int(self.values[0])
            except ValueError:
                return False
            return have > want if self.op == ">" else have < want
        if self.op in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" match objects without the key, as Kubernetes does.
        return not present or value not in self.values


_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|>|<|[^\s(),!=<>]+)")
_INTEGER = re.compile(r"^[-+]?[0-9]+$")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ApiError.bad_request(f"unable to parse requirement: {text!r}")
        out.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k,n>5` into requirements (400 on bad
    input; `in ()`/`notin ()` too, as Kubernetes requires a non-empty set)."""
    if not text or not text.strip():
        return ()
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def fail(why: str) -> ApiError:
        return ApiError.bad_request(f"unable to parse requirement: {why} in {text!r}")

    while i < len(toks):
        negate = toks[i] == "!"
        if negate:
            i += 1
        if i >= len(toks):
            raise fail("missing key")
        key = toks[i]
        if key in ("(", ")", ",", "=", "==", "!=", ">", "<"):
            raise fail(f"unexpected {key!r}")
        if err := label_key_error(key):
            raise ApiError.bad_request(
                f"unable to parse requirement: invalid label key {key!r}: {err}"
            )
        i += 1
        nxt = toks[i] if i < len(toks) else ","
        if negate:
            if nxt != ",":
                raise fail("'!key' takes no operator")
            reqs.append(Requirement(key, "!"))
        elif nxt == ",":
            reqs.append(Requirement(key, "exists"))
        elif nxt in ("=", "==", "!="):
            i += 1
            val = toks[i] if i < len(toks) and toks[i] not in (",", "(", ")") else ""
            if val:
                i += 1
            if err := label_value_error(val):
                raise ApiError.bad_request(f"invalid label value: {val!r}: {err}")
            reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (val,)))
        elif nxt in (">", "<"):
            i += 1
            val = toks[i] if i < len(toks) and toks[i] not in (",", "(", ")") else ""
            if val:
                i += 1
            if not _INTEGER.match(val):
                raise fail(f"for 'Gt', 'Lt' operators, the value must be an integer (got {val!r})")
            reqs.append(Requirement(key, nxt, (val,)))
        elif nxt in ("in", "notin"):
            i += 1
            if i >= len(toks) or toks[i] != "(":
                raise fail(f"expected '(' after {nxt}")
            i += 1
            vals: list[str] = []
            while i < len(toks) and toks[i] != ")":
                if toks[i] != ",":
                    if err := label_value_error(toks[i]):
                        raise ApiError.bad_request(f"invalid label value: {toks[i]!r}: {err}")
                    vals.append(toks[i])
                i += 1
            if i >= len(toks):
                raise fail("missing ')'")
            i += 1
            if not vals:
                raise fail("for 'in', 'notin' operators, values set can't be empty")
            reqs.append(Requirement(key, nxt, tuple(vals)))
        else:
            raise fail(f"unexpected {nxt!r} after key {key!r}")
        if i < len(toks):
            if toks[i] != ",":
                raise fail(f"expected ',' but got {toks[i]!r}")
            i += 1
    return tuple(reqs)


def labels_match(reqs: tuple[Requirement, ...], obj: Mapping[str, Any]) -> bool:
    if not reqs:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)


# Field labels each kind supports (metadata.name and metadata.namespace work everywhere).
SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "Event": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "Node": frozenset({"spec.unschedulable"}),
    "Pod": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "Namespace": frozenset({"status.phase"}),
}

FieldMatcher = Callable[[Mapping[str, Any]], bool]


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    if path == "source":
        return str(((obj.get("source") or {}).get("component")) or "")
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    if cur is None:
        return "false" if path in ("spec.unschedulable", "spec.hostNetwork") else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


# events.k8s.io/v1 field labels, in the core/v1 form Events are stored in.
EVENTS_V1_FIELDS = {
    "regarding.": "involvedObject.",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
}


def parse_field_selector(
    text: str | None, kind: str, events_v1: bool = False, extra: frozenset[str] = frozenset()
) -> FieldMatcher:
    """Parse `metadata.name=x,metadata.namespace!=y` (400 for unsupported field labels);
    `extra` are a CRD's selectable fields."""
    if not text or not text.strip():
        return lambda _obj: True
    if events_v1:
        for new, old in EVENTS_V1_FIELDS.items():
            text = text.replace(new, old)
    terms: list[tuple[str, bool, str]] = []
    allowed = (
        {"metadata.name", "metadata.namespace"} | SUPPORTED_FIELDS.get(kind, frozenset()) | extra
    )
    for part in text.split(","):
        m = re.match(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError.bad_request(f"invalid selector: {text!r}; can't understand {part!r}")
        path, op, val = m.groups()
        if path not in allowed:
            raise ApiError.bad_request(f"field label not supported: {path}")
        terms.append((path, op == "!=", val))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, p) == v) != neg for p, neg, v in terms)

    return match
