"""Fault switches a test flips at run time, and the record of requests the server saw."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from .store import Store, StoreSnapshot

#: The verbs that write (what `set_latency(..., writes_only=True)` delays).
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class Fault:
    code: int = 500
    retry_after: float | None = None
    drop_connection: bool = False
    verb: str | None = None
    path_contains: str | None = None

    def applies(self, verb: str, path: str) -> bool:
        return (self.verb is None or self.verb == verb) and (
            self.path_contains is None or self.path_contains in path
        )


@dataclass
class Faults:
    """`srv.faults`: injected failures, watch endings, resourceVersion expiry and latency."""

    store: Store
    latency: float = 0.0
    #: When set, `latency` applies to these verbs only.
    latency_verbs: frozenset[str] | None = None
    _next: list[tuple[Fault, int]] = field(default_factory=list)  # (fault, remaining count)
    _ratio: list[tuple[Fault, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _random: random.Random = field(default_factory=lambda: random.Random(0))

    def fail_next(
        self,
        n: int = 1,
        code: int = 500,
        *,
        retry_after: float | None = None,
        drop_connection: bool = False,
        verb: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Fail the next `n` matching requests with `code` (or by closing the socket)."""
        with self._lock:
            self._next.append((Fault(code, retry_after, drop_connection, verb, path_contains), n))

    def fail_ratio(
        self,
        ratio: float,
        code: int = 500,
        *,
        retry_after: float | None = None,
        drop_connection: bool = False,
        verb: str | None = None,
        path_contains: str | None = None,
        seed: int | None = None,
    ) -> None:
        """Fail this share (0..1) of matching requests, drawn from a seeded generator."""
        with self._lock:
            if seed is not None:
                self._random.seed(seed)
            self._ratio.append(
                (Fault(code, retry_after, drop_connection, verb, path_contains), ratio)
            )

    def end_watches(self) -> None:
        """End every open watch now (cleanly, as an apiserver restart or timeout would)."""
        self.store.end_watches()

    def expire_resource_versions(self) -> None:
        """Compact the history: resuming a watch (or a list continue) from before now gets 410."""
        self.store.expire_history()

    def snapshot(self) -> StoreSnapshot:
        """The storage as it is now, for `restore`."""
        return self.store.snapshot()

    def restore(self, snapshot: StoreSnapshot) -> None:
        """Restart on a storage restored from `snapshot` (an etcd backup restore; a snapshot
        of an empty server is a wipe): objects and the resourceVersion counter go back, the
        history is gone and every watch ends. A client resuming a watch from a resourceVersion
        handed out since then is waiting on a future one, as on kube-apiserver."""
        self.store.restore(snapshot)

    def set_latency(self, seconds: float, *, writes_only: bool = False) -> None:
        """Delay every request (or only writes: create, update, patch, delete) by `seconds`
        before it is served, as a loaded API server and etcd would; requests are served
        concurrently, so the delay adds latency, not a throughput cap."""
        self.latency = seconds
        self.latency_verbs = WRITE_VERBS if writes_only else None

    def delay_for(self, verb: str) -> float:
        if self.latency_verbs is not None and verb not in self.latency_verbs:
            return 0.0
        return self.latency

    def clear(self) -> None:
        with self._lock:
            self._next.clear()
            self._ratio.clear()
        self.latency = 0.0
        self.latency_verbs = None

    def take(self, verb: str, path: str) -> Fault | None:
        """The fault to inject into this request, if any (consumes a fail_next count)."""
        with self._lock:
            for i, (fault, left) in enumerate(self._next):
                if fault.applies(verb, path):
                    if left <= 1:
                        del self._next[i]
                    else:
                        self._next[i] = (fault, left - 1)
                    return fault
            for fault, ratio in self._ratio:
                if fault.applies(verb, path) and self._random.random() < ratio:
                    return fault
        return None


@dataclass(frozen=True)
class RequestRecord:
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection, or "" (other)
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    status: int
    subresource: str = ""
    user_agent: str = ""


class RequestLog:
    """`srv.requests`: list-like record of every request, in arrival order of completion."""

    def __init__(self) -> None:
        self._items: list[RequestRecord] = []
        self._lock = threading.Condition()

    def add(self, rec: RequestRecord) -> None:
        with self._lock:
            self._items.append(rec)
            self._lock.notify_all()

    def wait(
        self,
        n: int = 1,
        timeout: float = 10.0,
        verb: str | None = None,
        path_contains: str | None = None,
    ) -> bool:
        """Block until at least `n` matching requests are recorded (watches are recorded when
        their stream starts); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._count(verb, path_contains, None) >= n, timeout)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._items)

    def count(
        self, verb: str | None = None, path_contains: str | None = None, status: int | None = None
    ) -> int:
        with self._lock:
            return self._count(verb, path_contains, status)

    def _count(self, verb: str | None, path_contains: str | None, status: int | None) -> int:
        return sum(
            1
            for r in self._items
            if (verb is None or r.verb == verb)
            and (path_contains is None or path_contains in r.path)
            and (status is None or r.status == status)
        )

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __getitem__(self, i: int) -> RequestRecord:
        with self._lock:
            return self._items[i]
