"""The condition messages: what matched, and when nothing did, what came nearest.

Messages only depend on the inputs (sorted, no timestamps), so an unchanged world gives an
identical status and the controller writes nothing. They also avoid what changes with
unrelated churn: no node counts in the NotAvailable message of a label no node has, and only
the few models nearest to the wanted one (``nearest_models``), not the whole inventory. The
one exception is a cluster without any accelerator label (``no_detector_labels``): there the
counts of nodes the detector did and did not run on are the diagnosis, and they change only
when a node joins, leaves or is first reached by the detector, never with a heartbeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from detector.labels import LABEL_PREFIX, OWNED_LABELS_ANNOTATION, accelerator_id_of
from matcher.core.affinity import DEFAULT_SCHEME_KEY, scheme_of
from matcher.core.cluster import ClusterIndex
from matcher.core.matching import MatchResult
from matcher.core.quantity import format_quantity
from matcher.core.resources import is_extended_resource

_MAX_LISTED = 12


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def format_resources(values: Mapping[str, Fraction]) -> str:
    return ", ".join(f"{name}: {format_quantity(v)}" for name, v in values.items())


def _needs(requests: Mapping[str, Fraction]) -> str:
    return f"allocatable {format_resources(requests)}" if requests else "no resource requests"


def _left_out(result: MatchResult) -> str:
    parts = []
    if result.fitting_cordoned:
        parts.append(f"{result.fitting_cordoned} cordoned")
    if result.fitting_not_ready:
        parts.append(f"{result.fitting_not_ready} NotReady")
    return ", ".join(parts)


def _where(result: MatchResult) -> str:
    if not result.terms:
        return "no label requirement"
    return " and ".join(term.describe() for term in result.terms)


def ready_message(result: MatchResult, requests: Mapping[str, Fraction]) -> str:
    nodes = _plural(result.matching, "node")
    if result.terms:
        message = f"{nodes} with {_where(result)} and {_needs(requests)}"
    else:
        message = f"{nodes} with {_needs(requests)}"
    if result.fitting_left_out:
        message += f"; {result.fitting_left_out} more left out: {_left_out(result)}"
    return message


def cpu_only_message(result: MatchResult, requests: Mapping[str, Fraction]) -> str:
    nodes = _plural(result.matching, "node")
    where = f"{nodes} with {_needs(requests)}" if requests else f"{nodes} counted"
    return f"No accelerator requirements: always available ({where})"


def _advertised_hint(cluster: ClusterIndex, missing: tuple[str, ...]) -> str:
    """Name resources nobody advertises: usually a partition naming mix-up (cpx-nps4/cpx_nps4)."""
    absent = [name for name in missing if not cluster.nodes_with_resource(name)]
    if not absent:
        return ""
    extended = cluster.memo(
        ("extended-resources",),
        lambda: sorted(
            {name for node in cluster for name in node.allocatable if is_extended_resource(name)}
        ),
    )
    listed = ", ".join(extended[:_MAX_LISTED]) or "none"
    return f"; no node advertises {', '.join(absent)} (extended resources in the cluster: {listed})"


def accelerator_inventory(cluster: ClusterIndex) -> str:
    """``EPYC_ZEN4, MI300X``: the accelerator labels the cluster has.

    Names only, no node counts: this text lands in the status of every profile whose label no
    node has, and counts would rewrite all of those statuses whenever any node joined, left or
    was relabelled. The set of names changes only when a model appears or disappears.
    """

    def compute() -> str:
        listed = sorted(
            accel
            for key in cluster.label_keys()
            if (accel := accelerator_id_of(key)) is not None and cluster.nodes_with_key(key)
        )
        if len(listed) > _MAX_LISTED:
            listed = [*listed[:_MAX_LISTED], f"and {len(listed) - _MAX_LISTED} more"]
        return ", ".join(listed)

    return cluster.memo(("inventory",), compute)


#: Models named in a NotAvailable message for a label no node has.
NEAREST_MODELS = 3


def _family(accelerator: str) -> tuple[str, int | None]:
    """``MI300X`` -> ("MI", 300), ``EPYC_ZEN5`` -> ("EPYC_ZEN", 5): kind prefix and number."""
    text = accelerator.upper()
    digits = next((i for i, ch in enumerate(text) if ch.isdigit()), len(text))
    end = digits
    while end < len(text) and text[end].isdigit():
        end += 1
    return text[:digits], int(text[digits:end]) if end > digits else None


def nearest_models(cluster: ClusterIndex, label_key: str, limit: int = NEAREST_MODELS) -> list[str]:
    """The accelerator models the cluster has that are nearest to the one ``label_key`` names.

    Nearest: the same kind first (Instinct ``MI*`` for a GPU, ``EPYC_ZEN*`` for a CPU; other
    kinds only when the cluster has none of it), then the closest number (MI355X for MI400X),
    then the name. A NotAvailable message names at most ``limit`` of them, so a model appearing
    or leaving elsewhere in the cluster rewrites only the statuses it is near to, not every
    NotAvailable status (which naming the whole inventory did: ~116 writes per model toggle).
    """

    def compute() -> list[str]:
        present = sorted(
            accel
            for key in cluster.label_keys()
            if (accel := accelerator_id_of(key)) is not None and cluster.nodes_with_key(key)
        )
        wanted = accelerator_id_of(label_key) or ""
        kind, number = _family(wanted)
        same = [m for m in present if _family(m)[0] == kind]
        pool = same or present

        def distance(model: str) -> tuple[int, str]:
            if not same:  # numbers of another kind say nothing: by name
                return 0, model
            other = _family(model)[1]
            gap = abs(other - number) if other is not None and number is not None else 10**9
            return gap, model

        return sorted(pool, key=distance)[:limit]

    return cluster.memo(("nearest-models", label_key, limit), compute)


_DRY_RUN = "aim-detector --once --dry-run on a node shows what it finds there"


def no_detector_labels(cluster: ClusterIndex) -> str:
    """Why no node has any accelerator label: the detector found nothing where it ran (its
    ownership annotation is there, empty), and where it did not run (no annotation)."""
    total, ran = len(cluster), cluster.detector_ran
    text = f"no node has any {LABEL_PREFIX}* label"
    if total == 0:
        return f"{text}: the cluster has no node"
    text += f": aim-detector ran on {ran} of {_plural(total, 'node')}"
    if ran == total:
        return f"{text} and found no AMD GPU or EPYC CPU there ({_DRY_RUN})"
    if ran == 0:
        # All unmarked is also what the nfd mode looks like: there the detector writes NFD's
        # features.d file and never the Node, so the mark cannot tell it ran.
        return (
            f"{text}: none carries its annotation {OWNED_LABELS_ANNOTATION} (is the aim-detector "
            f"DaemonSet running? in --mode nfd it writes no annotation; {_DRY_RUN})"
        )
    missing = total - ran
    carry, them = ("carries", "it") if missing == 1 else ("carry", "them")
    return (
        f"{text} and found no AMD GPU or EPYC CPU there; {_plural(missing, 'node')} {carry} no "
        f"annotation {OWNED_LABELS_ANNOTATION} (is the aim-detector DaemonSet running on {them}? "
        f"{_DRY_RUN})"
    )


def _case_hint(cluster: ClusterIndex, label_key: str) -> str:
    wanted = label_key.lower()
    for key in sorted(cluster.label_keys()):
        if key.lower() == wanted:
            return f" (did you mean {accelerator_id_of(key)}? label keys are case-sensitive)"
    return ""


def not_available_message(
    result: MatchResult, requests: Mapping[str, Fraction], cluster: ClusterIndex
) -> str:
    if result.fitting_left_out:
        return (
            f"{_plural(result.fitting_left_out, 'node')} with {_where(result)} and "
            f"{_needs(requests)} but all are left out: {_left_out(result)} (set "
            "countUnschedulableNodes / countNotReadyNodes in the matcher config to count them)"
        )
    if result.candidates == 0:
        if result.label_key is None:
            extended = ", ".join(n for n in requests if "/" in n)
            return f"No node has allocatable {extended or format_resources(requests)}"
        models = nearest_models(cluster, result.label_key)
        hint = _case_hint(cluster, result.label_key)
        if not models:
            return f"No node has label {result.label_key}{hint}; {no_detector_labels(cluster)}"
        return (
            f"No node has label {result.label_key}{hint}; nearest accelerator models in the "
            f"cluster: {', '.join(models)}"
        )
    if result.excluded == result.candidates:
        return _partition_message(result)
    nearest = result.nearest
    if nearest is None:  # only possible with a zero-candidate result, handled above
        return f"No node with {_where(result)} matches"
    shown = {name: nearest.allocatable.get(name, Fraction(0)) for name in requests}
    needs = ", ".join(
        f"{name} (needs {format_quantity(requests[name])})" for name in nearest.missing
    )
    return (
        f"{_plural(result.candidates, 'node')} with {_where(result)} but none has enough "
        f"{needs}; nearest is {nearest.node} with allocatable {format_resources(shown)}"
        f"{_advertised_hint(cluster, nearest.missing)}"
    )


def _partition_message(result: MatchResult) -> str:
    """Every node with the model label fails the partition term: say which way and why."""
    term = result.terms[-1]
    model = result.terms[0].key
    nodes = _plural(result.candidates, "node")
    schemes = ", ".join(result.excluded_schemes) or "none"
    if term.exists:
        wanted = (
            "the profile asks for unpartitioned GPUs"
            if term.key == DEFAULT_SCHEME_KEY
            else f"the profile asks for GPUs partitioned as {scheme_of(term.key)}"
        )
        return (
            f"{nodes} with label {model} but none has label {term.key} ({wanted}; "
            f"partitioning schemes on those nodes: {schemes}; set acceleratorPartitioningMode to "
            "the scheme the profile is written for)"
        )
    return (
        f"{nodes} with label {model} but all have label {term.key} (the profile asks for "
        f"partitioned GPUs; partitioning schemes on those nodes: {schemes})"
    )
