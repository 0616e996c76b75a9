"""``aim-matcher run``: the live controller as a process.

Configuration comes from flags (and POD_NAMESPACE / POD_NAME / KUBECONFIG from the
environment, as the Deployment sets them); logs are JSON lines on stderr; SIGTERM and SIGINT
stop the controller and release the lease so a standby replica takes over at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config

from matcher.controller.informer import InformerSettings
from matcher.controller.manager import DEFAULT_CONFIG_MAP, Controller, ControllerSettings

log = logging.getLogger("matcher.controller")

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool | str) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def build_parser() -> argparse.ArgumentParser:
    namespace = os.environ.get("POD_NAMESPACE", "default")
    p = argparse.ArgumentParser(
        prog="aim-matcher run",
        description="Watch nodes and AIM profiles; keep every profile's status true.",
    )
    p.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: $KUBECONFIG, then in-cluster, then ~/.kube/config)",
    )
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        metavar="NS",
        help="watch AIMProfiles in this namespace only (repeatable; default: all namespaces)",
    )
    p.add_argument("--config-map", default=DEFAULT_CONFIG_MAP, help="matcher ConfigMap name")
    p.add_argument(
        "--config-map-namespace", default=namespace, help="its namespace (default: $POD_NAMESPACE)"
    )
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="elect a leader on a Lease so that only one replica writes (default: on)",
    )
    p.add_argument("--lease-name", default="aim-matcher")
    p.add_argument(
        "--lease-namespace",
        "--leader-election-namespace",
        dest="lease_namespace",
        default=namespace,
        help="namespace of the Lease (default: $POD_NAMESPACE)",
    )
    p.add_argument("--lease-duration", type=float, default=15.0, help="seconds (default 15)")
    p.add_argument("--renew-deadline", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--retry-period", type=float, default=2.0, help="seconds (default 2)")
    p.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
        help="this replica's name in the Lease (default: $POD_NAME or hostname_random)",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--resync-period",
        type=float,
        default=600.0,
        help="re-evaluate every profile this often in seconds; 0 disables (default 600)",
    )
    p.add_argument("--page-size", type=int, default=500, help="list page size (default 500)")
    p.add_argument("--watch-timeout", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument(
        "--failure-threshold",
        type=int,
        default=3,
        help="consecutive list/watch failures before nodes count as unavailable (default 3)",
    )
    p.add_argument("--backoff-cap", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument(
        "--health-addr",
        default="0.0.0.0:8080",
        help="HOST:PORT for /metrics, /healthz, /readyz; port 0 picks one; '' disables",
    )
    p.add_argument("--metrics-port", type=int, help="shorthand for --health-addr 0.0.0.0:PORT")
    p.add_argument("--no-events", action="store_true", help="do not record Kubernetes Events")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="json", choices=["json", "text"])
    return p


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """--kubeconfig, then $KUBECONFIG, then in-cluster, then ~/.kube/config."""
    # The client's config loaders are untyped; Any keeps mypy's strict mode quiet about them.
    config: Any = kube_config
    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        config.load_kube_config(config_file=path, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    # One long-lived watch per informer plus workers and the elector share the pool.
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def _configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 warns on every retried connection; our own logs say what failed.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def settings_from_args(args: argparse.Namespace) -> ControllerSettings:
    health_port: int | None = None
    health_host = "0.0.0.0"
    if args.metrics_port is not None:
        args.health_addr = f"0.0.0.0:{args.metrics_port}"
    if args.health_addr:
        host, _, port = args.health_addr.rpartition(":")
        health_host, health_port = host or "0.0.0.0", int(port)
    return ControllerSettings(
        identity=args.identity,
        profile_namespaces=tuple(args.namespaces),
        config_map_name=args.config_map,
        config_map_namespace=args.config_map_namespace,
        leader_election=args.leader_elect,
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        workers=args.workers,
        resync_period=args.resync_period,
        informer=InformerSettings(
            page_size=args.page_size,
            watch_timeout=args.watch_timeout,
            failure_threshold=args.failure_threshold,
            backoff_cap=args.backoff_cap,
        ),
        events=not args.no_events,
        health_host=health_host,
        health_port=health_port,
    )


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level, args.log_format)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        api = api_client(args.kubeconfig)
        # Audit logs (and the tests' request record) tell the replicas apart by this.
        api.user_agent = f"aim-matcher/{settings.identity}"
    except (kube_config.ConfigException, OSError) as exc:
        source = args.kubeconfig or os.environ.get("KUBECONFIG") or "in-cluster or ~/.kube/config"
        print(
            f"aim-matcher run: cannot load Kubernetes configuration ({source}): {exc}",
            file=sys.stderr,
        )
        return 2
    try:
        controller = Controller(api, settings)
    except (ValueError, OSError) as exc:
        print(f"aim-matcher run: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    controller.start()
    log.info(
        "started",
        extra={
            "identity": settings.identity,
            "health_port": controller.health.port if controller.health else "",
            "leader_election": settings.leader_election,
        },
    )
    stop.wait()
    controller.stop(release=True)
    closer: Any = api
    closer.close()
    log.info("stopped")
    return 0
