"""``aim-matcher check`` / ``select``: the matching core over YAML or JSON files, no cluster needed.

Inputs are read the way kubectl writes and reads them: nodes from ``kubectl get nodes -o yaml``
or ``-o json`` (a v1 List), a multi-document file of Nodes or a single Node; profiles from
multi-document files or directories of them (``*.yaml``, ``*.yml``, ``*.json``); ``-`` reads
standard input. Files are streamed (``matcher.documents``): a List's items are read one at a
time and only each node's projection is kept, so memory stays at the index plus one node.

Each bad document costs one line on stderr naming the file, the document and the field, and
only that document: everything else is still evaluated. A file that stops parsing contributes
nothing, as if it had never parsed. A node whose kubelet has not reported ``status.allocatable``
yet is a warning and is left out, as the controller leaves it out.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from matcher.api.models import GROUP, Phase, Profile, ProfileError, ProfileStatus, parse_profile
from matcher.core.cluster import ClusterIndex
from matcher.core.config import ConfigError, MatcherConfig
from matcher.core.evaluate import evaluate
from matcher.core.nodes import AllocatableMissing, NodeError, NodeView, node_view
from matcher.core.selection import Selection, select
from matcher.documents import StreamError, read_objects

if TYPE_CHECKING:
    from aimkit.kube import KubeClient

EXIT_OK = 0
EXIT_NOT_AVAILABLE = 1
EXIT_INVALID = 2

#: The path that means standard input.
STDIN = "-"
STDIN_NAME = "<stdin>"
SUFFIXES = (".yaml", ".yml", ".json")


class InputError(Exception):
    """An input that cannot be used at all (unreadable file, bad config)."""


@dataclass
class Inputs:
    cluster: ClusterIndex
    config: MatcherConfig
    profiles: list[tuple[Profile, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Place:
    """Where an object is: its file, document and List item. Named only once the file is read
    to the end, since ``document N`` is said only of files with several documents."""

    file: _File
    document: int
    item: int | None = None

    def __str__(self) -> str:
        where = self.file.name
        if self.file.documents > 1:
            where += f": document {self.document}"
        return where if self.item is None else f"{where}: items[{self.item}]"


class _File:
    """One input being read: its objects in order, and messages about them held until the end."""

    def __init__(self, name: str, path: Path | None) -> None:
        self.name = name
        self.path = path
        self.documents = 0
        self.failed: str | None = None
        """Why reading stopped early, if it did."""
        self._errors: list[tuple[Place, str]] = []
        self._warnings: list[tuple[Place, str]] = []

    def error(self, place: Place, text: str) -> None:
        self._errors.append((place, text))

    def warn(self, place: Place, text: str) -> None:
        self._warnings.append((place, text))

    def objects(self, strict: bool = True) -> Iterator[tuple[Place, Any]]:
        """Every object, with Lists read item by item; an unreadable file sets ``failed``."""
        try:
            with self._open() as stream:
                objects = read_objects(stream, strict)
                for entry in objects:
                    self.documents = objects.documents
                    place = Place(self, entry.document, entry.item)
                    if entry.error is not None:
                        self.error(place, f": {entry.error}")
                    elif entry.obj is not None or entry.item is not None:  # not an empty document
                        yield from self._expand(place, entry.obj)
                self.documents = objects.documents
        except StreamError as exc:
            self.failed = f"{self.name}: {exc}"
        except (OSError, UnicodeDecodeError) as exc:
            self.failed = f"{self.name}: cannot read: {exc}"

    def _expand(self, place: Place, obj: Any) -> Iterator[tuple[Place, Any]]:
        """A List the reader did not stream (one with an anchor or a tag) becomes its items."""
        if not (isinstance(obj, Mapping) and str(obj.get("kind", "")).endswith("List")):
            yield place, obj
            return
        items = obj.get("items") or []
        if not isinstance(items, list):
            self.error(place, ": items: expected a list")
            return
        for index, item in enumerate(items):
            yield Place(self, place.document, index), item

    @contextlib.contextmanager
    def _open(self) -> Iterator[TextIO]:
        if self.path is not None:
            with self.path.open(encoding="utf-8") as stream:
                yield stream
            return
        if sys.stdin is None:
            raise OSError("standard input is closed")
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
        try:
            yield stream
        finally:
            stream.detach()  # leaves stdin open: it is the process's

    def report(self, errors: list[str], warnings: list[str]) -> None:
        """Hand over the messages, now that places can be named; one line if reading failed."""
        if self.failed is not None:
            errors.append(self.failed)
            return
        errors.extend(f"{place}{text}" for place, text in self._errors)
        warnings.extend(f"{place}{text}" for place, text in self._warnings)


def _files(path: Path) -> list[_File]:
    if str(path) == STDIN:
        return [_File(STDIN_NAME, None)]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        return [_File(str(p), p) for p in found]
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    return [_File(str(path), path)]


def _check_stdin_once(paths: Sequence[Path]) -> None:
    if sum(1 for p in paths if str(p) == STDIN) > 1:
        raise InputError("standard input (-) can be given only once")


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        meta = obj.get("metadata")
        if isinstance(meta, Mapping) and meta.get("name"):
            return f" ({str(obj.get('kind', '')).lower()}/{meta['name']})"
    return ""


def load_nodes(paths: Sequence[Path], errors: list[str], warnings: list[str]) -> ClusterIndex:
    """The nodes of every file, streamed into the index one node at a time.

    A file that stops parsing is taken back out (the nodes it added removed, the ones it
    replaced restored), so that it contributes nothing, as before streaming.
    """
    cluster = ClusterIndex()
    for path in paths:
        for file in _files(path):
            before: dict[str, NodeView | None] = {}
            # A node list is the API server's JSON, read by node_view at a few fixed paths: spare
            # it the duplicate-key and depth checks (half its reading time; YAML is checked).
            for place, obj in file.objects(strict=False):
                view = _node(file, place, obj)
                if view is None:
                    continue
                if view.name in cluster:
                    file.error(place, f": node {view.name} appears twice; the last one wins")
                before.setdefault(view.name, cluster.get(view.name))
                cluster.upsert(view)
            if file.failed is not None:
                for name, old in before.items():
                    if old is None:
                        cluster.remove(name)
                    else:
                        cluster.upsert(old)
            file.report(errors, warnings)
    return cluster


def _node(file: _File, place: Place, obj: Any) -> NodeView | None:
    if not isinstance(obj, Mapping) or obj.get("kind") != "Node":
        kind = obj.get("kind") if isinstance(obj, Mapping) else type(obj).__name__
        file.error(place, f": kind: expected Node, got {kind!r}")
        return None
    try:
        return node_view(obj)
    except AllocatableMissing as exc:
        file.warn(place, f"{_describe(obj)}: {exc}; left out until the kubelet reports it")
    except NodeError as exc:
        file.error(place, f"{_describe(obj)}: {exc}")
    return None


def load_profiles(
    paths: Sequence[Path], errors: list[str], notes: list[str]
) -> list[tuple[Profile, dict[str, Any]]]:
    profiles: dict[tuple[str, str | None, str], tuple[Profile, dict[str, Any]]] = {}
    seen: dict[tuple[str, str | None, str], Place] = {}
    for path in paths:
        for file in _files(path):
            # Held until the file is read to its end: a file that stops parsing adds nothing.
            parsed: list[tuple[Place, Profile, dict[str, Any]]] = []
            for place, obj in file.objects():
                api_version = obj.get("apiVersion") if isinstance(obj, Mapping) else None
                if isinstance(api_version, str) and not api_version.startswith(GROUP + "/"):
                    file.warn(place, f": skipped {obj.get('kind')} (not an AIM profile)")
                    continue
                try:
                    parsed.append((place, parse_profile(obj), dict(obj)))
                except ProfileError as exc:
                    file.error(place, f"{_describe(obj)}: {exc}")
            if file.failed is None:
                for place, profile, obj in parsed:
                    key = (profile.kind, profile.namespace, profile.name)
                    if key in seen:
                        file.error(
                            place,
                            f": {profile.ref} already defined at {seen[key]}; the last one wins",
                        )
                        del profiles[key]  # the last one wins, and sorts where it was read
                    seen[key] = place
                    profiles[key] = (profile, obj)
            file.report(errors, notes)
    return list(profiles.values())


def config_from(configmap: Mapping[str, Any], where: object) -> MatcherConfig:
    """The settings in the matcher's ConfigMap (raises InputError naming ``where``)."""
    data = configmap.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise InputError(f"{where}: data: expected a mapping")
    try:
        return MatcherConfig.from_configmap_data(data)
    except ConfigError as exc:
        raise InputError(f"{where}: {exc}") from None


def load_config(path: Path | None) -> MatcherConfig:
    if path is None:
        return MatcherConfig()
    (file,) = _files(path)
    objects = list(file.objects())
    problems: list[str] = []
    file.report(problems, [])
    if problems:
        raise InputError(problems[0])
    configmaps = [
        (place, obj)
        for place, obj in objects
        if isinstance(obj, Mapping) and obj.get("kind") == "ConfigMap"
    ]
    if len(configmaps) != 1:
        raise InputError(f"{path}: expected exactly one ConfigMap, found {len(configmaps)}")
    place, configmap = configmaps[0]
    return config_from(configmap, place)


# --- the live cluster as input (aim-matcher check --kubeconfig, kubectl aim) ---------------------


def index_nodes(objects: Iterable[Any], errors: list[str], warnings: list[str]) -> ClusterIndex:
    """Nodes listed from the API server, one at a time, into the index (as ``load_nodes``)."""
    cluster = ClusterIndex()
    for obj in objects:
        try:
            cluster.upsert(node_view(obj))
        except NodeError as exc:
            name = _name_of(obj)
            text = f"node/{name}: {str(exc).removeprefix(f'node {name}: ')}"
            if isinstance(exc, AllocatableMissing):
                warnings.append(f"{text}; left out until the kubelet reports it")
            else:
                errors.append(text)
    return cluster


