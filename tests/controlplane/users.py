"""Acting as someone on the test control plane: real service-account tokens from the
TokenRequest API, optionally bound to a Pod on a Node (then the token carries the node-name
claim, as the kubelet's projected tokens do), written as kubeconfigs for the agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.controlplane.plane import ControlPlane

#: A container that Pod Security `restricted` admits; nothing ever runs it (no kubelet).
_RESTRICTED_CONTAINER = {
    "name": "agent",
    "image": "registry.invalid/aim-accelerator:test",
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


class RequestFailedError(AssertionError):
    pass


def _ok(status: int, body: Any, what: str) -> Any:
    if status >= 300:
        raise RequestFailedError(f"{what}: HTTP {status}: {body}")
    return body


def pod_on_node(
    plane: ControlPlane, namespace: str, service_account: str, node: str, name: str
) -> dict[str, Any]:
    """Create a Pod of `service_account` already bound to `node` (as the scheduler would)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": node,
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "containers": [_RESTRICTED_CONTAINER],
        },
    }
    return dict(
        _ok(
            *plane.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod),
            f"create pod {namespace}/{name}",
        )
    )


def service_account_token(
    plane: ControlPlane,
    namespace: str,
    name: str,
    *,
    bound_pod: dict[str, Any] | None = None,
    expiration_seconds: int = 3600,
) -> str:
    """A token for system:serviceaccount:<namespace>:<name> from the TokenRequest API."""
    spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
    if bound_pod is not None:
        spec["boundObjectRef"] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": bound_pod["metadata"]["name"],
            "uid": bound_pod["metadata"]["uid"],
        }
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    answer = _ok(
        *plane.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body
        ),
        f"token for {namespace}/{name}",
    )
    return str(answer["status"]["token"])


def service_account_kubeconfig(
    plane: ControlPlane,
    path: Path,
    namespace: str,
    name: str,
    *,
    bound_pod: dict[str, Any] | None = None,
) -> Path:
    token = service_account_token(plane, namespace, name, bound_pod=bound_pod)
    return plane.write_kubeconfig(path, token=token, user=f"{namespace}-{name}")
