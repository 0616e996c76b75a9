"""Both agents as processes: start-up time, import time and resident memory.

Cluster: the project's test API server with the CRDs, 100 GPU nodes and 50 AIMClusterProfiles
(the constant cost of a process is measured here; the controller at scale is
``bench_controller``). Each figure is the median of ``--runs`` fresh processes (min-max shown):

- detector: exec to its first labels on the Node (the first PATCH the server records, the node
  fence's dry runs not counted), and its
  peak resident set (``VmHWM``) after 20 cycles of the loop (interval 0.05 s, metrics on);
- matcher (``aim-matcher run``): exec to ``/readyz`` 200 (caches synced), and ``VmHWM`` 2 s
  after that (leader, statuses written);
- import: the agents' modules in a fresh interpreter (``detector.agent`` and its node
  publisher; ``matcher.controller.app``), time and resident set after the import.

``--tree DIR`` runs the agents from another checkout (``PYTHONPATH=DIR``), e.g. the ``main``
branch, for a before/after comparison on the same machine and the same server.

Run: ``.venv/bin/python -m benchmarks.bench_agents [--tree DIR] [--runs N]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_detector_loop import label_writes
from benchmarks.matcher_process import free_port, ready
from tests.apiserver import ApiServer
from tests.controller_support import MI300X, cluster_profile, node_obj
from tests.hosttrees import build_host

REPO = Path(__file__).resolve().parent.parent
HOST = "mi300x-8-cpx-nps4"
IMPORTS = {
    "detector": "import detector.agent, detector.cli, detector.publish.node",
    "matcher": "import matcher.cli, matcher.controller.app, matcher.controller.manager",
}


def _status(pid: int, field: str) -> float:
    """A ``/proc/<pid>/status`` field in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _wait(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.005)


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIM_", "KUBE"))}
    env["PYTHONPATH"] = str(tree)
    return env


def detector_run(
    srv: ApiServer, kubeconfig: Path, root: Path, tree: Path, n: int
) -> tuple[float, float]:
    name = f"bench-{n}"
    srv.seed(node_obj(name))
    port = free_port()
    cmd = [
        sys.executable, "-m", "detector", "--node-name", name, "--kubeconfig", str(kubeconfig),
        "--host-root", str(root), "--gpu-backend", "sysfs", "--interval", "0.05", "--jitter",
        "0", "--metrics-address", "127.0.0.1", "--metrics-port", str(port),
        "--log-level", "warning",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=_env(tree), cwd=tree, stdout=subprocess.DEVNULL)
    try:
        _wait(lambda: label_writes(srv, name) > 0)
        first_labels = time.monotonic() - started
        _wait(lambda: _cycles(port) >= 20)
        hwm = _status(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return first_labels, hwm


def _cycles(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith('aim_detector_probe_duration_seconds_count{source="gpu"}'):
            return int(float(line.split()[-1]))
    return 0


def matcher_run(kubeconfig: Path, tree: Path, n: int) -> tuple[float, float]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "matcher", "run", "--kubeconfig", str(kubeconfig),
        "--identity", f"bench-{n}", "--lease-name", f"bench-{n}",
        "--lease-namespace", "default", "--config-map-namespace", "default",
        "--health-addr", f"127.0.0.1:{port}", "--log-level", "warning",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=_env(tree), cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(lambda: ready(port))
        to_ready = time.monotonic() - started
        time.sleep(2)
        hwm = _status(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return to_ready, hwm


def import_run(statement: str, tree: Path) -> tuple[float, float]:
    code = (
        "import time; t = time.perf_counter(); "
        f"{statement}; "
        "t = time.perf_counter() - t; "
        "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0]; "
        "print(t, int(rss.split()[1]) / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(tree), cwd=tree, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    seconds, mib = out.split()
    return float(seconds), float(mib)


def _summary(values: list[float], unit: str, digits: int) -> str:
    med = statistics.median(values)
    return f"{med:.{digits}f} {unit} (min {min(values):.{digits}f}, max {max(values):.{digits}f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tree", type=Path, default=REPO, help="checkout to run the agents from")
    parser.add_argument("--runs", type=int, default=5, help="processes per figure")
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    logging.disable(logging.WARNING)
    rows: dict[str, list[tuple[float, float]]] = {
        "detector": [],
        "matcher": [],
        "imp-d": [],
        "imp-m": [],
    }
    crds = [REPO / "daemonset" / "crds"]
    with tempfile.TemporaryDirectory() as tmp, ApiServer(crd_paths=crds) as srv:
        base = Path(tmp)
        kubeconfig = srv.write_kubeconfig(base / "kubeconfig")
        root = build_host(base / "trees", HOST)
        for i in range(100):
            srv.seed(node_obj(f"node-{i:03d}", {MI300X: "8"}))
        for i in range(50):
            srv.seed(cluster_profile(f"profile-{i:02d}", "MI300X", 1 + i % 8))
        for n in range(args.runs):
            rows["detector"].append(detector_run(srv, kubeconfig, root, tree, n))
            rows["matcher"].append(matcher_run(kubeconfig, tree, n))
            rows["imp-d"].append(import_run(IMPORTS["detector"], tree))
            rows["imp-m"].append(import_run(IMPORTS["matcher"], tree))

    def col(key: str, i: int) -> list[float]:
        return [float(r[i]) for r in rows[key]]

    print(f"agents from {tree} ({args.runs} processes each; median (min, max))")
    print(f"  detector: exec to first labels   {_summary(col('detector', 0), 's', 2)}")
    print(f"  detector: peak RSS (VmHWM)       {_summary(col('detector', 1), 'MiB', 1)}")
    print(f"  detector: import                 {_summary(col('imp-d', 0), 's', 3)}, "
          f"RSS {statistics.median(col('imp-d', 1)):.1f} MiB")  # fmt: skip
    print(f"  matcher:  exec to /readyz 200    {_summary(col('matcher', 0), 's', 2)}")
    print(f"  matcher:  peak RSS (VmHWM)       {_summary(col('matcher', 1), 'MiB', 1)}")
    print(f"  matcher:  import                 {_summary(col('imp-m', 0), 's', 3)}, "
          f"RSS {statistics.median(col('imp-m', 1)):.1f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
