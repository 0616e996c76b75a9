"""List+watch caches, after client-go's reflector.

One thread per resource: a paged list fills the cache, a watch resumes from the last
resourceVersion seen (bookmarks move it too), a 410 Gone forces a full re-list whose
difference against the cache is delivered as add/update/delete, and failures back off
exponentially (at least as long as a ``Retry-After`` asks).

Health is about time, not a count of errors: the informer reports itself unhealthy (the
controller marks node-dependent profiles Degraded) once list/watch has failed without a success
for ``degraded_after`` seconds, and healthy again on the first success. A blip of a second or
two (an API server restarting, a few dropped watches) therefore rewrites no status.

**A storage that went back.** After an API server restart that lost its state (etcd wiped or
restored from a backup), resourceVersions start lower than the ones this cache holds. A watch
resumed from our (now future) resourceVersion is answered 200 and then stays silent until the
store passes that version (kube-apiserver v1.34; only a list or a ``sendInitialEvents`` watch
gets "Too large resource version"), so the cache would silently stop following the cluster. So
before resuming a watch that ended, for whatever reason (a restart ends every watch, cleanly on
SIGTERM or by a dropped connection), the informer asks for a one-item list: when its
resourceVersion is lower than the last one seen, the storage went back and the informer
re-lists, calling ``on_storage_reset`` first (the controller has every other informer re-list
too, since they share that storage but may not have seen versions high enough to tell, and the
reconciler drops its notes of written resourceVersions, which would otherwise make every status
patch a 409). Why this and not a
timer or a bookmark drought: the check runs exactly when the server may have changed under us
(a watch ended), costs one small request per watch restart (every 5-10 minutes otherwise), and
does not depend on bookmarks, which kube-apiserver sends only once that resource's own watch
cache moves (a quiet resource gets none for hours). What it cannot see: a store that went back
and was then written past our resourceVersion before our first check succeeded (a long outage
of ours while the cluster was rebuilt); the periodic resync does not cover that, a matcher
restart does.

Lists and watches read raw JSON through ``aimkit.kube`` and a ``Codec`` turns it into
projections straight away, so only the projection stays in memory. ``JsonCodec`` (json.loads,
then ``transform``) serves small collections; the node informer uses a decoder that reads only
the fields the matcher keeps (``nodecodec``).

A collection the API server does not serve (404: its CRD is not installed) is reported once,
with ``missing_hint`` saying what to do, and retried at the back-off cap until it appears; the
same failure repeated is logged once (then every 10 minutes), its recovery once.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
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
    #: Consecutive failed watches after which the next attempt is a full re-list.
    failure_threshold: int = 3
    #: Seconds of failing list/watch (no success in between) before the informer reports
    #: itself unhealthy (node-dependent profiles go Degraded).
    degraded_after: float = 30.0
    request_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One decoded list page: (key, projection or why the object cannot be read) per item."""

    items: list[tuple[str, T | ValueError]]
    resource_version: str
    continue_token: str | None


@dataclass(frozen=True, slots=True)
class WatchEvent(Generic[T]):
    type: str
    key: str
    resource_version: str
    #: The projection (or why the object cannot be read); None for BOOKMARK and ERROR.
    value: T | ValueError | None = None
    #: The Status object of an ERROR event.
    status: Mapping[str, Any] | None = None


class Codec(Protocol[T]):
    """Decodes a list page and a watch event from the raw JSON the API server sent."""

    def page(self, raw: bytes) -> Page[T]: ...
    def event(self, raw: bytes) -> WatchEvent[T]: ...


