"""One node against one profile: does the node serve it, and if not, what does it lack?

The status says how many nodes match a profile; platform teams also ask the other way round
(which profiles can this node serve?) and what keeps a node from serving one. This module
answers both with the profile's own terms and requests (``affinity.label_terms``,
``resources.resolve_resources``) and the node sets of ``matching.matching_names``, so a node
lacks nothing exactly when the profile's ``matchingNodes`` counts it.

- :func:`misses`: what one node lacks for one set of requirements, in the order the matcher
  checks them (label terms, then requests, then the cordoned/NotReady rules of the config).
- :func:`nearest_nodes`: every node ranked by how near it comes (``kubectl aim why``).
- :func:`node_reports`: per node, the profiles it serves and its nearest misses
  (``kubectl aim nodes``); a near miss is a profile whose accelerator the node has (or that
  names none), so an MI300X node is never told it lacks an MI355X label.

Pure: no Kubernetes client, no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from detector.labels import LABEL_PREFIX, accelerator_id_of
from matcher.api.models import Profile
from matcher.core.affinity import LabelTerm, label_terms
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.matching import matching_names
from matcher.core.nodes import NodeView, to_nanos
from matcher.core.quantity import format_quantity
from matcher.core.resources import parsed_requests, resolve_resources

#: Near misses kept per node by :func:`node_reports`.
DEFAULT_NEAR = 3


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a profile asks of a node (under one matcher config)."""

    terms: tuple[LabelTerm, ...]
    requests: Mapping[str, Fraction]

    @property
    def key(self) -> Hashable:
        """Equal for profiles that ask for the same thing (they share every answer)."""
        return (self.terms, frozenset(to_nanos(self.requests).items()))

    def shown_requests(self) -> dict[str, str]:
        return {name: format_quantity(value) for name, value in self.requests.items()}

    def describe(self) -> str:
        labels = [short_term(t) for t in self.terms]
        requests = [f"{n} {v}" for n, v in self.shown_requests().items()]
        return ", ".join([*labels, *requests]) or "nothing (any node)"


def requirements(profile: Profile, config: MatcherConfig) -> Requirements:
    spec = profile.spec
    return Requirements(label_terms(spec, config), parsed_requests(resolve_resources(spec, config)))


def short_key(key: str) -> str:
    """``feature.node.kubernetes.io/aim-accelerator.MI300X`` -> ``MI300X`` (tables)."""
    return key.removeprefix(LABEL_PREFIX)


def short_term(term: LabelTerm) -> str:
    return f"{short_key(term.key)} label" if term.exists else f"no {short_key(term.key)} label"


@dataclass(frozen=True, slots=True)
class Miss:
    """One thing a node lacks.

    ``kind``: ``label`` (the node lacks a label the profile requires), ``unwanted-label`` (it
    carries one the profile rules out), ``resource`` (its allocatable is short), ``cordoned``,
    ``not-ready``.
    """

    kind: str
    key: str = ""
    """The label key or resource name."""
    need: Fraction = Fraction(0)
    """For a resource: the request, and the node's allocatable."""
    have: Fraction = Fraction(0)

    def text(self) -> str:
        if self.kind == "label":
            return f"no {short_key(self.key)} label"
        if self.kind == "unwanted-label":
            return f"has {short_key(self.key)} label"
        if self.kind == "resource":
            return f"{self.key} {format_quantity(self.have)} (needs {format_quantity(self.need)})"
        return "cordoned" if self.kind == "cordoned" else "NotReady"

    def to_dict(self) -> dict[str, str]:
        out = {"kind": self.kind, "text": self.text()}
        if self.key:
            out["key"] = self.key
        if self.kind == "resource":
            out["need"] = format_quantity(self.need)
            out["have"] = format_quantity(self.have)
        return out

    @property
    def is_label(self) -> bool:
        return self.kind in ("label", "unwanted-label")


