"""Watches through the official client's `kubernetes.watch.Watch`: initial events, resume,
410 Gone and recovery, bookmarks, timeouts, selectors, and ending watches on demand."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiException

from tests.test_apiserver_client import GROUP, PLURAL, TESTDATA, VERSION, status_of, widget


@pytest.fixture
def core(kube):
    return client.CoreV1Api(kube.api_client())


def collect(stream, n: int, skip_bookmarks: bool = True) -> list[tuple[str, str]]:
    """The first n events of a stream as (type, name)."""
    out: list[tuple[str, str]] = []
    for ev in stream:
        if skip_bookmarks and ev["type"] == "BOOKMARK":
            continue
        obj = ev["object"]
        name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
        out.append((ev["type"], name))
        if len(out) == n:
            break
    return out


def test_watch_resumes_from_resource_version(core):
    start = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    core.delete_namespaced_config_map("a", "default")
    w = watch.Watch()
    events = collect(
        w.stream(
            core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=10
        ),
        3,
    )
    w.stop()
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_watch_without_resource_version_sends_current_objects_then_changes(core):
    core.create_node({"metadata": {"name": "n0"}})
    w = watch.Watch()
    got: list[tuple[str, str]] = []
    ready = threading.Event()

    def run() -> None:
        for ev in w.stream(core.list_node, timeout_seconds=10):
            got.append((ev["type"], ev["object"].metadata.name))
            ready.set()
            if len(got) == 2:
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    assert ready.wait(10)
    core.create_node({"metadata": {"name": "n1"}})
    t.join(10)
    assert got == [("ADDED", "n0"), ("ADDED", "n1")]


def test_watch_deleted_event_carries_new_resource_version(core):
    created = core.create_node({"metadata": {"name": "d"}})
    rv = created.metadata.resource_version
    core.delete_node("d")
    w = watch.Watch()
    for ev in w.stream(core.list_node, resource_version=rv, timeout_seconds=10):
        assert ev["type"] == "DELETED"
        assert int(ev["object"].metadata.resource_version) > int(rv)
        w.stop()


def test_watch_410_after_expiry_and_relist_recovers(core, kube):
    srv = kube.require_server()
    old = core.list_node().metadata.resource_version
    core.create_node({"metadata": {"name": "x"}})
    srv.faults.expire_resource_versions()
    with pytest.raises(ApiException) as err:
        collect(watch.Watch().stream(core.list_node, resource_version=old, timeout_seconds=5), 1)
    assert err.value.status == 410
    fresh = core.list_node()  # the documented recovery: list again, watch from the list's RV
    assert [n.metadata.name for n in fresh.items] == ["x"]
    core.create_node({"metadata": {"name": "y"}})
    w = watch.Watch()
    assert collect(
        w.stream(
            core.list_node, resource_version=fresh.metadata.resource_version, timeout_seconds=10
        ),
        1,
    ) == [("ADDED", "y")]
    w.stop()


def test_watch_bookmarks(kube, core):
    """A bookmark tells the watcher of a newer resourceVersion (here, a write to another
    kind); with nothing new there is nothing to tell, as on kube-apiserver."""
    kube.require_server().bookmark_interval = 0.05
    rv = core.list_node().metadata.resource_version
    quiet = list(
        watch.Watch().stream(
            core.list_node, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=1
        )
    )
    assert quiet == []
    newer = core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    w = watch.Watch()
    seen = []
    for ev in w.stream(
        core.list_node, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=10
    ):
        seen.append((ev["type"], ev["raw_object"]["metadata"]["resourceVersion"]))
        w.stop()
    assert seen == [("BOOKMARK", newer.metadata.resource_version)]


def test_watch_timeout_seconds_ends_stream(core, kube):
    rv = core.list_node().metadata.resource_version
    events = list(watch.Watch().stream(core.list_node, resource_version=rv, timeout_seconds=1))
    assert events == []
    assert kube.require_server().requests.count(verb="watch") == 1


def test_watch_label_selector_transitions(core):
    core.create_node({"metadata": {"name": "n", "labels": {"pool": "a"}}})
    rv = core.read_node("n").metadata.resource_version
    core.patch_node("n", {"metadata": {"labels": {"pool": "b"}}})
    core.patch_node("n", {"metadata": {"labels": {"pool": "a", "x": "1"}}})
    core.patch_node("n", {"metadata": {"labels": {"x": "2"}}})
    w = watch.Watch()
    events = collect(
        w.stream(core.list_node, label_selector="pool=a", resource_version=rv, timeout_seconds=10),
        3,
    )
    w.stop()
    # leaving the selection reads as DELETED, re-entering as ADDED, as the real watch cache does
    assert events == [("DELETED", "n"), ("ADDED", "n"), ("MODIFIED", "n")]


def test_watch_namespace_and_field_selector(core):
    rv = core.list_config_map_for_all_namespaces().metadata.resource_version
    core.create_namespaced_config_map("kube-system", {"metadata": {"name": "skip"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "other"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "want"}})
    w = watch.Watch()
    events = collect(
        w.stream(
            core.list_namespaced_config_map,
            "default",
            field_selector="metadata.name=want",
            resource_version=rv,
            timeout_seconds=10,
        ),
        1,
    )
    w.stop()
    assert events == [("ADDED", "want")]


def test_end_watches_closes_streams(core, kube):
    srv = kube.require_server()
    rv = core.list_node().metadata.resource_version
    w = watch.Watch()
    done = threading.Event()

    def run() -> None:
        # timeout_seconds disables the client's automatic re-watch, so the loop ends
        for _ in w.stream(core.list_node, resource_version=rv, timeout_seconds=60):
            pass
        done.set()

    t = threading.Thread(target=run)
    t.start()
    assert srv.requests.wait(verb="watch")  # recorded as soon as the stream starts
    srv.faults.end_watches()
    ended = done.wait(10)
    t.join(1)
    assert ended


def test_custom_object_watch(kube):
    custom: Any
    kube.require_server().load_crd(TESTDATA / "widgets.yaml")
    custom = client.CustomObjectsApi(kube.api_client())
    rv = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"][
        "resourceVersion"
    ]
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w"))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w", {"status": {"phase": "Ready"}}
    )
    w = watch.Watch()
    events = collect(
        w.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            "default",
            PLURAL,
            resource_version=rv,
            timeout_seconds=10,
        ),
        2,
    )
    w.stop()
    assert events == [("ADDED", "w"), ("MODIFIED", "w")]


def test_watch_from_a_future_resource_version_waits_for_it(core):
    """kube-apiserver establishes such a watch at once (200) and sends the events past the
    requested resourceVersion once it gets there; nothing from before, no error."""
    now = int(core.list_namespaced_config_map("default").metadata.resource_version)
    future = now + 2
    got: list[tuple[str, int]] = []

    def watch_it() -> None:
        stream = watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=str(future),
            timeout_seconds=1,
        )
        got.extend(
            (ev["object"].metadata.name, int(ev["object"].metadata.resource_version))
            for ev in stream
        )

    t = threading.Thread(target=watch_it)
    t.start()
    made = {}
    for name in ("f1", "f2", "f3"):
        cm = core.create_namespaced_config_map("default", {"metadata": {"name": name}})
        made[name] = int(cm.metadata.resource_version)
    t.join(timeout=10)
    assert got == [(n, rv) for n, rv in made.items() if rv > future]
    assert got  # f3 is past `future` whatever else the server wrote meanwhile


def test_list_from_a_future_resource_version_times_out(core, kube):
    if kube.server is not None:
        kube.server.registry.too_large_wait = 0.2  # kube-apiserver waits 3 s
    now = int(core.list_namespaced_config_map("default").metadata.resource_version)
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map("default", resource_version=str(now + 1000))
    assert err.value.status == 504
    assert (err.value.headers or {}).get("Retry-After") == "1"
    body = status_of(err.value)
    assert body["reason"] == "Timeout"
    assert body["message"].startswith(
        f"Timeout: Too large resource version: {now + 1000}, current: "
    )
    assert body["details"] == {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }
