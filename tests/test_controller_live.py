"""The controller in-process against the test API server: real HTTP, the real client.

Each test starts a controller in threads with a short lease and back-off, changes Nodes,
profiles or the ConfigMap through the API, and polls the profiles' status with a deadline.
Writes are counted in the server's request log.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from detector.labels import OWNED_LABELS_ANNOTATION
from matcher.controller.leader import micro_time
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
    writes_at_least,
)

pytestmark = pytest.mark.cluster


@pytest.fixture
def apis(kube):
    # Fake Nodes, injected faults and the request record: the test API server only.
    kube.require_server()
    api = kube.api_client()
    return client.CoreV1Api(api), client.CustomObjectsApi(api)


@pytest.fixture
def world(kube, apis):
    """Three GPU nodes and five profiles, one per situation."""
    core, custom = apis
    create_node(core, node_obj("mi300x-0", gpu_labels(MI300X)))
    create_node(core, node_obj("mi300x-1", gpu_labels(MI300X)))
    create_node(core, node_obj("mi325x-0", gpu_labels(MI325X)))
    create_node(core, node_obj("cpu-0", gpus=0))
    for obj in (
        cluster_profile("mi300x-1", "MI300X", 1),
        cluster_profile("mi300x-8", "MI300X", 8),
        cluster_profile("mi325x-1", "MI325X", 1),
        cluster_profile("mi355x-1", "MI355X", 1),
        cluster_profile("cpu-only", None),
    ):
        create_cluster_profile(custom, obj)
    return {
        "mi300x-1": "Ready",
        "mi300x-8": "Ready",
        "mi325x-1": "Ready",
        "mi355x-1": "NotAvailable",
        "cpu-only": "Ready",
    }


@pytest.fixture
def controller(kube, world):
    c = start_controller(kube)
    yield c
    c.stop()


def test_first_statuses_metrics_and_probes(kube, apis, world, controller):
    _, custom = apis
    wait_phases(custom, world)
    status = cluster_status(custom, "mi300x-1")
    assert status["matchingNodes"] == 2
    assert status["hardwareSummary"] == "1 x MI300X"
    not_available = cluster_status(custom, "mi355x-1")["conditions"][0]["message"]
    assert not_available.endswith("nearest accelerator models in the cluster: MI325X, MI300X")
    assert controller.health is not None
    base = f"http://127.0.0.1:{controller.health.port}"
    assert http_get(base + "/readyz") == (200, "ok\n")
    assert http_get(base + "/healthz")[0] == 200
    wait_for(lambda: 'aim_matcher_profiles{status="Ready"} 4.0' in http_get(base + "/metrics")[1])
    metrics = http_get(base + "/metrics")[1]
    for name in (
        "aim_matcher_reconcile_duration_seconds_count",
        "aim_matcher_queue_depth",
        'aim_matcher_status_writes_total{result="ok"}',
        "aim_matcher_is_leader 1.0",
        'aim_matcher_profiles{status="NotAvailable"} 1.0',
    ):
        assert name in metrics
    # Exactly one write per profile: nothing is written twice for the same status.
    assert writes_at_least(kube.server, len(world)) == len(world)


def test_label_and_capacity_changes_flip_only_affected_profiles(kube, apis, world, controller):
    core, custom = apis
    wait_phases(custom, world)
    kube.server.requests.clear()

    core.patch_node("mi325x-0", {"metadata": {"labels": {MI355X: "8"}}})
    wait_for(lambda: phase(custom, "mi355x-1") == "Ready", timeout=1.0, what="MI355X Ready")
    core.patch_node("mi325x-0", {"metadata": {"labels": {MI355X: None}}})
    wait_for(lambda: phase(custom, "mi355x-1") == "NotAvailable", timeout=1.0, what="MI355X gone")
    # Losing GPU capacity: 4 GPUs left on one MI300X node, 8 still on the other.
    core.patch_node_status("mi300x-0", {"status": {"allocatable": {"amd.com/gpu": "4"}}})
    wait_for(
        lambda: cluster_status(custom, "mi300x-8").get("matchingNodes") == 1,
        timeout=1.0,
        what="mi300x-8 down to one node",
    )
    core.patch_node_status("mi300x-1", {"status": {"allocatable": {"amd.com/gpu": "4"}}})
    wait_for(lambda: phase(custom, "mi300x-8") == "NotAvailable", timeout=1.0, what="mi300x-8")
    # Profiles no change could reach were not written.
    assert status_writes(kube.server, "mi325x-1") == 0
    assert status_writes(kube.server, "cpu-only") == 0
    # mi300x-1 is still Ready, only its message moved with the capacity.
    assert phase(custom, "mi300x-1") == "Ready"


def test_cordon_flips_a_profile_whose_only_node_it_was(kube, apis, world, controller):
    core, custom = apis
    wait_phases(custom, world)
    core.patch_node("mi325x-0", {"spec": {"unschedulable": True}})
    wait_for(lambda: phase(custom, "mi325x-1") == "NotAvailable", timeout=1.0, what="cordon")
    message = cluster_status(custom, "mi325x-1")["conditions"][0]["message"]
    assert "cordoned" in message
    core.patch_node("mi325x-0", {"spec": {"unschedulable": None}})
    wait_for(lambda: phase(custom, "mi325x-1") == "Ready", timeout=1.0, what="uncordon")

    # Each flip between Ready and NotAvailable is an Event on the profile.
    def reasons() -> list[str]:
        events = core.list_namespaced_event("default").items
        return sorted(e.reason for e in events if e.involved_object.name == "mi325x-1")

    wait_for(lambda: len(reasons()) == 2, what="two events")
    assert reasons() == ["HardwareAvailable", "HardwareNotAvailable"]


def test_a_thousand_heartbeats_write_nothing(kube, apis, world, controller):
    core, custom = apis
    wait_phases(custom, world)
    kube.server.requests.clear()
    names = ["mi300x-0", "mi300x-1", "mi325x-0", "cpu-0"]
    for i in range(1000):
        stamp = f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        core.patch_node_status(
            names[i % 4],
            {
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": stamp}]
                }
            },
        )
    # A barrier: one real change after the heartbeats, so the controller has seen them all
    # when its write lands.
    core.patch_node("mi325x-0", {"metadata": {"labels": {MI355X: "8"}}})
    wait_for(lambda: phase(custom, "mi355x-1") == "Ready", what="barrier write")
    assert writes_at_least(kube.server, 1) == 1
    assert kube.server.requests.count(verb="patch", path_contains="/nodes/") == 1001


def test_config_change_reevaluates_everything_and_a_bad_config_keeps_the_last_good(
    kube, apis, world, controller
):
    core, custom = apis
    wait_phases(custom, world)
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "aim-matcher-config", "namespace": "default"},
        "data": {"gpuResourceName": "amd.com/cpx_nps4"},
    }
    core.create_namespaced_config_map("default", config)
    gone = {
        **world,
        "mi300x-1": "NotAvailable",
        "mi300x-8": "NotAvailable",
        "mi325x-1": "NotAvailable",
    }
    wait_phases(custom, gone)
    requests = cluster_status(custom, "mi300x-1")["resources"]["requests"]
    assert requests == {"amd.com/cpx_nps4": "1"}

    core.patch_namespaced_config_map(
        "aim-matcher-config",
        "default",
        {"data": {"gpuResourceName": "amd.com/gpu", "countUnschedulable": "yes"}},
    )
    wait_for(lambda: controller.config_error, what="config error")
    assert "data.countUnschedulable" in controller.config_error
    assert not controller.ready()
    assert phase(custom, "mi300x-1") == "NotAvailable"  # the last good config still holds

    core.delete_namespaced_config_map("aim-matcher-config", "default")
    wait_phases(custom, world)
    assert controller.ready()


def test_profile_spec_change_and_delete(kube, apis, world, controller):
    _, custom = apis
    wait_phases(custom, world)
    custom.patch_cluster_custom_object(
        GROUP, VERSION, "aimclusterprofiles", "mi325x-1", {"spec": {"acceleratorCount": 16}}
    )
    wait_for(lambda: phase(custom, "mi325x-1") == "NotAvailable", what="spec change")
    status = cluster_status(custom, "mi325x-1")
    assert status["observedGeneration"] == 2
    assert "nearest is mi325x-0" in status["conditions"][0]["message"]
    custom.delete_cluster_custom_object(GROUP, VERSION, "aimclusterprofiles", "mi325x-1")
    wait_for(lambda: ("", "mi325x-1") not in {(k.namespace, k.name) for k in controller.statuses()})


def test_namespaced_profiles_in_configured_namespaces_only(kube, apis, world):
    core, custom = apis

    def ns_profile(ns: str) -> dict[str, Any]:
        obj = cluster_profile("team-mi300x", "MI300X", 2)
        obj["kind"] = "AIMProfile"
        obj["metadata"]["namespace"] = ns
        return obj

    for ns in ("team-a", "team-b"):
        core.create_namespace({"metadata": {"name": ns}})
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "aimprofiles", ns_profile(ns))
    c = start_controller(kube, profile_namespaces=("team-a",))
    try:
        wait_for(
            lambda: (
                custom.get_namespaced_custom_object(
                    GROUP, VERSION, "team-a", "aimprofiles", "team-mi300x"
                )
                .get("status", {})
                .get("status")
                == "Ready"
            ),
            what="team-a profile Ready",
        )
        wait_phases(custom, world)
        other = custom.get_namespaced_custom_object(
            GROUP, VERSION, "team-b", "aimprofiles", "team-mi300x"
        )
        assert other.get("status", {}).get("status") in (None, "Pending")
    finally:
        c.stop()


def test_two_replicas_one_writes_and_the_other_takes_over(kube, apis, world):
    core, custom = apis
    a = start_controller(kube, identity="matcher-a")
    b = start_controller(kube, identity="matcher-b")
    try:
        leader, follower = wait_for(
            lambda: (a, b) if a.is_leader() else ((b, a) if b.is_leader() else None),
            what="a leader",
        )
        wait_phases(custom, world)
        assert follower.wait_synced(5)  # the follower's caches are warm
        lead_id, follow_id = leader.settings.identity, follower.settings.identity
        assert writes_at_least(kube.server, len(world), agent=lead_id) == len(world)
        assert status_writes(kube.server, agent=follow_id) == 0

        # The leader dies without releasing the lease.
        leader.stop(release=False)
        core.patch_node("mi325x-0", {"metadata": {"labels": {MI355X: "8"}}})
        wait_for(follower.is_leader, timeout=4.0, what="takeover within the lease duration")
        wait_for(lambda: phase(custom, "mi355x-1") == "Ready", timeout=3.0, what="write")
        # Nothing lost (the change made while nobody led was written) and nothing doubled.
        assert writes_at_least(kube.server, 2, name="mi355x-1") == 2
        assert writes_at_least(kube.server, 1, agent=follow_id) == 1
        lease: Any = client.CoordinationV1Api(kube.api_client()).read_namespaced_lease(
            "aim-matcher", "default"
        )
        assert lease.spec.holder_identity == follow_id
        assert lease.spec.lease_transitions >= 1
    finally:
        a.stop()
        b.stop()


def test_graceful_stop_releases_the_lease_for_an_immediate_takeover(kube, apis, world):
    a = start_controller(kube, identity="matcher-a", lease_duration=30.0, renew_deadline=20.0)
    wait_for(a.is_leader, what="a leads")
    b = start_controller(kube, identity="matcher-b", lease_duration=30.0, renew_deadline=20.0)
    try:
        assert b.wait_synced(5)
        a.stop(release=True)
        # Far sooner than the 30 s lease: the holder was cleared.
        wait_for(b.is_leader, timeout=3.0, what="takeover after release")
    finally:
        a.stop()
        b.stop()


def test_a_leader_that_cannot_renew_stops_writing(kube, apis, world, controller):
    core, custom = apis
    wait_phases(custom, world)
    assert controller.is_leader()
    kube.server.faults.fail_ratio(1.0, code=500, path_contains="/leases")
    wait_for(lambda: not controller.is_leader(), timeout=3.0, what="leadership lost")
    kube.server.requests.clear()
    core.patch_node("mi325x-0", {"metadata": {"labels": {MI355X: "8"}}})
    # Once the change is in the cache and the queue is drained, a leader would have written.
    wait_for(lambda: MI355X in controller.node("mi325x-0").labels, what="change seen")
    wait_for(lambda: len(controller.queue) == 0, what="queue drained")
    assert status_writes(kube.server) == 0
    assert phase(custom, "mi355x-1") == "NotAvailable"
    kube.server.faults.clear()
    wait_for(controller.is_leader, timeout=5.0, what="leadership regained")
    wait_for(lambda: phase(custom, "mi355x-1") == "Ready", what="write after regaining")


def test_api_faults_then_convergence(kube, apis, world, controller):
    core, custom = apis
    wait_phases(custom, world)
    faults = kube.server.faults
    faults.fail_ratio(0.3, code=500)
    faults.fail_ratio(0.2, code=429, retry_after=0.05)
    faults.fail_ratio(0.1, drop_connection=True)
    expected = dict(world)
    for i in range(6):
        labels = {MI355X: "8"} if i % 2 == 0 else {MI355X: None}
        _retry(lambda labels=labels: core.patch_node("cpu-0", {"metadata": {"labels": labels}}))
        faults.end_watches()
        if i == 3:
            faults.expire_resource_versions()
    _retry(lambda: core.patch_node("mi325x-0", {"spec": {"unschedulable": True}}))
    expected["mi325x-1"] = "NotAvailable"
    faults.expire_resource_versions()
    faults.end_watches()
    faults.clear()
    wait_phases(custom, expected, timeout=15)
    assert cluster_status(custom, "mi300x-1")["matchingNodes"] == 2
    restarts = controller.metrics.registry.get_sample_value(
        "aim_matcher_watch_restarts_total", {"resource": "nodes", "reason": "closed"}
    )
    assert restarts is not None
    assert restarts >= 1


def test_degraded_while_nodes_cannot_be_listed_then_recovers(kube, apis, world, controller):
    _, custom = apis
    wait_phases(custom, world)
    kube.server.faults.fail_ratio(1.0, code=503, path_contains="/api/v1/nodes")
    kube.server.faults.end_watches()
    degraded = {
        **world,
        "mi300x-1": "Degraded",
        "mi300x-8": "Degraded",
        "mi325x-1": "Degraded",
        "mi355x-1": "Degraded",
    }
    wait_phases(custom, degraded, timeout=10)
    message = cluster_status(custom, "mi300x-1")["conditions"][0]["message"]
    assert "cannot list or watch nodes" in message
    assert "503" in message
    kube.server.faults.clear()
    wait_phases(custom, world, timeout=10)
    assert controller.nodes_error is None


def test_degraded_at_startup_while_nodes_cannot_be_listed(kube, apis, world):
    """The node list fails from the start: profiles show Degraded, not no status at all."""
    _, custom = apis
    kube.server.faults.fail_next(1000, code=500, path_contains="/api/v1/nodes")
    c = start_controller(kube)
    try:
        degraded = {name: "Degraded" for name in world if name != "cpu-only"}
        wait_phases(custom, degraded, timeout=10)
        message = cluster_status(custom, "mi300x-1")["conditions"][0]["message"]
        assert "cannot list or watch nodes" in message
        assert "500" in message
        assert c.nodes_error is not None
        # A CPU-only profile is never Degraded; it waits for a node count rather than
        # publishing zero.
        assert phase(custom, "cpu-only") in (None, "Pending")
        assert status_writes(kube.server, "cpu-only") == 0
        # Ready means every cache synced, the node cache included.
        assert not c.ready()
        assert c.health is not None
        assert http_get(f"http://127.0.0.1:{c.health.port}/readyz")[0] == 503

        kube.server.faults.clear()
        wait_phases(custom, world, timeout=10)
        assert c.ready()
        recovered: Any = c.nodes_error  # (not narrowed by the assert above)
        assert recovered is None
        assert cluster_status(custom, "mi300x-1")["matchingNodes"] == 2
        assert cluster_status(custom, "cpu-only")["matchingNodes"] == 4
        # Degraded, then the truth: no half-filled status in between, nothing written twice.
        assert writes_at_least(kube.server, 2, name="mi300x-1") == 2
        assert writes_at_least(kube.server, 1, name="cpu-only") == 1
    finally:
        c.stop()


def _lease_spec(holder: str, duration: int) -> dict[str, Any]:
    now = micro_time(datetime.now(UTC))
    return {
        "holderIdentity": holder,
        "leaseDurationSeconds": duration,
        "acquireTime": now,
        "renewTime": now,
    }


def test_a_leader_whose_lease_is_taken_stops_writing_at_once(kube, apis, world, controller):
    core, custom = apis
    wait_phases(custom, world)
    assert controller.is_leader()
    coordination = client.CoordinationV1Api(kube.api_client())
    # Another replica takes the lease (a long one, so the controller cannot win it back here).
    coordination.patch_namespaced_lease(
        "aim-matcher", "default", {"spec": _lease_spec("matcher-intruder", 60)}
    )
    # Within about one retry period (0.2 s), far sooner than the 1.5 s renew deadline.
    wait_for(lambda: not controller.is_leader(), timeout=1.0, what="leadership given up")
    assert controller.leader is not None
    assert controller.leader.holder == "matcher-intruder"
    kube.server.requests.clear()
    core.patch_node("mi325x-0", {"metadata": {"labels": {MI355X: "8"}}})
    wait_for(lambda: MI355X in controller.node("mi325x-0").labels, what="change seen")
    wait_for(lambda: len(controller.queue) == 0, what="queue drained")
    time.sleep(0.5)  # a few retry periods as a follower
    assert status_writes(kube.server, agent="matcher-a") == 0
    assert phase(custom, "mi355x-1") == "NotAvailable"
    # A follower again: it reads the lease but does not write it back.
    assert kube.server.requests.count(verb="get", path_contains="/leases/") >= 1
    lease_writes = [
        r
        for r in kube.server.requests
        if r.verb in ("update", "patch", "create") and "/leases" in r.path
    ]
    assert lease_writes == []
    assert not controller.is_leader()


def test_lease_expiry_counts_the_holders_recorded_duration(kube, apis, world):
    """A 3 s lease written by another replica is not taken over after this one's own 0.6 s."""
    _, custom = apis
    coordination = client.CoordinationV1Api(kube.api_client())
    lease: Any = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "aim-matcher", "namespace": "default"},
        "spec": _lease_spec("matcher-other", 3),
    }
    coordination.create_namespaced_lease("default", lease)
    started = time.monotonic()
    c = start_controller(kube, lease_duration=0.6, renew_deadline=0.4, retry_period=0.1)
    try:
        assert c.wait_synced(5)
        # Well past this replica's own lease duration, short of the recorded one.
        while time.monotonic() - started < 2.0:
            assert not c.is_leader()
            time.sleep(0.05)
        assert status_writes(kube.server) == 0
        wait_for(c.is_leader, timeout=3.0, what="takeover once the recorded duration passed")
        assert time.monotonic() - started >= 2.9
        wait_phases(custom, world)
        lease = coordination.read_namespaced_lease("aim-matcher", "default")
        assert lease.spec.holder_identity == "matcher-a"
        assert lease.spec.lease_transitions == 1
    finally:
        c.stop()


