"""Node mode against a Kubernetes API over HTTP.

The publisher speaks through ``aimkit.kube``; what it did is read back with the official
``kubernetes`` client. Runs against the project's test API server (the ``kube`` fixture), or a
real cluster through ``AIM_TEST_KUBECONFIG`` for the tests that need no fault injection.
"""

from __future__ import annotations

import socket
import time

import pytest
from kubernetes import client

from aimkit.kube import MERGE_PATCH, connect
from detector.labels import (
    OWNED_LABELS_ANNOTATION,
    accelerator_label_key,
    epyc_id,
    partition_label_key,
)
from detector.publish import PublishError
from detector.publish.node import Backoff, NodePublisher

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
    """The publisher's client (aimkit.kube)."""
    kube_client = connect(kube.kubeconfig)
    yield kube_client
    kube_client.close()


@pytest.fixture
def official(kube):
    """The official client, to read back what the publisher did."""
    return kube.api_client()


@pytest.fixture
def node(kube, official):
    """A Node carrying foreign labels and annotations; deleted afterwards."""
    name = kube.unique("gpu-node")
    body = client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=dict(FOREIGN), annotations={"team": "infra"})
    )
    client.CoreV1Api(official).create_node(body)
    yield name
    client.CoreV1Api(official).delete_node(name)


def metadata(official, name):
    meta = client.CoreV1Api(official).read_node(name).metadata
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


def test_labels_appear_with_the_ownership_annotation_in_one_merge_patch(kube, api, node, official):
    pub = NodePublisher(api, node, backoff=FAST)
    assert pub.publish(LABELS) is True
    labels, annotations = metadata(official, node)
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


def test_stale_owned_labels_go_and_foreign_ones_stay(api, node, official):
    pub = NodePublisher(api, node, backoff=FAST)
    pub.publish(LABELS)
    assert pub.publish({ZEN4: "192"}) is True
    labels, annotations = metadata(official, node)
    assert labels == {**FOREIGN, ZEN4: "192"}
    assert annotations[OWNED_LABELS_ANNOTATION] == ZEN4


def test_our_prefix_written_by_someone_else_is_left_alone(api, node, official):
    other = accelerator_label_key("MI325X")
    client.CoreV1Api(official).patch_node(
        node, {"metadata": {"labels": {other: "4"}}}, _content_type=MERGE_PATCH
    )
    pub = NodePublisher(api, node, backoff=FAST)
    pub.publish(LABELS)
    pub.publish({})
    labels, _ = metadata(official, node)
    assert labels == {**FOREIGN, other: "4"}


def test_changed_value_is_patched(api, node, official):
    pub = NodePublisher(api, node, backoff=FAST)
    pub.publish(LABELS)
    assert pub.publish({**LABELS, MI300X: "7"}) is True
    assert metadata(official, node)[0][MI300X] == "7"


def test_a_restarted_agent_reads_what_the_previous_run_wrote(api, node):
    NodePublisher(api, node, backoff=FAST).publish(LABELS)
    assert NodePublisher(api, node, backoff=FAST).read() == LABELS


def test_finding_nothing_leaves_the_empty_annotation_as_a_mark(api, node, official):
    """Nothing to publish on a fresh Node: the annotation appears, empty (the mark that the
    detector ran), once; labels it wrote before go and the mark stays; cleanup removes it."""
    pub = NodePublisher(api, node, backoff=FAST)
    assert pub.publish({}) is True
    labels, annotations = metadata(official, node)
    assert labels == FOREIGN
    assert annotations == {"team": "infra", OWNED_LABELS_ANNOTATION: ""}
    assert pub.publish({}) is False
    assert pub.read() == {}
    pub.publish(LABELS)
    assert pub.publish({}) is True
    labels, annotations = metadata(official, node)
    assert labels == FOREIGN
    assert annotations[OWNED_LABELS_ANNOTATION] == ""
    assert pub.cleanup() is True
    assert OWNED_LABELS_ANNOTATION not in metadata(official, node)[1]
    assert pub.cleanup() is False


def test_cleanup_removes_only_ours_and_the_annotation(kube, api, node, official):
    pub = NodePublisher(api, node, backoff=FAST)
    pub.publish(LABELS)
    assert pub.cleanup() is True
    labels, annotations = metadata(official, node)
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
    assert metadata(kube.api_client(), node)[0] == {**FOREIGN, **LABELS}
    assert patches(kube, node, expect=3) == 3


def test_dropped_connections_are_retried(kube, api, node, official):
    srv = kube.require_server()
    srv.faults.fail_next(1, drop_connection=True, verb="get")
    srv.faults.fail_next(1, drop_connection=True, verb="patch")
    assert NodePublisher(api, node, backoff=FAST).publish(LABELS) is True
    assert metadata(official, node)[0] == {**FOREIGN, **LABELS}


def test_retries_give_up_with_a_clear_error(kube, api, node, official):
    srv = kube.require_server()
    srv.faults.fail_next(10, code=500, verb="patch")
    with pytest.raises(PublishError, match="HTTP 500"):
        NodePublisher(api, node, backoff=FAST).publish(LABELS)
    assert patches(kube, node, expect=FAST.attempts) == FAST.attempts
    assert metadata(official, node)[0] == FOREIGN


def test_client_errors_are_not_retried(kube, api):
    kube.require_server()
    missing = kube.unique("no-such-node")
    with pytest.raises(PublishError, match=r"HTTP 404.*NODE_NAME"):
        NodePublisher(api, missing, backoff=FAST).publish(LABELS)
    assert recorded(kube, "get", missing, expect=1) == 1


def test_a_dry_run_patch_is_admitted_but_not_stored(kube, api, official, node):
    pub = NodePublisher(api, node, backoff=FAST)
    pub.dry_run_patch(node, {"metadata": {"labels": {"example.com/foreign": "x"}}})
    assert metadata(official, node)[0] == FOREIGN
    if kube.server is not None:
        (sent,) = [r for r in kube.server.requests if r.verb == "patch" and node in r.path]
        assert sent.query.get("dryRun") == "All"
        assert sent.query.get("fieldManager") == "aim-detector"


def test_a_dry_run_patch_of_another_node_names_it(kube, api):
    kube.require_server()
    other = kube.unique("other-node")
    pub = NodePublisher(api, kube.unique("self"), backoff=FAST)
    with pytest.raises(PublishError, match=f"PATCH node {other} \\(dry run\\): HTTP 404"):
        pub.dry_run_patch(other, {"metadata": {"labels": {"x": "1"}}})


def test_an_unreachable_api_is_one_line_and_retried(tmp_path):
    config = tmp_path / "kubeconfig"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: c, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: c}}]\n"
    )
    pub = NodePublisher(connect(config), "gpu-1", backoff=FAST)
    with pytest.raises(PublishError) as err:
        pub.read()
    assert str(err.value) == (
        f"GET node gpu-1: cannot reach http://127.0.0.1:{port}: connection refused"
    )
