"""Helpers for the webhook tests: AdmissionReview bodies as kube-apiserver sends them, an HTTPS
client that trusts only a given CA bundle (as the API server trusts only the caBundle), and the
certificate a server presents."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import uuid
from typing import Any

from cryptography import x509

from tests.controlplane.process import free_port

__all__ = ["free_port", "post_review", "review", "served_certificate", "tls_client"]


def review(
    pod: dict[str, Any],
    namespace: str = "ml-team",
    *,
    uid: str | None = None,
    operation: str = "CREATE",
    api_version: str = "admission.k8s.io/v1",
) -> dict[str, Any]:
    """An AdmissionReview for creating ``pod``, shaped as kube-apiserver v1.34 sends it."""
    return {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod.get("metadata", {}).get("name", ""),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def tls_client(ca_bundle: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_bundle.decode())
    return context


def post_review(
    port: int,
    body: bytes | dict[str, Any],
    ca_bundle: bytes,
    *,
    host: str = "127.0.0.1",
    content_type: str = "application/json",
    connection: http.client.HTTPSConnection | None = None,
) -> tuple[int, dict[str, Any] | str]:
    """(HTTP status, decoded JSON or text) of one POST /mutate-pods."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = connection or http.client.HTTPSConnection(
        host, port, context=tls_client(ca_bundle), timeout=10
    )
    try:
        conn.request("POST", "/mutate-pods", body=raw, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        if connection is None:
            conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data.decode(errors="replace")


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    response = answer["response"]
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops


def served_certificate(port: int, host: str = "127.0.0.1") -> x509.Certificate:
    """The leaf certificate the server presents (not verified)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
