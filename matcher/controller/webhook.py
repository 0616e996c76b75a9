"""The admission webhook inside ``aim-matcher run``: what it watches, who rotates its
certificate, where it listens, what it counts and reports. ``Controller`` starts and stops it
with everything else (kopf's reactor starts its admission server the same way).

- Two informers, each on one object by name: the webhook's Secret (every replica loads the
  serving pair from it into the TLS listener the moment it changes; no volume, no restart) and,
  when the matcher manages its own certificates, the MutatingWebhookConfiguration.
- The leader's :class:`~matcher.controller.certs.CertReconciler` (self-managed certificates
  only; with cert-manager the Secret and the caBundle are cert-manager's).
- The listener (``matcher.webhook.server``), on every replica, answering from the controller's
  profile cache through :func:`profile_lookup`: no API call per admission.
- Metrics per outcome and profile, a latency histogram, the certificate's expiry; a Warning
  Event on a profile whose pods are refused (off the request path, at most one per profile and
  reason every ten minutes per replica).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aimkit.kube import KubeClient
from aimkit.logs import Throttle
from matcher.api.models import Profile
from matcher.controller.certs import (
    WEBHOOK_CONFIGURATIONS,
    CertReconciler,
    CertSettings,
    ConfigurationView,
    SecretView,
    configuration_view,
    secret_view,
)
from matcher.controller.events import EventRecorder
from matcher.controller.informer import Informer, InformerSettings
from matcher.controller.metrics import Metrics
from matcher.controller.reconciler import CachedProfile
from matcher.controller.status_writer import ProfileKey
from matcher.core.admission import OUTCOME_DENIED, Decision, Lookup
from matcher.core.config import MatcherConfig
from matcher.webhook.certs import TLS_CERT, TLS_KEY, CertError, Pair, Policy
from matcher.webhook.review import AdmissionRequest
from matcher.webhook.server import BEFORE_SYNC_DENY, PodAdmission, TlsStore, WebhookServer

log = logging.getLogger(__name__)

#: The matcher keeps the CA and serving pair itself, or reads what cert-manager keeps.
CERTS_SELF = "self"
CERTS_EXTERNAL = "external"
REASON_DENIED = "PodAdmissionDenied"


@dataclass(frozen=True)
class WebhookSettings:
    host: str = ""
    port: int = 9443
    #: Namespace of the Secret and the Service (the matcher's own).
    namespace: str = "default"
    secret_name: str = "aim-matcher-webhook-tls"
    configuration_name: str = "aim-matcher"
    service_name: str = "aim-matcher-webhook"
    #: More names or addresses for the serving certificate (a loopback URL in tests).
    extra_hosts: tuple[str, ...] = ()
    certificates: str = CERTS_SELF
    before_sync: str = BEFORE_SYNC_DENY
    sync_wait: float = 2.0
    policy: Policy = field(default_factory=Policy)
    check_period: float = 3600.0

    @property
    def hosts(self) -> tuple[str, ...]:
        """The serving certificate's names: how the API server reaches the Service, first."""
        svc, ns = self.service_name, self.namespace
        names = (f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local", f"{svc}.{ns}", svc)
        return tuple(dict.fromkeys((*names, *self.extra_hosts)))


def profile_lookup(profiles: Mapping[ProfileKey, CachedProfile]) -> Lookup:
    """Admission's read access to the controller's profile cache (no API call, no lock).

    Single dict reads and ``list(values())`` are atomic under the GIL, so an admission never
    waits for a reconcile holding the controller's lock. Profiles by aimId come from an index
    rebuilt only when the cache's contents changed since the last admission: comparing the
    values with the last snapshot is one C-level pass over references (the informers replace
    a cached profile whole when it changes), where rebuilding reads every profile's aimId.
    """
    index = _AimIdIndex(profiles)

    def named(kind: str, namespace: str, name: str) -> CachedProfile | None:
        return profiles.get(ProfileKey(kind, namespace, name))

    return Lookup(named=named, by_aim_id=index.get)


class _AimIdIndex:
    def __init__(self, profiles: Mapping[ProfileKey, CachedProfile]) -> None:
        self._profiles = profiles
        self._lock = threading.Lock()
        self._snapshot: list[CachedProfile] = []
        self._by_aim_id: dict[str, list[Profile]] = {}

    def get(self, aim_id: str) -> list[Profile]:
        values = list(self._profiles.values())
        with self._lock:
            if values != self._snapshot:
                by_aim_id: dict[str, list[Profile]] = {}
                for cached in values:
                    profile = cached.profile
                    if profile is not None and profile.spec.aim_id:
                        by_aim_id.setdefault(profile.spec.aim_id, []).append(profile)
                self._snapshot, self._by_aim_id = values, by_aim_id
            return list(self._by_aim_id.get(aim_id, ()))


class _Handler:
    def __init__(self, changed: Callable[[Any], None], deleted: Callable[[], None]) -> None:
        self._changed, self._deleted = changed, deleted

    def on_add(self, _key: str, obj: Any) -> None:
        self._changed(obj)

    def on_update(self, _key: str, _old: Any, new: Any) -> None:
        self._changed(new)

    def on_delete(self, _key: str, _old: Any) -> None:
        self._deleted()


class DenialEvents:
    """Warning Events on profiles whose pods are refused, sent by one thread from a bounded
    queue (a full queue drops: Events are best effort) and throttled per profile and reason."""

    def __init__(
        self,
        recorder: EventRecorder,
        interval: float = 600.0,
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self._recorder = recorder
        self._interval = interval
        self._on_event = on_event
        self._queue: queue.Queue[tuple[Profile, str] | None] = queue.Queue(100)
        self._last: dict[tuple[ProfileKey, str], float] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="webhook-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(2.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def denied(self, profile: Profile, message: str) -> None:
        key = (ProfileKey(profile.kind, profile.namespace or "", profile.name), REASON_DENIED)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                return
            self._last[key] = now
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait((profile, message))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            profile, message = item
            key = ProfileKey(profile.kind, profile.namespace or "", profile.name)
            recorded = self._recorder.record(key, profile.uid, "Warning", REASON_DENIED, message)
            if recorded and self._on_event is not None:
                self._on_event()


class Webhook:
    """Everything the webhook runs in the controller process (see the module docstring)."""

    def __init__(
        self,
        api: KubeClient,
        settings: WebhookSettings,
        *,
        profiles: Mapping[ProfileKey, CachedProfile],
        config: Callable[[], MatcherConfig],
        profiles_synced: Callable[[], bool],
        is_leader: Callable[[], bool],
        metrics: Metrics,
        recorder: EventRecorder | None,
        informer_settings: InformerSettings,
    ) -> None:
        s = settings
        self.settings = s
        self._metrics = metrics
        self._is_leader = is_leader
        self._profiles_synced = profiles_synced
        self._throttle = Throttle()
        self.tls = TlsStore()
        metrics.webhook_cert_expiry.set_function(
            lambda: self.tls.not_after.timestamp() if self.tls.not_after else 0.0
        )
        self.informers: list[Informer[Any]] = [
            Informer(
                "webhook-secret",
                api,
                f"/api/v1/namespaces/{s.namespace}/secrets",
                secret_view,
                _Handler(self._secret_changed, self._trigger),
                settings=informer_settings,
                query={"fieldSelector": f"metadata.name={s.secret_name}"},
            )
        ]
        self.certs: CertReconciler | None = None
        if s.certificates == CERTS_SELF:
            self.informers.append(
                Informer(
                    "webhook-configuration",
                    api,
                    WEBHOOK_CONFIGURATIONS,
                    configuration_view,
                    _Handler(lambda _view: self._trigger(), self._trigger),
                    settings=informer_settings,
                    query={"fieldSelector": f"metadata.name={s.configuration_name}"},
                )
            )
            self.certs = CertReconciler(
                api,
                CertSettings(
                    namespace=s.namespace,
                    secret_name=s.secret_name,
                    configuration_name=s.configuration_name,
                    hosts=s.hosts,
                    policy=s.policy,
                    check_period=s.check_period,
                ),
                secret=self._secret,
                configuration=self._configuration,
                is_leader=is_leader,
                on_write=lambda what, result: metrics.webhook_cert_writes.labels(
                    what, result
                ).inc(),
            )
        self.events = (
            DenialEvents(recorder, on_event=lambda: metrics.events.labels(REASON_DENIED).inc())
            if recorder is not None
            else None
        )
        self.admission = PodAdmission(
            profile_lookup(profiles),
            config,
            profiles_synced,
            before_sync=s.before_sync,
            sync_wait=s.sync_wait,
            # Never the matcher's own pods, nor the control plane's (the configuration excludes
            # both already; this holds even for a configuration edited by hand).
            skip_namespaces=frozenset({"kube-system", s.namespace}),
            observe=self._observe,
            on_decision=self._decided,
        )
        self.server = WebhookServer(s.host, s.port, self.admission, self.tls, observe=self._observe)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        log.info(
            "serving admission webhook",
            extra={
                "addresses": ",".join(self.server.addresses),
                "certificates": self.settings.certificates,
                "secret": f"{self.settings.namespace}/{self.settings.secret_name}",
            },
        )
        if self.events is not None:
            self.events.start()
        for informer in self.informers:
            informer.start()
        if self.certs is not None:
            self.certs.start()

    def stop(self) -> None:
        if self.certs is not None:
            self.certs.stop()
        for informer in self.informers:
            informer.stop()
        self.server.stop()
        if self.events is not None:
            self.events.stop()

    def leading(self) -> None:
        """This replica became the leader: check the certificates now."""
        self._trigger()

    def dead(self) -> list[str]:
        names = [f"informer-{i.name}" for i in self.informers if not i.alive]
        if self.certs is not None and not self.certs.alive:
            names.append("webhook-certs")
        if self.events is not None and not self.events.alive:
            names.append("webhook-events")
        return names

    def problem(self) -> str | None:
        """Why this replica cannot answer admissions now (the ``webhook`` readiness check)."""
        tls = self.tls.problem(datetime.now(UTC))
        if tls is not None:
            if self.certs is not None and self.certs.problem and self._is_leader():
                return f"{tls}: {self.certs.problem}"
            return tls
        if not self._profiles_synced():
            return "profile caches not synced yet"
        return None

    # -- caches -----------------------------------------------------------------------------

    def _secret(self) -> SecretView | None:
        informer = self.informers[0]
        view: SecretView | None = informer.store.get(
            f"{self.settings.namespace}/{self.settings.secret_name}"
        )
        return view

    def _configuration(self) -> ConfigurationView | None:
        if len(self.informers) < 2:
            return None
        view: ConfigurationView | None = self.informers[1].store.get(
            self.settings.configuration_name
        )
        return view

    def _trigger(self) -> None:
        if self.certs is not None:
            self.certs.trigger()

    def _secret_changed(self, view: SecretView) -> None:
        cert, key = view.data.get(TLS_CERT), view.data.get(TLS_KEY)
        if cert and key:
            try:
                if self.tls.load(Pair(cert, key)):
                    expires = self.tls.not_after
                    log.info(
                        "serving certificate loaded",
                        extra={"expires": f"{expires:%Y-%m-%dT%H:%M:%SZ}" if expires else ""},
                    )
                    self._throttle.reset()
            except CertError as err:
                text = f"cannot serve the certificate of Secret {self.settings.secret_name}: {err}"
                if self._throttle.allow(text):
                    log.error("%s", text)
        self._trigger()

    # -- per admission ----------------------------------------------------------------------

    def _observe(self, outcome: str, profile: str, seconds: float) -> None:
        self._metrics.admissions.labels(outcome, profile).inc()
        if seconds > 0:
            self._metrics.admission_duration.observe(seconds)

    def _decided(self, request: AdmissionRequest, decision: Decision) -> None:
        pod = request.object or {}
        meta = pod.get("metadata") or {}
        name = request.name or meta.get("name") or f"{meta.get('generateName') or ''}*"
        where = f"{request.namespace}/{name}"
        profile = decision.profile
        if decision.outcome != OUTCOME_DENIED:
            log.debug(
                "pod admitted",
                extra={
                    "pod": where,
                    "outcome": decision.outcome,
                    "profile": profile.ref if profile else "",
                },
            )
            return
        log.info(
            "pod refused: %s",
            decision.message,
            extra={"pod": where, "profile": profile.ref if profile else "", "user": request.user},
        )
        if self.events is not None and profile is not None and not request.dry_run:
            self.events.denied(profile, f"refused pod {where}: {decision.message}")
