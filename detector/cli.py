"""``aim-detector``: command line and environment of the node agent.

Every flag can also be set by an environment variable (shown in ``--help``); a flag given on
the command line wins over its variable. Exit codes: 0 success, 1 a probe or the publish
failed (with ``--once``/``--cleanup``) or publishing could not be set up, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from aimkit import logs
from aimkit.build import version_line
from detector.agent import GPU_BACKENDS, MODES, AgentConfig, CycleReport, run
from detector.metrics import DEFAULT_METRICS_PORT
from detector.probes.roots import HostRoots
from detector.publish.nfd import DEFAULT_FEATURES_DIR
from detector.reconcile import DEFAULT_REMOVAL_CONFIRMATIONS, source_of

OUTPUTS = ("table", "labels", "json")
LOG_LEVELS = logs.LEVELS

DESCRIPTION = """\
Find this node's AMD Instinct GPUs and EPYC CPUs and label the Node with them:
  feature.node.kubernetes.io/aim-accelerator.<MODEL>=<GPUs>           e.g. MI300X=8
  feature.node.kubernetes.io/aim-accelerator.EPYC_ZEN<N>=<cores>      e.g. EPYC_ZEN5=128
  feature.node.kubernetes.io/aim-accelerator.partitioning-scheme.<CP>-<MP>=<partitions>

Runs as a DaemonSet: every --interval seconds it probes, and patches its own Node only when
a label differs (labels of others are never touched). A probe that fails keeps the labels
it produced before; a label goes only after --removal-confirmations probes in a row no
longer see its hardware."""

EPILOG = """\
examples:
  aim-detector --once --dry-run                 show this host's labels, touch nothing
  aim-detector --once --dry-run --output json   the same, for scripts
  aim-detector --once --dry-run --host-root /tmp/fixture
  NODE_NAME=gpu-1 aim-detector                  run the agent against the current kubeconfig
  aim-detector --cleanup --node-name gpu-1      remove the labels the agent wrote (uninstall)

