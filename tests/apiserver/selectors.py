"""Label selectors (full grammar) and field selectors, as the API server parses them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .validation import FieldError, aggregate, invalid, is_qualified_name, is_valid_label_value


def label_key_error(key: str) -> str | None:
    """Why `key` is not a valid label/annotation key (None when it is), as kube-apiserver says."""
    errs = is_qualified_name(key)
    return "; ".join(errs) if errs else None


def label_value_error(value: str) -> str | None:
    errs = is_valid_label_value(value)
    return "; ".join(errs) if errs else None


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "==", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in (">", "<"):
            # The label must exist and parse as an integer (else no match).
            try:
                have, want = _parse_int(value or ""), _parse_int(self.values[0])
            except ValueError:
                return False
            return have > want if self.op == ">" else have < want
        if self.op in ("=", "==", "in"):
            return present and value in self.values
        # "!=" and "notin" match objects without the key.
        return not present or value not in self.values


def _parse_int(text: str) -> int:
    """strconv.ParseInt(text, 10, 64): an optional sign and decimal digits only."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(text)
    n = int(text)
    if not -(2**63) <= n < 2**63:
        raise ValueError(text)
    return n


# The label selector lexer and parser of k8s.io/apimachinery/pkg/labels (v0.34), token for
# token, so that odd selectors (`a in ()`, `a in (b,)`, `a=`) select and fail alike.
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_KEYWORDS = {
    ")": "CLOSE",
    ",": "COMMA",
    "!": "NOT",
    "==": "DOUBLE_EQUALS",
    "=": "EQUALS",
    ">": "GT",
    "in": "IN",
    "<": "LT",
    "!=": "NOT_EQUALS",
    "notin": "NOTIN",
    "(": "OPEN",
}
_OPERATORS = {
    "IN": "in",
    "EQUALS": "=",
    "DOUBLE_EQUALS": "==",
    "GT": ">",
    "LT": "<",
    "NOTIN": "notin",
    "NOT_EQUALS": "!=",
}
_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"


class _SelectorError(Exception):
    pass


