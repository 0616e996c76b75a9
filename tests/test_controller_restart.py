"""The matcher across a kube-apiserver restart that lost its storage, on a real control plane.

A plane of the test's own (the run's shared one would lose its baseline): etcd and
kube-apiserver v1.34 are stopped, etcd's data replaced by a backup copy, both started again on
the same ports. Every resourceVersion the matcher saw since the backup is now in the server's
future: a watch resumed from one is answered 200 and stays silent, and a status patch carrying
one is refused with 409 (the chaos run's silent loop). The same scenario with the test API
server's `restore()` is in test_controller_chaos.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.conftest import KUBE_APISERVER, REAL_CLUSTER_ENV, project_crd_files, selected_servers
from tests.controller_support import (
    GROUP,
    MI300X,
    MI325X,
    VERSION,
    cluster_profile,
    create_cluster_profile,
    create_node,
    gpu_labels,
    node_obj,
    phase,
    start_controller,
    wait_for,
)
from tests.controlplane.crds import FixtureCRDs
from tests.controlplane.plane import ControlPlane

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


class _Kube:
    """What start_controller needs of the `kube` fixture."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig


@pytest.fixture
def plane(tmp_path):
    if KUBE_APISERVER not in selected_servers() or os.environ.get(REAL_CLUSTER_ENV):
        pytest.skip("needs a kube-apiserver of its own (AIM_TEST_SERVERS, AIM_TEST_KUBECONFIG)")
    plane = ControlPlane(tmp_path / "plane").start()
    try:
        yield plane
    finally:
        plane.stop()


def _connect(
    plane: ControlPlane,
    nodes: dict[str, str] | None = None,
    profiles: list[dict[str, Any]] | None = None,
) -> Any:
    """Clients for the plane; with `nodes`, the CRDs, those nodes and `profiles` created."""
    api = config.new_client_from_config(config_file=str(plane.admin_kubeconfig))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    if nodes is not None:
        FixtureCRDs(plane).apply(
            [
                doc
                for f in project_crd_files()
                for doc in yaml.safe_load_all(f.read_text())
                if doc and doc.get("kind") == "CustomResourceDefinition"
            ]
        )
        for name, model in nodes.items():
            create_node(core, node_obj(name, gpu_labels(model)))
        for obj in profiles or ():
            create_cluster_profile(custom, obj)
    return api, core, custom


def test_a_restart_on_a_restored_storage_rewrites_every_status(plane, tmp_path):
    """An etcd backup taken before the matcher ran is restored under it: the profiles are back
    without status, at resourceVersions below every one the matcher saw. It finds the storage
    went back, drops its notes and writes every status again, and a profile a user changes
    after the restore is written, not refused with 409 after 409."""
    profiles = [
        cluster_profile("mi300x-1", "MI300X", 1),
        cluster_profile("mi300x-8", "MI300X", 8),
        cluster_profile("mi325x-1", "MI325X", 1),
        cluster_profile("mi355x-1", "MI355X", 1),
    ]
    api, core, custom = _connect(plane, {"a0": MI300X, "b0": MI325X}, profiles)
    api.close()
    backup = plane.backup_storage(tmp_path / "etcd-backup")
    api, core, custom = _connect(plane)
    expected = {
        "mi300x-1": "Ready",
        "mi300x-8": "Ready",
        "mi325x-1": "Ready",
        "mi355x-1": "NotAvailable",
    }
    c = start_controller(_Kube(plane.admin_kubeconfig), retry_cap=0.5)
    try:
        wait_for(lambda: all(phase(custom, n) == p for n, p in expected.items()), timeout=20)
        # Writes since the backup, as in any cluster: the caches hold resourceVersions well
        # past the backup's.
        for i in range(150):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"churn-{i}"}})
        api.close()

        plane.restart(restore=backup)
        restored = time.monotonic()
        api, core, custom = _connect(plane)
        wait_for(
            lambda: all(phase(custom, n) == p for n, p in expected.items()),
            timeout=30,
            what="every status written again after the restore",
        )
        converged = time.monotonic() - restored
        assert converged < 20
        custom.patch_cluster_custom_object(
            GROUP, VERSION, "aimclusterprofiles", "mi300x-8", {"spec": {"acceleratorCount": 16}}
        )
        wait_for(
            lambda: phase(custom, "mi300x-8") == "NotAvailable",
            timeout=10,
            what="a profile changed after the restore written",
        )
        conflicts = c.metrics.registry.get_sample_value(
            "aim_matcher_status_writes_total", {"result": "conflict"}
        )
        assert (conflicts or 0) <= len(profiles)
        assert c.conflicts.loops() == []
    finally:
        c.stop()
        api.close()
