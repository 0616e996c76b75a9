"""``aim-matcher check`` / ``select``: the matching core over YAML files, no cluster needed.

Inputs are read the way kubectl writes and reads them: nodes from ``kubectl get nodes -o yaml``
(a v1 List), a multi-document file of Nodes or a single Node; profiles from multi-document
YAML files or directories of them. Each bad document costs one line on stderr naming the file,
the document and the field, and only that document: everything else is still evaluated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from matcher.api.models import GROUP, Phase, Profile, ProfileError, ProfileStatus, parse_profile
from matcher.core.cluster import ClusterIndex
from matcher.core.config import ConfigError, MatcherConfig
from matcher.core.evaluate import evaluate
from matcher.core.nodes import NodeError, node_view
from matcher.core.selection import Selection, select

EXIT_OK = 0
EXIT_NOT_AVAILABLE = 1
EXIT_INVALID = 2


class InputError(Exception):
    """An input that cannot be used at all (unreadable file, bad config)."""


@dataclass
class Inputs:
    cluster: ClusterIndex
    config: MatcherConfig
    profiles: list[tuple[Profile, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Doc:
    where: str
    """``path: document N`` for messages."""
    obj: Any


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    return [path]


def _documents(path: Path, errors: list[str]) -> Iterator[Doc]:
    """Every object in a YAML file, with v1 Lists expanded into their items."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path}: cannot read: {exc}")
        return
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(f"{path}:{line}: invalid YAML: {problem}")
        return
    for number, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        where = f"{path}: document {number}" if len(docs) > 1 else str(path)
        if isinstance(doc, Mapping) and str(doc.get("kind", "")).endswith("List"):
            items = doc.get("items") or []
            if not isinstance(items, list):
                errors.append(f"{where}: items: expected a list")
                continue
            for index, item in enumerate(items):
                yield Doc(f"{where}: items[{index}]", item)
        else:
            yield Doc(where, doc)


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        meta = obj.get("metadata")
        if isinstance(meta, Mapping) and meta.get("name"):
            return f" ({str(obj.get('kind', '')).lower()}/{meta['name']})"
    return ""


def load_nodes(paths: Sequence[Path], errors: list[str]) -> ClusterIndex:
    cluster = ClusterIndex()
    for path in paths:
        for file in _yaml_files(path):
            for doc in _documents(file, errors):
                obj = doc.obj
                if not isinstance(obj, Mapping) or obj.get("kind") != "Node":
                    kind = obj.get("kind") if isinstance(obj, Mapping) else type(obj).__name__
                    errors.append(f"{doc.where}: kind: expected Node, got {kind!r}")
                    continue
                try:
                    view = node_view(obj)
                except NodeError as exc:
                    errors.append(f"{doc.where}{_describe(obj)}: {exc}")
                    continue
                if view.name in cluster:
                    errors.append(f"{doc.where}: node {view.name} appears twice; the last one wins")
                cluster.upsert(view)
    return cluster


def load_profiles(
    paths: Sequence[Path], errors: list[str], notes: list[str]
) -> list[tuple[Profile, dict[str, Any]]]:
    profiles: list[tuple[Profile, dict[str, Any]]] = []
    seen: dict[tuple[str, str | None, str], str] = {}
    for path in paths:
        for file in _yaml_files(path):
            for doc in _documents(file, errors):
                obj = doc.obj
                api_version = obj.get("apiVersion") if isinstance(obj, Mapping) else None
                if isinstance(api_version, str) and not api_version.startswith(GROUP + "/"):
                    notes.append(f"{doc.where}: skipped {obj.get('kind')} (not an AIM profile)")
                    continue
                try:
                    profile = parse_profile(obj)
                except ProfileError as exc:
                    errors.append(f"{doc.where}{_describe(obj)}: {exc}")
                    continue
                key = (profile.kind, profile.namespace, profile.name)
                if key in seen:
                    errors.append(
                        f"{doc.where}: {profile.ref} already defined at {seen[key]}; the last one "
                        "wins"
                    )
                    profiles = [(p, o) for p, o in profiles if (p.kind, p.namespace, p.name) != key]
                seen[key] = doc.where
                profiles.append((profile, dict(obj)))
    return profiles


def load_config(path: Path | None) -> MatcherConfig:
    if path is None:
        return MatcherConfig()
    errors: list[str] = []
    docs = list(_documents(path, errors))
    if errors:
        raise InputError(errors[0])
    configmaps = [
        d for d in docs if isinstance(d.obj, Mapping) and d.obj.get("kind") == "ConfigMap"
    ]
    if len(configmaps) != 1:
        raise InputError(f"{path}: expected exactly one ConfigMap, found {len(configmaps)}")
    data = configmaps[0].obj.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise InputError(f"{configmaps[0].where}: data: expected a mapping")
    try:
        return MatcherConfig.from_configmap_data(data)
    except ConfigError as exc:
        raise InputError(f"{configmaps[0].where}: {exc}") from None


def load_inputs(args: argparse.Namespace, notes: list[str]) -> Inputs:
    errors: list[str] = []
    config = load_config(Path(args.config) if args.config else None)
    cluster = load_nodes([Path(p) for p in args.nodes], errors)
    profiles = load_profiles([Path(p) for p in args.profiles], errors, notes)
    return Inputs(cluster=cluster, config=config, profiles=profiles, errors=errors)


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


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.write("   ".join([*cells, row[-1]]).rstrip() + "\n")


def print_statuses(results: list[tuple[Profile, dict[str, Any]]], fmt: str, out: TextIO) -> None:
    if fmt in ("yaml", "json"):
        listing = {"apiVersion": "v1", "kind": "List", "items": [obj for _, obj in results]}
        if fmt == "json":
            out.write(json.dumps(listing, indent=2, sort_keys=False) + "\n")
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
    _table(rows, out)


def _report(messages: list[str], prefix: str) -> None:
    for message in messages:
        print(f"{prefix}{message}", file=sys.stderr)


def _load_and_evaluate(
    args: argparse.Namespace,
) -> tuple[Inputs, list[tuple[Profile, dict[str, Any]]]] | None:
    """Both commands' first half: read the files, report what was wrong, evaluate the rest.

    None when the inputs cannot be read at all (the error is already printed).
    """
    notes: list[str] = []
    try:
        inputs = load_inputs(args, notes)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    _report(notes, "note: ")
    _report(inputs.errors, "error: ")
    return inputs, evaluate_all(inputs, datetime.now(UTC))


def check_command(args: argparse.Namespace) -> int:
    loaded = _load_and_evaluate(args)
    if loaded is None:
        return EXIT_INVALID
    inputs, results = loaded
    print_statuses(results, args.output, sys.stdout)
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
    inputs, results = loaded
    selection = select(
        [p for p, _ in results],
        args.aim_id,
        namespace=args.namespace,
        metric=args.metric,
        precision=args.precision,
        include_non_primary=args.include_non_primary,
        accelerator_preference=inputs.config.accelerator_preference,
    )
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
        sys.stdout.write(text)
    elif args.output == "wide":
        print_ranking(selection, sys.stdout)
    else:
        if selection.chosen is not None:
            print(f"chosen: {selection.chosen.ref} ({selection.reason})")
        else:
            print(f"chosen: none ({selection.reason})")
        for profile, why in selection.rejected:
            print(f"  not chosen: {profile.ref}: {why}")
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
        _table(rows, out)
    out.write("ranking: " + " > ".join(t.name for t in selection.tiers) + "\n")
