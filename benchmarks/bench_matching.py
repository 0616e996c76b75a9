"""The matcher core's indexed evaluation against a fair O(profiles x nodes) baseline.

Run: ``.venv/bin/python -m benchmarks.bench_matching`` (100 profiles x 1,000 nodes and
1,000 x 5,000: 40 s of CPU, 1.5 minutes on 2 busy cores); ``--full`` adds 5,000 x 20,000
(``--only-full`` runs it alone: 5 minutes of CPU, 11 on 2 busy cores).

Inputs are ``benchmarks/realistic.py``'s nodes (GPU nodes of 10-14 KB: NFD, device plugin and
detector labels, images, conditions, managedFields) and profiles (16 models over 8 GPU models,
EPYC, partitioned MI300X and one model no node has). Each node is converted to the matcher's
``NodeView`` once; that conversion is the same input to every column, so it is timed apart and
counted in none of them.

Every column runs the same ``evaluate()`` per profile (status, message, affinity, resources);
only how it finds the matching nodes differs:

- **baseline**: what a user writes instead of an index, and what the upstream AIM Engine
  operator does: for each profile one pass over every node, checking the label terms,
  allocatable against the requests, cordon and readiness, counting as it goes (and keeping the
  nearest miss for the message). Nothing is shared between profiles.
- **baseline + memo**: the same pass, done once per distinct (label terms, requests): profiles
  of one accelerator and size share it, as ``ClusterIndex.memo`` shares results.
- **indexed, no memo**: the shipped ``match_nodes`` over the label-key index with its memo
  switched off: each profile intersects the per-key node sets itself.
- **indexed**: the shipped code (``ClusterIndex`` + ``match_nodes``), its index built afresh
  for every sample (so no sample reuses another's memo); ``+ build`` adds the index build.
- **status only**: ``evaluate()`` with every match result precomputed: the cost no matching
  strategy can remove (the floor under all four).

The statuses of every column are compared with the indexed ones, so no speed-up can come from
doing less. Each figure is the median of N samples (N printed) of the thread's CPU time, with
its ratio to the baseline of the same run (the wall time beside it); the columns take turns
sample by sample, and the load average is printed with each size, since the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, TypeVar

import matcher.core.evaluate as evaluate_module
from benchmarks.realistic import realistic_nodes, realistic_profiles
from matcher.api.models import Profile, ProfileStatus, parse_profile
from matcher.core.affinity import LabelTerm, scheme_of
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.matching import MatchResult, Shortfall, match_nodes, missing_resources
from matcher.core.nodes import NodeView, node_view, to_nanos
from matcher.core.resources import is_extended_resource

T = TypeVar("T")
SEED = 20261127
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
#: (profiles, nodes, samples of the fast columns, samples of the baseline)
SIZES = [(100, 1_000, 15, 9), (1_000, 5_000, 7, 5)]
FULL_SIZES = [(5_000, 20_000, 3, 3)]

MatchFn = Callable[
    [ClusterIndex, tuple[LabelTerm, ...], Mapping[str, Fraction], MatcherConfig], MatchResult
]
#: One timed sample: CPU seconds, wall seconds, and the statuses it computed.
Run = Callable[[], tuple[float, float, list[ProfileStatus]]]


def clock() -> tuple[float, float]:
    """This thread's CPU time and the wall clock. CPU time is the figure compared: on a machine
    shared with other work it moves far less than wall time (each column is one thread)."""
    return time.thread_time(), time.perf_counter()


def since(start: tuple[float, float]) -> tuple[float, float]:
    cpu, wall = clock()
    return cpu - start[0], wall - start[1]


# --- the fair baseline -------------------------------------------------------------------------


def single_pass(
    nodes: Sequence[NodeView],
    terms: tuple[LabelTerm, ...],
    requests: Mapping[str, Fraction],
    config: MatcherConfig,
) -> MatchResult:
    """One profile's match in one pass over every node: the same answer as ``match_nodes``."""
    nanos = to_nanos(requests)
    needs = [(name, need) for name, need in nanos.items() if need > 0]
    key = terms[0].key if terms else None
    extra = terms[1:]
    pool_resource = None
    if key is None:
        # No label to narrow by: like match_nodes, only nodes that have the scarcest requested
        # extended resource are candidates (a first pass counts them; rare: no realistic
        # profile has an extended request without a model).
        extended = sorted(name for name, _ in needs if is_extended_resource(name))
        if extended:
            counts = dict.fromkeys(extended, 0)
            for node in nodes:
                for name in extended:
                    if node.nanos.get(name, 0) > 0:
                        counts[name] += 1
            pool_resource = min(extended, key=lambda name: counts[name])
    # The label filter as a comprehension (the fastest pure-Python scan), then the rest of
    # the checks on the nodes that pass it, without generator calls in the inner loop.
    if key is not None:
        pool = [node for node in nodes if key in node.labels]
    elif pool_resource is not None:
        pool = [node for node in nodes if node.nanos.get(pool_resource, 0) > 0]
    else:
        pool = list(nodes)
    checks = [(term.key, term.exists) for term in extra]
    count_cordoned = config.count_unschedulable_nodes
    count_not_ready = config.count_not_ready_nodes
    matching = cordoned = not_ready = left_out = excluded = 0
    schemes: set[str] = set()
    best: tuple[int, float, str] | None = None
    best_node: NodeView | None = None
    best_missing: tuple[str, ...] = ()
    for node in pool:
        labels = node.labels
        passed = True
        for label_key, exists in checks:
            if (label_key in labels) is not exists:
                passed = False
                break
        if not passed:
            excluded += 1
            schemes.update(s for k in labels if (s := scheme_of(k)) is not None)
            continue
        have = node.nanos
        for name, need in needs:
            if need > have.get(name, 0):
                if not (matching or left_out):  # nothing fits yet: keep the nearest miss
                    missing = missing_resources(node, nanos)
                    shortage = sum((nanos[n] - have.get(n, 0)) / nanos[n] for n in missing)
                    score = (len(missing), shortage, node.name)
                    if best is None or score < best:
                        best, best_node, best_missing = score, node, missing
                break
        else:
            if (node.schedulable or count_cordoned) and (node.ready or count_not_ready):
                matching += 1
                continue
            left_out += 1
            if not count_cordoned and not node.schedulable:
                cordoned += 1
            if not count_not_ready and not node.ready:
                not_ready += 1
    candidates = len(pool)
    fits = matching + left_out
    nearest = None
    if not fits and best_node is not None:
        nearest = Shortfall(best_node.name, best_missing, best_node.allocatable)
    return MatchResult(
        terms=terms,
        candidates=candidates,
        matching=matching,
        fitting_cordoned=cordoned,
        fitting_not_ready=not_ready,
        fitting_left_out=left_out,
        nearest=nearest,
        excluded=excluded,
        excluded_schemes=tuple(sorted(schemes)),
    )


