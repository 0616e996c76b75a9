"""The agent's Prometheus metrics and its ``/metrics``, ``/healthz`` and ``/readyz`` endpoints.

``/healthz`` (liveness) answers 200 while the loop is alive: it has not stopped and its last
cycle ended recently enough (a wedged loop fails liveness and gets restarted). ``/readyz``
answers 200 once labels have been published and while the last cycle's probes and publish
succeeded, else 503 with the reason in the body. The agent keeps publishing and keeps the last
good labels while unready; readiness only reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from detector.facts import GpuFacts

log = logging.getLogger(__name__)

#: Default port of the metrics and health endpoints (0 disables them).
DEFAULT_METRICS_PORT = 9477

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The agent's metrics, in a registry of their own (tests run several agents in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.probe_duration = Histogram(
            "aim_detector_probe_duration_seconds",
            "Time one probe took, by source (gpu, cpu).",
            ["source"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.probe_errors = Counter(
            "aim_detector_probe_errors_total",
            "Probes that failed, by source and reason (error, timeout).",
            ["source", "reason"],
            registry=r,
        )
        self.devices = Gauge(
            "aim_detector_devices",
            "Devices the last good probe found: physical GPUs by model, CPU sockets by generation.",
            ["source", "model"],
            registry=r,
        )
        self.label_writes = Counter(
            "aim_detector_label_writes_total",
            "Writes of the labels (Node patches or features files), by result (success, error).",
            ["result"],
            registry=r,
        )
        self.last_good_probe = Gauge(
            "aim_detector_last_good_probe_timestamp_seconds",
            "Unix time of the last successful probe, by source.",
            ["source"],
            registry=r,
        )
        self.labels = Gauge(
            "aim_detector_labels",
            "Labels the agent publishes now.",
            registry=r,
        )
        self.pending_removals = Gauge(
            "aim_detector_pending_removals",
            "Labels the last probe no longer saw, kept until the removal is confirmed.",
            registry=r,
        )
        self.healthy = Gauge(
            "aim_detector_healthy",
            "1 when the last cycle's probes and publish succeeded, else 0.",
            registry=r,
        )
        self.gpu_backend = Gauge(
            "aim_detector_gpu_backend",
            "1 for the backend that produced the last good GPU reading; reason says why sysfs "
            "answered in auto mode (amdsmi-unavailable, amdsmi-disagrees:<kind>) or 'chosen'.",
            ["backend", "reason"],
            registry=r,
        )
        self.amdsmi_disagreements = Counter(
            "aim_detector_amdsmi_disagreements_total",
            "amdsmi readings not used because they disagree with sysfs, by kind "
            "(gpus, identity, modes, partitions, incomplete).",
            ["kind"],
            registry=r,
        )
        self.gpu_partition_sources = Gauge(
            "aim_detector_gpu_partition_count_source",
            "GPUs of the last good reading by where their partition count came from "
            "(mode, kfd, kfd-node-count, amdsmi, table, unknown).",
            ["source"],
            registry=r,
        )
        self.gpus_not_counted = Gauge(
            "aim_detector_gpus_not_counted",
            "AMD GPUs on PCI left out because amdgpu does not drive them, by driver "
            "(vfio-pci, ..., none while no driver is bound).",
            ["driver"],
            registry=r,
        )
        self._device_series: dict[str, set[str]] = {}
        self._series: dict[int, set[tuple[str, ...]]] = {}

    def set_devices(self, source: str, counts: Mapping[str, int]) -> None:
        """Replace the device gauges of ``source`` (series of models gone are removed)."""
        for model in self._device_series.get(source, set()) - counts.keys():
            self.devices.remove(source, model)
        for model, count in counts.items():
            self.devices.labels(source, model).set(count)
        self._device_series[source] = set(counts)

    def _replace(self, gauge: Gauge, values: Mapping[tuple[str, ...], float]) -> None:
        """Set a labelled gauge to exactly ``values`` (series not in it are removed)."""
        before = self._series.get(id(gauge), set())
        for labels in before - values.keys():
            gauge.remove(*labels)
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        self._series[id(gauge)] = set(values)

    def observe_gpu(self, facts: GpuFacts) -> None:
        """The provenance of a good GPU reading: backend, partition-count sources, unbound GPUs."""
        if facts.fallback and facts.fallback.startswith("amdsmi-disagrees:"):
            self.amdsmi_disagreements.labels(facts.fallback.split(":", 1)[1]).inc()
        self._replace(self.gpu_backend, {(facts.source, facts.fallback or "chosen"): 1})
        sources: dict[tuple[str, ...], float] = {}
        for device in facts.devices:
            key = (device.partitions_from,)
            sources[key] = sources.get(key, 0) + 1
        self._replace(self.gpu_partition_sources, sources)
        unbound: dict[tuple[str, ...], float] = {}
        for gpu in facts.unbound:
            key = (gpu.driver or "none",)
            unbound[key] = unbound.get(key, 0) + 1
        self._replace(self.gpus_not_counted, unbound)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Health:
    """Liveness and readiness, updated by the loop and read by the HTTP server's threads."""

    def __init__(self, stall_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_after = stall_after
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_cycle: float | None = None
        self._stopped = False
        self._published_once = False
        self._unready_reason = "no cycle has completed yet"
        self._holds: dict[str, str] = {}

    def cycle_done(self, probe_errors: Mapping[str, str], publish_error: str | None) -> None:
        with self._lock:
            self._last_cycle = self._clock()
            if publish_error is None:
                self._published_once = True
            reasons = [f"{src} probe failed: {err}" for src, err in sorted(probe_errors.items())]
            if publish_error is not None:
                reasons.append(f"publish failed: {publish_error}")
            elif not self._published_once:
                reasons.append("labels not published yet")
            self._unready_reason = "; ".join(reasons)

    def hold(self, name: str, reason: str | None) -> None:
        """Keep readiness down for ``name`` while ``reason`` is set; None releases it (the node
        fence holds readiness until it is proven, detector/fence.py)."""
        with self._lock:
            if reason is None:
                self._holds.pop(name, None)
            else:
                self._holds[name] = reason

    def stopped(self) -> None:
        with self._lock:
            self._stopped = True

    def liveness(self) -> tuple[bool, str]:
        with self._lock:
            if self._stopped:
                return False, "the loop has stopped"
            since = self._clock() - (self._last_cycle or self._started)
            if since > self._stall_after:
                return False, f"no cycle completed for {since:.0f}s"
            return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        with self._lock:
            if self._stopped:
                return False, "the loop has stopped"
            reasons = [*self._holds.values(), *filter(None, [self._unready_reason])]
            if reasons:
                return False, "; ".join(reasons)
            return True, "ok"


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a background thread."""

    def __init__(self, metrics: Metrics, health: Health, address: str, port: int) -> None:
        handler = _handler(metrics, health)
        self._server = ThreadingHTTPServer((address, port), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(metrics: Metrics, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/livez"):
                self._send_check(*health.liveness())
            elif path == "/readyz":
                self._send_check(*health.readiness())
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send_check(self, ok: bool, reason: str) -> None:
            self._send(200 if ok else 503, f"{reason}\n".encode(), "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Probes hit these endpoints every few seconds: keep them out of the log.
            log.debug("http " + format, *args)

    return Handler
