"""Proving the node fence before reporting ready (node mode).

RBAC gives the detector ``patch`` on every Node; only the admission policy
(``daemonset/detector/node-fence-policy.yaml``) keeps it to its own labels on its own Node. A
policy that does not match this detector's service account (an overlay renamed it, the cluster
has no ValidatingAdmissionPolicy, someone deleted the binding) fails silently: everything keeps
working and every node's detector can relabel, taint or cordon every Node. So the agent proves
the fence holds before it reports ready: it sends writes the fence must refuse, as dry runs
(``dryRun=All``: admission runs, nothing is stored), and reports ready only when they are
refused:

1. a foreign label (``aim.eai.amd.com/node-fence-probe``) on its own Node: refused only if the
   policy applies to this account at all (its label rule);
2. one of its own labels on another Node, when one is visible (``--fence-peer-node``): refused
   only by the policy's node-binding rule.

Which outcomes prove the fence is :func:`judge`, a pure function over the HTTP status of each
write. A 403 is a refusal (the policy's, or RBAC's: either way the write cannot happen). A 2xx
means the write would have gone through: the fence is open. Anything else (no answer, 5xx,
429, 422) proves nothing and is tried again next cycle; a 404 on the other Node means it is not
visible (gone), and only the own-Node write is judged. The outcome is logged when it changes,
exported as ``aim_detector_node_fence{state}`` and, until proven, held against readiness.
``--waive-node-fence`` skips the proof on clusters that cannot run the policy (before 1.30): the
metric then says ``waived`` and the agent warns at start.

I/O goes through one narrow operation of the publisher's client, :data:`DryRunPatch` ("send this
merge patch to Node X with dryRun=All, tell me the status"), so this module needs no Kubernetes
client of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Gauge

from detector.labels import LABEL_PREFIX

log = logging.getLogger(__name__)

#: A label outside the detector's prefix: the policy must refuse it on any Node.
FOREIGN_PROBE_LABEL = "aim.eai.amd.com/node-fence-probe"
#: One of the detector's own keys: the policy admits it on the detector's own Node only.
PEER_PROBE_LABEL = LABEL_PREFIX + "node-fence-probe"
PROBE_VALUE = "1"

State = Literal["proven", "open", "unknown", "waived"]
STATES: tuple[State, ...] = ("proven", "open", "unknown", "waived")
#: Readiness check name while the fence is not proven.
HOLD = "node-fence"


@dataclass(frozen=True, slots=True)
class PatchResult:
    """What the API server answered to one dry-run patch: its HTTP status (None when there was
    no answer) and the message, for logs."""

    status: int | None
    message: str = ""


#: Send ``patch`` (a JSON merge patch) to Node ``name`` with ``dryRun=All``; never raises.
DryRunPatch = Callable[[str, Mapping[str, Any]], PatchResult]


@dataclass(frozen=True, slots=True)
class Probe:
    node: str
    patch: Mapping[str, Any]
    what: str
    #: A 404 means "that Node is not visible": skip it rather than fail the proof.
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    reason: str


def probes(own_node: str, peer_node: str | None = None) -> list[Probe]:
    """The writes the fence must refuse, for this Node and (if visible) another one."""
    found = [
        Probe(
            own_node,
            {"metadata": {"labels": {FOREIGN_PROBE_LABEL: PROBE_VALUE}}},
            f"a foreign label ({FOREIGN_PROBE_LABEL}) on its own Node {own_node}",
        )
    ]
    if peer_node and peer_node != own_node:
        found.append(
            Probe(
                peer_node,
                {"metadata": {"labels": {PEER_PROBE_LABEL: PROBE_VALUE}}},
                f"one of its own labels on another Node, {peer_node}",
                optional=True,
            )
        )
    return found


def judge(results: Sequence[tuple[Probe, PatchResult]]) -> Verdict:
    """Whether these answers prove the fence: every write refused (403) means proven; any write
    admitted (2xx) means open; anything else leaves it unknown."""
    admitted = [(p, r) for p, r in results if r.status is not None and 200 <= r.status < 300]
    if admitted:
        probe, result = admitted[0]
        return Verdict(
            "open",
            f"a dry run of {probe.what} was admitted (HTTP {result.status}): the admission "
            "policy does not fence this detector; every node's detector could relabel, taint "
            "or cordon every Node (check that ValidatingAdmissionPolicy "
            "aim-detector-own-node-labels and its binding are installed and select this "
            "service account; docs/security.md)",
        )
    judged = [
        (p, r) for p, r in results if not (p.optional and r.status == 404)
    ]  # a peer that is gone proves nothing either way
    unclear = [(p, r) for p, r in judged if r.status != 403]
    if unclear or not judged:
        if not judged:
            return Verdict("unknown", "no write was judged")
        probe, result = unclear[0]
        answer = f"HTTP {result.status}" if result.status is not None else "no answer"
        detail = f": {result.message}" if result.message else ""
        return Verdict(
            "unknown",
            f"could not tell whether {probe.what} is refused ({answer}{detail}); trying again",
        )
    refused = ", ".join(p.what for p, _ in judged)
    skipped = [p for p, r in results if p.optional and r.status == 404]
    note = f" ({skipped[0].node} is not visible, not checked)" if skipped else ""
    return Verdict("proven", f"refused as it must be: {refused}{note}")


class NodeFence:
    """Runs the proof (see the module docstring) until it holds, and reports it.

    ``hold(name, reason)`` keeps readiness down while ``reason`` is not None (the agent's
    :class:`detector.metrics.Health`). A proof that failed is tried again at most every
    ``retry_after`` seconds; once proven (or waived) it is never sent again.
    """

    def __init__(
        self,
        patch: DryRunPatch,
        own_node: str,
        *,
        peer_node: str | None = None,
        waived: bool = False,
        registry: CollectorRegistry | None = None,
        hold: Callable[[str, str | None], None] | None = None,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._patch = patch
        self._probes = probes(own_node, peer_node)
        self._hold = hold or (lambda _name, _reason: None)
        self._retry_after = retry_after
        self._clock = clock
        self._last_try: float | None = None
        self.gauge = Gauge(
            "aim_detector_node_fence",
            "1 for the node fence's current state: proven (writes outside it are refused), "
            "open (one was admitted), unknown (no clear answer yet) or waived "
            "(--waive-node-fence).",
            ["state"],
            registry=registry,
        )
        if waived:
            self.verdict = Verdict("waived", "--waive-node-fence: the fence is not checked")
            log.warning(
                "node fence NOT checked (--waive-node-fence): nothing proves that this "
                "detector can change only its own labels on its own Node; use this only on "
                "clusters that cannot run the admission policy",
                extra={"node": own_node},
            )
        else:
            self.verdict = Verdict("unknown", "not checked yet")
            self._hold(HOLD, f"node fence {self.verdict.state}: {self.verdict.reason}")
        self._export()

    @property
    def settled(self) -> bool:
        return self.verdict.state in ("proven", "waived")

    def check(self) -> Verdict:
        """Send the proof's writes (unless settled or tried too recently) and report them."""
        if self.settled:
            return self.verdict
        now = self._clock()
        if self._last_try is not None and now - self._last_try < self._retry_after:
            return self.verdict
        self._last_try = now
        results = [(probe, self._patch(probe.node, probe.patch)) for probe in self._probes]
        verdict = judge(results)
        if verdict != self.verdict:
            level = logging.INFO if verdict.state == "proven" else logging.ERROR
            message = (
                "node fence proven"
                if verdict.state == "proven"
                else "node fence not proven, not ready"
            )
            log.log(level, message, extra={"state": verdict.state, "why": verdict.reason})
        self.verdict = verdict
        self._hold(HOLD, None if self.settled else f"node fence {verdict.state}: {verdict.reason}")
        self._export()
        return verdict

    def _export(self) -> None:
        for state in STATES:
            self.gauge.labels(state).set(1 if state == self.verdict.state else 0)
