"""Just enough Kubernetes protobuf to read what kubectl's generators send
(`kubectl create configmap|namespace` post `application/vnd.kubernetes.protobuf`), and the
minimal OpenAPI v2 document kubectl asks for in protobuf."""

from __future__ import annotations

import base64
from typing import Any

from .errors import ApiError

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# message name -> field number -> (json name, kind); kind: str, bytes, int, bool,
# "map" (string->string), "bmap" (string->bytes), "strs" (repeated string), or a message name.
SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {
        1: ("typeMeta", "TypeMeta"),
        2: ("raw", "bytes"),
        3: ("contentEncoding", "str"),
        4: ("contentType", "str"),
    },
    "TypeMeta": {1: ("apiVersion", "str"), 2: ("kind", "str")},
    "ObjectMeta": {
        1: ("name", "str"),
        2: ("generateName", "str"),
        3: ("namespace", "str"),
        5: ("uid", "str"),
        6: ("resourceVersion", "str"),
        7: ("generation", "int"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        14: ("finalizers", "strs"),
    },
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map"),
        3: ("binaryData", "bmap"),
        4: ("immutable", "bool"),
    },
    "Namespace": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "NamespaceSpec"),
        3: ("status", "NamespaceStatus"),
    },
    "NamespaceSpec": {1: ("finalizers", "strs")},
    "NamespaceStatus": {1: ("phase", "str")},
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
            out.append((num, val))
        elif wire == 2:
            n, pos = _varint(buf, pos)
            out.append((num, buf[pos : pos + n]))
            pos += n
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _message(buf: bytes, name: str) -> dict[str, Any]:
    schema = SCHEMAS[name]
    out: dict[str, Any] = {}
    for num, val in _fields(buf):
        if num not in schema:
            continue  # fields we do not model (timestamps, owner references) are dropped
        key, kind = schema[num]
        if kind == "str" and isinstance(val, bytes):
            if val:  # generated marshallers write empty strings; JSON would omit them
                out[key] = val.decode()
        elif kind == "bytes":
            out[key] = val
        elif kind in ("int", "bool") and isinstance(val, int):
            out[key] = bool(val) if kind == "bool" else val
        elif kind in ("map", "bmap") and isinstance(val, bytes):
            entry = dict(_fields(val))
            k = entry.get(1, b"")
            v = entry.get(2, b"")
            assert isinstance(k, bytes)
            assert isinstance(v, bytes)
            out.setdefault(key, {})[k.decode()] = (
                base64.b64encode(v).decode() if kind == "bmap" else v.decode()
            )
        elif kind == "strs" and isinstance(val, bytes):
            out.setdefault(key, []).append(val.decode())
        elif kind in SCHEMAS and isinstance(val, bytes):
            out[key] = _message(val, kind)
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A kubernetes protobuf envelope -> the JSON-shaped object (415 for kinds not modelled)."""
    if not body.startswith(MAGIC):
        raise ApiError.bad_request("protobuf body lacks the k8s envelope")
    unknown = _message(body[len(MAGIC) :], "Unknown")
    tm = unknown.get("typeMeta") or {}
    kind = tm.get("kind", "")
    if kind not in SCHEMAS or kind in ("Unknown", "TypeMeta", "ObjectMeta"):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the test API server cannot decode protobuf {kind!r}; send JSON",
        )
    obj = {"apiVersion": tm.get("apiVersion", "v1"), "kind": kind}
    obj.update(_message(unknown.get("raw", b""), kind))
    return obj


def _ld(num: int, payload: bytes) -> bytes:
    n, out = len(payload), bytearray()
    out.append((num << 3) | 2)
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + payload


# gnostic openapi_v2.Document{swagger: "2.0", info: {title, version}} with no paths: kubectl's
# client-side validation then skips every kind ("not present, skip validation").
OPENAPI_V2_PB = _ld(1, b"2.0") + _ld(2, _ld(1, b"Kubernetes") + _ld(2, b"v1.32.0"))
OPENAPI_V2_JSON = {
    "swagger": "2.0",
    "info": {"title": "Kubernetes", "version": "v1.32.0"},
    "paths": {},
    "definitions": {},
}
