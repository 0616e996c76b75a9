"""Fault injection and the request record of the test API server."""

from __future__ import annotations

import time

import pytest
import urllib3
from kubernetes import client
from kubernetes.client import ApiException


@pytest.fixture
def core(kube):
    kube.require_server()
    return client.CoreV1Api(kube.api_client())


def test_fail_next_counts_down(core, kube):
    srv = kube.server
    srv.faults.fail_next(2, code=500, verb="list")
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            core.list_node()
        assert err.value.status == 500
    core.list_node()
    core.create_node({"metadata": {"name": "n"}})  # other verbs were never affected
    assert srv.requests.count(verb="list", status=500) == 2


def test_429_carries_retry_after(core, kube):
    kube.server.faults.fail_next(1, code=429, retry_after=3, path_contains="/configmaps")
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert err.value.status == 429
    assert (err.value.headers or {})["Retry-After"] == "3"
    assert '"reason":"TooManyRequests"' in str(err.value.body)
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})


def test_drop_connection(core, kube):
    srv = kube.server
    srv.faults.fail_next(1, drop_connection=True, verb="create")
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "c"}}, _request_timeout=5
        )
    assert srv.requests.count(verb="create", status=0) == 1
    assert core.list_namespaced_config_map("default").items == []  # nothing was processed


def test_fail_ratio_and_clear(core, kube):
    srv = kube.server
    srv.faults.fail_ratio(1.0, code=503, verb="get")
    with pytest.raises(ApiException) as err:
        core.read_namespace("default")
    assert err.value.status == 503
    srv.faults.clear()
    assert core.read_namespace("default").metadata.name == "default"


def test_latency(core, kube):
    kube.server.faults.set_latency(0.2)
    start = time.monotonic()
    core.read_namespace("default")
    assert time.monotonic() - start >= 0.2


def test_request_record(core, kube):
    srv = kube.server
    srv.requests.clear()
    core.create_node({"metadata": {"name": "n"}})
    core.patch_node("n", {"metadata": {"labels": {"a": "b"}}})
    core.patch_node_status("n", {"status": {"capacity": {"cpu": "4"}}})
    core.read_node("n")
    recs = list(srv.requests)
    assert [(r.verb, r.method, r.path) for r in recs] == [
        ("create", "POST", "/api/v1/nodes"),
        ("patch", "PATCH", "/api/v1/nodes/n"),
        ("patch", "PATCH", "/api/v1/nodes/n/status"),
        ("get", "GET", "/api/v1/nodes/n"),
    ]
    assert recs[1].content_type == "application/strategic-merge-patch+json"
    assert recs[2].subresource == "status"
    assert recs[0].status == 201
    assert srv.requests.count(verb="patch", path_contains="/status") == 1
