"""The reconciler tells its own status write, coming back through the watch, from a change made
by someone else, so the controller does not evaluate a profile again only to find the status
it has just written (one extra evaluation per write, 1,000 of them on a first sync)."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from aimkit.kube import connect
from matcher.controller.reconciler import CachedProfile, Reconciler, cached_profile, desired_status
from matcher.controller.status_writer import ProfileKey, StatusWriter
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.nodes import node_view
from tests.controller_support import (
    GROUP,
    MI300X,
    VERSION,
    cluster_profile,
    create_cluster_profile,
    gpu_labels,
    node_obj,
)

pytestmark = pytest.mark.cluster


def _read(custom: Any, name: str) -> CachedProfile:
    """The profile as the watch would deliver it now."""
    obj = custom.get_cluster_custom_object(GROUP, VERSION, "aimclusterprofiles", name)
    return cached_profile(obj)


def test_only_the_object_our_write_stored_is_ours(kube):
    custom = client.CustomObjectsApi(kube.api_client())
    name = kube.unique("own-writes")
    create_cluster_profile(custom, cluster_profile(name, "MI300X", 1))
    cluster = ClusterIndex([node_view(node_obj("mi300x-0", gpu_labels(MI300X)))])
    cache: dict[ProfileKey, CachedProfile] = {}
    with closing(connect(kube.kubeconfig)) as api:
        reconciler = Reconciler(
            profiles=cache.get,
            evaluate_locked=lambda c: desired_status(
                c, cluster, MatcherConfig(), None, datetime.now(UTC)
            ),
            writer=StatusWriter(api),
            recorder=None,
            is_leader=lambda: True,
        )
        before = _read(custom, name)
        cache[before.key] = before
        # Delivered before any write of ours: not ours.
        assert reconciler.observed(before) is False

        assert reconciler.reconcile(before.key)  # the first status: written
        echo = _read(custom, name)
        assert (echo.status or {}).get("status") == "Ready"
        # An event from before our write, delivered late, is not ours and keeps the note...
        assert reconciler.observed(before) is False
        # ...and what the watch brings back next is exactly what our write stored.
        assert reconciler.observed(echo) is True
        # Said once: the note is gone, so the same object delivered again (a relist) is not
        # taken for a new write of ours.
        assert reconciler.observed(echo) is False

        # Our write, then somebody else's change before the watch brought ours back: the
        # newer object is theirs, whatever it holds.
        cache[echo.key] = echo
        cluster.upsert(node_view(node_obj("mi300x-0", {})))  # the node loses its GPU labels
        assert reconciler.reconcile(echo.key)  # NotAvailable now: written
        ours = _read(custom, name)
        custom.patch_cluster_custom_object(
            GROUP, VERSION, "aimclusterprofiles", name, {"metadata": {"labels": {"team": "a"}}}
        )
        theirs = _read(custom, name)
        assert theirs.resource_version != ours.resource_version
        assert reconciler.observed(theirs) is False
