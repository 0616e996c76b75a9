"""What the readers yield and raise, and the limits they hold hostile input to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Deepest nesting of mappings and sequences accepted. A Node is about 8 levels deep and a
#: profile 6; the code that later walks an object (validation, the YAML and JSON writers)
#: recurses, so a document 50,000 brackets deep must stop here.
MAX_DEPTH = 100
#: Nodes that aliases may add to one YAML document once expanded. A "billion laughs" document
#: is a few hundred bytes that expand to billions of nodes when written out as JSON.
MAX_ALIAS_NODES = 100_000
#: Largest single JSON value the reader buffers (one item of a List, or one document).
MAX_JSON_VALUE = 64 * 2**20


class StreamError(Exception):
    """The stream cannot be read past this point (the entries before it stand)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


class DocumentError(StreamError):
    """One object is unusable; the objects after it are still read."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One object of a stream, or the reason it could not be read."""

    document: int
    """1-based number of the YAML document (or top-level JSON value) it comes from."""
    item: int | None
    """Its index in the document's ``items``; None for a whole document."""
    obj: Any = None
    error: DocumentError | None = None


def not_a_list(kind: object) -> DocumentError:
    return DocumentError(f"kind: expected a List (the document has items), got {kind!r}")
