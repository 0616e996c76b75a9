"""``aim-matcher run``: the live controller as a process.

Configuration comes from flags (and POD_NAMESPACE / POD_NAME / POD_IP / KUBECONFIG from the
environment, as the Deployment sets them); logs are JSON lines (or text) on stderr, and the
effective settings are logged once at start; SIGTERM and SIGINT stop the controller and release
the lease so a standby replica takes over at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from types import FrameType

from aimkit import logs, signals
from aimkit.build import version, version_line
from aimkit.http import split_host_port
from aimkit.kube import ConfigError, connect
from aimkit.logs import settings_fields
from matcher.controller.informer import InformerSettings
from matcher.controller.manager import DEFAULT_CONFIG_MAP, Controller, ControllerSettings
from matcher.controller.webhook import CERTS_EXTERNAL, CERTS_SELF, WebhookSettings
from matcher.webhook.server import BEFORE_SYNC_DENY, BEFORE_SYNC_IGNORE

log = logging.getLogger("matcher.controller")


def build_parser() -> argparse.ArgumentParser:
    namespace = os.environ.get("POD_NAMESPACE", "default")
    p = argparse.ArgumentParser(
        prog="aim-matcher run",
        description="Watch nodes and AIM profiles; keep every profile's status true.",
    )
    p.add_argument("--version", action="version", version=version_line("aim-matcher"))
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
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=8,
        help="reconcile workers, and so the most status writes in flight at once (default 8)",
    )
    p.add_argument(
        "--coalesce-delay",
        type=float,
        default=0.2,
        help="seconds a node event waits before the profiles it affects are re-evaluated, so "
        "a burst of node events is one write per profile (default 0.2)",
    )
    p.add_argument(
        "--rate-limit-qps",
        type=float,
        default=20.0,
        help="global token bucket over retries of failed status writes, per second; 0 "
        "disables (default 20)",
    )
    p.add_argument(
        "--rate-limit-burst", type=_positive_int, default=300, help="its burst (default 300)"
    )
    p.add_argument(
        "--resync-period",
        type=float,
        default=600.0,
        help="re-evaluate every profile this often in seconds; 0 disables (default 600)",
    )
    p.add_argument("--page-size", type=int, default=500, help="list page size (default 500)")
    p.add_argument("--watch-timeout", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument(
        "--degraded-after",
        type=float,
        default=30.0,
        help="seconds list/watch of nodes must fail without a success before profiles show "
        "Degraded (default 30)",
    )
    p.add_argument(
        "--failure-threshold",
        type=_positive_int,
        default=3,
        help="consecutive failed watches before the next attempt is a full re-list (default 3)",
    )
    p.add_argument("--backoff-cap", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument(
        "--health-addr",
        default=":8080",
        help="HOST:PORT for /metrics, /healthz, /readyz; no HOST: $POD_IP and 127.0.0.1 in a "
        "pod, 127.0.0.1 outside one; port 0 picks one; '' disables (default :8080)",
    )
    p.add_argument("--metrics-port", type=int, help="shorthand for --health-addr :PORT")
    p.add_argument("--no-events", action="store_true", help="do not record Kubernetes Events")
    p.add_argument(
        "--profile-metrics-limit",
        type=int,
        default=10000,
        help="at most this many aim_profile_status series, one per profile; 0: none "
        "(default 10000)",
    )
    hook = p.add_argument_group(
        "admission webhook",
        "Pods labelled aim.eai.amd.com/profile or aim.eai.amd.com/aim-id get their profile's "
        "node affinity and resources (docs/deploy.md). Served by every replica from its caches.",
    )
    hook.add_argument(
        "--webhook-addr",
        default="",
        help="HOST:PORT of the webhook's HTTPS listener; no HOST: as --health-addr; '' disables "
        "(default: disabled; the install sets :9443)",
    )
    hook.add_argument(
        "--webhook-namespace",
        default=namespace,
        help="namespace of the webhook's Secret and Service (default: $POD_NAMESPACE)",
    )
    hook.add_argument(
        "--webhook-secret",
        default="aim-matcher-webhook-tls",
        help="Secret holding the CA and serving certificate (default %(default)s)",
    )
    hook.add_argument(
        "--webhook-configuration",
        default="aim-matcher",
        help="MutatingWebhookConfiguration whose caBundle the leader keeps (default %(default)s)",
    )
    hook.add_argument(
        "--webhook-service",
        default="aim-matcher-webhook",
        help="Service the API server calls; its DNS names go in the certificate "
        "(default %(default)s)",
    )
    hook.add_argument(
        "--webhook-cert-host",
        action="append",
        default=[],
        metavar="HOST",
        help="another DNS name or IP address for the serving certificate (repeatable)",
    )
    hook.add_argument(
        "--webhook-certs",
        choices=[CERTS_SELF, CERTS_EXTERNAL],
        default=CERTS_SELF,
        help="self: the leader keeps a CA and serving certificate in the Secret and the CA in "
        "the webhook configuration, renewing both before they expire; external: another "
        "(cert-manager) does, the matcher only serves what the Secret holds (default self)",
    )
    hook.add_argument(
        "--webhook-before-sync",
        choices=[BEFORE_SYNC_DENY, BEFORE_SYNC_IGNORE],
        default=BEFORE_SYNC_DENY,
        help="a pod that arrives before the profile caches are filled (after a 2 s wait): "
        "deny it, asking to retry, or ignore the webhook and admit it unchanged with a "
        "warning (default deny)",
    )
    p.add_argument("--log-level", default="info", choices=logs.LEVELS)
    p.add_argument(
        "--log-format",
        default="json",
        choices=logs.FORMATS,
        help="json lines (default) or text (key=value) on stderr",
    )
    return p


def settings_from_args(args: argparse.Namespace) -> ControllerSettings:
    health_port: int | None = None
    health_host = ""
    if args.metrics_port is not None:
        args.health_addr = f":{args.metrics_port}"
    if args.health_addr:
        health_host, health_port = split_host_port(args.health_addr)
    webhook: WebhookSettings | None = None
    if args.webhook_addr:
        host, port = split_host_port(args.webhook_addr)
        webhook = WebhookSettings(
            host=host,
            port=port,
            namespace=args.webhook_namespace,
            secret_name=args.webhook_secret,
            configuration_name=args.webhook_configuration,
            service_name=args.webhook_service,
            extra_hosts=tuple(args.webhook_cert_host),
            certificates=args.webhook_certs,
            before_sync=args.webhook_before_sync,
        )
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
        coalesce_delay=args.coalesce_delay,
        rate_limit_qps=args.rate_limit_qps,
        rate_limit_burst=args.rate_limit_burst,
        informer=InformerSettings(
            page_size=args.page_size,
            watch_timeout=args.watch_timeout,
            failure_threshold=args.failure_threshold,
            degraded_after=args.degraded_after,
            backoff_cap=args.backoff_cap,
        ),
        profile_metrics_limit=args.profile_metrics_limit,
        events=not args.no_events,
        health_host=health_host,
        health_port=health_port,
        webhook=webhook,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        # Audit logs (and the tests' request record) tell the replicas apart by the agent.
        # One connection per worker, per informer's watch, and a few for the lease and events.
        pool_size = settings.workers + len(settings.profile_namespaces or ("",)) + 6
        api = connect(
            args.kubeconfig, user_agent=f"aim-matcher/{settings.identity}", pool_size=pool_size
        )
    except ConfigError as exc:
        print(f"aim-matcher run: cannot load Kubernetes configuration: {exc}", file=sys.stderr)
        return 2
    log.info("settings", extra={"version": version(), **settings_fields(settings)})
    log.info("kubernetes api", extra=api.log_fields())
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
            "webhook_port": controller.webhook.server.port if controller.webhook else "",
            "leader_election": settings.leader_election,
        },
    )
    signals.wait(stop)  # sliced: a signal another thread received is seen too
    controller.stop(release=True)
    api.close()
    log.info("stopped")
    return 0
