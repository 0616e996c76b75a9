"""A profile plus the cluster's nodes in, the profile's status out. Pure and deterministic.

The previous status (``profile.status``) is only used to keep a condition's
``lastTransitionTime`` while its status does not change, so re-evaluating an unchanged world
yields an identical status and the controller has nothing to write.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from matcher.api.models import (
    CONDITION_HARDWARE,
    REASON_HARDWARE_AVAILABLE,
    REASON_HARDWARE_NOT_AVAILABLE,
    REASON_NO_ACCELERATOR,
    Condition,
    ConditionStatus,
    NodeAffinity,
    Phase,
    Profile,
    ProfileSpec,
    ProfileStatus,
    StatusResources,
)
from matcher.core import diagnostics
from matcher.core.affinity import LabelTerm, label_terms, node_affinity
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.matching import MatchResult, match_nodes
from matcher.core.resources import (
    hardware_summary,
    image_version,
    is_cpu_only,
    parsed_requests,
    required_label_key,
    resolve_resources,
)

__all__ = [
    "evaluate",
    "is_cpu_only",
    "label_terms",
    "node_affinity",
    "required_label_key",
    "resolve_resources",
    "transition_time",
]


@functools.lru_cache(maxsize=1024)
def _affinity_model(terms: tuple[LabelTerm, ...]) -> NodeAffinity | None:
    affinity = node_affinity(terms)
    return NodeAffinity.model_validate(affinity) if affinity else None


def transition_time(
    previous: ProfileStatus | None, type_: str, status: ConditionStatus, now: datetime
) -> datetime:
    """The previous lastTransitionTime while the condition's status holds, else ``now``."""
    old = previous.condition(type_) if previous is not None else None
    if old is not None and old.status == status:
        return old.last_transition_time
    return now.astimezone(UTC).replace(microsecond=0)


def evaluate(
    profile: Profile, cluster: ClusterIndex, config: MatcherConfig, now: datetime
) -> ProfileStatus:
    spec: ProfileSpec = profile.spec
    resources = resolve_resources(spec, config)
    requests = parsed_requests(resources)
    terms = label_terms(spec, config)
    result: MatchResult = match_nodes(cluster, terms, requests, config)

    if is_cpu_only(spec):
        phase, cond_status, reason = Phase.READY, ConditionStatus.TRUE, REASON_NO_ACCELERATOR
        message = diagnostics.cpu_only_message(result, requests)
    elif result.matching > 0:
        phase, cond_status, reason = Phase.READY, ConditionStatus.TRUE, REASON_HARDWARE_AVAILABLE
        message = diagnostics.ready_message(result, requests)
    else:
        phase, cond_status = Phase.NOT_AVAILABLE, ConditionStatus.FALSE
        reason = REASON_HARDWARE_NOT_AVAILABLE
        message = diagnostics.not_available_message(result, requests, cluster)

    condition = Condition(
        type=CONDITION_HARDWARE,
        status=cond_status,
        reason=reason,
        message=message,
        last_transition_time=transition_time(profile.status, CONDITION_HARDWARE, cond_status, now),
        observed_generation=profile.generation,
    )
    # Keep conditions other writers own (the list is a map keyed by type), in a stable order.
    others = (
        [c for c in (profile.status.conditions or ()) if c.type != CONDITION_HARDWARE]
        if (profile.status is not None)
        else []
    )
    return ProfileStatus(
        status=phase,
        observed_generation=profile.generation,
        version=image_version(spec.image),
        matching_nodes=result.matching,
        hardware_summary=hardware_summary(spec),
        # Built from validated input, so skip re-validating every quantity.
        resources=StatusResources.model_construct(**resources) if resources else None,
        resolved_node_affinity=_affinity_model(terms),
        conditions=sorted([condition, *others], key=lambda c: c.type),
    )
