"""The node agent in its loop: peak memory, and API writes when nothing (or one thing) changes.

Host: the 8 x MI300X CPX-NPS4 + 2 x EPYC 9654 fixture; cluster: the project's test API server.

1. Memory: ``aim-detector`` runs as its own process in node mode with a short interval (and its
   metrics server on) for ``--cycles`` cycles, once with ``--gpu-backend sysfs`` and once with
   ``auto`` on the amdsmi image's path (the real amdsmi wrapper on the C stand-in for
   libamd_smi.so, tests/amdsmi_stub, cross-checked against sysfs every cycle); its RSS is
   sampled with psutil while it runs, and its peak RSS is the kernel's high-water mark of its
   address space (``VmHWM`` in ``/proc/<pid>/status``), read just before SIGTERM. Target:
   under 40 MiB for the default (sysfs) image (issue 14; it was 58 with the ``kubernetes``
   package); the amdsmi run is reported. Start-up: from exec to the first labels on the Node
   (the first patch the API server records). (Not ``ru_maxrss``:
   Linux carries it over from the parent across fork and exec, so a child started from this
   benchmark, which holds the API server, would report the parent's size.)
2. Writes: an agent (real probes, real client, real publisher) runs 100 unchanged cycles
   (target: 0 writes), then the node's GPUs disappear (target: 1 write, made on the second
   cycle that no longer sees them), then someone deletes one of its labels (target: 1 write).

Run: ``.venv/bin/python -m benchmarks.bench_detector_loop``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from aimkit.kube import connect
from benchmarks.matcher_process import free_port
from detector.agent import Agent, host_probes
from detector.labels import LABEL_PREFIX
from detector.probes.roots import HostRoots
from detector.publish.node import NodePublisher
from tests.amdsmi_stub import HOST_ENV, BuildError, build_rocm
from tests.apiserver import ApiServer
from tests.hosttrees import amdsmi_host, build_host

HOST = "mi300x-8-cpx-nps4"
NO_GPU_HOST = "epyc-zen4-2s"
NODE = "bench-node"
TARGET_MIB = 40.0


def _node(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }


def _cycles_done(port: int) -> int:
    """Cycles the agent finished, from its own metrics (GPU probe count)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith('aim_detector_probe_duration_seconds_count{source="gpu"}'):
            return int(float(line.split()[-1]))
    return 0


def measure_memory(
    srv: ApiServer,
    kubeconfig: Path,
    root: Path,
    cycles: int,
    *,
    backend: str = "sysfs",
    extra_env: dict[str, str] | None = None,
    node: str = NODE,
) -> dict[str, Any]:
    srv.seed(_node(node))
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "detector",
        "--node-name",
        node,
        "--kubeconfig",
        str(kubeconfig),
        "--host-root",
        str(root),
        "--gpu-backend",
        backend,
        "--interval",
        "0.02",
        "--jitter",
        "0",
        "--metrics-address",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        "--log-level",
        "warning",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIM_DETECTOR_")}
    env.update(extra_env or {})
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    peak_sampled = 0
    after_first: int | None = None
    deadline = started + 300
    done = 0
    milestones = [m for m in (10, 100, 300, 1000, 3000, 10000) if m < cycles] + [cycles]
    by_cycle: dict[int, float] = {}
    first_patch: float | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        rss = ps.memory_info().rss
        peak_sampled = max(peak_sampled, rss)
        if first_patch is None and label_writes(srv, node):
            first_patch = time.monotonic() - started
        done = _cycles_done(port)
        if done >= 1 and after_first is None:
            after_first = rss
        while milestones and done >= milestones[0]:
            by_cycle[milestones.pop(0)] = rss / 2**20
        if done >= cycles:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    hwm = _vm_hwm_kib(proc.pid)
    patches = label_writes(srv, node)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return {
        "cycles": done,
        "seconds": elapsed,
        "first_patch_s": first_patch if first_patch is not None else float("nan"),
        "rss_after_first_cycle_mib": (after_first or 0) / 2**20,
        "rss_peak_sampled_mib": peak_sampled / 2**20,
        "vm_hwm_mib": hwm / 1024,
        "by_cycle": by_cycle,
        "patches": patches,
        "exit_code": proc.returncode,
    }


def label_writes(srv: ApiServer, node: str) -> int:
    """Patches of ``node`` that wrote (not the node fence's dry runs, which store nothing)."""
    return sum(
        1
        for r in srv.requests.snapshot()
        if r.verb == "patch"
        and r.path.endswith(f"/nodes/{node}")
        and r.query.get("dryRun") != "All"
    )


