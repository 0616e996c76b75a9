"""Which labels to publish, given what the probes saw: the detector's safety rules.

Pure: plain data in, plain data out; no I/O, no clock, no Kubernetes client. The agent keeps a
:class:`State` between cycles and feeds it, with each cycle's probe results, to
:func:`reconcile`. The rules, per probe source (GPU, CPU):

* A source's labels are published **as a whole, from one reading**: never some keys of one
  probe next to some of another. The GPU labels of a node therefore always describe one
  consistent picture: ``MI300X=8`` with ``partitioning-scheme.default=8``, or with
  ``CPX-NPS4=64``, never a mode that is gone next to the one that replaced it.
* A **failed** probe (ProbeError, any exception, timeout) changes nothing of its source: the
  labels it produced last are kept as they are, and its pending change is reset, because
  "N consecutive runs showed it" cannot hold across a run that saw nothing.
* A **successful** probe whose reading only adds keys or raises counts (a GPU appeared, a model
  was added) applies at once: a probe that succeeded has seen the hardware.
* Any other change, a key gone or **a count lower** (a decrease is a removal), waits: the
  source keeps its published labels until ``removal_confirmations`` consecutive successful
  probes (2 by default) have each reported something that is not just growth, and then the
  latest reading replaces them. A GPU that drops off the bus during a reset, a KFD topology
  caught mid-rebuild, or a partition switch in progress therefore does not take labels (and
  the pods that select them) away, and a mode switch shows the old labels, then the new ones,
  never both. A reading equal to the published labels cancels a pending change.

After a restart the agent seeds :class:`State` from what it published earlier (the Node's
labels named by the ownership annotation, or the NFD file), so a failed first probe keeps
them too; pending counts start again from zero, which only ever delays a change.

The second half of the module turns the labels to publish into one Node merge patch that
touches only the detector's own keys (:func:`node_patch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from detector.facts import CPU_SOURCE, GPU_SOURCE
from detector.labels import OWNED_LABELS_ANNOTATION, is_cpu_key, is_gpu_key, is_owned_key

#: Sources in the order they are reported.
SOURCES = (GPU_SOURCE, CPU_SOURCE)

DEFAULT_REMOVAL_CONFIRMATIONS = 2


def source_of(key: str) -> str:
    """The probe source a label key comes from; ValueError for keys the detector does not own."""
    if is_cpu_key(key):
        return CPU_SOURCE
    if is_gpu_key(key):
        return GPU_SOURCE
    raise ValueError(f"{key!r} is not a detector label key")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One source's outcome in one cycle: its labels, or why it could not look."""

    source: str
    labels: Mapping[str, str] | None
    """None when the probe failed."""
    error: str | None = None

    @classmethod
    def ok(cls, source: str, labels: Mapping[str, str]) -> ProbeResult:
        return cls(source, dict(labels))

    @classmethod
    def failed(cls, source: str, error: str) -> ProbeResult:
        return cls(source, None, error or "probe failed")

    @property
    def succeeded(self) -> bool:
        return self.labels is not None


