"""The controller through its own client (aimkit.kube) on both servers, the real kube-apiserver
included (``AIM_TEST_SERVERS=kube-apiserver``): paged lists, watches, status patches with a
resourceVersion precondition, Events, the Lease, all read back with the official client.

The rest of the controller's behaviour is in test_controller_live.py, on the test API server
(faults, the request record).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client

from tests.controller_support import (
    MI300X,
    cluster_profile,
    cluster_status,
    create_cluster_profile,
    create_node,
    gpu_labels,
    http_get,
    node_obj,
    start_controller,
    wait_for,
    wait_phases,
)

pytestmark = pytest.mark.cluster


def test_statuses_events_and_the_lease_through_aimkit(kube):
    api = kube.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    coordination = client.CoordinationV1Api(api)
    gpu_node, cpu_node = kube.unique("mi300x"), kube.unique("cpu")
    create_node(core, node_obj(gpu_node, gpu_labels(MI300X)))
    create_node(core, node_obj(cpu_node, gpus=0))
    ready, missing = kube.unique("ready"), kube.unique("missing")
    create_cluster_profile(custom, cluster_profile(ready, "MI300X", 1))
    create_cluster_profile(custom, cluster_profile(missing, "MI355X", 1))
    lease = kube.unique("aim-matcher")
    controller = start_controller(kube, identity="client-test", lease_name=lease)
    try:
        wait_phases(custom, {ready: "Ready", missing: "NotAvailable"}, timeout=30)
        assert cluster_status(custom, ready)["matchingNodes"] == 1

        # A cordon flips the Ready profile: a status patch and a Warning Event.
        core.patch_node(gpu_node, {"spec": {"unschedulable": True}})
        wait_phases(custom, {ready: "NotAvailable", missing: "NotAvailable"}, timeout=30)

        def event() -> Any:
            events = core.list_namespaced_event("default").items
            return next(
                (e for e in events if e.involved_object.name == ready and e.type == "Warning"),
                None,
            )

        found = wait_for(event, timeout=15, what="a Warning Event")
        assert found.reason == "HardwareNotAvailable"
        assert found.reporting_component == "aim-matcher"
        held: Any = coordination.read_namespaced_lease(lease, "default")
        assert held.spec.holder_identity == "client-test"
    finally:
        controller.stop(release=True)
    released: Any = coordination.read_namespaced_lease(lease, "default")
    assert not released.spec.holder_identity


def test_readyz_names_an_invalid_configmap_and_metrics_carry_the_build(kube):
    core: Any = client.CoreV1Api(kube.api_client())
    controller = start_controller(kube, leader_election=False)
    try:
        assert controller.health is not None
        base = f"http://127.0.0.1:{controller.health.port}"
        assert controller.wait_synced(30)
        assert http_get(base + "/readyz") == (200, "ok\n")
        core.create_namespaced_config_map(
            "default",
            {"metadata": {"name": "aim-matcher-config"}, "data": {"gpuResourceNmae": "x"}},
        )
        _, body = wait_for(
            lambda: (r := http_get(base + "/readyz"))[0] == 503 and r, timeout=15, what="not ready"
        )
        caches, config = body.splitlines()[:2]
        assert caches == "[+]caches ok"
        assert config.startswith(
            "[-]config failed: invalid ConfigMap default/aim-matcher-config: "
            "data.gpuResourceNmae: unknown key"
        ), body
        metrics = http_get(base + "/metrics")[1]
        build = r'^aim_matcher_build_info\{python_version="[\d.]+",version="[^"]+"\} 1\.0$'
        assert re.search(build, metrics, re.M)
    finally:
        controller.stop()