def _lex(text: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append(("END", ""))
            return items
        if text[pos] in _SPECIAL:
            buf, last, last_pos = "", None, pos
            while pos < n and text[pos] in _SPECIAL:
                buf += text[pos]
                pos += 1
                if buf in _KEYWORDS:
                    last, last_pos = buf, pos
                elif last is not None:
                    pos -= 1
                    break
            if last is None:
                items.append(("ERROR", f"error expected: keyword found '{buf}'"))
            else:
                pos = last_pos
                items.append((_KEYWORDS[last], last))
            continue
        start = pos
        while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        word = text[start:pos]
        items.append((_KEYWORDS.get(word, "ID"), word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def lookahead(self, values: bool = True) -> tuple[str, str]:
        tok, lit = self.items[self.pos]
        return ("ID" if values and tok in ("IN", "NOTIN") else tok), lit

    def consume(self, values: bool = True) -> tuple[str, str]:
        out = self.lookahead(values)
        self.pos += 1
        return out

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in ("ID", "NOT"):
                try:
                    reqs.append(self.requirement())
                except _SelectorError as exc:
                    raise _SelectorError(f"unable to parse requirement: {exc}") from exc
                t, lit = self.consume()
                if t == "END":
                    return reqs
                if t == "COMMA":
                    t2, l2 = self.lookahead()
                    if t2 not in ("ID", "NOT"):
                        raise _SelectorError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise _SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            elif tok == "END":
                return reqs
            else:
                raise _SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        op = ""
        tok, lit = self.consume()
        if tok == "NOT":
            op = "!"
            tok, lit = self.consume()
        if tok != "ID":
            raise _SelectorError(f"found '{lit}', expected: identifier")
        if errs := is_qualified_name(lit):
            raise _SelectorError(str(invalid("", lit, "; ".join(errs))))
        key = lit
        if op == "!" or self.lookahead()[0] in ("END", "COMMA"):
            return _requirement(key, op or "exists", [])
        tok, lit = self.consume(values=False)
        if tok not in _OPERATORS:
            raise _SelectorError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        op = _OPERATORS[tok]
        values = self.set_values() if op in ("in", "notin") else self.exact_value()
        return _requirement(key, op, sorted(values))

    def set_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != "OPEN":
            raise _SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in ("ID", "COMMA"):
            values = self.identifiers()
            if self.consume()[0] != "CLOSE":
                raise _SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok == "CLOSE":  # "()" is the set of the empty string
            self.consume()
            return {""}
        raise _SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == "ID":
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == "COMMA":
                    continue
                if tok2 == "CLOSE":
                    return values
                raise _SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == "COMMA":
                if not values:
                    values.add("")
                tok2, _ = self.lookahead()
                if tok2 == "CLOSE":
                    values.add("")
                    return values
                if tok2 == "COMMA":
                    self.consume()
                    values.add("")
                continue
            raise _SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        tok, _ = self.lookahead()
        if tok in ("END", "COMMA"):
            return {""}
        tok, lit = self.consume()
        if tok == "ID":
            return {lit}
        raise _SelectorError(f"found '{lit}', expected: identifier")


def _requirement(key: str, op: str, values: list[str]) -> Requirement:
    """labels.NewRequirement: the value checks, with its error wording."""
    errs: list[FieldError] = []
    if op in (">", "<"):
        if len(values) != 1:
            errs.append(
                invalid("values", values, "for 'Gt', 'Lt' operators, exactly one value is required")
            )
        for i, v in enumerate(values):
            try:
                _parse_int(v)
            except ValueError:
                errs.append(
                    invalid(
                        f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"
                    )
                )
    for i, v in enumerate(values):
        if msgs := is_valid_label_value(v):
            errs.append(invalid(f"values[{i}][{key}]", v, "; ".join(msgs)))
    if errs:
        raise _SelectorError(aggregate(errs))
    return Requirement(key, op, tuple(values))


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a label selector as kube-apiserver does (400 with its message on bad input).
    Requirements come sorted by key, as labels.Parse sorts them."""
    if not text:
        return ()
    try:
        reqs = _Parser(text).parse()
    except _SelectorError as exc:
        raise ApiError.bad_request(str(exc)) from exc
    return tuple(sorted(reqs, key=lambda r: r.key))


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


# events.k8s.io/v1 field labels -> the core/v1 fields Events are stored with
# (pkg/apis/events/v1/conversion.go).
EVENTS_V1_FIELDS = {
    "reason": "reason",
    "regarding.kind": "involvedObject.kind",
    "regarding.namespace": "involvedObject.namespace",
    "regarding.name": "involvedObject.name",
    "regarding.uid": "involvedObject.uid",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath",
    "reportingController": "reportingComponent",
    "type": "type",
    "metadata.namespace": "metadata.namespace",
    "metadata.name": "metadata.name",
}


def parse_field_selector(
    text: str | None,
    kind: str,
    events_v1: bool = False,
    extra: frozenset[str] = frozenset(),
    *,
    custom: bool = False,
    namespaced: bool = True,
) -> FieldMatcher:
    """Parse `metadata.name=x,metadata.namespace!=y` (400 for unsupported field labels, in
    the words of the kind's field label conversion, or of the default one); `extra` are a
    CRD's selectable fields (a cluster-scoped custom resource has no metadata.namespace)."""
    if not text or not text.strip():
        return lambda _obj: True
    terms: list[tuple[str, bool, str]] = []
    allowed = {"metadata.name"} | SUPPORTED_FIELDS.get(kind, frozenset()) | extra
    if namespaced or not custom:
        allowed.add("metadata.namespace")
    for part in text.split(","):
        m = re.match(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError.bad_request(f"invalid selector: {text!r}; can't understand {part!r}")
        path, op, val = m.groups()
        if events_v1:
            if path not in EVENTS_V1_FIELDS:
                raise ApiError.bad_request(f"field label not supported: {path}")
            path = EVENTS_V1_FIELDS[path]
        elif path not in allowed:
            if kind not in SUPPORTED_FIELDS and not custom:
                raise ApiError.bad_request(
                    f'"{path}" is not a known field selector: only "metadata.name", '
                    '"metadata.namespace"'
                )
            raise ApiError.bad_request(f"field label not supported: {path}")
        terms.append((path, op == "!=", val))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, p) == v) != neg for p, neg, v in terms)

    return match
