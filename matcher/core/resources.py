"""What a profile needs from a node: the label key and the resolved ResourceRequirements.

Derivation (spec README, "Resource derivation"):

- ``acceleratorType: gpu`` x N derives ``<GPU resource>: N``: the configured
  ``gpuResourceName`` (``amd.com/gpu`` by default), or ``nvidia.com/gpu`` with
  ``acceleratorVendor: nvidia`` (AIM Engine's vendor contract); ``cpu`` x N derives ``cpu: N``;
  a count of 0 (or none) derives nothing. Without ``acceleratorType`` nothing is derived
  (the spec: derivation is from the type), unless the matcher config opts into
  ``inferAcceleratorType`` (``EPYC_*`` models mean cpu, any other model gpu).
- ``spec.resources`` is merged on top key by key: an explicit key wins; resource names are
  used literally (``amd.com/cpx-nps4`` stays as written).
- Kubernetes defaulting is applied so the result is deployable as is: a resource with only a
  limit gets an equal request, and an extended resource (``vendor.com/x``) with only a request
  gets an equal limit (Kubernetes refuses extended resources whose request and limit differ).

A profile is CPU-only when it has none of ``acceleratorModel``, ``acceleratorType`` and
``acceleratorCount`` and its ``spec.resources.requests`` name no extended resource (the seed's
words: "without extended device resource requests"; AIM Engine's HasAcceleratorRequirement
reads requests only too). A limit-only extended resource therefore leaves a profile CPU-only,
though ``status.resources`` still shows the request Kubernetes will default from the limit. A
profile without ``acceleratorModel`` that does request an extended resource (say
``amd.com/gpu: 2``) is not CPU-only: it is matched on resources alone, with no label
requirement.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from detector.labels import EPYC_STEM, accelerator_label_key
from matcher.api.models import AcceleratorType, AcceleratorVendor, ProfileSpec
from matcher.core.config import MatcherConfig
from matcher.core.quantity import parse_quantity

NVIDIA_GPU_RESOURCE = "nvidia.com/gpu"
# AMD's device plugin, ``mixed`` strategy: one resource per partition mode, ``<C>_<M>``
# (amd.com/cpx_nps4). spx_nps1 is a whole GPU.
_PARTITION_RESOURCE_RE = re.compile(r"^(spx|dpx|tpx|qpx|cpx)[_-]nps[0-9]+$", re.IGNORECASE)


def is_extended_resource(name: str) -> bool:
    """``amd.com/gpu`` yes; ``cpu``, ``memory``, ``hugepages-2Mi``, ``kubernetes.io/x`` no."""
    domain, sep, _ = name.partition("/")
    if not sep or name.startswith("requests."):
        return False
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def is_partition_resource(name: str) -> bool:
    """``amd.com/cpx_nps4`` yes (a GPU partition); ``amd.com/gpu`` and ``amd.com/spx_nps1`` no."""
    _, _, leaf = name.rpartition("/")
    match = _PARTITION_RESOURCE_RE.match(leaf)
    return match is not None and match.group(1).lower() != "spx"


def required_label_key(spec: ProfileSpec) -> str | None:
    """``feature.node.kubernetes.io/aim-accelerator.<acceleratorModel>``, or None."""
    if not spec.accelerator_model:
        return None
    return accelerator_label_key(spec.accelerator_model)


def effective_accelerator_type(spec: ProfileSpec, config: MatcherConfig) -> AcceleratorType | None:
    """``acceleratorType``; inferred from the model only when the config opts in."""
    if spec.accelerator_type is not None or not config.infer_accelerator_type:
        return spec.accelerator_type
    if spec.accelerator_model:
        if spec.accelerator_model.startswith(EPYC_STEM):
            return AcceleratorType.CPU
        return AcceleratorType.GPU
    return None


def gpu_resource_name(spec: ProfileSpec, config: MatcherConfig) -> str:
    if spec.accelerator_vendor is AcceleratorVendor.NVIDIA:
        return NVIDIA_GPU_RESOURCE
    return config.gpu_resource_name


def derived_request(spec: ProfileSpec, config: MatcherConfig) -> tuple[str, int] | None:
    """The (resource, count) that acceleratorType x acceleratorCount derives, if any."""
    count = spec.accelerator_count or 0
    kind = effective_accelerator_type(spec, config)
    if count <= 0 or kind is None:
        return None
    resource = gpu_resource_name(spec, config) if kind is AcceleratorType.GPU else "cpu"
    return resource, count


def derived_requests(spec: ProfileSpec, config: MatcherConfig) -> dict[str, str]:
    derived = derived_request(spec, config)
    return {} if derived is None else {derived[0]: str(derived[1])}


def derives_whole_gpus(spec: ProfileSpec, config: MatcherConfig) -> bool:
    """The profile derives a GPU request that is not a partition resource."""
    derived = derived_request(spec, config)
    return (
        derived is not None
        and effective_accelerator_type(spec, config) is AcceleratorType.GPU
        and not is_partition_resource(derived[0])
    )


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
    requests, _ = _explicit(spec)
    return not any(is_extended_resource(name) for name in requests)


def hardware_summary(spec: ProfileSpec) -> str:
    """``1 x MI300X``; ``MI300X`` for count 0; ``CPU`` without a model (the spec's forms)."""
    if spec.accelerator_model:
        if spec.accelerator_count:
            return f"{spec.accelerator_count} x {spec.accelerator_model}"
        return spec.accelerator_model
    return "CPU"


def image_version(image: str) -> str | None:
    """The tag of an image reference: ``repo/img:0.8.5`` -> ``0.8.5``.

    None for an untagged image and for any image pinned by digest (``@sha256:...``,
    ``@sha512:...``), even one that also carries a tag: the digest is what runs, so the tag
    says nothing reliable. A registry port (``host:5000/img``) is not a tag.
    """
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    _, sep, tag = last.partition(":")
    return tag if sep and tag else None
