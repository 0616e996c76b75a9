"""The work queue's contract: de-duplication, one worker per key, retries with back-off."""

from __future__ import annotations

import threading

from matcher.controller.workqueue import ExponentialBackoff, WorkQueue


class FakeClock:
    """A clock the test moves by hand, so delays are asserted without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_many_times_is_handed_out_once():
    q: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert q.get(timeout=0) == "a"
    assert q.get(timeout=0) == "b"
    assert q.get(timeout=0) is None


def test_a_key_added_while_processing_comes_back_after_done_not_before():
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = q.get(timeout=0)
    assert key == "a"
    q.add("a")  # changed again while a worker holds it
    assert q.get(timeout=0) is None  # a second worker must not get it concurrently
    q.done(key)
    assert q.get(timeout=0) == "a"
    q.done("a")
    assert q.get(timeout=0) is None


def test_rate_limited_retries_back_off_exponentially_and_forget_resets():
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(ExponentialBackoff(base=1.0, cap=5.0), clock=clock)
    delays = []
    for _ in range(5):
        q.add_rate_limited("a")
        assert q.get(timeout=0) is None
        start = clock.now
        while q.get(timeout=0) is None:
            clock.now += 0.5
        delays.append(clock.now - start)
        q.done("a")
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert q.num_requeues("a") == 5
    q.forget("a")
    assert q.num_requeues("a") == 0


def test_an_earlier_delayed_add_wins_and_a_plain_add_is_immediate():
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 3)
    assert q.waiting() == 1
    clock.now += 3
    assert q.get(timeout=0) == "a"
    q.done("a")
    clock.now += 10
    assert q.get(timeout=0) is None  # the superseded deadline does not fire again
    q.add_after("b", 100)
    q.add("b")
    assert q.get(timeout=0) == "b"


def test_shutdown_wakes_a_blocked_worker():
    q: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(q.get()))
    worker.start()
    q.shut_down()
    worker.join(5)
    assert not worker.is_alive()
    assert got == [None]
    q.add("late")
    assert len(q) == 0


def test_concurrent_workers_never_hold_the_same_key():
    q: WorkQueue[int] = WorkQueue()
    held: set[int] = set()
    lock = threading.Lock()
    clashes: list[int] = []
    processed: list[int] = []

    def worker() -> None:
        while (key := q.get(timeout=0.5)) is not None:
            with lock:
                if key in held:
                    clashes.append(key)
                held.add(key)
            q.add(key % 7)  # churn: re-add keys that may be in flight
            with lock:
                held.discard(key)
                processed.append(key)
            q.done(key)
            if len(processed) > 2000:
                q.shut_down()

    for i in range(50):
        q.add(i)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert clashes == []
    assert len(processed) > 50
