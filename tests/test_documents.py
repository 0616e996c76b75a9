"""matcher.documents: objects streamed from YAML and JSON the way yaml.safe_load / json.load
read them, item by item, with hostile input refused."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.realistic import realistic_nodes, realistic_profiles
from matcher.documents import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    DocumentError,
    Entry,
    StreamError,
    json_stream,
    read_objects,
    yaml_stream,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


@pytest.fixture(params=["libyaml", "python"])
def parser(request, monkeypatch):
    """Both YAML parsers: libyaml's (what the wheels ship) and PyYAML's own (the fallback)."""
    if request.param == "libyaml":
        if not yaml.__with_libyaml__:
            pytest.skip("PyYAML without libyaml")
        monkeypatch.setattr(yaml_stream, "LOADER", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(yaml_stream, "LOADER", yaml.SafeLoader)
    return request.param


def entries(text: str, **kwargs) -> list[Entry]:
    return list(read_objects(io.StringIO(text), **kwargs))


def objects(text: str) -> list[Any]:
    found = entries(text)
    assert [e.error for e in found if e.error] == []
    return [e.obj for e in found]


# --- the same objects as safe_load ---------------------------------------------------------------


TRICKY_YAML = """\
plain: [yes, no, on, off, true, False, ~, null, "", '']
numbers: [1, -2, +3, 0x1F, 0o17, 017, 1_000, 1:30, 1.5, -.inf, .NaN, 6.02e+23, 1e3]
strings: ['8', "0.95", 1.2.3, 2026-11-27, 2026-11-27T08:00:00Z, "=", '<<']
literal: |
  literal
  block
folded: >
  folded
  text
tagged: [!!str 123, !!int "42", !!float "1", !!bool "true", !!null "", ! 12, !!binary aGk=]
base: &base {cpu: "4", memory: 32Gi}
merged:
  <<: *base
  cpu: "8"
  gpus: 2
shared: [*base, *base]
"quoted key": 1
? complex
: key
"""


def test_objects_are_what_safe_load_builds(parser):
    (built,) = objects(TRICKY_YAML)
    expected = yaml.safe_load(TRICKY_YAML)
    # NaN is not equal to itself: compare its text
    assert repr(built) == repr(expected)
    assert list(built["merged"]) == list(expected["merged"])  # key order too
    assert built["shared"][0] is built["shared"][1] is built["base"]  # aliases share, as there


def test_a_merge_list_lets_earlier_mappings_win_as_the_spec_and_go_yaml_do(parser):
    text = (
        "base: &base {cpu: '4', memory: 32Gi}\n"
        "more: &more {memory: 64Gi, gpus: 2}\n"
        "merged:\n  <<: [*base, *more]\n  cpu: '8'\n"
    )
    (built,) = objects(text)
    # Own keys win, then earlier mappings (kubectl reads it so: go-yaml's merge steps backwards).
    # PyYAML 6.0.2+ gives memory 64Gi here: it keeps the later one unless the key strings are one
    # object.
    assert built["merged"] == {"cpu": "8", "memory": "32Gi", "gpus": 2}
    assert list(built["merged"]) == ["cpu", "memory", "gpus"]
    (twice,) = entries("a: &a {x: 1}\nb:\n  <<: *a\n  <<: *a\n")
    assert str(twice.error) == "line 4: duplicate key '<<'"
    # At the top of a document too; and where it is not a key, "<<" is a string (go-yaml).
    top = objects("d: &d {x: 1}\n<<: *d\ny: [<<, 2]\nz: <<\n")
    assert top == [{"x": 1, "d": {"x": 1}, "y": ["<<", 2], "z": "<<"}]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_file_reads_as_safe_load_reads_it(path, parser):
    text = path.read_text()
    expected = [d for d in yaml.safe_load_all(text) if d is not None]
    flat = []
    for doc in expected:  # Lists come out as their items
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List"):
            flat.extend(doc["items"])
        else:
            flat.append(doc)
    assert [e.obj for e in entries(text) if e.obj is not None] == flat


def test_realistic_nodes_and_profiles_read_back_exactly_from_yaml_and_json(parser):
    nodes = list(realistic_nodes(30, seed=7))
    listing = {"apiVersion": "v1", "items": nodes, "kind": "List", "metadata": {}}
    as_yaml = yaml.safe_dump(listing, sort_keys=True)
    as_json = json.dumps(listing, indent=4, sort_keys=True)
    for text in (as_yaml, as_json):
        found = entries(text)
        assert [(e.document, e.item) for e in found] == [(1, i) for i in range(30)]
        assert [e.obj for e in found] == nodes
    profiles = list(realistic_profiles(40, seed=7))
    assert objects(yaml.safe_dump_all(profiles)) == profiles


def test_documents_are_numbered_and_empty_ones_skipped_by_the_caller():
    found = entries("---\na: 1\n---\n---\n- 2\n")
    assert [(e.document, e.item, e.obj) for e in found] == [
        (1, None, {"a": 1}),
        (2, None, None),
        (3, None, [2]),
    ]
    json_values = entries('{"a": 1}\n[2]\n"three"')
    assert [(e.document, e.obj) for e in json_values] == [(1, {"a": 1}), (2, [2]), (3, "three")]


# --- streaming -----------------------------------------------------------------------------------


class EndlessList(io.TextIOBase):
    """A List that never ends: reading it whole would never return."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.chunks = self._chunks()
        self.pending = ""
        self.served = 0

    def _chunks(self):
        if self.fmt == "json":
            yield '{"apiVersion": "v1", "items": ['
            for i in itertools.count():
                yield ("," if i else "") + json.dumps({"kind": "Node", "n": i})
        else:
            yield "apiVersion: v1\nitems:\n"
            for i in itertools.count():
                yield f"- kind: Node\n  n: {i}\n"

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        assert size is not None
        assert size >= 0, "read the whole stream"
        while len(self.pending) < size:
            self.pending += next(self.chunks)
        out, self.pending = self.pending[:size], self.pending[size:]
        self.served += len(out)
        return out


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_a_lists_items_come_out_before_the_list_ends(fmt, parser):
    stream = EndlessList(fmt)
    first = list(itertools.islice(read_objects(stream), 3))  # type: ignore[arg-type]
    assert [e.obj for e in first] == [{"kind": "Node", "n": i} for i in range(3)]
    assert stream.served < 5 * 2**20


