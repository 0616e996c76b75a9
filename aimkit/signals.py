"""Waiting in the main thread for a stop that a signal handler sets.

The kernel delivers a process's SIGTERM or SIGINT to any of its threads that does not block
it, and CPython runs the Python handler only in the main thread, when that thread next runs
bytecode. A main thread blocked in ``Event.wait()`` without a timeout is woken only by a signal
delivered to it: when the kernel picks one of the agent's other threads (an informer, the
health server), the handler never runs, the agent keeps its Lease and the kubelet kills it at
the end of the grace period. Waiting in slices lets the main thread see the signal within one
slice wherever it landed (tests/test_signals.py sends it to another thread).
"""

from __future__ import annotations

import threading
import time

#: The longest a stop waits for the main thread to notice a signal another thread received.
SLICE = 0.5


def wait(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)``, in slices of at most :data:`SLICE` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            step = SLICE
        else:
            step = min(SLICE, deadline - time.monotonic())
            if step <= 0:
                return event.is_set()
        if event.wait(step):
            return True
