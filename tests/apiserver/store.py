"""In-memory object store: one lock, a global monotonic resourceVersion, a bounded event history.

Every committed write bumps the resourceVersion by exactly one and appends exactly one event,
so the event for resourceVersion R sits at index R - offset of the history list (O(1) resume).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (namespace or "", name)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Entry:
    """A stored object version; `obj` is never mutated after it is stored."""

    obj: dict[str, Any]
    _raw: bytes | None = None
    # (schema, defaulted view) cached by Registry.view: defaults applied on read
    _view: tuple[Any, Entry] | None = field(default=None, repr=False, compare=False)

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = dumps(self.obj)
        return self._raw

    @property
    def rv(self) -> int:
        return int(self.obj["metadata"]["resourceVersion"])


@dataclass
class Event:
    rv: int
    rkey: str
    type: str  # ADDED, MODIFIED, DELETED
    entry: Entry
    old: dict[str, Any] | None = None
    _lines: dict[str, bytes] = field(default_factory=dict)

    def line(self, type_: str | None = None) -> bytes:
        """The watch line `{"type":..,"object":..}\\n`, serialised once per event type."""
        t = type_ or self.type
        if t not in self._lines:
            self._lines[t] = b'{"type":"' + t.encode() + b'","object":' + self.entry.raw + b"}\n"
        return self._lines[t]


@dataclass(frozen=True)
class StoreSnapshot:
    rv: int
    objects: dict[str, dict[Key, Entry]]


class Store:
    def __init__(self, history_limit: int = 20000, first_rv: int = 1000) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = first_rv
        self.history_limit = history_limit
        self._objects: dict[str, dict[Key, Entry]] = {}
        self._events: list[Event] = []
        self._offset = first_rv + 1  # resourceVersion of _events[0]
        self.watch_epoch = 0  # bumped by faults.end_watches()

    # -- reads --------------------------------------------------------------
    def get(self, rkey: str, key: Key) -> Entry | None:
        with self.lock:
            return self._objects.get(rkey, {}).get(key)

    def items(self, rkey: str, namespace: str | None = None) -> list[tuple[Key, Entry]]:
        """Entries sorted by (namespace, name), as etcd lists them."""
        with self.lock:
            bucket = self._objects.get(rkey, {})
            if namespace:
                pairs = [(k, e) for k, e in bucket.items() if k[0] == namespace]
            else:
                pairs = list(bucket.items())
        pairs.sort(key=lambda p: p[0])
        return pairs

    def count(self, rkey: str) -> int:
        with self.lock:
            return len(self._objects.get(rkey, {}))

    # -- writes (caller holds self.lock for read-modify-write sequences) --------
    def next_rv(self) -> int:
        return self.rv + 1

    def commit(self, rkey: str, key: Key, type_: str, obj: dict[str, Any]) -> Entry:
        """Store (or delete, for DELETED) `obj`, whose resourceVersion must be next_rv()."""
        with self.cond:
            rv = int(obj["metadata"]["resourceVersion"])
            assert rv == self.rv + 1, "commit out of order"
            self.rv = rv
            bucket = self._objects.setdefault(rkey, {})
            old = bucket.get(key)
            entry = Entry(obj)
            if type_ == "DELETED":
                bucket.pop(key, None)
            else:
                bucket[key] = entry
            self._events.append(Event(rv, rkey, type_, entry, old.obj if old else None))
            if len(self._events) > self.history_limit:
                drop = len(self._events) - self.history_limit // 2
                del self._events[:drop]
                self._offset += drop
            self.cond.notify_all()
            return entry

    def expire_history(self) -> None:
        """Forget every event: resuming a watch (or continuing a list) from any resourceVersion
        handed out so far gets 410. The counter moves on so that a fresh list can resume."""
        with self.cond:
            self.rv += 1
            self._events.clear()
            self._offset = self.rv + 1
            self.cond.notify_all()

    def snapshot(self) -> StoreSnapshot:
        """The objects and the resourceVersion counter now (entries are never mutated, so the
        buckets are copied, not the objects)."""
        with self.lock:
            return StoreSnapshot(self.rv, {r: dict(b) for r, b in self._objects.items()})

    def restore(self, snapshot: StoreSnapshot) -> None:
        """Go back to `snapshot`, as an API server restarted on an etcd restored from a backup:
        objects and resourceVersions as they were then, no history, every watch ended."""
        with self.cond:
            self.rv = snapshot.rv
            self._objects = {r: dict(b) for r, b in snapshot.objects.items()}
            self._events.clear()
            self._offset = self.rv + 1
            self.watch_epoch += 1
            self.cond.notify_all()

    def end_watches(self) -> None:
        with self.cond:
            self.watch_epoch += 1
            self.cond.notify_all()

    # -- watch support (caller holds self.lock) -------------------------------
    def oldest_resumable(self) -> int:
        """The smallest resourceVersion a watch may resume from."""
        return self._offset - 1

    def events_after(self, rv: int) -> Iterator[Event]:
        start = max(0, rv + 1 - self._offset)
        return iter(self._events[start:])
