"""One profile in, at most one status patch out.

``desired_status`` is a plain function over cached data: the core's ``evaluate`` for a valid
profile, ``Failed`` naming the field for one the core cannot read, and ``Degraded`` naming
the API error while nodes cannot be listed. ``Reconciler.reconcile`` compares the result with
the status the object carries (both normalised through ``ProfileStatus``) and patches only
when they differ, and only while this replica leads.

Our own writes come back through the watch a little later; until they do, the status and
resourceVersion the server returned are kept in ``_written`` so that a second pass over the
same key compares against what is really there and does not write twice. A note is only a
shortcut, never the truth: it is dropped when the watch catches up, when a patch sent with it
gets 409 (the object moved on, or the storage went back and the note names a version it no
longer has), and all at once when the informer finds the storage went back
(``drop_notes``). Kept past that, a note would make every later patch a 409.

Every attempt is counted by result (``ok``, ``conflict``, ``gone``, ``error``), the ones that
got no answer (connection refused, read timeout) as ``error`` too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from aimkit.kube import ApiError, KubeError
from matcher.api.models import (
    CONDITION_HARDWARE,
    REASON_HARDWARE_AVAILABLE,
    REASON_HARDWARE_NOT_AVAILABLE,
    Condition,
    ConditionStatus,
    Phase,
    Profile,
    ProfileError,
    ProfileStatus,
    parse_profile,
)
from matcher.controller.events import EventRecorder
from matcher.controller.index import ProfileDeps
from matcher.controller.informer import object_key
from matcher.controller.status_writer import ProfileKey, StatusWriter
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.evaluate import (
    evaluate,
    is_cpu_only,
    required_label_key,
    resolve_resources,
    transition_time,
)

log = logging.getLogger(__name__)

REASON_INVALID = "InvalidProfile"
REASON_NODES_UNAVAILABLE = "NodesUnavailable"


@dataclass(frozen=True, slots=True)
class CachedProfile:
    """What the controller keeps of a profile object."""

    key: ProfileKey
    uid: str | None
    resource_version: str | None
    generation: int | None
    #: The parsed profile (its ``status`` the previous status), or None when invalid.
    profile: Profile | None
    #: Why the object cannot be read, naming the field.
    error: str | None
    #: ``.status`` exactly as the object carries it.
    status: Mapping[str, Any] | None


def cached_profile(obj: Mapping[str, Any]) -> CachedProfile:
    """Project a profile object; never raises, an invalid spec is recorded in ``error``."""
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind") or "")
    key = ProfileKey(kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    raw_status = obj.get("status")
    status = dict(raw_status) if isinstance(raw_status, Mapping) else None
    generation = meta.get("generation")
    generation = generation if isinstance(generation, int) else None
    profile: Profile | None = None
    error: str | None = None
    try:
        # The status is parsed apart: one written by another version must not make the
        # spec unreadable.
        profile = parse_profile({**obj, "status": None})
        previous = _parse_status(status)
        if previous is not None:
            profile = _with_status(profile, previous)
    except ProfileError as exc:
        error = str(exc)
    return CachedProfile(
        key=key,
        uid=meta.get("uid"),
        resource_version=meta.get("resourceVersion"),
        generation=generation,
        profile=profile,
        error=error,
        status=status,
    )


def _with_status(profile: Profile, status: ProfileStatus) -> Profile:
    return Profile(
        kind=profile.kind,
        name=profile.name,
        namespace=profile.namespace,
        generation=profile.generation,
        spec=profile.spec,
        status=status,
        resource_version=profile.resource_version,
        uid=profile.uid,
    )


def _parse_status(status: Mapping[str, Any] | None) -> ProfileStatus | None:
    if not status:
        return None
    try:
        return ProfileStatus.from_dict(status)
    except ValidationError:
        return None


def normalised(status: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A status dict as our model writes it, so equal statuses compare equal."""
    parsed = _parse_status(status)
    if parsed is not None:
        return parsed.to_dict()
    return dict(status) if status else None


def profile_deps(cached: CachedProfile, config: MatcherConfig) -> ProfileDeps:
    profile = cached.profile
    if profile is None:
        return ProfileDeps(None, frozenset(), node_independent=True)
    requests = resolve_resources(profile.spec, config).get("requests") or {}
    return ProfileDeps(required_label_key(profile.spec), frozenset(requests))


