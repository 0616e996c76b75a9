"""Cluster-level matcher settings, read from the matcher's ConfigMap ``data``.

Keys (all optional):

- ``gpuResourceName``: what ``acceleratorType: gpu`` x N derives to (default ``amd.com/gpu``;
  e.g. ``amd.com/cpx_nps4`` on a cluster whose device plugin uses the ``mixed`` strategy).
- ``countUnschedulableNodes``: ``"true"`` to count cordoned nodes as matching (default false).
- ``countNotReadyNodes``: ``"true"`` to count NotReady nodes as matching (default false).

Unknown keys are errors: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_GPU_RESOURCE = "amd.com/gpu"

# A qualified resource name: optional DNS-subdomain prefix + "/" + a label-like name.
_RESOURCE_NAME_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}


class ConfigError(ValueError):
    """A ConfigMap value the matcher cannot use; the message names the key."""


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    gpu_resource_name: str = DEFAULT_GPU_RESOURCE
    count_unschedulable_nodes: bool = False
    count_not_ready_nodes: bool = False

    @classmethod
    def from_configmap_data(cls, data: Mapping[str, str] | None) -> MatcherConfig:
        data = dict(data or {})
        known = {"gpuResourceName", "countUnschedulableNodes", "countNotReadyNodes"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"data.{unknown[0]}: unknown key (known keys: {', '.join(sorted(known))})"
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
        )


def _flag(data: Mapping[str, object], key: str) -> bool:
    raw = data.get(key, "false")
    text = str(raw).strip().lower() if isinstance(raw, str | bool) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f'data.{key}: expected "true" or "false", got {raw!r}')
