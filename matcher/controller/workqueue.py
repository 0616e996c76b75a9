"""A de-duplicating work queue with rate-limited retries, after client-go's workqueue.

The contract is client-go's: a key added while it waits is stored once; a key added while a
worker holds it is marked dirty and handed out again only after ``done``, so one key is never
processed by two workers at once and never lost. Failed keys come back through
``add_rate_limited`` after an exponential per-key delay that ``forget`` resets.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class ExponentialBackoff(Generic[K]):
    """Per-key delay ``base * 2**failures``, capped at ``cap`` (client-go's item limiter)."""

    def __init__(self, base: float = 0.05, cap: float = 30.0) -> None:
        self._base = base
        self._cap = cap
        self._failures: dict[K, int] = {}
        self._lock = threading.Lock()

    def when(self, key: K) -> float:
        with self._lock:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        # min() before the power would overflow for keys that fail for days.
        return float(min(self._cap, self._base * 2.0 ** min(failures, 62)))

    def failures(self, key: K) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        with self._lock:
            self._failures.pop(key, None)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        backoff: ExponentialBackoff[K] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backoff: ExponentialBackoff[K] = backoff or ExponentialBackoff()
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        # Delayed adds: (ready_at, tiebreak, key); the earliest deadline per key wins.
        self._waiting: list[tuple[float, int, K]] = []
        self._waiting_at: dict[K, float] = {}
        self._seq = itertools.count()
        self._shutting_down = False

    # -- adding ---------------------------------------------------------------------------

    def add(self, key: K) -> None:
        with self._cond:
            self._add_locked(key)

    def add_all(self, keys: list[K]) -> None:
        with self._cond:
            for key in keys:
                self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutting_down:
                return
            ready_at = self._clock() + delay
            current = self._waiting_at.get(key)
            if current is not None and current <= ready_at:
                return
            self._waiting_at[key] = ready_at
            heapq.heappush(self._waiting, (ready_at, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: K) -> None:
        self.add_after(key, self._backoff.when(key))

    def forget(self, key: K) -> None:
        self._backoff.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._backoff.failures(key)

    # -- taking ---------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> K | None:
        """The next key, or None on shutdown or when ``timeout`` passes first."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._promote_due_locked()
                if self._queue:
                    key = self._queue.popleft()
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key
                if self._shutting_down:
                    return None
                wait = self._next_wait_locked()
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def _promote_due_locked(self) -> None:
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            ready_at, _, key = heapq.heappop(self._waiting)
            if self._waiting_at.get(key) == ready_at:
                del self._waiting_at[key]
                self._add_locked(key)

    def _next_wait_locked(self) -> float | None:
        if not self._waiting:
            return None
        return max(0.0, self._waiting[0][0] - self._clock())

    # -- lifecycle ------------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to be handed out (the queue-depth metric)."""
        with self._cond:
            return len(self._queue)

    def waiting(self) -> int:
        """Keys whose retry delay has not yet passed."""
        with self._cond:
            return len(self._waiting_at)

    def shut_down(self) -> None:
        with self._cond:
            self._shutting_down = True
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down
