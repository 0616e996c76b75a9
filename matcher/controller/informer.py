"""List+watch caches, after client-go's reflector.

One thread per resource: a paged list fills the cache, a watch resumes from the last
resourceVersion seen (bookmarks move it too), a 410 Gone forces a full re-list whose
difference against the cache is delivered as add/update/delete, and failures back off
exponentially. After ``failure_threshold`` consecutive failures the informer reports itself
unhealthy (the controller marks node-dependent profiles Degraded) and healthy again on the
first success.

Lists and watches read raw JSON (``_preload_content=False``): the generated models cost
several times the memory and time of ``json.loads`` for a 5,000-node list, and each object
is projected by ``transform`` straight away so only the projection stays in memory.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

log = logging.getLogger(__name__)

#: Errors a list or watch can fail with: API errors and broken connections.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    ApiException,
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
    if isinstance(exc, ApiException):
        reason = exc.reason or ""
        message = ""
        if exc.body:
            try:
                message = json.loads(exc.body).get("message", "")
            except (ValueError, AttributeError):
                message = str(exc.body)[:200]
        text = f"HTTP {exc.status} {reason}".strip()
        return f"{text}: {message}" if message else text
    return f"{type(exc).__name__}: {exc}"


class Informer(Generic[T]):
    """Keeps ``store`` (key -> transform(object)) in step with one API collection.

    ``call`` is a generated list function (``CoreV1Api.list_node``, or a partial of
    ``CustomObjectsApi.list_cluster_custom_object`` with group/version/plural bound); it is
    called with list or watch parameters. ``transform`` projects an object; when it raises
    ``ValueError`` the object is logged and treated as absent.
    """

    def __init__(
        self,
        name: str,
        call: Callable[..., Any],
        transform: Callable[[Mapping[str, Any]], T],
        handler: Handler[T],
        *,
        settings: InformerSettings | None = None,
        on_health: Callable[[bool, str], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        on_synced: Callable[[], None] | None = None,
        call_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self._call = call
        self._call_kwargs = dict(call_kwargs or {})
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
        self._response_lock = threading.Lock()
        self._response: Any = None
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
            try:
                response.shutdown()
                response.release_conn()
            except Exception:  # already closed: nothing to interrupt
                pass

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
                if isinstance(exc, ApiException) and exc.status == 410:
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
            kwargs: dict[str, Any] = dict(self._call_kwargs, limit=self._settings.page_size)
            if continue_token:
                kwargs["_continue"] = continue_token
            try:
                page = self._get_json(**kwargs)
            except ApiException as exc:
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

    def _get_json(self, **kwargs: Any) -> dict[str, Any]:
        response = self._call(
            _preload_content=False, _request_timeout=self._settings.request_timeout, **kwargs
        )
        try:
            data = response.data
        finally:
            response.release_conn()
        result: dict[str, Any] = json.loads(data)
        return result

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
        response = self._call(
            **self._call_kwargs,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=self.resource_version or None,
            timeout_seconds=max(1, server_timeout),
            _preload_content=False,
            # The read timeout is a dead-connection detector, longer than the server's own.
            _request_timeout=(self._settings.request_timeout, server_timeout + 30),
        )
        with self._response_lock:
            self._response = response
        try:
            if self._stop.is_set():
                return
            self._succeeded()
            for event_type, obj in _events(response):
                if self._stop.is_set():
                    return
                self._apply(event_type, obj)
        finally:
            with self._response_lock:
                self._response = None
            response.release_conn()
        # A watch that ends cleanly (server timeout, dropped stream) resumes where it was.
        if not self._stop.is_set():
            self._restarted("closed")

    def _apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        if event_type == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone(str(obj.get("message", "")))
            raise ApiException(status=code or 500, reason=str(obj.get("message", "watch error")))
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
        if not self._healthy:
            self._healthy = True
            log.info("recovered", extra={"informer": self.name})
            if self._on_health is not None:
                self._on_health(True, "")

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        text = error_text(exc)
        log.warning(
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
    headers = getattr(exc, "headers", None) or {}
    try:
        return min(60.0, float(headers.get("Retry-After", 0)))
    except (TypeError, ValueError):
        return 0.0


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-delimited lines of a streamed body, as the chunks arrive."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from lines
    if buffer:
        yield buffer


def _events(response: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for line in _lines(response):
        if not line.strip():
            continue
        event = json.loads(line)
        yield str(event.get("type", "")), event.get("object") or {}
