"""``aim-matcher``: offline checks, selection, CRD generation, and the live controller.

    aim-matcher check  --nodes NODES.json|NODES.yaml|- --profiles DIR_OR_FILE [--config CM.yaml]
                       [-o FORMAT]
    aim-matcher check  --kubeconfig FILE [--context NAME] [-n NAMESPACE] [--profiles ...]
    aim-matcher select --nodes NODES.json|NODES.yaml|- --profiles DIR_OR_FILE --aim-id ID [...]
    aim-matcher crds   [--out DIR]... [--check]   (default: daemonset/crds and the chart's crds/)
    aim-matcher run    [controller options]   (see ``aim-matcher run --help``)

Inputs are YAML or JSON (``kubectl get nodes -o json | aim-matcher check --nodes - ...``);
``-`` reads standard input. With ``--kubeconfig`` (or ``--context``) whatever is not given as a
file is read from that cluster, read-only: its nodes, its profiles and the matcher's ConfigMap
(``matcher/live.py``; ``kubectl aim check`` is the same command).

Exit codes of ``check``: 0 every profile Ready, 1 some profile NotAvailable, 2 invalid input (a
file that does not parse, a profile or node that fails validation, a duplicate key, an alias
bomb, nesting too deep) or a cluster that cannot be read; the valid profiles are still evaluated
and printed. ``select``: 0 a profile was chosen, 1 none, 2 invalid input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from aimkit.build import version_line
from matcher import offline
from matcher.api import crd
from matcher.api.models import Precision


def _crds(args: argparse.Namespace) -> int:
    outs = [Path(out) for out in args.out or crd.OUT_DIRS]
    if args.check:
        problems = [problem for out in outs for problem in crd.stale(out)]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for out in outs:
        for path in crd.write(out):
            print(path)
    return 0


def _add_inputs(
    parser: argparse.ArgumentParser, formats: tuple[str, ...] = ("table", "yaml", "json")
) -> None:
    parser.add_argument(
        "--nodes",
        action="append",
        metavar="FILE",
        help="Nodes as `kubectl get nodes -o json` or `-o yaml` writes them (a List, Node "
        "documents or one Node), read one node at a time; - reads standard input; repeat to add "
        "more files",
    )
    parser.add_argument(
        "--profiles",
        action="append",
        metavar="PATH",
        help="AIMProfile/AIMClusterProfile YAML or JSON file or directory (multi-document "
        "files, Lists, and *.yaml/*.yml/*.json under directories); - reads standard input; "
        "repeat to add more",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="The matcher ConfigMap (YAML) with cluster settings"
    )
    parser.add_argument(
        "-o", "--output", choices=list(formats), default="table", help="Output format"
    )
    cluster = parser.add_argument_group(
        "the live cluster (read-only: list nodes and profiles, get the matcher ConfigMap)"
    )
    cluster.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="Read the nodes, profiles and matcher ConfigMap not given as files from this cluster",
    )
    cluster.add_argument(
        "--context",
        metavar="NAME",
        help="The kubeconfig context (implies reading the cluster; default: the current one, "
        "from --kubeconfig, $KUBECONFIG, in-cluster or ~/.kube/config)",
    )
    cluster.add_argument(
        "--config-map",
        metavar="NAMESPACE/NAME",
        default=None,
        help="The matcher's ConfigMap in the cluster (default: aim-system/aim-matcher-config; "
        "when it cannot be read the default settings apply)",
    )


def _require_inputs(args: argparse.Namespace) -> None:
    if offline.from_cluster(args):
        return
    missing = [flag for flag in ("--nodes", "--profiles") if not getattr(args, flag[2:])]
    if missing:
        args.subparser.error(
            f"{' and '.join(missing)} required (or --kubeconfig/--context to read a cluster)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aim-matcher",
        description="Match AIM profiles against cluster nodes (offline or as a controller).",
    )
    parser.add_argument("--version", action="version", version=version_line("aim-matcher"))
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "check",
        help="Evaluate profiles against nodes from files and print their statuses",
        description="Evaluate profiles against nodes from files. Exit 0 when all are Ready, 1 "
        "when any is NotAvailable, 2 on invalid input (the rest is still evaluated).",
    )
    _add_inputs(check)
    check.set_defaults(subparser=check)
    check.add_argument(
        "-n",
        "--namespace",
        help="With a cluster: only this namespace's AIMProfiles (and every cluster profile)",
    )

    select = sub.add_parser(
        "select",
        help="Show which profile automatic selection picks for an AIM id, and why",
        description="Evaluate profiles against nodes from files, then select for an AIM id. "
        "Exit 0 when a profile is chosen, 1 when none, 2 on invalid input.",
    )
    # wide: the ranking, one column per criterion (docs/architecture.md, "Selection").
    _add_inputs(select, ("table", "wide", "yaml", "json"))
    select.set_defaults(subparser=select)
    select.add_argument("--aim-id", required=True, help="e.g. qwen/qwen3-32b")
    select.add_argument(
        "--namespace", help="Deploying namespace (its AIMProfiles are visible and win)"
    )
    select.add_argument("--metric", choices=["latency", "throughput"])
    select.add_argument("--precision", choices=[p.value for p in Precision])
    select.add_argument(
        "--include-non-primary",
        action="store_true",
        help="Also consider profiles without primary: true",
    )

    crds = sub.add_parser("crds", help="Generate the CustomResourceDefinitions from the models")
    crds.add_argument(
        "--out",
        action="append",
        metavar="DIR",
        help="Directory; repeat for several (default: " + " and ".join(crd.OUT_DIRS) + ")",
    )
    crds.add_argument(
        "--check",
        action="store_true",
        help="Write nothing; exit 1 naming each file that is missing or stale",
    )

    sub.add_parser(
        "run",
        help="Run the live controller (remaining arguments go to it)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["run"]:
        # Imported lazily: the offline commands must not need the Kubernetes client.
        from matcher.controller.app import main as run_controller  # noqa: PLC0415

        return run_controller(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "crds":
        return _crds(args)
    _require_inputs(args)
    if args.command == "check":
        return offline.check_command(args)
    return offline.select_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