class JsonCodec(Generic[T]):
    """``json.loads``, then ``transform`` per object (ValueError: the object cannot be read)."""

    def __init__(self, transform: Callable[[Mapping[str, Any]], T]) -> None:
        self._transform = transform

    def project(self, obj: Mapping[str, Any]) -> T | ValueError:
        try:
            return self._transform(obj)
        except ValueError as exc:
            return exc

    def page(self, raw: bytes) -> Page[T]:
        doc = _object(json.loads(raw) if raw else {}, "a list")
        meta = doc.get("metadata") or {}
        items = [(object_key(obj), self.project(obj)) for obj in doc.get("items") or ()]
        return Page(items, str(meta.get("resourceVersion") or ""), meta.get("continue") or None)

    def event(self, raw: bytes) -> WatchEvent[T]:
        doc = _object(json.loads(raw), "a watch event")
        event_type = str(doc.get("type", ""))
        obj = doc.get("object")
        obj = obj if isinstance(obj, Mapping) else {}
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if event_type == "ERROR":
            return WatchEvent(event_type, "", rv, status=obj)
        if event_type == "BOOKMARK":
            return WatchEvent(event_type, "", rv)
        return WatchEvent(event_type, object_key(obj), rv, self.project(obj))


def _object(doc: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ValueError(f"{what} is not a JSON object")
    return doc


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
        on_storage_reset: Callable[[str], None] | None = None,
        query: Mapping[str, str] | None = None,
        missing_hint: str = "",
        codec: Codec[T] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._api = api
        self.path = path
        self._query = dict(query or {})
        self._missing_hint = missing_hint
        self._codec: Codec[T] = codec if codec is not None else JsonCodec(transform)
        self._handler = handler
        self._settings = settings or InformerSettings()
        self._on_health = on_health
        self._on_restart = on_restart
        self._on_synced = on_synced
        self._on_storage_reset = on_storage_reset
        self._clock = clock
        self.store: dict[str, T] = {}
        self.resource_version = ""
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._failures = 0
        #: When the current run of failures began (None while list/watch works).
        self._failing_since: float | None = None
        self._healthy = True
        self._throttle = Throttle()
        #: Why the last list or watch failed, until one succeeds (for /readyz).
        self.last_error: str | None = None
        self._response_lock = threading.Lock()
        self._response: WatchStream | None = None
        self._relist_requested = threading.Event()
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

    def relist(self) -> None:
        """Re-list now (another informer found the storage went back: this cache may hold
        objects the storage no longer has, and resourceVersions it will hand out again)."""
        self._relist_requested.set()
        self._interrupt()

    def _interrupt(self) -> None:
        """Unblock a thread reading a watch stream (shutdown() closes the socket under it)."""
        with self._response_lock:
            response = self._response
        if response is not None:
            response.interrupt()

    def run(self) -> None:
        need_list = True
        # Set once a watch has ended: before resuming, make sure the server did not go back.
        check_storage = False
        while not self._stop.is_set():
            if self._relist_requested.is_set():
                self._relist_requested.clear()
                need_list = True
            try:
                if check_storage and not need_list:
                    need_list = self._storage_went_back()
                check_storage = False
                if need_list:
                    self._list()
                    need_list = False
                    self._succeeded()
                check_storage = True
                self._watch()
            except Gone:
                log.info("resource version expired, re-listing", extra={"informer": self.name})
                self._restarted("gone")
                need_list = True
            except TRANSPORT_ERRORS as exc:
                if self._stop.is_set():
                    break
                if self._relist_requested.is_set():
                    continue  # the interrupt broke the stream, not the server
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
                self._stop.wait(max(self._next_attempt_in(), retry_after_of(exc)))

    def _storage_went_back(self) -> bool:
        """A one-item list: True when its resourceVersion is older than the last one seen."""
        query = dict(self._query, limit=1)
        raw = self._api.request_bytes(
            "GET", self.path, query=query, timeout=self._settings.request_timeout
        )
        listed = self._codec.page(raw).resource_version
        if not (listed and self.resource_version and older(listed, self.resource_version)):
            return False
        log.warning(
            "the API server's resourceVersion went back (storage restored or replaced): re-listing",
            extra={"informer": self.name, "listed": listed, "seen": self.resource_version},
        )
        self._restarted("went-back")
        return True

    # -- list -----------------------------------------------------------------------------

    def _list(self) -> None:
        items: dict[str, T] = {}
        continue_token: str | None = None
        while True:
            query: dict[str, Any] = dict(self._query, limit=self._settings.page_size)
            if continue_token:
                query["continue"] = continue_token
            try:
                raw = self._api.request_bytes(
                    "GET", self.path, query=query, timeout=self._settings.request_timeout
                )
            except ApiError as exc:
                if exc.status == 410 and continue_token:
                    # The snapshot behind the continue token expired: start the list over.
                    items.clear()
                    continue_token = None
                    continue
                raise
            page = self._codec.page(raw)
            del raw
            for key, value in page.items:
                if isinstance(value, ValueError):
                    self._unreadable(key, value)
                else:
                    items[key] = value
            continue_token = page.continue_token
            if not continue_token:
                listed = page.resource_version
                break
            if self._stop.is_set():
                return
        went_back = bool(listed and self.resource_version) and older(listed, self.resource_version)
        self.resource_version = listed
        if went_back and self._on_storage_reset is not None:
            # Before the difference is delivered: the reconciler must not compare the new
            # objects with notes of resourceVersions the storage no longer has.
            self._on_storage_reset(self.name)
        self._replace(items)
        if not self.synced.is_set():
            self.synced.set()
            if self._on_synced is not None:
                self._on_synced()

    def _unreadable(self, key: str, exc: ValueError) -> None:
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
            for line in stream.lines():
                if self._stop.is_set() or self._relist_requested.is_set():
                    return
                self._apply(self._codec.event(line))
        finally:
            with self._response_lock:
                self._response = None
            stream.close()
        # A watch that ends cleanly (server timeout, dropped stream) resumes where it was.
        if not self._stop.is_set():
            self._restarted("closed")

    def _apply(self, event: WatchEvent[T]) -> None:
        if event.type == "ERROR":
            status = event.status or {}
            code = status.get("code")
            if code == 410:
                raise Gone(str(status.get("message", "")))
            raise ApiError(
                int(code or 500),
                str(status.get("reason") or ""),
                str(status.get("message") or "watch error"),
                what=f"watch {self.path}",
            )
        if event.resource_version:
            self.resource_version = event.resource_version
        if event.type == "BOOKMARK":
            return
        key = event.key
        old = self.store.get(key)
        if event.type == "DELETED":
            if old is not None:
                del self.store[key]
                self._handler.on_delete(key, old)
            return
        new = event.value
        if new is None or isinstance(new, ValueError):
            self._unreadable(key, new or ValueError("no object"))
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
        self._failing_since = None
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
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
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
        lasted = now - self._failing_since
        if lasted >= self._settings.degraded_after and self._healthy:
            log.error(
                "list/watch has failed for %.0fs: reporting unavailable",
                lasted,
                extra={"informer": self.name, "error": text},
            )
            self._healthy = False
            if self._on_health is not None:
                self._on_health(False, text)
        elif not self._healthy and self._on_health is not None:
            # Keep the reported error current (the message names the latest failure).
            self._on_health(False, text)

    def _restarted(self, reason: str) -> None:
        if self._on_restart is not None:
            self._on_restart(reason)

    def _next_attempt_in(self) -> float:
        """The back-off before the next attempt. While still reported healthy it ends no later
        than the ``degraded_after`` deadline, so that an outage is declared on time and a
        recovery just before it is seen before it."""
        s = self._settings
        delay = min(s.backoff_cap, s.backoff_base * 2.0 ** min(self._failures - 1, 30))
        delay *= random.uniform(0.8, 1.2)
        if self._healthy and self._failing_since is not None:
            deadline = self._failing_since + s.degraded_after
            delay = min(delay, max(0.05, deadline - self._clock()))
        return float(delay)


def older(candidate: str, than: str) -> bool:
    """True when resourceVersion ``candidate`` predates ``than``.

    resourceVersions are opaque in principle; every API server in practice issues increasing
    integers (etcd revisions). When they are not integers nothing counts as older.
    """
    if candidate.isdigit() and than.isdigit():
        return int(candidate) < int(than)
    return False


def retry_after_of(exc: BaseException) -> float:
    """Seconds a 429/503 asked us to wait (``Retry-After``), capped; 0 when it did not."""
    if isinstance(exc, ApiError) and exc.retry_after is not None:
        return min(60.0, exc.retry_after)
    return 0.0
