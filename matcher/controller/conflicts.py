"""Repeated 409s on one profile: a status write that cannot land, made visible.

A status patch carries the resourceVersion the cache saw; a 409 means the object moved on, and
the worker retries with back-off once the watch brings the newer version. That normally takes
one retry. A key whose patches go on conflicting is stuck on something no retry fixes (the
chaos run's case: notes of resourceVersions that a restored storage no longer had, 223
conflicts in 105 s without a log line). So:

- the 5th conflict in a row on one key is logged (a warning naming the profile);
- a key whose writes have done nothing but conflict for ``loop_after`` seconds is *in a conflict
  loop*: logged as an error when it starts and as info when it ends, counted by the
  ``aim_matcher_conflicting_profiles`` gauge, and named by the ``conflicts`` check of
  ``/healthz``, which fails while one lasts so that the kubelet restarts the leader: the new one
  starts with empty notes and fresh caches, which is what ended the chaos run's loop.

A write that goes through (or turns out not to be needed) ends the key's run of conflicts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

#: Conflicts in a row on one key before the first log line.
WARN_AFTER = 5


@dataclass(slots=True)
class _Run:
    since: float
    count: int = 0
    looping: bool = False


class ConflictWatch(Generic[K]):
    def __init__(self, loop_after: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.loop_after = loop_after
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: dict[K, _Run] = {}

    def conflicted(self, key: K) -> None:
        now = self._clock()
        with self._lock:
            run = self._runs.setdefault(key, _Run(since=now))
            run.count += 1
            count, lasted = run.count, now - run.since
            starts_loop = not run.looping and lasted >= self.loop_after
            if starts_loop:
                run.looping = True
        if starts_loop:
            log.error(
                "status writes of a profile have conflicted for %.0fs (%d attempts): "
                "the /healthz check 'conflicts' fails until one lands",
                lasted,
                count,
                extra={"profile": str(key), "conflicts": count},
            )
        elif count == WARN_AFTER:
            log.warning(
                "status write conflicted %d times in a row",
                count,
                extra={"profile": str(key), "conflicts": count},
            )

    def resolved(self, key: K) -> None:
        with self._lock:
            run = self._runs.pop(key, None)
        if run is not None and run.looping:
            log.info(
                "status write landed after a conflict loop",
                extra={"profile": str(key), "conflicts": run.count},
            )

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()

    def loops(self) -> list[tuple[K, float, int]]:
        """(key, seconds, conflicts) of every key in a conflict loop now."""
        now = self._clock()
        with self._lock:
            runs = list(self._runs.items())
        return [
            (key, now - run.since, run.count)
            for key, run in runs
            if now - run.since >= self.loop_after
        ]

    def check(self) -> str | None:
        """The ``conflicts`` health check: None while no key is in a conflict loop."""
        loops = sorted(self.loops(), key=lambda loop: -loop[1])
        if not loops:
            return None
        named = ", ".join(f"{key} ({n} in {lasted:.0f}s)" for key, lasted, n in loops[:5])
        more = f" and {len(loops) - 5} more" if len(loops) > 5 else ""
        return f"status writes keep conflicting: {named}{more}"
