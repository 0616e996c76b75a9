"""Isolation between tests on the one control plane of a pytest run.

Starting a control plane takes seconds, so a run shares one. Tests use fixed names (nodes
`mi300x-0`, namespace `default`), as they do on the per-test test API server, so after each
test everything created since the baseline is deleted: `Baseline.take()` records the uid of
every object right after start-up (and the project's CRDs), `Baseline.restore()` deletes every
object of every listable, deletable resource whose uid is not in it (finalizers a test left
are removed first). Without a controller-manager a deleted namespace does not finalize on its
own: restore() finalizes it. CRDs tests applied from files stay while unchanged, emptied of
their objects (tests/controlplane/crds.py says why).
"""

from __future__ import annotations

import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.controlplane.crds import CRDS, FixtureCRDs, objects_path
from tests.controlplane.plane import ControlPlane

_LISTERS = 8
#: Objects the API server itself keeps creating and renewing (its identity leases, events).
_SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


@dataclass(frozen=True)
class Resource:
    prefix: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    namespaced: bool

    @property
    def path(self) -> str:
        return f"{self.prefix}/{self.plural}"


def discover(plane: ControlPlane) -> list[Resource]:
    """Every resource (preferred version) that can be listed and deleted."""
    found: list[Resource] = []
    groups: list[str] = ["/api/v1"]
    _, apis = plane.request("GET", "/apis")
    for group in apis["groups"]:
        groups.append(f"/apis/{group['preferredVersion']['groupVersion']}")
    for prefix in groups:
        status, doc = plane.request("GET", prefix)
        if status != 200:
            continue
        for r in doc["resources"]:
            verbs = set(r.get("verbs") or ())
            if "/" in r["name"] or not {"list", "delete"} <= verbs:
                continue
            found.append(Resource(prefix, r["name"], bool(r["namespaced"])))
    return found


def _items(plane: ControlPlane, path: str) -> list[dict[str, Any]]:
    status, doc = plane.request("GET", path)
    if status == 404:  # a CRD deleted since discovery
        return []
    if status != 200:
        raise RuntimeError(f"reset: GET {path}: {status} {doc}")
    return list(doc.get("items") or [])


@dataclass
class Baseline:
    plane: ControlPlane
    uids: frozenset[str] = frozenset()
    resources: list[Resource] = field(default_factory=list)

    def take(self) -> Baseline:
        self.resources = discover(self.plane)
        uids: set[str] = set()
        for r in self.resources:
            uids.update(o["metadata"]["uid"] for o in _items(self.plane, r.path))
        self.uids = frozenset(uids)
        return self

    def restore(self, fixture_crds: FixtureCRDs | None = None) -> list[str]:
        """Delete what tests created; returns what was deleted (`kind/ns/name`). CRDs that
        `fixture_crds` still keeps as applied stay, without their objects."""
        deleted: list[str] = []
        namespaces: list[str] = []
        crds: list[str] = []
        kept: list[Resource] = []
        for crd in _items(self.plane, CRDS):
            if crd["metadata"]["uid"] in self.uids:
                continue
            if fixture_crds is not None and fixture_crds.unchanged(crd):
                namespaced = crd["spec"]["scope"] == "Namespaced"
                prefix, _, plural = objects_path(crd).rpartition("/")
                kept.append(Resource(prefix, plural, namespaced))
            else:
                crds.append(crd["metadata"]["name"])
                if fixture_crds is not None:
                    fixture_crds.forget(crd["metadata"]["name"])
        # Namespaced objects first, then cluster-scoped; CRDs and namespaces last. The lists
        # go out at once (a reset is mostly waiting for some sixty of them).
        ordered = sorted([*self.resources, *kept], key=lambda r: (not r.namespaced, r.plural))
        with ThreadPoolExecutor(_LISTERS) as pool:
            listed = list(pool.map(lambda r: _items(self.plane, r.path), ordered))
        for r, items in zip(ordered, listed, strict=True):
            for obj in items:
                meta = obj["metadata"]
                if meta["uid"] in self.uids:
                    continue
                ns = meta.get("namespace")
                if r.plural == "leases" and ns in _SYSTEM_NAMESPACES:
                    continue
                if r.plural == "events" and ns in _SYSTEM_NAMESPACES:
                    continue
                if r.plural == "namespaces":
                    namespaces.append(meta["name"])
                    continue
                if r.plural == "customresourcedefinitions":
                    continue  # sorted out above
                self._delete(r, meta)
                deleted.append(f"{r.plural}/{ns or ''}/{meta['name']}")
        for name in namespaces:
            self._delete_namespace(name)
            deleted.append(f"namespaces//{name}")
        for name in crds:
            self._delete_crd(name)
            deleted.append(f"customresourcedefinitions//{name}")
        return deleted

    def _delete(self, r: Resource, meta: dict[str, Any]) -> None:
        ns = meta.get("namespace")
        base = f"{r.prefix}/namespaces/{ns}/{r.plural}" if ns else r.path
        path = f"{base}/{urllib.parse.quote(meta['name'])}"
        if meta.get("finalizers"):
            # Nothing runs here to finish a finalizer a test left behind.
            patch = {"metadata": {"finalizers": None}}
            status, body = self.plane.request("PATCH", path, patch)
            if status not in (200, 404):
                raise RuntimeError(f"reset: PATCH {path}: {status} {body}")
        # Pods bound to a node would wait for a kubelet that never comes.
        status, body = self.plane.request("DELETE", f"{path}?gracePeriodSeconds=0")
        if status not in (200, 202, 404):
            raise RuntimeError(f"reset: DELETE {path}: {status} {body}")

    def _delete_namespace(self, name: str) -> None:
        status, _ = self.plane.request("DELETE", f"/api/v1/namespaces/{name}")
        if status == 404:
            return
        status, ns = self.plane.request("GET", f"/api/v1/namespaces/{name}")
        if status == 404:
            return
        ns["spec"]["finalizers"] = []
        status, body = self.plane.request("PUT", f"/api/v1/namespaces/{name}/finalize", ns)
        if status not in (200, 404):
            raise RuntimeError(f"reset: finalize namespace {name}: {status} {body}")

    def _delete_crd(self, name: str) -> None:
        path = f"{CRDS}/{name}"
        self.plane.request("DELETE", path)
        # The API server's own finalizer deletes the custom resources first; wait for it so
        # that the next test can create the same CRD again.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.plane.request("GET", path)[0] == 404:
                return
            time.sleep(0.05)
        raise RuntimeError(f"reset: CRD {name} still there after 60s")
