"""Writes a profile's ``/status`` subresource, and only that, with a minimal merge patch.

The patch is the RFC 7386 difference between the status the object has and the one we
computed: keys that disappear are sent as null (a plain merge of the new status would leave
them behind), unchanged keys are not sent. ``metadata.resourceVersion`` rides along so the API
server refuses the patch (409) when the object moved since our cache saw it; the caller then
retries against the newer object instead of clobbering it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from aimkit.kube import MERGE_PATCH, KubeClient
from matcher.api.models import GROUP, KIND_CLUSTER_PROFILE, VERSION

PLURALS = {"AIMProfile": "aimprofiles", KIND_CLUSTER_PROFILE: "aimclusterprofiles"}


class ProfileKey(NamedTuple):
    """Work-queue key: which profile. ``namespace`` is "" for AIMClusterProfiles."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if not self.namespace:
            return f"{self.kind.lower()}/{self.name}"
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"

    @property
    def path(self) -> str:
        """The object's API path."""
        return object_path(self.kind, self.namespace, self.name)


def collection_path(kind: str, namespace: str = "") -> str:
    """``/apis/<group>/<version>[/namespaces/<ns>]/<plural>`` of a profile kind."""
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{GROUP}/{VERSION}{scope}/{PLURALS[kind]}"


def object_path(kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(kind, namespace)}/{name}"


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch that turns ``old`` into ``new`` (lists are replaced whole)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch


class StatusWriter:
    def __init__(self, api: KubeClient, request_timeout: float = 10.0) -> None:
        self._api = api
        self._timeout = request_timeout

    def patch(
        self,
        key: ProfileKey,
        old_status: Mapping[str, Any] | None,
        new_status: Mapping[str, Any],
        resource_version: str | None,
    ) -> dict[str, Any]:
        """Send the patch; returns the object as the server stored it. Raises KubeError."""
        body: dict[str, Any] = {"status": merge_diff(dict(old_status or {}), dict(new_status))}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self._api.request(
            "PATCH",
            f"{key.path}/status",
            body=body,
            content_type=MERGE_PATCH,
            timeout=self._timeout,
        )