def _retry(call: Any, attempts: int = 50) -> Any:
    """Test-side writes during fault injection: retry until one gets through."""
    for _ in range(attempts - 1):
        try:
            return call()
        except Exception:  # the faults are the point
            continue
    return call()


def test_without_accelerator_labels_the_message_follows_the_detector_marks(kube, apis):
    """No node has any accelerator label: the NotAvailable message counts the nodes the detector
    ran on (its annotation, empty) and did not; a node getting the mark or joining rewrites it,
    a heartbeat does not."""
    core, custom = apis
    for name in ("plain-0", "plain-1"):
        create_node(core, node_obj(name, gpus=0))
    create_cluster_profile(custom, cluster_profile("mi300x-1", "MI300X", 1))
    c = start_controller(kube)
    try:

        def message() -> str:
            conditions = cluster_status(custom, "mi300x-1").get("conditions") or [{}]
            return str(conditions[0].get("message", ""))

        wait_for(lambda: "ran on 0 of 2 nodes: none carries" in message(), what="0 of 2")
        core.patch_node("plain-0", {"metadata": {"annotations": {OWNED_LABELS_ANNOTATION: ""}}})
        wait_for(lambda: "ran on 1 of 2 nodes and found no" in message(), what="1 of 2")
        assert "1 node carries no annotation" in message()
        create_node(core, node_obj("plain-2", gpus=0))
        wait_for(lambda: "ran on 1 of 3 nodes" in message(), what="1 of 3")
        kube.server.requests.clear()
        for i in range(20):
            core.patch_node_status(
                f"plain-{i % 3}",
                {
                    "status": {
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True",
                                "lastHeartbeatTime": f"2026-01-01T00:00:{i:02d}Z",
                            }
                        ]
                    }
                },
            )
        core.patch_node("plain-1", {"metadata": {"annotations": {OWNED_LABELS_ANNOTATION: ""}}})
        wait_for(lambda: "ran on 2 of 3 nodes" in message(), what="2 of 3 (barrier)")
        assert writes_at_least(kube.server, 1) == 1
    finally:
        c.stop()
