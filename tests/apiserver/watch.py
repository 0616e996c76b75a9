"""Watch streams: initial events, resume from a resourceVersion, 410 Gone, bookmarks,
timeoutSeconds, selector transitions (ADDED/DELETED when an object enters or leaves)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from .errors import ApiError, Cause
from .selectors import labels_match, parse_field_selector, parse_label_selector
from .store import Entry, Event, dumps
from .table import table
from .validation import FieldError, forbidden

if TYPE_CHECKING:
    from .handler import Handler, Route

DEFAULT_TIMEOUT = 1800.0


def _error_line(err: ApiError) -> bytes:
    return dumps({"type": "ERROR", "object": err.status()}) + b"\n"


def serve_watch(h: Handler, route: Route) -> None:
    app, rt, ns = h.app, route.rt, route.ns
    store = app.store
    labels = parse_label_selector(h.query.get("labelSelector"))
    fields = parse_field_selector(
        h.query.get("fieldSelector"),
        rt.kind,
        events_v1=bool(rt.shares_storage_of),
        extra=rt.selectable_fields,
        custom=rt.is_custom,
        namespaced=rt.namespaced,
    )
    if route.name:  # /watch/namespaces/x/things/name is a watch on one object
        name = route.name
        by_name = parse_field_selector(f"metadata.name={name}", rt.kind)
        fields_outer = fields
        fields = lambda o: by_name(o) and fields_outer(o)  # noqa: E731
    timeout = _timeout(h.query.get("timeoutSeconds"))
    start = time.monotonic()
    deadline = start + timeout
    bookmarks = h.query.get("allowWatchBookmarks") in ("true", "1")
    rv_param = h.query.get("resourceVersion") or ""
    watch_list = h.query.get("sendInitialEvents") == "true"
    _check_watch_options(h.query)
    send_initial = watch_list or rv_param in ("", "0")
    as_table = h._as_table()

    def matches(obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if ns and obj["metadata"].get("namespace") != ns:
            return False
        return labels_match(labels, obj) and fields(obj)

    def line(ev_type: str, stored: Entry, cached: Event | None = None) -> bytes:
        entry = app.registry.view(rt, stored)  # with on-read defaults, as a GET shows it
        if as_table:
            obj = json.loads(h._render(route, entry))
            return (
                dumps(
                    {
                        "type": ev_type,
                        "object": table(
                            rt,
                            [obj],
                            obj["metadata"].get("resourceVersion", ""),
                            h.query.get("includeObject", "Metadata"),
                        ),
                    }
                )
                + b"\n"
            )
        if (
            cached is not None
            and entry is stored
            and not rt.shares_storage_of
            and entry.obj.get("apiVersion") == rt.api_version(route.version)
        ):
            return cached.line(ev_type)
        return b'{"type":"' + ev_type.encode() + b'","object":' + h._render(route, entry) + b"}\n"

    def bookmark(rv: int, initial_end: bool = False) -> bytes:
        md: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        kind = "Event" if rt.shares_storage_of else rt.kind
        return (
            dumps(
                {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": kind,
                        "apiVersion": rt.api_version(route.version),
                        "metadata": md,
                    },
                }
            )
            + b"\n"
        )

    requested = 0 if rv_param in ("", "0") else parse_resource_version(rv_param)
    if watch_list and requested:
        # A watch-list from a resourceVersion the server has not reached waits for it, as
        # a list does, and fails the same way (as an ERROR event).
        too_large = app.registry.wait_for_resource_version(requested, app.registry.too_large_wait)
        if too_large is not None:
            h.start_chunked()
            h.write_chunk(_error_line(too_large))
            h.end_chunked()
            return
    with store.lock:
        epoch = store.watch_epoch
        initial: list[Entry] = []
        if send_initial:
            pos = store.rv
            initial = [e for _, e in store.items(rt.key, ns) if matches(e.obj)]
        else:
            # From a future resourceVersion too: events come once the server passes it
            # (kube-apiserver establishes such a watch at once and waits with it).
            pos = requested
            expired = pos < store.oldest_resumable()
    h.start_chunked()
    if not send_initial and expired:
        h.write_chunk(
            _error_line(
                ApiError.gone(f"too old resource version: {pos} ({store.oldest_resumable()})")
            )
        )
        h.end_chunked()
        return
    for e in initial:
        h.write_chunk(line("ADDED", e))
    if bookmarks and watch_list:
        h.write_chunk(bookmark(pos, initial_end=True))
    interval = app.bookmark_interval
    next_bookmark = _next_bookmark(start, interval, deadline)
    # kube-apiserver sends a bookmark only once the resourceVersion has moved past the one the
    # watch started from (its cacheWatcher filters on that, not on what it sent since).
    start_rv = pos
    while True:
        with store.cond:
            while True:
                if store.watch_epoch != epoch or app.stopping:
                    h.end_chunked()
                    return
                if pos < store.oldest_resumable():
                    h.write_chunk(
                        _error_line(
                            ApiError.gone(
                                f"too old resource version: {pos} ({store.oldest_resumable()})"
                            )
                        )
                    )
                    h.end_chunked()
                    return
                batch = list(store.events_after(pos))
                now = time.monotonic()
                due = next_bookmark is not None and now >= next_bookmark
                if batch or now >= deadline or (bookmarks and due):
                    break
                wake = deadline
                if bookmarks and next_bookmark is not None:
                    wake = min(deadline, next_bookmark)
                store.cond.wait(max(0.0, wake - now))
            current = store.rv
        out: list[bytes] = []
        for ev in batch:
            if ev.rkey != rt.key:
                continue
            new_ok = matches(ev.entry.obj)
            old_ok = matches(ev.old) if ev.type == "MODIFIED" else new_ok
            if ev.type == "MODIFIED" and new_ok != old_ok:
                out.append(line("ADDED" if new_ok else "DELETED", ev.entry))
            elif new_ok:
                out.append(line(ev.type, ev.entry, ev))
        if out:
            h.write_chunk(b"".join(out))
        if batch:
            pos = batch[-1].rv
        now = time.monotonic()
        if bookmarks and next_bookmark is not None and now >= next_bookmark:
            if current > start_rv:
                h.write_chunk(bookmark(current))
                pos = current
            next_bookmark = _next_bookmark(now, interval, deadline)
        if now >= deadline:
            h.end_chunked()
            return


def _next_bookmark(now: float, interval: float, deadline: float) -> float | None:
    """cacheWatcher.nextBookmarkTime: every `interval` (a minute on kube-apiserver) and
    2 s before the watch times out; none once that moment has passed."""
    when = min(now + interval, deadline - 2.0)
    return when if when >= now else None


def _timeout(raw: str | None) -> float:
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT  # kube-apiserver ignores a timeoutSeconds it cannot read


def parse_resource_version(raw: str) -> int:
    try:
        return int(raw)
    except ValueError as exc:
        raise ApiError(
            500,
            "",
            f'resourceVersion: Invalid value: "{raw}": strconv.ParseUint: parsing "{raw}": '
            "invalid syntax",
        ) from exc


def _check_watch_options(query: dict[str, str]) -> None:
    """ValidateListOptions for a watch."""
    match = query.get("resourceVersionMatch", "")
    if "sendInitialEvents" in query:
        if match != "NotOlderThan":
            why = "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
            raise _list_options_invalid(forbidden("resourceVersionMatch", why))
    elif match:
        why = "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
        raise _list_options_invalid(forbidden("resourceVersionMatch", why))


def _list_options_invalid(error: FieldError) -> ApiError:
    return ApiError.invalid("ListOptions", "meta.k8s.io", "", [Cause.of(error)])