def misses(node: NodeView, req: Requirements, config: MatcherConfig) -> tuple[Miss, ...]:
    """What ``node`` lacks to serve ``req``; empty exactly when the matcher counts it."""
    out = [
        Miss("label" if term.exists else "unwanted-label", term.key)
        for term in req.terms
        if not term.matches(node.labels)
    ]
    for name, need in to_nanos(req.requests).items():
        if need > 0 and node.nanos.get(name, 0) < need:
            have = node.allocatable.get(name, Fraction(0))
            out.append(Miss("resource", name, req.requests[name], have))
    if not node.schedulable and not config.count_unschedulable_nodes:
        out.append(Miss("cordoned"))
    if not node.ready and not config.count_not_ready_nodes:
        out.append(Miss("not-ready"))
    return tuple(out)


def _rank(node: NodeView, found: Sequence[Miss]) -> tuple[int, int, int, float, str]:
    """Nearer first: the right accelerator (a node with the model's label but the wrong
    partitioning is nearer than one with another model), fewer label misses, fewer other
    misses, the smallest relative shortage of resources, then the name."""
    model = sum(1 for m in found if m.kind == "label" and accelerator_id_of(m.key) is not None)
    labels = sum(1 for m in found if m.is_label)
    shortage = sum(
        float((m.need - m.have) / m.need) for m in found if m.kind == "resource" and m.need
    )
    return model, labels, len(found) - labels, shortage, node.name


@dataclass(frozen=True, slots=True)
class NodeFit:
    node: NodeView
    misses: tuple[Miss, ...]

    @property
    def serves(self) -> bool:
        return not self.misses


def nearest_nodes(cluster: ClusterIndex, req: Requirements, config: MatcherConfig) -> list[NodeFit]:
    """Every node with what it lacks, serving nodes first, then the nearest misses."""
    fits = [NodeFit(node, misses(node, req, config)) for node in cluster]
    fits.sort(key=lambda fit: _rank(fit.node, fit.misses))
    return fits


@dataclass(slots=True)
class NodeReport:
    node: NodeView
    serves: list[Profile] = field(default_factory=list)
    """The profiles this node counts for (their ``matchingNodes`` include it)."""
    near: list[tuple[list[Profile], tuple[Miss, ...]]] = field(default_factory=list)
    """The nearest requirements it does not meet, nearest first (at most ``near`` of them),
    each with every profile that asks exactly that and what the node lacks for it."""


def node_reports(
    cluster: ClusterIndex,
    profiles: Iterable[Profile],
    config: MatcherConfig,
    near: int = DEFAULT_NEAR,
) -> dict[str, NodeReport]:
    """Per node (by name): what it serves and what it nearly serves.

    Profiles that ask for the same thing are worked out once: a cluster has many more profiles
    than distinct requirements (models x counts x partition modes).
    """
    groups: dict[Hashable, tuple[Requirements, list[Profile]]] = {}
    for profile in sorted(profiles, key=_order):
        req = requirements(profile, config)
        groups.setdefault(req.key, (req, []))[1].append(profile)
    ordered = list(groups.values())  # by their first profile, in check's order
    reports = {node.name: NodeReport(node) for node in cluster}
    # Per node, a heap of its nearest misses with the worst on top: ranks and group numbers
    # negated, so that a nearer miss (or an earlier group) compares greater.
    heaps: dict[str, list[tuple[tuple[int, int, int, float], int, tuple[Miss, ...]]]] = {}
    for number, (req, members) in enumerate(ordered):
        serving = matching_names(cluster, req.terms, req.requests, config)
        for name in serving:
            reports[name].serves.extend(members)
        if near <= 0:
            continue
        pool = cluster.nodes_with_key(req.terms[0].key) if req.terms else list(cluster)
        for node in pool:
            if node.name in serving:
                continue
            lacking = misses(node, req, config)
            model, labels, others, shortage, _ = _rank(node, lacking)
            entry = ((-model, -labels, -others, -shortage), -number, lacking)
            heap = heaps.setdefault(node.name, [])
            if len(heap) < near:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:
                heapq.heapreplace(heap, entry)
    for name, heap in heaps.items():
        heap.sort(key=lambda e: e[:2], reverse=True)
        reports[name].near = [(ordered[-neg][1], lacking) for _, neg, lacking in heap]
    for report in reports.values():
        report.serves.sort(key=_order)
    return reports


def _order(profile: Profile) -> tuple[bool, str, str]:
    """Cluster profiles first, then by namespace and name (``aim-matcher check``'s order)."""
    return (profile.namespace is not None, profile.namespace or "", profile.name)
