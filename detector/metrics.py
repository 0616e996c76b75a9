"""The agent's Prometheus metrics and its ``/metrics``, ``/healthz`` and ``/readyz`` endpoints.

``/healthz`` (liveness, check ``loop``) answers 200 while the loop is alive: it has not stopped
and its last cycle ended recently enough (a wedged loop fails liveness and gets restarted).
``/readyz`` (checks ``probes`` and ``publish``, and ``node-fence`` until the node fence is
proven) answers 200 once labels have been published and while the last cycle's probes and
publish succeeded, else 503 naming each failing check and why. The agent keeps publishing and
keeps the last good labels while unready; readiness only reports. The server is
:class:`aimkit.http.HttpServer` (timeouts, a connection cap, small request limits).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from aimkit.build import register_build_info
from aimkit.http import HttpServer, Response
from detector.facts import GpuFacts

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
        self.build_info = register_build_info(r, "aim_detector_build_info")
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
        self._probe_reason = "no cycle has completed yet"
        self._publish_reason = "labels not published yet"
        self._holds: dict[str, str] = {}

    def cycle_done(self, probe_errors: Mapping[str, str], publish_error: str | None) -> None:
        with self._lock:
            self._last_cycle = self._clock()
            if publish_error is None:
                self._published_once = True
            self._probe_reason = "; ".join(
                f"{src} probe failed: {err}" for src, err in sorted(probe_errors.items())
            )
            if publish_error is not None:
                self._publish_reason = f"publish failed: {publish_error}"
            elif not self._published_once:
                self._publish_reason = "labels not published yet"
            else:
                self._publish_reason = ""

    def hold(self, name: str, reason: str | None) -> None:
        """Keep readiness down for ``name`` while ``reason`` is set; None releases it (the node
        fence holds readiness until it is proven, detector/fence.py)."""
        with self._lock:
            if reason is None:
                self._holds.pop(name, None)
            else:
                self._holds[name] = reason

    def hold_reason(self, name: str) -> str | None:
        """Why ``name`` holds readiness down, or None (its named check on /readyz)."""
        with self._lock:
            return self._holds.get(name)

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
            reasons = [*self._holds.values()]
            reasons += [r for r in (self._probe_reason, self._publish_reason) if r]
            if reasons:
                return False, "; ".join(reasons)
            return True, "ok"

    # -- named checks (aimkit.http) ---------------------------------------------------------

    def check_loop(self) -> str | None:
        ok, reason = self.liveness()
        return None if ok else reason

    def check_probes(self) -> str | None:
        with self._lock:
            return "the loop has stopped" if self._stopped else (self._probe_reason or None)

    def check_publish(self) -> str | None:
        with self._lock:
            return "the loop has stopped" if self._stopped else (self._publish_reason or None)


def serve(
    metrics: Metrics,
    health: Health,
    hosts: Sequence[str],
    port: int,
    holds: Sequence[str] = (),
) -> HttpServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a started server (see the docstring).

    ``holds``: names of :meth:`Health.hold` reasons, each a readiness check of its own (the
    node fence's ``node-fence``).
    """
    server = HttpServer(hosts, port, name="metrics")
    server.route("/metrics", lambda _req: Response(200, metrics.exposition(), CONTENT_TYPE_LATEST))
    server.healthz.add("loop", health.check_loop)
    for name in holds:
        server.readyz.add(name, functools.partial(health.hold_reason, name))
    server.readyz.add("probes", health.check_probes)
    server.readyz.add("publish", health.check_publish)
    return server.start()
