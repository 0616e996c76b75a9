"""The controller: informers feed caches and the work queue, workers reconcile profiles.

Threads: one informer per watched collection, ``workers`` reconcile threads (each sends at
most one status write at a time, so ``workers`` bounds the write concurrency), the event
sender, the leader elector, an optional resync ticker and the health server. The node cache
(``ClusterIndex``) and the matcher config are shared between the node informer and the workers
under ``_lock``; evaluation is cheap (the index narrows each profile to the nodes with its
label key), so one lock costs nothing measurable under the GIL.

What reaches the queue how: a profile's own change, the first sync and a new leader's catch-up
go straight in; a node event re-evaluates the profiles it can affect after ``coalesce_delay``
(a burst of node events is one evaluation per profile); failed writes come back after the
larger of their back-off, the global token bucket's delay (``rate_limit_qps``/
``rate_limit_burst``) and the server's ``Retry-After``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aimkit.http import HttpServer, Response
from aimkit.kube import KubeClient
from detector.labels import accelerator_id_of
from matcher.api.models import KIND_CLUSTER_PROFILE, KIND_PROFILE, ProfileStatus
from matcher.controller.conflicts import ConflictWatch
from matcher.controller.events import EventRecorder
from matcher.controller.index import AffectedIndex
from matcher.controller.informer import (
    TRANSPORT_ERRORS,
    Informer,
    InformerSettings,
    error_text,
    retry_after_of,
)
from matcher.controller.leader import LeaderElector, LeaderSettings
from matcher.controller.metrics import CONTENT_TYPE, Metrics, ProfileStatusSeries
from matcher.controller.nodecodec import NodeCodec
from matcher.controller.reconciler import (
    CachedProfile,
    Conflict,
    Reconciler,
    cached_profile,
    desired_status,
    profile_deps,
)
from matcher.controller.status_writer import (
    PLURALS,
    ProfileKey,
    StatusWriter,
    collection_path,
)
from matcher.controller.webhook import Webhook, WebhookSettings
from matcher.controller.workqueue import ExponentialBackoff, TokenBucket, WorkQueue
from matcher.core.cluster import ClusterIndex
from matcher.core.config import ConfigError, MatcherConfig
from matcher.core.evaluate import is_cpu_only
from matcher.core.nodes import NodeView, node_view

log = logging.getLogger(__name__)

DEFAULT_CONFIG_MAP = "aim-matcher-config"
#: What to do when the API server does not serve the profile kinds.
CRDS_HINT = "install the CRDs (kubectl apply -k daemonset/)"


@dataclass(frozen=True)
class ControllerSettings:
    identity: str
    #: Namespaces whose AIMProfiles to watch; empty means all namespaces.
    profile_namespaces: tuple[str, ...] = ()
    config_map_name: str = DEFAULT_CONFIG_MAP
    config_map_namespace: str = "default"
    leader_election: bool = True
    lease_name: str = "aim-matcher"
    lease_namespace: str = "default"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    #: Reconcile threads; each sends at most one status write at a time.
    workers: int = 8
    #: Re-evaluate every profile this often (0: never); writes still happen only on change.
    resync_period: float = 0.0
    informer: InformerSettings = field(default_factory=InformerSettings)
    retry_base: float = 0.05
    retry_cap: float = 30.0
    #: Seconds a status write may take before it counts as failed (result="error").
    write_timeout: float = 10.0
    #: Seconds a node event waits before the profiles it affects are re-evaluated, so that a
    #: burst of node events costs one evaluation (and at most one write) per profile.
    coalesce_delay: float = 0.2
    #: The global token bucket over retries of failed writes (0 qps: off).
    rate_limit_qps: float = 20.0
    rate_limit_burst: int = 300
    #: Seconds of nothing but 409s on one profile before it counts as a conflict loop.
    conflict_loop_after: float = 60.0
    #: At most this many ``aim_profile_status`` series (one per profile); 0: none.
    profile_metrics_limit: int = 10000
    events: bool = True
    #: Serve /metrics, /healthz, /readyz here; port None: no server, 0: any free port.
    #: Host "": aimkit.http.default_hosts() (loopback outside a pod, $POD_IP in one).
    health_host: str = ""
    health_port: int | None = None
    #: The admission webhook (matcher/controller/webhook.py); None: not served.
    webhook: WebhookSettings | None = None


class _Callbacks:
    """Adapts three functions to the informer's Handler protocol."""

    def __init__(
        self,
        add: Callable[[str, Any], None],
        update: Callable[[str, Any, Any], None],
        delete: Callable[[str, Any], None],
    ) -> None:
        self.on_add, self.on_update, self.on_delete = add, update, delete


