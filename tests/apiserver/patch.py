"""JSON merge patch (RFC 7386), strategic merge patch (the subset built-ins need) and JSON patch."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

from .errors import ApiError


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise ApiError.bad_request("json patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(target, ops, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        # The API server answers a failed `test` or a missing path with 422.
        raise ApiError(
            422, "Invalid", "the server rejected our request due to an error in our request", {}
        ) from exc
    except (TypeError, KeyError, ValueError) as exc:
        raise ApiError.bad_request(f"invalid json patch: {exc}") from exc


def strategic_merge_patch(
    target: Any, patch: Any, merge_keys: Mapping[str, str], path: str = ""
) -> Any:
    """Strategic merge patch with `$patch`, `$retainKeys`, `$setElementOrder` and
    `$deleteFromPrimitiveList` directives; lists merge by key only where `merge_keys` names
    the path (dotted, e.g. `status.conditions` -> `type`), otherwise they replace."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = dict(target) if isinstance(target, Mapping) else {}
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list) and isinstance(value, list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        sub = f"{path}.{key}" if path else key
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and sub in merge_keys:
            out[key] = _merge_list(out.get(key), value, merge_keys[sub], merge_keys, sub)
        elif isinstance(value, Mapping):
            merged = strategic_merge_patch(out.get(key), value, merge_keys, sub)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_list(
    current: Any, patch: list[Any], key: str, merge_keys: Mapping[str, str], path: str
) -> list[Any]:
    items = [dict(i) for i in current] if isinstance(current, list) else []
    if any(isinstance(p, Mapping) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, Mapping) and "$patch" in p)]
    for p in patch:
        if not isinstance(p, Mapping) or key not in p:
            raise ApiError.bad_request(f"map: {p!r} does not contain declared merge key: {key}")
        idx = next((i for i, it in enumerate(items) if it.get(key) == p[key]), None)
        if p.get("$patch") == "delete":
            if idx is not None:
                items.pop(idx)
        elif idx is None:
            items.append({k: copy.deepcopy(v) for k, v in p.items() if k != "$patch"})
        else:
            items[idx] = strategic_merge_patch(items[idx], p, merge_keys, path)
    return items
