"""Admission for writes: validation (and, for custom resources, pruning, defaulting and CEL),
built-in defaults, and the generation rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import cel, crds, kinds, meta, schema
from .errors import ApiError, Cause
from .resources import ResourceType
from .validation import FieldError

NAMESPACES = "/namespaces"
CRDS = "apiextensions.k8s.io/customresourcedefinitions"


def admit(
    rt: ResourceType,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    query: Mapping[str, str],
) -> list[str]:
    """Validate (and for custom resources prune and default) `obj` in place."""
    md = obj["metadata"]
    if rt.key == kinds.EVENTS and not rt.shares_storage_of:
        # core/v1 Events: the event checks first and alone, then what every object gets.
        event = kinds.event_errors(obj, old, strict=False)
        if event:
            raise ApiError.invalid(rt.kind, rt.group, md.get("name", ""), _causes(event))
        causes = _causes(kinds.path_segment_name_errors(md["name"])) if old is None else []
        causes += meta.metadata_causes(md)
        if causes:
            raise ApiError.invalid(rt.kind, rt.group, md.get("name", ""), causes)
        return []
    causes = meta.name_causes(md["name"], dns_label=rt.key == NAMESPACES) if old is None else []
    causes += meta.metadata_causes(md)
    if rt.key == kinds.EVENTS:  # events.k8s.io/v1: the strict checks, on the core Event
        causes += _causes(kinds.event_errors(obj, old, strict=True))
        if causes:
            raise ApiError.invalid(rt.kind, "", md.get("name", ""), causes)
    if rt.key == kinds.LEASES:
        causes += _causes(kinds.lease_errors(obj))
    warnings: list[str] = []
    if rt.key in ("/configmaps",):
        causes += meta.string_map_causes(obj, "data") + meta.string_map_causes(obj, "binaryData")
    if rt.key == CRDS:
        causes += crds.crd_causes(obj)
    version = obj["apiVersion"].rsplit("/", 1)[-1]
    sch = rt.schemas.get(version) if rt.is_custom else None
    if sch is not None:
        unknown: list[str] = []
        pruned = schema.prune(obj, sch, "", unknown, root=True)
        mode = query.get("fieldValidation", "Warn")
        if unknown and mode == "Strict":
            listed = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise ApiError.bad_request(
                f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: '
                f"strict decoding error: {listed}"
            )
        if unknown and mode != "Ignore":
            warnings += [f'unknown field "{u}"' for u in unknown]
        schema.apply_defaults(pruned, sch)
        obj.clear()
        obj.update(pruned)
        causes += schema.validate(
            obj, sch, "", root=True, old=old if old is not None else schema.NO_OLD
        )
        if schema.has_rules(sch):
            # apiextensions' hasBlockingErr: some schema errors leave CEL rules unchecked.
            if any(c.reason in _BLOCKING for c in causes):
                causes.append(
                    Cause(
                        "<nil>",
                        "Invalid value: null: some validation rules were not checked because "
                        "the object was invalid; correct the existing errors to complete "
                        "validation",
                    )
                )
            else:
                causes += cel.check(obj, old if old is not None else cel.missing(), sch)
    if causes:
        raise ApiError.invalid(rt.kind, rt.group, md.get("name", ""), causes)
    return warnings


_BLOCKING = frozenset(
    {
        "FieldValueNotSupported",
        "FieldValueRequired",
        "FieldValueTooLong",
        "FieldValueTooMany",
        "FieldValueTypeInvalid",
    }
)


def _causes(errors: list[FieldError]) -> list[Cause]:
    return [Cause.of(e) for e in errors]


def builtin_defaults(rt: ResourceType, obj: dict[str, Any]) -> None:
    if rt.key == NAMESPACES:
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        status = obj.setdefault("status", {})
        status["phase"] = status.get("phase") or "Active"
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"][
            "name"
        ]


def spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    skip = {"metadata", "status"} if rt.has_status else {"metadata"}
    a = {k: v for k, v in old.items() if k not in skip}
    b = {k: v for k, v in new.items() if k not in skip}
    return a != b
