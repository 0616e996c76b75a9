"""Standalone test API server: `python -m tests.apiserver --port 6443 --crds daemonset/crds
--kubeconfig out/kubeconfig` (runs until Ctrl-C)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from aimkit import signals

from .server import ApiServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.apiserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443, help="0 picks a free port")
    parser.add_argument(
        "--crds",
        action="append",
        default=[],
        metavar="PATH",
        help="CRD YAML file or directory (repeatable)",
    )
    parser.add_argument("--kubeconfig", default="out/kubeconfig", metavar="PATH")
    parser.add_argument(
        "--bookmark-interval", type=float, default=60.0, help="seconds between watch BOOKMARKs"
    )
    args = parser.parse_args(argv)
    crds = [Path(p) for p in args.crds]
    missing = [str(p) for p in crds if not p.exists()]
    if missing:
        print(f"warning: CRD path(s) not found, skipped: {', '.join(missing)}", file=sys.stderr)
    try:
        srv = ApiServer(
            crd_paths=[p for p in crds if p.exists()],
            host=args.host,
            port=args.port,
            bookmark_interval=args.bookmark_interval,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        srv.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    path = srv.write_kubeconfig(args.kubeconfig).resolve()
    served = sorted(rt.qualified for rt in srv.registry.types() if rt.is_custom)
    print(f"test API server listening on {srv.url}")
    print(f"custom resources: {', '.join(served) or '(none)'}")
    print(f"kubeconfig: {path}")
    print(f"export KUBECONFIG={path}", flush=True)
    done = threading.Event()
    # Both set here, as the agents do: a program started from a background job (`cmd &` in a
    # script, a CI runner) inherits SIGINT ignored, and Python then keeps it ignored, so
    # Ctrl-C (or the test's SIGINT) would never reach a KeyboardInterrupt.
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        signals.wait(done)  # sliced: a signal another thread received is seen too
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
