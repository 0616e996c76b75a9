"""``kubectl aim`` at cluster scale: 5,000 realistic nodes and 1,000 profiles on a real
kube-apiserver (etcd and kube-apiserver from ``make tools``, as the tests start them).

Run: ``.venv/bin/python -m benchmarks.bench_plugin`` (about 10 minutes on a shared 2-core
machine: 2-3 creating the nodes, then 30 measured runs; ``--nodes 1000`` for a quick look).
Nodes and profiles come from ``benchmarks.realistic`` (about 14 KB a GPU node, as kubelets and
the detector leave them).
Each figure is one process run as a user runs it, through the real kubectl, which finds
``kubectl-aim`` on PATH: wall time, CPU time and peak RSS (``wait4``), medians over the runs
(their number printed, min..max of the wall time beside it). Each run is started by a small
launcher process, not by this one: Linux carries the forking process's resident size over
``exec`` into the child's ``ru_maxrss``, so a child of a big parent reports at least the
parent's size (a child of this process, which holds the generated nodes, reported 260 MiB for
everything).

The baseline is what a platform team runs today to see the same nodes:
``kubectl get nodes -o json`` (the same list, decoded and printed by kubectl, no evaluation).
The plugin reads that list a page of 500 at a time, keeps only each node's projection, and
evaluates every profile against every node (``matcher.core.explain``), so its cost over the
baseline is the evaluation. Target: ``kubectl aim nodes`` at 1k profiles x 5k nodes within 3x
the baseline's wall time and under 300 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.bench_offline import Figure
from benchmarks.realistic import realistic_nodes, realistic_profiles
from scripts.k8s_tools import tool
from tests.controlplane.plane import ControlPlane

REPO = Path(__file__).resolve().parent.parent
SEED = 20261129
PROFILES = 1_000
NODES = 5_000
SERVER_SET = ("resourceVersion", "uid", "creationTimestamp", "managedFields")
TARGET_RATIO, TARGET_MIB = 3.0, 300.0


def _ok(answer: tuple[int, Any], what: str) -> None:
    status, body = answer
    if status >= 300:
        raise SystemExit(f"{what}: HTTP {status}: {body}")


def populate(plane: ControlPlane, nodes: int) -> str:
    """The CRDs, ``nodes`` nodes with their status, 1,000 profiles, the matcher's ConfigMap;
    returns the name of a NotAvailable-prone profile for ``why``."""
    kubectl = [tool("kubectl"), "--kubeconfig", str(plane.admin_kubeconfig)]
    for args in (
        ["apply", "-f", str(REPO / "daemonset/crds")],
        ["wait", "--for=condition=Established", "crd", "--all"],
    ):
        subprocess.run([*kubectl, *args], check=True, capture_output=True, timeout=120)

    def create(node: dict[str, Any]) -> None:
        meta = {k: v for k, v in node["metadata"].items() if k not in SERVER_SET}
        name = meta["name"]
        _ok(plane.request("POST", "/api/v1/nodes", {**node, "metadata": meta}), f"node {name}")
        status = {"status": node["status"]}
        _ok(plane.request("PATCH", f"/api/v1/nodes/{name}/status", status), f"node {name}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, realistic_nodes(nodes, seed=SEED)))
    namespaces = {"aim-system", "ml-team", "research", "prod-inference"}
    for ns in sorted(namespaces):
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        _ok(plane.request("POST", "/api/v1/namespaces", namespace), f"namespace {ns}")
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "aim-matcher-config"},
    }
    _ok(plane.request("POST", "/api/v1/namespaces/aim-system/configmaps", configmap), "configmap")
    why = ""
    for profile in realistic_profiles(PROFILES, seed=SEED):
        meta = profile["metadata"]
        meta.pop("generation", None)
        # realistic names carry the model as written (epyc_zen4): not a valid object name.
        meta["name"] = meta["name"].replace("_", "-")
        if profile["kind"] == "AIMClusterProfile":
            path = "/apis/aim.eai.amd.com/v1alpha2/aimclusterprofiles"
            why = why or (meta["name"] if "mi300x" in meta["name"] else "")
        else:
            path = f"/apis/aim.eai.amd.com/v1alpha2/namespaces/{meta['namespace']}/aimprofiles"
        _ok(plane.request("POST", path, profile), f"profile {meta['name']}")
    return why


#: Runs one command with stdout to a file; prints its wall and CPU seconds, peak RSS and exit
#: code. A fresh small process, so that the command's ru_maxrss is its own.
LAUNCHER = r"""
import json, os, sys, time
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(out, 1)
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps([time.perf_counter() - started, usage.ru_utime + usage.ru_stime,
                  usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)]))
