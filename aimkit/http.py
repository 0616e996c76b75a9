"""One small HTTP server for health checks and metrics (and, over TLS, admission webhooks).

Routes map a path to a function from :class:`Request` to :class:`Response`. Named checks answer
``/healthz`` (alias ``/livez``) and ``/readyz`` in the shape of controller-runtime's healthz
package: ``ok`` when every check passes, else 503 with one line per check (``[+]name ok``,
``[-]name failed: reason``) so a probe's failure message says what is wrong. ``/readyz/<name>``
runs one check, ``?verbose`` lists every check on success too, ``?exclude=<name>`` skips one.

Why not ``ThreadingHTTPServer``: it starts a thread per connection and reads a request head
without a deadline or a size limit (up to 100 header lines of 64 KiB each), so 2,000 idle
connections held 2,000 threads and 20 clients sending 65 KB headers held over 100 MB
(issue 12). Here instead:

- one reactor thread accepts connections and reads requests without blocking, each under a
  deadline (``header_timeout`` from accept to the end of the request, ``idle_timeout`` between
  keep-alive requests) and a size cap (``max_header_bytes``, ``max_body_bytes``);
- at most ``max_connections`` are open at once; a new connection displaces the one that has been
  reading longest, so a client that holds connections half-open loses them while a probe, which
  sends its request at once, is served;
- complete requests go to ``workers`` threads through a short queue (503 when it is full), and
  each answer is written under ``write_timeout``.

Memory is therefore bounded by ``max_connections x (max_header_bytes + max_body_bytes)`` plus
the fixed threads, whatever clients do. TLS: pass an ``ssl.SSLContext``, or a function that
returns the current one (certificates that rotate); the handshake runs in the reactor under the
same deadline as the request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
LOOPBACK = "127.0.0.1"

#: A named check: None while it passes, else why it fails (one line).
Check = Callable[[], str | None]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may cost the server (see the module docstring)."""

    max_connections: int = 64
    workers: int = 4
    #: Complete requests waiting for a worker; beyond that the reactor answers 503.
    queue_size: int = 16
    header_timeout: float = 5.0
    idle_timeout: float = 30.0
    write_timeout: float = 10.0
    max_header_bytes: int = 8192
    max_body_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    """Header names in lower case; repeated headers joined with ``, ``."""
    body: bytes
    peer: str


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, text.encode())


Handler = Callable[[Request], Response]


@dataclass(slots=True)
class _Route:
    handler: Handler
    methods: frozenset[str]


