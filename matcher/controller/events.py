"""core/v1 Events on profiles whose availability flips between Ready and NotAvailable.

Events are best effort, as in client-go's recorder: a failure is logged and dropped, never
retried in a way that could hold up status writes. Events for cluster-scoped
AIMClusterProfiles go to the ``default`` namespace, where kubectl looks for events of
cluster-scoped objects.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from aimkit.kube import KubeClient
from matcher.api.models import API_VERSION
from matcher.controller.informer import TRANSPORT_ERRORS, error_text
from matcher.controller.status_writer import ProfileKey

log = logging.getLogger(__name__)

COMPONENT = "aim-matcher"
CLUSTER_EVENT_NAMESPACE = "default"


class EventRecorder:
    def __init__(self, api: KubeClient, instance: str, request_timeout: float = 5.0) -> None:
        self._api = api
        self._instance = instance
        self._timeout = request_timeout

    def record(
        self,
        key: ProfileKey,
        uid: str | None,
        event_type: str,
        reason: str,
        message: str,
    ) -> bool:
        namespace = key.namespace or CLUSTER_EVENT_NAMESPACE
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        involved: dict[str, Any] = {"apiVersion": API_VERSION, "kind": key.kind, "name": key.name}
        if key.namespace:
            involved["namespace"] = key.namespace
        if uid:
            involved["uid"] = uid
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                # kubectl's recorder names events <object>.<unique suffix>.
                "name": f"{key.name}.{int(now.timestamp() * 1e9):x}{secrets.token_hex(2)}",
                "namespace": namespace,
            },
            "involvedObject": involved,
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
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
        return True
