"""Health/metrics servers under abusive clients: memory and threads, before and after.

Baseline: ``http.server.ThreadingHTTPServer`` with a ``BaseHTTPRequestHandler``, exactly the
shape both agents served ``/metrics``, ``/healthz`` and ``/readyz`` with before ``aimkit.http``
(one thread per connection, no timeouts, the standard library's header limits of 100 lines x
64 KiB). Now: ``aimkit.http.HttpServer`` with its default limits.

Each server runs in a process of its own; its resident memory (``VmRSS``) and thread count are
sampled from ``/proc`` while the clients hold their connections, and compared with the idle
process. Scenarios (issue 12):

1. 2,000 half-open connections: connected, nothing sent, held for 3 s.
2. 20 clients each sending a request head of 99 header lines of 65,000 bytes (just under the
   standard library's per-line limit), never finished, held for 3 s.

In both, a kubelet-style probe (``GET /healthz``, 5 s timeout) is sent while the attack is held:
its answer says whether the agent would have been restarted.

Run: ``.venv/bin/python -m benchmarks.bench_http``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOLD_S = 3.0
HALF_OPEN = 2000
BIG_CLIENTS = 20
BIG_LINES = 99
BIG_LINE_BYTES = 65_000
#: Growth allowed for the new server (issue 12: "no more than a few MB").
TARGET_MIB = 5.0


def _serve_baseline(port_file: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


def _serve_aimkit(port_file: Path) -> None:
    from aimkit.http import HttpServer  # noqa: PLC0415

    server = HttpServer(["127.0.0.1"], 0, name="bench").start()
    server.healthz.add("ping", lambda: None)
    port_file.write_text(str(server.port))
    threading.Event().wait()


def _status(pid: int) -> tuple[float, int]:
    """(VmRSS MiB, threads) of a process."""
    rss, threads = 0.0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


@contextlib.contextmanager
def _server(kind: str, tmp: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port_file = tmp / f"{kind}.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_http", "--serve", kind, str(port_file)]
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.02)
        port = int(port_file.read_text())
        _probe(port)  # warm up: first request's allocations are not the attack's
        time.sleep(0.3)
        yield proc, port
    finally:
        proc.kill()
        proc.wait()


def _probe(port: int) -> str:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    except OSError as err:
        return f"failed ({type(err).__name__})"
    finally:
        conn.close()
    return f"{status} in {(time.perf_counter() - started) * 1000:.0f} ms"


def _half_open(port: int) -> list[socket.socket]:
    socks = []
    for _ in range(HALF_OPEN):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    return socks


def _big_headers(port: int) -> list[socket.socket]:
    line = b"X-Big: " + b"a" * (BIG_LINE_BYTES - 9) + b"\r\n"
    socks: list[socket.socket] = []

    def send(sock: socket.socket) -> None:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
            for _ in range(BIG_LINES):
                sock.sendall(line)
        except OSError:
            pass  # refused and closed: the point

    threads = []
    for _ in range(BIG_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(sock)
        threads.append(threading.Thread(target=send, args=(sock,), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return socks


def measure(kind: str, attack: str, tmp: Path) -> dict[str, object]:
    with _server(kind, tmp) as (proc, port):
        idle_rss, idle_threads = _status(proc.pid)
        socks = _half_open(port) if attack == "half-open" else _big_headers(port)
        peak_rss, peak_threads = idle_rss, idle_threads
        deadline = time.monotonic() + HOLD_S
        probe = ""
        while time.monotonic() < deadline:
            rss, threads = _status(proc.pid)
            peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
            if not probe and time.monotonic() > deadline - HOLD_S / 2:
                probe = _probe(port)
            time.sleep(0.05)
        for sock in socks:
            sock.close()
    return {
        "connections": len(socks),
        "growth_mib": peak_rss - idle_rss,
        "idle_mib": idle_rss,
        "threads": peak_threads,
        "probe": probe,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        kind, port_file = args.serve
        (_serve_aimkit if kind == "aimkit" else _serve_baseline)(Path(port_file))
        return 0

    import tempfile  # noqa: PLC0415

    ok = True
    labels = {
        "baseline": "ThreadingHTTPServer (before)",
        "aimkit": "aimkit.http.HttpServer (now)",
    }
    attacks = {
        "half-open": f"{HALF_OPEN} half-open connections",
        "big-headers": f"{BIG_CLIENTS} clients x {BIG_LINES} x {BIG_LINE_BYTES // 1000} KB headers",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for attack, title in attacks.items():
            print(title)
            for kind, label in labels.items():
                r = measure(kind, attack, Path(tmp))
                verdict = ""
                if kind == "aimkit":
                    good = float(r["growth_mib"]) < TARGET_MIB  # type: ignore[arg-type]
                    ok = ok and good
                    verdict = f"  target < {TARGET_MIB:.0f} MiB  {'OK' if good else 'MISSED'}"
                print(
                    f"  {label:<30} RSS {r['idle_mib']:5.1f} MiB idle, "
                    f"+{r['growth_mib']:6.2f} MiB held; {r['threads']:>5} threads; "
                    f"probe {r['probe']}{verdict}"
                )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
