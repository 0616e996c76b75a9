"""Kubernetes objects from YAML or JSON text, one at a time, safe against hostile input.

``read_objects(stream)`` yields each object of a text stream as an :class:`Entry`. Each YAML
document (or top-level JSON value) is one object, except that a document with an ``items``
sequence, a v1 List as ``kubectl get ... -o yaml|json`` writes it, yields its items one by one
and never holds the whole list: memory is one item plus what the caller keeps. Kubernetes'
own test for a list is the same (a list is what has ``items``); such a document whose ``kind``
does not end in ``List`` gets an error entry after its items.

The format is told by the first character: ``{`` or ``[`` starts JSON (what ``kubectl -o
json`` writes), anything else YAML. See ``yaml_stream`` and ``json_stream`` for what each
refuses that ``yaml.safe_load`` / ``json.load`` would take (repeated keys, alias bombs, deep
nesting, non-JSON tags and constants) and for the limits in ``base``.

A problem confined to one object is an entry with ``error`` set, and reading goes on; one that
stops the parser (a syntax error, nesting too deep, bytes that are not UTF-8) raises
:class:`StreamError` after the entries read before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TextIO

from matcher.documents import json_stream, yaml_stream
from matcher.documents.base import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_JSON_VALUE,
    DocumentError,
    Entry,
    StreamError,
)

__all__ = [
    "HAVE_LIBYAML",
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_JSON_VALUE",
    "DocumentError",
    "Entry",
    "Objects",
    "StreamError",
    "read_objects",
]

HAVE_LIBYAML = yaml_stream.LOADER.__name__ == "CSafeLoader"


class Objects:
    """The entries of one stream; ``documents`` counts the documents seen so far."""

    def __init__(self, stream: TextIO, strict: bool = True) -> None:
        self._stream = _Peekable(stream)
        self._strict = strict
        self._counter = [0]
        self.format = "json" if self._stream.first_char() in ("{", "[") else "yaml"

    @property
    def documents(self) -> int:
        return self._counter[0]

    def __iter__(self) -> Iterator[Entry]:
        if self.format == "json":
            return json_stream.documents(self._stream, self._counter, self._strict)
        return yaml_stream.documents(self._stream, self._counter)


def read_objects(stream: TextIO, strict: bool = True) -> Objects:
    """``strict=False`` spares JSON the duplicate-key check and the depth walk, which together
    double its decoding time, for machine-written input read only at fixed shallow paths (a
    node list from the API server, projected by ``node_view``); duplicate keys then keep their
    last value, as ``json.load`` does. YAML is always strict: there it costs nothing."""
    return Objects(stream, strict)


class _Peekable:
    """A text stream whose first characters can be looked at before a parser reads it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._head = ""

    def first_char(self) -> str:
        while True:
            chunk = self._stream.read(4096)
            self._head += chunk
            text = self._head.lstrip("\ufeff" + json_stream.SPACE)
            if text or not chunk:
                return text[:1]

    def read(self, size: int = -1) -> Any:
        if not self._head:
            return self._stream.read(size)
        if size < 0:
            head, self._head = self._head, ""
            return head + self._stream.read()
        head, self._head = self._head[:size], self._head[size:]
        return head
