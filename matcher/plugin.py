"""``kubectl aim``: the matcher's answers from the live cluster, read-only (docs/plugin.md).

    kubectl aim nodes  [-l SELECTOR] [--model MODEL] [--serving any|none] [-o wide|json]
    kubectl aim why    PROFILE [-n NAMESPACE] [--nodes N] [-o json]
    kubectl aim check  [-n NAMESPACE | -A] [-f FILE]... [-o yaml|json]

kubectl finds ``kubectl-aim`` on PATH and hands it every argument after ``aim``, so the plugin
parses ``--kubeconfig``, ``--context`` and ``-n`` itself (before or after the command), and
resolves the cluster in the project's one order (``aimkit.kubeconfig``). It lists the nodes,
the profiles and the matcher's ConfigMap once (``matcher.live``), feeds them to the loaders of
``aim-matcher check`` (``matcher.offline``) and evaluates them with the matcher's own core, so
the plugin, ``check`` and the controller cannot disagree. It writes nothing.

Exit codes, as ``aim-matcher check``: 0 every profile asked about is Ready, 1 one is
NotAvailable, 2 bad input or the cluster cannot be read (``nodes``: 0 unless 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from aimkit.build import version_line
from aimkit.kube import KubeClient
from detector.labels import LABEL_PREFIX, accelerator_id_of
from matcher import live, offline
from matcher.api.crd import KINDS
from matcher.api.models import (
    API_VERSION,
    CONDITION_HARDWARE,
    GROUP,
    KIND_CLUSTER_PROFILE,
    KIND_PROFILE,
    Phase,
    Profile,
    ProfileError,
    ProfileStatus,
    parse_profile,
)
from matcher.core import explain
from matcher.core.affinity import scheme_of
from matcher.core.evaluate import evaluate
from matcher.core.nodes import NodeView

PROGRAM = "kubectl-aim"
EXIT_OK = offline.EXIT_OK
EXIT_NOT_AVAILABLE = offline.EXIT_NOT_AVAILABLE
EXIT_INVALID = offline.EXIT_INVALID
#: Profiles named in a SERVES cell before "+N more" (``-o json`` lists them all).
SERVES_SHOWN = 4
#: Status fields compared with the stored status (times and generations are told apart).
COMPARED = (
    "status",
    "matchingNodes",
    "hardwareSummary",
    "version",
    "resources",
    "resolvedNodeAffinity",
)


class NotFound(Exception):
    """The profile asked about does not exist."""


# --- arguments -------------------------------------------------------------------------------


def _cluster_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """The options kubectl users type anywhere: on the top parser (defaults None) and on each
    command (suppressed when absent, so that a value given before the command stays)."""
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("cluster")
    group.add_argument(
        "--kubeconfig",
        default=default,
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)",
    )
    group.add_argument(
        "--context", default=default, metavar="NAME", help="kubeconfig context to use"
    )
    group.add_argument(
        "-n",
        "--namespace",
        default=default,
        help="why: the AIMProfile's namespace; nodes, check: only this namespace's AIMProfiles "
        "(and every cluster profile)",
    )
    group.add_argument(
        "--config-map",
        default=default,
        metavar="NAMESPACE/NAME",
        help=f"the matcher's ConfigMap (default {live.DEFAULT_CONFIG_MAP}; when it cannot be "
        "read the default settings apply)",
    )


def _all_namespaces(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        default=argparse.SUPPRESS,
        help="every namespace's AIMProfiles (the default)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl aim",
        description="Which nodes serve which AIM profiles, and why not: the matcher's own "
        "evaluation over the live cluster, read-only.",
    )
    parser.add_argument("--version", action="version", version=version_line(PROGRAM))
    _cluster_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    nodes = sub.add_parser(
        "nodes",
        help="each node, its accelerator labels and the profiles it can serve",
        description="Each node with its accelerator labels and the profiles it can serve "
        "(counted in their matchingNodes); -o wide adds the partitioning schemes, the "
        "profiles' names and the nearest profile it does not serve, with what it lacks.",
    )
    _cluster_options(nodes, top=False)
    _all_namespaces(nodes)
    nodes.add_argument(
        "-l", "--selector", help="label selector, as kubectl's (evaluated by the API server)"
    )
    nodes.add_argument(
        "--model",
        action="append",
        metavar="ID",
        help="only nodes with this accelerator label (MI300X, EPYC_ZEN5...); repeat for several",
    )
    nodes.add_argument(
        "--serving",
        choices=["any", "none"],
        help="any: only nodes that serve some profile; none: only those that serve none",
    )
    nodes.add_argument("-o", "--output", choices=["table", "wide", "json"], default="table")
    nodes.add_argument("--no-headers", action="store_true", help="tables without the header")
    nodes.add_argument(
        "--near",
        type=int,
        default=explain.DEFAULT_NEAR,
        metavar="N",
        help="near misses kept per node for -o json (default %(default)s)",
    )

    why = sub.add_parser(
        "why",
        help="a profile's status explained: the nearest nodes and what they lack",
        description="Evaluate one profile against the live nodes, name the matching ones and "
        "the nearest others with what they lack, and compare with its stored status. PROFILE "
        "is NAME or KIND/NAME (aimprofile/NAME, aimclusterprofile/NAME, short names too). "
        "With -n an AIMProfile of that namespace takes precedence over a cluster profile of "
        "the same name (the spec's rule); without -n the cluster profile is looked up first, "
        "then an AIMProfile in the context's namespace.",
    )
    _cluster_options(why, top=False)
    why.add_argument("profile", metavar="PROFILE")
    why.add_argument(
        "--nodes",
        type=int,
        default=5,
        metavar="N",
        help="nearest nodes shown (default %(default)s; 0: all)",
    )
    why.add_argument("-o", "--output", choices=["text", "json"], default="text")

    check = sub.add_parser(
        "check",
        help="every profile evaluated against the live cluster (aim-matcher check)",
        description="aim-matcher check against the live cluster: the status each profile would "
        "get, without the matcher installed. Exit 0 when all are Ready, 1 when any is "
        "NotAvailable, 2 on invalid input or when the cluster cannot be read.",
    )
    _cluster_options(check, top=False)
    _all_namespaces(check)
    check.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="PATH",
        help="profiles from files or directories instead of the cluster's (repeat for more)",
    )
    check.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    return parser


def _namespace_scope(args: argparse.Namespace) -> str | None:
    if getattr(args, "all_namespaces", False) and args.namespace:
        raise offline.InputError("-A and -n cannot be combined")
    return None if getattr(args, "all_namespaces", False) else args.namespace


def _input_args(args: argparse.Namespace, **extra: Any) -> argparse.Namespace:
    """What ``offline.live_inputs`` reads."""
    fields: dict[str, Any] = {
        "kubeconfig": args.kubeconfig,
        "context": args.context,
        "config_map": args.config_map,
        "program": PROGRAM,
        "live": True,
        "nodes": None,
        "profiles": None,
        "config": None,
        "namespace": None,
    }
    fields.update(extra)
    return argparse.Namespace(**fields)


# --- check -----------------------------------------------------------------------------------


def check(args: argparse.Namespace) -> int:
    try:
        namespace = _namespace_scope(args)
    except offline.InputError as exc:
        offline.emit([("error: ", [str(exc)])], lambda out: None)
        return EXIT_INVALID
    return offline.check_command(
        _input_args(args, profiles=args.filename, namespace=namespace, output=args.output)
    )


# --- nodes -----------------------------------------------------------------------------------


def _selector(args: argparse.Namespace) -> str | None:
    parts = [args.selector] if args.selector else []
    parts += [LABEL_PREFIX + model for model in args.model or ()]
    return ",".join(parts) or None


def node_state(node: NodeView) -> str:
    """As ``kubectl get nodes`` shows it."""
    state = "Ready" if node.ready else "NotReady"
    return state if node.schedulable else f"{state},SchedulingDisabled"


def accelerators(node: NodeView) -> dict[str, str]:
    return {
        accel: value
        for key, value in sorted(node.labels.items())
        if (accel := accelerator_id_of(key)) is not None
    }


def partitioning(node: NodeView) -> dict[str, str]:
    return {
        scheme: value
        for key, value in sorted(node.labels.items())
        if (scheme := scheme_of(key)) is not None
    }


def _accelerators_cell(node: NodeView) -> str:
    """The labels; without any, whether the detector ran there (its annotation) or not."""
    found = accelerators(node)
    if found:
        return _pairs(found)
    return "<none-found>" if node.detector_ran else "<no-detector>"


def _pairs(values: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items()) or "<none>"


def short_ref(profile: Profile) -> str:
    """A cluster profile's name; ``namespace/name`` for an AIMProfile."""
    return profile.name if profile.namespace is None else f"{profile.namespace}/{profile.name}"


