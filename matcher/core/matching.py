"""Which nodes satisfy a (label terms, requests) pair, and what came nearest when none does.

A node matches when it satisfies every label term (the accelerator model key ``Exists``, any
value: the value is informational; then the partition term, see ``affinity.py``) and its
allocatable covers every request. Cordoned and NotReady nodes that would match are counted
apart, so the message can say how many were left out and why; ``MatcherConfig`` can count them.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from matcher.core.affinity import LabelTerm, scheme_of
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.nodes import NodeView, to_nanos
from matcher.core.resources import is_extended_resource


@dataclass(frozen=True, slots=True)
class Shortfall:
    """The candidate that came nearest to fitting, and the requests it cannot cover."""

    node: str
    missing: tuple[str, ...]
    allocatable: Mapping[str, Fraction]


@dataclass(frozen=True, slots=True)
class MatchResult:
    terms: tuple[LabelTerm, ...]
    candidates: int
    """Nodes with the model label key (all nodes when there is none)."""
    matching: int
    fitting_cordoned: int = 0
    """Nodes that fit but are cordoned and not counted (NotReady as well counts in both)."""
    fitting_not_ready: int = 0
    fitting_left_out: int = 0
    nearest: Shortfall | None = None
    """Set when no candidate fits."""
    excluded: int = 0
    """Candidates the other label terms (the partition term) rule out."""
    excluded_schemes: tuple[str, ...] = ()
    """The partitioning schemes those excluded nodes carry (sorted names; ``default`` too)."""

    @property
    def label_key(self) -> str | None:
        """The model label key, or None without a label requirement."""
        return self.terms[0].key if self.terms else None


def missing_resources(node: NodeView, requests: Mapping[str, int]) -> tuple[str, ...]:
    """Requested resources (in nano-units) the node's allocatable does not cover."""
    have = node.nanos
    return tuple(name for name, need in requests.items() if need > have.get(name, 0))


def _pool(
    cluster: ClusterIndex, label_key: str | None, requests: Mapping[str, int]
) -> tuple[Hashable, Collection[NodeView]]:
    """The nodes to consider, and a memo id for that set."""
    if label_key is not None:
        return ("key", label_key), cluster.nodes_with_key(label_key)
    # No label to narrow by: a node lacking an extended resource cannot fit, so start from the
    # smallest set of nodes that have one of them.
    pools = [
        (("resource", name), cluster.nodes_with_resource(name))
        for name, need in sorted(requests.items())
        if need > 0 and is_extended_resource(name)
    ]
    if pools:
        return min(pools, key=lambda pool: len(pool[1]))
    return ("all",), list(cluster)


def _shortage(node: NodeView, requests: Mapping[str, int], missing: tuple[str, ...]) -> float:
    # Only ranks near misses for the message; a float is deterministic and precise enough.
    return sum((requests[name] - node.nanos.get(name, 0)) / requests[name] for name in missing)


def match_nodes(
    cluster: ClusterIndex,
    terms: tuple[LabelTerm, ...],
    requests: Mapping[str, Fraction],
    config: MatcherConfig,
) -> MatchResult:
    """Memoised on the index: profiles sharing terms and requests share the work.

    ``terms`` come from ``affinity.label_terms``: the first is the model key (``Exists``).
    """
    nanos = to_nanos(requests)
    memo_key = ("match", terms, frozenset(nanos.items()), config)
    return cluster.memo(memo_key, lambda: _match(cluster, terms, nanos, config))


def matching_names(
    cluster: ClusterIndex,
    terms: tuple[LabelTerm, ...],
    requests: Mapping[str, Fraction],
    config: MatcherConfig,
) -> frozenset[str]:
    """The nodes ``match_nodes`` counts in ``matching``, by name (the same sets, memoised)."""
    nanos = to_nanos(requests)

    def compute() -> frozenset[str]:
        fitting = _fitting(cluster, terms, nanos)
        return fitting.fits & _counted_names(cluster, fitting, config)

    return cluster.memo(("matching-names", terms, frozenset(nanos.items()), config), compute)


@dataclass(frozen=True, slots=True)
class _Fitting:
    pool_id: Hashable
    pool: Collection[NodeView]
    names: frozenset[str]
    """The pool, by name."""
    passing: frozenset[str]
    """Those that also satisfy the other label terms (the partition term)."""
    fits: frozenset[str]
    """Those that also cover every request."""