class Checks:
    """Named checks in registration order (controller-runtime's healthz checkers)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        if not name or "/" in name:
            raise ValueError(f"check name {name!r}: must be non-empty, without '/'")
        with self._lock:
            if name in self._checks:
                raise ValueError(f"{self.kind} check {name!r} is already registered")
            self._checks[name] = check

    def names(self) -> list[str]:
        with self._lock:
            return list(self._checks)

    def run(self, only: str | None = None, exclude: Iterable[str] = ()) -> list[CheckResult]:
        with self._lock:
            checks = list(self._checks.items())
        skip = set(exclude)
        results = []
        for name, check in checks:
            if (only is not None and name != only) or name in skip:
                continue
            results.append(CheckResult(name, _run_check(self.kind, name, check)))
        return results


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    failure: str | None


def _run_check(kind: str, name: str, check: Check) -> str | None:
    try:
        return check()
    except Exception as err:  # a broken check fails itself, never the server
        log.debug("check raised", exc_info=True, extra={"check": f"{kind}/{name}"})
        return f"check raised {type(err).__name__}: {err}"


def render_checks(kind: str, results: Sequence[CheckResult], verbose: bool) -> Response:
    """The healthz body: ``ok``, or every check's line and the verdict (503 on failure)."""
    failed = any(r.failure is not None for r in results)
    if not failed and not verbose:
        return Response.text(200, "ok\n")
    lines = [
        f"[+]{r.name} ok" if r.failure is None else f"[-]{r.name} failed: {_one_line(r.failure)}"
        for r in results
    ]
    lines.append(f"{kind} check {'failed' if failed else 'passed'}")
    return Response.text(503 if failed else 200, "\n".join(lines) + "\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- where to listen -------------------------------------------------------------------------


def default_hosts(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Addresses to listen on when none is given.

    In a pod: the pod IP (``POD_IP``, from the downward API), which the kubelet's probes and
    Prometheus reach, plus loopback for ``kubectl port-forward``. In a pod without ``POD_IP``:
    every address of the pod's own network namespace. Outside a pod: loopback only, so that
    running an agent by hand does not open a port to the network.
    """
    env = os.environ if env is None else env
    pod_ip = env.get("POD_IP", "").strip()
    if pod_ip:
        return (pod_ip,) if pod_ip == LOOPBACK else (pod_ip, LOOPBACK)
    if env.get("KUBERNETES_SERVICE_HOST"):
        return ("0.0.0.0",)
    return (LOOPBACK,)


def split_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (host "" = the default hosts)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{text!r}: the port must be a number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{text!r}: the port must be 0 to 65535")
    return host, number


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# --- the server ------------------------------------------------------------------------------


class _Conn:
    """A connection while the reactor reads its request."""

    __slots__ = ("buf", "deadline", "handshaking", "keep_alive", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: str, deadline: float, tls: bool) -> None:
        self.sock = sock
        self.peer = peer
        self.buf = bytearray()
        self.deadline = deadline
        self.handshaking = tls
        self.keep_alive = False


class _RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


_LISTENER = object()
_WAKER = object()


class HttpServer:
    """Routes plus ``/healthz``, ``/livez``, ``/readyz`` on one or more addresses.

    ``hosts`` empty means :func:`default_hosts`; every host listens on the same port (port 0
    picks a free one for the first and reuses it). Add checks to :attr:`healthz` and
    :attr:`readyz`, and routes with :meth:`route`, before or after :meth:`start`.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        port: int,
        *,
        name: str = "http",
        limits: Limits | None = None,
        tls: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.limits = limits or Limits()
        self.healthz = Checks("healthz")
        self.readyz = Checks("readyz")
        self._tls = tls
        self._clock = clock
        self._routes: dict[str, _Route] = {}
        self._listeners: list[socket.socket] = []
        try:
            for host in hosts or default_hosts():
                self._listeners.append(_bind(host, port, backlog=128))
                port = self._listeners[0].getsockname()[1]
        except BaseException:
            for sock in self._listeners:
                sock.close()
            raise
        self.port: int = port
        self.addresses: list[str] = [_format_address(s.getsockname()) for s in self._listeners]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Connections being read, oldest first (the first to go when the cap is reached).
        self._reading: OrderedDict[int, _Conn] = OrderedDict()
        self._returned: list[_Conn] = []
        self._lock = threading.Lock()
        self._in_workers = 0
        self._jobs: queue.Queue[tuple[_Conn, Request] | None] = queue.Queue(self.limits.queue_size)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- configuration --------------------------------------------------------------------

    def route(self, path: str, handler: Handler, methods: Iterable[str] = ("GET", "HEAD")) -> None:
        self._routes[path] = _Route(handler, frozenset(m.upper() for m in methods))

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> HttpServer:
        for sock in self._listeners:
            self._selector.register(sock, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKER)
        reactor = threading.Thread(target=self._reactor, name=f"{self.name}-reactor", daemon=True)
        self._threads.append(reactor)
        for number in range(self.limits.workers):
            self._threads.append(
                threading.Thread(
                    target=self._worker, name=f"{self.name}-worker-{number}", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()
        log.debug("listening", extra={"server": self.name, "addresses": ",".join(self.addresses)})
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not self._threads:  # never started
            self._close_all()

    @property
    def open_connections(self) -> int:
        """Connections being read or answered now (the cap applies to this)."""
        with self._lock:
            return len(self._reading) + self._in_workers + len(self._returned)

    # -- the reactor: accept, handshake, read ---------------------------------------------

    def _reactor(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _mask in self._selector.select(self._select_timeout()):
                    if key.data is _LISTENER:
                        self._accept(key.fileobj)  # type: ignore[arg-type]
                    elif key.data is _WAKER:
                        self._drain_wake()
                    else:
                        self._on_ready(key.data)
                self._take_back_returned()
                self._expire()
        except Exception:
            log.exception("http reactor failed", extra={"server": self.name})
        finally:
            self._close_all()
            for _ in range(self.limits.workers):
                self._put_stop()

    def _put_stop(self) -> None:
        while True:
            try:
                self._jobs.put(None, timeout=0.1)
                return
            except queue.Full:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    continue
                if item is not None:
                    self._finish(item[0])

    def _select_timeout(self) -> float:
        if not self._reading:
            return 1.0
        soonest = min(c.deadline for c in self._reading.values())
        return min(1.0, max(0.0, soonest - self._clock()))

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):  # a bounded batch, so that reads are not starved by a flood
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # out of file descriptors, a reset before accept
                log.debug("accept failed: %s", err, extra={"server": self.name})
                return
            if not self._make_room():
                sock.close()
                continue
            sock.setblocking(False)
            peer = _format_address(address)
            tls = self._tls() if callable(self._tls) else self._tls
            if tls is not None:
                try:
                    sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError) as err:
                    log.debug("tls wrap failed: %s", err, extra={"peer": peer})
                    sock.close()
                    continue
            conn = _Conn(sock, peer, self._clock() + self.limits.header_timeout, tls is not None)
            self._start_reading(conn)

    def _make_room(self) -> bool:
        """Below the cap, or made so by dropping the connection reading longest."""
        if self.open_connections < self.limits.max_connections:
            return True
        with self._lock:
            if not self._reading:
                return False  # every connection is being answered: refuse the new one
            _, oldest = self._reading.popitem(last=False)
        log.debug("connection cap reached, dropping the oldest", extra={"peer": oldest.peer})
        self._close_reading(oldest, registered=True)
        return True

    def _start_reading(self, conn: _Conn) -> None:
        with self._lock:
            self._reading[conn.sock.fileno()] = conn
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _on_ready(self, conn: _Conn) -> None:
        if conn.handshaking and not self._handshake(conn):
            return
        if not self._read(conn):
            return
        self._dispatch_if_complete(conn)

    def _handshake(self, conn: _Conn) -> bool:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(sock, selectors.EVENT_READ, conn)
            return False
        except ssl.SSLWantWriteError:
            self._selector.modify(sock, selectors.EVENT_WRITE, conn)
            return False
        except (OSError, ValueError) as err:
            log.debug("tls handshake failed: %s", err, extra={"peer": conn.peer})
            self._drop(conn)
            return False
        conn.handshaking = False
        self._selector.modify(sock, selectors.EVENT_READ, conn)
        return True

    def _read(self, conn: _Conn) -> bool:
        room = self.limits.max_header_bytes + self.limits.max_body_bytes + 4 - len(conn.buf)
        while room > 0:
            try:
                chunk = conn.sock.recv(min(room, 16384))
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return True
            except ssl.SSLWantWriteError:
                return True
            except (OSError, ValueError):
                self._drop(conn)
                return False
            if not chunk:
                self._drop(conn)  # the client closed (or half-closed) before a full request
                return False
            conn.buf += chunk
            room -= len(chunk)
            pending = getattr(conn.sock, "pending", None)
            if pending is None or not pending():
                break
        return True

    def _dispatch_if_complete(self, conn: _Conn) -> None:
        try:
            parsed = _parse(conn.buf, self.limits, conn.peer)
        except _RequestError as err:
            self._reject(conn, err.status, str(err))
            return
        if parsed is None:
            return
        request, used, keep_alive = parsed
        del conn.buf[:used]
        conn.keep_alive = keep_alive
        with self._lock:
            self._reading.pop(conn.sock.fileno(), None)
            self._in_workers += 1
        self._selector.unregister(conn.sock)
        try:
            self._jobs.put_nowait((conn, request))
        except queue.Full:
            with self._lock:
                self._in_workers -= 1
            self._send_and_close(conn, Response.text(503, "busy, try again\n"))

    def _reject(self, conn: _Conn, status: HTTPStatus, message: str) -> None:
        log.debug("bad request: %s", message, extra={"peer": conn.peer, "status": int(status)})
        with self._lock:
            self._reading.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        self._send_and_close(conn, Response.text(int(status), message + "\n"))

    @staticmethod
    def _send_and_close(conn: _Conn, response: Response) -> None:
        """Answer without blocking the reactor (best effort: the client may not read), close."""
        with contextlib.suppress(OSError, ValueError):
            conn.sock.send(_encode(response, keep_alive=False, head=False))
        _close(conn.sock)

    def _expire(self) -> None:
        now = self._clock()
        late = [c for c in self._reading.values() if c.deadline <= now]
        for conn in late:
            log.debug("request timed out", extra={"peer": conn.peer})
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        with self._lock:
            self._reading.pop(conn.sock.fileno(), None)
        self._close_reading(conn, registered=True)

    def _close_reading(self, conn: _Conn, registered: bool) -> None:
        if registered:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        _close(conn.sock)

    def _take_back_returned(self) -> None:
        with self._lock:
            returned, self._returned = self._returned, []
        for conn in returned:
            if self._stopping.is_set():
                _close(conn.sock)
                continue
            conn.deadline = self._clock() + self.limits.idle_timeout
            self._start_reading(conn)
            if conn.buf:  # a pipelined request already read
                self._dispatch_if_complete(conn)

    def _wake(self) -> None:
        # BlockingIOError: already awake (the buffer is full); OSError: closed.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _close_all(self) -> None:
        with self._lock:
            reading = list(self._reading.values())
            self._reading.clear()
            returned, self._returned = self._returned, []
        for conn in reading + returned:
            _close(conn.sock)
        for sock in self._listeners:
            _close(sock)
        self._selector.close()
        _close(self._wake_r)
        _close(self._wake_w)

    # -- workers: answer ------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            conn, request = item
            response = self._respond(request)
            written = self._write(conn, response, head_only=request.method == "HEAD")
            if written and conn.keep_alive and not self._stopping.is_set():
                self._hand_back(conn)
            else:
                self._finish(conn)

    def _respond(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = self.dispatch(request)
        except Exception:
            log.exception("handler failed", extra={"server": self.name, "path": request.path})
            response = Response.text(500, "internal error\n")
        log.debug(
            "%s %s %d",
            request.method,
            request.path,
            response.status,
            extra={
                "server": self.name,
                "peer": request.peer,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response

    def dispatch(self, request: Request) -> Response:
        """The answer to one request (routes, then the check endpoints)."""
        checks = self._checks_for(request.path)
        if checks is not None:
            if request.method not in ("GET", "HEAD"):
                return _method_not_allowed(("GET", "HEAD"))
            base, _, only = request.path.lstrip("/").partition("/")
            kind = "readyz" if base == "readyz" else "healthz"
            if only and only not in checks.names():
                return Response.text(404, f"no {kind} check named {only!r}\n")
            results = checks.run(only or None, request.query.get("exclude", ()))
            return render_checks(kind, results, verbose="verbose" in request.query)
        route = self._routes.get(request.path)
        if route is None:
            return Response.text(404, "not found\n")
        if request.method not in route.methods:
            return _method_not_allowed(sorted(route.methods))
        return route.handler(request)

    def _checks_for(self, path: str) -> Checks | None:
        base = path.lstrip("/").partition("/")[0]
        if base in ("healthz", "livez"):
            return self.healthz
        if base == "readyz":
            return self.readyz
        return None

    def _write(self, conn: _Conn, response: Response, head_only: bool) -> bool:
        data = _encode(response, keep_alive=conn.keep_alive, head=head_only)
        try:
            conn.sock.settimeout(self.limits.write_timeout)
            conn.sock.sendall(data)
            conn.sock.setblocking(False)
        except (OSError, ValueError) as err:
            log.debug("write failed: %s", err, extra={"peer": conn.peer})
            return False
        return True

    def _hand_back(self, conn: _Conn) -> None:
        with self._lock:
            self._in_workers -= 1
            self._returned.append(conn)
        self._wake()

    def _finish(self, conn: _Conn) -> None:
        with self._lock:
            self._in_workers -= 1
        _close(conn.sock)


# --- HTTP/1.1 parsing and encoding ------------------------------------------------------------


def _parse(buf: bytearray, limits: Limits, peer: str) -> tuple[Request, int, bool] | None:
    """A complete request at the start of ``buf`` (with the bytes it used), or None for more.

    Raises _RequestError for what the server refuses: oversized heads and bodies, malformed
    request lines and headers, chunked bodies.
    """
    end = buf.find(b"\r\n\r\n", 0, limits.max_header_bytes + 4)
    if end < 0:
        if len(buf) > limits.max_header_bytes:
            raise _RequestError(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request head larger than {limits.max_header_bytes} bytes",
            )
        return None
    try:
        head = bytes(buf[:end]).decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _RequestError(HTTPStatus.BAD_REQUEST, "undecodable request head") from None
    request_line, *header_lines = head.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _RequestError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if not method.isalpha() or not method.isupper():
        raise _RequestError(HTTPStatus.BAD_REQUEST, "malformed method")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[:1] in (" ", "\t"):
            raise _RequestError(HTTPStatus.BAD_REQUEST, "malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if "transfer-encoding" in headers:
        raise _RequestError(HTTPStatus.LENGTH_REQUIRED, "chunked request bodies are not accepted")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _RequestError(HTTPStatus.BAD_REQUEST, "malformed Content-Length") from None
    if length < 0:
        raise _RequestError(HTTPStatus.BAD_REQUEST, "malformed Content-Length")
    if length > limits.max_body_bytes:
        raise _RequestError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"request body larger than {limits.max_body_bytes} bytes",
        )
    start = end + 4
    if len(buf) < start + length:
        return None
    connection = headers.get("connection", "").lower()
    keep_alive = version == "HTTP/1.1" and "close" not in connection
    url = urlsplit(target)
    request = Request(
        method=method,
        path=url.path or "/",
        query=parse_qs(url.query, keep_blank_values=True),
        headers=headers,
        body=bytes(buf[start : start + length]),
        peer=peer,
    )
    return request, start + length, keep_alive


def _encode(response: Response, keep_alive: bool, head: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data if head else data + response.body


def _method_not_allowed(methods: Iterable[str]) -> Response:
    allowed = ", ".join(methods)
    return Response(405, b"method not allowed\n", headers=(("Allow", allowed),))


def _format_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = str(address[0]), address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