class Controller:
    def __init__(self, api: KubeClient, settings: ControllerSettings) -> None:
        self.settings = settings
        s = settings
        self.metrics = Metrics()
        self._lock = threading.RLock()
        self._cluster = ClusterIndex()
        self._config = MatcherConfig()
        self._nodes_error: str | None = None
        self._config_error: str | None = None
        self._profiles: dict[ProfileKey, CachedProfile] = {}
        self._index: AffectedIndex[ProfileKey] = AffectedIndex()
        self.queue: WorkQueue[ProfileKey] = WorkQueue(
            ExponentialBackoff(s.retry_base, s.retry_cap),
            bucket=TokenBucket(s.rate_limit_qps, s.rate_limit_burst),
        )
        self.conflicts: ConflictWatch[ProfileKey] = ConflictWatch(s.conflict_loop_after)
        self._stopping = threading.Event()
        self._synced = threading.Event()
        # Workers run once every cache has synced, or once every cache but the node cache has
        # and nodes cannot be listed: profiles then show Degraded instead of no status at all.
        self._workable = threading.Event()
        self._threads: list[threading.Thread] = []

        self.leader: LeaderElector | None = None
        if s.leader_election:
            self.leader = LeaderElector(
                api,
                LeaderSettings(
                    name=s.lease_name,
                    namespace=s.lease_namespace,
                    identity=s.identity,
                    lease_duration=s.lease_duration,
                    renew_deadline=s.renew_deadline,
                    retry_period=s.retry_period,
                ),
                on_started_leading=self._started_leading,
                # A follower writes nothing: no conflict of its can be looping.
                on_stopped_leading=self.conflicts.clear,
            )
        self.recorder: EventRecorder | None = None
        if s.events:
            self.recorder = EventRecorder(
                api,
                s.identity,
                on_sent=lambda reason: self.metrics.events.labels(reason).inc(),
                busy=lambda: len(self.queue) > 0,
            )
        self.reconciler = Reconciler(
            profiles=self._reconcilable,
            evaluate_locked=self._evaluate,
            writer=StatusWriter(api, s.write_timeout),
            recorder=self.recorder,
            is_leader=self.is_leader,
            on_write=lambda result: self.metrics.status_writes.labels(result).inc(),
        )
        self.informers = self._informers(api)
        self._node_informer = self.informers[0]
        self.metrics.queue_depth.set_function(lambda: len(self.queue))
        self.metrics.queue_delayed.set_function(self.queue.waiting)
        self.metrics.is_leader.set_function(lambda: 1.0 if self.is_leader() else 0.0)
        self.metrics.nodes.set_function(lambda: len(self._cluster))
        self.metrics.nodes_unavailable.set_function(lambda: 1.0 if self._nodes_error else 0.0)
        self.metrics.profiles_by_status(self._status_counts)
        self.metrics.conflicting_profiles.set_function(lambda: len(self.conflicts.loops()))
        self.metrics.profile_status(
            ProfileStatusSeries(self._status_series, s.profile_metrics_limit)
        )
        self.health: HttpServer | None = None
        if s.health_port is not None:
            self.health = self._health_server(s.health_host, s.health_port)
        self.webhook: Webhook | None = None
        if s.webhook is not None:
            self.webhook = Webhook(
                api,
                s.webhook,
                profiles=self._profiles,
                config=lambda: self._config,
                profiles_synced=self._profiles_synced,
                is_leader=self.is_leader,
                metrics=self.metrics,
                recorder=EventRecorder(api, s.identity) if s.events else None,
                informer_settings=s.informer,
            )
            if self.health is not None:
                self.health.readyz.add("webhook", self.webhook.problem)

    # -- wiring ---------------------------------------------------------------------------

    def _informers(self, api: KubeClient) -> list[Informer[Any]]:
        s = self.settings
        common: dict[str, Any] = {
            "settings": s.informer,
            "on_synced": self._check_synced,
            "on_storage_reset": self._storage_reset,
        }

        def restarts(resource: str) -> Callable[[str], None]:
            return lambda reason: self.metrics.watch_restarts.labels(resource, reason).inc()

        informers: list[Informer[Any]] = [
            Informer(
                "nodes",
                api,
                "/api/v1/nodes",
                node_view,
                _Callbacks(self._node_added, self._node_updated, self._node_deleted),
                on_health=self._nodes_health,
                on_restart=restarts("nodes"),
                codec=NodeCodec(),
                **common,
            ),
            Informer(
                "configmap",
                api,
                f"/api/v1/namespaces/{s.config_map_namespace}/configmaps",
                lambda obj: dict(obj.get("data") or {}),
                _Callbacks(
                    lambda _k, data: self._apply_config(data),
                    lambda _k, _old, data: self._apply_config(data),
                    lambda _k, _old: self._apply_config(None),
                ),
                on_restart=restarts("configmaps"),
                query={"fieldSelector": f"metadata.name={s.config_map_name}"},
                **common,
            ),
        ]
        profile_handler = _Callbacks(
            self._profile_changed, self._profile_updated, self._profile_deleted
        )
        cluster_plural = PLURALS[KIND_CLUSTER_PROFILE]
        informers.append(
            Informer(
                cluster_plural,
                api,
                collection_path(KIND_CLUSTER_PROFILE),
                cached_profile,
                profile_handler,
                on_restart=restarts(cluster_plural),
                missing_hint=CRDS_HINT,
                **common,
            )
        )
        plural = PLURALS[KIND_PROFILE]
        for namespace in s.profile_namespaces or ("",):
            informers.append(
                Informer(
                    f"{plural}/{namespace}" if namespace else plural,
                    api,
                    collection_path(KIND_PROFILE, namespace),
                    cached_profile,
                    profile_handler,
                    on_restart=restarts(plural),
                    missing_hint=CRDS_HINT,
                    **common,
                )
            )
        return informers

    def _health_server(self, host: str, port: int) -> HttpServer:
        server = HttpServer([host] if host else [], port, name="health")
        server.route("/metrics", lambda _req: Response(200, self.metrics.render(), CONTENT_TYPE))
        server.healthz.add("threads", self._check_threads)
        server.healthz.add("conflicts", self.conflicts.check)
        server.readyz.add("caches", self._check_caches)
        server.readyz.add("config", self._check_config)
        return server

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        log.info(
            "watching",
            extra={
                "configmap": f"{s.config_map_namespace}/{s.config_map_name}",
                "profile_namespaces": ",".join(s.profile_namespaces) or "(all)",
            },
        )
        if self.health is not None:
            self.health.start()
            log.info("serving health", extra={"addresses": ",".join(self.health.addresses)})
        if self.recorder is not None:
            self.recorder.start()
        for informer in self.informers:
            informer.start()
        if self.webhook is not None:
            self.webhook.start()
        for number in range(self.settings.workers):
            thread = threading.Thread(target=self._worker, name=f"worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.settings.resync_period > 0:
            thread = threading.Thread(target=self._resync, name="resync", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.leader is not None:
            self.leader.start()

    def stop(self, release: bool = True) -> None:
        """Stop everything; ``release=False`` leaves the lease held (simulates a crash)."""
        self._stopping.set()
        if self.leader is not None:
            self.leader.stop(release=release)
        self.queue.shut_down()
        for informer in self.informers:
            informer.stop()
        for thread in self._threads:
            thread.join(5.0)
        if self.recorder is not None:
            self.recorder.stop()
        if self.webhook is not None:
            self.webhook.stop()
        if self.health is not None:
            self.health.stop()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def is_leader(self) -> bool:
        if self._stopping.is_set():
            return False
        return self.leader is None or self.leader.is_leader()

    def ready(self) -> bool:
        """Caches synced and the matcher ConfigMap readable (a broken one needs a human)."""
        return self._synced.is_set() and not self._stopping.is_set() and not self.config_error

    @property
    def config_error(self) -> str | None:
        return self._config_error

    def healthy(self) -> bool:
        return self._check_threads() is None

    # -- named checks (/healthz, /readyz) ---------------------------------------------------

    def _check_threads(self) -> str | None:
        if self._stopping.is_set():
            return "shutting down"
        dead = [t.name for t in self._threads if not t.is_alive()]
        dead += [f"informer-{i.name}" for i in self.informers if not i.alive]
        if self.recorder is not None and not self.recorder.alive:
            dead.append("events")
        dead += self.webhook.dead() if self.webhook is not None else []
        return f"threads stopped: {', '.join(dead)}" if dead else None

    def _check_caches(self) -> str | None:
        if self._stopping.is_set():
            return "shutting down"
        if self._synced.is_set():
            return None
        waiting = [
            f"{i.name} ({i.last_error})" if i.last_error else i.name
            for i in self.informers
            if not i.synced.is_set()
        ]
        return f"caches not synced: {', '.join(waiting)}"

    def _check_config(self) -> str | None:
        error = self._config_error
        if error is None:
            return None
        s = self.settings
        return f"invalid ConfigMap {s.config_map_namespace}/{s.config_map_name}: {error}"

    def node(self, name: str) -> NodeView | None:
        """The cached projection of a node."""
        with self._lock:
            return self._cluster.get(name)

    @property
    def nodes_error(self) -> str | None:
        return self._nodes_error

    def _check_synced(self) -> None:
        with self._lock:
            if all(informer.synced.is_set() for informer in self.informers):
                if not self._synced.is_set():
                    log.info(
                        "caches synced",
                        extra={"nodes": len(self._cluster), "profiles": len(self._profiles)},
                    )
                self._synced.set()
                self._workable.set()
                return
            others_synced = all(
                informer.synced.is_set()
                for informer in self.informers
                if informer is not self._node_informer
            )
            if not others_synced or self._nodes_error is None or self._workable.is_set():
                return
            log.warning(
                "profile caches synced but nodes cannot be listed: profiles show Degraded",
                extra={"profiles": len(self._profiles), "error": self._nodes_error},
            )
            self._workable.set()
        # When the nodes come back, _nodes_health enqueues everything again.
        self.enqueue_all()

    def _started_leading(self) -> None:
        # Whatever happened while we followed, bring every profile up to date.
        self.enqueue_all()
        if self.webhook is not None:
            self.webhook.leading()

    def _profiles_synced(self) -> bool:
        """The profile and ConfigMap caches are filled (what admission reads; nodes it does not)."""
        return all(i.synced.is_set() for i in self.informers if i is not self._node_informer)

    def enqueue_all(self) -> None:
        self.queue.add_all(list(self._profiles))

    def _resync(self) -> None:
        while not self._stopping.wait(self.settings.resync_period):
            self.enqueue_all()

    # -- workers --------------------------------------------------------------------------

    def _worker(self) -> None:
        while not self._stopping.is_set():
            # Evaluating before every cache is filled would publish wrong statuses; a node cache
            # that cannot be filled is the exception (see _check_synced).
            if not self._workable.wait(0.5):
                continue
            key = self.queue.get()
            if key is None:
                return
            try:
                with self.metrics.reconcile_duration.time():
                    self.reconciler.reconcile(key)
            except Conflict:
                self.conflicts.conflicted(key)
                self.queue.add_rate_limited(key)
            except TRANSPORT_ERRORS as exc:
                log.warning(
                    "status write failed: %s",
                    error_text(exc),
                    extra={"profile": str(key), "retries": self.queue.num_requeues(key)},
                )
                # A 429/503's Retry-After is a floor under the back-off, not a replacement.
                self.queue.add_rate_limited(key, at_least=retry_after_of(exc))
            except Exception:
                log.exception("reconcile failed", extra={"profile": str(key)})
                self.queue.add_rate_limited(key)
            else:
                self.conflicts.resolved(key)
                self.queue.forget(key)
            finally:
                self.queue.done(key)

    def _reconcilable(self, key: ProfileKey) -> CachedProfile | None:
        """The cached profile, or None while it cannot be evaluated truthfully yet.

        Before the node cache has ever synced, a CPU-only profile (never Degraded) would be
        written with a node count of zero; it waits for the first node list instead.
        """
        cached = self._profiles.get(key)
        if (
            cached is not None
            and cached.profile is not None
            and not self._node_informer.synced.is_set()
            and is_cpu_only(cached.profile.spec)
        ):
            return None
        return cached

    def _evaluate(self, cached: CachedProfile) -> ProfileStatus:
        with self._lock:
            return desired_status(
                cached, self._cluster, self._config, self._nodes_error, datetime.now(UTC)
            )

    # -- node events ----------------------------------------------------------------------

    def _node_added(self, _key: str, view: NodeView) -> None:
        self._node_changed(None, view)

    def _node_updated(self, _key: str, old: NodeView, new: NodeView) -> None:
        if old != new:
            self._node_changed(old, new)

    def _node_deleted(self, _key: str, old: NodeView) -> None:
        self._node_changed(old, None)

    def _node_changed(self, old: NodeView | None, new: NodeView | None) -> None:
        with self._lock:
            # Accelerator models this change may add to or remove from the cluster.
            toggled = _accelerator_keys(old) ^ _accelerator_keys(new)
            present_before = {k for k in toggled if self._cluster.nodes_with_key(k)}
            if new is None:
                assert old is not None
                self._cluster.remove(old.name)
            elif not self._cluster.upsert(new):
                return  # a status heartbeat: nothing the matcher sees changed
            if self._nodes_error is not None:
                # The re-list that ends an outage: profiles stay Degraded until it is complete
                # and _nodes_health enqueues every one of them, so no half-filled count is
                # written in between.
                return
            if not self._node_informer.synced.is_set():
                # The first list: no worker runs before it ends, and every profile is queued
                # by its own informer and by the leader's catch-up. Looking up the profiles
                # each of 20,000 nodes affects would cost millions of queue calls for nothing.
                return
            affected = self._index.affected_by_node(old, new)
            present_after = {k for k in toggled if self._cluster.nodes_with_key(k)}
            # In a cluster without any accelerator label those messages count the nodes and
            # the ones the detector ran on: a node joining, leaving or getting its mark counts.
            counted = (old is None) != (new is None) or (
                old is not None and new is not None and old.detector_ran != new.detector_ran
            )
            no_labels = counted and not any(
                accelerator_id_of(k) is not None for k in self._cluster.label_keys()
            )
            if present_before != present_after or no_labels:
                # A model appeared in or left the cluster: NotAvailable messages of profiles
                # whose label no node has name the nearest models the cluster has. The writer
                # skips the ones whose status comes out unchanged (most: see diagnostics).
                for label_key in self._index.label_keys():
                    if not self._cluster.nodes_with_key(label_key):
                        affected |= self._index.with_label(label_key)
        delay = self.settings.coalesce_delay
        for key in affected:
            self.queue.add_coalesced(key, delay)

    def _nodes_health(self, ok: bool, error: str) -> None:
        with self._lock:
            before = self._nodes_error
            self._nodes_error = None if ok else error
            changed = before != self._nodes_error
        if not ok:
            self._check_synced()
        if changed:
            if ok:
                log.info("nodes can be listed again")
            else:
                log.error("cannot list or watch nodes: %s", error)
            self.enqueue_all()

    # -- profile events -------------------------------------------------------------------

    def _profile_changed(self, _key: str, cached: CachedProfile) -> None:
        with self._lock:
            self._profiles[cached.key] = cached
            self._index.put(cached.key, profile_deps(cached, self._config))
        # Our own status write coming back through the watch: evaluating it again would find
        # the status it already has (a node or config change since then queued it anyway).
        if not self.reconciler.observed(cached):
            self.queue.add(cached.key)

    def _profile_updated(self, key: str, _old: CachedProfile, new: CachedProfile) -> None:
        self._profile_changed(key, new)

    def _profile_deleted(self, _key: str, old: CachedProfile) -> None:
        with self._lock:
            self._profiles.pop(old.key, None)
            self._index.remove(old.key)
        self.reconciler.forget(old.key)
        self.conflicts.resolved(old.key)

    def _storage_reset(self, found_by: str) -> None:
        """An informer found the API server's storage went back (restored or wiped). The
        other caches share that storage but may not have seen versions high enough to tell
        (a quiet resource's watch moves little): they re-list too. Notes of the
        resourceVersions we wrote name versions the storage no longer has: dropped."""
        for informer in self.informers:
            if informer.name != found_by:
                informer.relist()
        dropped = self.reconciler.drop_notes()
        log.warning(
            "API server storage went back: every cache re-lists, notes of written "
            "resourceVersions dropped",
            extra={"informer": found_by, "notes": dropped},
        )

    # -- configuration --------------------------------------------------------------------

    def _apply_config(self, data: Mapping[str, str] | None) -> None:
        s = self.settings
        try:
            config = MatcherConfig.from_configmap_data(data)
        except ConfigError as exc:
            # Keep the last good configuration: a typo must not flip every profile.
            self._config_error = str(exc)
            log.error(
                "ignoring invalid matcher config: %s",
                exc,
                extra={"configmap": f"{s.config_map_namespace}/{s.config_map_name}"},
            )
            return
        self._config_error = None
        with self._lock:
            if config == self._config:
                return
            self._config = config
            for key, cached in self._profiles.items():
                self._index.put(key, profile_deps(cached, config))
        log.info("matcher config changed", extra={"config": repr(config)})
        self.enqueue_all()

    # -- metrics --------------------------------------------------------------------------

    def _status_counts(self) -> Mapping[str, int]:
        with self._lock:
            profiles = list(self._profiles.values())
        return Counter(str((p.status or {}).get("status") or "Pending") for p in profiles)

    def _status_series(self) -> list[tuple[ProfileKey, str]]:
        with self._lock:
            profiles = list(self._profiles.values())
        return [(p.key, str((p.status or {}).get("status") or "Pending")) for p in profiles]

    def statuses(self) -> dict[ProfileKey, Mapping[str, Any] | None]:
        with self._lock:
            return {key: cached.status for key, cached in self._profiles.items()}


def _accelerator_keys(view: NodeView | None) -> set[str]:
    if view is None:
        return set()
    return {k for k in view.labels if accelerator_id_of(k) is not None}
