"""YAML documents as Python objects, built from the parser's events one item at a time.

PyYAML composes a whole document into a node graph before building any object, so a 5,000-node
``kubectl get nodes -o yaml`` costs ~1.4 GB and, with the C parser, about a minute. Here the
objects are built straight from the events (libyaml's when PyYAML has it), iteratively, so a
List's items come out one at a time and memory holds one item. The objects are what
``yaml.safe_load`` builds: the same implicit scalar types (PyYAML's own resolvers and
constructors), anchors and aliases as shared objects, ``<<`` merge keys. Differences: a merge
list's earlier mappings win, as the merge spec and Kubernetes' go-yaml have it (``_merged``);
and, each refused with a line number: a key repeated in a mapping (``<<`` included), alias
expansion past ``MAX_ALIAS_NODES``, an alias into the node that contains it (a cycle), nesting
past ``MAX_DEPTH``, and the tags ``!!set``, ``!!omap``, ``!!pairs`` or unknown ones (a
Kubernetes object is JSON).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode

from matcher.documents.base import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    DocumentError,
    Entry,
    StreamError,
    not_a_list,
)

#: libyaml's parser when PyYAML was built with it (the PyPI wheels are): ~10x the Python one.
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
_MERGE_TAG, _VALUE_TAG = _TAG + "merge", _TAG + "value"
_NOT_JSON = ("omap", "pairs", "set")
#: Plain scalars remembered with what they build to (keys and values repeat across items).
_PLAIN_CACHE = 50_000

_MISS = object()
_MERGE = object()
"""What a ``<<`` key builds to."""


def documents(stream: Any, counter: list[int]) -> Iterator[Entry]:
    """The entries of a YAML stream; ``counter[0]`` counts the documents started."""
    loader: Any = LOADER(stream)
    try:
        builder = _Builder(loader)
        _expect(loader, StreamStartEvent)
        while type(loader.peek_event()) is not StreamEndEvent:
            _expect(loader, DocumentStartEvent)
            counter[0] += 1
            builder.start_document()
            yield from builder.document(counter[0])
            _expect(loader, DocumentEndEvent)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or str(exc)
        raise StreamError(f"invalid YAML: {problem}", _line(mark)) from None
    except yaml.YAMLError as exc:  # the reader's: characters YAML does not allow
        raise StreamError(f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _expect(loader: Any, kind: type) -> None:
    event = loader.get_event()
    if type(event) is not kind:  # pragma: no cover - the parser enforces the grammar
        raise StreamError(f"unexpected {type(event).__name__}", _line(event.start_mark))


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


class _Builder:
    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.constructors = loader.yaml_constructors
        self.resolvers = loader.yaml_implicit_resolvers
        self.plain: dict[str, Any] = {}
        self.anchors: dict[str, Any] = {}
        self.open_anchors: set[str] = set()
        self.sizes: dict[int, tuple[Any, int]] = {}
        """Nodes in an aliased object (aliases expanded), by ``id``; the object is kept with its
        size so that its ``id`` cannot be reused by another while the document lasts."""
        self.alias_nodes = 0
        self.failed_depth = 0
        """Levels a failed ``build`` left open, for ``skip``."""

    def start_document(self) -> None:
        self.anchors.clear()
        self.open_anchors.clear()
        self.sizes.clear()
        self.alias_nodes = 0

    def document(self, number: int) -> Iterator[Entry]:
        event = self.loader.peek_event()
        if type(event) is MappingStartEvent and event.anchor is None and event.tag in (None, "!"):
            yield from self._top_mapping(number)
            return
        try:
            yield Entry(number, None, self.build())
        except DocumentError as exc:
            self.skip()
            yield Entry(number, None, error=exc)

    def _top_mapping(self, number: int) -> Iterator[Entry]:
        """A top-level mapping, its ``items`` sequence (if any) yielded item by item."""
        loader = self.loader
        loader.get_event()
        data: dict[Any, Any] = {}
        merges: list[Any] | None = None
        streamed = False
        try:
            while type(loader.peek_event()) is not MappingEndEvent:
                key_event = loader.peek_event()
                key = _key(data, self.build(depth=1, as_key=True), key_event)
                event = loader.peek_event()
                if (
                    key == "items"
                    and type(event) is SequenceStartEvent
                    and event.anchor is None
                    and event.tag in (None, "!")
                ):
                    loader.get_event()
                    yield from self._items(number)
                    data[key] = []
                    streamed = True
                elif key is _MERGE:
                    merges = _merge(merges, self.build(depth=1), key_event)
                else:
                    data[key] = self.build(depth=1)
        except DocumentError as exc:
            # In the document's own fields, not in an item: skip to its end, tell once.
            self.failed_depth += 1
            self.skip()
            yield Entry(number, None, error=exc)
            return
        loader.get_event()
        obj = _merged(merges, data) if merges is not None else data
        if not streamed:
            yield Entry(number, None, obj)
        elif not (isinstance(obj.get("kind"), str) and obj["kind"].endswith("List")):
            yield Entry(number, None, error=not_a_list(obj.get("kind")))

    def _items(self, number: int) -> Iterator[Entry]:
        loader = self.loader
        index = 0
        while type(loader.peek_event()) is not SequenceEndEvent:
            try:
                yield Entry(number, index, self.build(depth=2))
            except DocumentError as exc:
                self.skip()
                yield Entry(number, index, error=exc)
            index += 1
        loader.get_event()

    def skip(self) -> None:
        """Read past the rest of what failed (the levels it left open)."""
        depth, self.failed_depth = self.failed_depth, 0
        get_event = self.loader.get_event
        while depth > 0:
            kind = type(get_event())
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                depth += 1
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                depth -= 1

    def build(self, depth: int = 0, as_key: bool = False) -> Any:
        """The next complete node; ``depth`` is how deep it sits (for the nesting limit), and
        ``as_key`` says it is a mapping key (where ``<<`` means a merge).

        The hot loop of reading YAML (one turn per event, millions per cluster): the container
        being built lives in locals, its enclosing ones on ``stack``.
        """
        get_event = self.loader.get_event
        plain = self.plain
        stack: list[tuple[Any, bool, Any, Any, str | None, list[Any] | None]] = []
        data: Any = None
        """The mapping or sequence being built; None until one is open."""
        is_map = False
        key: Any = _MISS
        key_event: Any = None
        anchor: str | None = None
        merges: list[Any] | None = None
        try:
            while True:
                event = get_event()
                kind = type(event)
                if kind is ScalarEvent:
                    tag = event.tag
                    if tag is not None and tag != "!":
                        value = self._tagged(event)
                    elif event.implicit[0]:
                        value = plain.get(event.value, _MISS)
                        if value is _MISS:
                            value = self._plain(event)
                            if value is _MERGE and not (
                                (as_key and data is None) or (is_map and key is _MISS)
                            ):
                                value = "<<"  # not a key: a string, as go-yaml reads it
                    else:
                        value = event.value
                    if event.anchor is not None:
                        self.anchors[event.anchor] = value
                elif kind is MappingStartEvent or kind is SequenceStartEvent:
                    if data is not None:
                        stack.append((data, is_map, key, key_event, anchor, merges))
                    is_map = kind is MappingStartEvent
                    data = {} if is_map else []
                    key = _MISS
                    anchor = event.anchor
                    merges = None
                    tag = event.tag
                    if tag is not None and tag not in ("!", _MAP if is_map else _SEQ):
                        raise _unsupported(tag, event)
                    if len(stack) + 1 + depth > MAX_DEPTH:
                        raise StreamError(
                            f"nesting deeper than {MAX_DEPTH} levels: refused",
                            _line(event.start_mark),
                        )
                    if anchor is not None:
                        self.open_anchors.add(anchor)
                    continue
                elif kind is MappingEndEvent or kind is SequenceEndEvent:
                    value = data if merges is None else _merged(merges, data)
                    if anchor is not None:
                        self.open_anchors.discard(anchor)
                        self.anchors[anchor] = value
                    if not stack:
                        return value
                    data, is_map, key, key_event, anchor, merges = stack.pop()
                elif kind is AliasEvent:
                    value = self._alias(event)
                else:  # pragma: no cover - the parser enforces the grammar
                    raise StreamError(f"unexpected {kind.__name__}", _line(event.start_mark))
                if data is None:
                    return value
                if not is_map:
                    data.append(value)
                elif key is _MISS:
                    key = (
                        value
                        if type(value) is str and value not in data
                        else _key(data, value, event)
                    )
                    key_event = event
                elif key is _MERGE:
                    merges = _merge(merges, value, key_event)
                    key = _MISS
                else:
                    data[key] = value
                    key = _MISS
        except DocumentError:
            self.failed_depth = len(stack) + (data is not None)
            raise

    def _alias(self, event: Any) -> Any:
        name = event.anchor
        line = _line(event.start_mark)
        if name in self.open_anchors:
            raise DocumentError(f"alias *{name} points into the node that contains it", line)
        if name not in self.anchors:
            raise DocumentError(f"alias *{name} has no anchor &{name} before it", line)
        value = self.anchors[name]
        self.alias_nodes += self._size(value)
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise DocumentError(
                f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes in this document: "
                "refused (an alias bomb?)",
                line,
            )
        return value

    def _size(self, value: Any) -> int:
        """Nodes in ``value`` with aliases expanded (shared parts counted once per use, each
        computed once: a bomb's levels are shared, so this stays cheap)."""
        if not isinstance(value, dict | list):
            return 1
        known = self.sizes.get(id(value))
        if known is not None:
            return known[1]
        # Recursion is bounded: nesting stops at MAX_DEPTH.
        children = value.values() if isinstance(value, dict) else value
        size = 1 + len(value) * isinstance(value, dict) + sum(map(self._size, children))
        self.sizes[id(value)] = (value, size)
        return size

    def _plain(self, event: Any) -> Any:
        """An untagged, unquoted scalar, typed by PyYAML's implicit resolvers."""
        text = event.value
        for tag, regexp in self.resolvers.get(text[:1], ()):
            if regexp.match(text):
                if tag == _MERGE_TAG:
                    return _MERGE  # not remembered: what it means depends on where it is
                # A lone "=" (the value tag): PyYAML reads it as a string key.
                value = text if tag == _VALUE_TAG else self._construct(tag, event)
                break
        else:
            value = text
        if len(self.plain) < _PLAIN_CACHE:
            self.plain[text] = value
        return value

    def _tagged(self, event: Any) -> Any:
        tag = event.tag
        if tag == _STR:
            return event.value
        return self._construct(tag, event)

    def _construct(self, tag: str, event: Any) -> Any:
        construct = self.constructors.get(tag)
        if construct is None or tag in (_MAP, _SEQ) or tag.endswith(_NOT_JSON):
            raise _unsupported(tag, event)
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return construct(self.loader, node)
        except (yaml.YAMLError, ValueError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise DocumentError(f"{_short(tag)}: {problem}", _line(event.start_mark)) from None


def _key(data: dict[Any, Any], key: Any, event: Any) -> Any:
    """``key`` if it can be the next key of ``data``: hashable, and not there already."""
    if type(key) is not str and key is not _MERGE:
        try:
            hash(key)
        except TypeError:
            raise DocumentError("a mapping key must be a scalar", _line(event.start_mark)) from None
    if key in data:
        raise DocumentError(f"duplicate key {key!r}", _line(event.start_mark))
    return key


def _merge(merges: list[Any] | None, value: Any, key_event: Any) -> list[Any]:
    """The mappings a ``<<`` key merges."""
    if merges is not None:
        raise DocumentError("duplicate key '<<'", _line(key_event.start_mark))
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise DocumentError(
        "<<: expected a mapping or a list of mappings to merge", _line(key_event.start_mark)
    )


def _merged(merges: list[Any], data: dict[Any, Any]) -> dict[Any, Any]:
    """A mapping with its ``<<`` merge: its own keys win, then the earlier mappings of the merge
    list (the YAML merge spec, and Kubernetes' go-yaml; PyYAML 6.0.2+ lets a later one win
    unless the two key strings are one object). Keys in first-seen order, as PyYAML has them."""
    merged: dict[Any, Any] = {}
    for mapping in merges:
        for key, value in mapping.items():
            if key not in merged:
                merged[key] = value
    merged.update(data)
    return merged


def _unsupported(tag: str, event: Any) -> DocumentError:
    return DocumentError(
        f"tag {_short(tag)} is not supported: Kubernetes objects are JSON", _line(event.start_mark)
    )
