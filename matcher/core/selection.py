"""Automatic profile selection for an AIM id: which profile a deployment would get, and why.

One deterministic ranking, shared by ``aim-matcher select`` and admission. It is AIM Engine's
(``internal/v1alpha2/aimprofile`` ``CompareProfileRankIgnoringName`` behind the v1alpha2
AIMService resolver, which also puts namespace profiles before cluster ones), with the
candidate filter kept stricter here.

Candidates are the visible, Ready profiles with that ``aimId`` (and the asked metric and
precision). Visible means every cluster profile plus the namespaced profiles of
``namespace``; with no namespace only cluster profiles are visible. Non-primary profiles are
candidates only when asked for (the spec's "Primary profiles"). Profiles without an
``aimId`` (AIM Engine's base profiles) are never candidates. Among candidates, first
difference wins:

1. scope: a namespaced profile beats a cluster profile (the spec's precedence rule);
2. ``primary: true`` first;
3. type: optimized > general > preview > unoptimized = unset > anything else;
4. accelerator model, in the configured preference order (newest Instinct first by default;
   models not listed tie last);
5. metric: latency > throughput > unset;
6. precision: fp4 > int4 > fp8 > int8 > fp16 > bf16 > fp32 > fp64 > unset;
7. devices: fewer ``acceleratorCount`` first, 0 or unset last;
8. ``acceleratorType: gpu`` before cpu or unset;
9. version (``status.version``): newer first; semantic versions (``v`` prefix and missing
   minor/patch tolerated) above other tags, any tag above none;
10. namespace, then name: the answer never depends on listing order.

Pure: plain data in (profiles with their evaluated status), plain data out; every profile
not chosen carries the reason.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from matcher.api.models import (
    AcceleratorType,
    Metric,
    Phase,
    Precision,
    Profile,
    ProfileType,
)
from matcher.core.config import DEFAULT_ACCELERATOR_PREFERENCE

TYPE_ORDER = ("optimized", "general", "preview", "unoptimized")
METRIC_ORDER = ("latency", "throughput")
PRECISION_ORDER = ("fp4", "int4", "fp8", "int8", "fp16", "bf16", "fp32", "fp64")
_UNLISTED = 1000


@dataclass(frozen=True, slots=True)
class Tier:
    """One ranking criterion: its name (a ``-o wide`` column), how a profile shows on it, and
    how it orders two profiles (negative: the first ranks ahead). ``key`` orders profiles the
    same way as a sort key (``compare(a, b)`` is the sign of ``key(a)`` against ``key(b)``), so
    that ranking N profiles computes each key once instead of comparing pairs (admission ranks
    on every pod)."""

    name: str
    order: str
    show: Callable[[Profile], str]
    compare: Callable[[Profile, Profile], int]
    key: Callable[[Profile], Any]


@dataclass(frozen=True, slots=True)
class Selection:
    chosen: Profile | None
    rejected: list[tuple[Profile, str]] = field(default_factory=list)
    """Every profile with the aim id that was not chosen, with why (ranked ones first)."""
    reason: str = ""
    """Why ``chosen`` won (or why nothing was chosen)."""
    ranking: tuple[Profile, ...] = ()
    """The candidates best first (``chosen`` is the first)."""
    tiers: tuple[Tier, ...] = ()
    """The criteria the ranking applied, in order."""


@functools.lru_cache(maxsize=64)
def _positions(order: tuple[str, ...]) -> dict[str, int]:
    positions: dict[str, int] = {}
    for index, item in enumerate(order):
        positions.setdefault(item.upper(), index)
    return positions


def _listed(order: Sequence[str], value: str | None) -> int:
    if not value:
        return _UNLISTED + 1
    return _positions(tuple(order)).get(value.upper(), _UNLISTED)


def _type_rank(profile: Profile) -> int:
    value = profile.spec.type
    # AIM Engine: unset counts as unoptimized (handled conservatively).
    return TYPE_ORDER.index(value if value is not None else ProfileType.UNOPTIMIZED)


def _devices(profile: Profile) -> tuple[int, int]:
    count = profile.spec.accelerator_count or 0
    return (1, 0) if count == 0 else (0, count)


def _sign(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def _key_tier(
    name: str, order: str, show: Callable[[Profile], str], key: Callable[[Profile], object]
) -> Tier:
    return Tier(name, order, show, lambda a, b: _sign(key(a), key(b)), key)


# --- versions ------------------------------------------------------------------------------------

_SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)


def _semver(text: str) -> tuple[int, int, int, tuple[str, ...]] | None:
    """blang/semver's ParseTolerant: ``v1.2`` -> 1.2.0; leading zeros dropped."""
    text = text.strip().removeprefix("v")
    parts = text.split(".", 2)
    if len(parts) < 3:
        if re.search(r"[+-]", parts[-1]):
            return None
        parts += ["0"] * (3 - len(parts))
    parts = [p.lstrip("0") or "0" if p.isdigit() else p for p in parts]
    match = _SEMVER.match(".".join(parts))
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else ()


