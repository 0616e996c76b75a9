"""The `kube` fixture's real-cluster mode, exercised against a separately started test API
server that stands in for the cluster named by AIM_TEST_KUBECONFIG."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.apiserver import ApiServer
from tests.conftest import KUBE_APISERVER, REAL_CLUSTER_ENV, REPO, open_kube

WIDGETS = REPO / "tests" / "apiserver" / "testdata" / "widgets.yaml"


def test_real_cluster_mode(tmp_path, monkeypatch):
    with ApiServer() as cluster:
        config = cluster.write_kubeconfig(tmp_path / "cluster.kubeconfig")
        monkeypatch.setenv(REAL_CLUSTER_ENV, str(config))
        with open_kube(tmp_path, KUBE_APISERVER) as kube:
            assert kube.server is None
            assert kube.url == cluster.url
            assert kube.kubeconfig == config
            with pytest.raises(pytest.skip.Exception):
                kube.require_server()
            kube.apply_crds([WIDGETS])  # kubectl apply, then kubectl wait for Established
            assert cluster.registry.find("test.aim.dev", "v1alpha1", "widgets") is not None
            core: Any = client.CoreV1Api(kube.api_client())
            core.create_namespace({"metadata": {"name": kube.unique("ns")}})
            assert cluster.requests.count(verb="create", path_contains="/namespaces") == 1
            assert kube.unique("a") != kube.unique("a")


def test_missing_real_cluster_kubeconfig_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv(REAL_CLUSTER_ENV, str(tmp_path / "nope"))
    with pytest.raises(pytest.UsageError, match="nope"), open_kube(tmp_path, KUBE_APISERVER):
        pass


def test_default_mode_loads_project_crds(tmp_path, monkeypatch):
    monkeypatch.delenv(REAL_CLUSTER_ENV, raising=False)
    with open_kube(tmp_path) as kube:
        assert kube.server is not None
        served = {rt.kind for rt in kube.server.registry.types() if rt.is_custom}
        if (REPO / "daemonset" / "crds").is_dir():
            assert {"AIMProfile", "AIMClusterProfile"} <= served
    assert kube.server.stopping