def _fitting(
    cluster: ClusterIndex, terms: tuple[LabelTerm, ...], requests: Mapping[str, int]
) -> _Fitting:
    label_key = terms[0].key if terms else None
    pool_id, pool = _pool(cluster, label_key, requests)
    # Set algebra over memoised per-(pool, resource, amount) sets: profiles mostly differ in
    # how they combine a few common amounts (1/2/4/8 GPUs, 32Gi...), so each set is computed
    # once and shared (also between profiles that differ only in their partition term);
    # intersections run in C.
    names: frozenset[str] = cluster.memo(
        ("names", pool_id), lambda: frozenset(n.name for n in pool)
    )
    passing = names
    extra = terms[1:]
    if extra:
        passing = cluster.memo(("terms", pool_id, extra), lambda: _passing(cluster, names, extra))
    fits = passing
    for name, need in sorted(requests.items()):
        if need > 0 and fits:
            fits &= _covering(cluster, pool_id, pool, name, need)
    return _Fitting(pool_id, pool, names, passing, fits)


def _counted_names(
    cluster: ClusterIndex, fitting: _Fitting, config: MatcherConfig
) -> frozenset[str]:
    pool = fitting.pool
    return cluster.memo(("counted", fitting.pool_id, config), lambda: _counted(pool, config))


def _match(
    cluster: ClusterIndex,
    terms: tuple[LabelTerm, ...],
    requests: Mapping[str, int],
    config: MatcherConfig,
) -> MatchResult:
    fitting = _fitting(cluster, terms, requests)
    pool_id, pool, names, fits = fitting.pool_id, fitting.pool, fitting.names, fitting.fits
    excluded = len(names) - len(fitting.passing)
    schemes: tuple[str, ...] = ()
    if excluded:
        lost = names - fitting.passing
        schemes = cluster.memo(
            ("schemes", pool_id, terms[1:]), lambda: _schemes(n for n in pool if n.name in lost)
        )
    counted = _counted_names(cluster, fitting, config)
    left_out = fits - counted
    cordoned = not_ready = 0
    if left_out:
        cordoned_names, not_ready_names = cluster.memo(
            ("unavailable", pool_id), lambda: _unavailable(pool)
        )
        if not config.count_unschedulable_nodes:
            cordoned = len(left_out & cordoned_names)
        if not config.count_not_ready_nodes:
            not_ready = len(left_out & not_ready_names)
    matching = len(fits) - len(left_out)
    nearest = None
    if not fits:
        eligible = fitting.passing
        nearest = _nearest([n for n in pool if n.name in eligible], requests)
    return MatchResult(
        terms=terms,
        candidates=len(pool),
        matching=matching,
        fitting_cordoned=cordoned,
        fitting_not_ready=not_ready,
        fitting_left_out=len(left_out),
        nearest=nearest,
        excluded=excluded,
        excluded_schemes=schemes,
    )


def _passing(
    cluster: ClusterIndex, names: frozenset[str], terms: tuple[LabelTerm, ...]
) -> frozenset[str]:
    """``names`` narrowed by label terms, through the index's per-key node sets."""
    for term in terms:
        with_key = _names_with_key(cluster, term.key)
        names = names & with_key if term.exists else names - with_key
    return names


def _names_with_key(cluster: ClusterIndex, key: str) -> frozenset[str]:
    def compute() -> frozenset[str]:
        return frozenset(n.name for n in cluster.nodes_with_key(key))

    return cluster.memo(("key-names", key), compute)


def _schemes(nodes: Iterable[NodeView]) -> tuple[str, ...]:
    """The partitioning schemes ``nodes`` carry (sorted names, ``default`` included)."""
    return tuple(sorted({s for n in nodes for k in n.labels if (s := scheme_of(k)) is not None}))


def _covering(
    cluster: ClusterIndex, pool_id: Hashable, pool: Collection[NodeView], name: str, need: int
) -> frozenset[str]:
    def compute() -> frozenset[str]:
        return frozenset(n.name for n in pool if n.nanos.get(name, 0) >= need)

    return cluster.memo(("covers", pool_id, name, need), compute)


def _counted(pool: Collection[NodeView], config: MatcherConfig) -> frozenset[str]:
    return frozenset(
        n.name
        for n in pool
        if (n.schedulable or config.count_unschedulable_nodes)
        and (n.ready or config.count_not_ready_nodes)
    )


def _unavailable(pool: Collection[NodeView]) -> tuple[frozenset[str], frozenset[str]]:
    """Names of the cordoned nodes and of the NotReady nodes of a pool."""
    return (
        frozenset(n.name for n in pool if not n.schedulable),
        frozenset(n.name for n in pool if not n.ready),
    )


def _nearest(pool: Collection[NodeView], requests: Mapping[str, int]) -> Shortfall | None:
    """The node missing the fewest requests, then by the smallest relative shortage, then name."""
    best: tuple[int, float, str] | None = None
    best_node: NodeView | None = None
    best_missing: tuple[str, ...] = ()
    for node in pool:
        missing = missing_resources(node, requests)
        score = (len(missing), _shortage(node, requests, missing), node.name)
        if best is None or score < best:
            best, best_node, best_missing = score, node, missing
    if best_node is None:
        return None
    return Shortfall(best_node.name, best_missing, best_node.allocatable)