def test_json_values_cut_by_chunk_boundaries_are_reassembled(monkeypatch):
    # Chunks smaller than one value, and a number cut in two (12 | 345).
    monkeypatch.setattr(json_stream._Reader, "CHUNK", 7)
    nodes = list(realistic_nodes(3, seed=1))
    text = json.dumps({"apiVersion": "v1", "items": nodes, "kind": "List", "n": 12345})
    assert [e.obj for e in entries(text)] == nodes
    assert [e.obj for e in entries("[1] 12345 678")] == [[1], 12345, 678]


def test_a_list_whose_kind_is_not_a_list_is_flagged_after_its_items():
    found = entries("kind: Node\nitems: [{a: 1}]\n")
    assert found[0].obj == {"a": 1}
    assert str(found[1].error) == "kind: expected a List (the document has items), got 'Node'"


# --- hostile input -------------------------------------------------------------------------------

#: The classic "billion laughs": 9 levels of 9 aliases, 387,420,489 strings once expanded.
ALIAS_BOMB = """\
spec:
  engineArgs:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_is_refused_where_it_goes_past_the_limit(parser):
    (entry,) = entries(ALIAS_BOMB)
    assert entry.obj is None
    assert isinstance(entry.error, DocumentError)
    # Aliases of levels b..e add 74,718 nodes; f's first one adds 66,430 more, past 100,000.
    assert entry.error.line == 8
    assert str(entry.error) == (
        f"line 8: aliases expand to more than {MAX_ALIAS_NODES:,} nodes in this document: "
        "refused (an alias bomb?)"
    )


def test_aliases_within_the_limit_are_fine_and_the_next_document_is_read(parser):
    small = "\n".join(ALIAS_BOMB.splitlines()[:5])  # levels a..c: aliases add 909 nodes
    found = entries(f"{ALIAS_BOMB}---\n{small}\n")
    assert found[0].error is not None
    assert len(found[1].obj["spec"]["engineArgs"]["c"]) == 9


def test_an_item_that_fails_costs_only_itself(parser):
    text = "kind: List\nitems:\n- {a: 1}\n- {b: [1, {c: *nowhere}], d: 2}\n- {e: 3}\n"
    found = entries(text)
    assert [(e.item, e.obj) for e in found] == [(0, {"a": 1}), (1, None), (2, {"e": 3})]
    assert str(found[1].error) == "line 4: alias *nowhere has no anchor &nowhere before it"


def test_an_alias_into_its_own_node_is_refused(parser):
    (entry,) = entries("a: &loop\n  b: *loop\n")
    assert str(entry.error) == "line 2: alias *loop points into the node that contains it"


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 50_000 + "]" * 50_000 + "\n",
        "a:\n" + "".join(" " * i + "- \n" for i in range(1, 200)),
    ],
    ids=["50,000 brackets", "200 block levels"],
)
def test_deep_nesting_stops_the_stream_with_a_line_number(text, parser):
    if parser == "python" and text.count("[") > 1000:
        text = "a: " + "[" * 500 + "]" * 500  # PyYAML's own scanner is quadratic in depth
    with pytest.raises(StreamError) as err:
        entries(text)
    assert err.value.line is not None
    message = str(err.value)
    assert f"nesting deeper than {MAX_DEPTH} levels: refused" in message or (
        "exceeded maximum nesting depth" in message  # libyaml's own limit, 1,000
    )


def test_deep_json_is_refused_strict_or_not():
    deep = "[" * 50_000 + "]" * 50_000
    for strict in (True, False):
        with pytest.raises(StreamError, match="nesting deeper than"):
            entries(deep, strict=strict)
    moderate = "[" * 150 + "]" * 150
    with pytest.raises(StreamError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        entries(moderate)
    assert entries(moderate, strict=False)[0].obj is not None


def test_duplicate_keys_are_refused_naming_line_and_key(parser):
    text = "a: 1\nb:\n  c: 2\n  c: 3\n---\nok: 1\n"
    found = entries(text)
    assert str(found[0].error) == "line 4: duplicate key 'c'"
    assert found[1].obj == {"ok": 1}
    # Merged keys may be overridden: that is what merging is for.
    assert objects("base: &b {x: 1}\nm:\n  <<: *b\n  x: 2\n")[0]["m"] == {"x": 2}


def test_duplicate_keys_in_json_cost_only_their_item():
    text = '{"kind": "List", "items": [{"a": 1},\n{"b": {"c": 1, "c": 2}},\n{"d": 4}]}'
    found = entries(text)
    assert [(e.item, e.obj) for e in found] == [(0, {"a": 1}), (1, None), (2, {"d": 4})]
    assert str(found[1].error) == "duplicate key 'c' in the object from line 2"
    top = entries('{"kind": "Node", "kind": "Pod"}')
    assert str(top[0].error) == "line 1: duplicate key 'kind'"
    # Not strict (a node list from the API server): the last one wins, as in json.load.
    assert [e.obj for e in entries(text, strict=False)][1] == {"b": {"c": 2}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!set {x, y}\n", "line 1: tag !!set is not supported: Kubernetes objects are JSON"),
        ("a: !!omap [x: 1]\n", "line 1: tag !!omap is not supported: Kubernetes objects are JSON"),
        ("a: !thing 1\n", "line 1: tag !thing is not supported: Kubernetes objects are JSON"),
        ("a: !!int forty\n", "line 1: !!int: invalid literal for int() with base 10: 'forty'"),
        ("? [a, b]\n: 1\n", "line 1: a mapping key must be a scalar"),
        ("a:\n  <<: 1\n", "line 2: <<: expected a mapping or a list of mappings to merge"),
    ],
)
def test_what_is_not_json_is_refused(text, message, parser):
    (entry,) = entries(text)
    assert str(entry.error) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "line 1: invalid JSON: NaN is not JSON"),
        ('{"items": [{"a": 1},\n {"a": }]}', "line 2: invalid JSON: Expecting value"),
        ('{"items": [{"a": 1} {"a": 2}]}', "line 1: invalid JSON: expected ',' between items"),
        ('{"a": 1', "line 1: invalid JSON: expected ',' between fields, got the end of the input"),
        ('{"a": "unterminated', "line 1: invalid JSON: Unterminated string starting at"),
    ],
)
def test_broken_json_stops_the_stream_naming_the_line(text, message):
    with pytest.raises(StreamError) as err:
        entries(text)
    assert str(err.value).startswith(message)


def test_a_json_value_too_large_to_buffer_is_refused(monkeypatch):
    monkeypatch.setattr(json_stream, "MAX_JSON_VALUE", 1000)
    monkeypatch.setattr(json_stream._Reader, "CHUNK", 100)
    with pytest.raises(StreamError, match="a single JSON value larger than"):
        entries('{"items": [{"a": "' + "x" * 5000 + '"}]}')


def test_broken_yaml_names_the_line(parser):
    with pytest.raises(StreamError) as err:
        entries("a: 1\nb: [unclosed\n")
    assert err.value.line is not None
    assert str(err.value).startswith(f"line {err.value.line}: invalid YAML: ")


def test_format_is_told_by_the_first_character():
    assert read_objects(io.StringIO('\ufeff  \n {"a": 1}')).format == "json"
    assert read_objects(io.StringIO("[1]")).format == "json"
    assert read_objects(io.StringIO("# {comment}\na: 1")).format == "yaml"
    assert read_objects(io.StringIO("")).format == "yaml"
    assert entries("") == []
