"""AdmissionReview in and out, strictly (controller-runtime's ``webhook/admission`` shape).

:func:`decode` reads a request body into an :class:`AdmissionRequest` or raises
:class:`ReviewError` saying what is wrong with it; :func:`encode` writes a response as an
``AdmissionReview`` of the request's own apiVersion (``admission.k8s.io/v1`` or ``v1beta1``)
carrying the request's uid, which is how the API server matches the two. Responses come from
four small constructors: :func:`allowed`, :func:`denied`, :func:`patched` and :func:`errored`.

The HTTP edge around it (``server.py``) caps the body at :data:`MAX_REVIEW_BYTES`, the limit
controller-runtime's webhook server applies, and accepts only ``application/json``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

API_V1 = "admission.k8s.io/v1"
API_V1BETA1 = "admission.k8s.io/v1beta1"
API_VERSIONS = (API_V1, API_V1BETA1)
#: controller-runtime's limit on an AdmissionReview body (pkg/webhook/admission/http.go): far
#: above any object etcd stores (1.5 MiB by default), with room for oldObject.
MAX_REVIEW_BYTES = 7 * 1024 * 1024
CONTENT_TYPE = "application/json"


class ReviewError(ValueError):
    """A body that is not an AdmissionReview request; the message says why (one line)."""


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    api_version: str
    uid: str
    #: ``{"group": "", "version": "v1", "kind": "Pod"}``
    kind: Mapping[str, str]
    resource: Mapping[str, str]
    sub_resource: str
    operation: str
    namespace: str
    name: str
    object: Mapping[str, Any] | None
    dry_run: bool
    user: str

    @property
    def is_pod(self) -> bool:
        kind, resource = self.kind, self.resource
        return (
            (kind.get("group"), kind.get("kind")) == ("", "Pod")
            and resource.get("resource") == "pods"
            and not self.sub_resource
        )


@dataclass(frozen=True, slots=True)
class AdmissionResponse:
    allowed: bool
    #: The HTTP-like code of a refusal (403 denied, 400/500 errored); 200 when allowed.
    code: int = 200
    message: str = ""
    reason: str = ""
    patch: tuple[Mapping[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()


def allowed(warnings: Iterable[str] = ()) -> AdmissionResponse:
    return AdmissionResponse(allowed=True, warnings=tuple(warnings))


def patched(ops: Sequence[Mapping[str, Any]], warnings: Iterable[str] = ()) -> AdmissionResponse:
    """Allowed with a JSON patch (none when ``ops`` is empty)."""
    return AdmissionResponse(allowed=True, patch=tuple(ops), warnings=tuple(warnings))


def denied(message: str, *, code: int = 403, warnings: Iterable[str] = ()) -> AdmissionResponse:
    reason = "Forbidden" if code == 403 else "ServiceUnavailable" if code == 503 else ""
    return AdmissionResponse(
        allowed=False, code=code, message=message, reason=reason, warnings=tuple(warnings)
    )


def errored(code: int, message: str) -> AdmissionResponse:
    """The webhook could not judge the request (bad input: 400; its own failure: 500)."""
    return AdmissionResponse(allowed=False, code=code, message=message)


def _text(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReviewError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _group_version_kind(value: object, where: str) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ReviewError(f"{where}: expected an object")
    return {k: _text(v, f"{where}.{k}") for k, v in value.items() if isinstance(k, str)}


def decode(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview body; raises ReviewError."""
    if not body:
        raise ReviewError("the request body is empty")
    if len(body) > MAX_REVIEW_BYTES:
        raise ReviewError(f"the request body is larger than {MAX_REVIEW_BYTES} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise ReviewError(f"the request body is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ReviewError("the request body is not a JSON object")
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if kind != "AdmissionReview":
        raise ReviewError(f"kind: expected AdmissionReview, got {kind!r}")
    if api_version not in API_VERSIONS:
        raise ReviewError(f"apiVersion: expected {' or '.join(API_VERSIONS)}, got {api_version!r}")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise ReviewError("request: missing or not an object")
    uid = _text(request.get("uid"), "request.uid")
    if not uid:
        raise ReviewError("request.uid: missing (the response must echo it)")
    obj = request.get("object")
    if obj is not None and not isinstance(obj, dict):
        raise ReviewError("request.object: expected an object")
    user = request.get("userInfo")
    return AdmissionRequest(
        api_version=str(api_version),
        uid=uid,
        kind=_group_version_kind(request.get("kind"), "request.kind"),
        resource=_group_version_kind(request.get("resource"), "request.resource"),
        sub_resource=_text(request.get("subResource"), "request.subResource"),
        operation=_text(request.get("operation"), "request.operation"),
        namespace=_text(request.get("namespace"), "request.namespace"),
        name=_text(request.get("name"), "request.name"),
        object=obj,
        dry_run=request.get("dryRun") is True,
        user=str(user.get("username") or "") if isinstance(user, dict) else "",
    )


def uid_of(body: bytes) -> tuple[str, str]:
    """(uid, apiVersion) of a body :func:`decode` refused, when they can be read at all, so that
    even an error answer is one the API server can match to its request."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return "", API_V1
    if not isinstance(doc, dict):
        return "", API_V1
    request = doc.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    version = doc.get("apiVersion")
    return (
        uid if isinstance(uid, str) else "",
        version if version in API_VERSIONS else API_V1,
    )


def encode(response: AdmissionResponse, uid: str, api_version: str = API_V1) -> bytes:
    """The AdmissionReview the API server expects back for the request ``uid``."""
    body: dict[str, Any] = {"uid": uid, "allowed": response.allowed}
    if not response.allowed:
        status: dict[str, Any] = {
            "metadata": {},
            "status": "Failure",
            "code": response.code,
            "message": response.message,
        }
        if response.reason:
            status["reason"] = response.reason
        body["status"] = status
    if response.patch:
        raw = json.dumps(list(response.patch), separators=(",", ":")).encode()
        body["patchType"] = "JSONPatch"
        body["patch"] = base64.b64encode(raw).decode("ascii")
    if response.warnings:
        body["warnings"] = list(response.warnings)
    review = {
        "apiVersion": api_version if api_version in API_VERSIONS else API_V1,
        "kind": "AdmissionReview",
        "response": body,
    }
    return json.dumps(review, separators=(",", ":")).encode()
