"""HTTP front end: routing, content negotiation, faults, the request record, and watches."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from . import discovery, events, openapi, protobuf
from .errors import ApiError
from .faults import RequestRecord
from .resources import ResourceType
from .store import Entry, dumps
from .table import table
from .watch import serve_watch

if TYPE_CHECKING:
    from .server import ApiServer

JSON = "application/json"


@dataclass(frozen=True)
class Route:
    """A parsed resource URL."""

    rt: ResourceType
    version: str
    ns: str | None
    name: str
    sub: str
    watch: bool


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one small response must not wait for a delayed ACK
    server_version = "aim-test-apiserver"
    app: ApiServer  # set on the subclass the server creates

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read srv.requests instead of stderr noise

    # -- entry points ------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        self.query = dict(parse_qsl(url.query, keep_blank_values=True))
        self.req_path = url.path.rstrip("/") or "/"
        self.status_sent = 0
        self.recorded = False
        body = self._read_body()
        verb, route = "", None
        self.route: Route | None = None
        self.verb = ""
        try:
            route = self.route = self._route()
            verb = self.verb = self._verb(route)
            fault = self.app.faults.take(verb, self.req_path)
            delay = self.app.faults.delay_for(verb)
            if delay:
                time.sleep(delay)
            if fault is not None:
                if fault.drop_connection:
                    self._record(verb, route, 0)
                    self._drop()
                    return
                headers = {}
                if fault.retry_after is not None:
                    # whole seconds as kube-apiserver sends; fractions as given, to keep tests fast
                    ra = fault.retry_after
                    headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
                reason = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "Timeout"}.get(
                    fault.code, "InternalError"
                )
                raise ApiError(
                    fault.code, reason, f"injected fault ({fault.code})", headers=headers
                )
            self._dispatch(verb, route, body)
        except ApiError as err:
            self._send_json(err.code, err.status(), err.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a server bug must still answer as kube-apiserver would
            self._send_json(
                500, ApiError(500, "InternalError", f"test apiserver error: {exc!r}").status()
            )
        self._record(verb, route, self.status_sent)

    def _record(self, verb: str, route: Route | None, status: int) -> None:
        """Record the request once, before its response goes out: a client that has its
        answer can rely on finding the request in `srv.requests`."""
        if self.recorded:
            return
        self.recorded = True
        self.app.requests.add(
            RequestRecord(
                verb=verb,
                method=self.command,
                path=self.req_path,
                query=self.query,
                content_type=self.headers.get("Content-Type", ""),
                status=status,
                subresource=route.sub if route else "",
                user_agent=self.headers.get("User-Agent", ""),
            )
        )

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- routing -------------------------------------------------------------------------
    def _route(self) -> Route | None:
        parts = [p for p in self.req_path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None
        watch = rest[0] == "watch"
        if watch:
            rest = rest[1:]
        ns: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and rest[2] in ("status", "finalize") and not group)
        ):
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rt = self.app.registry.lookup(group, version, rest[0])
        if ns is not None and not rt.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        watch = watch or self.query.get("watch") in ("true", "1")
        return Route(rt, version, ns, name, sub, watch)

    def _verb(self, route: Route | None) -> str:
        if route is None:
            return "get" if self.command == "GET" else ""
        if self.command == "GET":
            return "watch" if route.watch else ("get" if route.name else "list")
        if self.command == "DELETE" and not route.name:
            return "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            self.command, ""
        )

    def _dispatch(self, verb: str, route: Route | None, body: bytes) -> None:
        if route is None:
            self._non_resource()
            return
        reg, rt, ns = self.app.registry, route.rt, route.ns
        if rt.namespaced and ns is None and verb not in ("list", "watch", "deletecollection"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if verb == "watch":
            self._watch(route)
        elif verb == "get":
            if route.sub and route.sub != "status":
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self._send_objects(route, [reg.get(rt, ns, route.name)], single=True)
        elif verb == "list":
            res = reg.list_entries(rt, ns, self.query)
            self._send_objects(
                route, res.entries, rv=res.resource_version, cont=res.cont, remaining=res.remaining
            )
        elif verb == "create":
            if route.name:
                raise ApiError.method_not_allowed()
            result = reg.create(rt, ns, self._json(body), self.query)
            self._send_written(route, result.obj, 201, result.warnings)
        elif verb == "update":
            obj = self._json(body)
            result = reg.update(rt, ns, route.name, obj, subresource=route.sub, query=self.query)
            self._send_written(route, result.obj, 200, result.warnings)
        elif verb == "patch":
            ctype = self.headers.get("Content-Type", "")
            result = reg.patch(
                rt, ns, route.name, ctype, body, subresource=route.sub, query=self.query
            )
            self._send_written(route, result.obj, 201 if result.created else 200, result.warnings)
        elif verb == "delete":
            options = self._json(body) if body.strip() else {}
            obj, gone = reg.delete(rt, ns, route.name, options, self.query)
            if rt.is_custom or not gone:
                self._send_written(route, obj, 200, [])
            else:
                meta = obj["metadata"]
                status: dict[str, Any] = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": meta["name"], "kind": rt.plural, "uid": meta.get("uid")},
                }
                if rt.group:
                    status["details"]["group"] = rt.group
                self._send_json(200, status)
        elif verb == "deletecollection":
            if rt.key == "/namespaces":  # kube-apiserver serves no deletecollection for them
                raise ApiError.method_not_allowed()
            reg.delete_collection(rt, ns, self.query)
            self._send_json(
                200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            )
        else:
            raise ApiError.method_not_allowed()

    def _non_resource(self) -> None:
        if self.command != "GET":
            raise ApiError.method_not_allowed()
        reg, path = self.app.registry, self.req_path
        doc: dict[str, Any] | None = None
        if path == "/api":
            doc = discovery.api_versions(f"127.0.0.1:{self.app.port}")
        elif path == "/apis":
            doc = discovery.api_group_list(reg)
        elif path == "/version":
            doc = discovery.VERSION
        elif path == "/openapi/v2":
            if "protobuf" in self.headers.get("Accept", ""):
                self._send(
                    200,
                    protobuf.OPENAPI_V2_PB,
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                )
                return
            doc = protobuf.OPENAPI_V2_JSON
        elif path == "/openapi/v3":
            doc = openapi.root(reg)
        elif path.startswith("/openapi/v3/"):
            gv = path[len("/openapi/v3/") :].split("/")
            if gv[0] == "api" and len(gv) == 2:
                doc = openapi.gv_document(reg, "", gv[1])
            elif gv[0] == "apis" and len(gv) == 3:
                doc = openapi.gv_document(reg, gv[1], gv[2])
        elif path in ("/healthz", "/readyz", "/livez"):
            self._send(200, b"ok", "text/plain")
            return
        else:
            parts = path.strip("/").split("/")
            if parts[0] == "api" and len(parts) == 2:
                doc = discovery.resource_list(reg, "", parts[1])
            elif parts[0] == "apis" and len(parts) == 2:
                doc = discovery.api_group(reg, parts[1])
            elif parts[0] == "apis" and len(parts) == 3:
                doc = discovery.resource_list(reg, parts[1], parts[2])
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._send_json(200, doc)

    # -- bodies ----------------------------------------------------------------------------
    def _json(self, body: bytes) -> Any:
        if self.headers.get("Content-Type", "").startswith(protobuf.PROTOBUF):
            return protobuf.decode(body)
        try:
            return json.loads(body or b"null")
        except ValueError:
            try:
                return yaml.safe_load(body)
            except Exception as exc:
                raise ApiError.bad_request(
                    f"the body of the request could not be decoded: {exc}"
                ) from exc

    def _render(self, route: Route, entry: Entry) -> bytes:
        rt = route.rt
        if rt.shares_storage_of:
            return dumps(events.from_core(entry.obj))
        want = rt.api_version(route.version)
        if entry.obj.get("apiVersion") == want:
            return entry.raw
        return dumps({**entry.obj, "apiVersion": want})

    def _as_table(self) -> bool:
        return "as=Table" in self.headers.get("Accept", "")

    def _send_objects(
        self,
        route: Route,
        entries: list[Entry],
        *,
        single: bool = False,
        rv: int = 0,
        cont: str = "",
        remaining: int | None = None,
    ) -> None:
        rt = route.rt
        if self._as_table():
            # Columns read the stored (core/v1) form, also for the events.k8s.io view.
            tbl = table(
                rt,
                [e.obj for e in entries],
                str(rv or (entries[0].rv if entries else 0)),
                self.query.get("includeObject", "Metadata"),
                cont,
            )
            self._send_json(200, tbl)
            return
        if single:
            self._send(200, self._render(route, entries[0]))
            return
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
            if remaining is not None:
                meta["remainingItemCount"] = remaining
        head = {"kind": rt.list_kind, "apiVersion": rt.api_version(route.version), "metadata": meta}
        self._send(
            200,
            dumps(head)[:-1]
            + b',"items":['
            + b",".join(self._render(route, e) for e in entries)
            + b"]}",
        )

    def _send_written(
        self, route: Route, obj: dict[str, Any], code: int, warnings: list[str]
    ) -> None:
        headers = (
            {"Warning": ", ".join(f"299 - {json.dumps(w)}" for w in warnings)} if warnings else {}
        )
        self._send(code, self._render(route, Entry(obj)), JSON, headers)

    def _send_json(self, code: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, dumps(doc), JSON, headers)

    def _send(
        self, code: int, payload: bytes, ctype: str = JSON, headers: dict[str, str] | None = None
    ) -> None:
        self.status_sent = code
        self._record(self.verb, self.route, code)
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    # -- watch --------------------------------------------------------------------------------
    def _watch(self, route: Route) -> None:
        serve_watch(self, route)

    def start_chunked(self) -> None:
        self.status_sent = 200
        self._record("watch", self.route, 200)
        self.send_response(200)
        ctype = "application/json;as=Table;v=v1;g=meta.k8s.io" if self._as_table() else JSON
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
