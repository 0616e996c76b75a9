"""A Helm chart's ``values.schema.json``, generated from its annotated ``values.yaml``.

The annotations are comments (as in helm-docs, and the schema plugin NFD uses):

* the comment lines directly above a key (no blank line between) describe it; a leading
  ``-- `` is dropped;
* a ``# @schema {...}`` line among them holds JSON-schema keywords, merged over what the
  default value implies.

What a default implies: its JSON type (an integer default means ``integer``, a float
``number``), and for a mapping an ``object`` with exactly its keys (``additionalProperties:
false``, so that a misspelt value is an error instead of a silent default; every key with a
non-null default ``required``, so that ``--set key=null``, which deletes the key, is refused),
each key's schema built the same way. An annotation that sets ``additionalProperties`` makes a
free-form map instead: its default's keys are not listed. A default of ``null`` or an empty
list says nothing about its type or items, so it must carry an annotation that does.

Only block-style mappings are read for comments, which is how the chart's values.yaml is
written; a comment that cannot be placed (inside a list, or above nothing) is an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DIALECT = "https://json-schema.org/draft-07/schema#"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/\"']+):(?:\s|$)")
_COMMENT = re.compile(r"^(?P<indent> *)#(?P<text>.*)$")


class AnnotationError(ValueError):
    """A values.yaml annotation that is malformed or cannot be attached to a key."""


@dataclass
class Note:
    description: list[str] = field(default_factory=list)
    schema: dict[str, Any] = field(default_factory=dict)


def key_notes(text: str) -> dict[tuple[str, ...], Note]:
    """The annotation of each key, by its path of mapping keys."""
    notes: dict[tuple[str, ...], Note] = {}
    pending: list[tuple[int, str]] = []  # (line number, comment text) directly above
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    in_list: int | None = None  # indent of the "- " items being skipped
    in_scalar: int | None = None  # indent of the key whose block scalar is being skipped
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if in_scalar is not None and (not stripped or indent > in_scalar):
            continue
        in_scalar = None
        if not stripped:
            pending = []
            continue
        comment = _COMMENT.match(line)
        if comment:
            pending.append((number, comment.group("text")))
            continue
        if in_list is not None and (
            indent > in_list or (indent == in_list and stripped.startswith("- "))
        ):
            _reject_schema(pending, "inside a list")
            pending = []
            continue
        in_list = None
        if stripped.startswith("- "):
            _reject_schema(pending, "inside a list")
            in_list = indent
            pending = []
            continue
        match = _KEY.match(line)
        if not match:
            _reject_schema(pending, "above a line that is not a key")
            pending = []
            continue
        key = match.group("key").strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(k for _, k in stack), key)
        notes[path] = _note(pending)
        pending = []
        stack.append((indent, key))
        if line[match.end() :].strip() in ("|", ">", "|-", ">-", "|+", ">+"):
            in_scalar = indent
    _reject_schema(pending, "at the end of the file")
    return notes


def _reject_schema(pending: list[tuple[int, str]], where: str) -> None:
    for number, text in pending:
        if text.strip().startswith("@schema"):
            raise AnnotationError(f"line {number}: @schema {where} attaches to no key")


def _note(lines: list[tuple[int, str]]) -> Note:
    note = Note()
    for number, raw in lines:
        text = raw.strip()
        if text.startswith("@schema"):
            try:
                extra = json.loads(text[len("@schema") :])
            except json.JSONDecodeError as exc:
                raise AnnotationError(f"line {number}: @schema is not JSON: {exc}") from exc
            if not isinstance(extra, dict):
                raise AnnotationError(f"line {number}: @schema must be a JSON object")
            note.schema.update(extra)
        else:
            note.description.append(text[3:] if text.startswith("-- ") else text)
    return note


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def _schema(value: Any, path: tuple[str, ...], notes: dict[tuple[str, ...], Note]) -> Any:
    note = notes.get(path, Note())
    where = ".".join(path) or "(root)"
    node: dict[str, Any] = {}
    if note.description:
        node["description"] = " ".join(note.description)
    kind = _json_type(value)
    if kind is None and "type" not in note.schema:
        raise AnnotationError(f"{where}: a null default needs an @schema annotation with a type")
    if kind is not None:
        node["type"] = kind
    if isinstance(value, dict) and "additionalProperties" not in note.schema:
        node["properties"] = {str(k): _schema(v, (*path, str(k)), notes) for k, v in value.items()}
        node["additionalProperties"] = False
        # `--set key=null` deletes a key before Helm validates: a key with a default is required
        # so that this fails here, not as a broken manifest.
        required = [str(k) for k, v in value.items() if v is not None]
        if required:
            node["required"] = required
    if isinstance(value, list) and "items" not in note.schema:
        if not value:
            raise AnnotationError(f"{where}: an empty list needs an @schema annotation with items")
        item_types = {_json_type(v) for v in value}
        if len(item_types) != 1:
            raise AnnotationError(f"{where}: items of several types need an @schema annotation")
        node["items"] = {"type": item_types.pop()}
    node.update(note.schema)
    return node


def generate(values_file: Path) -> dict[str, Any]:
    """The JSON schema of a values.yaml."""
    text = values_file.read_text()
    values = yaml.safe_load(text) or {}
    schema = _schema(values, (), key_notes(text))
    described = {k: v for k, v in schema.items() if k not in ("description",)}
    return {"$schema": SCHEMA_DIALECT, "title": "Values of the Helm chart", **described}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"
