"""What a profile needs from a node: the label key and the resolved ResourceRequirements.

Derivation (spec README, "Resource derivation"):

- ``acceleratorType: gpu`` x N derives ``<gpuResourceName>: N`` (``amd.com/gpu`` by default);
  ``cpu`` x N derives ``cpu: N``; a count of 0 (or none) derives nothing. When
  ``acceleratorType`` is unset but ``acceleratorModel`` is set, an ``EPYC_*`` model means cpu
  and any other model means gpu.
- ``spec.resources`` is merged on top key by key: an explicit key wins; resource names are
  used literally (``amd.com/cpx-nps4`` stays as written).
- Kubernetes defaulting is applied so the result is deployable as is: a resource with only a
  limit gets an equal request, and an extended resource (``vendor.com/x``) with only a request
  gets an equal limit (Kubernetes refuses extended resources whose request and limit differ).

A profile is CPU-only when it has no accelerator field at all and asks for no extended
resource. A profile without ``acceleratorModel`` that does ask for an extended resource (say
``amd.com/gpu: 2`` in ``spec.resources``) is not CPU-only: it is matched on resources alone,
with no label requirement.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from detector.labels import EPYC_STEM, accelerator_label_key
from matcher.api.models import AcceleratorType, ProfileSpec
from matcher.core.config import MatcherConfig
from matcher.core.quantity import parse_quantity


def is_extended_resource(name: str) -> bool:
    """``amd.com/gpu`` yes; ``cpu``, ``memory``, ``hugepages-2Mi``, ``kubernetes.io/x`` no."""
    domain, sep, _ = name.partition("/")
    if not sep or name.startswith("requests."):
        return False
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def required_label_key(spec: ProfileSpec) -> str | None:
    """``feature.node.kubernetes.io/aim-accelerator.<acceleratorModel>``, or None."""
    if not spec.accelerator_model:
        return None
    return accelerator_label_key(spec.accelerator_model)


def effective_accelerator_type(spec: ProfileSpec) -> AcceleratorType | None:
    if spec.accelerator_type is not None:
        return spec.accelerator_type
    if spec.accelerator_model:
        if spec.accelerator_model.startswith(EPYC_STEM):
            return AcceleratorType.CPU
        return AcceleratorType.GPU
    return None


def derived_requests(spec: ProfileSpec, config: MatcherConfig) -> dict[str, str]:
    count = spec.accelerator_count or 0
    kind = effective_accelerator_type(spec)
    if count <= 0 or kind is None:
        return {}
    resource = config.gpu_resource_name if kind is AcceleratorType.GPU else "cpu"
    return {resource: str(count)}


def _explicit(spec: ProfileSpec) -> tuple[dict[str, str], dict[str, str]]:
    res = spec.resources
    requests = {k: str(v) for k, v in ((res.requests or {}) if res else {}).items()}
    limits = {k: str(v) for k, v in ((res.limits or {}) if res else {}).items()}
    return requests, limits


def resolve_resources(spec: ProfileSpec, config: MatcherConfig) -> dict[str, Any]:
    """The ResourceRequirements dict for ``status.resources`` (quantities as strings)."""
    explicit_requests, explicit_limits = _explicit(spec)
    requests = derived_requests(spec, config)
    requests.update(explicit_requests)
    limits = dict(explicit_limits)
    for name, value in explicit_limits.items():
        requests.setdefault(name, value)
    for name, value in requests.items():
        if is_extended_resource(name):
            limits.setdefault(name, value)
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = dict(sorted(limits.items()))
    if requests:
        out["requests"] = dict(sorted(requests.items()))
    if spec.resources is not None and spec.resources.claims:
        out["claims"] = [
            c.model_dump(by_alias=True, exclude_none=True) for c in spec.resources.claims
        ]
    return out


def parsed_requests(resources: dict[str, Any]) -> dict[str, Fraction]:
    """The requests of a resolved ResourceRequirements, parsed exactly."""
    return {name: parse_quantity(v) for name, v in (resources.get("requests") or {}).items()}


def is_cpu_only(spec: ProfileSpec) -> bool:
    if (
        spec.accelerator_model is not None
        or spec.accelerator_type is not None
        or spec.accelerator_count is not None
    ):
        return False
    requests, limits = _explicit(spec)
    return not any(is_extended_resource(name) for name in (*requests, *limits))


def hardware_summary(spec: ProfileSpec, resources: dict[str, Any]) -> str:
    """``1 x MI300X``; ``MI300X`` for count 0; ``CPU`` without a model.

    Without a model but with extended resources (``amd.com/gpu: 2``) the summary names them
    (``2 x amd.com/gpu``) instead of the misleading ``CPU``.
    """
    if spec.accelerator_model:
        if spec.accelerator_count:
            return f"{spec.accelerator_count} x {spec.accelerator_model}"
        return spec.accelerator_model
    extended = [
        f"{value} x {name}"
        for name, value in (resources.get("requests") or {}).items()
        if is_extended_resource(name)
    ]
    return ", ".join(extended) if extended else "CPU"


def image_version(image: str) -> str | None:
    """The tag of an image reference: ``repo/img:0.8.5`` -> ``0.8.5``.

    None for an untagged image or one pinned by digest only (``img@sha256:...``); a registry
    port (``host:5000/img``) is not a tag. With both a tag and a digest the tag is returned.
    """
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    _, sep, tag = last.partition(":")
    return tag if sep and tag else None
