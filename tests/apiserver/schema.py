"""openAPIV3Schema handling for custom resources: pruning, defaulting and value validation,
with the field paths and messages the real API server uses."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .errors import Cause

Schema = Mapping[str, Any]
_ROOT_SKIP = ("apiVersion", "kind", "metadata")


_HAS_RULES: dict[int, tuple[Any, bool]] = {}  # id(schema) -> (schema, answer)


def has_rules(schema: Any) -> bool:
    """Does any node of the schema carry x-kubernetes-validations (a CEL validator)?"""
    cached = _HAS_RULES.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    answer = _has_rules(schema)
    _HAS_RULES[id(schema)] = (schema, answer)
    return answer


def _has_rules(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        return bool(schema.get("x-kubernetes-validations")) or any(
            _has_rules(v) for v in schema.values()
        )
    if isinstance(schema, list):
        return any(_has_rules(v) for v in schema)
    return False


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shown(value: Any) -> str:
    """A value as Go's field errors print it."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(type_name(value))
    return json.dumps(value)


def _props(schema: Schema) -> Mapping[str, Any]:
    return schema.get("properties") or {}


def _additional(schema: Schema) -> Schema | None:
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


# -- pruning ------------------------------------------------------------------
def prune(value: Any, schema: Schema, path: str, unknown: list[str], root: bool = False) -> Any:
    """Drop fields the schema does not declare (recording their paths), and nulls the schema
    does not allow (they are pruned before defaulting)."""
    if isinstance(value, dict):
        props = _props(schema)
        extra = _additional(schema)
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True
        out: dict[str, Any] = {}
        for key, val in value.items():
            if root and key in _ROOT_SKIP:
                out[key] = val
                continue
            sub = props.get(key) if key in props else extra
            if sub is None:
                if keep_unknown or schema.get("additionalProperties") is True:
                    out[key] = val
                else:
                    unknown.append(child(path, key))
                continue
            if val is None and not sub.get("nullable"):
                continue
            out[key] = prune(val, sub, child(path, key), unknown)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune(v, schema["items"], f"{path}[{i}]", unknown) for i, v in enumerate(value)]
    return value


# -- defaulting ------------------------------------------------------------------
_HAS_DEFAULTS: dict[int, tuple[Schema, bool]] = {}


