"""The work queue's contract: de-duplication, one worker per key, retries with back-off."""

from __future__ import annotations

import threading

import pytest

from matcher.controller.workqueue import ExponentialBackoff, TokenBucket, WorkQueue


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


def _due(q: WorkQueue[str], clock: FakeClock, step: float = 0.05, limit: float = 60) -> float:
    """Seconds of the fake clock until the queue hands out a key."""
    start = clock.now
    while q.get(timeout=0) is None:
        clock.now += step
        assert clock.now - start < limit, "never handed out"
    return round(clock.now - start, 6)


def test_the_token_bucket_lets_a_burst_through_then_paces_at_its_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Each further caller waits its turn behind the ones before it.
    assert [round(bucket.reserve(), 6) for _ in range(3)] == [0.1, 0.2, 0.3]
    clock.now += 10  # refills up to the burst, not beyond
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert round(bucket.reserve(), 6) == 0.1
    assert TokenBucket(rate=0, burst=0, clock=clock).reserve() == 0.0  # disabled


def test_a_burst_of_node_events_for_one_key_is_one_evaluation_after_the_delay():
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    for _ in range(50):
        q.add_coalesced("p", 0.2)
        clock.now += 0.001
    assert q.get(timeout=0) is None  # not before the delay
    clock.now += 0.2
    assert q.get(timeout=0) == "p"
    q.done("p")
    assert q.get(timeout=0) is None
    clock.now += 10
    assert q.get(timeout=0) is None  # one evaluation for the 50 events, not 50


def test_a_storm_of_node_events_leaves_the_retry_bucket_without_debt():
    """A cordon storm (100 events over 400 profiles) against a small bucket: node events take
    no tokens, so the next event is evaluated after its delay and a retry is paced only by
    what retries used. (Node events used to take a token each, even for profiles already
    scheduled: 100 x 400 events left the bucket 8,634 tokens in debt, a 432 s wait.)"""
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=300, clock=clock)
    q: WorkQueue[str] = WorkQueue(clock=clock, bucket=bucket)
    keys = [f"p{i}" for i in range(400)]
    for _ in range(100):
        for key in keys:
            q.add_coalesced(key, 0.2)
        clock.now += 0.01
    taken: set[str] = set()
    while len(taken) < 400:
        taken.add(_take(q, clock))
    assert taken == set(keys)
    for key in keys:
        q.done(key)
    start = clock.now
    q.add_coalesced("p0", 0.2)
    assert _take(q, clock) == "p0"
    assert clock.now - start == pytest.approx(0.2, abs=0.011)
    q.done("p0")
    assert bucket.reserve() == 0.0  # the storm spent no retry token


def test_a_node_event_does_not_cut_a_retry_after_short():
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(ExponentialBackoff(base=0.05, cap=30), clock=clock)
    q.add_rate_limited("a", at_least=2.0)  # 429 with Retry-After: 2
    q.add_coalesced("a", 0.2)  # a node event for the same profile
    start = clock.now
    assert _take(q, clock) == "a"
    assert clock.now - start == pytest.approx(2.0, abs=0.011)


def _take(q: WorkQueue[str], clock: FakeClock) -> str:
    while (key := q.get(timeout=0)) is None:
        clock.now += 0.01
    return key


def test_a_retry_waits_at_least_what_the_server_asked_and_at_least_its_backoff():
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(ExponentialBackoff(base=0.05, cap=30), clock=clock)
    q.add_rate_limited("a", at_least=2.0)  # 429 with Retry-After: 2
    assert _due(q, clock, step=0.01) == pytest.approx(2.0, abs=0.011)
    q.done("a")
    for _ in range(7):  # back-off now 0.05 * 2**8 = 12.8 s > Retry-After
        q.add_rate_limited("a")
        _due(q, clock)
        q.done("a")
    q.add_rate_limited("a", at_least=2.0)
    assert _due(q, clock, step=0.01) == pytest.approx(12.8, abs=0.011)