def _serves_cell(profiles: Sequence[Profile]) -> str:
    shown = [short_ref(p) for p in profiles[:SERVES_SHOWN]]
    if len(profiles) > SERVES_SHOWN:
        shown.append(f"+{len(profiles) - SERVES_SHOWN} more")
    return ",".join(shown) or "<none>"


def _near_cell(report: explain.NodeReport) -> str:
    if not report.near:
        return "<none>"
    profiles, misses = report.near[0]
    alike = f" (+{len(profiles) - 1} alike)" if len(profiles) > 1 else ""
    return f"{short_ref(profiles[0])}{alike}: {', '.join(m.text() for m in misses)}"


def _node_json(report: explain.NodeReport) -> dict[str, Any]:
    node = report.node
    return {
        "name": node.name,
        "ready": node.ready,
        "schedulable": node.schedulable,
        "accelerators": accelerators(node),
        "detectorRan": node.detector_ran,
        "partitioning": partitioning(node),
        "serves": [p.ref for p in report.serves],
        "nearMisses": [
            {"profiles": [p.ref for p in profiles], "missing": [m.to_dict() for m in misses]}
            for profiles, misses in report.near
        ],
    }


def print_nodes(
    reports: Sequence[explain.NodeReport], fmt: str, out: TextIO, headers: bool = True
) -> None:
    if fmt == "json":
        doc = {"nodes": [_node_json(r) for r in reports]}
        out.write(json.dumps(doc, indent=2) + "\n")
        return
    if not reports:
        out.write("No nodes found.\n")
        return
    header = ["NAME", "STATUS", "ACCELERATORS", "PROFILES"]
    if fmt == "wide":
        header += ["PARTITIONING", "SERVES", "NEAREST MISS"]
    rows = [header] if headers else []
    for report in reports:
        node = report.node
        row = [node.name, node_state(node), _accelerators_cell(node), str(len(report.serves))]
        if fmt == "wide":
            row += [_pairs(partitioning(node)), _serves_cell(report.serves), _near_cell(report)]
        rows.append(row)
    offline.print_table(rows, out)


