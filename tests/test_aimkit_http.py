"""aimkit.http: routes and named checks, and a server that abusive clients cannot exhaust.

The exhaustion tests reproduce issue 12 with real sockets: 2,000 half-open connections, 65 KB
header lines, silent clients. The ``ThreadingHTTPServer`` both agents used before fails each of
them (a thread per connection, the whole header read, no deadline); the memory figures are in
``benchmarks/bench_http.py``.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request

import pytest

from aimkit.http import HttpServer, Limits, Response, default_hosts, split_host_port
from tests.tls_support import TinyCA

LIMITS = Limits(max_connections=32, workers=2, queue_size=4, header_timeout=0.5, idle_timeout=2.0)


def start(limits: Limits = LIMITS, hosts: tuple[str, ...] = ("127.0.0.1",), **kw) -> HttpServer:
    server = HttpServer(list(hosts), 0, name="test", limits=limits, **kw)
    server.healthz.add("loop", lambda: None)
    server.route("/metrics", lambda _r: Response(200, b"aim_up 1\n", "text/plain; version=0.0.4"))
    return server.start()


@pytest.fixture
def server():
    srv = start()
    yield srv
    srv.stop()


def get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` within ``within`` seconds (what it sent is ignored)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


# --- routes and checks -------------------------------------------------------------------------


def test_routes_and_checks_answer_in_the_healthz_shape(server):
    port = server.port
    failing: dict[str, str | None] = {"reason": "caches not synced: nodes"}
    server.readyz.add("caches", lambda: failing["reason"])
    server.readyz.add("config", lambda: None)
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/livez") == (200, "ok\n")
    assert get(port, "/metrics") == (200, "aim_up 1\n")
    assert get(port, "/readyz") == (
        503,
        "[-]caches failed: caches not synced: nodes\n[+]config ok\nreadyz check failed\n",
    )
    assert get(port, "/readyz/config") == (200, "ok\n")
    assert get(port, "/readyz/caches")[0] == 503
    assert get(port, "/readyz?exclude=caches") == (200, "ok\n")
    assert get(port, "/readyz/nope") == (404, "no readyz check named 'nope'\n")
    failing["reason"] = None
    assert get(port, "/readyz") == (200, "ok\n")
    assert get(port, "/readyz?verbose") == (
        200,
        "[+]caches ok\n[+]config ok\nreadyz check passed\n",
    )
    assert get(port, "/nope") == (404, "not found\n")


def test_a_check_that_raises_fails_itself_not_the_server(server):
    def broken() -> str | None:
        raise RuntimeError("boom")

    server.readyz.add("broken", broken)
    status, body = get(server.port, "/readyz")
    assert status == 503
    assert "[-]broken failed: check raised RuntimeError: boom" in body
    assert get(server.port, "/healthz") == (200, "ok\n")


def test_multi_line_reasons_stay_on_one_line(server):
    server.readyz.add("config", lambda: "invalid ConfigMap:\n  data.x: unknown key")
    assert get(server.port, "/readyz")[1].splitlines()[0] == (
        "[-]config failed: invalid ConfigMap: data.x: unknown key"
    )


def test_keep_alive_head_and_methods(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/healthz")
    first = conn.getresponse()
    assert (first.status, first.read()) == (200, b"ok\n")
    conn.request("HEAD", "/metrics")  # same connection
    head = conn.getresponse()
    assert head.status == 200
    assert head.getheader("Content-Length") == "9"
    assert head.read() == b""
    conn.request("POST", "/metrics", body=b"")
    post = conn.getresponse()
    assert post.status == 405
    assert post.getheader("Allow") == "GET, HEAD"
    post.read()
    conn.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", 413),
        (b"POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    ],
)
def test_malformed_and_oversized_requests_are_refused(server, request_bytes, status):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answer = sock.recv(4096)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())


def test_a_slow_handler_does_not_hold_up_probes():
    release = threading.Event()
    srv = start(Limits(workers=2, header_timeout=2.0))
    srv.route("/slow", lambda _r: Response(200, b"late\n") if release.wait(10) else Response(500))
    try:
        slow = threading.Thread(target=get, args=(srv.port, "/slow"), daemon=True)
        slow.start()
        time.sleep(0.1)
        assert get(srv.port, "/healthz") == (200, "ok\n")
    finally:
        release.set()
        srv.stop()


def test_when_every_worker_is_busy_new_requests_get_503_at_once():
    release = threading.Event()
    srv = start(Limits(workers=1, queue_size=1, header_timeout=5.0))
    srv.route("/slow", lambda _r: Response(200) if release.wait(10) else Response(500))
    try:
        busy = [threading.Thread(target=get, args=(srv.port, "/slow"), daemon=True)]
        busy.append(threading.Thread(target=get, args=(srv.port, "/slow"), daemon=True))
        for thread in busy:
            thread.start()
            time.sleep(0.2)  # the first is in the worker, the second in the queue
        started = time.monotonic()
        assert get(srv.port, "/healthz")[0] == 503
        assert time.monotonic() - started < 2
    finally:
        release.set()
        srv.stop()


# --- exhaustion (issue 12) ---------------------------------------------------------------------


def test_two_thousand_half_open_connections_take_no_thread_each_and_probes_pass(server):
    threads_before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2000)]
    try:
        peak = threads_before
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            peak = max(peak, threading.active_count())
            time.sleep(0.01)
        assert get(server.port, "/healthz") == (200, "ok\n")
        assert peak == threads_before, "the server started threads for idle connections"
        assert server.open_connections <= LIMITS.max_connections
    finally:
        for sock in socks:
            sock.close()


def test_a_65_kb_header_line_is_refused_without_being_read_whole(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        # Refused before we finished sending is fine too.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"X-Big: " + b"a" * 65_000 + b"\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_client_that_never_finishes_its_request_is_disconnected(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and then nothing
        started = time.monotonic()
        assert closed_by_server(sock, within=5.0)
        assert time.monotonic() - started < LIMITS.header_timeout + 1.5


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    assert conn.sock is not None
    assert closed_by_server(conn.sock, within=LIMITS.idle_timeout + 2)


def test_at_the_cap_a_new_connection_displaces_the_oldest_unfinished_one():
    limits = Limits(max_connections=8, workers=1, header_timeout=30.0)
    srv = start(limits)
    try:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(8)]
        time.sleep(0.2)
        assert srv.open_connections == 8
        assert get(srv.port, "/healthz") == (200, "ok\n")
        assert closed_by_server(idle[0], within=2.0), "the oldest idle connection must go"
        assert not closed_by_server(idle[-1], within=0.2)
        for sock in idle:
            sock.close()
    finally:
        srv.stop()


# --- TLS, addresses ----------------------------------------------------------------------------


def tls_context(tmp_path) -> tuple[ssl.SSLContext, TinyCA]:
    ca = TinyCA.create()
    cert, key = ca.issue("webhook", server=True, hosts=("127.0.0.1",)).write(tmp_path, "serving")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, ca


def test_tls_listener_serves_and_survives_a_plain_http_client(tmp_path):
    context, ca = tls_context(tmp_path)
    srv = start(tls=lambda: context)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")  # plain HTTP to a TLS port
            assert closed_by_server(sock, within=5.0)
        client = ssl.create_default_context(cadata=ca.pem.decode())
        url = f"https://127.0.0.1:{srv.port}/healthz"
        with urllib.request.urlopen(url, context=client, timeout=5) as resp:
            assert (resp.status, resp.read()) == (200, b"ok\n")
    finally:
        srv.stop()


def test_a_silent_tls_client_is_disconnected_too(tmp_path):
    context, _ = tls_context(tmp_path)
    srv = start(tls=context)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            assert closed_by_server(sock, within=5.0)  # no ClientHello ever sent
    finally:
        srv.stop()


def test_every_host_listens_on_the_same_port():
    srv = start(hosts=("127.0.0.1", "127.0.0.2"))
    try:
        assert srv.addresses == [f"127.0.0.1:{srv.port}", f"127.0.0.2:{srv.port}"]
        assert get(srv.port, "/healthz", host="127.0.0.2") == (200, "ok\n")
        assert get(srv.port, "/healthz", host="127.0.0.1") == (200, "ok\n")
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("env", "hosts"),
    [
        ({}, ("127.0.0.1",)),
        ({"POD_IP": "10.244.1.7", "KUBERNETES_SERVICE_HOST": "10.96.0.1"},
         ("10.244.1.7", "127.0.0.1")),
        ({"POD_IP": "fd00::7"}, ("fd00::7", "127.0.0.1")),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, ("0.0.0.0",)),
    ],
)  # fmt: skip
def test_default_hosts_loopback_outside_a_pod_and_the_pod_ip_inside(env, hosts):
    assert default_hosts(env) == hosts


def test_split_host_port():
    assert split_host_port("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert split_host_port(":0") == ("", 0)
    assert split_host_port("[::1]:9477") == ("::1", 9477)
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        split_host_port("8080")
    with pytest.raises(ValueError, match="0 to 65535"):
        split_host_port("x:70000")
