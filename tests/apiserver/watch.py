"""Watch streams: initial events, resume from a resourceVersion, 410 Gone, bookmarks,
timeoutSeconds, selector transitions (ADDED/DELETED when an object enters or leaves)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .selectors import labels_match, parse_field_selector, parse_label_selector
from .store import Entry, Event, dumps
from .table import table

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
    )
    if route.name:  # /watch/namespaces/x/things/name is a watch on one object
        name = route.name
        by_name = parse_field_selector(f"metadata.name={name}", rt.kind)
        fields_outer = fields
        fields = lambda o: by_name(o) and fields_outer(o)  # noqa: E731
    timeout = float(h.query.get("timeoutSeconds") or DEFAULT_TIMEOUT)
    deadline = time.monotonic() + timeout
    bookmarks = h.query.get("allowWatchBookmarks") in ("true", "1")
    rv_param = h.query.get("resourceVersion") or ""
    send_initial = h.query.get("sendInitialEvents") == "true" or rv_param in ("", "0")
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

    with store.lock:
        epoch = store.watch_epoch
        initial: list[Entry] = []
        if send_initial:
            pos = store.rv
            initial = [e for _, e in store.items(rt.key, ns) if matches(e.obj)]
        else:
            try:
                pos = int(rv_param)
            except ValueError as exc:
                raise ApiError.bad_request(f"invalid resource version: {rv_param!r}") from exc
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
    if bookmarks and h.query.get("sendInitialEvents") == "true":
        h.write_chunk(bookmark(pos, initial_end=True))
    interval = app.bookmark_interval
    next_bookmark = time.monotonic() + interval
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
                if batch or now >= deadline or (bookmarks and now >= next_bookmark):
                    break
                wake = deadline if not bookmarks else min(deadline, next_bookmark)
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
        pos = batch[-1].rv if batch else current
        if out:
            h.write_chunk(b"".join(out))
        now = time.monotonic()
        if bookmarks and now >= next_bookmark:
            h.write_chunk(bookmark(pos))
            next_bookmark = now + interval
        if now >= deadline:
            h.end_chunked()
            return
