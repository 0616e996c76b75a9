"""CRDs that tests register from files (`kube.apply_crds([...])`) stay on the run's control
plane between tests while nobody changes them.

Creating a CRD costs a real kube-apiserver seconds, not milliseconds: it is Established after
a round of controllers, the first create of one of its objects within 2 s of that sleeps 2 s
(the apiextensions handler's guard for HA setups), and deleting it waits for its finalizer.
Tests that apply the same file test after test (tests/apiserver/testdata/widgets.yaml) would
pay that every time. So `apply()` records what it applied, `Baseline.restore()` deletes the
objects of a recorded CRD but keeps the CRD itself when it is still exactly what `apply()`
left (same uid and generation), and the next `apply()` of the same spec is a no-op. A CRD a
test changed, deleted or created by other means is deleted by the reset, as before.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from tests.controlplane.plane import ControlPlane

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class CRDError(RuntimeError):
    pass


@dataclass(frozen=True)
class Kept:
    uid: str
    generation: int
    spec: str  # the applied spec, canonical JSON


def _canonical(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _established(crd: dict[str, Any]) -> bool:
    conds = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)


def objects_path(crd: dict[str, Any]) -> str:
    """The list path of a CRD's objects in every namespace (its storage version)."""
    spec = crd["spec"]
    version = next(
        (v["name"] for v in spec["versions"] if v.get("storage")), spec["versions"][0]["name"]
    )
    return f"/apis/{spec['group']}/{version}/{spec['names']['plural']}"


class FixtureCRDs:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.kept: dict[str, Kept] = {}

    def apply(self, docs: list[dict[str, Any]], timeout: float = 60) -> None:
        """Create or update each CRD unless it is already there as applied; wait until each
        is Established and serves its objects."""
        for doc in docs:
            name = doc["metadata"]["name"]
            status, current = self.plane.request("GET", f"{CRDS}/{name}")
            if (
                status == 200
                and self.unchanged(current)
                and self.kept[name].spec == _canonical(doc["spec"])
            ):
                continue
            if status == 200:
                body = {**doc, "metadata": {**doc["metadata"]}}
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                status, current = self.plane.request("PUT", f"{CRDS}/{name}", body)
            else:
                status, current = self.plane.request("POST", CRDS, doc)
            if status >= 300:
                raise CRDError(f"apply CRD {name}: HTTP {status}: {current}")
            current = self._wait_established(name, timeout)
            self.kept[name] = Kept(
                current["metadata"]["uid"],
                int(current["metadata"]["generation"]),
                _canonical(doc["spec"]),
            )

    def _wait_established(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, crd = self.plane.request("GET", f"{CRDS}/{name}")
            # Served once a list answers (a 429 while storage initializes is retried).
            if (
                status == 200
                and _established(crd)
                and self.plane.request("GET", objects_path(crd))[0] == 200
            ):
                return dict(crd)
            if time.monotonic() > deadline:
                raise CRDError(f"CRD {name} not Established after {timeout:.0f}s: {crd}")
            time.sleep(0.02)

    def unchanged(self, crd: dict[str, Any]) -> bool:
        """Is `crd` (as the server has it) still what apply() left?"""
        kept = self.kept.get(crd["metadata"]["name"])
        md = crd["metadata"]
        return (
            kept is not None
            and md.get("uid") == kept.uid
            and int(md.get("generation", 0)) == kept.generation
            and not md.get("deletionTimestamp")
        )

    def forget(self, name: str) -> None:
        self.kept.pop(name, None)
