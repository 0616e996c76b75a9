"""The AIMProfile / AIMClusterProfile API (``aim.eai.amd.com/v1alpha2``) as pydantic models.

These models are the single source of the API: the CRDs under ``daemonset/crds/`` are generated
from their JSON schema (``matcher.api.crd``), and the field descriptions are what
``kubectl explain`` shows. Specs forbid unknown fields, so a ``caching`` block on an
AIMClusterProfile, or a typo, is an error naming the field rather than a silent drop.

The spec is a superset of AIM Engine's v1alpha2 profile CRDs (``amd-enterprise-ai/aim-engine``,
``api/v1alpha2/aimprofile_shared.go``): every profile those CRDs accept parses here and keeps
every field, including fields this matcher gives no meaning (``acceleratorVendor`` beyond the
derived resource name, ``manualSelectionOnly``, ``features``, ``variant``). The checks kept
stricter than upstream only reject values no cluster could use: negative quantities, limits
below requests, accelerator ids and partition schemes too long to form a label key, and env
entries without a name. docs/status.md lists every difference.

Pure: no Kubernetes client.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel

from detector.labels import ID_PATTERN, MAX_ID_LENGTH, MAX_NAME_LENGTH, MAX_SCHEME_LENGTH
from matcher.core.quantity import format_quantity, parse_quantity

GROUP = "aim.eai.amd.com"
VERSION = "v1alpha2"
API_VERSION = f"{GROUP}/{VERSION}"
KIND_PROFILE = "AIMProfile"
KIND_CLUSTER_PROFILE = "AIMClusterProfile"

INT32_MAX = 2**31 - 1
#: Kubernetes' quantity pattern (controller-gen output) without the leading minus: no resource
#: amount can be negative, so ``memory: "-1"`` is refused by the API server already.
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
#: Bounds that keep the CEL rule over resources cheap on a real API server (its cost estimate
#: multiplies map sizes by string lengths); no real quantity or resource list comes near them.
MAX_QUANTITY_LENGTH = 64
MAX_RESOURCES = 64
#: Reserved values of ``acceleratorPartitioningMode`` (AIM Engine's node_match.go).
MODE_UNPARTITIONED = "unpartitioned"
MODE_PARTITIONED = "partitioned"


class Metric(StrEnum):
    LATENCY = "latency"
    THROUGHPUT = "throughput"


class Precision(StrEnum):
    FP4 = "fp4"
    FP8 = "fp8"
    FP16 = "fp16"
    FP32 = "fp32"
    # In AIM Engine's current enum; the spec page predates it.
    FP64 = "fp64"
    BF16 = "bf16"
    INT4 = "int4"
    INT8 = "int8"


class ProfileType(StrEnum):
    """Listed best first: the selection ranking."""

    OPTIMIZED = "optimized"
    GENERAL = "general"
    PREVIEW = "preview"
    UNOPTIMIZED = "unoptimized"


class AcceleratorType(StrEnum):
    GPU = "gpu"
    CPU = "cpu"


class AcceleratorVendor(StrEnum):
    """The device-plugin contract (AIM Engine): which vendor's GPU resource ``gpu`` derives."""

    AMD = "amd"
    NVIDIA = "nvidia"


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    NOT_AVAILABLE = "NotAvailable"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


CONDITION_HARDWARE = "HardwareAvailable"
REASON_HARDWARE_AVAILABLE = "HardwareAvailable"
REASON_HARDWARE_NOT_AVAILABLE = "HardwareNotAvailable"
REASON_NO_ACCELERATOR = "NoAcceleratorSpecified"


def _check_quantity(value: object) -> object:
    # bool is an int subclass; YAML ``true`` is never a quantity. Floats (``cpu: 0.5``) are
    # refused too: the API server's int-or-string schema rejects them.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"a quantity must be a string such as '500m' or an integer, not {value!r}")
    if isinstance(value, str) and len(value) > MAX_QUANTITY_LENGTH:
        raise ValueError(f"a quantity is at most {MAX_QUANTITY_LENGTH} characters")
    if parse_quantity(value) < 0:
        raise ValueError(f"{value!r} is negative: a resource amount cannot be below zero")
    return value