def nodes(args: argparse.Namespace) -> int:
    notes: list[str] = []
    try:
        namespace = _namespace_scope(args)
        inputs = offline.live_inputs(
            _input_args(args, namespace=namespace, selector=_selector(args)), notes
        )
    except offline.InputError as exc:
        offline.emit([("note: ", notes), ("error: ", [str(exc)])], lambda out: None)
        return EXIT_INVALID
    near = max(args.near, 1) if args.output != "table" else 0
    profiles = [p for p, _ in inputs.profiles]
    reports = explain.node_reports(inputs.cluster, profiles, inputs.config, near=near)
    shown = [reports[name] for name in sorted(reports)]
    if args.serving == "any":
        shown = [r for r in shown if r.serves]
    elif args.serving == "none":
        shown = [r for r in shown if not r.serves]
    if args.output == "wide":
        for report in shown:
            report.near = report.near[:1]
    messages = [("note: ", notes), ("warning: ", inputs.warnings), ("error: ", inputs.errors)]
    offline.emit(messages, lambda out: print_nodes(shown, args.output, out, not args.no_headers))
    return EXIT_INVALID if inputs.errors else EXIT_OK


# --- why -------------------------------------------------------------------------------------


def _kind_of(word: str) -> str | None:
    lowered = word.lower().removesuffix(f".{GROUP}")
    for kind, info in KINDS.items():
        names = {info["plural"], info["singular"], *info["short_names"], kind.lower()}
        if lowered in names:
            return kind
    return None


