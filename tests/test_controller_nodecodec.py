"""The node decoder reads only what the index keeps, and agrees with json.loads + node_view."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.realistic import realistic_nodes
from detector.labels import OWNED_LABELS_ANNOTATION
from matcher.controller.informer import JsonCodec
from matcher.controller.nodecodec import NodeCodec
from matcher.core.nodes import AllocatableMissing, NodeView, node_view
from tests.controller_support import MI300X, node_obj

JSON: JsonCodec[NodeView] = JsonCodec(node_view)


def _list(items: list[dict[str, Any]], cont: str = "") -> bytes:
    meta: dict[str, Any] = {"resourceVersion": "4711"}
    if cont:
        meta["continue"] = cont
    doc = {"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": items}
    return json.dumps(doc, separators=(",", ":")).encode()


def test_realistic_nodes_decode_as_json_loads_and_node_view_do():
    nodes = list(realistic_nodes(60, seed=3))  # GPU and CPU nodes of 6-14 KB
    raw = _list(nodes, cont="abc")
    fast, slow = NodeCodec().page(raw), JSON.page(raw)
    assert fast == slow
    assert (fast.resource_version, fast.continue_token) == ("4711", "abc")
    assert any(view.labels for _, view in fast.items if isinstance(view, NodeView))
    assert all(view.detector_ran for _, view in fast.items if isinstance(view, NodeView))
    for node in nodes[:5]:
        line = json.dumps({"type": "MODIFIED", "object": node}).encode()
        assert NodeCodec().event(line) == JSON.event(line)


def test_the_detector_mark_is_read_alone_among_the_annotations():
    """The detector's annotation, listing labels or empty (it ran and found nothing), sets
    detector_ran; other annotations, or none, do not. Both decoders agree on each."""
    other = {"node.alpha.kubernetes.io/ttl": "0", "nfd.node.kubernetes.io/feature-labels": "x"}
    cases = {
        "listing": {**other, OWNED_LABELS_ANNOTATION: MI300X},
        "empty": {**other, OWNED_LABELS_ANNOTATION: ""},
        "alone": {OWNED_LABELS_ANNOTATION: ""},
        "others": other,
        "none": None,
    }
    nodes = []
    for name, marks in cases.items():
        node = node_obj(name)
        if marks is not None:
            node["metadata"]["annotations"] = marks
        nodes.append(node)
    raw = _list(nodes)
    fast, slow = NodeCodec().page(raw), JSON.page(raw)
    assert fast == slow
    ran = {name: view.detector_ran for name, view in fast.items if isinstance(view, NodeView)}
    assert ran == {"listing": True, "empty": True, "alone": True, "others": False, "none": False}
    for node in nodes:
        line = json.dumps({"type": "MODIFIED", "object": node}).encode()
        assert NodeCodec().event(line) == JSON.event(line)


def test_an_unreadable_node_is_reported_alone_and_odd_types_fall_back():
    registering = node_obj("new", {MI300X: "8"})
    del registering["status"]["allocatable"]
    odd = node_obj("odd", {MI300X: "8"})
    odd["metadata"]["labels"]["count"] = 8  # not a string: only a lax server stores that
    page = NodeCodec().page(_list([node_obj("ok", {MI300X: "8"}), registering]))
    ok, missing = (value for _, value in page.items)
    assert isinstance(ok, NodeView)
    assert isinstance(missing, AllocatableMissing)
    assert NodeCodec().page(_list([odd])) == JSON.page(_list([odd]))


@pytest.mark.parametrize(
    "event",
    [
        {"type": "BOOKMARK", "object": {"kind": "Node", "metadata": {"resourceVersion": "9"}}},
        {"type": "ERROR", "object": {"kind": "Status", "status": "Failure", "code": 410}},
        {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "boom"}},
        {"type": "DELETED", "object": node_obj("gone", {MI300X: "8"})},
    ],
)
def test_bookmarks_errors_and_deletes_decode_as_json_does(event):
    line = json.dumps(event).encode()
    assert NodeCodec().event(line) == JSON.event(line)
