"""The list+watch cache against the test API server: paging, resume, 410, bookmarks, health."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client

from aimkit.kube import connect
from matcher.controller.informer import Informer, InformerSettings
from matcher.core.nodes import node_view
from tests.controller_support import MI300X, node_obj, wait_for

pytestmark = pytest.mark.cluster

SETTINGS = InformerSettings(
    page_size=100, watch_timeout=30, backoff_base=0.02, backoff_cap=0.2, degraded_after=0.3
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.health: list[tuple[bool, str]] = []
        self.lock = threading.Lock()

    def on_add(self, key: str, obj: Any) -> None:
        with self.lock:
            self.events.append(("add", key))

    def on_update(self, key: str, old: Any, new: Any) -> None:
        with self.lock:
            self.events.append(("update" if old != new else "same", key))

    def on_delete(self, key: str, old: Any) -> None:
        with self.lock:
            self.events.append(("delete", key))

    def on_health(self, ok: bool, error: str) -> None:
        with self.lock:
            self.health.append((ok, error))

    def seen(self, kind: str, key: str) -> bool:
        with self.lock:
            return (kind, key) in self.events


@pytest.fixture
def nodes(kube):
    srv = kube.require_server()
    for i in range(250):
        srv.seed(node_obj(f"n{i:03d}", {MI300X: "8"} if i % 2 else {}))
    return srv


@pytest.fixture
def informer(kube, nodes):
    core = client.CoreV1Api(kube.api_client())
    rec = Recorder()
    inf = Informer(
        "nodes",
        connect(kube.kubeconfig),
        "/api/v1/nodes",
        node_view,
        rec,
        settings=SETTINGS,
        on_health=rec.on_health,
    )
    inf.start()
    assert inf.synced.wait(10)
    yield inf, rec, core
    inf.stop()


def _lists(srv) -> list[dict[str, str]]:
    return [r.query for r in srv.requests if r.verb == "list" and r.path == "/api/v1/nodes"]


def test_paged_list_fills_the_cache_with_projections(kube, informer):
    inf, rec, _ = informer
    assert len(inf.store) == 250
    assert inf.store["n001"].labels == {MI300X: "8"}
    assert inf.store["n000"].labels == {}
    pages = _lists(kube.server)
    assert len(pages) == 3
    assert all(q.get("limit") == "100" for q in pages)
    assert [bool(q.get("continue")) for q in pages] == [False, True, True]
    assert sum(1 for kind, _ in rec.events if kind == "add") == 250


def test_a_dropped_watch_resumes_from_the_last_version_without_a_relist(kube, informer):
    inf, rec, core = informer
    srv = kube.server
    core.patch_node("n000", {"metadata": {"labels": {MI300X: "4"}}})
    wait_for(lambda: rec.seen("update", "n000"), what="update seen")
    resume_from = inf.resource_version
    srv.requests.clear()
    srv.faults.end_watches()
    core.patch_node("n002", {"metadata": {"labels": {MI300X: "4"}}})
    wait_for(lambda: rec.seen("update", "n002"), what="update after the drop")
    watches = [r.query for r in srv.requests if r.verb == "watch"]
    assert watches[0]["resourceVersion"] == resume_from
    assert watches[0]["allowWatchBookmarks"] == "true"
    # Only the one-item check that the storage did not go back, no relist.
    assert _lists(srv) == [{"limit": "1"}]


def test_410_forces_a_relist_that_delivers_what_the_gap_hid(kube, informer):
    inf, rec, core = informer
    srv = kube.server
    srv.faults.fail_ratio(1.0, code=500, verb="watch")
    srv.faults.end_watches()
    core.delete_node("n010")
    core.patch_node("n011", {"metadata": {"labels": {MI300X: "2"}}})
    srv.faults.expire_resource_versions()
    srv.requests.clear()
    srv.faults.clear()
    wait_for(lambda: rec.seen("delete", "n010"), what="delete found by the relist")
    wait_for(lambda: rec.seen("update", "n011"), what="update found by the relist")
    assert "n010" not in inf.store
    assert inf.store["n011"].labels == {MI300X: "2"}
    assert _lists(srv), "a 410 must lead to a fresh list"


def test_bookmarks_move_the_resource_version_along(kube, informer):
    inf, _, core = informer
    start = int(inf.resource_version)
    for i in range(3):  # writes to another resource move the server's version
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm{i}"}})
    latest = int(kube.server.store.rv)
    assert latest > start
    wait_for(lambda: int(inf.resource_version) >= latest, timeout=5, what="a bookmark")


def test_health_goes_down_after_repeated_failures_and_comes_back(kube, informer):
    inf, rec, _ = informer
    srv = kube.server
    srv.faults.fail_ratio(1.0, code=503, path_contains="/api/v1/nodes")
    srv.faults.end_watches()
    wait_for(lambda: not inf.healthy, what="unhealthy")
    ok, error = rec.health[0]
    assert not ok
    assert "503" in error
    srv.faults.clear()
    wait_for(lambda: inf.healthy, what="healthy again")
    assert rec.health[-1] == (True, "")
