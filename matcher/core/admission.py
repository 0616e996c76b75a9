"""Admission of pods that name an AIM profile or model: a pod and the cached profiles in; a JSON
patch, a refusal or warnings out. Pure: plain data in and out, no Kubernetes client, no clock.

Which pods (the opt-in, docs/deploy.md). A pod opts in with exactly one of two labels, which the
webhook configuration's ``objectSelector`` matches so that no other pod ever waits on it:

- ``aim.eai.amd.com/profile: <name>``: that profile. The ``AIMProfile`` of that name in the
  pod's namespace wins over the ``AIMClusterProfile`` of that name (the spec's precedence).
- ``aim.eai.amd.com/aim-id: <org>--<model>``: automatic selection for aimId ``<org>/<model>``,
  through :func:`matcher.core.selection.select`, the ranking ``aim-matcher select`` prints. A
  label value cannot hold ``/``; every ``--`` in it stands for one ``/`` (Hugging Face's own
  cache encoding of repository ids, ``models--org--name``; its ids never contain ``--``).

A value that does not fit a label value (over 63 characters, or characters outside
``[A-Za-z0-9._-]``) goes into the annotation of the same key, verbatim, with the label kept as
the opt-in (its value then empty, or the same value encoded). Optional annotations:
``aim.eai.amd.com/metric`` and ``aim.eai.amd.com/precision`` (filters of automatic selection),
``aim.eai.amd.com/include-non-primary: "true"``, and ``aim.eai.amd.com/container`` (the
container to give the resources; default the first).

What a pod gets (a JSON patch): the profile's required node-affinity term ANDed into every
``nodeSelectorTerm`` the pod already has (created when it has none; the pod's own requirements
are never dropped), ``status.resources`` merged into the target container (a resource the
container names in its requests or its limits is the container's: the profile fills only the
resources it does not mention), and the decision in annotations (profile kind/namespace/name,
the generation whose status was applied, its status, and for automatic selection the reason).
Admitting the patched pod again changes nothing.

Refusals name the profile and what to do: no such profile, an invalid one, none selectable, a
``NotAvailable`` profile (with the profile's own "why not"; ``webhookNotAvailable: warn`` admits
it instead). ``Degraded``, ``Pending`` and ``Progressing`` profiles are admitted with their last
resolved fields and a warning; a profile never evaluated is refused until it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from matcher.api.models import (
    CONDITION_HARDWARE,
    KIND_CLUSTER_PROFILE,
    KIND_PROFILE,
    Metric,
    Phase,
    Precision,
    Profile,
)
from matcher.core.config import NOT_AVAILABLE_WARN, MatcherConfig
from matcher.core.quantity import parse_quantity
from matcher.core.selection import select

PREFIX = "aim.eai.amd.com/"
#: Opt-in labels (and annotations of the same keys for values a label cannot hold).
PROFILE_KEY = PREFIX + "profile"
AIM_ID_KEY = PREFIX + "aim-id"
OPT_IN_KEYS = (PROFILE_KEY, AIM_ID_KEY)
#: Optional annotations of the request.
METRIC_KEY = PREFIX + "metric"
PRECISION_KEY = PREFIX + "precision"
NON_PRIMARY_KEY = PREFIX + "include-non-primary"
CONTAINER_KEY = PREFIX + "container"
#: The decision, recorded on the pod.
RESOLVED_PROFILE_KEY = PREFIX + "resolved-profile"
RESOLVED_GENERATION_KEY = PREFIX + "resolved-generation"
RESOLVED_STATUS_KEY = PREFIX + "resolved-status"
SELECTION_REASON_KEY = PREFIX + "selection-reason"

#: Stands for "/" in the aim-id label value.
AIM_ID_SEPARATOR = "--"
MAX_LABEL_VALUE = 63
#: The API server may cut a warning longer than this (kubernetes.io, "Response" of dynamic
#: admission control); warnings are kept to one short line each.
MAX_WARNING = 256

OUTCOME_MUTATED = "mutated"
OUTCOME_UNCHANGED = "unchanged"
OUTCOME_DENIED = "denied"
OUTCOME_SKIPPED = "skipped"

_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_LABEL_VALUE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class ProfileEntry(Protocol):
    """A cached profile object (``matcher.controller.reconciler.CachedProfile`` is one)."""

    @property
    def profile(self) -> Profile | None:
        """The parsed profile with the status it carries; None when the object is invalid."""

    @property
    def error(self) -> str | None:
        """Why the object is invalid, naming the field."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """Read access to the cached profiles (the controller's informer caches)."""

    #: (kind, namespace, name) -> the cached object; namespace "" for AIMClusterProfiles.
    named: Callable[[str, str, str], ProfileEntry | None]
    #: Every valid cached profile with this aimId, of any namespace and kind.
    by_aim_id: Callable[[str], Iterable[Profile]]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    outcome: str
    #: RFC 6902 operations (empty: nothing to change).
    patch: tuple[dict[str, Any], ...] = ()
    #: Why the pod is refused (empty when allowed).
    message: str = ""
    warnings: tuple[str, ...] = ()
    #: The profile the pod was resolved to (for metrics and events), when there is one.
    profile: Profile | None = None


class _Refused(Exception):
    def __init__(self, message: str, profile: Profile | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.profile = profile


# --- the aim-id label value ---------------------------------------------------------------------


def encode_aim_id(aim_id: str) -> str | None:
    """The ``aim-id`` label value for an aimId; None when it does not fit a label value."""
    if AIM_ID_SEPARATOR in aim_id:
        return None
    value = aim_id.replace("/", AIM_ID_SEPARATOR)
    if not is_label_value(value) or not value:
        return None
    return value


def decode_aim_id(value: str) -> str:
    return value.replace(AIM_ID_SEPARATOR, "/")


def is_label_value(value: str) -> bool:
    """Kubernetes' label value rule: at most 63 of ``[A-Za-z0-9._-]``, alphanumeric ends."""
    if not value:
        return True
    return (
        len(value) <= MAX_LABEL_VALUE
        and set(value) <= _LABEL_VALUE_CHARS
        and value[0].isalnum()
        and value[-1].isalnum()
    )


# --- the request --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """What the pod asks for, read from its labels and annotations."""

    profile_name: str | None = None
    aim_id: str | None = None
    metric: str | None = None
    precision: str | None = None
    include_non_primary: bool = False
    container: str | None = None
    warnings: tuple[str, ...] = ()


def _opted_value(labels: Mapping[str, str], annotations: Mapping[str, str], key: str) -> str:
    """The label's value, or the annotation's when it carries one (decoded for aim-id)."""
    label = labels.get(key) or ""
    annotation = (annotations.get(key) or "").strip()
    decoded = decode_aim_id(label) if key == AIM_ID_KEY else label
    if annotation:
        if label and decoded != annotation:
            raise _Refused(
                f"label {key}={label} and annotation {key}={annotation} disagree: keep the "
                "annotation and leave the label empty (or set it to the same value)"
            )
        return annotation
    if not decoded:
        raise _Refused(
            f"label {key} is empty and no annotation {key} gives the value: set one of them"
        )
    return decoded


def read_request(pod: Mapping[str, Any]) -> Request | None:
    """The pod's request; None when it has not opted in. Raises _Refused for a bad one."""
    meta = pod.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    opted = [k for k in OPT_IN_KEYS if k in labels]
    if not opted:
        return None
    if len(opted) > 1:
        raise _Refused(
            f"the pod has both labels {PROFILE_KEY} and {AIM_ID_KEY}: keep {PROFILE_KEY} to "
            f"name a profile, or {AIM_ID_KEY} to have one selected for a model"
        )
    value = _opted_value(labels, annotations, opted[0])
    metric = _choice(annotations, METRIC_KEY, [m.value for m in Metric])
    precision = _choice(annotations, PRECISION_KEY, [p.value for p in Precision])
    raw_non_primary = (annotations.get(NON_PRIMARY_KEY) or "false").strip().lower()
    if raw_non_primary not in ("true", "false"):
        raise _Refused(f'annotation {NON_PRIMARY_KEY}: expected "true" or "false"')
    container = (annotations.get(CONTAINER_KEY) or "").strip() or None
    if opted[0] == PROFILE_KEY:
        ignored = [k for k in (METRIC_KEY, PRECISION_KEY, NON_PRIMARY_KEY) if k in annotations]
        warnings = tuple(
            f"annotation {k} only filters automatic selection ({AIM_ID_KEY}); ignored for the "
            f"profile named by {PROFILE_KEY}"
            for k in ignored
        )
        return Request(profile_name=value, container=container, warnings=warnings)
    return Request(
        aim_id=value,
        metric=metric,
        precision=precision,
        include_non_primary=raw_non_primary == "true",
        container=container,
    )


def _choice(annotations: Mapping[str, str], key: str, allowed: Sequence[str]) -> str | None:
    raw = annotations.get(key)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value not in allowed:
        raise _Refused(f"annotation {key}: {raw!r} is not one of {', '.join(allowed)}")
    return value


# --- resolution ---------------------------------------------------------------------------------


def describe(profile: Profile) -> str:
    """``AIMProfile ml-team/name`` or ``AIMClusterProfile name``."""
    where = f"{profile.namespace}/" if profile.namespace else ""
    return f"{profile.kind} {where}{profile.name}"


def decision_ref(profile: Profile) -> str:
    """The ``resolved-profile`` annotation: kind/namespace/name (kind/name when cluster)."""
    if profile.namespace:
        return f"{profile.kind}/{profile.namespace}/{profile.name}"
    return f"{profile.kind}/{profile.name}"


def _named(lookup: Lookup, namespace: str, name: str) -> Profile:
    for kind, where in ((KIND_PROFILE, namespace), (KIND_CLUSTER_PROFILE, "")):
        entry = lookup.named(kind, where, name)
        if entry is None:
            continue
        if entry.profile is None:
            at = f"{where}/" if where else ""
            raise _Refused(
                f"{kind} {at}{name} is invalid: {entry.error}. Fix the profile "
                f"(kubectl describe {kind.lower()} {name}{f' -n {where}' if where else ''})"
            )
        return entry.profile
    raise _Refused(
        f"no AIMProfile {namespace}/{name} and no AIMClusterProfile {name}: create the profile "
        f"or correct the label {PROFILE_KEY} (kubectl get aimprofiles -n {namespace}; kubectl "
        "get aimclusterprofiles)"
    )


def _selected(
    lookup: Lookup, namespace: str, request: Request, config: MatcherConfig
) -> tuple[Profile, str]:
    aim_id = request.aim_id or ""
    selection = select(
        lookup.by_aim_id(aim_id),
        aim_id,
        namespace=namespace,
        metric=request.metric,
        precision=request.precision,
        include_non_primary=request.include_non_primary,
        accelerator_preference=config.accelerator_preference,
    )
    if selection.chosen is None:
        filters = ", ".join(
            f"{what} {value}"
            for what, value in (("metric", request.metric), ("precision", request.precision))
            if value
        )
        asked = f"aimId {aim_id}" + (f" ({filters})" if filters else "")
        shown = "; ".join(f"{p.ref}: {why}" for p, why in selection.rejected[:3])
        more = len(selection.rejected) - 3
        if more > 0:
            shown += f"; {more} more"
        details = f" ({shown})" if shown else ""
        raise _Refused(
            f"no profile can be selected for {asked} in namespace {namespace}: "
            f"{selection.reason}{details}. See `aim-matcher select --aim-id {aim_id}` or "
            "kubectl get aimclusterprofiles"
        )
    return selection.chosen, f"aimId {aim_id}: {selection.reason}"


def _condition_message(profile: Profile) -> str:
    status = profile.status
    condition = status.condition(CONDITION_HARDWARE) if status is not None else None
    return condition.message if condition is not None and condition.message else ""


def _check_status(profile: Profile, config: MatcherConfig) -> list[str]:
    """Warnings for a usable profile; raises _Refused for one that is not."""
    status = profile.status
    name = describe(profile)
    if status is None or (
        status.resolved_node_affinity is None
        and status.resources is None
        and status.status is not Phase.READY
    ):
        phase = status.status if status is not None else Phase.PENDING
        raise _Refused(
            f"{name} has not been evaluated yet ({phase}): retry in a moment; if it stays so, "
            "check that aim-matcher is running (kubectl -n aim-system get pods)",
            profile,
        )
    why = _condition_message(profile)
    warnings = []
    if status.status is Phase.NOT_AVAILABLE:
        if config.webhook_not_available != NOT_AVAILABLE_WARN:
            raise _Refused(
                f"{name} is NotAvailable: {why or 'no node matches'}. Add capacity, pick "
                "another profile (kubectl get aimclusterprofiles), or set webhookNotAvailable: "
                "warn in the matcher's ConfigMap to admit pods that wait for capacity",
                profile,
            )
        warnings.append(f"{name} is NotAvailable; the pod stays Pending until a node fits: {why}")
    elif status.status is Phase.FAILED:
        raise _Refused(f"{name} is Failed: {why or 'it cannot be evaluated'}", profile)
    elif status.status is not Phase.READY:
        warnings.append(
            f"{name} is {status.status}; its last resolved affinity and resources were applied"
            + (f": {why}" if why else "")
        )
    observed, generation = status.observed_generation, profile.generation
    if observed is not None and generation is not None and observed != generation:
        warnings.append(
            f"{name}: its status is for generation {observed}, the spec is at {generation} "
            "(aim-matcher has not caught up yet)"
        )
    return warnings


# --- the patch ----------------------------------------------------------------------------------


def _pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _requirements(term: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    return list(term.get("matchExpressions") or []), list(term.get("matchFields") or [])


def _contains(pod_term: Mapping[str, Any], profile_term: Mapping[str, Any]) -> bool:
    have_e, have_f = _requirements(pod_term)
    need_e, need_f = _requirements(profile_term)
    return all(r in have_e for r in need_e) and all(r in have_f for r in need_f)


def _and(pod_term: Mapping[str, Any], profile_term: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(pod_term)
    expressions, fields = _requirements(pod_term)
    need_e, need_f = _requirements(profile_term)
    expressions += [r for r in need_e if r not in expressions]
    fields += [r for r in need_f if r not in fields]
    if expressions:
        merged["matchExpressions"] = expressions
    if fields:
        merged["matchFields"] = fields
    return merged


def merged_terms(
    pod_terms: Sequence[Mapping[str, Any]], profile_terms: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The pod's terms (ORed) AND the profile's terms (ORed), as ORed terms.

    Each pod term that already holds one of the profile's terms is kept as it is (so a second
    admission changes nothing); the others are crossed with every profile term. An empty pod
    term matches no node and stays so. No pod terms: the profile's terms.
    """
    if not pod_terms:
        return [dict(t) for t in profile_terms]
    out: list[dict[str, Any]] = []
    for term in pod_terms:
        if not any(_requirements(term)) or any(_contains(term, p) for p in profile_terms):
            out.append(dict(term))
            continue
        out.extend(_and(term, p) for p in profile_terms)
    return out


def _affinity_ops(spec: Mapping[str, Any], profile: Profile) -> list[dict[str, Any]]:
    status = profile.status
    resolved = status.resolved_node_affinity if status is not None else None
    required = resolved.required_during_scheduling_ignored_during_execution if resolved else None
    if required is None or not required.node_selector_terms:
        return []
    profile_terms = [
        t.model_dump(by_alias=True, exclude_none=True) for t in required.node_selector_terms
    ]
    affinity = spec.get("affinity")
    node_affinity = affinity.get("nodeAffinity") if isinstance(affinity, Mapping) else None
    selector = node_affinity.get(_REQUIRED) if isinstance(node_affinity, Mapping) else None
    pod_terms = selector.get("nodeSelectorTerms") if isinstance(selector, Mapping) else None
    pod_terms = [t for t in pod_terms or [] if isinstance(t, Mapping)]
    terms = merged_terms(pod_terms, profile_terms)
    if terms == pod_terms:
        return []
    new_selector: dict[str, Any] = {"nodeSelectorTerms": terms}
    if not isinstance(affinity, Mapping):
        return [_add("/spec/affinity", {"nodeAffinity": {_REQUIRED: new_selector}})]
    if not isinstance(node_affinity, Mapping):
        return [_add("/spec/affinity/nodeAffinity", {_REQUIRED: new_selector})]
    if not isinstance(selector, Mapping):
        return [_add(_pointer("spec", "affinity", "nodeAffinity", _REQUIRED), new_selector)]
    path = _pointer("spec", "affinity", "nodeAffinity", _REQUIRED, "nodeSelectorTerms")
    op = "replace" if "nodeSelectorTerms" in selector else "add"
    return [{"op": op, "path": path, "value": terms}]


def _add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def _target(spec: Mapping[str, Any], request: Request) -> tuple[int, Mapping[str, Any]]:
    containers = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]
    if not containers:
        raise _Refused("the pod has no containers to give the profile's resources to")
    if request.container is None:
        return 0, containers[0]
    for index, container in enumerate(containers):
        if container.get("name") == request.container:
            return index, container
    names = ", ".join(str(c.get("name")) for c in containers)
    raise _Refused(
        f"annotation {CONTAINER_KEY} names container {request.container!r}, which the pod does "
        f"not have (containers: {names})"
    )


def _same(a: Any, b: Any) -> bool:
    try:
        return parse_quantity(a) == parse_quantity(b)
    except (ValueError, TypeError):
        return str(a) == str(b)


def _sides(sections: Mapping[str, Mapping[str, Any]], resource: str) -> str:
    """``requests 2, limits 2`` for one resource."""
    return ", ".join(
        f"{section} {sections[section][resource]}"
        for section in ("requests", "limits")
        if resource in sections[section]
    )


def _resource_ops(
    index: int, container: Mapping[str, Any], profile: Profile
) -> tuple[list[dict[str, Any]], list[str]]:
    status = profile.status
    wanted = status.resources if status is not None else None
    if wanted is None:
        return [], []
    resources = container.get("resources")
    have = resources if isinstance(resources, Mapping) else {}
    sections = {
        s: dict(have.get(s) or {}) if isinstance(have.get(s), Mapping) else {}
        for s in ("requests", "limits")
    }
    explicit = set(sections["requests"]) | set(sections["limits"])
    name = container.get("name")
    warnings = []
    if wanted.claims:
        warnings.append(
            f"{describe(profile)} lists resource claims; they were not added (a claim needs the "
            "pod's spec.resourceClaims): add them to the pod yourself"
        )
    additions: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    theirs = {"requests": dict(wanted.requests or {}), "limits": dict(wanted.limits or {})}
    conflicts: dict[str, None] = {}
    for section, values in theirs.items():
        for resource, value in values.items():
            if resource not in explicit:
                additions[section][resource] = str(value)
                continue
            own = sections[section].get(resource)
            if own is not None and not _same(own, value):
                conflicts[resource] = None
    for resource in conflicts:
        # One line per resource: the API server has often defaulted a request from the limit.
        own_text = _sides(sections, resource)
        warnings.append(
            f"container {name} sets {resource} {own_text}; kept over the profile's "
            f"{_sides(theirs, resource)}"
        )
    base = ("spec", "containers", index, "resources")
    if not additions["requests"] and not additions["limits"]:
        return [], warnings
    if not isinstance(resources, Mapping):
        whole = {s: added for s, added in additions.items() if added}
        return [_add(_pointer(*base), whole)], warnings
    ops = []
    for section, added in additions.items():
        if not added:
            continue
        if not isinstance(resources.get(section), Mapping):
            ops.append(_add(_pointer(*base, section), added))
            continue
        ops += [_add(_pointer(*base, section, r), v) for r, v in added.items()]
    return ops, warnings


def _annotation_ops(
    meta: Mapping[str, Any], profile: Profile, reason: str | None
) -> list[dict[str, Any]]:
    status = profile.status
    generation = status.observed_generation if status is not None else None
    if generation is None:
        generation = profile.generation
    wanted = {RESOLVED_PROFILE_KEY: decision_ref(profile)}
    if generation is not None:
        wanted[RESOLVED_GENERATION_KEY] = str(generation)
    if status is not None:
        wanted[RESOLVED_STATUS_KEY] = str(status.status)
    if reason is not None:
        wanted[SELECTION_REASON_KEY] = " ".join(reason.split())
    annotations = meta.get("annotations")
    if not isinstance(annotations, Mapping):
        return [_add("/metadata/annotations", wanted)]
    return [
        _add(_pointer("metadata", "annotations", k), v)
        for k, v in wanted.items()
        if annotations.get(k) != v
    ]


# --- the decision -------------------------------------------------------------------------------


def admit(
    pod: Mapping[str, Any], namespace: str, lookup: Lookup, config: MatcherConfig
) -> Decision:
    """The decision for a pod being created in ``namespace``."""
    try:
        request = read_request(pod)
    except _Refused as refused:
        return _denied(refused)
    if request is None:
        return Decision(allowed=True, outcome=OUTCOME_SKIPPED)
    if not config.webhook_mutates(namespace):
        return Decision(
            allowed=True,
            outcome=OUTCOME_SKIPPED,
            warnings=_short(
                [
                    f"namespace {namespace} is not in webhookNamespaces of the matcher's "
                    "ConfigMap: the pod was admitted without its profile's affinity and resources"
                ]
            ),
        )
    profile: Profile | None = None
    try:
        if request.profile_name is not None:
            profile = _named(lookup, namespace, request.profile_name)
            reason = None
        else:
            profile, reason = _selected(lookup, namespace, request, config)
        warnings = [*request.warnings, *_check_status(profile, config)]
        spec = pod.get("spec") or {}
        index, container = _target(spec, request)
    except _Refused as refused:
        return _denied(refused, profile)
    resource_ops, resource_warnings = _resource_ops(index, container, profile)
    ops = [
        *_affinity_ops(spec, profile),
        *resource_ops,
        *_annotation_ops(pod.get("metadata") or {}, profile, reason),
    ]
    return Decision(
        allowed=True,
        outcome=OUTCOME_MUTATED if ops else OUTCOME_UNCHANGED,
        patch=tuple(ops),
        warnings=_short([*warnings, *resource_warnings]),
        profile=profile,
    )


def _denied(refused: _Refused, profile: Profile | None = None) -> Decision:
    return Decision(
        allowed=False,
        outcome=OUTCOME_DENIED,
        message=refused.message,
        profile=refused.profile or profile,
    )


def _short(warnings: Iterable[str]) -> tuple[str, ...]:
    out = []
    for text in warnings:
        line = " ".join(text.split())
        out.append(line if len(line) <= MAX_WARNING else line[: MAX_WARNING - 3] + "...")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CachedEntry:
    """A plain :class:`ProfileEntry`, for callers without a controller cache (tools, tests)."""

    profile: Profile | None
    error: str | None = None


def lookup_over(entries: Mapping[tuple[str, str, str], ProfileEntry]) -> Lookup:
    """A :class:`Lookup` over entries keyed by (kind, namespace or "", name), scanned per call."""

    def by_aim_id(aim_id: str) -> list[Profile]:
        return [
            e.profile
            for e in entries.values()
            if e.profile is not None and e.profile.spec.aim_id == aim_id
        ]

    return Lookup(named=lambda kind, ns, name: entries.get((kind, ns, name)), by_aim_id=by_aim_id)
