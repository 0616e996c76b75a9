"""The live controller against the test API server: 5,000 nodes and 1,000 profiles.

Run: ``.venv/bin/python -m benchmarks.bench_controller`` (about 40 s on 2 cores). The API
server runs in this process (objects seeded directly, no HTTP); ``aim-matcher run`` runs as
a subprocess, as in a cluster. Printed:

- time from process start (and from its caches syncing) until every profile has a status;
- latency from a single node label change to the affected profiles' status writes, median
  and p99 over 100 changes (each change flips the profiles of one accelerator model);
- the matcher's peak RSS, sampled every 20 ms with psutil;
- status writes per heartbeat-only node update (1,000 heartbeats).

Targets (issue 5): < 30 s, < 1 s, < 300 MiB, 0. Extra matcher flags can be passed in
``BENCH_MATCHER_ARGS`` (e.g. ``--workers 4``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, config

from detector.labels import accelerator_label_key, partition_label_key
from matcher.core.nodes import node_view
from tests.apiserver import ApiServer

REPO = Path(__file__).resolve().parent.parent
SEED = 20261127
GROUP, VERSION = "aim.eai.amd.com", "v1alpha2"
#: (model, GPUs per node, share of nodes, CPU generation label)
GPU_MODELS = [
    ("MI300X", 8, 0.25, "EPYC_ZEN4"),
    ("MI325X", 8, 0.15, "EPYC_ZEN5"),
    ("MI355X", 8, 0.10, "EPYC_ZEN5"),
    ("MI350X", 8, 0.08, "EPYC_ZEN5"),
    ("MI300A", 4, 0.07, "EPYC_ZEN4"),
    ("MI250X", 4, 0.05, "EPYC_ZEN3"),
    ("MI210", 4, 0.05, "EPYC_ZEN3"),
    ("MI100", 4, 0.05, "EPYC_ZEN2"),
]
#: A model no node has at first: toggling its label on one node flips only its profiles.
TOGGLE_MODEL = "MI308X"
TOGGLE_PROFILES = 10
EXTRA = os.environ.get("BENCH_MATCHER_ARGS", "").split()


def _node(name: str, rng: random.Random) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    allocatable = {"cpu": "190", "memory": "2000Gi", "pods": "110", "ephemeral-storage": "3Ti"}
    roll, acc = rng.random(), 0.0
    for model, gpus, share, cpu in GPU_MODELS:
        acc += share
        if roll < acc:
            labels[accelerator_label_key(model)] = str(gpus)
            labels[partition_label_key("default")] = str(gpus)
            labels[accelerator_label_key(cpu)] = "192"
            allocatable["amd.com/gpu"] = str(gpus)
            break
    else:
        labels[accelerator_label_key("EPYC_ZEN5")] = "256"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": True} if rng.random() < 0.01 else {},
        "status": {
            "capacity": dict(allocatable),
            "allocatable": allocatable,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": "2026-11-27T08:00:00Z",
                    "lastTransitionTime": "2026-11-01T00:00:00Z",
                },
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientMemory",
                    "lastHeartbeatTime": "2026-11-27T08:00:00Z",
                    "lastTransitionTime": "2026-11-01T00:00:00Z",
                },
            ],
            "addresses": [{"type": "InternalIP", "address": f"10.0.{rng.randrange(256)}.1"}],
        },
    }


def _profile(i: int, rng: random.Random) -> dict[str, Any]:
    if i < TOGGLE_PROFILES:
        model, gpus = TOGGLE_MODEL, 1
    else:
        model, max_gpus, _, _ = rng.choice(GPU_MODELS)
        gpus = rng.choice([1, 1, 2, 4, max_gpus, 16])  # 16: NotAvailable everywhere
    spec: dict[str, Any] = {
        "aimId": f"org/model-{i % 97}",
        "image": f"amdenterpriseai/aim-model-{i % 97}:0.8.{i % 7}",
        "metric": rng.choice(["latency", "throughput"]),
        "precision": rng.choice(["fp8", "fp16", "bf16"]),
        "type": rng.choice(["optimized", "general", "preview"]),
    }
    if i < TOGGLE_PROFILES or i % 25 != 5:  # a few CPU-only profiles
        spec.update(acceleratorModel=model, acceleratorType="gpu", acceleratorCount=gpus)
        spec["resources"] = {"requests": {"cpu": str(4 * gpus), "memory": f"{32 * gpus}Gi"}}
    name = f"profile-{i:04d}"
    if i % 5 == 4:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AIMProfile",
            "metadata": {"name": name, "namespace": f"team-{i % 10}"},
            "spec": spec,
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIMClusterProfile",
        "metadata": {"name": name},
        "spec": spec,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return


def _writes(srv: ApiServer, names: set[str] | None = None) -> set[str]:
    """Profiles (by name) with a successful status patch in the request log."""
    out = set()
    for r in srv.requests:
        if r.verb == "patch" and r.path.endswith("/status") and 200 <= r.status < 300:
            name = r.path.rsplit("/", 2)[-2]
            if names is None or name in names:
                out.add(name)
    return out


def _status_patch_count(srv: ApiServer) -> int:
    return sum(
        1
        for r in srv.requests
        if r.verb == "patch" and r.path.endswith("/status") and "aim.eai.amd.com" in r.path
    )


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.002) -> float:
    start = time.monotonic()
    deadline = start + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _list_strategies(kubeconfig: Path) -> None:
    """Why the informers read raw JSON: one paged list of every node, both ways."""
    api = client.ApiClient(_configuration(kubeconfig))
    core: Any = client.CoreV1Api(api)

    def models() -> int:
        count, token = 0, None
        while True:
            page = core.list_node(limit=500, _continue=token)
            count += len([node_view(api.sanitize_for_serialization(n)) for n in page.items])
            token = page.metadata._continue
            if not token:
                return count

    def raw() -> int:
        count, token = 0, None
        while True:
            response = core.list_node(limit=500, _continue=token, _preload_content=False)
            page = json.loads(response.data)
            count += len([node_view(n) for n in page["items"]])
            token = page["metadata"].get("continue")
            if not token:
                return count

    for label, fn in (("generated models", models), ("raw JSON", raw)):
        tracemalloc.start()
        t0 = time.perf_counter()
        count = fn()
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"list {count} nodes into NodeViews via {label}: {elapsed:.2f}s, "
              f"peak allocations {peak / 2**20:.0f} MiB")  # fmt: skip
    api.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--profiles", type=int, default=1000)
    p.add_argument("--changes", type=int, default=100)
    p.add_argument("--heartbeats", type=int, default=1000)
    args = p.parse_args(argv)
    rng = random.Random(SEED)

    srv = ApiServer(crd_paths=[REPO / "daemonset" / "crds"]).start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    kubeconfig = srv.write_kubeconfig(tmp / "kubeconfig")
    t = time.monotonic()
    node_names = [f"node-{i:05d}" for i in range(args.nodes)]
    for name in node_names:
        srv.seed(_node(name, rng))
    for ns in {f"team-{i}" for i in range(10)}:
        srv.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    profiles = [_profile(i, rng) for i in range(args.profiles)]
    for obj in profiles:
        srv.seed(obj)
    print(f"seeded {args.nodes} nodes and {args.profiles} profiles in {time.monotonic() - t:.1f}s")
    _list_strategies(kubeconfig)
    all_names = {obj["metadata"]["name"] for obj in profiles}
    toggled = {f"profile-{i:04d}" for i in range(TOGGLE_PROFILES)}

    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = (tmp / "matcher.log").open("w")
    srv.requests.clear()
    started = time.monotonic()
    matcher = subprocess.Popen(
        [sys.executable, "-m", "matcher", "run", "--kubeconfig", str(kubeconfig),
         "--health-addr", f"127.0.0.1:{port}", "--lease-namespace", "default",
         "--config-map-namespace", "default", "--log-level", "warning", *EXTRA],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    sampler = RssSampler(matcher.pid)
    sampler.start()
    try:
        synced = _wait(lambda: _ready(port), 60, "caches synced", interval=0.02)
        first = _wait(lambda: len(_writes(srv)) == len(all_names), 60, "first statuses", 0.05)
        total = time.monotonic() - started
        print(f"first status on all {len(all_names)} profiles: {total:.2f}s after start "
              f"(caches synced at {synced:.2f}s, then {first:.2f}s of writes)")  # fmt: skip

        api = client.ApiClient(_configuration(kubeconfig))
        core = client.CoreV1Api(api)
        key = accelerator_label_key(TOGGLE_MODEL)
        latencies = []
        for i in range(args.changes):
            node = node_names[rng.randrange(len(node_names))]
            srv.requests.clear()
            t0 = time.monotonic()
            core.patch_node(node, {"metadata": {"labels": {key: "8"}}}, _preload_content=False)
            _wait(lambda: _writes(srv, toggled) == toggled, 10, f"change {i}")
            latencies.append(time.monotonic() - t0)
            srv.requests.clear()
            core.patch_node(node, {"metadata": {"labels": {key: None}}}, _preload_content=False)
            _wait(lambda: _writes(srv, toggled) == toggled, 10, f"change {i} undone")
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, round(0.99 * len(latencies)) - 1)]
        print(f"label change -> {len(toggled)} affected statuses written, over {len(latencies)} "
              f"changes: median {statistics.median(latencies) * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")  # fmt: skip

        srv.requests.clear()
        t0 = time.monotonic()
        for i in range(args.heartbeats):
            stamp = f"2026-11-27T09:{i // 60 % 60:02d}:{i % 60:02d}Z"
            core.patch_node_status(
                node_names[i % len(node_names)],
                {"status": {"conditions": [
                    {"type": "Ready", "status": "True", "lastHeartbeatTime": stamp}]}},
                _preload_content=False,
            )  # fmt: skip
        sent = time.monotonic() - t0
        # Barrier: a real change after the heartbeats; once its writes land the controller
        # has processed every heartbeat before it.
        core.patch_node(node_names[0], {"metadata": {"labels": {key: "8"}}}, _preload_content=False)
        _wait(lambda: _writes(srv, toggled) == toggled, 10, "barrier")
        writes = _status_patch_count(srv) - len(toggled)
        print(f"{args.heartbeats} heartbeat-only node updates (sent in {sent:.1f}s): "
              f"{writes} status writes, {writes / args.heartbeats:.3f} per heartbeat")  # fmt: skip
        print(f"matcher peak RSS: {sampler.peak / 2**20:.0f} MiB")
        api.close()
    finally:
        sampler.stopped.set()
        matcher.terminate()
        try:
            matcher.wait(15)
        except subprocess.TimeoutExpired:
            matcher.kill()
        log.close()
        srv.stop()
    return 0


def _configuration(kubeconfig: Path) -> client.Configuration:
    configuration = client.Configuration()
    loader: Any = config.load_kube_config
    loader(config_file=str(kubeconfig), client_configuration=configuration)
    return configuration


if __name__ == "__main__":
    sys.exit(main())