def _condition(
    previous: ProfileStatus | None,
    *,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> Condition:
    return Condition(
        type=CONDITION_HARDWARE,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition_time(previous, CONDITION_HARDWARE, status, now),
        observed_generation=generation,
    )


def _replace_condition(status: ProfileStatus, condition: Condition) -> list[Condition]:
    others = [c for c in status.conditions or () if c.type != condition.type]
    return sorted([condition, *others], key=lambda c: c.type)


def desired_status(
    cached: CachedProfile,
    cluster: ClusterIndex,
    config: MatcherConfig,
    nodes_error: str | None,
    now: datetime,
) -> ProfileStatus:
    profile = cached.profile
    previous = _parse_status(cached.status)
    if profile is None:
        base = previous or ProfileStatus()
        condition = _condition(
            previous,
            status=ConditionStatus.UNKNOWN,
            reason=REASON_INVALID,
            message=f"the profile cannot be evaluated: {cached.error}",
            generation=cached.generation,
            now=now,
        )
        return base.model_copy(
            update={
                "status": Phase.FAILED,
                "observed_generation": cached.generation,
                "conditions": _replace_condition(base, condition),
            }
        )
    status = evaluate(profile, cluster, config, now)
    if nodes_error is None or is_cpu_only(profile.spec):
        return status
    # Without a node list the match is a guess: keep the last known figures, say why.
    condition = _condition(
        previous,
        status=ConditionStatus.UNKNOWN,
        reason=REASON_NODES_UNAVAILABLE,
        message=f"cannot list or watch nodes: {nodes_error}",
        generation=cached.generation,
        now=now,
    )
    return status.model_copy(
        update={"status": Phase.DEGRADED, "conditions": _replace_condition(status, condition)}
    )


@dataclass(frozen=True, slots=True)
class _Written:
    resource_version: str
    status: Mapping[str, Any]


class Conflict(Exception):
    """The object changed since the cache saw it; retry against the newer one."""


class Reconciler:
    def __init__(
        self,
        *,
        profiles: Callable[[ProfileKey], CachedProfile | None],
        evaluate_locked: Callable[[CachedProfile], ProfileStatus],
        writer: StatusWriter,
        recorder: EventRecorder | None,
        is_leader: Callable[[], bool],
        on_write: Callable[[str], None] | None = None,
    ) -> None:
        self._profiles = profiles
        self._evaluate = evaluate_locked
        self._writer = writer
        self._recorder = recorder
        self._is_leader = is_leader
        self._on_write = on_write
        self._lock = threading.Lock()
        self._written: dict[ProfileKey, _Written] = {}

    def observed(self, cached: CachedProfile) -> bool:
        """The watch delivered ``cached``: forget our note once the cache has caught up. True
        when ``cached`` is exactly the object our last status write stored: nothing about it
        needs evaluating again (whatever changed since that evaluation queued it anew)."""
        with self._lock:
            written = self._written.get(cached.key)
            if written is None or _older(cached.resource_version, written.resource_version):
                return False
            del self._written[cached.key]
            return bool(written.resource_version) and (
                cached.resource_version == written.resource_version
            )

    def forget(self, key: ProfileKey) -> None:
        with self._lock:
            self._written.pop(key, None)

    def drop_notes(self) -> int:
        """Forget every note (the storage went back: none of them can be trusted)."""
        with self._lock:
            count = len(self._written)
            self._written.clear()
        return count

    def reconcile(self, key: ProfileKey) -> bool:
        """Bring one profile's status up to date. True when a patch was sent.

        Raises Conflict or KubeError for the caller to retry with back-off.
        """
        if not self._is_leader():
            return False
        cached = self._profiles(key)
        if cached is None:
            return False
        current_status, resource_version = cached.status, cached.resource_version
        with self._lock:
            written = self._written.get(key)
        if written is not None and _older(resource_version, written.resource_version):
            current_status, resource_version = written.status, written.resource_version
            if cached.profile is not None:
                previous = _parse_status(current_status)
                profile = _with_status(cached.profile, previous) if previous else cached.profile
                cached = CachedProfile(
                    cached.key,
                    cached.uid,
                    resource_version,
                    cached.generation,
                    profile,
                    cached.error,
                    current_status,
                )
        desired = self._evaluate(cached).to_dict()
        if normalised(current_status) == desired:
            return False
        # Checked again right before the write: leadership may have ended while evaluating.
        if not self._is_leader():
            return False
        try:
            stored = self._writer.patch(key, current_status, desired, resource_version)
        except ApiError as exc:
            if exc.status == 404:
                self._count("gone")
                return False
            if exc.status == 409:
                self._count("conflict")
                # Whatever the note said, the server has another version now: the retry
                # starts from the cache (and the watch) again.
                self.forget(key)
                raise Conflict(str(key)) from None
            self._count("error")
            raise
        except KubeError:
            self._count("error")  # no answer at all: refused, timed out, dropped
            raise
        self._count("ok")
        meta = stored.get("metadata") or {}
        new_rv = str(meta.get("resourceVersion") or "")
        with self._lock:
            self._written[key] = _Written(new_rv, stored.get("status") or desired)
        log.info(
            "status written",
            extra={
                "profile": str(key),
                "status": desired.get("status"),
                "from": (current_status or {}).get("status"),
                "object": object_key(stored),
            },
        )
        self._maybe_event(cached, current_status, desired)
        return True

    def _count(self, result: str) -> None:
        if self._on_write is not None:
            self._on_write(result)

    def _maybe_event(
        self,
        cached: CachedProfile,
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any],
    ) -> None:
        if self._recorder is None:
            return
        before, after = (old or {}).get("status"), new.get("status")
        ready, not_available = Phase.READY.value, Phase.NOT_AVAILABLE.value
        # A profile found NotAvailable (first evaluation, after Pending, Degraded or Failed,
        # or a flip from Ready) gets a Warning, so `kubectl describe` says why; a return to
        # Ready from NotAvailable a Normal one. Nothing else is an event.
        if not (after == not_available != before or (after == ready and before == not_available)):
            return
        message = next(
            (
                c.get("message", "")
                for c in new.get("conditions") or ()
                if c.get("type") == CONDITION_HARDWARE
            ),
            "",
        )
        if after == ready:
            reason, event_type = REASON_HARDWARE_AVAILABLE, "Normal"
        else:
            reason, event_type = REASON_HARDWARE_NOT_AVAILABLE, "Warning"
        self._recorder.record(cached.key, cached.uid, event_type, reason, message)


def _older(candidate: str | None, than: str) -> bool:
    """True when resourceVersion ``candidate`` predates ``than``.

    resourceVersions are opaque in principle; every API server in practice issues increasing
    integers. When they are not integers only an exact match counts as caught up.
    """
    if candidate == than:
        return False
    if candidate is not None and candidate.isdigit() and than.isdigit():
        return int(candidate) < int(than)
    return True