def _vm_hwm_kib(pid: int) -> int:
    """Peak resident set of the process's address space since exec, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def measure_writes(srv: ApiServer, kubeconfig: Path, trees: Path) -> dict[str, int]:
    name = NODE + "-writes"
    srv.seed(_node(name))
    host = trees / "host"
    host.symlink_to(build_host(trees, HOST))
    api = connect(kubeconfig)
    agent = Agent(host_probes(HostRoots.from_host_root(host), "sysfs"), NodePublisher(api, name))

    def patches() -> int:
        # The server records a request just after answering it: let the last one land.
        time.sleep(0.05)
        return label_writes(srv, name)

    agent.run_cycle()
    first = patches()
    for _ in range(100):
        agent.run_cycle()
    unchanged = patches() - first

    before = patches()
    gone = trees / "host.new"
    gone.symlink_to(build_host(trees, NO_GPU_HOST))
    gone.replace(host)
    for _ in range(10):
        agent.run_cycle()
    after_gpus_gone = patches() - before

    before = patches()
    key = LABEL_PREFIX + "EPYC_ZEN4"
    srv.seed(_node(name))  # someone replaces the Node's labels: our EPYC label is gone
    for _ in range(10):
        agent.run_cycle()
    after_label_deleted = patches() - before
    stored = srv.get_object("v1", "Node", name) or {}
    restored = key in (stored.get("metadata", {}).get("labels") or {})
    api.close()
    return {
        "first_cycle": first,
        "unchanged_100": unchanged,
        "gpus_gone_10": after_gpus_gone,
        "label_deleted_10": after_label_deleted,
        "label_restored": int(restored),
    }


def _measure_amdsmi(
    srv: ApiServer, kubeconfig: Path, base: Path, root: Path, cycles: int
) -> dict[str, Any] | None:
    try:
        rocm = build_rocm(base / "rocm")
    except BuildError as err:
        print(f"(the amdsmi run is skipped: {err})")
        return None
    description = base / "amdsmi-host.txt"
    description.write_text(amdsmi_host(HOST))
    env = {"ROCM_PATH": str(rocm), HOST_ENV: str(description)}
    return measure_memory(
        srv, kubeconfig, root, cycles, backend="auto", extra_env=env, node=NODE + "-amdsmi"
    )


def _print_memory(mem: dict[str, Any], gated: bool = True) -> None:
    ok = mem["vm_hwm_mib"] < TARGET_MIB
    print(
        f"  cycles run               {mem['cycles']:.0f} in {mem['seconds']:.1f} s "
        f"(interval 0.02 s), exit code {mem['exit_code']:.0f} after SIGTERM"
    )
    print(f"  start-up to first labels {mem['first_patch_s']:.2f} s (exec to the Node patch)")
    print(f"  RSS after first cycle    {mem['rss_after_first_cycle_mib']:.1f} MiB")
    trend = ", ".join(f"{c}: {v:.1f}" for c, v in mem["by_cycle"].items())
    print(f"  RSS by cycle (MiB)       {trend}")
    print(f"  RSS peak (sampled)       {mem['rss_peak_sampled_mib']:.1f} MiB")
    verdict = f"target < {TARGET_MIB:.0f} MiB  {'OK' if ok else 'MISSED'}" if gated else "reported"
    print(f"  peak RSS (VmHWM)         {mem['vm_hwm_mib']:.1f} MiB   {verdict}")
    print(f"  node patches             {mem['patches']:.0f} (the first cycle's only; no dry runs)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300, help="cycles of the agent process")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, ApiServer() as srv:
        base = Path(tmp)
        kubeconfig = srv.write_kubeconfig(base / "kubeconfig")
        root = build_host(base / "trees", HOST)
        mem = measure_memory(srv, kubeconfig, root, args.cycles)
        smi = _measure_amdsmi(srv, kubeconfig, base, root, args.cycles)
        writes = measure_writes(srv, kubeconfig, base / "writes")

    ok_mem = mem["vm_hwm_mib"] < TARGET_MIB
    print(f"agent process, node mode, fixture {HOST}, test API server, --gpu-backend sysfs")
    _print_memory(mem)
    if smi is not None:
        # Reported, not gated: the 40 MiB target is the default image's; the amdsmi image also
        # holds AMD's wrapper (about 7 MiB of ctypes definitions once imported).
        print("the same, --gpu-backend auto: amdsmi wrapper on the libamd_smi.so stand-in")
        _print_memory(smi, gated=False)
    print("API writes (Node patches), in-process agent")
    print(f"  first cycle              {writes['first_cycle']}")
    print(
        f"  100 unchanged cycles     {writes['unchanged_100']}   target 0  "
        f"{'OK' if writes['unchanged_100'] == 0 else 'MISSED'}"
    )
    print(
        f"  GPUs gone, 10 cycles     {writes['gpus_gone_10']}   target 1  "
        f"{'OK' if writes['gpus_gone_10'] == 1 else 'MISSED'}"
    )
    print(
        f"  label deleted, 10 cycles {writes['label_deleted_10']}   target 1  "
        f"{'OK' if writes['label_deleted_10'] == 1 and writes['label_restored'] else 'MISSED'}"
    )
    ok = ok_mem and writes["unchanged_100"] == 0 and writes["gpus_gone_10"] == 1
    return 0 if ok and writes["label_deleted_10"] == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
