"""The chaos run's findings (issue 13) as tests on the test API server's fault switches.

Each test reproduces one failure the chaos run found, with short timings so that it stays
within seconds: a storage that went back (a restart on a restored or wiped etcd), a one-second
blip of node watch errors, 429s with Retry-After, writes that get no answer, conflicts that
never end. The same restart on a real kube-apiserver is in test_controller_restart.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from detector.labels import accelerator_label_key
from tests.controller_support import (
    GROUP,
    MI300X,
    MI325X,
    MI355X,
    VERSION,
    cluster_profile,
    cluster_status,
    create_cluster_profile,
    create_node,
    gpu_labels,
    http_get,
    node_obj,
    phase,
    start_controller,
    status_writes,
    wait_for,
    wait_phases,
)

pytestmark = pytest.mark.cluster


@pytest.fixture
def srv(kube):
    return kube.require_server()


@pytest.fixture
def apis(kube, srv):
    api = kube.api_client()
    return client.CoreV1Api(api), client.CustomObjectsApi(api)


@pytest.fixture
def world(apis):
    """Four GPU nodes and twelve profiles (three per model, one model absent)."""
    core, custom = apis
    for name, model in (("a0", MI300X), ("a1", MI300X), ("b0", MI325X), ("b1", MI325X)):
        create_node(core, node_obj(name, gpu_labels(model)))
    expected = {}
    for model in ("MI300X", "MI325X", "MI355X"):
        for count in (1, 2, 8, 16):
            name = f"{model.lower()}-{count}"
            create_cluster_profile(custom, cluster_profile(name, model, count))
            fits = model != "MI355X" and count <= 8
            expected[name] = "Ready" if fits else "NotAvailable"
    return expected


def _metric(controller: Any, name: str, **labels: str) -> float:
    value = controller.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


def _status_patches(srv: Any, **match: Any) -> list[Any]:
    return [
        r
        for r in srv.requests
        if r.verb == "patch"
        and r.path.endswith("/status")
        and GROUP in r.path
        and all(getattr(r, k) == v for k, v in match.items())
    ]


# --- 1. a storage that went back ----------------------------------------------------------


def test_a_restart_on_a_restored_storage_rewrites_every_status(kube, srv, apis, world):
    """The storage goes back to before any status was written (an etcd backup restore): the
    watches would resume from resourceVersions the server has not reached and stay silent;
    the informers find the storage went back, re-list, and every status is written again."""
    _, custom = apis
    backup = srv.faults.snapshot()  # profiles without status
    c = start_controller(kube)
    try:
        wait_phases(custom, world)
        srv.requests.clear()
        srv.faults.restore(backup)
        started = time.monotonic()
        wait_phases(custom, world, timeout=10)
        assert time.monotonic() - started < 5
        assert status_writes(srv) == len(world)  # every status again, each once
        went_back = {"resource": "aimclusterprofiles", "reason": "went-back"}
        assert _metric(c, "aim_matcher_watch_restarts_total", **went_back) >= 1
        assert c.conflicts.loops() == []
    finally:
        c.stop()


def test_after_a_restore_a_changed_profile_is_written_not_refused(kube, srv, apis, world):
    """The chaos run's silent 409 loop: after the restore, a profile changed by a user gets a
    resourceVersion below the one the reconciler noted for its last write; patches sent with
    that note are refused forever. Notes are dropped when the storage goes back."""
    core, custom = apis
    c = start_controller(kube)
    try:
        wait_phases(custom, world)
        backup = srv.faults.snapshot()  # statuses written, notes taken
        # Writes after the backup: our notes now name resourceVersions above it. (A real
        # backup is older than the last few writes: the restored storage starts far behind
        # what the caches saw; see the informer's docstring for a gap too small to see.)
        core.patch_node("b0", {"metadata": {"labels": {MI355X: "8"}}})
        wait_for(lambda: phase(custom, "mi355x-1") == "Ready", what="MI355X Ready")
        for i in range(100):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"churn-{i}"}})
        srv.faults.restore(backup)
        srv.requests.clear()
        # The user changes a profile: its resourceVersion is below our note for it.
        custom.patch_cluster_custom_object(
            GROUP, VERSION, "aimclusterprofiles", "mi355x-1", {"spec": {"acceleratorCount": 2}}
        )
        # Written for the new generation, and against the restored nodes (b0 has no MI355X
        # label any more).
        wait_for(
            lambda: (
                cluster_status(custom, "mi355x-1").get("observedGeneration") == 2
                and phase(custom, "mi355x-1") == "NotAvailable"
            ),
            timeout=5,
            what="the changed profile's status written",
        )
        conflicts = [r for r in _status_patches(srv) if r.status == 409]
        assert len(conflicts) <= 2, f"{len(conflicts)} conflicts"
    finally:
        c.stop()


# --- 2. a blip is not Degraded -------------------------------------------------------------


def test_a_one_second_blip_of_node_watch_errors_writes_nothing(kube, srv, apis, world):
    """Three failed node watches in a row (about a second) used to flip every accelerator
    profile to Degraded and back: 2 x N writes. Degraded now needs the failure to last."""
    _, custom = apis
    c = start_controller(kube, informer=_informer(degraded_after=3.0))
    try:
        wait_phases(custom, world)
        srv.requests.clear()
        srv.faults.fail_next(3, code=500, path_contains="/api/v1/nodes")
        srv.faults.end_watches()
        wait_for(
            lambda: srv.requests.count(path_contains="/api/v1/nodes", status=500) == 3,
            what="three failed node requests",
        )
        wait_for(
            lambda: srv.requests.count(verb="watch", path_contains="/api/v1/nodes", status=200)
        )
        time.sleep(0.5)
        assert status_writes(srv) == 0
        assert c.nodes_error is None
    finally:
        c.stop()


def test_a_lasting_node_outage_is_degraded_once_it_has_lasted(kube, srv, apis, world):
    _, custom = apis
    c = start_controller(kube, informer=_informer(degraded_after=1.0))
    try:
        wait_phases(custom, world)
        srv.faults.fail_ratio(1.0, code=503, path_contains="/api/v1/nodes")
        srv.faults.end_watches()
        started = time.monotonic()
        wait_for(lambda: c.nodes_error is not None, timeout=5, what="nodes unavailable")
        assert time.monotonic() - started >= 0.9
        degraded = {n: "Degraded" for n in world}
        wait_phases(custom, degraded, timeout=5)
        srv.faults.clear()
        wait_phases(custom, world, timeout=5)
    finally:
        c.stop()


def _informer(**overrides: Any) -> Any:
    from dataclasses import replace  # noqa: PLC0415

    from tests.controller_support import FAST_INFORMER  # noqa: PLC0415

    return replace(FAST_INFORMER, **overrides)


# --- 3. Retry-After ------------------------------------------------------------------------


def test_status_write_retries_wait_for_retry_after(kube, srv, apis, world):
    """After a 429 asking for 1 s, no retry comes sooner (the chaos run: 157 of 158 did)."""
    _, custom = apis
    srv.faults.fail_ratio(1.0, code=429, retry_after=1.0, verb="patch", path_contains="/status")
    c = start_controller(kube)
    try:
        time.sleep(2.5)
        attempts = _status_patches(srv, status=429)
        per_profile: dict[str, int] = {}
        for r in attempts:
            per_profile[r.path] = per_profile.get(r.path, 0) + 1
        assert per_profile, "writes were attempted"
        # At 0, >=1, >=2 s: three attempts at most in 2.5 s (the back-off alone: about ten).
        assert max(per_profile.values()) <= 3, per_profile
        srv.faults.clear()
        wait_phases(custom, world, timeout=10)
    finally:
        c.stop()


# --- 6. failures the metrics did not see ---------------------------------------------------


def test_writes_without_an_answer_count_as_errors(kube, srv, apis, world):
    """Dropped connections and read timeouts are result="error", so the documented
    AimMatcherStatusWritesFailing alert (increase of result="error") can fire."""
    _, custom = apis
    srv.faults.fail_next(4, drop_connection=True, verb="patch", path_contains="/status")
    c = start_controller(kube, write_timeout=0.3)
    try:
        wait_phases(custom, world)
        dropped = _metric(c, "aim_matcher_status_writes_total", result="error")
        assert dropped >= 4
        # A write the server answers too late (after the write timeout).
        srv.faults.set_latency(1.0, writes_only=True)
        core, _ = apis
        core.patch_node("b0", {"metadata": {"labels": {MI355X: "8"}}})
        wait_for(
            lambda: _metric(c, "aim_matcher_status_writes_total", result="error") > dropped,
            timeout=5,
            what="a timed-out write counted",
        )
        srv.faults.clear()
        wait_for(lambda: phase(custom, "mi355x-1") == "Ready", timeout=10, what="converged")
    finally:
        c.stop()


def test_readyz_names_an_invalid_configmap_not_the_caches(kube, srv, apis, world):
    core, _ = apis
    core.create_namespaced_config_map(
        "default",
        {
            "metadata": {"name": "aim-matcher-config"},
            "data": {"countUnschedulableNodes": "maybe"},
        },
    )
    c = start_controller(kube)
    try:
        assert c.wait_synced(10)
        assert c.health is not None
        code, body = http_get(f"http://127.0.0.1:{c.health.port}/readyz?verbose")
        assert code == 503
        assert "[+]caches ok" in body
        assert "[-]config failed: invalid ConfigMap default/aim-matcher-config: " in body
        assert "data.countUnschedulableNodes" in body
    finally:
        c.stop()


# --- 1. repeated conflicts are visible -----------------------------------------------------


def test_conflicts_that_never_end_are_logged_counted_and_fail_healthz(
    kube, srv, apis, world, caplog
):
    _, custom = apis
    srv.faults.fail_ratio(1.0, code=409, verb="patch", path_contains="/mi355x-1/status")
    c = start_controller(kube, conflict_loop_after=1.0, retry_cap=0.2)
    try:
        assert c.health is not None
        healthz = f"http://127.0.0.1:{c.health.port}/healthz"
        wait_for(lambda: http_get(healthz)[0] == 503, timeout=5, what="healthz failing")
        _, body = http_get(healthz)
        assert (
            "[-]conflicts failed: status writes keep conflicting: aimclusterprofile/mi355x-1"
            in body
        )
        assert _metric(c, "aim_matcher_conflicting_profiles") == 1

        def said() -> list[str]:
            key = "aimclusterprofile/mi355x-1"
            return [r.getMessage() for r in caplog.records if getattr(r, "profile", "") == key]

        wait_for(lambda: any("have conflicted for" in m for m in said()), what="loop logged")
        assert any("conflicted 5 times in a row" in m for m in said())
        srv.faults.clear()
        wait_for(lambda: http_get(healthz)[0] == 200, timeout=5, what="healthz recovered")
        wait_phases(custom, world)
        assert _metric(c, "aim_matcher_conflicting_profiles") == 0
    finally:
        c.stop()


# --- issue 14: fewer writes per event ------------------------------------------------------


def test_a_burst_of_node_events_is_one_write_per_affected_profile(kube, srv, apis, world):
    core, custom = apis
    c = start_controller(kube, coalesce_delay=0.3)
    try:
        wait_phases(custom, world)
        srv.requests.clear()
        # Within the window: b1 leaves and comes back, b0 is cordoned; net effect on MI325X
        # profiles: one node fewer.
        core.patch_node("b1", {"spec": {"unschedulable": True}})
        core.patch_node("b1", {"spec": {"unschedulable": None}})
        core.patch_node("b0", {"spec": {"unschedulable": True}})
        wait_for(
            lambda: cluster_status(custom, "mi325x-1").get("matchingNodes") == 1,
            what="the net change written",
        )
        time.sleep(0.5)
        mi325x = [n for n in world if n.startswith("mi325x")]
        for name in mi325x:
            assert status_writes(srv, name) <= 1, name
        assert status_writes(srv) == sum(status_writes(srv, n) for n in mi325x)
    finally:
        c.stop()


def test_a_model_appearing_elsewhere_leaves_far_notavailable_messages_alone(kube, srv, apis, world):
    """MI355X profiles name the three nearest models; a MI100 node joining is not among them."""
    core, custom = apis
    create_node(core, node_obj("c0", gpu_labels(accelerator_label_key("MI350X"))))
    c = start_controller(kube)
    try:
        wait_phases(custom, world)
        message = cluster_status(custom, "mi355x-1")["conditions"][0]["message"]
        assert message.endswith("nearest accelerator models in the cluster: MI350X, MI325X, MI300X")
        srv.requests.clear()
        create_node(core, node_obj("old-0", gpu_labels(accelerator_label_key("MI100"))))
        wait_for(lambda: c.node("old-0") is not None, what="node seen")
        time.sleep(0.5)
        assert status_writes(srv) == 0
    finally:
        c.stop()


def test_profile_status_series_follow_the_profiles(kube, srv, apis, world):
    _, custom = apis
    c = start_controller(kube)
    try:
        wait_phases(custom, world)
        assert c.health is not None
        metrics_url = f"http://127.0.0.1:{c.health.port}/metrics"
        text = http_get(metrics_url)[1]
        series = [line for line in text.splitlines() if line.startswith("aim_profile_status{")]
        assert len(series) == len(world)
        assert (
            'aim_profile_status{kind="AIMClusterProfile",name="mi355x-1",namespace="",'
            'status="NotAvailable"} 1.0'
        ) in series
        custom.delete_cluster_custom_object(GROUP, VERSION, "aimclusterprofiles", "mi355x-1")
        wait_for(
            lambda: 'name="mi355x-1"' not in http_get(metrics_url)[1], what="series of the deleted"
        )
    finally:
        c.stop()


def test_profile_status_series_are_capped(kube, srv, apis, world):
    _, custom = apis
    c = start_controller(kube, profile_metrics_limit=5)
    try:
        wait_phases(custom, world)
        assert c.health is not None
        text = http_get(f"http://127.0.0.1:{c.health.port}/metrics")[1]
        series = [line for line in text.splitlines() if line.startswith("aim_profile_status{")]
        assert len(series) == 5
        assert f"aim_matcher_profile_status_omitted {len(world) - 5}.0" in text
    finally:
        c.stop()
