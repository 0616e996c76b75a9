"""The mutating webhook's HTTPS endpoint: ``POST /mutate-pods`` on its own TLS listener.

Every matcher replica serves it from its own informer caches (controller-runtime runs webhooks
outside leader election too): a :class:`PodAdmission` answers each review with
:func:`matcher.core.admission.admit` over a :class:`~matcher.core.admission.Lookup` the
controller hands in, so an admission makes no API call and this package never imports the
controller. Before the profile caches have synced, a review waits briefly for them and then is
refused (``deny``, the default) or admitted unchanged with a warning (``ignore``): an empty
cache must not turn into "no such profile" for every pod.

TLS: the server runs on ``aimkit.http`` with a function that returns the current
``ssl.SSLContext``; :class:`TlsStore` swaps the context whole when the certificate changes (the
controller loads it from the Secret as its informer sees it), so a rotation needs no restart and
a connection in progress keeps the context it began with. Until a certificate is loaded, the
context holds none and every handshake fails: the port never speaks plain HTTP.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime

from aimkit.http import HttpServer, Limits, Request, Response
from matcher.core.admission import OUTCOME_DENIED, OUTCOME_SKIPPED, Decision, Lookup, admit
from matcher.core.config import MatcherConfig
from matcher.webhook import certs
from matcher.webhook.review import (
    API_V1,
    CONTENT_TYPE,
    MAX_REVIEW_BYTES,
    AdmissionRequest,
    AdmissionResponse,
    ReviewError,
    allowed,
    decode,
    denied,
    encode,
    errored,
    patched,
    uid_of,
)

log = logging.getLogger(__name__)

PATH = "/mutate-pods"
BEFORE_SYNC_DENY = "deny"
BEFORE_SYNC_IGNORE = "ignore"
#: The outcome recorded when the caches were not ready to answer.
OUTCOME_NOT_SYNCED = "not-synced"
OUTCOME_ERROR = "error"
#: What one client may cost (aimkit.http bounds memory by connections x body): reviews up to
#: controller-runtime's 7 MiB, so fewer connections than the health server's 64 (16 x 7 MiB at
#: worst). kube-apiserver keeps connections to webhooks alive and its client gives up an idle
#: one after 90 s (Go's default): ours waits longer, so that the client, not the server, closes
#: an idle connection, and no review is written into a connection being closed.
LIMITS = Limits(
    max_connections=16,
    workers=4,
    queue_size=64,
    header_timeout=10.0,
    idle_timeout=120.0,
    write_timeout=10.0,
    max_header_bytes=16384,
    max_body_bytes=MAX_REVIEW_BYTES,
)

#: (outcome, profile ref or "", seconds) after every review.
Observer = Callable[[str, str, float], None]


class TlsStore:
    """The serving certificate as a TLS context, replaced whole when it changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # No certificate: handshakes fail ("no shared cipher") instead of falling back to HTTP.
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._pair: certs.Pair | None = None
        self.not_after: datetime | None = None

    def load(self, pair: certs.Pair) -> bool:
        """Serve ``pair`` from the next connection on; False when it is the one served already.

        Raises CertError for a pair that cannot be served (the current one stays).
        """
        with self._lock:
            if pair == self._pair:
                return False
        context = certs.server_context(pair)
        expires = certs.not_after(pair.cert_pem)
        with self._lock:
            self._context, self._pair, self.not_after = context, pair, expires
        return True

    def context(self) -> ssl.SSLContext:
        with self._lock:
            return self._context

    def problem(self, now: datetime) -> str | None:
        """Why this replica cannot serve TLS now; None when it can."""
        with self._lock:
            expires = self.not_after
        if expires is None:
            return "no serving certificate loaded yet"
        if now >= expires:
            return f"the serving certificate expired at {expires:%Y-%m-%d %H:%M:%S}Z"
        return None


