"""The node label format: the one place both the detector and the matcher take it from.

A label key is ``feature.node.kubernetes.io/aim-accelerator.<ID>`` where ``<ID>`` is a GPU
model (``MI300X``), a CPU generation (``EPYC_ZEN5``) or a partitioning scheme
(``partitioning-scheme.CPX-NPS4``). The value is a count. The ``feature.node.kubernetes.io``
prefix is the one Node Feature Discovery lets through, so the same keys work whether the
detector patches the Node itself or hands them to NFD as a ``features.d`` file.

Pure: no I/O, no Kubernetes client.
"""

from __future__ import annotations

import re

#: DNS-subdomain prefix of every label we write (the part before the slash).
PREFIX_DOMAIN = "feature.node.kubernetes.io"
#: First part of the name of every label we write.
NAME_STEM = "aim-accelerator."
#: Every label key the detector owns starts with this.
LABEL_PREFIX = f"{PREFIX_DOMAIN}/{NAME_STEM}"
#: Partition-scheme labels: ``...aim-accelerator.partitioning-scheme.<CP>-<MP>``.
PARTITION_STEM = "partitioning-scheme."
PARTITION_PREFIX = LABEL_PREFIX + PARTITION_STEM
#: Scheme name for GPUs that are not partitioned.
DEFAULT_SCHEME = "default"
#: AMD's name for the unpartitioned state of a partitionable GPU; such GPUs are counted under
#: this scheme as well as under ``default`` (AIM Engine publishes both).
CANONICAL_UNPARTITIONED_SCHEME = "SPX-NPS1"
#: CPU generation IDs look like ``EPYC_ZEN5``.
EPYC_STEM = "EPYC_"

#: Annotation on the Node listing the label keys the detector wrote (comma-separated, sorted),
#: so that a restarted agent can still remove what a previous run wrote. Same idea as NFD's
#: ``nfd.node.kubernetes.io/feature-labels``. In node mode it is present, empty, on a Node where
#: the detector ran and found nothing: the matcher tells "ran, found nothing" from "never ran" by
#: it (only the uninstall cleanup removes it).
OWNED_LABELS_ANNOTATION = "aim.eai.amd.com/detector-labels"

#: Kubernetes limits (apimachinery validation.IsQualifiedName / IsValidLabelValue).
MAX_NAME_LENGTH = 63
MAX_VALUE_LENGTH = 63
_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

#: The longest accelerator ID that still fits in a label name (63 - len("aim-accelerator.")).
MAX_ID_LENGTH = MAX_NAME_LENGTH - len(NAME_STEM)
#: The longest partitioning scheme that still fits in a label name
#: (63 - len("aim-accelerator.partitioning-scheme.")).
MAX_SCHEME_LENGTH = MAX_NAME_LENGTH - len(NAME_STEM) - len(PARTITION_STEM)
#: What an accelerator ID may look like (the profile's ``acceleratorModel`` pattern).
ID_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
_ID_RE = re.compile(ID_PATTERN)


class LabelError(ValueError):
    """A label key or value that Kubernetes would reject."""


def is_valid_label_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and bool(_NAME_RE.match(name))


def is_valid_label_value(value: str) -> bool:
    return value == "" or (len(value) <= MAX_VALUE_LENGTH and bool(_NAME_RE.match(value)))


def is_valid_accelerator_id(accel_id: str) -> bool:
    return len(accel_id) <= MAX_ID_LENGTH and bool(_ID_RE.match(accel_id))


def accelerator_label_key(accel_id: str) -> str:
    """``MI300X`` -> ``feature.node.kubernetes.io/aim-accelerator.MI300X``.

    Raises LabelError when the ID cannot form a valid label key.
    """
    if not is_valid_accelerator_id(accel_id):
        raise LabelError(
            f"accelerator id {accel_id!r} cannot form a label: it must match {ID_PATTERN} "
            f"and be at most {MAX_ID_LENGTH} characters"
        )
    return LABEL_PREFIX + accel_id


def partition_label_key(scheme: str) -> str:
    """``CPX-NPS4`` -> ``...aim-accelerator.partitioning-scheme.CPX-NPS4``; ``default`` too."""
    key = PARTITION_PREFIX + scheme
    if not is_valid_label_name(key.split("/", 1)[1]):
        raise LabelError(f"partition scheme {scheme!r} cannot form a valid label key")
    return key


def epyc_id(generation: str) -> str:
    """``ZEN5`` -> ``EPYC_ZEN5``."""
    return EPYC_STEM + generation


def count_value(count: int) -> str:
    """Label values are decimal counts."""
    if count < 0:
        raise LabelError(f"a count label cannot be negative: {count}")
    return str(count)


def is_owned_key(key: str) -> bool:
    """True for every key the detector may write (and so may delete)."""
    return key.startswith(LABEL_PREFIX)


def accelerator_id_of(key: str) -> str | None:
    """The accelerator ID a key names, or None for partition labels and foreign keys."""
    if not key.startswith(LABEL_PREFIX) or key.startswith(PARTITION_PREFIX):
        return None
    return key[len(LABEL_PREFIX) :]


def is_cpu_key(key: str) -> bool:
    """Keys the CPU probe is the source of (``...aim-accelerator.EPYC_*``)."""
    accel_id = accelerator_id_of(key)
    return accel_id is not None and accel_id.startswith(EPYC_STEM)


def is_gpu_key(key: str) -> bool:
    """Keys the GPU probe is the source of: GPU models and partition schemes."""
    return is_owned_key(key) and not is_cpu_key(key)


def nfd_feature_name(key: str) -> str:
    """The name to write in an NFD ``features.d`` file for a key.

    NFD adds ``feature.node.kubernetes.io/`` to names without a prefix, so we write the
    bare name and NFD produces exactly the key the matcher looks for.
    """
    if not key.startswith(PREFIX_DOMAIN + "/"):
        raise LabelError(f"{key!r} is not under {PREFIX_DOMAIN}/")
    return key[len(PREFIX_DOMAIN) + 1 :]


def validate_labels(labels: dict[str, str]) -> None:
    """Raise LabelError naming the first key or value Kubernetes would reject."""
    for key, value in labels.items():
        prefix, sep, name = key.rpartition("/")
        if not sep or not prefix or not is_valid_label_name(name) or len(prefix) > 253:
            raise LabelError(f"invalid label key {key!r}")
        if not is_valid_label_value(value):
            raise LabelError(f"invalid value {value!r} for label {key!r}")
