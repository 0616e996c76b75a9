"""Object metadata rules: names, labels, annotations, server-set fields."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from . import validation
from .errors import Cause

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName alphabet

# Server-owned metadata a client cannot set.
SERVER_FIELDS = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "resourceVersion")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


def name_causes(name: str, dns_label: bool) -> list[Cause]:
    """ValidateObjectMeta's name check: one cause per failed rule."""
    msgs = validation.is_dns1123_label(name) if dns_label else validation.is_dns1123_subdomain(name)
    return [Cause.of(validation.invalid("metadata.name", name, m)) for m in msgs]


def metadata_causes(meta: dict[str, Any]) -> list[Cause]:
    """ValidateLabels and ValidateAnnotations, worded as kube-apiserver words them."""
    errors: list[validation.FieldError] = []
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [Cause("metadata.labels", "Invalid value: must be a map of strings")]
    for key, value in labels.items():
        errors += [
            validation.invalid("metadata.labels", key, m) for m in validation.is_qualified_name(key)
        ]
        if not isinstance(value, str):
            errors.append(validation.invalid(f"metadata.labels[{key}]", value, "must be a string"))
        else:
            errors += [
                validation.invalid("metadata.labels", value, m)
                for m in validation.is_valid_label_value(value)
            ]
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        return [Cause.of(e) for e in errors] + [
            Cause("metadata.annotations", "Invalid value: must be a map of strings")
        ]
    total = 0
    for key, value in annotations.items():
        errors += [
            validation.invalid("metadata.annotations", key, m)
            for m in validation.is_qualified_name(key.lower())
        ]
        if not isinstance(value, str):
            errors.append(
                validation.invalid(f"metadata.annotations[{key}]", value, "must be a string")
            )
        else:
            total += len(key.encode()) + len(value.encode())
    if total > 256 * 1024:
        errors.append(
            validation.FieldError(
                "FieldValueTooLong",
                "metadata.annotations",
                detail=f"may not be more than {256 * 1024} bytes",
            )
        )
    return [Cause.of(e) for e in errors]


def string_map_causes(obj: dict[str, Any], key: str) -> list[Cause]:
    """ConfigMap data/binaryData: keys as ValidateConfigMap checks them."""
    data = obj.get(key)
    if data is None:
        return []
    if not isinstance(data, dict):
        return [
            Cause(key, f'Invalid value: "{type(data).__name__}": {key} must be a map of strings')
        ]
    causes: list[Cause] = []
    for k, v in data.items():
        causes += [
            Cause.of(validation.invalid(f"{key}[{k}]", k, m))
            for m in validation.is_config_map_key(k)
        ]
        if not isinstance(v, str):
            causes.append(Cause(f"{key}[{k}]", "Invalid value: must be a string"))
    return causes
