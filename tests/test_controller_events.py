"""Events a user finds with `kubectl describe`, on both servers: a profile found NotAvailable
gets a Warning at once (not only after a flip from Ready), and one back to Ready a Normal."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.controller_support import (
    cluster_profile,
    create_cluster_profile,
    create_node,
    gpu_labels,
    node_obj,
    phase,
    start_controller,
    wait_for,
)

pytestmark = pytest.mark.cluster


def test_a_profile_first_found_not_available_has_a_warning_event(kube):
    api = kube.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    name = kube.unique("mi355x")
    create_cluster_profile(custom, cluster_profile(name, "MI355X", 1))
    c = start_controller(kube, lease_name=kube.unique("aim-matcher"))
    try:
        wait_for(lambda: phase(custom, name) == "NotAvailable", timeout=15, what="NotAvailable")

        def described() -> str:
            return str(kube.kubectl("describe", "aimclusterprofile", name).stdout)

        wait_for(lambda: "HardwareNotAvailable" in described(), timeout=10, what="an event")
        text = described()
        assert "Warning  HardwareNotAvailable" in text
        assert "No node has label feature.node.kubernetes.io/aim-accelerator.MI355X" in text

        node = kube.unique("mi355x-node")
        create_node(
            core, node_obj(node, gpu_labels("feature.node.kubernetes.io/aim-accelerator.MI355X"))
        )
        wait_for(lambda: phase(custom, name) == "Ready", timeout=15, what="Ready")
        wait_for(lambda: "HardwareAvailable" in described().replace("HardwareNotAvailable", ""),
                 timeout=10, what="a Normal event")  # fmt: skip
        assert "Normal   HardwareAvailable" in described()
    finally:
        c.stop()
