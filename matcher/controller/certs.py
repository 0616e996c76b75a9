"""The leader's half of the webhook's TLS: keep its CA and serving pair valid in their Secret and
the MutatingWebhookConfiguration's ``caBundle`` equal to the CAs (open-policy-agent/
cert-controller's rotator, without cert-manager).

The state comes from two informer caches, the Secret and the webhook configuration, each
watched by name (``secret_view``, ``configuration_view``); one pass applies
:func:`matcher.webhook.certs.next_step` until it has nothing left to do, carrying on from what
each write returned rather than from the cache. Writes are a merge patch of the Secret's
``data`` and a JSON patch of each webhook's ``clientConfig.caBundle``, both with the
resourceVersion the pass read as a precondition: a 409 means someone else moved first, and the
pass is retried with back-off against the newer object.

One key on a work queue follows the worker contract (sample-controller's
``processNextWorkItem``): always ``done``; ``forget`` on success, then the next check in
``check_period`` (expiry is a matter of time, not of events); a rate-limited retry on failure.
Informer events and leadership add the key at once. Only the leader writes; a follower's pass
does nothing.

The install ships the Secret empty (so the matcher needs no ``create`` on Secrets, which RBAC
cannot limit by name); a missing Secret or configuration is reported, not created.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aimkit.kube import MERGE_PATCH, ApiError, KubeClient
from aimkit.logs import Throttle
from matcher.controller.informer import TRANSPORT_ERRORS, error_text
from matcher.controller.workqueue import ExponentialBackoff, WorkQueue
from matcher.webhook.certs import Policy, Step, next_step

log = logging.getLogger(__name__)

JSON_PATCH = "application/json-patch+json"
WEBHOOK_CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
KEY = "certs"


@dataclass(frozen=True, slots=True)
class SecretView:
    resource_version: str
    data: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class ConfigurationView:
    resource_version: str
    #: (webhook name, decoded caBundle) in the configuration's order.
    webhooks: tuple[tuple[str, bytes], ...]


def _b64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: not base64") from None


def secret_view(obj: Mapping[str, Any]) -> SecretView:
    """The Secret as the rotation needs it (raises ValueError for undecodable data)."""
    data = obj.get("data") or {}
    return SecretView(
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
        data={str(k): _b64(v, f"data.{k}") for k, v in data.items()},
    )


def configuration_view(obj: Mapping[str, Any]) -> ConfigurationView:
    webhooks = []
    for index, hook in enumerate(obj.get("webhooks") or []):
        bundle = ((hook or {}).get("clientConfig") or {}).get("caBundle")
        decoded = _b64(bundle, f"webhooks[{index}].clientConfig.caBundle") if bundle else b""
        webhooks.append((str((hook or {}).get("name") or ""), decoded))
    return ConfigurationView(
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
        webhooks=tuple(webhooks),
    )


@dataclass(frozen=True)
class CertSettings:
    namespace: str
    secret_name: str
    configuration_name: str
    #: What the serving certificate names (the Service's DNS names, extra hosts).
    hosts: tuple[str, ...]
    policy: Policy = field(default_factory=Policy)
    #: How often to look at expiry when nothing else happens, seconds.
    check_period: float = 3600.0
    retry_base: float = 0.5
    retry_cap: float = 60.0
    request_timeout: float = 10.0


class Conflict(Exception):
    """A write's resourceVersion precondition failed."""