def read_profiles(
    objects: Iterable[Mapping[str, Any]], errors: list[str]
) -> list[tuple[Profile, dict[str, Any]]]:
    """Profiles listed from the API server (as ``load_profiles``; the stored status is kept as
    the previous one, as the controller keeps it)."""
    out = []
    for obj in objects:
        try:
            out.append((parse_profile(obj), dict(obj)))
        except ProfileError as exc:
            errors.append(f"{str(obj.get('kind', '')).lower()}/{_name_of(obj)}: {exc}")
    return out


def _name_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return "?"
    name = str(meta.get("name") or "?")
    return f"{meta['namespace']}/{name}" if meta.get("namespace") else name


def from_cluster(args: argparse.Namespace) -> bool:
    """Whether the inputs not given as files come from a cluster (``--kubeconfig``,
    ``--context``; ``kubectl aim`` always)."""
    return bool(
        getattr(args, "kubeconfig", None)
        or getattr(args, "context", None)
        or getattr(args, "live", False)
    )


def live_inputs(
    args: argparse.Namespace, notes: list[str], api: KubeClient | None = None
) -> Inputs:
    """Inputs read from the cluster of ``args`` (``kubeconfig``, ``context``), except those given
    as files (``nodes``, ``profiles``, ``config``). Optional attributes: ``namespace`` (only that
    namespace's AIMProfiles), ``selector`` (a node label selector), ``config_map``,
    ``list_profiles`` (False: none), ``program`` (the User-Agent). Raises InputError."""
    # Imported here: reading files must not load the HTTP client.
    from matcher import live  # noqa: PLC0415

    errors: list[str] = []
    warnings: list[str] = []
    own = api is None
    try:
        if api is None:
            api = live.open_client(
                args.kubeconfig, args.context, getattr(args, "program", "aim-matcher")
            )
        if args.config:
            config = load_config(Path(args.config))
        else:
            ref = getattr(args, "config_map", None) or live.DEFAULT_CONFIG_MAP
            read = live.config_map(api, ref)
            config = MatcherConfig()
            if read.obj is not None:
                config = config_from(read.obj, f"configmap {read.where}")
            else:
                notes.append(f"{read.missing}: the default settings apply")
        if args.nodes:
            cluster = load_nodes([Path(p) for p in args.nodes], errors, warnings)
        else:
            selector = getattr(args, "selector", None)
            cluster = index_nodes(live.nodes(api, selector), errors, warnings)
        profiles: list[tuple[Profile, dict[str, Any]]] = []
        if args.profiles:
            profiles = load_profiles([Path(p) for p in args.profiles], errors, notes)
        elif getattr(args, "list_profiles", True):
            namespace = getattr(args, "namespace", None)
            profiles = read_profiles(live.profiles(api, namespace), errors)
    except live.LiveError as exc:
        raise InputError(str(exc)) from None
    finally:
        if own and api is not None:
            api.close()
    return Inputs(
        cluster=cluster, config=config, profiles=profiles, errors=errors, warnings=warnings
    )


