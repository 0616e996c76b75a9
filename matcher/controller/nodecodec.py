"""Node lists and watch events decoded straight into NodeViews, reading only what they keep.

A GPU node is 10-14 KB of JSON (images, managedFields, NFD's labels and annotations,
nodeInfo); the matcher keeps its name, our labels, allocatable, cordon, readiness and whether
the detector's annotation is there. msgspec decodes the fields declared below into small typed
structs and skips everything else in C, without building the dicts and lists ``json.loads``
would make for them: 0.27 s instead of 1.15 s for a list of 5,000 realistic nodes
(benchmarks/bench_controller.py prints both), and a fraction of the transient memory.

Anything that does not fit these types (a watch ERROR event, whose object is a Status; a node
with a value of an unexpected type, which only a test server would store) is decoded again by
``json`` and ``node_view``, so an odd object is logged and skipped exactly as before, never
taking the rest of its page with it.
"""

from __future__ import annotations

import msgspec

from detector.labels import OWNED_LABELS_ANNOTATION
from matcher.controller.informer import JsonCodec, Page, WatchEvent
from matcher.core.nodes import NodeView, node_view, node_view_of


class _Annotations(msgspec.Struct):
    """Only the detector's mark: the other annotations (often the bulk of a Node's metadata)
    are skipped unread."""

    detector: str | None = msgspec.field(default=None, name=OWNED_LABELS_ANNOTATION)


class _Meta(msgspec.Struct):
    name: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] | None = None
    annotations: _Annotations | None = None


class _Condition(msgspec.Struct):
    type: str = ""
    status: str = ""


class _Spec(msgspec.Struct):
    unschedulable: bool | None = None


class _Status(msgspec.Struct):
    allocatable: dict[str, str] | None = None
    conditions: list[_Condition] | None = None


class _Node(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    spec: _Spec = msgspec.field(default_factory=_Spec)
    status: _Status = msgspec.field(default_factory=_Status)


class _ListMeta(msgspec.Struct):
    resourceVersion: str = ""
    continue_: str = msgspec.field(default="", name="continue")


class _NodeList(msgspec.Struct):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[_Node] = msgspec.field(default_factory=list)


class _Event(msgspec.Struct):
    type: str = ""
    object: _Node = msgspec.field(default_factory=_Node)


_LIST = msgspec.json.Decoder(_NodeList)
_EVENT = msgspec.json.Decoder(_Event)


def _view(node: _Node) -> NodeView | ValueError:
    meta, status = node.metadata, node.status
    if not meta.name:
        return ValueError("metadata.name: required")
    try:
        return node_view_of(
            meta.name,
            meta.labels or {},
            unschedulable=node.spec.unschedulable is True,
            allocatable=status.allocatable,
            ready=any(c.type == "Ready" and c.status == "True" for c in status.conditions or ()),
            detector_ran=meta.annotations is not None and meta.annotations.detector is not None,
        )
    except ValueError as exc:
        return exc


class NodeCodec:
    """The node informer's ``Codec``."""

    def __init__(self) -> None:
        self._fallback: JsonCodec[NodeView] = JsonCodec(node_view)

    def page(self, raw: bytes) -> Page[NodeView]:
        try:
            doc = _LIST.decode(raw)
        except msgspec.ValidationError:
            return self._fallback.page(raw)
        items = [(node.metadata.name, _view(node)) for node in doc.items]
        meta = doc.metadata
        return Page(items, meta.resourceVersion, meta.continue_ or None)

    def event(self, raw: bytes) -> WatchEvent[NodeView]:
        try:
            event = _EVENT.decode(raw)
        except msgspec.ValidationError:
            return self._fallback.event(raw)
        node = event.object
        rv = node.metadata.resourceVersion
        if event.type in ("BOOKMARK", "ERROR"):
            if event.type == "ERROR":  # a Status that happened to fit: decode it as one
                return self._fallback.event(raw)
            return WatchEvent(event.type, "", rv)
        return WatchEvent(event.type, node.metadata.name, rv, _view(node))
