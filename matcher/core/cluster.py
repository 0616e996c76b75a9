"""The nodes the matcher knows, indexed by label key and by resource name.

A profile only ever looks at the nodes carrying its accelerator label key, so evaluating a
profile costs O(nodes with that key) instead of O(all nodes). Results that many profiles share
(the same key and requests) are memoised until the next change to the index.

Not thread-safe: the controller serialises every use (upserts and evaluations) under one lock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from typing import TypeVar

from matcher.core.nodes import NodeView

T = TypeVar("T")


class ClusterIndex:
    def __init__(self, nodes: Iterable[NodeView] = ()) -> None:
        self._nodes: dict[str, NodeView] = {}
        self._by_key: dict[str, dict[str, NodeView]] = {}
        self._by_resource: dict[str, dict[str, NodeView]] = {}
        self._memo: dict[Hashable, object] = {}
        self._detector_ran = 0
        for node in nodes:
            self.upsert(node)

    def upsert(self, node: NodeView) -> bool:
        """Add or replace a node. True when what the matcher sees of it changed."""
        old = self._nodes.get(node.name)
        if old == node:
            return False
        if old is not None:
            self._unindex(old)
        self._nodes[node.name] = node
        self._detector_ran += node.detector_ran
        for key in node.labels:
            self._by_key.setdefault(key, {})[node.name] = node
        for resource, amount in node.allocatable.items():
            if amount > 0:
                self._by_resource.setdefault(resource, {})[node.name] = node
        self._memo.clear()
        return True

    def remove(self, name: str) -> NodeView | None:
        old = self._nodes.pop(name, None)
        if old is not None:
            self._unindex(old)
            self._memo.clear()
        return old

    def _unindex(self, node: NodeView) -> None:
        self._detector_ran -= node.detector_ran
        for index, keys in ((self._by_key, node.labels), (self._by_resource, node.allocatable)):
            for key in keys:
                bucket = index.get(key)
                if bucket is not None:
                    bucket.pop(node.name, None)
                    if not bucket:
                        del index[key]

    def get(self, name: str) -> NodeView | None:
        return self._nodes.get(name)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[NodeView]:
        return iter(list(self._nodes.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def nodes_with_key(self, label_key: str) -> Collection[NodeView]:
        return self._by_key.get(label_key, {}).values()

    def nodes_with_resource(self, resource: str) -> Collection[NodeView]:
        """Nodes whose allocatable has more than zero of ``resource``."""
        return self._by_resource.get(resource, {}).values()

    @property
    def detector_ran(self) -> int:
        """How many nodes carry the detector's mark (it published there, maybe nothing)."""
        return self._detector_ran

    def label_keys(self) -> set[str]:
        return set(self._by_key)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per ``key`` until the index next changes."""
        if key in self._memo:
            return self._memo[key]  # type: ignore[return-value]
        value = compute()
        self._memo[key] = value
        return value