def load_inputs(args: argparse.Namespace, notes: list[str]) -> Inputs:
    nodes, profiles = args.nodes or [], args.profiles or []
    paths = [Path(p) for p in (*nodes, *profiles, *([args.config] if args.config else []))]
    _check_stdin_once(paths)
    if from_cluster(args):
        return live_inputs(args, notes)
    errors: list[str] = []
    warnings: list[str] = []
    config = load_config(Path(args.config) if args.config else None)
    cluster = load_nodes([Path(p) for p in nodes], errors, warnings)
    loaded = load_profiles([Path(p) for p in profiles], errors, notes)
    return Inputs(cluster=cluster, config=config, profiles=loaded, errors=errors, warnings=warnings)


def evaluate_all(inputs: Inputs, now: datetime) -> list[tuple[Profile, dict[str, Any]]]:
    """Each profile with its new status, in a stable order (cluster profiles first)."""
    out = []
    for profile, obj in inputs.profiles:
        status = evaluate(profile, inputs.cluster, inputs.config, now)
        out.append((_with_status(profile, status), {**obj, "status": status.to_dict()}))
    out.sort(
        key=lambda item: (
            item[0].kind != "AIMClusterProfile",
            item[0].namespace or "",
            item[0].name,
        )
    )
    return out


def _with_status(profile: Profile, status: ProfileStatus) -> Profile:
    return replace(profile, status=status)


# --- printing --------------------------------------------------------------------------------


def print_table(rows: list[list[str]], out: TextIO) -> None:
    """Columns padded to their widest cell, three spaces apart (kubectl's layout)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.write("   ".join([*cells, row[-1]]).rstrip() + "\n")


def print_statuses(results: list[tuple[Profile, dict[str, Any]]], fmt: str, out: TextIO) -> None:
    if fmt in ("yaml", "json"):
        listing = {"apiVersion": "v1", "kind": "List", "items": [obj for _, obj in results]}
        if fmt == "json":
            out.write(json.dumps(listing, indent=2, sort_keys=False, default=_json_value) + "\n")
        else:
            out.write(yaml.safe_dump(listing, sort_keys=False))
        return
    if not results:
        out.write("No profiles found.\n")
        return
    kinds = {p.kind for p, _ in results}
    namespaced = any(p.namespace is not None for p, _ in results)
    header = ["NAME", "STATUS", "HARDWARE", "NODES", "REASON", "MESSAGE"]
    if namespaced:
        header.insert(0, "NAMESPACE")
    rows = [header]
    for profile, _ in results:
        status = profile.status or ProfileStatus()
        condition = status.condition("HardwareAvailable")
        name = f"{profile.kind.lower()}/{profile.name}" if len(kinds) > 1 else profile.name
        row = [
            name,
            str(status.status),
            status.hardware_summary or "",
            str(status.matching_nodes if status.matching_nodes is not None else ""),
            condition.reason if condition else "",
            condition.message if condition else "",
        ]
        if namespaced:
            row.insert(0, profile.namespace or "")
        rows.append(row)
    print_table(rows, out)


def _json_value(value: Any) -> Any:
    """What Kubernetes' JSON says for the YAML types JSON lacks (an unquoted timestamp in a
    profile file is a datetime to YAML)."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


