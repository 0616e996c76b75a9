"""Resource types the test API server serves: built-ins and those registered from CRDs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass
class ResourceType:
    """One served resource (e.g. nodes in core/v1, aimprofiles in aim.eai.amd.com)."""

    group: str
    versions: tuple[str, ...]  # served versions, preferred first
    storage_version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    # Only custom resources carry metadata.generation (built-ins we serve have none).
    has_generation: bool = False
    is_custom: bool = False
    printer_columns: tuple[PrinterColumn, ...] = ()
    # Per-version openAPIV3Schema for custom resources (None: no validation).
    schemas: dict[str, Mapping[str, Any] | None] = field(default_factory=dict)
    # Strategic-merge list keys for built-ins: dotted path -> merge key.
    merge_keys: Mapping[str, str] = field(default_factory=dict)
    # CRD `selectableFields` (Kubernetes 1.32+): extra field labels, e.g. `spec.aimId`.
    selectable_fields: frozenset[str] = frozenset()
    # events.k8s.io Events live in core Events' storage, converted on the way in and out.
    shares_storage_of: str | None = None

    @property
    def key(self) -> str:
        """Storage key: group/plural (versions share storage, as in etcd)."""
        return self.shares_storage_of or f"{self.group}/{self.plural}"

    def api_version(self, version: str | None = None) -> str:
        v = version or self.storage_version
        return f"{self.group}/{v}" if self.group else v

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        """The name Status messages use: `nodes`, `aimprofiles.aim.eai.amd.com`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _builtin(
    group: str,
    kind: str,
    plural: str,
    *,
    ns: bool,
    short: tuple[str, ...] = (),
    status: bool = False,
    keys: Mapping[str, str] | None = None,
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        versions=("v1",),
        storage_version="v1",
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=ns,
        short_names=short,
        categories=categories,
        has_status=status,
        merge_keys=dict(keys or {}),
    )


def builtin_types() -> list[ResourceType]:
    owner = {"metadata.ownerReferences": "uid"}
    pod_keys = {
        **owner,
        "spec.containers": "name",
        "spec.initContainers": "name",
        "spec.volumes": "name",
        "status.conditions": "type",
    }
    node_keys = {**owner, "status.conditions": "type", "status.addresses": "type"}
    events_v1 = _builtin("events.k8s.io", "Event", "events", ns=True, short=("ev",), keys=owner)
    events_v1.shares_storage_of = "/events"
    return [
        _builtin("", "Namespace", "namespaces", ns=False, short=("ns",), status=True, keys=owner),
        _builtin("", "Node", "nodes", ns=False, short=("no",), status=True, keys=node_keys),
        _builtin("", "ConfigMap", "configmaps", ns=True, short=("cm",), keys=owner),
        # Pods are stored and listed only (nothing runs them), so `kubectl describe node` works.
        _builtin("", "Pod", "pods", ns=True, short=("po",), status=True, keys=pod_keys),
        _builtin("", "Event", "events", ns=True, short=("ev",), keys=owner),
        events_v1,
        _builtin("coordination.k8s.io", "Lease", "leases", ns=True, keys=owner),
        _builtin(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            ns=False,
            short=("crd", "crds"),
            status=True,
            keys=owner,
            categories=("api-extensions",),
        ),
    ]
