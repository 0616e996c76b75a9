"""The test API server at the matcher's scale: 5,000 Nodes stored.

Run: ``.venv/bin/python -m benchmarks.bench_apiserver`` (about 20 s). The server runs in a
child process (so its RSS is its own); the parent is an ordinary official-client user.
Figures: full Node list through ``CoreV1Api.list_node`` (typed models, and the raw JSON),
1,000 watch events delivered to a ``kubernetes.watch.Watch`` consumer (server-side writes,
so the figure is delivery, not HTTP write latency), 1,000 label patches over HTTP, and the
server's RSS. Targets: list < 1 s, 1,000 events < 1 s, RSS < 500 MiB.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, config, watch

from tests.apiserver import ApiServer
from tests.apiserver.kubeconfig import write_kubeconfig

NODES = 5_000
EVENTS = 1_000


def node(i: int) -> dict[str, Any]:
    gpu = i % 4 != 0
    labels = {
        "kubernetes.io/hostname": f"node-{i:05d}",
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "mi300x-8" if gpu else "cpu-192",
        "topology.kubernetes.io/zone": f"zone-{i % 3}",
    }
    if gpu:
        labels["feature.node.kubernetes.io/aim-accelerator.MI300X"] = "8"
        labels["feature.node.kubernetes.io/aim-accelerator.EPYC_ZEN4"] = "192"
    resources = {"cpu": "192", "memory": "2113459764Ki", "pods": "110", "ephemeral-storage": "7Ti"}
    if gpu:
        resources["amd.com/gpu"] = "8"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"node-{i:05d}", "labels": labels},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": f"boot-{i}",
                "containerRuntimeVersion": "containerd://1.7.24",
                "kernelVersion": "6.8.0-51-generic",
                "kubeProxyVersion": "v1.32.1",
                "kubeletVersion": "v1.32.1",
                "machineID": f"machine-{i}",
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.1 LTS",
                "systemUUID": f"uuid-{i}",
            },
        },
    }


def _serve(conn: Connection) -> None:
    srv = ApiServer().start()
    start = time.perf_counter()
    for i in range(NODES):
        srv.seed(node(i))
    seeded = time.perf_counter() - start
    conn.send({"url": srv.url, "seed_s": seeded})
    reg = srv.registry
    nodes = reg.lookup("", "v1", "nodes")
    while True:
        cmd = conn.recv()
        if cmd == "writes":
            t0 = time.perf_counter()
            for i in range(EVENTS):
                body = json.dumps({"metadata": {"labels": {"bench": str(i)}}}).encode()
                reg.patch(
                    nodes, None, f"node-{i % NODES:05d}", "application/merge-patch+json", body
                )
            conn.send(time.perf_counter() - t0)
        elif cmd == "rss":
            conn.send(psutil.Process().memory_info().rss)
        else:
            srv.stop()
            return


def _list_figures(api: Any) -> tuple[float, float]:
    core = client.CoreV1Api(api)
    typed, raw = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        items = core.list_node().items
        typed.append(time.perf_counter() - t0)
        assert len(items) == NODES
        t0 = time.perf_counter()
        resp: Any = core.list_node(_preload_content=False)
        doc = json.loads(resp.read())
        raw.append(time.perf_counter() - t0)
        assert len(doc["items"]) == NODES
    return statistics.median(typed), statistics.median(raw)


def _watch_figure(api: Any, conn: Connection) -> tuple[float, float]:
    core = client.CoreV1Api(api)
    listed: Any = core.list_node(limit=1)
    rv = listed.metadata.resource_version
    got = 0
    started = threading.Event()
    done = threading.Event()
    last = [0.0]

    def consume() -> None:
        nonlocal got
        w = watch.Watch()
        started.set()
        for ev in w.stream(core.list_node, resource_version=rv, timeout_seconds=60):
            if ev["type"] == "MODIFIED":
                got += 1
                if got == EVENTS:
                    last[0] = time.perf_counter()
                    w.stop()
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    started.wait()
    time.sleep(0.2)  # let the watch request reach the server before the writes
    t0 = time.perf_counter()
    conn.send("writes")
    write_s = conn.recv()
    done.wait(60)
    return (last[0] - t0) if got == EVENTS else float("inf"), write_s


def _http_patch_figure(api: Any) -> float:
    core = client.CoreV1Api(api)
    t0 = time.perf_counter()
    for i in range(EVENTS):
        core.patch_node(f"node-{i:05d}", {"metadata": {"labels": {"http": str(i)}}})
    return time.perf_counter() - t0


def main() -> None:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    info = parent.recv()
    with tempfile.TemporaryDirectory() as tmp:
        kc = write_kubeconfig(Path(tmp) / "kubeconfig", info["url"])
        api = config.new_client_from_config(str(kc))
        typed, raw = _list_figures(api)
        delivered, server_writes = _watch_figure(api, parent)
        http_patches = _http_patch_figure(api)
        parent.send("rss")
        rss = parent.recv()
        parent.send("stop")
        proc.join(10)
        api.close()
    print(f"test API server with {NODES} Nodes (server in its own process)")
    print(f"  seed {NODES} nodes in-process:          {info['seed_s']:.2f} s")
    print(f"  full list, typed V1NodeList (median 3): {typed:.3f} s   (target < 1 s)")
    print(f"  full list, raw JSON (median 3):         {raw:.3f} s")
    print(
        f"  {EVENTS} watch events delivered:         {delivered:.3f} s   (target < 1 s; "
        f"server writes took {server_writes:.3f} s)"
    )
    rate = EVENTS / http_patches
    print(f"  {EVENTS} label patches over HTTP:        {http_patches:.2f} s  ({rate:.0f}/s)")
    print(f"  server RSS:                             {rss / 2**20:.0f} MiB  (target < 500 MiB)")


if __name__ == "__main__":
    main()
