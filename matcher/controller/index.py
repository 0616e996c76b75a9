"""Which profiles a node change can affect.

A profile depends on the nodes carrying its accelerator label key (and on their other
labels, allocatable, schedulability and readiness); a profile with requests but no label key
depends on every node's capacity for the resources it requests; a CPU-only profile depends
on no node at all. The index maps label key -> profiles and resource name -> profiles so a
node event enqueues only the profiles whose status it can change.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class NodeLike(Protocol):
    """What the index reads of a node projection (matcher.core.nodes.NodeView)."""

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def allocatable(self) -> Mapping[str, Any]: ...
    @property
    def schedulable(self) -> bool: ...
    @property
    def ready(self) -> bool: ...


@dataclass(frozen=True)
class ProfileDeps:
    """What a profile's status depends on in the cluster."""

    label_key: str | None
    resources: frozenset[str]
    node_independent: bool = False


class AffectedIndex(Generic[K]):
    def __init__(self) -> None:
        self._deps: dict[K, ProfileDeps] = {}
        self._by_label: dict[str, set[K]] = {}
        self._by_resource: dict[str, set[K]] = {}
        self._keyless: set[K] = set()

    def __len__(self) -> int:
        return len(self._deps)

    def __contains__(self, key: object) -> bool:
        return key in self._deps

    def keys(self) -> list[K]:
        return list(self._deps)

    def deps(self, key: K) -> ProfileDeps | None:
        return self._deps.get(key)

    def put(self, key: K, deps: ProfileDeps) -> None:
        if self._deps.get(key) == deps:
            return
        self.remove(key)
        self._deps[key] = deps
        if deps.node_independent:
            return
        if deps.label_key is not None:
            self._by_label.setdefault(deps.label_key, set()).add(key)
        else:
            self._keyless.add(key)
            for resource in deps.resources:
                self._by_resource.setdefault(resource, set()).add(key)

    def remove(self, key: K) -> None:
        deps = self._deps.pop(key, None)
        if deps is None:
            return
        if deps.label_key is not None:
            _discard(self._by_label, deps.label_key, key)
        self._keyless.discard(key)
        for resource in deps.resources:
            _discard(self._by_resource, resource, key)

    def label_keys(self) -> set[str]:
        """Every accelerator label key some profile asks for."""
        return set(self._by_label)

    def with_label(self, label_key: str) -> set[K]:
        return set(self._by_label.get(label_key, ()))

    def node_dependent(self) -> list[K]:
        """Profiles whose status depends on nodes (those a node outage makes Degraded)."""
        return [key for key, deps in self._deps.items() if not deps.node_independent]

    def affected_by_node(self, old: NodeLike | None, new: NodeLike | None) -> set[K]:
        """Profiles whose status may differ after a node went from ``old`` to ``new``.

        None stands for "no such node" (an add or a delete). Equal projections affect
        nothing: a status heartbeat never reaches here with a difference.
        """
        old_labels: Mapping[str, str] = old.labels if old is not None else {}
        new_labels: Mapping[str, str] = new.labels if new is not None else {}
        old_alloc: Mapping[str, Any] = old.allocatable if old is not None else {}
        new_alloc: Mapping[str, Any] = new.allocatable if new is not None else {}
        presence_changed = (old is None) != (new is None)
        state_changed = presence_changed or (
            old is not None
            and new is not None
            and (old.schedulable != new.schedulable or old.ready != new.ready)
        )
        changed_resources = {
            r for r in old_alloc.keys() | new_alloc.keys() if old_alloc.get(r) != new_alloc.get(r)
        }
        # Any change to a node's labels reaches every profile keyed on a label it carries: a
        # profile's partition term reads the node's partitioning-scheme labels, which are
        # not its key (a node repartitioned SPX -> CPX keeps its MI300X label).
        if state_changed or changed_resources or old_labels != new_labels:
            label_keys: Iterable[str] = old_labels.keys() | new_labels.keys()
        else:
            label_keys = ()
        affected: set[K] = set()
        for label_key in label_keys:
            affected |= self._by_label.get(label_key, set())
        if state_changed:
            affected |= self._keyless
        else:
            for resource in changed_resources:
                affected |= self._by_resource.get(resource, set())
        return affected


def _discard(index: dict[str, set[K]], name: str, key: K) -> None:
    members = index.get(name)
    if members is not None:
        members.discard(key)
        if not members:
            del index[name]
