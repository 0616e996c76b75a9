"""Object metadata rules: names, labels, annotations, server-set fields."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from .errors import Cause
from .selectors import label_key_error, label_value_error

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
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
    if dns_label:
        if len(name) > 63 or not _LABEL.match(name):
            return [
                Cause(
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower '
                    "case alphanumeric characters or '-', and must start and end with an "
                    "alphanumeric character",
                )
            ]
        return []
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return [
            Cause(
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        ]
    return []


def metadata_causes(meta: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [Cause("metadata.labels", "Invalid value: must be a map of strings")]
    for key, value in labels.items():
        if err := label_key_error(key):
            causes.append(Cause("metadata.labels", f'Invalid value: "{key}": {err}'))
        if not isinstance(value, str):
            causes.append(Cause(f"metadata.labels[{key}]", "Invalid value: must be a string"))
        elif err := label_value_error(value):
            causes.append(Cause("metadata.labels", f'Invalid value: "{value}": {err}'))
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        return [*causes, Cause("metadata.annotations", "Invalid value: must be a map of strings")]
    total = 0
    for key, value in annotations.items():
        if err := label_key_error(key):
            causes.append(Cause("metadata.annotations", f'Invalid value: "{key}": {err}'))
        if not isinstance(value, str):
            causes.append(Cause(f"metadata.annotations[{key}]", "Invalid value: must be a string"))
        else:
            total += len(key) + len(value)
    if total > 256 * 1024:
        causes.append(
            Cause(
                "metadata.annotations",
                f"Too long: must have at most {256 * 1024} bytes",
                "FieldValueTooLong",
            )
        )
    return causes


def string_map_causes(obj: dict[str, Any], key: str) -> list[Cause]:
    data = obj.get(key)
    if data is None:
        return []
    if not isinstance(data, dict):
        return [
            Cause(key, f'Invalid value: "{type(data).__name__}": {key} must be a map of strings')
        ]
    return [
        Cause(f"{key}[{k}]", "Invalid value: must be a string")
        for k, v in data.items()
        if not isinstance(v, str)
    ]
