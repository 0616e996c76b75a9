"""Node mode against a Kubernetes API over HTTP, with the real client.

Runs against the project's test API server (the ``kube`` fixture), or a real cluster through
``AIM_TEST_KUBECONFIG`` for the tests that need no fault injection.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from detector.labels import (
    OWNED_LABELS_ANNOTATION,
    accelerator_label_key,
    epyc_id,
    partition_label_key,
)
from detector.publish import PublishError
from detector.publish.node import MERGE_PATCH, Backoff, NodePublisher

pytestmark = pytest.mark.cluster

MI300X = accelerator_label_key("MI300X")
SPX = partition_label_key("default")
ZEN4 = accelerator_label_key(epyc_id("ZEN4"))
LABELS = {MI300X: "8", SPX: "8", ZEN4: "192"}
FOREIGN = {
    "kubernetes.io/hostname": "gpu-1",
    "feature.node.kubernetes.io/cpu-cpuid.AVX512F": "true",
}
FAST = Backoff(attempts=4, base=0.01, cap=0.05)


@pytest.fixture
def api(kube):
    api_client = kube.api_client()
    yield api_client
    api_client.close()


@pytest.fixture
def node(kube, api):
    """A Node carrying foreign labels and annotations; deleted afterwards."""
    name = kube.unique("gpu-node")
    body = client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=dict(FOREIGN), annotations={"team": "infra"})
    )
    client.CoreV1Api(api).create_node(body)
    yield name
    client.CoreV1Api(api).delete_node(name)


def metadata(api, name):
    meta = client.CoreV1Api(api).read_node(name).metadata
    assert meta is not None
    return dict(meta.labels or {}), dict(meta.annotations or {})


def recorded(kube, verb, name, expect=None):
    """Requests the server recorded for Node ``name``; waits (with a deadline) for ``expect``.

    The server records a request after answering it, so the last one may land a moment after
    the client has seen its response. The publisher is synchronous: once it returned, it sends
    nothing more, so waiting for the expected count cannot hide an extra request.
    """
    requests = kube.require_server().requests
    deadline = time.monotonic() + 5
    while True:
        seen = requests.count(verb=verb, path_contains=f"/nodes/{name}")
        if expect is None or seen >= expect or time.monotonic() > deadline:
            return seen
        time.sleep(0.01)


def patches(kube, name, expect=None):
    return recorded(kube, "patch", name, expect)


def test_labels_appear_with_the_ownership_annotation_in_one_merge_patch(kube, api, node):
    pub = NodePublisher(api, node, backoff=FAST)
    assert pub.publish(LABELS) is True
    labels, annotations = metadata(api, node)
    assert labels == {**FOREIGN, **LABELS}
    assert annotations[OWNED_LABELS_ANNOTATION] == ",".join(sorted(LABELS))
    assert annotations["team"] == "infra"
    if kube.server is not None:
        sent = [r for r in kube.server.requests if r.verb == "patch" and node in r.path]
        assert len(sent) == 1
        assert sent[0].content_type.startswith(MERGE_PATCH)
        assert sent[0].query.get("fieldManager") == "aim-detector"


def test_unchanged_labels_send_no_write(kube, api, node):
    pub = NodePublisher(api, node, backoff=FAST)
    pub.publish(LABELS)
    before = patches(kube, node)
    for _ in range(3):
        assert pub.publish(dict(LABELS)) is False
    assert patches(kube, node) == before


def test_stale_owned_labels_go_and_foreign_ones_stay(api, node):
    pub = NodePublisher(api, node, backoff=FAST)
    pub.publish(LABELS)
    assert pub.publish({ZEN4: "192"}) is True
    labels, annotations = metadata(api, node)
    assert labels == {**FOREIGN, ZEN4: "192"}
    assert annotations[OWNED_LABELS_ANNOTATION] == ZEN4


def test_our_prefix_written_by_someone_else_is_left_alone(api, node):
    other = accelerator_label_key("MI325X")
    client.CoreV1Api(api).patch_node(
        node, {"metadata": {"labels": {other: "4"}}}, _content_type=MERGE_PATCH
    )
    pub = NodePublisher(api, node, backoff=FAST)
    pub.publish(LABELS)
    pub.publish({})
    labels, _ = metadata(api, node)
    assert labels == {**FOREIGN, other: "4"}


def test_changed_value_is_patched(api, node):
    pub = NodePublisher(api, node, backoff=FAST)
    pub.publish(LABELS)
    assert pub.publish({**LABELS, MI300X: "7"}) is True
    assert metadata(api, node)[0][MI300X] == "7"


def test_a_restarted_agent_reads_what_the_previous_run_wrote(api, node):
    NodePublisher(api, node, backoff=FAST).publish(LABELS)
    assert NodePublisher(api, node, backoff=FAST).read() == LABELS


def test_cleanup_removes_only_ours_and_the_annotation(kube, api, node):
    pub = NodePublisher(api, node, backoff=FAST)
    pub.publish(LABELS)
    assert pub.cleanup() is True
    labels, annotations = metadata(api, node)
    assert labels == FOREIGN
    assert OWNED_LABELS_ANNOTATION not in annotations
    assert annotations["team"] == "infra"
    assert pub.cleanup() is False


@pytest.mark.parametrize(("code", "retry_after"), [(500, None), (503, None), (429, 0), (429, None)])
def test_server_errors_and_throttling_are_retried(kube, api, node, code, retry_after):
    srv = kube.require_server()
    pub = NodePublisher(api, node, backoff=FAST)
    srv.faults.fail_next(2, code=code, retry_after=retry_after, verb="patch")
    assert pub.publish(LABELS) is True
    assert metadata(api, node)[0] == {**FOREIGN, **LABELS}
    assert patches(kube, node, expect=3) == 3


def test_dropped_connections_are_retried(kube, api, node):
    srv = kube.require_server()
    srv.faults.fail_next(1, drop_connection=True, verb="get")
    srv.faults.fail_next(1, drop_connection=True, verb="patch")
    assert NodePublisher(api, node, backoff=FAST).publish(LABELS) is True
    assert metadata(api, node)[0] == {**FOREIGN, **LABELS}


def test_retries_give_up_with_a_clear_error(kube, api, node):
    srv = kube.require_server()
    srv.faults.fail_next(10, code=500, verb="patch")
    with pytest.raises(PublishError, match="HTTP 500"):
        NodePublisher(api, node, backoff=FAST).publish(LABELS)
    assert patches(kube, node, expect=FAST.attempts) == FAST.attempts
    assert metadata(api, node)[0] == FOREIGN


def test_client_errors_are_not_retried(kube, api):
    kube.require_server()
    missing = kube.unique("no-such-node")
    with pytest.raises(PublishError, match=r"HTTP 404.*NODE_NAME"):
        NodePublisher(api, missing, backoff=FAST).publish(LABELS)
    assert recorded(kube, "get", missing, expect=1) == 1
