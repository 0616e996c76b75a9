"""The node fence on the suite's real kube-apiserver: install rendered objects, act as a detector
with a real service-account token bound to a pod on a Node, and send it dry-run writes.

Used by tests/test_admission_policy.py (every install variant fences its detectors) and
tests/test_fence.py (the detector proves the fence before it reports ready).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

from detector.labels import LABEL_PREFIX
from tests.conftest import Kube
from tests.controlplane.plane import ControlPlane
from tests.controlplane.users import pod_on_node, service_account_token

FOREIGN_LABEL = "example.com/not-the-detectors"
OWN_LABEL = LABEL_PREFIX + "MI300X"
POLICY_DENIAL = "ValidatingAdmissionPolicy 'aim-detector-own-node-labels'"


def install(kube: Kube, objects: list[dict[str, Any]]) -> None:
    """Apply rendered objects as the admin (server-side, as `kubectl apply -k` would)."""
    docs = "\n---\n".join(json.dumps(o) for o in objects)
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=docs)


def add_node(plane: ControlPlane, name: str) -> None:
    status, body = plane.request(
        "POST",
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        },
    )
    assert status == 201, body


def detector_token(plane: ControlPlane, namespace: str, account: str, node: str) -> str:
    """A token for `account` bound to a pod on `node`, as the kubelet mounts it."""
    pod = pod_on_node(plane, namespace, account, node, f"detector-{secrets.token_hex(3)}")
    return service_account_token(plane, namespace, account, bound_pod=pod)


def dry_run_label(
    plane: ControlPlane, token: str, node: str, key: str, value: str = "1"
) -> tuple[int, str]:
    """(status, message) of a dry-run merge patch adding one label to `node` as `token`."""
    status, body = plane.request(
        "PATCH",
        f"/api/v1/nodes/{node}?dryRun=All",
        {"metadata": {"labels": {key: value}}},
        token=token,
    )
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    return status, message


def wait_for_policy(plane: ControlPlane, token: str, node: str, timeout: float = 20) -> None:
    """Until the fence refuses a foreign label (a new policy takes effect asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        status, message = dry_run_label(plane, token, node, FOREIGN_LABEL)
        if status == 403 and POLICY_DENIAL in message:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the node fence never refused a foreign label: {status} {message}")
        time.sleep(0.2)


def validation_failures(plane: ControlPlane, user: str, since: int = 0) -> list[str]:
    """The policy failures the audit log recorded for `user`'s requests from event number
    `since` on (validationActions Audit: annotation
    validation.policy.admission.k8s.io/validation_failure)."""
    found = []
    for event in plane.audit_events()[since:]:
        if (event.get("user") or {}).get("username") != user:
            continue
        raw = (event.get("annotations") or {}).get(
            "validation.policy.admission.k8s.io/validation_failure"
        )
        if raw:
            found += [f["message"] for f in json.loads(raw)]
    return found