def has_defaults(schema: Schema) -> bool:
    """Whether `schema` declares a `default` anywhere (cached per schema object)."""
    hit = _HAS_DEFAULTS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]

    def walk(node: Any) -> bool:
        if isinstance(node, Mapping):
            if "default" in node:  # (a property named "default" only costs a no-op walk)
                return True
            return any(walk(v) for k, v in node.items() if k not in ("enum", "example"))
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    found = walk(schema)
    _HAS_DEFAULTS[id(schema)] = (schema, found)
    return found


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill `default`s for absent properties of objects that exist (never creates parents)."""
    if isinstance(value, dict):
        props = _props(schema)
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, val in value.items():
            sub = props.get(key) or _additional(schema)
            if sub is not None:
                value[key] = apply_defaults(val, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


# -- validation ----------------------------------------------------------------------
@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _type_ok(value: Any, schema: Schema) -> bool:
    want = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (str, int)) and not isinstance(value, bool)
    if not want:
        return True
    got = type_name(value)
    return got == want or (want == "number" and got == "integer")


#: No correlated old value (a create, or a node that cannot be matched to the old object).
NO_OLD: Any = object()


def validate(
    value: Any, schema: Schema, path: str, root: bool = False, old: Any = NO_OLD
) -> list[Cause]:
    """Check `value` against `schema`; causes carry the field path (e.g. spec.count).

    On an update, `old` is the correlated old value: a node equal to it is not validated, so
    an object stored under an older, looser schema can still be written (CRD validation
    ratcheting, GA in Kubernetes 1.33). Object properties and map-list items correlate by key;
    other list items do not.
    """
    if old is not NO_OLD and value == old:
        return []
    if value is None:
        if schema.get("nullable"):
            return []
        want = schema.get("type") or "object"
        msg = f'Invalid value: "null": {path} in body must be of type {want}: "null"'
        return [Cause(path, msg, "FieldValueTypeInvalid")]
    if not _type_ok(value, schema):
        want = "integer-or-string" if schema.get("x-kubernetes-int-or-string") else schema["type"]
        got = type_name(value)
        msg = f'Invalid value: "{got}": {path} in body must be of type {want}: "{got}"'
        return [Cause(path, msg, "FieldValueTypeInvalid")]
    causes = _value_checks(value, schema, path)
    for key in ("allOf", "anyOf", "oneOf"):
        branches = schema.get(key) or []
        if not branches:
            continue
        results = [validate(value, b, path) for b in branches]
        ok = sum(1 for r in results if not r)
        if key == "allOf":
            causes += [c for r in results for c in r]
        elif (key == "anyOf" and ok == 0) or (key == "oneOf" and ok != 1):
            causes += (
                results[0]
                if ok == 0
                else [
                    Cause(
                        path,
                        f"Invalid value: {shown(value)}: {path} in body must match exactly one "
                        "schema in oneOf",
                    )
                ]
            )
    if "not" in schema and not validate(value, schema["not"], path):
        causes.append(
            Cause(
                path,
                f"Invalid value: {shown(value)}: {path} in body must not match the schema in not",
            )
        )
    if isinstance(value, dict):
        causes += _object_checks(value, schema, path, root, old)
    elif isinstance(value, list):
        causes += _list_checks(value, schema, path, old)
    return causes


def _value_checks(value: Any, schema: Schema, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(shown(v) for v in schema["enum"])
        causes.append(
            Cause(
                path,
                f"Unsupported value: {shown(value)}: supported values: {allowed}",
                "FieldValueNotSupported",
            )
        )
    if isinstance(value, str):
        # kube-openapi's string validator reports the first of these that fails, only.
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(
                Cause(
                    path,
                    f"Too long: may not be more than {schema['maxLength']} bytes",
                    "FieldValueTooLong",
                )
            )
        elif "minLength" in schema and len(value) < schema["minLength"]:
            causes.append(
                Cause(
                    path,
                    f"Invalid value: {shown(value)}: {path} in body should be at least "
                    f"{schema['minLength']} chars long",
                )
            )
        elif "pattern" in schema and not _regex(schema["pattern"]).search(value):
            causes.append(
                Cause(
                    path,
                    f"Invalid value: {shown(value)}: {path} in body should match "
                    f"'{schema['pattern']}'",
                )
            )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and (value < lo or (schema.get("exclusiveMinimum") and value == lo)):
            rel = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            causes.append(
                Cause(path, f"Invalid value: {value}: {path} in body should be {rel} {lo}")
            )
        if hi is not None and (value > hi or (schema.get("exclusiveMaximum") and value == hi)):
            rel = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            causes.append(
                Cause(path, f"Invalid value: {value}: {path} in body should be {rel} {hi}")
            )
        mult = schema.get("multipleOf")
        if mult and (value / mult) != int(value / mult):
            causes.append(
                Cause(
                    path, f"Invalid value: {value}: {path} in body should be a multiple of {mult}"
                )
            )
        if (
            schema.get("format") == "int32"
            and isinstance(value, int)
            and not -(2**31) <= value < 2**31
        ):
            causes.append(
                Cause(path, f"Invalid value: {value}: {path} in body must be of type int32")
            )
    return causes


def _object_checks(
    value: dict[str, Any], schema: Schema, path: str, root: bool, old: Any
) -> list[Cause]:
    causes: list[Cause] = []
    olds: Mapping[str, Any] = old if isinstance(old, dict) else {}
    for req in schema.get("required") or []:
        if req not in value:
            causes.append(Cause(child(path, req), "Required value", "FieldValueRequired"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(
            Cause(
                path,
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
                "FieldValueTooMany",
            )
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            Cause(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minProperties']} properties",
            )
        )
    props = _props(schema)
    extra = _additional(schema)
    for key, val in value.items():
        if root and key in _ROOT_SKIP:
            continue
        if key in props:
            causes += validate(val, props[key], child(path, key), old=olds.get(key, NO_OLD))
        elif extra is not None:
            # kube-openapi joins additionalProperties keys with a dot, as if they were fields:
            # spec.resources.amd.com/gpu (CEL rules say spec.resources[amd.com/gpu]).
            causes += validate(
                val, extra, f"{path}.{key}" if path else key, old=olds.get(key, NO_OLD)
            )
    return causes


def _list_checks(value: list[Any], schema: Schema, path: str, old: Any) -> list[Cause]:
    causes: list[Cause] = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(
            Cause(
                path,
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                "FieldValueTooMany",
            )
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(
            Cause(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minItems']} items",
            )
        )
    items = schema.get("items")
    list_type = schema.get("x-kubernetes-list-type")
    if isinstance(items, Mapping):
        olds: dict[str, Any] = {}
        map_keys = schema.get("x-kubernetes-list-map-keys") or []
        if list_type == "map" and isinstance(old, list):
            olds = {json.dumps([o.get(k) for k in map_keys]): o for o in old if isinstance(o, dict)}
        for i, v in enumerate(value):
            ident = json.dumps([v.get(k) for k in map_keys]) if isinstance(v, dict) else ""
            causes += validate(v, items, f"{path}[{i}]", old=olds.get(ident, NO_OLD))
    if list_type in ("set", "map"):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: set[str] = set()
        for i, v in enumerate(value):
            if list_type == "map" and isinstance(v, dict):
                ident = json.dumps([v.get(k) for k in keys])
                shown_v = (
                    "{" + ", ".join(f"{json.dumps(k)}:{json.dumps(v.get(k))}" for k in keys) + "}"
                )
            else:
                ident = json.dumps(v, sort_keys=True)
                shown_v = json.dumps(v)
            if ident in seen:
                causes.append(
                    Cause(f"{path}[{i}]", f"Duplicate value: {shown_v}", "FieldValueDuplicate")
                )
            seen.add(ident)
    return causes