exit codes: 0 ok; 1 a probe or the publish failed (--once, --cleanup) or no cluster
access; 2 bad usage. Hysteresis lives in memory: a single --once run removes nothing unless
--removal-confirmations is 1."""


class UsageError(ValueError):
    pass


def _number(text: str, kind: Callable[[str], Any], what: str) -> Any:
    try:
        return kind(text.strip())
    except ValueError:
        raise UsageError(f"must be {what}") from None


def _positive(text: str) -> float:
    value: float = _number(text, float, "a number above 0")
    if not value > 0:
        raise UsageError("must be a number above 0")
    return value


def _fraction(text: str) -> float:
    value: float = _number(text, float, "a number between 0 and 0.5")
    if not 0 <= value <= 0.5:
        raise UsageError("must be between 0 and 0.5")
    return value


def _at_least_one(text: str) -> int:
    value: int = _number(text, int, "a whole number, 1 or more")
    if value < 1:
        raise UsageError("must be 1 or more")
    return value


def _port(text: str) -> int:
    value: int = _number(text, int, "a port number, 0 to 65535 (0 disables)")
    if not 0 <= value <= 65535:
        raise UsageError("must be a port number, 0 to 65535 (0 disables)")
    return value


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise UsageError("must be true or false")


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise UsageError(f"must be one of {', '.join(choices)}")
        return text

    return convert


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    group: str
    is_switch: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS = (
    # mode
    Option("--mode", "AIM_DETECTOR_MODE", _choice(MODES), "node",
           "node: patch this Node's labels; nfd: write an NFD features.d file", "publishing",
           metavar="{node,nfd}"),
    Option("--node-name", "NODE_NAME", str, None,
           "this Node's name, from the downward API (required in node mode)", "publishing",
           metavar="NAME"),
    Option("--kubeconfig", "AIM_DETECTOR_KUBECONFIG", str, None,
           "kubeconfig file (default: $KUBECONFIG, else in-cluster credentials, else "
           "~/.kube/config)", "publishing", metavar="PATH"),
    Option("--nfd-features-dir", "AIM_DETECTOR_NFD_FEATURES_DIR", Path, DEFAULT_FEATURES_DIR,
           "NFD's features.d directory (nfd mode)", "publishing", metavar="DIR"),
    Option("--cleanup", "AIM_DETECTOR_CLEANUP", _flag, False,
           "remove the labels and annotation this agent wrote (or its NFD file), then exit",
           "publishing", is_switch=True),
    Option("--fence-peer-node", "AIM_DETECTOR_FENCE_PEER_NODE", str, None,
           "another Node on which the node fence's proof also checks that this agent may not "
           "write (node mode; the agent cannot list Nodes, so by default none is checked)",
           "publishing", metavar="NAME"),
    Option("--waive-node-fence", "AIM_DETECTOR_WAIVE_NODE_FENCE", _flag, False,
           "report ready without proving that the admission policy confines this agent to "
           "its own labels on its own Node (clusters that cannot run the policy; logged and "
           "exported as aim_detector_node_fence{state=\"waived\"})",
           "publishing", is_switch=True),
    # running
    Option("--once", "AIM_DETECTOR_ONCE", _flag, False,
           "run one cycle and exit", "running", is_switch=True),
    Option("--dry-run", "AIM_DETECTOR_DRY_RUN", _flag, False,
           "touch no cluster and no file: print the labels that would be written",
           "running", is_switch=True),
    Option("--output", "AIM_DETECTOR_OUTPUT", _choice(OUTPUTS), "table",
           "what --once and --dry-run print: table, labels (key=value lines) or json",
           "running",
           metavar="{table,labels,json}"),
    Option("--interval", "AIM_DETECTOR_INTERVAL", _positive, 60.0,
           "seconds between cycles", "running", metavar="SECONDS"),
    Option("--jitter", "AIM_DETECTOR_JITTER", _fraction, 0.1,
           "random spread of the interval, as a fraction (0.1 = +-10%%)", "running",
           metavar="FRACTION"),
    Option("--probe-timeout", "AIM_DETECTOR_PROBE_TIMEOUT", _positive, 10.0,
           "seconds a probe may take before it counts as failed", "running",
           metavar="SECONDS"),
    Option("--removal-confirmations", "AIM_DETECTOR_REMOVAL_CONFIRMATIONS", _at_least_one,
           DEFAULT_REMOVAL_CONFIRMATIONS,
           "successful probes in a row that must miss a label's hardware before it is removed",
           "running", metavar="N"),
    # host
    Option("--host-root", "AIM_DETECTOR_HOST_ROOT", Path, None,
           "root of the host's file system; sets the sysfs and procfs roots to "
           "<root>/sys and <root>/proc", "host", metavar="DIR"),
    Option("--sysfs-root", "AIM_DETECTOR_SYSFS_ROOT", Path, None,
           "sysfs mount (default /sys, or <host-root>/sys)", "host", metavar="DIR"),
    Option("--procfs-root", "AIM_DETECTOR_PROCFS_ROOT", Path, None,
           "procfs mount (default /proc, or <host-root>/proc)", "host", metavar="DIR"),
    Option("--gpu-backend", "AIM_DETECTOR_GPU_BACKEND", _choice(GPU_BACKENDS), "auto",
           "auto: amdsmi when it loads, else sysfs", "host",
           metavar="{auto,amdsmi,sysfs}"),
    # observability
    Option("--metrics-port", "AIM_DETECTOR_METRICS_PORT", _port, DEFAULT_METRICS_PORT,
           "port of /metrics, /healthz and /readyz (0 disables)", "observability",
           metavar="PORT"),
    Option("--metrics-address", "AIM_DETECTOR_METRICS_ADDRESS", str, None,
           "address the metrics server binds (default: $POD_IP and 127.0.0.1 in a pod, "
           "127.0.0.1 outside one)", "observability", metavar="ADDR"),
    Option("--log-level", "AIM_DETECTOR_LOG_LEVEL", _choice(LOG_LEVELS), None,
           "debug, info, warning or error (default info; warning with --dry-run)",
           "observability",
           metavar="{debug,info,warning,error}"),
    Option("--log-format", "AIM_DETECTOR_LOG_FORMAT", _choice(logs.FORMATS), "text",
           "text (key=value) or json lines on stderr", "observability",
           metavar="{text,json}"),
)  # fmt: skip

_GROUPS = {
    "publishing": "where the labels go",
    "running": "running",
    "host": "host file systems (for containers and test fixtures)",
    "observability": "observability",
}


def _argparse_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def wrapped(text: str) -> Any:
        try:
            return convert(text)
        except UsageError as err:
            raise argparse.ArgumentTypeError(f"{text!r} {err}") from err
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{text!r} is not valid: {err}") from err

    return wrapped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aim-detector",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_line("aim-detector"))
    groups = {name: parser.add_argument_group(title) for name, title in _GROUPS.items()}
    for opt in OPTIONS:
        shown = f"{opt.default:g}" if isinstance(opt.default, float) else opt.default
        default = "" if opt.default is None or opt.is_switch else f"; default {shown}"
        text = f"{opt.help} [env {opt.env}{default}]"
        if opt.is_switch:
            groups[opt.group].add_argument(
                opt.flag, dest=opt.dest, action="store_const", const=True, help=text
            )
        else:
            groups[opt.group].add_argument(
                opt.flag,
                dest=opt.dest,
                type=_argparse_type(opt.convert),
                metavar=opt.metavar,
                help=text,
            )
    return parser


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Flags, then environment variables, then defaults; exits 2 on bad usage."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    for opt in OPTIONS:
        if getattr(args, opt.dest) is not None:
            continue
        raw = env.get(opt.env)
        if raw is None or (raw == "" and not opt.is_switch):
            setattr(args, opt.dest, opt.default)
            continue
        try:
            setattr(args, opt.dest, opt.convert(raw))
        except ValueError as err:
            parser.error(f"environment variable {opt.env}={raw!r}: {err}")
    if args.mode == "node" and not args.dry_run and not args.node_name:
        parser.error("node mode needs the Node's name: --node-name or NODE_NAME")
    if args.cleanup and args.dry_run:
        parser.error("--cleanup and --dry-run cannot be combined")
    for flag in ("--host-root", "--sysfs-root", "--procfs-root"):
        path = getattr(args, flag[2:].replace("-", "_"))
        if path is not None and not Path(path).is_dir():
            what = "not a directory" if Path(path).exists() else "no such directory"
            parser.error(f"{flag} {path}: {what}")
    return args


def host_roots(args: argparse.Namespace) -> HostRoots:
    base = HostRoots.from_host_root(args.host_root) if args.host_root else HostRoots()
    return HostRoots(
        sysfs=args.sysfs_root or base.sysfs,
        procfs=args.procfs_root or base.procfs,
    )


def config_from(args: argparse.Namespace) -> AgentConfig:
    return AgentConfig(
        mode=args.mode,
        node_name=args.node_name,
        kubeconfig=args.kubeconfig,
        nfd_features_dir=args.nfd_features_dir,
        roots=host_roots(args),
        gpu_backend=args.gpu_backend,
        interval=args.interval,
        jitter=args.jitter,
        probe_timeout=args.probe_timeout,
        removal_confirmations=args.removal_confirmations,
        once=args.once,
        dry_run=args.dry_run,
        cleanup=args.cleanup,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        waive_node_fence=args.waive_node_fence,
        fence_peer_node=args.fence_peer_node,
    )


# --- dry-run output ------------------------------------------------------------------------


def render_report(report: CycleReport, output: str) -> str:
    labels = report.decision.labels if report.decision is not None else {}
    if output == "json":
        document = {
            "labels": dict(sorted(labels.items())),
            "healthy": report.ok,
            "errors": report.errors,
            "devices": {src: r.devices for src, r in sorted(report.readings.items())},
        }
        return json.dumps(document, indent=2) + "\n"
    if output == "labels":
        return "".join(f"{k}={v}\n" for k, v in sorted(labels.items()))
    rows = [("LABEL", "VALUE", "SOURCE")]
    rows += [(k, v, source_of(k)) for k, v in sorted(labels.items())]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in rows]
    if not labels:
        lines.append("(no labels: no AMD accelerator or EPYC CPU found)")
    lines += [f"! {src} probe failed: {err}" for src, err in sorted(report.errors.items())]
    return "\n".join(lines) + "\n"


NOTHING_FOUND = "nothing to publish: no AMD accelerator or EPYC CPU found"


def render_published(report: CycleReport, output: str) -> str:
    """What one ``--once`` cycle published, and where (``render_report`` for a dry run)."""
    if output == "json":
        document = json.loads(render_report(report, output))
        document.update(target=report.target, wrote=report.wrote, publishError=report.publish_error)
        return json.dumps(document, indent=2) + "\n"
    if output == "labels":
        return render_report(report, output)
    if report.decision is None:
        return f"published nothing: {report.publish_error}\n"
    labels = report.decision.labels
    errors = [f"! {src} probe failed: {err}" for src, err in sorted(report.errors.items())]
    pending = [
        f"~ {key}: not seen by {runs} probe(s) in a row; kept until --removal-confirmations "
        "probes in a row miss it"
        for key, runs in report.decision.pending_removal.items()
    ]
    if report.publish_error is not None:
        head = f"not published to {report.target}: {report.publish_error}"
    elif not labels and not report.errors:
        written = f" ({report.target} updated)" if report.wrote else ""
        return f"{NOTHING_FOUND}{written}\n"
    elif report.wrote:
        head = f"published to {report.target}:"
    else:
        head = f"published to {report.target} (already there, nothing written):"
    table = render_report(replace(report, errors={}), output).splitlines()
    if not labels:
        table = ["(no labels: the failed probes had published none before)"]
    return "\n".join([head, *table, *pending, *errors]) + "\n"


def _printer(output: str, stream: TextIO, *, dry_run: bool) -> Callable[[CycleReport], None]:
    render = render_report if dry_run else render_published

    def print_report(report: CycleReport) -> None:
        stream.write(render(report, output))
        stream.flush()

    return print_report


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup(args.log_level or ("warning" if args.dry_run else "info"), args.log_format)
    config = config_from(args)
    # A dry run prints what it would write; --once what it wrote (the loop only logs).
    show = config.dry_run or (config.once and not config.cleanup)
    on_cycle = _printer(args.output, sys.stdout, dry_run=config.dry_run) if show else None
    return run(config, on_cycle=on_cycle)


if __name__ == "__main__":
    sys.exit(main())
