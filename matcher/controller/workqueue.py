"""A de-duplicating work queue with rate-limited retries, after client-go's workqueue.

The contract is client-go's: a key added while it waits is stored once; a key added while a
worker holds it is marked dirty and handed out again only after ``done``, so one key is never
processed by two workers at once and never lost. Failed keys come back through
``add_rate_limited`` after an exponential per-key delay that ``forget`` resets.

Two rate limiters for retries, combined as client-go's ``DefaultControllerRateLimiter``
combines them (the larger delay wins): the per-key exponential back-off above, and one global
token bucket (``TokenBucket``) shared by every key, so that an outage ending does not release
every failed write at once. As in client-go, only retries (``add_rate_limited``) take bucket
tokens. Event-driven re-evaluations do not: an earlier version paced them through the bucket
too, and a cordon storm left it thousands of tokens in debt (each event for a profile already
scheduled still took a token), so a later Ready flip waited minutes. Coalescing bounds them
instead, and the first sync, a new leader's catch-up and spec changes are bounded by the
number of profiles.

``add_coalesced(key, delay)`` is for re-evaluations caused by node events: the key is handed
out ``delay`` seconds later, and further events for it in between change nothing, so a burst of
node events within the window costs one evaluation (and at most one write) per profile.
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


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved (client-go's BucketRateLimiter).

    ``reserve()`` takes one token and returns how long to wait until it is there: tokens may go
    negative, so each caller waits its turn behind the ones before it (``rate.Reserve`` in Go).
    A rate of 0 or less disables the bucket.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate > 0 and burst < 1:
            raise ValueError(f"token bucket burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class WorkQueue(Generic[K]):
    def __init__(
        self,
        backoff: ExponentialBackoff[K] | None = None,
        clock: Callable[[], float] = time.monotonic,
        bucket: TokenBucket | None = None,
    ) -> None:
        self._backoff: ExponentialBackoff[K] = backoff or ExponentialBackoff()
        self._bucket = bucket
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

    def add_rate_limited(self, key: K, at_least: float = 0.0) -> None:
        """Retry ``key`` after the larger of its back-off, the bucket's delay and ``at_least``
        (a server's ``Retry-After``)."""
        delay = max(self._backoff.when(key), self._reserve(), at_least)
        self.add_after(key, delay)

    def add_coalesced(self, key: K, delay: float) -> None:
        """Re-evaluate ``key`` in ``delay`` seconds; nothing changes when it is already queued
        or scheduled: it will read the cache as it is then. A key waiting out a retry's
        back-off or ``Retry-After`` keeps waiting, so a node event never cuts a server's
        request short."""
        with self._cond:
            if self._shutting_down:
                return
            if key in self._dirty and key not in self._processing:
                return
            if key in self._waiting_at:
                return
        self.add_after(key, delay)

    def _reserve(self) -> float:
        return self._bucket.reserve() if self._bucket is not None else 0.0

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
