"""API errors rendered as metav1.Status objects, with the codes and reasons Kubernetes uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .validation import FieldError


@dataclass(frozen=True)
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"

    @classmethod
    def of(cls, error: FieldError) -> Cause:
        return cls(error.field, error.body, error.type)


def _details(qualified: str, name: str, kind: str | None = None) -> dict[str, Any]:
    """Status details for ``<plural>.<group>`` and a name, as the real server fills them."""
    plural, _, group = qualified.partition(".")
    details: dict[str, Any] = {"name": name, "kind": kind or plural}
    if group:
        details["group"] = group
    return details


@dataclass
class ApiError(Exception):
    code: int
    reason: str
    message: str
    #: None: no details at all; {} is sent as an empty object, as some errors of the real
    #: server carry (405, 415, a failed JSON patch test).
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The Status's ListMeta (a 410 for an expired continue token offers a new token).
    metadata: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.metadata),
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            out["reason"] = self.reason
        out["code"] = self.code
        if self.details is not None:
            out["details"] = self.details
        return out

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)

    @classmethod
    def not_found(cls, qualified: str, name: str, kind_plural: str | None = None) -> ApiError:
        details = _details(qualified, name, kind_plural)
        return cls(404, "NotFound", f'{qualified} "{name}" not found', details)

    @classmethod
    def already_exists(cls, qualified: str, name: str) -> ApiError:
        details = _details(qualified, name)
        return cls(409, "AlreadyExists", f'{qualified} "{name}" already exists', details)

    @classmethod
    def conflict(cls, qualified: str, name: str) -> ApiError:
        details = _details(qualified, name)
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qualified} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            details,
        )

    @classmethod
    def invalid(cls, kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
        qual = f"{kind}.{group}" if group else kind
        parts: list[str] = []
        for c in causes:  # utilerrors.NewAggregate: each distinct message once
            text = f"{c.field}: {c.message}" if c.field else c.message
            if text not in parts:
                parts.append(text)
        joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        details: dict[str, Any] = {"name": name} if name else {}
        if group:
            details["group"] = group
        details["kind"] = kind
        details["causes"] = [
            {"reason": c.reason, "message": c.message, "field": c.field} for c in causes
        ]
        return cls(422, "Invalid", f'{qual} "{name}" is invalid: {joined}', details)

    @classmethod
    def gone(cls, message: str) -> ApiError:
        return cls(410, "Expired", message)

    @classmethod
    def method_not_allowed(cls) -> ApiError:
        return cls(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            {},
        )

    @classmethod
    def unsupported_media_type(cls, content_type: str) -> ApiError:
        """A PATCH content type kube-apiserver does not know at all."""
        return cls(415, "UnsupportedMediaType", "415: Unsupported Media Type", {})

    @classmethod
    def unsupported_patch_type(cls, accepted: tuple[str, ...]) -> ApiError:
        """A patch type this resource does not take (strategic merge on custom resources)."""
        return cls(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted),
        )

    @classmethod
    def delete_precondition(
        cls, kind: str, group: str, name: str, *, what: str, wanted: str, have: str
    ) -> ApiError:
        """rest.BeforeDelete's Conflict: it names the kind, not the resource."""
        tail = (
            "The object might have been deleted and then recreated"
            if what == "UID"
            else "The object might have been modified"
        )
        qualified = f"{kind}.{group}" if group else kind
        details: dict[str, Any] = {"name": name}
        if group:
            details["group"] = group
        details["kind"] = kind
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qualified} "{name}": the {what} in the '
            f"precondition ({wanted}) does not match the {what} in record ({have}). {tail}",
            details,
        )
