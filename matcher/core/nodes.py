"""The part of a Node the matcher looks at, as plain immutable data.

Kubelets update Node status every few seconds; keeping only our labels, the allocatable
capacity, the two eligibility flags and whether the detector's mark is there lets the
controller ignore the updates that change nothing a profile depends on (``ClusterIndex.upsert``
returns False for them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from detector.labels import LABEL_PREFIX, OWNED_LABELS_ANNOTATION
from matcher.core.quantity import QuantityError, parse_quantity

NANOS_PER_UNIT = 10**9


class NodeError(ValueError):
    """A Node object the matcher cannot use; the message names the field."""


class AllocatableMissing(NodeError):
    """The kubelet has not reported ``status.allocatable`` yet (a node that is registering)."""


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    """Only the keys under ``detector.labels.LABEL_PREFIX``."""
    allocatable: Mapping[str, Fraction] = field(default_factory=dict)
    """``status.allocatable``, parsed exactly."""
    schedulable: bool = True
    """False when cordoned (``spec.unschedulable: true``)."""
    ready: bool = True
    """The ``Ready`` condition is ``True``."""
    detector_ran: bool = False
    """The detector's ownership annotation (``OWNED_LABELS_ANNOTATION``) is on the node: the
    detector published here, even if it found nothing (the annotation is empty then)."""
    nanos: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    """``allocatable`` in integer nano-units (derived): int comparisons are ~50x faster than
    Fraction ones, and exact, since Kubernetes rounds every quantity to a whole nano-unit."""

    def __post_init__(self) -> None:
        if len(self.nanos) != len(self.allocatable):  # not given by node_view_of
            object.__setattr__(self, "nanos", to_nanos(self.allocatable))


def to_nanos(values: Mapping[str, Fraction]) -> dict[str, int]:
    return {name: math.ceil(value * NANOS_PER_UNIT) for name, value in values.items()}


def _mapping(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NodeError(f"{where}{key}: expected a mapping, got {type(value).__name__}")
    return value


def node_view(obj: Mapping[str, Any]) -> NodeView:
    """A NodeView from a Node dict as the API or ``kubectl get nodes -o yaml`` gives it."""
    if not isinstance(obj, Mapping):
        raise NodeError(f"expected a Node mapping, got {type(obj).__name__}")
    metadata = _mapping(obj, "metadata", "")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise NodeError("metadata.name: required")
    spec = _mapping(obj, "spec", "")
    status = _mapping(obj, "status", "")
    conditions = status.get("conditions") or []
    if not isinstance(conditions, list):
        raise NodeError(f"node {name}: status.conditions: expected a list")
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in conditions
    )
    return node_view_of(
        name,
        {str(k): str(v) for k, v in _mapping(metadata, "labels", "metadata.").items()},
        unschedulable=spec.get("unschedulable") is True,
        allocatable=(
            None
            if status.get("allocatable") is None
            else _mapping(status, "allocatable", "status.")
        ),
        ready=ready,
        detector_ran=_mapping(metadata, "annotations", "metadata.").get(OWNED_LABELS_ANNOTATION)
        is not None,
    )


#: Nodes of a cluster repeat the same few quantities ("110", "8", "2063Gi"): parse each once.
#: (Fractions are immutable, so sharing them is safe.)
@functools.lru_cache(maxsize=8192)
def _quantity(raw: str) -> tuple[Fraction, int]:
    value = parse_quantity(raw)
    return value, math.ceil(value * NANOS_PER_UNIT)


def node_view_of(
    name: str,
    labels: Mapping[str, str],
    *,
    unschedulable: bool,
    allocatable: Mapping[str, Any] | None,
    ready: bool,
    detector_ran: bool,
) -> NodeView:
    """A NodeView from the fields a decoder picked out of a Node (``node_view`` reads them from
    a dict; the controller decodes them straight from the API's JSON). Label keys and values
    are strings here."""
    if allocatable is None:
        raise AllocatableMissing(f"node {name}: status.allocatable: missing")
    parsed: dict[str, Fraction] = {}
    nanos: dict[str, int] = {}
    for resource, raw in allocatable.items():
        try:
            value, nano = _quantity(raw) if isinstance(raw, str) else _uncached(raw)
        except QuantityError as exc:
            raise NodeError(f"node {name}: status.allocatable[{resource!r}]: {exc}") from None
        parsed[str(resource)] = value
        nanos[str(resource)] = nano
    return NodeView(
        name=name,
        labels={k: v for k, v in labels.items() if k.startswith(LABEL_PREFIX)},
        allocatable=parsed,
        schedulable=not unschedulable,
        ready=ready,
        detector_ran=detector_ran,
        nanos=nanos,
    )


def _uncached(raw: Any) -> tuple[Fraction, int]:
    value = parse_quantity(raw)
    return value, math.ceil(value * NANOS_PER_UNIT)