"""


def measure(label: str, command: list[str], runs: int, work: Path) -> Figure:
    figure = Figure(label)
    out = work / "out.txt"
    for _ in range(runs):
        launched = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, str(out), *command],
            capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        seconds, cpu, mib, code = json.loads(launched.stdout)
        if code not in (0, 1) or launched.stderr:
            raise SystemExit(f"{' '.join(command)} failed ({code}):\n{launched.stderr}")
        figure.seconds.append(seconds)
        figure.cpu_seconds.append(cpu)
        figure.peak_mib.append(mib)
        figure.output = hashlib.sha256(out.read_bytes()).hexdigest()
    print(figure.line(), flush=True)
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=NODES)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "kubectl-aim").exists():
        raise SystemExit(f"{bin_dir / 'kubectl-aim'} is missing: make .venv/.synced")
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(Path(tmp) / "plane") as plane:
        started = time.perf_counter()
        why = populate(plane, args.nodes)
        print(
            f"kube-apiserver with {args.nodes:,} realistic nodes and {PROFILES:,} profiles "
            f"(seed {SEED}) ready in {time.perf_counter() - started:.0f} s"
        )
        os.environ["KUBECONFIG"] = str(plane.admin_kubeconfig)
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        kubectl = tool("kubectl")
        work = Path(tmp)
        print(f"{'':2}{'':<44} {'wall':>9} {'(min..max)':<15} {'CPU':>9} {'peak RSS':>11}")
        plan = [
            ("baseline: kubectl get nodes -o json", [kubectl, "get", "nodes", "-o", "json"]),
            ("kubectl aim nodes", [kubectl, "aim", "nodes"]),
            ("kubectl aim nodes -o wide", [kubectl, "aim", "nodes", "-o", "wide"]),
            ("kubectl aim nodes -o json (3 near misses)", [kubectl, "aim", "nodes", "-o", "json"]),
            ("kubectl aim check", [kubectl, "aim", "check"]),
            (f"kubectl aim why {why[:28]}...", [kubectl, "aim", "why", why]),
        ]
        figures: dict[str, Figure] = {}
        for label, command in plan:
            figures[label] = measure(label, command, args.runs, work)
    base, nodes = figures[plan[0][0]], figures["kubectl aim nodes"]
    ratio = nodes.median_s / base.median_s
    print(
        f"\n  kubectl aim nodes: {nodes.median_s:.2f} s, {nodes.median_mib:.0f} MiB; "
        f"kubectl get nodes -o json: {base.median_s:.2f} s, {base.median_mib:.0f} MiB "
        f"({ratio:.1f}x the wall time; CPU {statistics.median(nodes.cpu_seconds):.2f} s "
        f"against {statistics.median(base.cpu_seconds):.2f} s)"
    )
    checks = [
        (f"nodes within {TARGET_RATIO:.0f}x the baseline's wall time", ratio <= TARGET_RATIO),
        (f"nodes under {TARGET_MIB:.0f} MiB", nodes.median_mib < TARGET_MIB),
    ]
    if args.nodes != NODES:
        print(f"  (targets are for {NODES:,} nodes)")
        return 0
    for text, passed in checks:
        print(f"  target {text:<52} {'OK' if passed else 'MISSED'}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