@dataclass(frozen=True, slots=True)
class State:
    """What the agent carries from one cycle to the next."""

    labels: Mapping[str, str] = field(default_factory=dict)
    """The labels the agent stands behind now (published, or to be published), all sources."""
    pending_runs: Mapping[str, int] = field(default_factory=dict)
    """Source -> consecutive successful probes whose reading lowered or removed a label."""

    @classmethod
    def from_published(cls, labels: Mapping[str, str]) -> State:
        """Seed after a restart from what a previous run published (foreign keys dropped)."""
        return cls(labels={k: v for k, v in labels.items() if is_owned_key(k)})


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one cycle: what to publish, and the state to carry on."""

    labels: dict[str, str]
    state: State
    errors: dict[str, str]
    """Source -> error, for each probe that failed this cycle."""
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    pending_removal: dict[str, int] = field(default_factory=dict)
    """Keys kept although the last successful probe(s) saw them gone or lower -> runs so far."""

    @property
    def healthy(self) -> bool:
        return not self.errors


def _count(value: str) -> int | None:
    return int(value) if value.isdecimal() else None


def is_growth(published: Mapping[str, str], reading: Mapping[str, str]) -> bool:
    """True when ``reading`` keeps every published key at the same or a higher count."""
    for key, value in published.items():
        new = reading.get(key)
        if new is None:
            return False
        old_n, new_n = _count(value), _count(new)
        if old_n is None or new_n is None:
            if new != value:
                return False
        elif new_n < old_n:
            return False
    return True


def _shrinking_keys(published: Mapping[str, str], reading: Mapping[str, str]) -> list[str]:
    """The published keys a reading drops or lowers (what a pending change would take away)."""
    return sorted(k for k, v in published.items() if not is_growth({k: v}, reading))


def reconcile(
    state: State,
    results: Iterable[ProbeResult],
    removal_confirmations: int = DEFAULT_REMOVAL_CONFIRMATIONS,
) -> Decision:
    """Apply one cycle's probe results to ``state`` (see the module docstring for the rules).

    Sources without a result this cycle are left exactly as they were. Raises ValueError when
    a probe reports a key that is not the detector's or belongs to another source: that is a
    bug in labeling, not something to publish.
    """
    if removal_confirmations < 1:
        raise ValueError("removal_confirmations must be at least 1")
    by_source = {r.source: r for r in results}
    labels = dict(state.labels)
    pending = dict(state.pending_runs)
    errors: dict[str, str] = {}
    added: list[str] = []
    changed: list[str] = []
    removed: list[str] = []
    pending_keys: dict[str, int] = {}

    for source, result in by_source.items():
        published = {k: v for k, v in state.labels.items() if source_of(k) == source}
        if result.labels is None:
            errors[source] = result.error or "probe failed"
            pending.pop(source, None)
            continue
        reading = dict(result.labels)
        for key in reading:
            if source_of(key) != source:
                raise ValueError(f"the {source} probe reported {key!r}, a {source_of(key)} key")
        if reading == published:
            pending.pop(source, None)
            continue
        if not is_growth(published, reading):
            runs = pending.get(source, 0) + 1
            if runs < removal_confirmations:
                pending[source] = runs
                pending_keys.update(dict.fromkeys(_shrinking_keys(published, reading), runs))
                continue
        pending.pop(source, None)
        for key in published.keys() - reading.keys():
            del labels[key]
            removed.append(key)
        for key, value in reading.items():
            if key not in published:
                added.append(key)
            elif published[key] != value:
                changed.append(key)
            labels[key] = value

    return Decision(
        labels=labels,
        state=State(labels=dict(labels), pending_runs=dict(pending)),
        errors=errors,
        added=tuple(sorted(added)),
        changed=tuple(sorted(changed)),
        removed=tuple(sorted(removed)),
        pending_removal=dict(sorted(pending_keys.items())),
    )


# --- Node patches -------------------------------------------------------------------------


def annotation_keys(annotations: Mapping[str, str] | None) -> list[str]:
    """The keys the ownership annotation lists (only keys the detector may own; order kept)."""
    raw = (annotations or {}).get(OWNED_LABELS_ANNOTATION) or ""
    return [k for k in (part.strip() for part in raw.split(",")) if k and is_owned_key(k)]


def annotation_value(keys: Iterable[str]) -> str:
    """The ownership annotation's value: the keys, sorted, comma-separated."""
    return ",".join(sorted(set(keys)))


def published_labels(
    labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None
) -> dict[str, str]:
    """The labels a previous run of the detector wrote on a Node and that are still there.

    Only keys named by the ownership annotation count: a key with our prefix that the
    annotation does not list was put there by someone else (a person, or NFD after a switch of
    modes), and the detector does not delete what it did not write.
    """
    labels = labels or {}
    return {k: labels[k] for k in annotation_keys(annotations) if k in labels}


def node_patch(
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
    desired: Mapping[str, str],
    *,
    mark: bool | None = True,
) -> dict[str, dict[str, dict[str, str | None]]] | None:
    """The JSON merge patch (RFC 7386) taking a Node from its current metadata to ``desired``.

    ``labels``/``annotations`` are the Node's current metadata. The patch names only the
    detector's keys: it sets every desired label whose value differs, sets to null (deletes)
    every label the ownership annotation lists that is no longer desired, and rewrites the
    annotation. With ``mark`` (every publish) the annotation stays even when nothing is owned,
    with an empty value: the detector's mark that it ran on this Node and found nothing, which
    the matcher reports (a Node without it has never seen the detector). Without ``mark`` (the
    uninstall cleanup) an empty annotation is deleted. With ``mark=None`` (a cycle in which a
    probe failed) an empty annotation is left as it is, present or absent. Keys of anybody
    else never appear in the patch, and a merge patch leaves unnamed keys alone, so other
    writers' labels are safe without optimistic locking. Returns None when the Node already
    matches: no write is needed.
    """
    labels = labels or {}
    annotations = annotations or {}
    for key in desired:
        if not is_owned_key(key):
            raise ValueError(f"refusing to write {key!r}: not a detector label key")
    label_changes: dict[str, str | None] = {
        k: v for k, v in sorted(desired.items()) if labels.get(k) != v
    }
    for key in sorted(set(annotation_keys(annotations)) - desired.keys()):
        if key in labels:
            label_changes[key] = None
    owned = annotation_value(desired)
    if owned or mark:
        wanted_annotation: str | None = owned
    elif mark is None:
        wanted_annotation = annotations.get(OWNED_LABELS_ANNOTATION)
    else:
        wanted_annotation = None
    patch: dict[str, dict[str, dict[str, str | None]]] = {}
    if label_changes:
        patch.setdefault("metadata", {})["labels"] = label_changes
    if annotations.get(OWNED_LABELS_ANNOTATION) != wanted_annotation:
        patch.setdefault("metadata", {})["annotations"] = {
            OWNED_LABELS_ANNOTATION: wanted_annotation
        }
    return patch or None