def emit(messages: Sequence[tuple[str, list[str]]], write: Callable[[TextIO], None]) -> None:
    """Messages to stderr (each with its prefix), then the output to stdout.

    A reader that went away (``aim-matcher check ... | head -1``) ends the output quietly: the
    exit code still says what the check found, and no traceback follows.
    """
    try:
        for prefix, lines in messages:
            for line in lines:
                print(f"{prefix}{line}", file=sys.stderr)
        write(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit and would complain then: point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _load_and_evaluate(
    args: argparse.Namespace,
) -> tuple[Inputs, list[tuple[Profile, dict[str, Any]]], list[tuple[str, list[str]]]] | None:
    """Both commands' first half: read the files, evaluate what is valid, and say what was not
    (notes, warnings, errors, to print before the output).

    None when the inputs cannot be read at all (the error is already printed).
    """
    notes: list[str] = []
    try:
        inputs = load_inputs(args, notes)
    except InputError as exc:
        emit([("note: ", notes), ("error: ", [str(exc)])], lambda out: None)
        return None
    messages = [("note: ", notes), ("warning: ", inputs.warnings), ("error: ", inputs.errors)]
    return inputs, evaluate_all(inputs, datetime.now(UTC)), messages


def check_command(args: argparse.Namespace) -> int:
    loaded = _load_and_evaluate(args)
    if loaded is None:
        return EXIT_INVALID
    inputs, results, messages = loaded
    emit(messages, lambda out: print_statuses(results, args.output, out))
    if inputs.errors:
        return EXIT_INVALID
    if any(p.status is not None and p.status.status is Phase.NOT_AVAILABLE for p, _ in results):
        return EXIT_NOT_AVAILABLE
    return EXIT_OK


def _ref(profile: Profile) -> dict[str, Any]:
    ref: dict[str, Any] = {"kind": profile.kind, "name": profile.name}
    if profile.namespace is not None:
        ref["namespace"] = profile.namespace
    return ref


def select_command(args: argparse.Namespace) -> int:
    loaded = _load_and_evaluate(args)
    if loaded is None:
        return EXIT_INVALID
    inputs, results, messages = loaded
    selection = select(
        [p for p, _ in results],
        args.aim_id,
        namespace=args.namespace,
        metric=args.metric,
        precision=args.precision,
        include_non_primary=args.include_non_primary,
        accelerator_preference=inputs.config.accelerator_preference,
    )

    def write(out: TextIO) -> None:
        if args.output in ("yaml", "json"):
            doc = {
                "aimId": args.aim_id,
                "chosen": _ref(selection.chosen) if selection.chosen else None,
                "reason": selection.reason,
                "rejected": [{**_ref(p), "reason": why} for p, why in selection.rejected],
                "ranking": [
                    {**_ref(p), "rank": i, **{t.name: t.show(p) for t in selection.tiers[:-1]}}
                    for i, p in enumerate(selection.ranking, start=1)
                ],
            }
            text = (
                json.dumps(doc, indent=2) + "\n"
                if args.output == "json"
                else yaml.safe_dump(doc, sort_keys=False)
            )
            out.write(text)
            return
        if args.output == "wide":
            print_ranking(selection, out)
            return
        if selection.chosen is not None:
            out.write(f"chosen: {selection.chosen.ref} ({selection.reason})\n")
        else:
            out.write(f"chosen: none ({selection.reason})\n")
        for profile, why in selection.rejected:
            out.write(f"  not chosen: {profile.ref}: {why}\n")

    emit(messages, write)
    if inputs.errors:
        return EXIT_INVALID
    return EXIT_OK if selection.chosen is not None else EXIT_NOT_AVAILABLE


def print_ranking(selection: Selection, out: TextIO) -> None:
    """``select -o wide``: every profile with the aim id, ranked candidates first, one column
    per ranking criterion (in the order they apply), then why each was or was not chosen."""
    chosen = f"{selection.chosen.ref}" if selection.chosen else "none"
    out.write(f"chosen: {chosen} ({selection.reason})\n")
    columns = selection.tiers[:-1]  # the last tier (name) is the PROFILE column
    rows = [["RANK", "PROFILE", *(t.name.upper() for t in columns), "RESULT"]]
    why = dict((id(p), reason) for p, reason in selection.rejected)
    for rank, profile in enumerate(selection.ranking, start=1):
        result = "chosen" if profile is selection.chosen else why.get(id(profile), "")
        rows.append([str(rank), profile.ref, *(t.show(profile) for t in columns), result])
    ranked = {id(p) for p in selection.ranking}
    for profile, reason in selection.rejected:
        if id(profile) not in ranked:
            rows.append(["-", profile.ref, *(t.show(profile) for t in columns), reason])
    if len(rows) > 1:
        print_table(rows, out)
    out.write("ranking: " + " > ".join(t.name for t in selection.tiers) + "\n")
