"""core/v1 Events on profiles: found NotAvailable (Warning), available again (Normal).

Events are best effort, as in client-go's recorder: they are queued and sent by one thread of
their own, so that a thousand profiles found NotAvailable at start-up never hold up a status
write (and while status writes are queued, an Event waits for them, up to 5 s). A full queue
(``capacity``) drops the event with a log line, and a failed send is logged and dropped, never
retried. Events for cluster-scoped AIMClusterProfiles go to the ``default`` namespace, where
kubectl looks for events of cluster-scoped objects.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aimkit.kube import KubeClient
from aimkit.logs import Throttle
from matcher.api.models import API_VERSION
from matcher.controller.informer import TRANSPORT_ERRORS, error_text
from matcher.controller.status_writer import ProfileKey

log = logging.getLogger(__name__)

COMPONENT = "aim-matcher"
CLUSTER_EVENT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class _Pending:
    key: ProfileKey
    uid: str | None
    event_type: str
    reason: str
    message: str
    at: datetime


class EventRecorder:
    def __init__(
        self,
        api: KubeClient,
        instance: str,
        request_timeout: float = 5.0,
        *,
        capacity: int = 1000,
        on_sent: Callable[[str], None] | None = None,
        busy: Callable[[], bool] | None = None,
        max_hold: float = 5.0,
    ) -> None:
        self._api = api
        self._instance = instance
        self._timeout = request_timeout
        self._on_sent = on_sent
        self._busy = busy
        self._max_hold = max_hold
        self._queue: queue.Queue[_Pending | None] = queue.Queue(capacity)
        self._dropped = Throttle()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued for up to ``timeout`` seconds, then stop."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def record(
        self,
        key: ProfileKey,
        uid: str | None,
        event_type: str,
        reason: str,
        message: str,
    ) -> bool:
        """Queue an Event (sent at once when the recorder was not started); False if dropped."""
        pending = _Pending(key, uid, event_type, reason, message, datetime.now(UTC))
        if self._thread is None:
            return self._send(pending)
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            if self._dropped.allow("full"):
                log.warning("event queue full: dropping events", extra={"profile": str(key)})
            return False
        return True

    def _run(self) -> None:
        while (pending := self._queue.get()) is not None:
            # Status writes first: while they are queued (a first sync, a storm), an Event
            # waits, for at most max_hold seconds after it was recorded.
            while (
                self._busy is not None
                and self._busy()
                and (datetime.now(UTC) - pending.at).total_seconds() < self._max_hold
            ):
                time.sleep(0.05)
            self._send(pending)

    def _send(self, pending: _Pending) -> bool:
        key, now, reason = pending.key, pending.at, pending.reason
        namespace = key.namespace or CLUSTER_EVENT_NAMESPACE
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        involved: dict[str, Any] = {"apiVersion": API_VERSION, "kind": key.kind, "name": key.name}
        if key.namespace:
            involved["namespace"] = key.namespace
        if pending.uid:
            involved["uid"] = pending.uid
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                # kubectl's recorder names events <object>.<unique suffix>.
                "name": f"{key.name}.{int(now.timestamp() * 1e9):x}{secrets.token_hex(2)}",
                "namespace": namespace,
            },
            "involvedObject": involved,
            "type": pending.event_type,
            "reason": reason,
            "message": pending.message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._api.request(
                "POST", f"/api/v1/namespaces/{namespace}/events", body=body, timeout=self._timeout
            )
        except TRANSPORT_ERRORS as exc:
            log.warning("cannot record event: %s", error_text(exc), extra={"profile": str(key)})
            return False
        if self._on_sent is not None:
            self._on_sent(reason)
        return True