class CertReconciler:
    def __init__(
        self,
        api: KubeClient,
        settings: CertSettings,
        *,
        secret: Callable[[], SecretView | None],
        configuration: Callable[[], ConfigurationView | None],
        is_leader: Callable[[], bool],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_write: Callable[[str, str], None] | None = None,
    ) -> None:
        self._api = api
        self.settings = settings
        self._secret = secret
        self._configuration = configuration
        self._is_leader = is_leader
        self._now = now
        self._on_write = on_write
        self.queue: WorkQueue[str] = WorkQueue(
            ExponentialBackoff(settings.retry_base, settings.retry_cap)
        )
        self._thread: threading.Thread | None = None
        self._throttle = Throttle()
        #: Why the last pass could not finish (None once one does); for logs and /readyz.
        self.problem: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._worker, name="webhook-certs", daemon=True)
        self._thread.start()
        self.trigger()

    def stop(self) -> None:
        self.queue.shut_down()
        if self._thread is not None:
            self._thread.join(5.0)

    @property
    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def trigger(self) -> None:
        self.queue.add(KEY)

    def _worker(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                self.reconcile()
            except Conflict:
                self.queue.add_rate_limited(key)
            except TRANSPORT_ERRORS as exc:
                self._failed(f"webhook certificate write failed: {error_text(exc)}")
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("webhook certificate rotation failed")
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
                self.queue.add_after(key, self.settings.check_period)
            finally:
                self.queue.done(key)

    def _failed(self, problem: str) -> None:
        self.problem = problem
        if self._throttle.allow(problem):
            log.error("%s", problem)

    # -- one pass ---------------------------------------------------------------------------

    def reconcile(self) -> int:
        """Bring the Secret and the caBundle up to date; the number of writes made.

        Raises Conflict or KubeError for the worker to retry with back-off.
        """
        if not self._is_leader():
            return 0
        s = self.settings
        secret = self._secret()
        if secret is None:
            self._failed(
                f"Secret {s.namespace}/{s.secret_name} not found: the install ships it (empty); "
                "re-apply the bundle (kubectl apply -k daemonset/) so the webhook can keep its "
                "certificate there"
            )
            return 0
        configuration = self._configuration()
        if configuration is None:
            self._failed(
                f"MutatingWebhookConfiguration {s.configuration_name} not found: the API server "
                "does not call the webhook; re-apply the bundle"
            )
        writes = 0
        for _ in range(8):  # a whole rotation takes at most four steps
            bundles = [b for _, b in configuration.webhooks] if configuration else []
            step = next_step(secret.data, bundles, s.hosts, self._now(), s.policy)
            if step is None:
                break
            if not self._is_leader():
                return writes
            log.info("webhook certificates: %s", step.why)
            if step.secret is not None:
                secret = self._write_secret(secret, step)
            elif configuration is not None:
                configuration = self._write_bundle(configuration, step)
            writes += 1
        if configuration is not None:
            self.problem = None
            if self._throttle.reset():
                log.info("webhook certificates are in order again")
        return writes

    def _write(self, what: str, method: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            stored = method()
        except ApiError as exc:
            result = "conflict" if exc.status == 409 else "error"
            if self._on_write is not None:
                self._on_write(what, result)
            if exc.status == 409:
                raise Conflict(what) from None
            raise
        if self._on_write is not None:
            self._on_write(what, "ok")
        return stored

    def _write_secret(self, current: SecretView, step: Step) -> SecretView:
        s = self.settings
        assert step.secret is not None
        body = {
            "metadata": {"resourceVersion": current.resource_version},
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in step.secret.items()},
        }
        stored = self._write(
            "secret",
            lambda: self._api.request(
                "PATCH",
                f"/api/v1/namespaces/{s.namespace}/secrets/{s.secret_name}",
                body=body,
                content_type=MERGE_PATCH,
                timeout=s.request_timeout,
            ),
        )
        return secret_view(stored)

    def _write_bundle(self, current: ConfigurationView, step: Step) -> ConfigurationView:
        s = self.settings
        assert step.ca_bundle is not None
        encoded = base64.b64encode(step.ca_bundle).decode("ascii")
        # The resourceVersion in the patched object makes the update conditional (409 when
        # the configuration changed since it was read), so the indexes below are the ones read.
        version = current.resource_version
        ops: list[dict[str, Any]] = [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": version}
        ]
        ops += [
            {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": encoded}
            for i in range(len(current.webhooks))
        ]
        stored = self._write(
            "webhookconfiguration",
            lambda: self._api.request(
                "PATCH",
                f"{WEBHOOK_CONFIGURATIONS}/{s.configuration_name}",
                body=ops,
                content_type=JSON_PATCH,
                timeout=s.request_timeout,
            ),
        )
        return configuration_view(stored)
