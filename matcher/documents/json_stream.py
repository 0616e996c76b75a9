"""Top-level JSON values from a text stream, a List's ``items`` decoded one item at a time.

Only the top level (the outer object, its keys, the ``items`` brackets and commas) is scanned
here. Every value, an item included, is decoded by the json module's C decoder (``raw_decode``)
from a buffer that is refilled when a value runs past its end; the buffer grows geometrically
for a value larger than a chunk, so the retries cost O(n) in all. Memory holds one chunk plus
one value, not the List.

Why not a streaming library: ijson's C backend streams ``items.item`` (1.14 s of CPU for
5,000 realistic nodes, against 0.8 s here without the strict checks and 1.2 s with them) but
cannot also hand back a single Node, or a List's other fields, from the same pass, and stdin
cannot be read twice; routing its token events in Python to do both costs more than the
decoding.

When ``strict``: duplicate keys are refused (the json module keeps the last one silently), and
so is nesting past ``MAX_DEPTH`` (one walk over each value). Without it the json module's own
recursion guard (about 1,000 levels) still holds. ``NaN`` and ``Infinity``, which are not JSON,
are refused either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from matcher.documents.base import (
    MAX_DEPTH,
    MAX_JSON_VALUE,
    DocumentError,
    Entry,
    StreamError,
    not_a_list,
)

SPACE = " \t\r\n"


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return data


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_constant=_not_json)
#: Finds where a value with a duplicate key ends, to go on after it.
_LENIENT = json.JSONDecoder(parse_constant=_not_json)


def documents(stream: Any, counter: list[int], strict: bool = True) -> Iterator[Entry]:
    """The entries of a JSON stream; ``counter[0]`` counts the top-level values started."""
    reader = _Reader(stream, strict)
    while reader.peek():
        counter[0] += 1
        yield from reader.document(counter[0])


class _Reader:
    CHUNK = 1 << 20

    def __init__(self, stream: Any, strict: bool) -> None:
        self.stream = stream
        self.strict = strict
        self.decoder = _DECODER if strict else _LENIENT
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1
        """The line number of ``buf[0]``."""

    def line(self) -> int:
        return self.line_base + self.buf.count("\n", 0, self.pos)

    def _fill(self, at_least: int = 0) -> bool:
        """Read more; what is before ``pos`` is dropped. False at the end of the stream."""
        if self.eof:
            return False
        if self.pos:
            self.line_base = self.line()
            self.buf = self.buf[self.pos :]
            self.pos = 0
        try:
            chunk = self.stream.read(max(self.CHUNK, at_least))
        except UnicodeDecodeError as exc:
            raise StreamError(f"cannot read: {exc}", self.line()) from None
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def peek(self) -> str:
        """The next character that is not white space (not consumed); "" at the end."""
        while True:
            buf, pos = self.buf, self.pos
            while pos < len(buf) and buf[pos] in SPACE:
                pos += 1
            self.pos = pos
            if pos < len(buf):
                return buf[pos]
            if not self._fill():
                return ""

    def _take(self, char: str, where: str) -> None:
        found = self.peek()
        if found != char:
            what = repr(found) if found else "the end of the input"
            raise StreamError(f"invalid JSON: expected {char!r} {where}, got {what}", self.line())
        self.pos += 1

    def value(self) -> Any:
        """The next value. A duplicate key raises DocumentError once past the value."""
        try:
            return self._decode(self.decoder)
        except _DuplicateKey as exc:
            start = self.line()
            self._decode(_LENIENT)
            raise DocumentError(
                f"duplicate key {exc.key!r} in the object from line {start}"
            ) from None

    def _decode(self, decoder: json.JSONDecoder) -> Any:
        self.peek()
        while True:
            try:
                obj, end = decoder.raw_decode(self.buf, self.pos)
            except _DuplicateKey:
                raise
            except json.JSONDecodeError as exc:
                if self.eof or _wrong_not_short(exc):
                    raise StreamError(
                        f"invalid JSON: {exc.msg}", self.line_base + exc.lineno - 1
                    ) from None
            except ValueError as exc:  # NaN or Infinity
                raise StreamError(f"invalid JSON: {exc}", self.line()) from None
            except RecursionError:
                raise StreamError(
                    f"nesting deeper than {MAX_DEPTH} levels: refused", self.line()
                ) from None
            else:
                # A number that ends the buffer may go on in the next chunk: read on first.
                if end < len(self.buf) or self.eof:
                    if self.strict and isinstance(obj, dict | list):
                        _check_depth(obj, self.line)
                    self.pos = end
                    return obj
            if len(self.buf) - self.pos > MAX_JSON_VALUE:
                raise StreamError(
                    f"a single JSON value larger than {MAX_JSON_VALUE // 2**20} MiB: refused",
                    self.line(),
                )
            # Cut short (or wrong: the retry with the rest of it will say where).
            self._fill(at_least=len(self.buf) - self.pos)

    def document(self, number: int) -> Iterator[Entry]:
        if self.peek() != "{":
            try:
                yield Entry(number, None, self.value())
            except DocumentError as exc:
                yield Entry(number, None, error=exc)
            return
        self.pos += 1
        top: dict[str, Any] = {}
        streamed = False
        error: DocumentError | None = None
        fields = 0
        while self.peek() != "}":
            if fields:
                self._take(",", "between fields")
            fields += 1
            key_line = self.line()
            if self.peek() != '"':
                raise StreamError("invalid JSON: expected a key", key_line)
            key = self.value()
            self._take(":", "after a key")
            if key in top and self.strict:
                error = error or DocumentError(f"duplicate key {key!r}", key_line)
                self._decode(_LENIENT)
            elif key == "items" and self.peek() == "[":
                self.pos += 1
                yield from self._items(number)
                top[key] = []
                streamed = True
            else:
                try:
                    top[key] = self.value()
                except DocumentError as exc:
                    error = error or exc
        self.pos += 1
        if error is not None:
            yield Entry(number, None, error=error)
        elif not streamed:
            yield Entry(number, None, top)
        elif not (isinstance(top.get("kind"), str) and top["kind"].endswith("List")):
            yield Entry(number, None, error=not_a_list(top.get("kind")))

    def _items(self, number: int) -> Iterator[Entry]:
        index = 0
        while self.peek() != "]":
            if index:
                self._take(",", "between items")
            try:
                yield Entry(number, index, self.value())
            except DocumentError as exc:
                yield Entry(number, index, error=exc)
            index += 1
        self.pos += 1


def _wrong_not_short(exc: json.JSONDecodeError) -> bool:
    """Whether more text cannot help: the decoder stopped well before the end of the buffer
    (an unterminated string is reported where it starts, so it may just be cut short)."""
    return exc.pos + 16 < len(exc.doc) and not exc.msg.startswith("Unterminated string")


def _check_depth(obj: Any, line: Callable[[], int]) -> None:
    """Refuse a value nested deeper than ``MAX_DEPTH`` (breadth first, no recursion)."""
    level: list[Any] = [obj]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise StreamError(f"nesting deeper than {MAX_DEPTH} levels: refused", line())
        following: list[Any] = []
        for value in level:
            children = value.values() if isinstance(value, dict) else value
            following.extend(c for c in children if isinstance(c, dict | list))
        level = following
        depth += 1
