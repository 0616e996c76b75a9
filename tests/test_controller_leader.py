"""Leader election on both servers: MicroTime in the Lease, and a Lease deleted by hand.

These are about Kubernetes itself (what kube-apiserver accepts in a Lease, what a deleted
Lease does to two replicas), so they run on the real kube-apiserver as well as the test server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from aimkit.kube import ApiError, connect
from matcher.controller.leader import Attempt, LeaderElector, LeaderSettings
from tests.controller_support import wait_for

pytestmark = pytest.mark.cluster

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
WHOLE_SECOND = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)


def _elector(
    kube: Any,
    name: str,
    identity: str,
    on_stopped_leading: Callable[[], None] | None = None,
    **settings: Any,
) -> LeaderElector:
    timings = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.2, **settings}
    return LeaderElector(
        connect(kube.kubeconfig),
        LeaderSettings(name=name, namespace="default", identity=identity, **timings),
        on_stopped_leading=on_stopped_leading,
    )


def test_lease_times_are_microtime_even_on_a_whole_second(kube):
    """A renewTime of exactly 00:00:00 is still sent with six fractional digits: the Go
    decoder of MicroTime refuses the whole-second form isoformat() writes (400)."""
    api = connect(kube.kubeconfig)
    name = kube.unique("lease")
    elector = LeaderElector(
        api,
        LeaderSettings(name=name, namespace="default", identity="matcher-a"),
        wall_clock=lambda: WHOLE_SECOND,
    )
    assert elector._try_acquire_or_renew() is Attempt.HELD  # create
    assert elector._try_acquire_or_renew() is Attempt.HELD  # update
    lease = api.request("GET", f"{LEASES}/{name}")
    assert lease["spec"]["renewTime"] == "2026-01-01T00:00:00.000000Z"
    assert lease["spec"]["acquireTime"] == "2026-01-01T00:00:00.000000Z"

    # What the bug sent: refused by the real server (and by the test server, which reads
    # MicroTime as the Go decoder does).
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": kube.unique("iso")},
        "spec": {"holderIdentity": "x", "renewTime": WHOLE_SECOND.isoformat()},
    }
    with pytest.raises(ApiError) as refused:
        api.request("POST", LEASES, body=body)
    assert refused.value.status == 400


def _sample(electors: list[LeaderElector], seconds: float) -> list[tuple[bool, ...]]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(tuple(e.is_leader() for e in electors))
        time.sleep(0.002)
    return samples


def test_a_lease_deleted_by_hand_never_makes_two_leaders(kube):
    """The leader stops writing the moment it finds its Lease gone and recreates it; the
    follower, which saw the Lease held moments ago, does not grab it meanwhile. (client-go:
    the follower may create it at once, and both write until the old leader's next renew.)"""
    name = kube.unique("lease")
    stops: list[float] = []
    a = _elector(kube, name, "matcher-a", on_stopped_leading=lambda: stops.append(time.monotonic()))
    a.start()
    wait_for(a.is_leader, what="a leads")
    b = _elector(kube, name, "matcher-b")
    b.start()
    api = connect(kube.kubeconfig)
    try:
        wait_for(lambda: b.holder == "matcher-a", what="b follows a")
        for _ in range(3):
            api.request("DELETE", f"{LEASES}/{name}")
            samples = _sample([a, b], 1.0)
            assert not any(all(s) for s in samples), "two leaders at once"
        wait_for(a.is_leader, what="a leads again")
        assert not b.is_leader()
        lease = api.request("GET", f"{LEASES}/{name}")
        assert lease["spec"]["holderIdentity"] == "matcher-a"
        # The leader did stop leading when it found its lease gone, before recreating it (a
        # moment often shorter than the 2 ms between samples: counted by its callback).
        assert len(stops) >= 1
    finally:
        a.stop()
        b.stop()


def test_a_deleted_lease_whose_leader_is_gone_is_taken_after_its_duration(kube):
    name = kube.unique("lease")
    a = _elector(kube, name, "matcher-a")
    a.start()
    wait_for(a.is_leader, what="a leads")
    b = _elector(kube, name, "matcher-b")
    b.start()
    api = connect(kube.kubeconfig)
    try:
        wait_for(lambda: b.holder == "matcher-a", what="b follows a")
        a.stop(release=False)  # a crash: the lease stays
        api.request("DELETE", f"{LEASES}/{name}")
        deleted = time.monotonic()
        took: list[float] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                if b.is_leader():
                    took.append(time.monotonic() - deleted)
                    return
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        watcher.join(6)
        done.set()
        assert took, "b never took over"
        # Not at once (a may have been alive), not later than a's lease would have run out
        # (2 s from when b last saw it renewed) plus a retry.
        assert 1.0 <= took[0] <= 3.5, took
    finally:
        a.stop()
        b.stop()
