"""Automatic profile selection for an AIM id: which profile a deployment would get, and why.

Candidates are the visible, Ready profiles with that ``aimId`` (and the asked metric and
precision). Visible means every cluster profile plus the namespaced profiles of ``namespace``;
with no namespace only cluster profiles are visible. Non-primary profiles are candidates only
when asked for. Among candidates, in order:

1. a namespaced profile beats a cluster profile (the spec's precedence rule);
2. ``primary: true`` first;
3. type: optimized > general > preview > unoptimized > unset;
4. tie-break by namespace then name, so the answer never depends on listing order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from matcher.api.models import Metric, Phase, Precision, Profile, ProfileType

_TYPE_RANK = {t: i for i, t in enumerate(ProfileType)}


@dataclass(frozen=True, slots=True)
class Selection:
    chosen: Profile | None
    rejected: list[tuple[Profile, str]] = field(default_factory=list)
    reason: str = ""
    """Why ``chosen`` won (or why nothing was chosen)."""


def _rank(profile: Profile) -> tuple[int, int, int, str, str]:
    spec = profile.spec
    type_rank = _TYPE_RANK[spec.type] if spec.type is not None else len(_TYPE_RANK)
    return (
        0 if profile.namespace is not None else 1,
        0 if spec.primary else 1,
        type_rank,
        profile.namespace or "",
        profile.name,
    )


def _filter_reason(
    profile: Profile,
    namespace: str | None,
    metric: Metric | str | None,
    precision: Precision | str | None,
    include_non_primary: bool,
) -> str | None:
    spec = profile.spec
    if profile.namespace is not None and profile.namespace != namespace:
        where = f"namespace {namespace}" if namespace else "a cluster-wide selection"
        return f"in namespace {profile.namespace}, not visible from {where}"
    if metric is not None and spec.metric != metric:
        return f"metric is {spec.metric or 'unset'}, wanted {metric}"
    if precision is not None and spec.precision != precision:
        return f"precision is {spec.precision or 'unset'}, wanted {precision}"
    status = profile.status
    if status is None or status.status is not Phase.READY:
        phase = status.status if status is not None else "not evaluated"
        return f"not Ready ({phase})"
    if not spec.primary and not include_non_primary:
        return "not primary (non-primary profiles are only selected when asked for)"
    return None


def _lost_to(loser: Profile, winner: Profile) -> str:
    if (loser.namespace is None) != (winner.namespace is None):
        return "a namespaced profile takes precedence over cluster profiles"
    if loser.spec.primary != winner.spec.primary:
        return "the chosen profile is primary"
    if loser.spec.type != winner.spec.type:
        return (
            f"type {loser.spec.type or 'unset'} ranks below {winner.spec.type} "
            "(optimized > general > preview > unoptimized)"
        )
    return f"same rank; tie broken by name in favour of {winner.ref}"


def select(  # noqa: PLR0917 (the agreed interface takes these positionally)
    profiles: Iterable[Profile],
    aim_id: str,
    namespace: str | None = None,
    metric: Metric | str | None = None,
    precision: Precision | str | None = None,
    include_non_primary: bool = False,
) -> Selection:
    rejected: list[tuple[Profile, str]] = []
    candidates: list[Profile] = []
    for profile in sorted((p for p in profiles if p.spec.aim_id == aim_id), key=_rank):
        reason = _filter_reason(profile, namespace, metric, precision, include_non_primary)
        if reason is None:
            candidates.append(profile)
        else:
            rejected.append((profile, reason))
    if not candidates:
        why = f"no Ready profile for aimId {aim_id} matches"
        if not rejected:
            why = f"no profile has aimId {aim_id}"
        return Selection(chosen=None, rejected=rejected, reason=why)
    chosen, *others = candidates
    scope = f"namespaced ({chosen.namespace})" if chosen.namespace else "cluster"
    why = (
        f"{scope}, {'primary' if chosen.spec.primary else 'non-primary'}, "
        f"type {chosen.spec.type or 'unset'}; best of {len(candidates)} candidate(s)"
    )
    lost = [(p, _lost_to(p, chosen)) for p in others]
    return Selection(chosen=chosen, rejected=lost + rejected, reason=why)