Quantity = Annotated[
    int | str,
    BeforeValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "minimum": 0,
            "maxLength": MAX_QUANTITY_LENGTH,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


#: Deeper JSON than this in engineArgs is refused, not recursed into: no engine takes such
#: arguments, and Python's recursion limit must not decide the outcome.
MAX_JSON_DEPTH = 64


def _check_json(value: object, where: str = "", depth: int = 0) -> object:
    """Any JSON value, as kubectl would send it (YAML dates become their text)."""
    at = f"{where}: " if where else ""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{at}nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{at}{value!r} is not a JSON number")
        return value
    if isinstance(value, list):
        return [_check_json(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{at}key {k!r} is not a string")
            out[k] = _check_json(v, f"{where}.{k}" if where else k, depth + 1)
        return out
    raise ValueError(f"{at}{type(value).__name__} is not a JSON value")


#: Any JSON value (object, array, string, number, bool), kept as written: AIM Engine's
#: ``engineArgs`` is schemaless (``x-kubernetes-preserve-unknown-fields`` without a type).
FreeFormJSON = Annotated[
    Any,
    BeforeValidator(_check_json),
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]


def _to_time(value: object) -> object:
    # metav1.Time has second precision: truncate so that a status survives a round trip
    # through the API unchanged.
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(microsecond=0)
    return value


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: metav1.Time: RFC 3339, second precision, always UTC (``2026-01-02T03:04:05Z``).
Time = Annotated[
    datetime,
    BeforeValidator(_to_time),
    PlainSerializer(_format_time, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )


# --- core/v1 types used by the spec ------------------------------------------------------------


class ResourceClaim(_Model):
    name: str = Field(description="Name of an entry in the pod's resourceClaims.")
    request: str | None = Field(default=None, description="Request name inside that claim.")


ResourceList = Annotated[dict[str, Quantity], Field(max_length=MAX_RESOURCES)]

#: Kubernetes refuses a container whose limit is below its request; so does the CRD (CEL with
#: the quantity library, so ``1Gi`` and ``1024Mi`` compare as equal amounts).
_LIMITS_RULE = (
    "!has(self.limits) || !has(self.requests) || self.limits.all(k, !(k in self.requests) || "
    "quantity(string(self.limits[k])).compareTo(quantity(string(self.requests[k]))) >= 0)"
)


class ResourceRequirements(_Model):
    """core/v1 ResourceRequirements."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _LIMITS_RULE,
                    "message": "limits may not be lower than requests (a limit caps its request)",
                    "fieldPath": ".limits",
                }
            ]
        }
    )

    # requests before limits: the limits check reads the validated requests.
    requests: ResourceList | None = Field(
        default=None,
        description=(
            "Minimum amount of each resource, e.g. {cpu: '4', memory: 32Gi, amd.com/cpx_nps4: '4'}."
        ),
    )
    limits: ResourceList | None = Field(
        default=None, description="Maximum amount of each resource, e.g. {cpu: '8'}."
    )
    claims: list[ResourceClaim] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Dynamic resource claims used by the container.",
    )

    @field_validator("limits")
    @classmethod
    def _limits_cover_requests(
        cls, limits: dict[str, int | str] | None, info: ValidationInfo
    ) -> dict[str, int | str] | None:
        requests = info.data.get("requests") or {}
        for name, limit in (limits or {}).items():
            request = requests.get(name)
            if request is not None and parse_quantity(limit) < parse_quantity(request):
                raise ValueError(
                    f"{name}: limit {format_quantity(parse_quantity(limit))} is below its request "
                    f"{format_quantity(parse_quantity(request))} (limits may not be lower than "
                    "requests)"
                )
        return limits

    @field_validator("claims")
    @classmethod
    def _unique_claims(cls, claims: list[ResourceClaim] | None) -> list[ResourceClaim] | None:
        _no_duplicates([c.name for c in claims or ()], "name", "entries are keyed by name")
        return claims


class KeySelector(_Model):
    name: str = Field(default="", description="Name of the ConfigMap or Secret.")
    key: str = Field(description="The key to select.")
    optional: StrictBool | None = Field(
        default=None, description="Whether the ConfigMap/Secret or its key may be missing."
    )


class FileKeySelector(_Model):
    volume_name: str = Field(description="The volume mount holding the env file.")
    path: str = Field(description="Path of the env file inside the volume.")
    key: str = Field(description="The key within the env file.")
    optional: StrictBool = Field(
        default=False, description="Whether the file or its key may be missing."
    )


class ObjectFieldSelector(_Model):
    api_version: str | None = Field(default=None, description="Schema version of fieldPath.")
    field_path: str = Field(description="Path of the field to select, e.g. metadata.name.")


class ResourceFieldSelector(_Model):
    container_name: str | None = Field(default=None, description="Container name.")
    resource: str = Field(description="Resource to select, e.g. limits.cpu.")
    divisor: Quantity | None = Field(default=None, description="Output format divisor.")


class EnvVarSource(_Model):
    config_map_key_ref: KeySelector | None = Field(
        default=None, description="Selects a key of a ConfigMap."
    )
    secret_key_ref: KeySelector | None = Field(
        default=None, description="Selects a key of a Secret in the profile's namespace."
    )
    field_ref: ObjectFieldSelector | None = Field(
        default=None, description="Selects a field of the pod."
    )
    resource_field_ref: ResourceFieldSelector | None = Field(
        default=None, description="Selects a resource of the container."
    )
    file_key_ref: FileKeySelector | None = Field(
        default=None, description="Selects a key of an env file (the EnvFiles feature)."
    )


class EnvVar(_Model):
    """core/v1 EnvVar."""

    name: str = Field(min_length=1, description="Environment variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: EnvVarSource | None = Field(
        default=None, description="Source of the value when value is not set."
    )


def _no_duplicates(names: list[str], what: str, why: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} {name!r} ({why})")
        seen.add(name)


def _unique_env(env: list[EnvVar] | None) -> list[EnvVar] | None:
    _no_duplicates([e.name for e in env or ()], "name", "entries are keyed by name")
    return env


#: An env list keyed by name, as core/v1 and AIM Engine declare it (a list-map: merge patches
#: and server-side apply address entries by name; duplicates are refused).
EnvList = Annotated[
    list[EnvVar],
    AfterValidator(_unique_env),
    Field(
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
    ),
]


class LocalObjectReference(_Model):
    # Empty is allowed, as in core/v1 (AIM Engine's CRD accepts ``imagePullSecrets: [{}]``).
    name: str = Field(default="", description="Name of the Secret.")


# --- spec ----------------------------------------------------------------------------------------


class ModelSource(_Model):
    model_id: str = Field(
        min_length=1, description="Model the artifact holds, e.g. qwen/qwen3-32b-fp8."
    )
    source_uri: str = Field(
        min_length=1,
        description="Where to download it from, e.g. hf://qwen/qwen3-32b-fp8 or s3://...",
    )
    precision: Precision | None = Field(default=None, description="Precision of the artifact.")
    size: Quantity | None = Field(
        default=None, description="Expected storage size of the artifact, e.g. 64Gi."
    )
    env: EnvList | None = Field(
        default=None, description="Per-source environment (e.g. credentials) for the download."
    )


class CachingConfig(_Model):
    enabled: StrictBool = Field(
        default=False, description="Cache model artifacts in the namespace before serving."
    )
    env: EnvList | None = Field(
        default=None, description="Environment variables for the caching job."
    )


_ID_TOO_LONG = (
    f"at most {MAX_ID_LENGTH} characters: the node label "
    f"feature.node.kubernetes.io/aim-accelerator.<acceleratorModel> has a {MAX_NAME_LENGTH}-"
    "character name limit, so no node could carry a longer one"
)
_SCHEME_TOO_LONG = (
    f"at most {MAX_SCHEME_LENGTH} characters: the node label "
    "feature.node.kubernetes.io/aim-accelerator.partitioning-scheme.<mode> has a "
    f"{MAX_NAME_LENGTH}-character name limit, so no node could carry a longer one"
)
_AIM_ID_KEPT_RULE = (
    "!has(oldSelf.aimId) || oldSelf.aimId == '' || (has(self.aimId) && self.aimId == oldSelf.aimId)"
)
_CPU_MODE_RULE = (
    "!has(self.acceleratorType) || self.acceleratorType != 'cpu' || "
    "!has(self.acceleratorPartitioningMode) || size(self.acceleratorPartitioningMode) == 0 || "
    "self.acceleratorPartitioningMode == 'unpartitioned'"
)
_CPU_MODE_MESSAGE = (
    "acceleratorPartitioningMode must be 'unpartitioned' (or unset) when acceleratorType is cpu"
)


def _max_length(limit: int, why: str) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None and len(value) > limit:
            raise ValueError(f"{value!r} is too long: {why}")
        return value

    return AfterValidator(check)


def _unique_features(features: list[str] | None) -> list[str] | None:
    _no_duplicates(list(features or ()), "entry", "a set: each value once")
    return features


class _ProfileSpecBase(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    # aimId's own rule cannot see it being removed; this one can.
                    "rule": _AIM_ID_KEPT_RULE,
                    "message": "aimId is immutable once set (it cannot be removed either)",
                    "fieldPath": ".aimId",
                },
                {
                    "rule": _CPU_MODE_RULE,
                    "message": _CPU_MODE_MESSAGE,
                    "fieldPath": ".acceleratorPartitioningMode",
                },
            ]
        }
    )

    aim_id: str | None = Field(
        default=None,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "oldSelf == '' || self == oldSelf",
                    "message": "aimId is immutable once set",
                }
            ]
        },
        description=(
            "Model architecture this profile serves, e.g. qwen/qwen3-32b; selection groups "
            "profiles by it. Immutable once set. Profiles without one (AIM Engine's base "
            "profiles) are evaluated but never selected."
        ),
    )
    model_id: str | None = Field(
        default=None, description="Model variant or Hugging Face id, e.g. qwen/qwen3-32b-fp8."
    )
    profile_id: str | None = Field(
        default=None, description="Id of the source profile inside the AIM container image."
    )
    engine: str | None = Field(default=None, description="Inference engine, e.g. vllm.")
    variant: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9-]*$",
        description="Runtime recipe variant among otherwise equal profiles, e.g. usp4.",
    )
    metric: Metric | None = Field(
        default=None, description="Optimization target: latency or throughput."
    )
    precision: Precision | None = Field(
        default=None,
        description=(
            "Numeric precision: fp4, fp8, fp16, fp32, fp64, bf16, int4 or int8 (never auto)."
        ),
    )
    type: ProfileType | None = Field(
        default=None,
        description=(
            "Optimization level; selection ranks optimized > general > preview > unoptimized."
        ),
    )
    primary: StrictBool = Field(
        default=False,
        description=(
            "The profile the authors recommend for this model and hardware. Automatic "
            "selection only considers primary profiles unless asked otherwise."
        ),
    )
    manual_selection_only: StrictBool | None = Field(
        default=None,
        description=(
            "Kept for AIM Engine compatibility; has no effect (AIM Engine's resolver ignores "
            "it too)."
        ),
    )
    accelerator_model: Annotated[str | None, _max_length(MAX_ID_LENGTH, _ID_TOO_LONG)] = Field(
        default=None,
        pattern=ID_PATTERN,
        max_length=63,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"size(self) <= {MAX_ID_LENGTH}",
                    "message": f"acceleratorModel must be {_ID_TOO_LONG}",
                }
            ]
        },
        description=(
            "Accelerator id for node selection, e.g. MI300X or EPYC_ZEN5. Nodes must carry "
            "the label feature.node.kubernetes.io/aim-accelerator.<acceleratorModel>."
        ),
    )
    accelerator_vendor: AcceleratorVendor | None = Field(
        default=None,
        description=(
            "amd or nvidia: the vendor whose GPU resource acceleratorType gpu derives "
            "(amd: the configured gpuResourceName, default amd.com/gpu; nvidia: nvidia.com/gpu)."
        ),
    )
    accelerator_type: AcceleratorType | None = Field(
        default=None,
        description=(
            "gpu or cpu: what acceleratorCount derives to (the GPU resource name, or cpu). "
            "Without it nothing is derived."
        ),
    )
    accelerator_count: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=INT32_MAX,
        json_schema_extra={"format": "int32"},
        description=(
            "GPUs (or partitions, with a partitioning mode) or CPU cores required. Derives a "
            "resource request; 0 derives none (use resources for partition resources such as "
            "amd.com/cpx_nps4)."
        ),
    )
    accelerator_partitioning_mode: Annotated[
        str | None, _max_length(MAX_SCHEME_LENGTH, _SCHEME_TOO_LONG)
    ] = Field(
        default=None,
        pattern=ID_PATTERN,
        max_length=63,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"size(self) <= {MAX_SCHEME_LENGTH}",
                    "message": f"acceleratorPartitioningMode must be {_SCHEME_TOO_LONG}",
                }
            ]
        },
        description=(
            "GPU partition state the profile needs (GPU profiles only; case-insensitive): "
            "unpartitioned (nodes labelled ...partitioning-scheme.default), partitioned (nodes "
            "without it) or a scheme such as CPX-NPS4 (nodes labelled "
            "...partitioning-scheme.CPX-NPS4). Unset: unpartitioned when a whole-GPU request "
            "is derived, otherwise no partition requirement."
        ),
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description=(
            "Override merged key by key on top of the derived requests (explicit wins). "
            "Resource names are used literally."
        ),
    )
    image: str = Field(
        min_length=1, description="Container image that runs the workload. Required."
    )
    engine_args: FreeFormJSON = Field(
        default=None,
        description=(
            "Inference engine CLI arguments, usually an object (any JSON value is kept as "
            "written, typed values included)."
        ),
    )
    engine_env: dict[str, str] | None = Field(
        default=None, description="Environment variables for the inference engine process."
    )
    model_sources: list[ModelSource] | None = Field(
        default=None, description="Model artifacts and where to download them."
    )
    container_env: EnvList | None = Field(
        default=None, description="Container-level environment variables for the AIM runtime."
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, description="Secrets for pulling the image."
    )
    service_account_name: str | None = Field(
        default=None, description="Service account for the workloads."
    )
    features: Annotated[list[str] | None, AfterValidator(_unique_features)] = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Optional capabilities the image honours, e.g. adapters (kept, not used here).",
    )

    @field_validator("accelerator_partitioning_mode")
    @classmethod
    def _cpu_profiles_are_unpartitioned(cls, mode: str | None, info: ValidationInfo) -> str | None:
        # acceleratorType is declared (and so validated) before the mode.
        if info.data.get("accelerator_type") is AcceleratorType.CPU and mode not in (
            None,
            "",
            MODE_UNPARTITIONED,
        ):
            raise ValueError(f"{_CPU_MODE_MESSAGE}, not {mode!r}")
        return mode


class AIMClusterProfileSpec(_ProfileSpecBase):
    """Spec of a cluster-scoped AIMClusterProfile (no caching field)."""


class AIMProfileSpec(_ProfileSpecBase):
    """Spec of a namespaced AIMProfile."""

    caching: CachingConfig | None = Field(
        default=None,
        description="Model caching for this namespace (AIMProfile only).",
    )


ProfileSpec = AIMProfileSpec | AIMClusterProfileSpec


# --- status --------------------------------------------------------------------------------------


class _StatusModel(BaseModel):
    # Status may have been written by another version of the controller: read leniently.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class NodeSelectorRequirement(_StatusModel):
    key: str = Field(description="Label key.")
    operator: str = Field(description="In, NotIn, Exists, DoesNotExist, Gt or Lt.")
    values: list[str] | None = Field(default=None, description="Values for In/NotIn/Gt/Lt.")


class NodeSelectorTerm(_StatusModel):
    match_expressions: list[NodeSelectorRequirement] | None = Field(
        default=None, description="Requirements on node labels (ANDed)."
    )
    match_fields: list[NodeSelectorRequirement] | None = Field(
        default=None, description="Requirements on node fields (ANDed)."
    )


class NodeSelector(_StatusModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(description="Terms (ORed).")


class PreferredSchedulingTerm(_StatusModel):
    weight: int = Field(description="Weight 1-100.")
    preference: NodeSelectorTerm = Field(description="Node selector term.")


class NodeAffinity(_StatusModel):
    """core/v1 NodeAffinity."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description="Hard requirement for scheduling."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = (
        Field(default=None, description="Soft preferences for scheduling.")
    )


class StatusResources(_StatusModel):
    limits: dict[str, Quantity] | None = Field(default=None, description="Resource limits.")
    requests: dict[str, Quantity] | None = Field(default=None, description="Resource requests.")
    claims: list[dict[str, Any]] | None = Field(default=None, description="Resource claims.")


class Condition(_StatusModel):
    """metav1.Condition."""

    type: str = Field(
        max_length=316,
        pattern=(
            r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        ),
        description="Condition type, e.g. HardwareAvailable.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024,
        min_length=1,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable reason in CamelCase.",
    )
    message: str = Field(max_length=32768, description="Human-readable details.")
    last_transition_time: Time = Field(description="When the condition's status last changed.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        json_schema_extra={"format": "int64"},
        description="Generation the condition was computed from.",
    )


class ProfileStatus(_StatusModel):
    status: Phase = Field(
        default=Phase.PENDING,
        description=(
            "Pending (not reconciled yet), Progressing, Ready (a node matches, or CPU-only), "
            "Degraded (transient error), Failed, NotAvailable (no node matches)."
        ),
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        json_schema_extra={"format": "int64"},
        description="metadata.generation the status was computed from.",
    )
    version: str | None = Field(
        default=None, description="Tag of spec.image, e.g. 0.8.5 (absent for digests)."
    )
    matching_nodes: int | None = Field(
        default=None,
        ge=0,
        le=INT32_MAX,
        json_schema_extra={"format": "int32"},
        description="Nodes with the accelerator label and allocatable capacity for every request.",
    )
    hardware_summary: str | None = Field(
        default=None, description="E.g. '1 x MI300X'; the model alone for count 0; CPU without one."
    )
    resources: StatusResources | None = Field(
        default=None, description="Derived requests merged with spec.resources: what deploys."
    )
    resolved_node_affinity: NodeAffinity | None = Field(
        default=None, description="Node affinity for workloads (absent without acceleratorModel)."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Standard conditions; HardwareAvailable is the one set here.",
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for ``.status``: camelCase keys, None values left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileStatus:
        return cls.model_validate(dict(data))

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions or () if c.type == type_), None)


# --- whole objects -------------------------------------------------------------------------------


class ProfileError(ValueError):
    """A profile object that does not validate. ``str()`` names each field path."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


@dataclass(frozen=True, slots=True)
class Profile:
    kind: str
    name: str
    namespace: str | None
    generation: int | None
    spec: AIMProfileSpec | AIMClusterProfileSpec
    status: ProfileStatus | None = None
    resource_version: str | None = None
    uid: str | None = None

    @property
    def is_cluster_scoped(self) -> bool:
        return self.kind == KIND_CLUSTER_PROFILE

    @property
    def ref(self) -> str:
        """``aimclusterprofile/name`` or ``aimprofile/ns/name``, for messages."""
        if self.namespace is None:
            return f"{self.kind.lower()}/{self.name}"
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_problems(prefix: str, error: ValidationError, kind: str) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors(include_url=False):
        # Leave out pydantic's union-branch and validator-function noise from the location.
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and "[" in p))
        path = _path((prefix, *loc))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = (
                f"caching is not a field of {kind} (only namespaced AIMProfile has it)"
                if loc == ("caching",)
                else f"unknown field (not part of {kind})"
            )
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        problems.append((path, message))
    return problems


def _meta_int(metadata: Mapping[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError([(f"metadata.{key}", f"expected an integer, got {value!r}")])
    return value


def parse_profile(obj: Mapping[str, Any]) -> Profile:
    """A Profile from an object as the API or a YAML file gives it. Raises ProfileError.

    A namespaced AIMProfile without ``metadata.namespace`` lands in ``default``, as kubectl
    would put it. An unreadable ``status`` is dropped (``Profile.status`` None), never an error.
    """
    if not isinstance(obj, Mapping):
        raise ProfileError([("(object)", f"expected a mapping, got {type(obj).__name__}")])
    api_version = obj.get("apiVersion")
    if api_version != API_VERSION:
        raise ProfileError([("apiVersion", f"expected {API_VERSION}, got {api_version!r}")])
    kind = obj.get("kind")
    spec_model: type[AIMProfileSpec] | type[AIMClusterProfileSpec]
    if kind == KIND_PROFILE:
        spec_model = AIMProfileSpec
    elif kind == KIND_CLUSTER_PROFILE:
        spec_model = AIMClusterProfileSpec
    else:
        raise ProfileError(
            [("kind", f"expected {KIND_PROFILE} or {KIND_CLUSTER_PROFILE}, got {kind!r}")]
        )
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        raise ProfileError([("metadata", "missing or not a mapping")])
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError([("metadata.name", "required")])
    namespace: str | None = None
    if kind == KIND_PROFILE:
        namespace = metadata.get("namespace") or "default"
        if not isinstance(namespace, str):
            raise ProfileError([("metadata.namespace", f"expected a string, got {namespace!r}")])
    spec_data = obj.get("spec")
    if not isinstance(spec_data, Mapping):
        raise ProfileError([("spec", "required (a mapping with at least aimId and image)")])
    try:
        spec = spec_model.model_validate(dict(spec_data))
    except ValidationError as exc:
        raise ProfileError(validation_problems("spec", exc, kind)) from None
    status = None
    status_data = obj.get("status")
    if isinstance(status_data, Mapping) and status_data:
        # The status is ours to rewrite: one we cannot read (an older controller's, or a hand
        # edit) is treated as absent instead of making the whole profile invalid.
        with contextlib.suppress(ValidationError):
            status = ProfileStatus.from_dict(status_data)
    return Profile(
        kind=kind,
        name=name,
        namespace=namespace,
        generation=_meta_int(metadata, "generation"),
        spec=spec,
        status=status,
        resource_version=metadata.get("resourceVersion"),
        uid=metadata.get("uid"),
    )
