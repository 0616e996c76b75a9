"""Prometheus metrics and the /metrics, /healthz, /readyz HTTP server.

Each controller gets its own registry so that several controllers can live in one process
(the tests run two replicas side by side).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PREFIX = "aim_matcher"


class _ProfilesByStatus(Collector):
    """Counts profiles by ``status.status`` at scrape time, from the cache."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{PREFIX}_profiles", "Profiles by the status they carry.", labels=["status"]
        )
        for status, count in sorted(self._counts().items()):
            family.add_metric([status], count)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time to evaluate one profile and write its status when it changed.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Profiles waiting to be reconciled.", registry=r
        )
        self.status_writes = Counter(
            f"{PREFIX}_status_writes",
            "Status patches sent, by result (ok, conflict, error).",
            ["result"],
            registry=r,
        )
        self.events = Counter(
            f"{PREFIX}_events", "Kubernetes Events recorded, by reason.", ["reason"], registry=r
        )
        self.watch_restarts = Counter(
            f"{PREFIX}_watch_restarts",
            "Watches restarted, by resource and reason (closed, error, gone).",
            ["resource", "reason"],
            registry=r,
        )
        self.is_leader = Gauge(
            f"{PREFIX}_is_leader", "1 when this replica holds the lease.", registry=r
        )
        self.nodes = Gauge(f"{PREFIX}_nodes", "Nodes in the cache.", registry=r)
        self.nodes_unavailable = Gauge(
            f"{PREFIX}_nodes_unavailable",
            "1 while nodes cannot be listed or watched (profiles show Degraded).",
            registry=r,
        )

    def profiles_by_status(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_ProfilesByStatus(counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """Serves /metrics, /healthz (threads alive) and /readyz (caches synced)."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, outer.metrics.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = outer.healthy()
                    self._send(200 if ok else 500, b"ok\n" if ok else b"unhealthy\n")
                elif path == "/readyz":
                    ok = outer.ready()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"caches not synced\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would drown the structured log

        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
