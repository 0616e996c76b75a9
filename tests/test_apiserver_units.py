"""The test API server's pure parts: selector grammar, patch semantics, schema checks,
printer-column JSONPath, human ages, protobuf decoding, version ordering."""

from __future__ import annotations

from typing import Any

import pytest

from tests.apiserver import protobuf
from tests.apiserver.crds import version_priority
from tests.apiserver.errors import ApiError
from tests.apiserver.patch import merge_patch, strategic_merge_patch
from tests.apiserver.schema import apply_defaults, prune, validate
from tests.apiserver.selectors import labels_match, parse_label_selector
from tests.apiserver.table import human_duration, json_path


def obj(**labels: str) -> dict[str, Any]:
    return {"metadata": {"labels": labels}}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),  # != matches objects without the key
        ("a in (b,c)", {"a": "c"}, True),
        ("a notin (b,c)", {"a": "d"}, True),
        ("a notin (b,c)", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("example.com/x=1, y", {"example.com/x": "1", "y": "2"}, True),
        ("a=", {"a": ""}, True),
    ],
)
def test_label_selector_grammar(selector, labels, expected):
    assert labels_match(parse_label_selector(selector), obj(**labels)) is expected


@pytest.mark.parametrize("bad", ["a in (b", "a b", "=b", "!a=b", "a=b c", "-a=b"])
def test_label_selector_errors(bad):
    with pytest.raises(ApiError) as err:
        parse_label_selector(bad)
    assert err.value.code == 400


def test_merge_patch_rfc7386():
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3]}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3]}
    assert target["c"] == {"d": "e", "f": "g"}  # the input is not mutated


def test_strategic_merge_patch_lists_and_directives():
    keys = {"status.conditions": "type"}
    node = {
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}]
        }
    }
    patch = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "$patch": "delete"}]
        }
    }
    assert strategic_merge_patch(node, patch, keys) == {
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    }
    fin = {"metadata": {"finalizers": ["a", "b"]}}
    out = strategic_merge_patch(
        fin, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, {}
    )
    assert out == {"metadata": {"finalizers": ["b"]}}
    assert strategic_merge_patch(
        {"spec": {"x": 1, "y": 2}}, {"spec": {"$patch": "replace", "z": 3}}, {}
    ) == {"spec": {"z": 3}}


SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["n"],
            "properties": {
                "n": {"type": "integer", "minimum": 1},
                "s": {"type": "string", "default": "d"},
                "o": {"type": "object", "properties": {"x": {"type": "string", "default": "y"}}},
                "m": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
}


def test_defaults_only_fill_existing_parents():
    out = apply_defaults({"spec": {"n": 1}}, SCHEMA)
    assert out == {"spec": {"n": 1, "s": "d"}}  # spec.o is absent, so o.x is not defaulted
    assert apply_defaults({"spec": {"n": 1, "o": {}}}, SCHEMA)["spec"]["o"] == {"x": "y"}


def test_prune_records_unknown_paths():
    unknown: list[str] = []
    out = prune(
        {"apiVersion": "v", "spec": {"n": 1, "zz": 2, "m": {"k": "v"}}, "top": 1},
        SCHEMA,
        "",
        unknown,
        root=True,
    )
    assert out == {"apiVersion": "v", "spec": {"n": 1, "m": {"k": "v"}}}
    assert unknown == ["spec.zz", "top"]


def test_validate_paths():
    causes = validate({"spec": {"n": 0, "m": {"k": 1}}}, SCHEMA, "", root=True)
    assert {(c.field, c.reason) for c in causes} == {
        ("spec.n", "FieldValueInvalid"),
        ("spec.m.k", "FieldValueTypeInvalid"),  # map keys join with a dot, as kube-openapi's
    }
    assert [c.field for c in validate({"spec": {}}, SCHEMA, "", root=True)] == ["spec.n"]


def test_json_path_and_ages():
    o = {
        "status": {
            "conditions": [{"type": "A", "status": "x"}, {"type": "Ready", "status": "True"}]
        },
        "spec": {"l": [1, 2]},
    }
    assert json_path(o, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert json_path(o, ".spec.l[1]") == [2]
    assert json_path(o, ".spec.l[*]") == [1, 2]
    assert json_path(o, ".spec.missing") == []
    assert [human_duration(s) for s in (5, 119, 150, 3600, 3 * 86400 + 7200)] == [
        "5s",
        "119s",
        "2m30s",
        "60m",
        "3d2h",
    ]


def test_protobuf_configmap_envelope():
    def ld(num: int, payload: bytes) -> bytes:
        return bytes([(num << 3) | 2, len(payload)]) + payload

    meta = ld(1, b"cfg") + ld(3, b"") + ld(11, ld(1, b"k") + ld(2, b"v"))
    raw = ld(1, meta) + ld(2, ld(1, b"a") + ld(2, b"1"))
    body = protobuf.MAGIC + ld(1, ld(1, b"v1") + ld(2, b"ConfigMap")) + ld(2, raw)
    assert protobuf.decode(body) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "labels": {"k": "v"}},
        "data": {"a": "1"},
    }


def test_version_priority():
    versions = ["v1alpha1", "v2beta1", "v1", "v1beta2", "v2", "v1alpha2"]
    assert sorted(versions, key=version_priority) == [
        "v2",
        "v1",
        "v2beta1",
        "v1beta2",
        "v1alpha2",
        "v1alpha1",
    ]
