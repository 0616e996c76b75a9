"""Recording API behaviour for the fidelity table (tests/test_apiserver_fidelity_table.py):
a small HTTP client that speaks to either server, and a recorder that keeps each answer in a
normalised form (server-chosen values such as uids, timestamps and resourceVersions replaced
by stable tokens), so that the same scenario on two servers yields comparable records."""

from __future__ import annotations

import http.client
import json
import re
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = "application/json"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@dataclass
class Reply:
    code: int
    body: Any
    headers: dict[str, str]


class Api:
    """One server: `http://` (the test server) or `https://` with a bearer token."""

    def __init__(self, url: str, token: str | None = None, ca_file: Path | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port
        self._token = token
        self._ssl = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, context=self._ssl, timeout=timeout
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ctype: str = JSON,
        accept: str = JSON,
        timeout: float = 30,
    ) -> Reply:
        conn = self._connection(timeout)
        headers = {"Accept": accept}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        data: bytes | None = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            headers["Content-Type"] = ctype
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            answer = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        text = raw.decode(errors="replace")
        parsed: Any
        if "watch=true" in path and resp.status == 200:  # a stream of JSON lines
            parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text
        return Reply(resp.status, parsed, answer)


_MESSAGE_NUMBERS = (
    (re.compile(r"too old resource version: \d+ \(\d+\)"), "too old resource version: <rv> (<rv>)"),
    (re.compile(r"Too large resource version: \d+, current: \d+"), "Too large resource version"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uid>"),
)
# Server-chosen metadata. managedFields are dropped (the test server keeps none; a step of its
# own records that difference).
_VOLATILE_META = ("uid", "creationTimestamp", "deletionTimestamp")


@dataclass
class Recorder:
    """Runs one scenario's steps on one server and keeps `records[label]`."""

    api: Api
    records: dict[str, Any] = field(default_factory=dict)
    _rvs: dict[str, str] = field(default_factory=dict)

    def rv(self, value: Any) -> str:
        """A scenario-local token for a resourceVersion: the order of first sight."""
        key = str(value)
        if key not in self._rvs:
            self._rvs[key] = f"rv{len(self._rvs) + 1}"
        return self._rvs[key]

    def call(self, label: str, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        reply = self.api.call(method, path, body, **kw)
        self.records[label] = self.normalise_reply(reply)
        return reply

    def keep(self, label: str, value: Any) -> None:
        self.records[label] = value

    # -- normalising ------------------------------------------------------------------------
    def normalise_reply(self, reply: Reply) -> dict[str, Any]:
        out: dict[str, Any] = {"code": reply.code}
        if "retry-after" in reply.headers:
            out["retryAfter"] = reply.headers["retry-after"]
        out["body"] = self.normalise(reply.body)
        return out

    def normalise(self, value: Any, key: str = "") -> Any:
        if isinstance(value, list):
            return [self.normalise(v) for v in value]
        if isinstance(value, str):
            for pattern, repl in _MESSAGE_NUMBERS:
                value = pattern.sub(repl, value)
            return value
        if not isinstance(value, dict):
            return value
        if value.get("kind") == "Status":
            return self.status(value)
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "metadata" and isinstance(v, dict):
                out[k] = self.metadata(v, listing=key == "list" or "items" in value)
            elif k == "items" and isinstance(v, list):
                out[k] = [self.normalise(i) for i in v]
            elif k in ("lastTransitionTime", "eventTime", "firstTimestamp", "lastTimestamp"):
                out[k] = "<time>" if v else v
            else:
                out[k] = self.normalise(v, k)
        return out

    def metadata(self, md: dict[str, Any], *, listing: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in md.items():
            if k == "managedFields":
                continue
            if k in _VOLATILE_META:
                out[k] = "<set>"
            elif k == "resourceVersion":
                # A list's resourceVersion is the whole store's: other writers move it.
                out[k] = "<list>" if listing else self.rv(v)
            elif k == "name" and md.get("generateName") and str(v).startswith(md["generateName"]):
                out[k] = f"{md['generateName']}<suffix>"
            elif k == "continue":
                out[k] = "<token>" if v else v
            elif k == "annotations" and isinstance(v, dict):
                out[k] = {
                    a: b
                    for a, b in v.items()
                    if a != "kubectl.kubernetes.io/last-applied-configuration"
                }
            else:
                out[k] = self.normalise(v)
        return out

    def status(self, st: dict[str, Any]) -> dict[str, Any]:
        out = {k: self.normalise(v) for k, v in st.items() if k not in ("kind", "apiVersion")}
        details = out.get("details")
        if isinstance(details, dict) and "uid" in details:
            details["uid"] = "<set>"
        if isinstance(details, dict) and isinstance(details.get("causes"), list):
            # Go reports map entries (labels) in random order: causes and the message's list.
            causes = details["causes"]
            details["causes"] = sorted(causes, key=lambda c: json.dumps(c, sort_keys=True))
            out["message"] = _sorted_message(str(out.get("message", "")), causes)
        if isinstance(out.get("metadata"), dict) and out["metadata"].get("continue"):
            out["metadata"] = {**out["metadata"], "continue": "<token>"}
        return out


def _sorted_message(message: str, causes: list[dict[str, Any]]) -> str:
    """`X is invalid: [a, b]` with its parts in a fixed order, when they are the causes."""
    head, sep, listed = message.partition(" is invalid: [")
    if not sep or not listed.endswith("]"):
        return message
    parts: list[str] = []
    for c in causes:
        text = f"{c.get('field')}: {c.get('message')}" if c.get("field") else str(c.get("message"))
        if text not in parts:
            parts.append(text)
    inner = listed[:-1]
    if len(", ".join(parts)) != len(inner) or not all(p in inner for p in parts):
        return message  # not just the causes: leave it for the comparison to show
    return f"{head}{sep}{', '.join(sorted(parts))}]"


def events(reply: Reply, rec: Recorder) -> list[Any]:
    """A watch answer as (type, name or reason, resourceVersion token) triples; consecutive
    identical bookmarks collapse (kube-apiserver's bookmark timer ticks at jittered seconds)."""
    out: list[Any] = []
    for ev in reply.body if isinstance(reply.body, list) else []:
        obj = ev.get("object") or {}
        md = obj.get("metadata") or {}
        if ev.get("type") == "ERROR":
            item: Any = ("ERROR", rec.status(obj))
        elif ev.get("type") == "BOOKMARK":
            item = ("BOOKMARK", rec.rv(md.get("resourceVersion")), md.get("annotations") or {})
        else:
            item = (ev.get("type"), md.get("name"), rec.rv(md.get("resourceVersion")))
        if not out or out[-1] != item or item[0] != "BOOKMARK":
            out.append(item)
    return out
