"""Server-side apply, simplified: each field manager owns the fields of its last applied
configuration; applying again merges the new configuration over the live object and removes
the fields that manager applied before but omits now. Lists are owned whole (atomic), and
conflicts between managers are not detected (every apply acts as `--force-conflicts`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .patch import merge_patch

Path = tuple[str, ...]
_IDENTITY: frozenset[Path] = frozenset(
    {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}
)


def applied_paths(config: Mapping[str, Any], prefix: Path = ()) -> frozenset[Path]:
    """The leaf field paths a configuration sets (maps recurse; lists and scalars are leaves)."""
    out: set[Path] = set()
    for key, value in config.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            out |= applied_paths(value, path)
        else:
            out.add(path)
    return frozenset(out - _IDENTITY)


def _delete(obj: dict[str, Any], path: Path) -> None:
    parents = [obj]
    for key in path[:-1]:
        nxt = parents[-1].get(key)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    # maps emptied by the removal go too, as they would with managed fields
    for depth in range(len(parents) - 1, 0, -1):
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1], None)


def apply(
    live: Mapping[str, Any], config: Mapping[str, Any], previous: frozenset[Path]
) -> dict[str, Any]:
    base = copy.deepcopy(dict(live))
    for path in sorted(previous - applied_paths(config)):
        _delete(base, path)
    patch = {k: v for k, v in config.items() if k not in ("apiVersion", "kind")}
    return dict(merge_patch(base, patch))
