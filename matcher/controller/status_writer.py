"""Writes a profile's ``/status`` subresource, and only that, with a minimal merge patch.

The patch is the RFC 7386 difference between the status the object has and the one we
computed: keys that disappear are sent as null (a plain merge of the new status would leave
them behind), unchanged keys are not sent. ``metadata.resourceVersion`` rides along so the API
server refuses the patch (409) when the object moved since our cache saw it; the caller then
retries against the newer object instead of clobbering it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from matcher.api.models import GROUP, KIND_CLUSTER_PROFILE, VERSION

PLURALS = {"AIMProfile": "aimprofiles", KIND_CLUSTER_PROFILE: "aimclusterprofiles"}
MERGE_PATCH = "application/merge-patch+json"


class ProfileKey(NamedTuple):
    """Work-queue key: which profile. ``namespace`` is "" for AIMClusterProfiles."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if not self.namespace:
            return f"{self.kind.lower()}/{self.name}"
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"


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
    def __init__(self, custom_objects_api: Any, request_timeout: float = 10.0) -> None:
        self._api = custom_objects_api
        self._timeout = request_timeout

    def patch(
        self,
        key: ProfileKey,
        old_status: Mapping[str, Any] | None,
        new_status: Mapping[str, Any],
        resource_version: str | None,
    ) -> dict[str, Any]:
        """Send the patch; returns the object as the server stored it. Raises ApiException."""
        body: dict[str, Any] = {"status": merge_diff(dict(old_status or {}), dict(new_status))}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        common: dict[str, Any] = {
            "_content_type": MERGE_PATCH,
            "_preload_content": False,
            "_request_timeout": self._timeout,
        }
        plural = PLURALS[key.kind]
        if key.kind == KIND_CLUSTER_PROFILE:
            response = self._api.patch_cluster_custom_object_status(
                GROUP, VERSION, plural, key.name, body, **common
            )
        else:
            response = self._api.patch_namespaced_custom_object_status(
                GROUP, VERSION, key.namespace, plural, key.name, body, **common
            )
        result: dict[str, Any] = json.loads(response.data)
        return result
