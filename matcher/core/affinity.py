"""A profile's node-label terms: the accelerator model, and for GPU profiles the partition.

These terms are the one source of both ``status.resolvedNodeAffinity`` (what the scheduler
applies) and ``matchingNodes`` (what the matcher counts), so status and scheduling agree.

- ``acceleratorModel: MI300X`` -> ``...aim-accelerator.MI300X Exists``. No model, no terms.
- The partition term (AIM Engine's ``partitionNodeSelectorRequirement``), for GPU profiles
  with a model only, on the detector's ``...aim-accelerator.partitioning-scheme.*`` axis:

  ==============================  ==============================================
  acceleratorPartitioningMode     term
  ==============================  ==============================================
  ``unpartitioned``               ``partitioning-scheme.default Exists``
  ``partitioned``                 ``partitioning-scheme.default DoesNotExist``
  ``<C>-<M>`` (e.g. ``cpx-nps4``) ``partitioning-scheme.CPX-NPS4 Exists``
  unset                           ``default Exists`` when the profile derives a
                                  whole-GPU request; otherwise none (the spec's
                                  CPX example: count 0 and an explicit partition
                                  resource)
  ==============================  ==============================================

  Modes compare case-insensitively; schemes are upper-cased, as the detector writes them.
  Under the device plugin's ``single`` strategy a CPX-NPS4 node advertises its 64 partitions
  as ``amd.com/gpu``; the term keeps a whole-GPU profile off it.

Pure: no Kubernetes client.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detector.labels import DEFAULT_SCHEME, PARTITION_PREFIX, partition_label_key
from matcher.api.models import MODE_PARTITIONED, MODE_UNPARTITIONED, AcceleratorType, ProfileSpec
from matcher.core.config import MatcherConfig
from matcher.core.resources import (
    derives_whole_gpus,
    effective_accelerator_type,
    required_label_key,
)

DEFAULT_SCHEME_KEY = partition_label_key(DEFAULT_SCHEME)


@dataclass(frozen=True, slots=True)
class LabelTerm:
    """One node-selector requirement on a label key: ``Exists`` or ``DoesNotExist``."""

    key: str
    exists: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (self.key in labels) is self.exists

    @property
    def operator(self) -> str:
        return "Exists" if self.exists else "DoesNotExist"

    def requirement(self) -> dict[str, str]:
        return {"key": self.key, "operator": self.operator}

    def describe(self) -> str:
        return f"label {self.key}" if self.exists else f"no label {self.key}"


def canonical_mode(mode: str | None) -> str:
    """``""``, ``unpartitioned``, ``partitioned`` or an upper-case scheme (``CPX-NPS4``)."""
    text = (mode or "").strip()
    if text.lower() in ("", MODE_UNPARTITIONED, MODE_PARTITIONED):
        return text.lower()
    return text.upper()


def partition_term(spec: ProfileSpec, config: MatcherConfig) -> LabelTerm | None:
    if not spec.accelerator_model:
        return None
    if effective_accelerator_type(spec, config) is not AcceleratorType.GPU:
        return None
    mode = canonical_mode(spec.accelerator_partitioning_mode)
    if mode == "":
        return LabelTerm(DEFAULT_SCHEME_KEY) if derives_whole_gpus(spec, config) else None
    if mode == MODE_UNPARTITIONED:
        return LabelTerm(DEFAULT_SCHEME_KEY)
    if mode == MODE_PARTITIONED:
        return LabelTerm(DEFAULT_SCHEME_KEY, exists=False)
    return LabelTerm(partition_label_key(mode))


def label_terms(spec: ProfileSpec, config: MatcherConfig) -> tuple[LabelTerm, ...]:
    """The model term first, then the partition term; empty without a model."""
    model_key = required_label_key(spec)
    if model_key is None:
        return ()
    partition = partition_term(spec, config)
    return (LabelTerm(model_key),) if partition is None else (LabelTerm(model_key), partition)


def node_affinity(terms: tuple[LabelTerm, ...]) -> dict[str, Any] | None:
    """One required node-selector term ANDing ``terms``; None without any."""
    if not terms:
        return None
    return {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [t.requirement() for t in terms]}]
        }
    }


@functools.lru_cache(maxsize=256)
def scheme_of(key: str) -> str | None:
    """``...partitioning-scheme.CPX-NPS4`` -> ``CPX-NPS4``; None for other keys."""
    return key[len(PARTITION_PREFIX) :] if key.startswith(PARTITION_PREFIX) else None