def _compare_pre(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    if a == b:
        return 0
    if not a or not b:
        return -1 if b == () else 1  # a release ranks above its prereleases
    for x, y in zip(a, b, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return _sign(int(x), int(y))
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return _sign(x, y)
    return _sign(len(a), len(b))


def _tokens(text: str) -> list[str]:
    return re.findall(r"[0-9]+|[^0-9]+", text)


def _compare_loose(a: str, b: str) -> int:
    for x, y in zip(_tokens(a), _tokens(b), strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return _sign(int(x), int(y))
        return _sign(x, y)
    return _sign(len(_tokens(a)), len(_tokens(b))) or _sign(a, b)


def compare_versions(a: str | None, b: str | None) -> int:
    """Positive when ``a`` is newer (AIM Engine's compareProfileVersions)."""
    if (a or "") == (b or ""):
        return 0
    if not a or not b:
        return -1 if not a else 1
    sa, sb = _semver(a), _semver(b)
    if sa is not None and sb is not None:
        return _sign(sa[:3], sb[:3]) or _compare_pre(sa[3], sb[3])
    if sa is not None or sb is not None:
        return 1 if sa is not None else -1
    return _compare_loose(a, b)


def _version(profile: Profile) -> str | None:
    return profile.status.version if profile.status is not None else None


@functools.total_ordering
class _NewerFirst:
    """The version tier as a sort key: a newer version sorts first."""

    __slots__ = ("version",)

    def __init__(self, version: str | None) -> None:
        self.version = version

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NewerFirst) and compare_versions(self.version, other.version) == 0

    def __lt__(self, other: _NewerFirst) -> bool:
        return compare_versions(self.version, other.version) > 0

    __hash__ = None  # type: ignore[assignment]


# --- the tiers -----------------------------------------------------------------------------------


def tiers(
    accelerator_preference: Sequence[str] = DEFAULT_ACCELERATOR_PREFERENCE,
) -> tuple[Tier, ...]:
    """The ranking criteria in order (the preference is the matcher config's)."""
    preference = tuple(accelerator_preference)
    return (
        _key_tier(
            "scope",
            "namespaced before cluster",
            lambda p: f"namespace {p.namespace}" if p.namespace is not None else "cluster",
            lambda p: p.namespace is None,
        ),
        _key_tier(
            "primary",
            "primary first",
            lambda p: str(p.spec.primary).lower(),
            lambda p: not p.spec.primary,
        ),
        _key_tier(
            "type",
            " > ".join(TYPE_ORDER) + " (= unset)",
            lambda p: p.spec.type or "unset",
            _type_rank,
        ),
        _key_tier(
            "accelerator",
            " > ".join(preference) + " > others",
            lambda p: p.spec.accelerator_model or "none",
            lambda p: _listed(preference, p.spec.accelerator_model),
        ),
        _key_tier(
            "metric",
            " > ".join(METRIC_ORDER) + " > unset",
            lambda p: p.spec.metric or "unset",
            lambda p: _listed(METRIC_ORDER, p.spec.metric),
        ),
        _key_tier(
            "precision",
            " > ".join(PRECISION_ORDER) + " > unset",
            lambda p: p.spec.precision or "unset",
            lambda p: _listed(PRECISION_ORDER, p.spec.precision),
        ),
        _key_tier(
            "devices",
            "fewer first, 0 or unset last",
            lambda p: str(p.spec.accelerator_count or 0),
            _devices,
        ),
        _key_tier(
            "kind",
            "gpu before cpu or unset",
            lambda p: p.spec.accelerator_type or "unset",
            lambda p: p.spec.accelerator_type is not AcceleratorType.GPU,
        ),
        Tier(
            "version",
            "newer first, semantic versions above other tags",
            lambda p: _version(p) or "none",
            lambda a, b: -compare_versions(_version(a), _version(b)),
            lambda p: _NewerFirst(_version(p)),
        ),
        _key_tier(
            "name",
            "namespace, then name, alphabetical",
            lambda p: p.ref,
            lambda p: (p.namespace or "", p.name),
        ),
    )


def _first_difference(a: Profile, b: Profile, order: tuple[Tier, ...]) -> tuple[int, Tier | None]:
    for tier in order:
        result = tier.compare(a, b)
        if result:
            return result, tier
    return 0, None


def _lost_to(loser: Profile, winner: Profile, order: tuple[Tier, ...]) -> str:
    _, tier = _first_difference(loser, winner, order)
    if tier is None or tier.name == "name":
        return f"same rank; tie broken by name in favour of {winner.ref}"
    if tier.name == "scope":
        return "a namespaced profile takes precedence over cluster profiles"
    if tier.name == "primary":
        return "the chosen profile is primary"
    if tier.name == "type":
        return (
            f"type {loser.spec.type or 'unset'} ranks below {winner.spec.type or 'unset'} "
            "(optimized > general > preview > unoptimized)"
        )
    label = {"devices": "acceleratorCount", "kind": "acceleratorType"}.get(tier.name, tier.name)
    return f"{label} {tier.show(loser)} ranks below {tier.show(winner)} ({tier.order})"


# --- the filter ----------------------------------------------------------------------------------


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


def select(  # noqa: PLR0917 (the agreed interface takes these positionally)
    profiles: Iterable[Profile],
    aim_id: str,
    namespace: str | None = None,
    metric: Metric | str | None = None,
    precision: Precision | str | None = None,
    include_non_primary: bool = False,
    *,
    accelerator_preference: Sequence[str] = DEFAULT_ACCELERATOR_PREFERENCE,
) -> Selection:
    order = tiers(accelerator_preference)
    pool = [p for p in profiles if aim_id and p.spec.aim_id == aim_id]
    rejected: list[tuple[Profile, str]] = []
    candidates: list[Profile] = []
    # The tiers' keys in order: the first difference decides, as _first_difference does.
    for profile in sorted(pool, key=lambda p: tuple(tier.key(p) for tier in order)):
        reason = _filter_reason(profile, namespace, metric, precision, include_non_primary)
        if reason is None:
            candidates.append(profile)
        else:
            rejected.append((profile, reason))
    if not candidates:
        why = f"no Ready profile for aimId {aim_id} matches"
        if not rejected:
            why = f"no profile has aimId {aim_id}"
        return Selection(chosen=None, rejected=rejected, reason=why, tiers=order)
    chosen, *others = candidates
    scope = f"namespaced ({chosen.namespace})" if chosen.namespace else "cluster"
    why = (
        f"{scope}, {'primary' if chosen.spec.primary else 'non-primary'}, "
        f"type {chosen.spec.type or 'unset'}; best of {len(candidates)} candidate(s)"
    )
    lost = [(p, _lost_to(p, chosen, order)) for p in others]
    return Selection(
        chosen=chosen,
        rejected=lost + rejected,
        reason=why,
        ranking=tuple(candidates),
        tiers=order,
    )
