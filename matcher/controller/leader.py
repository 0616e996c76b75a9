"""Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection.

Timing contract (client-go's): a candidate retries every ``retry_period``; the leader renews
every ``retry_period`` and gives up when it has not renewed for ``renew_deadline``; others
take the lease when they have seen no change to it for ``lease_duration``. Because
``renew_deadline < lease_duration`` and the leader counts from the moment it *sent* its last
successful renew, it stops writing before anyone else can start: ``is_leader()`` is checked
against the clock on every call, so a leader whose renew thread is stuck stops at once too.
On shutdown the lease is released (holder cleared) so a follower takes over without waiting.

A leader that reads the lease and finds another holder in it (someone took it over, by hand
or after a pause of ours longer than the lease) stops leading at once rather than waiting for
its renew deadline. Expiry counts the ``leaseDurationSeconds`` the holder recorded in the
lease, as client-go does, so replicas with different settings agree on when a lease is free.

**A lease deleted by hand.** client-go's candidates create a missing lease at once, and its
leader keeps writing until a renew fails; a follower that won the create wrote beside the old
leader until that leader's next renew (about 1.4 s measured, up to ``retry_period``). Here:

- the leader that finds its lease gone stops writing at once, then recreates the lease (it
  still holds the only claim anyone saw) and resumes as a new leader would (everything is
  re-evaluated) only if its create wins;
- a follower that finds the lease gone does not create it while the record it last saw, held
  by another replica, would still be valid (``leaseDurationSeconds`` since it last changed):
  the leader recreates it in the meantime, or, if the leader is gone too, the follower takes
  over when that lease would have expired anyway.

What remains: a replica that never saw the lease (one that starts in the very moment it is
deleted) creates it at once, and the old leader writes until its next renew reads the lease
(at most ``retry_period``); a lease overwritten with another holder is seen at the leader's next
renew too. The resourceVersion preconditions of the status writes keep the result right in
that window, as the chaos run saw: a write based on an older object gets 409.

Times in the lease are MicroTime, always with six fractional digits
(``2026-01-01T00:00:00.000000Z``): kube-apiserver refuses a whole-second time without them
(what ``isoformat()`` writes) with 400.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from aimkit.kube import ApiError, KubeClient
from aimkit.logs import Throttle
from matcher.controller.informer import TRANSPORT_ERRORS, error_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderSettings:
    name: str = "aim-matcher"
    namespace: str = "default"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    request_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("leader election needs an identity")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs retry_period < renew_deadline < lease_duration, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration}"
            )


class Attempt(Enum):
    """The outcome of one try to acquire or renew the lease."""

    #: We hold the lease (acquired or renewed).
    HELD = "held"
    #: The lease names another holder whose lease has not expired.
    OTHER_HOLDER = "other-holder"
    #: The lease could not be read or written (API error, 409 on write): try again.
    FAILED = "failed"


def recorded_duration(spec: Mapping[str, Any], default: float) -> float:
    """The lease duration the holder wrote into the lease, else ``default``."""
    value = spec.get("leaseDurationSeconds")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: KubeClient,
        settings: LeaderSettings,
        *,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._leases = f"/apis/coordination.k8s.io/v1/namespaces/{settings.namespace}/leases"
        self.settings = settings
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._leading = False
        self._last_renew = -math.inf
        self._lapsed = False
        # The lease record as last read, and when (our clock) it last changed.
        self._observed: dict[str, Any] | None = None
        self._observed_raw = ""
        self._observed_at = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read_errors = Throttle()

    # -- queries --------------------------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            return self._leading and self._clock() - self._last_renew < self.settings.renew_deadline

    @property
    def holder(self) -> str:
        with self._lock:
            spec = (self._observed or {}).get("spec") or {}
            return str(spec.get("holderIdentity") or "")

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True, join_timeout: float = 5.0) -> None:
        """Stop campaigning; with ``release`` a leader hands the lease back at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(join_timeout)
        was_leading = self._set_leading(False)
        if release and was_leading:
            self._release()

    def run(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            if self._try_acquire_or_renew() is Attempt.HELD:
                with self._lock:
                    fresh = self._clock() - self._last_renew < s.renew_deadline
                if not fresh:
                    continue
                log.info("became leader", extra={"lease": s.name, "identity": s.identity})
                self._set_leading(True)
                if self._on_started is not None:
                    self._on_started()
                self._renew_loop()
                if self._stop.is_set():
                    return
                log.warning("lost leadership", extra={"lease": s.name, "identity": s.identity})
            self._stop.wait(s.retry_period * random.uniform(1.0, 1.2))

    def _renew_loop(self) -> None:
        s = self.settings
        while not self._stop.wait(s.retry_period):
            while (attempt := self._try_acquire_or_renew()) is not Attempt.HELD:
                if attempt is Attempt.OTHER_HOLDER:
                    # Someone else holds the lease now: stop writing at once, follow again.
                    log.warning(
                        "lease taken over by %s",
                        self.holder,
                        extra={"lease": s.name, "identity": s.identity},
                    )
                    self._set_leading(False)
                    return
                if not self.is_leader() or self._stop.is_set():
                    self._set_leading(False)
                    return
                self._stop.wait(min(s.retry_period / 4, 0.5))
            with self._lock:
                lapsed, self._lapsed = self._lapsed, False
                # A deleted lease stopped us (see _try_acquire_or_renew) and our create won.
                resumed, self._leading = not self._leading, True
            if (lapsed or resumed) and self._on_started is not None:
                # is_leader() refused writes for a while (the renew deadline passed before
                # this renew got through, or the lease was recreated): catch up as a new
                # leader would.
                log.info(
                    "leading again after a lapse",
                    extra={"lease": s.name, "why": "lease recreated" if resumed else "renew"},
                )
                self._on_started()

    def _set_leading(self, leading: bool) -> bool:
        with self._lock:
            was = self._leading
            self._leading = leading
        if was and not leading and self._on_stopped is not None:
            self._on_stopped()
        return was

    # -- the lease ------------------------------------------------------------------------

    def _try_acquire_or_renew(self) -> Attempt:
        s = self.settings
        started = self._clock()
        now = micro_time(self._wall_clock())
        try:
            current = self._read()
        except TRANSPORT_ERRORS as exc:
            text = error_text(exc)
            # Every retry period during an outage: said once (and every 10 minutes).
            level = logging.WARNING if self._read_errors.allow(text) else logging.DEBUG
            log.log(level, "cannot read lease: %s", text, extra={"lease": s.name})
            return Attempt.FAILED
        if self._read_errors.reset():
            log.info("lease readable again", extra={"lease": s.name})
        if current is None:
            if self._set_leading(False):
                log.warning(
                    "lease deleted: stopped writing; recreating it",
                    extra={"lease": s.name, "identity": s.identity},
                )
            elif self._held_by_other_lately():
                # Deleted under a live leader: let it recreate the lease (or its claim run out).
                return Attempt.OTHER_HOLDER
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": self._spec(now, now, 0),
            }
            return self._write(
                started,
                lambda: self._api.request(
                    "POST", self._leases, body=body, timeout=s.request_timeout
                ),
            )
        self._observe(current)
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        transitions = int(spec.get("leaseTransitions") or 0)
        # The holder's own lease duration decides when its lease is free (client-go does the
        # same): a replica with a shorter setting must not take over early.
        duration = recorded_duration(spec, s.lease_duration)
        with self._lock:
            expired = self._clock() - self._observed_at >= duration
        if holder and holder != s.identity and not expired:
            return Attempt.OTHER_HOLDER
        if holder == s.identity:
            acquire = spec.get("acquireTime") or now
        else:
            acquire = now
            transitions += 1
        current["spec"] = self._spec(acquire, now, transitions)
        return self._write(
            started,
            lambda: self._api.request(
                "PUT", f"{self._leases}/{s.name}", body=current, timeout=s.request_timeout
            ),
        )

    def _held_by_other_lately(self) -> bool:
        """The last lease we read named another holder and would not have expired yet."""
        with self._lock:
            spec = (self._observed or {}).get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            duration = recorded_duration(spec, self.settings.lease_duration)
            fresh = self._clock() - self._observed_at < duration
        return bool(holder) and holder != self.settings.identity and fresh

    def _spec(self, acquire: str, renew: str, transitions: int) -> dict[str, Any]:
        s = self.settings
        return {
            "holderIdentity": s.identity,
            "leaseDurationSeconds": max(1, math.ceil(s.lease_duration)),
            "acquireTime": acquire,
            "renewTime": renew,
            "leaseTransitions": transitions,
        }

    def _read(self) -> dict[str, Any] | None:
        s = self.settings
        try:
            return self._api.request("GET", f"{self._leases}/{s.name}", timeout=s.request_timeout)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _write(self, started: float, call: Callable[[], dict[str, Any]]) -> Attempt:
        try:
            written = call()
        except TRANSPORT_ERRORS as exc:
            # 409: someone else wrote the lease since we read it; they won this round. The
            # retry reads it again and sees who holds it now.
            log.info("lease write failed: %s", error_text(exc), extra={"lease": self.settings.name})
            return Attempt.FAILED
        self._observe(written)
        with self._lock:
            if self._leading and self._clock() - self._last_renew >= self.settings.renew_deadline:
                self._lapsed = True
            self._last_renew = started
        return Attempt.HELD

    def _observe(self, lease: dict[str, Any]) -> None:
        raw = json.dumps(lease.get("spec") or {}, sort_keys=True)
        with self._lock:
            if raw != self._observed_raw:
                self._observed_raw = raw
                self._observed_at = self._clock()
            self._observed = lease

    def _release(self) -> None:
        s = self.settings
        try:
            current = self._read()
            if current is None:
                return
            spec = current.get("spec") or {}
            if spec.get("holderIdentity") != s.identity:
                return
            now = micro_time(self._wall_clock())
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=now, acquireTime=now)
            current["spec"] = {k: v for k, v in spec.items() if v != ""}
            self._api.request(
                "PUT", f"{self._leases}/{s.name}", body=current, timeout=s.request_timeout
            )
            log.info("released lease", extra={"lease": s.name, "identity": s.identity})
        except TRANSPORT_ERRORS as exc:
            log.warning("cannot release lease: %s", error_text(exc), extra={"lease": s.name})