def candidates(
    profile: str, namespace: str | None, context_namespace: str
) -> list[tuple[str, str | None, str]]:
    """(kind, namespace, name) to look up, in order (the module docstring's precedence)."""
    kind_word, sep, name = profile.rpartition("/")
    if sep:
        kind = _kind_of(kind_word)
        if kind is None:
            raise offline.InputError(
                f"{profile}: {kind_word!r} is not aimprofile or aimclusterprofile"
            )
        if kind == KIND_PROFILE:
            return [(kind, namespace or context_namespace, name)]
        return [(kind, None, name)]
    if namespace:
        return [(KIND_PROFILE, namespace, profile), (KIND_CLUSTER_PROFILE, None, profile)]
    return [(KIND_CLUSTER_PROFILE, None, profile), (KIND_PROFILE, context_namespace, profile)]


def find_profile(api: KubeClient, args: argparse.Namespace) -> Profile:
    looked: list[str] = []
    for kind, namespace, name in candidates(args.profile, args.namespace, api.config.namespace):
        obj = live.get_profile(api, kind, name, namespace)
        where = f"{kind.lower()} {namespace}/{name}" if namespace else f"{kind.lower()} {name}"
        if obj is None:
            looked.append(where)
            continue
        obj = {"apiVersion": API_VERSION, "kind": kind, **obj}
        try:
            return parse_profile(obj)
        except ProfileError as exc:
            raise offline.InputError(f"{where}: {exc}") from None
    raise NotFound(f"no {' and no '.join(looked)}")


def _condition_fields(status: ProfileStatus | None) -> dict[str, str]:
    condition = status.condition(CONDITION_HARDWARE) if status is not None else None
    if condition is None:
        return {}
    return {
        "condition": str(condition.status),
        "reason": condition.reason,
        "message": condition.message,
    }


def differences(stored: ProfileStatus, computed: ProfileStatus) -> list[str]:
    """The status fields where the stored status and the live evaluation differ."""
    old, new = stored.to_dict(), computed.to_dict()
    found = [key for key in COMPARED if old.get(key) != new.get(key)]
    old_c, new_c = _condition_fields(stored), _condition_fields(computed)
    for field in ("condition", "reason", "message"):
        if old_c.get(field) != new_c.get(field):
            found.append(f"{CONDITION_HARDWARE}.{field}")
    return found


def stored_verdict(
    profile: Profile, stored: ProfileStatus | None, computed: ProfileStatus
) -> tuple[str, str]:
    """(state, sentence) about the stored status: ``current``, ``pending``, ``behind``,
    ``degraded`` or ``stale``."""
    matcher = "is the matcher running? (docs/troubleshooting.md#the-matcher)"
    if stored is None or stored.status is Phase.PENDING:
        return "pending", f"Pending: the matcher has not evaluated this profile; {matcher}"
    if stored.observed_generation != profile.generation:
        return "behind", (
            f"computed from generation {stored.observed_generation}, the spec is at generation "
            f"{profile.generation}: the matcher has not caught up; {matcher}"
        )
    if stored.status is Phase.DEGRADED:
        message = _condition_fields(stored).get("message", "")
        return "degraded", f"Degraded: the matcher cannot see the nodes ({message})"
    changed = differences(stored, computed)
    if not changed:
        return "current", "the same as the live evaluation: the matcher is up to date"
    old, new = stored.to_dict(), computed.to_dict()
    shown = [
        f"{key} {old.get(key)} -> {new.get(key)}"
        for key in ("status", "matchingNodes")
        if key in changed
    ]
    shown += [key for key in changed if key not in ("status", "matchingNodes")]
    return "stale", (
        f"stale: it differs from the live evaluation in {'; '.join(shown)}. The matcher "
        "rewrites a status within about a second of a change: if this stays, the matcher is "
        f"not running or not leading, or it reads other settings; {matcher}"
    )


