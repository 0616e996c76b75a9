"""Cluster-level matcher settings, read from the matcher's ConfigMap ``data``.

Keys (all optional):

- ``gpuResourceName``: what ``acceleratorType: gpu`` x N derives to (default ``amd.com/gpu``;
  e.g. ``amd.com/cpx_nps4`` on a cluster whose device plugin uses the ``mixed`` strategy).
- ``countUnschedulableNodes``: ``"true"`` to count cordoned nodes as matching (default false).
- ``countNotReadyNodes``: ``"true"`` to count NotReady nodes as matching (default false).
- ``inferAcceleratorType``: ``"true"`` to treat a profile with an ``acceleratorModel`` but no
  ``acceleratorType`` as ``cpu`` (``EPYC_*`` models) or ``gpu`` (any other) when deriving its
  request (default false: the spec derives only from ``acceleratorType``).
- ``acceleratorPreference``: comma-separated accelerator models, most preferred first, for
  automatic selection (default ``DEFAULT_ACCELERATOR_PREFERENCE``: newest Instinct first).
- ``webhookNotAvailable``: what admission does with a pod that names a ``NotAvailable``
  profile: ``deny`` (default: refused, with the profile's own "why not") or ``warn`` (admitted
  with the profile's affinity and resources and a warning; the pod waits Pending until a node
  can take it).
- ``webhookNamespaces``: comma-separated namespaces whose opted-in pods admission mutates
  (default: every namespace the webhook configuration sends; ``kube-system`` and the matcher's
  own are never sent). An opted-in pod elsewhere is admitted unchanged, with a warning.

Unknown keys are errors: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_GPU_RESOURCE = "amd.com/gpu"
#: AIM Engine's order (internal/utils preference.go: MI325X, MI300X, MI250X, MI210, R9700,
#: W7900) with the newer MI355X and MI350X in front, which it does not list (so it ranks them
#: last).
DEFAULT_ACCELERATOR_PREFERENCE: tuple[str, ...] = (
    "MI355X",
    "MI350X",
    "MI325X",
    "MI300X",
    "MI250X",
    "MI210",
    "R9700",
    "W7900",
)
_KNOWN_KEYS = frozenset(
    {
        "gpuResourceName",
        "countUnschedulableNodes",
        "countNotReadyNodes",
        "inferAcceleratorType",
        "acceleratorPreference",
        "webhookNotAvailable",
        "webhookNamespaces",
    }
)
_MODEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")

# A qualified resource name: optional DNS-subdomain prefix + "/" + a label-like name.
_RESOURCE_NAME_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
#: A namespace name (RFC 1123 label).
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NOT_AVAILABLE_DENY = "deny"
NOT_AVAILABLE_WARN = "warn"
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}


class ConfigError(ValueError):
    """A ConfigMap value the matcher cannot use; the message names the key."""


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    gpu_resource_name: str = DEFAULT_GPU_RESOURCE
    count_unschedulable_nodes: bool = False
    count_not_ready_nodes: bool = False
    infer_accelerator_type: bool = False
    accelerator_preference: tuple[str, ...] = DEFAULT_ACCELERATOR_PREFERENCE
    #: ``deny`` or ``warn`` (see the module docstring).
    webhook_not_available: str = NOT_AVAILABLE_DENY
    #: Namespaces whose opted-in pods admission mutates; empty means all.
    webhook_namespaces: tuple[str, ...] = ()

    @classmethod
    def from_configmap_data(cls, data: Mapping[str, str] | None) -> MatcherConfig:
        data = dict(data or {})
        unknown = sorted(set(data) - _KNOWN_KEYS)
        if unknown:
            raise ConfigError(
                f"data.{unknown[0]}: unknown key (known keys: {', '.join(sorted(_KNOWN_KEYS))})"
            )
        gpu = data.get("gpuResourceName", DEFAULT_GPU_RESOURCE)
        if not isinstance(gpu, str) or len(gpu) > 316 or not _RESOURCE_NAME_RE.match(gpu):
            raise ConfigError(
                f"data.gpuResourceName: {gpu!r} is not a resource name such as amd.com/gpu"
            )
        return cls(
            gpu_resource_name=gpu,
            count_unschedulable_nodes=_flag(data, "countUnschedulableNodes"),
            count_not_ready_nodes=_flag(data, "countNotReadyNodes"),
            infer_accelerator_type=_flag(data, "inferAcceleratorType"),
            accelerator_preference=_preference(data),
            webhook_not_available=_choice(
                data, "webhookNotAvailable", (NOT_AVAILABLE_DENY, NOT_AVAILABLE_WARN)
            ),
            webhook_namespaces=_namespaces(data, "webhookNamespaces"),
        )

    def webhook_mutates(self, namespace: str) -> bool:
        """Whether admission mutates opted-in pods of ``namespace`` (``webhookNamespaces``)."""
        return not self.webhook_namespaces or namespace in self.webhook_namespaces


def _flag(data: Mapping[str, object], key: str) -> bool:
    raw = data.get(key, "false")
    text = str(raw).strip().lower() if isinstance(raw, str | bool) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f'data.{key}: expected "true" or "false", got {raw!r}')


def _preference(data: Mapping[str, object]) -> tuple[str, ...]:
    raw = data.get("acceleratorPreference")
    if raw is None:
        return DEFAULT_ACCELERATOR_PREFERENCE
    if not isinstance(raw, str):
        raise ConfigError(f"data.acceleratorPreference: expected a string, got {raw!r}")
    models = tuple(part.strip() for part in raw.split(",") if part.strip())
    for model in models:
        if not _MODEL_RE.match(model):
            raise ConfigError(
                f"data.acceleratorPreference: {model!r} is not an accelerator model such as MI300X"
            )
    if len({m.upper() for m in models}) != len(models):
        raise ConfigError("data.acceleratorPreference: a model is listed twice")
    return models


def _choice(data: Mapping[str, object], key: str, choices: tuple[str, ...]) -> str:
    raw = data.get(key, choices[0])
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text not in choices:
        raise ConfigError(f"data.{key}: expected one of {', '.join(choices)}, got {raw!r}")
    return text


def _namespaces(data: Mapping[str, object], key: str) -> tuple[str, ...]:
    raw = data.get(key, "")
    if not isinstance(raw, str):
        raise ConfigError(f"data.{key}: expected a comma-separated string, got {raw!r}")
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    for name in names:
        if len(name) > 63 or not _NAMESPACE_RE.match(name):
            raise ConfigError(f"data.{key}: {name!r} is not a namespace name")
    if len(set(names)) != len(names):
        raise ConfigError(f"data.{key}: a namespace is listed twice")
    return names