class PodAdmission:
    """One review in, one response out: the pure decision plus the cache-sync rule."""

    def __init__(
        self,
        lookup: Lookup,
        config: Callable[[], MatcherConfig],
        synced: Callable[[], bool],
        *,
        before_sync: str = BEFORE_SYNC_DENY,
        sync_wait: float = 2.0,
        skip_namespaces: frozenset[str] = frozenset(),
        observe: Observer | None = None,
        on_decision: Callable[[AdmissionRequest, Decision], None] | None = None,
    ) -> None:
        if before_sync not in (BEFORE_SYNC_DENY, BEFORE_SYNC_IGNORE):
            raise ValueError(f"before_sync: expected deny or ignore, got {before_sync!r}")
        self._lookup = lookup
        self._config = config
        self._synced = synced
        self._before_sync = before_sync
        self._sync_wait = sync_wait
        self._skip = skip_namespaces
        self._observe = observe
        self._on_decision = on_decision

    def review(self, request: AdmissionRequest) -> AdmissionResponse:
        started = time.perf_counter()
        outcome, profile, response = self._review(request)
        if self._observe is not None:
            self._observe(outcome, profile, time.perf_counter() - started)
        return response

    def _review(self, request: AdmissionRequest) -> tuple[str, str, AdmissionResponse]:
        # The webhook configuration sends only pods being created outside the skipped
        # namespaces; anything else (a configuration edited by hand) passes untouched.
        if not request.is_pod or request.operation != "CREATE" or request.object is None:
            return OUTCOME_SKIPPED, "", allowed()
        if request.namespace in self._skip:
            return OUTCOME_SKIPPED, "", allowed()
        if not self._wait_synced():
            message = (
                "aim-matcher is starting: its profile caches are not synced yet, so this pod "
                "cannot be matched to its profile; retry in a moment"
            )
            if self._before_sync == BEFORE_SYNC_IGNORE:
                warning = "not mutated: " + message.split(", so", 1)[0]
                return OUTCOME_NOT_SYNCED, "", allowed([warning])
            return OUTCOME_NOT_SYNCED, "", denied(message, code=503)
        decision = admit(request.object, request.namespace, self._lookup, self._config())
        if self._on_decision is not None:
            self._on_decision(request, decision)
        profile = decision.profile.ref if decision.profile is not None else ""
        if decision.outcome == OUTCOME_DENIED:
            return decision.outcome, profile, denied(decision.message, warnings=decision.warnings)
        return decision.outcome, profile, patched(decision.patch, decision.warnings)

    def _wait_synced(self) -> bool:
        deadline = time.monotonic() + self._sync_wait
        while not self._synced():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


class WebhookServer:
    """``POST /mutate-pods`` over TLS (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        admission: PodAdmission,
        tls: TlsStore,
        *,
        limits: Limits = LIMITS,
        observe: Observer | None = None,
    ) -> None:
        self.admission = admission
        self.tls = tls
        self._observe = observe
        self.http = HttpServer(
            [host] if host else [], port, name="webhook", limits=limits, tls=tls.context
        )
        self.http.route(PATH, self.handle, methods=("POST",))

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def addresses(self) -> list[str]:
        return self.http.addresses

    def start(self) -> WebhookServer:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def handle(self, request: Request) -> Response:
        """The HTTP edge: Content-Type, decoding, the review, the encoded answer."""
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != CONTENT_TYPE:
            shown = request.headers.get("content-type", "(none)")
            return Response.text(415, f"Content-Type {shown}: expected {CONTENT_TYPE}\n")
        try:
            review = decode(request.body)
        except ReviewError as err:
            uid, version = uid_of(request.body)
            log.warning("bad admission review: %s", err, extra={"peer": request.peer})
            if self._observe is not None:
                self._observe(OUTCOME_ERROR, "", 0.0)
            body = encode(errored(400, f"bad AdmissionReview: {err}"), uid, version)
            return Response(400, body, CONTENT_TYPE)
        try:
            answer = self.admission.review(review)
        except Exception:
            # A bug must answer as an error (the configuration's failurePolicy decides), and
            # be loud: the pod is refused when the policy is Fail.
            log.exception("admission failed", extra={"uid": review.uid})
            if self._observe is not None:
                self._observe(OUTCOME_ERROR, "", 0.0)
            answer = errored(500, "aim-matcher failed to judge this pod; see its logs")
        return Response(200, encode(answer, review.uid, review.api_version or API_V1), CONTENT_TYPE)
