"""CRD `x-kubernetes-validations` (CEL) through celpy, including transition rules (`oldSelf`).

Rules celpy cannot compile or that call functions outside its standard library and the small
Kubernetes extension set below are skipped and recorded in `UNSUPPORTED` (never a false 422).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Mapping
from fractions import Fraction
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from .errors import Cause
from .schema import Schema, child, type_name

_MISSING = object()
UNSUPPORTED: dict[str, str] = {}  # rule -> why it was skipped
_lock = threading.Lock()


def _str(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *args: celtypes.StringType(
        fn(*[str(a) if isinstance(a, str) else a for a in args])
    )


_QUANTITY_RE = re.compile(
    r"^([+-]?)([0-9]*)(?:\.([0-9]*))?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_SUFFIXES = {
    **{s: Fraction(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{
        s: Fraction(10) ** e
        for s, e in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)
    },
}


class _Quantity(celtypes.StringType):
    """A Kubernetes CEL quantity (library `quantity`), compared by exact amount."""

    @property
    def amount(self) -> Fraction:
        m = _QUANTITY_RE.match(str(self))
        if not m or not (m.group(2) or m.group(3)):
            raise ValueError(f"invalid quantity {str(self)!r}")
        sign, whole, frac, suffix = m.groups()
        value = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
        if suffix and suffix[0] in "eE" and suffix not in _SUFFIXES:
            value *= Fraction(10) ** int(suffix[1:])
        elif suffix:
            value *= _SUFFIXES[suffix]
        return -value if sign == "-" else value


def _quantity(text: Any) -> _Quantity:
    q = _Quantity(str(text))
    q.amount  # noqa: B018 (raises on a malformed quantity, as the library does)
    return q


def _compare(a: Any, b: Any) -> celtypes.IntType:
    x, y = _quantity(a).amount, _quantity(b).amount
    return celtypes.IntType((x > y) - (x < y))


def _is_sorted(lst: Any) -> celtypes.BoolType:
    items = list(lst)
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


# A subset of the Kubernetes CEL libraries (strings, lists) that celpy lacks.
K8S_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lowerAscii": _str(lambda s: s.lower()),
    "upperAscii": _str(lambda s: s.upper()),
    "trim": _str(lambda s: s.strip()),
    "replace": _str(lambda s, a, b, n=-1: s.replace(a, b, int(n))),
    "substring": _str(lambda s, a, b=None: s[int(a) :] if b is None else s[int(a) : int(b)]),
    "charAt": _str(lambda s, i: s[int(i)] if int(i) < len(s) else ""),
    "indexOf": lambda s, sub: celtypes.IntType(
        str(s).find(str(sub)) if isinstance(s, str) else (list(s).index(sub) if sub in s else -1)
    ),
    "lastIndexOf": lambda s, sub: celtypes.IntType(str(s).rfind(str(sub))),
    "split": lambda s, sep: celtypes.ListType(
        [celtypes.StringType(p) for p in str(s).split(str(sep))]
    ),
    "join": lambda lst, sep="": celtypes.StringType(str(sep).join(str(x) for x in lst)),
    "isSorted": _is_sorted,
    "sum": lambda lst: sum(list(lst), celtypes.IntType(0)),
    "min": lambda lst: min(list(lst)),
    "max": lambda lst: max(list(lst)),
    # The Kubernetes quantity library (1.29+), as far as CRD rules here use it.
    "quantity": _quantity,
    "isQuantity": lambda s: celtypes.BoolType(_QUANTITY_RE.match(str(s)) is not None),
    "compareTo": _compare,
    "isLessThan": lambda a, b: celtypes.BoolType(_compare(a, b) < 0),
    "isGreaterThan": lambda a, b: celtypes.BoolType(_compare(a, b) > 0),
}

_env = celpy.Environment()


@lru_cache(maxsize=1024)
def _program(rule: str) -> Any:
    return _env.program(_env.compile(rule), functions=K8S_FUNCTIONS)


def _uses_old_self(rule: str) -> bool:
    return "oldSelf" in rule


def _eval(rule: str, activation: dict[str, Any]) -> tuple[bool | None, str]:
    """(passed, error). passed is None when the rule cannot be evaluated here."""
    try:
        prog = _program(rule)
    except Exception as exc:
        with _lock:
            UNSUPPORTED.setdefault(rule, f"celpy cannot compile it: {str(exc).splitlines()[0]}")
        return None, ""
    try:
        result = prog.evaluate({k: json_to_cel(v) for k, v in activation.items()})
    except CELEvalError as exc:
        text = str(exc.args[0]) if exc.args else str(exc)
        if "undeclared reference" in text or "no function" in text.lower():
            with _lock:
                UNSUPPORTED.setdefault(rule, f"celpy lacks a function: {text[:120]}")
            return None, ""
        return False, text
    except Exception as exc:  # celpy raises plain Python errors for some type mismatches
        return False, str(exc)
    if isinstance(result, CELEvalError):
        return False, str(result.args[0] if result.args else result)
    return bool(result), ""


def _message(rule: Mapping[str, Any], activation: dict[str, Any]) -> str:
    expr = rule.get("messageExpression")
    if expr:
        try:
            out = _program(expr).evaluate({k: json_to_cel(v) for k, v in activation.items()})
            if isinstance(out, str) and out.strip():
                return str(out)
        except Exception:
            pass
    return str(rule.get("message") or f"failed rule: {rule['rule']}")


def check(new: Any, old: Any, schema: Schema, path: str = "") -> list[Cause]:
    """Evaluate the CEL rules at every node that exists in `new`; `old` is the correlated
    previous value (_MISSING on create or where no correlation exists)."""
    causes: list[Cause] = []
    for rule in schema.get("x-kubernetes-validations") or []:
        text = rule.get("rule", "")
        activation: dict[str, Any] = {"self": new}
        if _uses_old_self(text):
            if old is _MISSING:
                continue  # transition rules only run on updates of correlatable values
            activation["oldSelf"] = old
        passed, err = _eval(text, activation)
        if passed is None or passed:
            continue
        field = path + str(rule.get("fieldPath") or "")
        msg = (
            _message(rule, activation)
            if not err
            else f"{rule.get('message') or 'failed rule: ' + text}: {err}"
        )
        causes.append(
            Cause(
                field,
                f'Invalid value: "{type_name(new)}": {msg}',
                str(rule.get("reason") or "FieldValueInvalid"),
            )
        )
    if isinstance(new, dict):
        props: Mapping[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        olds = old if isinstance(old, dict) else {}
        for key, val in new.items():
            sub = props.get(key)
            sub_path = child(path, key)
            if sub is None and isinstance(extra, Mapping):
                sub, sub_path = extra, f"{path}[{key}]"
            if (
                sub is not None
                and key not in ("apiVersion", "kind")
                and not (path == "" and key == "metadata")
            ):
                causes += check(val, olds.get(key, _MISSING), sub, sub_path)
    elif isinstance(new, list) and isinstance(schema.get("items"), Mapping):
        items = schema["items"]
        keys = schema.get("x-kubernetes-list-map-keys") or []
        by_key: dict[str, Any] = {}
        if schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
            by_key = {repr([o.get(k) for k in keys]): o for o in old if isinstance(o, dict)}
        for i, val in enumerate(new):
            prev = (
                by_key.get(repr([val.get(k) for k in keys]), _MISSING)
                if by_key and isinstance(val, dict)
                else _MISSING
            )
            causes += check(val, prev, items, f"{path}[{i}]")
    return causes


def missing() -> Any:
    return _MISSING
