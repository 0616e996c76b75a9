"""``aim-matcher``: offline checks, selection, CRD generation, and the live controller.

    aim-matcher check  --nodes NODES.json|NODES.yaml|- --profiles DIR_OR_FILE [--config CM.yaml]
                       [-o FORMAT]
    aim-matcher select --nodes NODES.json|NODES.yaml|- --profiles DIR_OR_FILE --aim-id ID [...]
    aim-matcher crds   [--out DIR]... [--check]   (default: daemonset/crds and the chart's crds/)
    aim-matcher run    [controller options]   (see ``aim-matcher run --help``)

Inputs are YAML or JSON (``kubectl get nodes -o json | aim-matcher check --nodes - ...``);
``-`` reads standard input. Exit codes of ``check``: 0 every profile Ready, 1 some profile
NotAvailable, 2 invalid input (a file that does not parse, a profile or node that fails
validation, a duplicate key, an alias bomb, nesting too deep); the valid profiles are still
evaluated and printed. ``select``: 0 a profile was chosen, 1 none, 2 invalid input.
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
        required=True,
        action="append",
        metavar="FILE",
        help="Nodes as `kubectl get nodes -o json` or `-o yaml` writes them (a List, Node "
        "documents or one Node), read one node at a time; - reads standard input; repeat to add "
        "more files",
    )
    parser.add_argument(
        "--profiles",
        required=True,
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

    select = sub.add_parser(
        "select",
        help="Show which profile automatic selection picks for an AIM id, and why",
        description="Evaluate profiles against nodes from files, then select for an AIM id. "
        "Exit 0 when a profile is chosen, 1 when none, 2 on invalid input.",
    )
    # wide: the ranking, one column per criterion (docs/architecture.md, "Selection").
    _add_inputs(select, ("table", "wide", "yaml", "json"))
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
    if args.command == "check":
        return offline.check_command(args)
    return offline.select_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
