"""Which labels to publish, given what the probes saw: the detector's safety rules.

Pure: plain data in, plain data out; no I/O, no clock, no Kubernetes client. The agent keeps a
:class:`State` between cycles and feeds it, with each cycle's probe results, to
:func:`reconcile`. The rules, per probe source (GPU, CPU):

* A **failed** probe (ProbeError, any exception, timeout) changes nothing of its source: the
  labels it produced last are kept as they are, and its pending removals are reset, because
  "N consecutive runs showed it gone" cannot hold across a run that saw nothing.
* A **successful** probe's labels apply at once, new keys and changed values alike: a probe
  that succeeded has seen the hardware, so a changed count is a fact, not a glitch.
* A key of the source that a successful probe no longer reports is removed only after
  ``removal_confirmations`` consecutive successful probes have not reported it (2 by default),
  so that a GPU that drops off the bus for one probe during a reset does not take its label,
  and the pods that select it, with it. Until then it keeps its last value.

After a restart the agent seeds :class:`State` from what it published earlier (the Node's
labels named by the ownership annotation, or the NFD file), so a failed first probe keeps
them too; pending-removal counts start again from zero, which only ever delays a removal.

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
    absent_runs: Mapping[str, int] = field(default_factory=dict)
    """Key -> consecutive successful probes of its source that did not report it."""

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
    """Keys kept although the last successful probe(s) did not report them -> runs so far."""

    @property
    def healthy(self) -> bool:
        return not self.errors


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
    absent = dict(state.absent_runs)
    errors: dict[str, str] = {}
    added: list[str] = []
    changed: list[str] = []
    removed: list[str] = []

    for source, result in by_source.items():
        previous = {k for k in state.labels if source_of(k) == source}
        if result.labels is None:
            errors[source] = result.error or "probe failed"
            for key in previous:
                absent.pop(key, None)
            continue
        for key, value in result.labels.items():
            if source_of(key) != source:
                raise ValueError(f"the {source} probe reported {key!r}, a {source_of(key)} key")
            if key not in labels:
                added.append(key)
            elif labels[key] != value:
                changed.append(key)
            labels[key] = value
            absent.pop(key, None)
        for key in previous - result.labels.keys():
            runs = absent.get(key, 0) + 1
            if runs >= removal_confirmations:
                del labels[key]
                absent.pop(key, None)
                removed.append(key)
            else:
                absent[key] = runs

    return Decision(
        labels=labels,
        state=State(labels=dict(labels), absent_runs=dict(absent)),
        errors=errors,
        added=tuple(sorted(added)),
        changed=tuple(sorted(changed)),
        removed=tuple(sorted(removed)),
        pending_removal=dict(sorted(absent.items())),
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
) -> dict[str, dict[str, dict[str, str | None]]] | None:
    """The JSON merge patch (RFC 7386) taking a Node from its current metadata to ``desired``.

    ``labels``/``annotations`` are the Node's current metadata. The patch names only the
    detector's keys: it sets every desired label whose value differs, sets to null (deletes)
    every label the ownership annotation lists that is no longer desired, and rewrites the
    annotation (null when nothing is owned any more). Keys of anybody else never appear in it,
    and a merge patch leaves unnamed keys alone, so other writers' labels are safe without
    optimistic locking. Returns None when the Node already matches: no write is needed.
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
    wanted_annotation = annotation_value(desired) or None
    patch: dict[str, dict[str, dict[str, str | None]]] = {}
    if label_changes:
        patch.setdefault("metadata", {})["labels"] = label_changes
    if annotations.get(OWNED_LABELS_ANNOTATION) != wanted_annotation:
        patch.setdefault("metadata", {})["annotations"] = {
            OWNED_LABELS_ANNOTATION: wanted_annotation
        }
    return patch or None