def baseline(nodes: Sequence[NodeView], memo: bool) -> MatchFn:
    shared: dict[Hashable, MatchResult] = {}

    def match(
        _cluster: ClusterIndex,
        terms: tuple[LabelTerm, ...],
        requests: Mapping[str, Fraction],
        config: MatcherConfig,
    ) -> MatchResult:
        if not memo:
            return single_pass(nodes, terms, requests, config)
        key = (terms, frozenset(to_nanos(requests).items()), config)
        if key not in shared:
            shared[key] = single_pass(nodes, terms, requests, config)
        return shared[key]

    return match


class NoMemoIndex(ClusterIndex):
    """The label-key index with its shared-result memo switched off."""

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        return compute()


@contextlib.contextmanager
def matching_by(match: MatchFn) -> Iterator[None]:
    """``evaluate()`` with its matching step replaced; the rest of it runs unchanged."""
    namespace = vars(evaluate_module)
    saved = namespace["match_nodes"]
    namespace["match_nodes"] = match
    try:
        yield
    finally:
        namespace["match_nodes"] = saved


# --- running -----------------------------------------------------------------------------------


def evaluate_all(
    profiles: list[Profile], cluster: ClusterIndex, config: MatcherConfig
) -> list[ProfileStatus]:
    return [evaluate_module.evaluate(p, cluster, config, NOW) for p in profiles]


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def measure(n_profiles: int, n_nodes: int, fast_n: int, slow_n: int) -> None:
    config = MatcherConfig()
    views: list[NodeView] = []
    conversion = 0.0
    for obj in realistic_nodes(n_nodes, seed=SEED):
        t0 = time.perf_counter()
        views.append(node_view(obj))
        conversion += time.perf_counter() - t0
    objs = list(realistic_profiles(n_profiles, seed=SEED))
    t0 = time.perf_counter()
    profiles = [parse_profile(o) for o in objs]
    parse_s = time.perf_counter() - t0
    print(f"\n{n_profiles} profiles x {n_nodes} realistic nodes (seed {SEED}; {load()})")
    print(f"  shared inputs, in no column: node_view conversion {conversion * 1000:.0f} ms "
          f"({conversion / n_nodes * 1e6:.0f} us a node), parse_profile "
          f"{parse_s * 1000:.0f} ms")  # fmt: skip

    def indexed(cls: type[ClusterIndex], with_build: bool) -> Run:
        def run() -> tuple[float, float, list[ProfileStatus]]:
            t0 = clock()
            cluster = cls(views)
            t1 = clock()
            statuses = evaluate_all(profiles, cluster, config)
            return *since(t0 if with_build else t1), statuses

        return run

    def replaced(match_of: Callable[[], MatchFn]) -> Run:
        def run() -> tuple[float, float, list[ProfileStatus]]:
            # The message helpers (the cluster's model inventory for NotAvailable profiles)
            # read a ClusterIndex; built outside the timing, its memo then computes the
            # inventory once per sample, as a user's loop would once per round.
            cluster = ClusterIndex(views)
            match = match_of()
            with matching_by(match):
                t0 = clock()
                statuses = evaluate_all(profiles, cluster, config)
                return *since(t0), statuses

        return run

    def precomputed() -> MatchFn:
        cluster = ClusterIndex(views)
        results: dict[Hashable, MatchResult] = {}

        def match(
            _c: ClusterIndex,
            terms: tuple[LabelTerm, ...],
            requests: Mapping[str, Fraction],
            cfg: MatcherConfig,
        ) -> MatchResult:
            key = (terms, frozenset(to_nanos(requests).items()))
            if key not in results:
                results[key] = match_nodes(cluster, terms, requests, cfg)
            return results[key]

        # Fill the table before timing: one untimed round.
        with matching_by(match):
            evaluate_all(profiles, cluster, config)
        return match

    table = precomputed()
    columns: list[tuple[str, int, Run]] = [
        ("baseline: one pass per profile", slow_n, replaced(lambda: baseline(views, memo=False))),
        ("baseline + memo (same terms, requests)", slow_n, replaced(lambda: baseline(views, True))),
        ("indexed, no memo", fast_n, indexed(NoMemoIndex, with_build=False)),
        ("indexed (shipped)", fast_n, indexed(ClusterIndex, with_build=False)),
        ("indexed (shipped) + index build", fast_n, indexed(ClusterIndex, with_build=True)),
        ("status only (matches precomputed)", fast_n, replaced(lambda: table)),
    ]
    # Round-robin: every round runs each column once (while it still needs samples), so a
    # change in the machine's other load falls on all columns alike.
    times: list[list[float]] = [[] for _ in columns]
    walls: list[list[float]] = [[] for _ in columns]
    outcomes: list[list[dict[str, Any]]] = [[] for _ in columns]
    for round_ in range(max(n for _, n, _ in columns)):
        for i, (_, n, run) in enumerate(columns):
            if round_ < n:
                cpu, wall, statuses = run()
                times[i].append(cpu)
                walls[i].append(wall)
                if not outcomes[i]:
                    outcomes[i] = [s.to_dict() for s in statuses]
    reference = outcomes[3]
    for (label, _, _), outcome in zip(columns, outcomes, strict=True):
        if outcome != reference:
            raise SystemExit(f"{label}: statuses differ from the indexed evaluation's")
    base = statistics.median(times[0])
    print(f"  {'matching by':<40} {'CPU time':>12}  speed-up vs baseline   wall time")
    for (label, n, _), cpu_s, wall_s in zip(columns, times, walls, strict=True):
        median = statistics.median(cpu_s)
        print(f"  {label:<40} {median * 1000:9.1f} ms  {base / median:6.2f}x               "
              f"{statistics.median(wall_s) * 1000:9.1f} ms  (medians of {n})")  # fmt: skip
    ready = sum(1 for s in reference if s["status"] == "Ready")
    distinct = len({(p.spec.accelerator_model, str(p.spec.resources)) for p in profiles})
    print(f"  statuses identical in every column: yes; Ready {ready}, other "
          f"{n_profiles - ready}; ~{distinct} distinct (model, resources) among {n_profiles} "
          f"profiles; {load()}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="also 5,000 profiles x 20,000 nodes")
    p.add_argument("--only-full", action="store_true", help="only 5,000 x 20,000")
    args = p.parse_args(argv)
    sizes = FULL_SIZES if args.only_full else SIZES + (FULL_SIZES if args.full else [])
    print(f"CPython {sys.version.split()[0]}; {os.cpu_count()} CPUs; medians of N samples")
    for size in sizes:
        measure(*size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
