"""What the controller benchmarks ask of an ``aim-matcher run`` process: a free port for it,
starting and stopping it, its readiness, one of its metrics, and the nearest-rank percentile
they print."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_matcher(
    kubeconfig: Path, port: int, log: IO[str], *, src: Path = REPO, extra: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``aim-matcher run`` as a process of its own, as in a cluster, from the checkout ``src``:
    health and metrics on loopback ``port``, its Lease and ConfigMap in ``default``, warnings
    only; ``extra`` flags come last, so they win."""
    return subprocess.Popen(
        [sys.executable, "-m", "matcher", "run", "--kubeconfig", str(kubeconfig),
         "--health-addr", f"127.0.0.1:{port}", "--lease-namespace", "default",
         "--config-map-namespace", "default", "--log-level", "warning", *extra],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(src)), cwd=src,
    )  # fmt: skip


def stop(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL whatever has not exited 15 s later."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def metric(port: int, name: str) -> float:
    """The value of an unlabelled series, 0 when the process does not answer or lacks it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return 0.0


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]
