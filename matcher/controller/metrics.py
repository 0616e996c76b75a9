"""The controller's Prometheus metrics.

Each controller gets its own registry so that several controllers can live in one process
(the tests run two replicas side by side). They are served, with ``/healthz`` and
``/readyz``, by ``aimkit.http`` (see ``manager.Controller``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from aimkit.build import register_build_info

#: The Content-Type of :meth:`Metrics.render`.
CONTENT_TYPE = CONTENT_TYPE_LATEST

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


class ProfileStatusSeries(Collector):
    """``aim_profile_status{kind,namespace,name,status} 1``: one series per profile, for the
    status it carries now, read from the cache at scrape time.

    Cardinality is bounded by construction: exactly one series per profile (never one per
    status it ever had), and a deleted profile's series is gone at the next scrape, since the
    cache no longer holds it. ``limit`` caps the count for clusters with very many profiles:
    past it the series of the profiles that sort last (kind, namespace, name) are left out and
    ``aim_matcher_profile_status_omitted`` says how many.
    """

    def __init__(self, series: Callable[[], Iterable[tuple[Any, str]]], limit: int) -> None:
        self._series = series
        self._limit = limit

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "aim_profile_status",
            "1 for each profile, labelled with the status it carries (Pending: none yet).",
            labels=["kind", "namespace", "name", "status"],
        )
        rows = sorted(self._series(), key=lambda row: tuple(row[0]))
        kept = rows[: max(0, self._limit)]
        for key, status in kept:
            family.add_metric([key.kind, key.namespace, key.name, status], 1)
        yield family
        omitted = GaugeMetricFamily(
            f"{PREFIX}_profile_status_omitted",
            "Profiles left out of aim_profile_status by --profile-metrics-limit.",
        )
        omitted.add_metric([], len(rows) - len(kept))
        yield omitted


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
        self.queue_delayed = Gauge(
            f"{PREFIX}_queue_delayed",
            "Profiles waiting out a delay before they are queued: coalescing of node events, "
            "the rate limiter, a retry's back-off or Retry-After.",
            registry=r,
        )
        self.status_writes = Counter(
            f"{PREFIX}_status_writes",
            "Status patches sent, by result (ok, conflict, gone, error: no answer counts too).",
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
        self.conflicting_profiles = Gauge(
            f"{PREFIX}_conflicting_profiles",
            "Profiles whose status writes have done nothing but conflict (409) for a while "
            "(a conflict loop; /healthz fails meanwhile).",
            registry=r,
        )
        self.nodes = Gauge(f"{PREFIX}_nodes", "Nodes in the cache.", registry=r)
        self.nodes_unavailable = Gauge(
            f"{PREFIX}_nodes_unavailable",
            "1 while nodes cannot be listed or watched (profiles show Degraded).",
            registry=r,
        )
        self.build_info = register_build_info(r, f"{PREFIX}_build_info")
        # The admission webhook (matcher/webhook), on every replica that serves it.
        self.admissions = Counter(
            f"{PREFIX}_admissions",
            "Pod admissions by outcome (mutated, unchanged, denied, skipped, not-synced, error) "
            "and the profile resolved (kind/namespace/name; empty when none).",
            ["outcome", "profile"],
            registry=r,
        )
        self.admission_duration = Histogram(
            f"{PREFIX}_admission_duration_seconds",
            "Time to judge one pod admission (decode to encoded answer; no TLS handshake).",
            buckets=(0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5),
            registry=r,
        )
        self.webhook_cert_expiry = Gauge(
            f"{PREFIX}_webhook_certificate_expiry_timestamp_seconds",
            "When the serving certificate this replica presents expires (Unix time; 0: none).",
            registry=r,
        )
        self.webhook_cert_writes = Counter(
            f"{PREFIX}_webhook_certificate_writes",
            "Writes of the webhook's Secret and caBundle by the leader, by object (secret, "
            "webhookconfiguration) and result (ok, conflict, error).",
            ["object", "result"],
            registry=r,
        )

    def profiles_by_status(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_ProfilesByStatus(counts))

    def profile_status(self, collector: ProfileStatusSeries) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)
