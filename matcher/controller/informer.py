"""List+watch caches, after client-go's reflector.

One thread per resource: a paged list fills the cache, a watch resumes from the last
resourceVersion seen (bookmarks move it too), a 410 Gone forces a full re-list whose
difference against the cache is delivered as add/update/delete, and failures back off
exponentially. After ``failure_threshold`` consecutive failures the informer reports itself
unhealthy (the controller marks node-dependent profiles Degraded) and healthy again on the
first success.

Lists and watches read raw JSON through ``aimkit.kube`` (the generated models of the
``kubernetes`` package cost several times the memory and time of ``json.loads`` for a 5,000-node
list), and each object is projected by ``transform`` straight away so only the projection stays
in memory.

A collection the API server does not serve (404: its CRD is not installed) is reported once,
with ``missing_hint`` saying what to do, and retried at the back-off cap until it appears; the
same failure repeated is logged once (then every 10 minutes), its recovery once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import urllib3

from aimkit.kube import ApiError, KubeClient, KubeError, TransportError, WatchStream
from aimkit.logs import Throttle

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

log = logging.getLogger(__name__)

#: Errors a list or watch can fail with: API errors and broken connections.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    KubeError,
    urllib3.exceptions.HTTPError,
    OSError,
    ValueError,  # a truncated or garbled JSON body
)


class Handler(Protocol[T_contra]):
    def on_add(self, key: str, obj: T_contra) -> None: ...
    def on_update(self, key: str, old: T_contra, new: T_contra) -> None: ...
    def on_delete(self, key: str, old: T_contra) -> None: ...


class Gone(Exception):
    """The resourceVersion we hold is too old (HTTP 410 or a watch ERROR event with 410)."""


@dataclass(frozen=True)
class InformerSettings:
    page_size: int = 500
    #: Server-side watch timeout; client-go picks 5-10 minutes at random so that all watches
    #: of a fleet do not restart together.
    watch_timeout: float = 300.0
    backoff_base: float = 0.2
    backoff_cap: float = 10.0
    failure_threshold: int = 3
    request_timeout: float = 30.0


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` for namespaced objects, else ``name`` (client-go's MetaNamespaceKey)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = str(meta.get("name", ""))
    return f"{namespace}/{name}" if namespace else name


def error_text(exc: BaseException) -> str:
    """One line saying what went wrong, for logs, status messages and metrics."""
    if isinstance(exc, ApiError):
        text = f"HTTP {exc.status} {exc.reason}".strip()
        return f"{text}: {exc.message}" if exc.message else text
    if isinstance(exc, TransportError):
        return exc.why
    return f"{type(exc).__name__}: {exc}"


class Informer(Generic[T]):
    """Keeps ``store`` (key -> transform(object)) in step with one API collection.

    ``path`` is the collection (``/api/v1/nodes``, ``/apis/<group>/<version>/<plural>``),
    listed and watched through ``api`` with ``query`` added (a field selector).
    ``transform`` projects an object; when it raises ``ValueError`` the object is logged and
    treated as absent.
    """

    def __init__(
        self,
        name: str,
        api: KubeClient,
        path: str,
        transform: Callable[[Mapping[str, Any]], T],
        handler: Handler[T],
        *,
        settings: InformerSettings | None = None,
        on_health: Callable[[bool, str], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        on_synced: Callable[[], None] | None = None,
        query: Mapping[str, str] | None = None,
        missing_hint: str = "",
    ) -> None:
        self.name = name
        self._api = api
        self.path = path
        self._query = dict(query or {})
        self._missing_hint = missing_hint
        self._transform = transform
        self._handler = handler
        self._settings = settings or InformerSettings()
        self._on_health = on_health
        self._on_restart = on_restart
        self._on_synced = on_synced
        self.store: dict[str, T] = {}
        self.resource_version = ""
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._failures = 0
        self._healthy = True
        self._throttle = Throttle()
        #: Why the last list or watch failed, until one succeeds (for /readyz).
        self.last_error: str | None = None
        self._response_lock = threading.Lock()
        self._response: WatchStream | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, join_timeout: float = 5.0) -> None:
        self._stop.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(join_timeout)

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def alive(self) -> bool:
        """The informer thread is running (or was never started)."""
        return self._thread is None or self._thread.is_alive()

    def _interrupt(self) -> None:
        """Unblock a thread reading a watch stream (shutdown() closes the socket under it)."""
        with self._response_lock:
            response = self._response
        if response is not None:
            response.interrupt()

    def run(self) -> None:
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                    self._succeeded()
                self._watch()
            except Gone:
                log.info("resource version expired, re-listing", extra={"informer": self.name})
                self._restarted("gone")
                need_list = True
            except TRANSPORT_ERRORS as exc:
                if self._stop.is_set():
                    break
                if isinstance(exc, ApiError) and exc.status == 410:
                    self._restarted("gone")
                    need_list = True
                    continue
                self._failed(exc)
                self._restarted("error")
                # After a failed watch, try the watch again first: a resume from our
                # resourceVersion loses nothing. Repeated failures fall back to a list.
                if self._failures >= self._settings.failure_threshold:
                    need_list = True
                self._stop.wait(max(self._delay(), _retry_after(exc)))

    # -- list -----------------------------------------------------------------------------

    def _list(self) -> None:
        items: dict[str, T] = {}
        continue_token: str | None = None
        while True:
            query: dict[str, Any] = dict(self._query, limit=self._settings.page_size)
            if continue_token:
                query["continue"] = continue_token
            try:
                page = self._api.request(
                    "GET", self.path, query=query, timeout=self._settings.request_timeout
                )
            except ApiError as exc:
                if exc.status == 410 and continue_token:
                    # The snapshot behind the continue token expired: start the list over.
                    items.clear()
                    continue_token = None
                    continue
                raise
            for obj in page.get("items") or ():
                self._project_into(items, obj)
            meta = page.get("metadata") or {}
            continue_token = meta.get("continue") or None
            if not continue_token:
                self.resource_version = str(meta.get("resourceVersion") or "")
                break
            if self._stop.is_set():
                return
        self._replace(items)
        if not self.synced.is_set():
            self.synced.set()
            if self._on_synced is not None:
                self._on_synced()

    def _project_into(self, items: dict[str, T], obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        try:
            items[key] = self._transform(obj)
        except ValueError as exc:
            log.warning(
                "ignoring object that cannot be read: %s",
                exc,
                extra={"informer": self.name, "object": key},
            )

    def _replace(self, items: dict[str, T]) -> None:
        old_store = self.store
        self.store = items
        for key, new in items.items():
            old = old_store.get(key)
            if old is None:
                self._handler.on_add(key, new)
            else:
                self._handler.on_update(key, old, new)
        for key, old in old_store.items():
            if key not in items:
                self._handler.on_delete(key, old)

    # -- watch ----------------------------------------------------------------------------

    def _watch(self) -> None:
        timeout = self._settings.watch_timeout
        server_timeout = int(random.uniform(timeout, 2 * timeout))
        query: dict[str, Any] = dict(
            self._query,
            allowWatchBookmarks="true",
            timeoutSeconds=max(1, server_timeout),
        )
        if self.resource_version:
            query["resourceVersion"] = self.resource_version
        stream = self._api.watch(
            self.path,
            query,
            # The read timeout is a dead-connection detector, longer than the server's own.
            timeout=(self._settings.request_timeout, server_timeout + 30),
        )
        with self._response_lock:
            self._response = stream
        try:
            if self._stop.is_set():
                return
            self._succeeded()
            for event_type, obj in stream:
                if self._stop.is_set():
                    return
                self._apply(event_type, obj)
        finally:
            with self._response_lock:
                self._response = None
            stream.close()
        # A watch that ends cleanly (server timeout, dropped stream) resumes where it was.
        if not self._stop.is_set():
            self._restarted("closed")

    def _apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        if event_type == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone(str(obj.get("message", "")))
            raise ApiError(
                int(code or 500),
                str(obj.get("reason") or ""),
                str(obj.get("message") or "watch error"),
                what=f"watch {self.path}",
            )
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        if event_type == "BOOKMARK":
            return
        key = object_key(obj)
        old = self.store.get(key)
        if event_type == "DELETED":
            if old is not None:
                del self.store[key]
                self._handler.on_delete(key, old)
            return
        try:
            new = self._transform(obj)
        except ValueError as exc:
            log.warning(
                "ignoring object that cannot be read: %s",
                exc,
                extra={"informer": self.name, "object": key},
            )
            if old is not None:
                del self.store[key]
                self._handler.on_delete(key, old)
            return
        self.store[key] = new
        if old is None:
            self._handler.on_add(key, new)
        else:
            self._handler.on_update(key, old, new)

    # -- health and back-off --------------------------------------------------------------

    def _succeeded(self) -> None:
        self._failures = 0
        self.last_error = None
        if self._throttle.reset() and self._healthy:
            log.info("list/watch works again", extra={"informer": self.name})
        if not self._healthy:
            self._healthy = True
            log.info("recovered", extra={"informer": self.name})
            if self._on_health is not None:
                self._on_health(True, "")

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        text = error_text(exc)
        missing = isinstance(exc, ApiError) and exc.status == 404 and bool(self._missing_hint)
        if missing:
            text = f"{self.path} is not served by the API server: {self._missing_hint}"
        self.last_error = text
        level = logging.ERROR if missing else logging.WARNING
        if not self._throttle.allow(text):
            level = logging.DEBUG  # said already: an outage is one line, not one per retry
        log.log(
            level,
            "list/watch failed: %s",
            text,
            extra={"informer": self.name, "failures": self._failures},
        )
        if self._failures >= self._settings.failure_threshold and self._healthy:
            self._healthy = False
            if self._on_health is not None:
                self._on_health(False, text)
        elif not self._healthy and self._on_health is not None:
            # Keep the reported error current (the message names the latest failure).
            self._on_health(False, text)

    def _restarted(self, reason: str) -> None:
        if self._on_restart is not None:
            self._on_restart(reason)

    def _delay(self) -> float:
        s = self._settings
        delay = min(s.backoff_cap, s.backoff_base * 2.0 ** min(self._failures - 1, 30))
        return float(delay * random.uniform(0.8, 1.2))


def _retry_after(exc: BaseException) -> float:
    """Seconds a 429/503 asked us to wait (``Retry-After``), capped; 0 when it did not."""
    if isinstance(exc, ApiError) and exc.retry_after is not None:
        return min(60.0, exc.retry_after)
    return 0.0