@dataclass(frozen=True, slots=True)
class Explanation:
    """``kubectl aim why``'s findings about one profile."""

    profile: Profile
    needs: explain.Requirements
    computed: ProfileStatus
    """What the matcher's core computes from the live nodes now."""
    fits: list[explain.NodeFit]
    """Every node, serving ones first, then the nearest others."""
    state: str
    verdict: str
    """About the stored status (``stored_verdict``)."""

    @property
    def serving(self) -> list[str]:
        return [fit.node.name for fit in self.fits if fit.serves]

    def write_text(self, limit: int, out: TextIO) -> None:
        condition = _condition_fields(self.computed)
        serving = self.serving
        others = [fit for fit in self.fits if not fit.serves]
        out.write(f"{self.profile.ref}\n")
        out.write(f"  needs:     {self.needs.describe()}\n")
        out.write(
            f"  status:    {self.computed.status} ({condition.get('reason', '')}), "
            f"{self.computed.matching_nodes} of {len(self.fits)} nodes match\n"
        )
        out.write(f"  message:   {condition.get('message', '')}\n")
        out.write(f"  stored:    {self.verdict}\n")
        if serving:
            shown = serving if limit <= 0 else serving[:limit]
            more = f", +{len(serving) - len(shown)} more" if len(serving) > len(shown) else ""
            out.write(f"matching nodes: {', '.join(shown)}{more}\n")
        if not others:
            return
        shown_fits = others if limit <= 0 else others[:limit]
        more_fits = len(others) - len(shown_fits)
        suffix = f" ({more_fits} more not shown)" if more_fits else ""
        out.write(f"nearest other nodes{suffix}:\n")
        rows = [["  NODE", "ACCELERATORS", "WHY NOT"]]
        for fit in shown_fits:
            why_not = ", ".join(m.text() for m in fit.misses)
            rows.append([f"  {fit.node.name}", _pairs(accelerators(fit.node)), why_not])
        offline.print_table(rows, out)

    def to_dict(self) -> dict[str, Any]:
        profile = self.profile
        ref: dict[str, Any] = {"kind": profile.kind, "name": profile.name}
        if profile.namespace is not None:
            ref["namespace"] = profile.namespace
        return {
            "profile": ref,
            "needs": {
                "labels": [t.requirement() for t in self.needs.terms],
                "requests": self.needs.shown_requests(),
            },
            "live": self.computed.to_dict(),
            "stored": profile.status.to_dict() if profile.status is not None else None,
            "storedState": self.state,
            "storedVerdict": self.verdict,
            "matchingNodes": self.serving,
            "nearestNodes": [
                {"name": fit.node.name, "missing": [m.to_dict() for m in fit.misses]}
                for fit in self.fits
                if not fit.serves
            ],
        }


def explain_profile(profile: Profile, inputs: offline.Inputs, now: datetime) -> Explanation:
    """The live evaluation (the controller's ``evaluate``, with the stored status as the previous
    one), every node's fit, and what to make of the stored status."""
    computed = evaluate(profile, inputs.cluster, inputs.config, now)
    needs = explain.requirements(profile, inputs.config)
    fits = explain.nearest_nodes(inputs.cluster, needs, inputs.config)
    state, verdict = stored_verdict(profile, profile.status, computed)
    return Explanation(profile, needs, computed, fits, state, verdict)


def why(args: argparse.Namespace) -> int:
    notes: list[str] = []
    api: KubeClient | None = None
    try:
        api = live.open_client(args.kubeconfig, args.context, PROGRAM)
        profile = find_profile(api, args)
        inputs = offline.live_inputs(_input_args(args, list_profiles=False), notes, api=api)
    except (offline.InputError, live.LiveError, NotFound) as exc:
        offline.emit([("note: ", notes), ("error: ", [str(exc)])], lambda out: None)
        return EXIT_INVALID
    finally:
        if api is not None:
            api.close()
    found = explain_profile(profile, inputs, datetime.now(UTC))
    messages = [("note: ", notes), ("warning: ", inputs.warnings), ("error: ", inputs.errors)]

    def write(out: TextIO) -> None:
        if args.output == "json":
            out.write(json.dumps(found.to_dict(), indent=2) + "\n")
        else:
            found.write_text(args.nodes, out)

    offline.emit(messages, write)
    if inputs.errors:
        return EXIT_INVALID
    return EXIT_NOT_AVAILABLE if found.computed.status is Phase.NOT_AVAILABLE else EXIT_OK


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.command == "nodes":
        return nodes(args)
    if args.command == "why":
        return why(args)
    return check(args)


if __name__ == "__main__":
    raise SystemExit(main())
