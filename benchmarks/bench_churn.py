"""The live controller under churn: background heartbeats, several absent models, a cordon storm.

Run: ``.venv/bin/python -m benchmarks.bench_churn`` (1,000 realistic nodes, 300 profiles, 150
label changes; about 3 minutes on 2 idle cores with ``main``'s matcher); ``--changes 1000`` for
p99 (printed only from 1,000 samples up), ``--full`` for 5,000 nodes, 1,000 profiles and 1,000
changes. The scenarios ``bench_controller``
does not run:

- **model appear/disappear across several absent models**: the profiles that want a model no
  node has are spread over three such models (``MI400X``, ``MI450X``, ``MI500X``); one of them
  appears on one node, then leaves. Printed: status writes per event, split into the profiles
  that want that model (their status must change) and every other profile (it need not: a
  NotAvailable message that lists the cluster's models rewrites all of them).
- **change -> status latency under background churn**: 50 node heartbeats a second
  (``lastHeartbeatTime`` of a Ready node's Ready condition, as a kubelet posts them; the
  matcher must ignore them) while a label change makes one absent model appear or leave; the
  time from the change until every profile wanting that model has its status written.
- **a cordon storm**: 100 GPU nodes cordoned within one second, then uncordoned: status writes,
  profiles written, and the time from the first cordon until the last write has landed.

The API server runs in this process and answers every write ``--write-latency`` seconds late
(5 ms by default: a loaded etcd). ``faults.set_latency(..., writes_only=True)`` delays writes
only; on a checkout whose test server lacks ``writes_only`` every request is delayed instead
(said in the output). ``aim-matcher run`` runs as a subprocess, as in a cluster;
``BENCH_MATCHER_ARGS`` passes it extra flags.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aimkit.kube import MERGE_PATCH, KubeClient, connect
from benchmarks.matcher_process import (
    free_port,
    metric,
    percentile,
    ready,
    start_matcher,
    stop,
)
from benchmarks.realistic import ABSENT_MODELS, realistic_nodes, realistic_profiles
from detector.labels import accelerator_label_key
from tests.apiserver import ApiServer

REPO = Path(__file__).resolve().parent.parent
SEED = 20261127
GROUP = "aim.eai.amd.com"
NAMESPACES = ("ml-team", "research", "prod-inference")
#: The absent model realistic profiles want, spread over three no node has.
ABSENT = (ABSENT_MODELS[0], ABSENT_MODELS[1], "MI500X")
STRATEGIC = "application/strategic-merge-patch+json"
EXTRA = os.environ.get("BENCH_MATCHER_ARGS", "").split()


def _status_writes(srv: ApiServer) -> list[str]:
    """Names of the profiles whose status a successful PATCH wrote, one entry per PATCH."""
    return [
        r.path.rsplit("/", 2)[-2]
        for r in srv.requests.snapshot()
        if r.verb == "patch" and r.path.endswith("/status") and GROUP in r.path and r.status < 300
    ]


def _busy(port: int) -> bool:
    # aim_matcher_queue_delayed (coalescing, rate limiter) exists only in newer versions.
    depth = metric(port, "aim_matcher_queue_depth")
    return bool(depth or metric(port, "aim_matcher_queue_delayed"))


def _settle(srv: ApiServer, port: int, quiet: float, timeout: float = 120) -> tuple[int, float]:
    """Wait until the queue is empty and no status write has landed for ``quiet`` seconds;
    the writes logged so far and when (monotonic) the last of them was first seen."""
    last, changed = len(_status_writes(srv)), time.monotonic()
    deadline = changed + timeout
    while time.monotonic() < deadline:
        time.sleep(0.01)
        count = len(_status_writes(srv))
        now = time.monotonic()
        if count != last:
            last, changed = count, now
        elif now - changed >= quiet and not _busy(port):
            return count, changed
    raise SystemExit(f"status writes did not settle within {timeout}s")


def _wait(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.002
) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


def _all_written(srv: ApiServer, names: set[str]) -> Callable[[], bool]:
    return lambda: names <= set(_status_writes(srv))


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def _label(api: KubeClient, node: str, key: str, value: str | None) -> None:
    body = {"metadata": {"labels": {key: value}}}
    api.request("PATCH", f"/api/v1/nodes/{node}", body=body, content_type=MERGE_PATCH)


def _cordon(api: KubeClient, node: str, on: bool) -> None:
    body = {"spec": {"unschedulable": True if on else None}}
    api.request("PATCH", f"/api/v1/nodes/{node}", body=body, content_type=MERGE_PATCH)


class Heartbeats(threading.Thread):
    """``rate`` node status heartbeats a second over ``nodes`` (all Ready), until stopped."""

    def __init__(self, api: KubeClient, nodes: list[str], rate: float) -> None:
        super().__init__(daemon=True, name="heartbeats")
        self.api, self.nodes, self.rate = api, nodes, rate
        self.sent = 0
        self.late = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stopped.is_set():
            due = start + self.sent / self.rate
            wait = due - time.monotonic()
            if wait > 0:
                self.stopped.wait(wait)
            elif wait < -0.1:
                self.late += 1
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            condition = {"type": "Ready", "status": "True", "lastHeartbeatTime": stamp}
            node = self.nodes[self.sent % len(self.nodes)]
            self.api.request(
                "PATCH",
                f"/api/v1/nodes/{node}/status",
                body={"status": {"conditions": [condition]}},
                content_type=STRATEGIC,
            )
            self.sent += 1


class World:
    """The seeded server, the nodes and which profiles want which absent model."""

    def __init__(self, n_nodes: int, n_profiles: int) -> None:
        self.srv = ApiServer(crd_paths=[REPO / "daemonset" / "crds"]).start()
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-churn-"))
        self.kubeconfig = self.srv.write_kubeconfig(self.tmp / "kubeconfig")
        self.nodes: list[str] = []
        self.ready_nodes: list[str] = []
        self.gpu_nodes: list[str] = []  # schedulable and Ready, with a GPU model label
        gpu_prefix = accelerator_label_key("MI")
        for node in realistic_nodes(n_nodes, seed=SEED):
            self.srv.seed(node)
            name = node["metadata"]["name"]
            self.nodes.append(name)
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]
            )
            if ready:
                self.ready_nodes.append(name)
                if not node["spec"].get("unschedulable") and any(
                    k.startswith(gpu_prefix) for k in node["metadata"]["labels"]
                ):
                    self.gpu_nodes.append(name)
        for ns in NAMESPACES:
            self.srv.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.wanting: dict[str, set[str]] = {model: set() for model in ABSENT}
        spread = 0
        for obj in realistic_profiles(n_profiles, seed=SEED):
            # realistic.py names CPU profiles "...-epyc_zen4-...": the API wants RFC 1123 names.
            obj["metadata"]["name"] = obj["metadata"]["name"].replace("_", "-")
            if obj["spec"].get("acceleratorModel") == ABSENT[0]:
                model = ABSENT[spread % len(ABSENT)]
                spread += 1
                obj["spec"]["acceleratorModel"] = model
                self.wanting[model].add(obj["metadata"]["name"])
            self.srv.seed(obj)
        self.profiles = n_profiles


def _events(world: World, api: KubeClient, port: int, rng: random.Random, events: int) -> None:
    """Writes per appear/disappear of each absent model; each event settled before the next."""
    srv = world.srv
    for direction in ("appears on", "leaves"):
        own: list[int] = []
        other: list[int] = []
        for model in ABSENT:
            key = accelerator_label_key(model)
            for _ in range(events):
                node = world.nodes[rng.randrange(len(world.nodes))]
                appear = direction == "appears on"
                if not appear:
                    _label(api, node, key, "8")
                    _settle(srv, port, quiet=0.5)
                srv.requests.clear()
                _label(api, node, key, "8" if appear else None)
                _settle(srv, port, quiet=1.0)
                written = _status_writes(srv)
                own.append(sum(1 for n in written if n in world.wanting[model]))
                other.append(sum(1 for n in written if n not in world.wanting[model]))
                if appear:
                    _label(api, node, key, None)
                    _settle(srv, port, quiet=0.5)
        wanting = statistics.mean(len(v) for v in world.wanting.values())
        print(f"  an absent model {direction} one node ({len(own)} events over "
              f"{', '.join(ABSENT)}): status writes to the ~{wanting:.0f} profiles wanting it "
              f"mean {statistics.mean(own):.1f}; to other profiles mean "
              f"{statistics.mean(other):.1f} (min {min(other)}, max {max(other)})")  # fmt: skip


def _latency(
    world: World,
    api: KubeClient,
    port: int,
    rng: random.Random,
    *,
    changes: int,
    rate: float,
    interval: float,
) -> None:
    srv = world.srv
    beats = Heartbeats(connect(world.kubeconfig, pool_size=2), world.ready_nodes, rate)
    beats.start()
    latencies: list[float] = []
    extra_writes = 0
    t_start = time.monotonic()
    try:
        node, model = None, ABSENT[0]
        for i in range(changes):
            time.sleep(interval)
            srv.requests.clear()
            if node is None:  # appear on a random node
                node, model = world.nodes[rng.randrange(len(world.nodes))], ABSENT[i // 2 % 3]
                value: str | None = "8"
            else:  # leave it again
                value = None
            targets = world.wanting[model]
            t0 = time.monotonic()
            _label(api, node, accelerator_label_key(model), value)
            _wait(_all_written(srv, targets), 30, f"change {i}")
            latencies.append(time.monotonic() - t0)
            count, _ = _settle(srv, port, quiet=0.05)
            extra_writes += count - len(targets)
            if value is None:
                node = None
    except KeyboardInterrupt:  # report what was measured so far
        print(f"  interrupted after {len(latencies)} changes")
    finally:
        elapsed = time.monotonic() - t_start
        beats.stopped.set()
        beats.join(5)
    achieved = beats.sent / elapsed
    ms = sorted(x * 1000 for x in latencies)
    spread = (
        f"p50 {statistics.median(ms):.0f} ms, p90 {percentile(ms, 0.9):.0f} ms, "
        f"p99 {percentile(ms, 0.99):.0f} ms, max {ms[-1]:.0f} ms"
        if len(ms) >= 1000
        else f"median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms (p99 needs "
        f">= 1,000 changes: --changes 1000 or --full)"
    )
    wanting = statistics.mean(len(v) for v in world.wanting.values())
    print(f"  change -> status of the ~{wanting:.0f} profiles wanting the model, over "
          f"{len(ms)} changes with {achieved:.1f} node heartbeats/s behind them "
          f"({beats.sent} sent, {beats.late} late by > 100 ms), {len(ms) / elapsed:.2f} "
          f"changes/s: {spread}")  # fmt: skip
    print(f"  status writes beyond the changed profiles' own during that run: {extra_writes} "
          f"({extra_writes / len(ms):.1f} a change; heartbeats alone must cause none)")  # fmt: skip


def _storm(world: World, api: KubeClient, port: int, rng: random.Random, count: int) -> None:
    srv = world.srv
    nodes = rng.sample(world.gpu_nodes, min(count, len(world.gpu_nodes)))
    for on in (True, False):
        _settle(srv, port, quiet=0.5)
        srv.requests.clear()
        t0 = time.monotonic()
        for i, node in enumerate(nodes):  # spread over one second
            wait = t0 + i / len(nodes) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            _cordon(api, node, on)
        sent = time.monotonic() - t0
        writes, last = _settle(srv, port, quiet=2.0)
        profiles = len(set(_status_writes(srv)))
        print(f"  {len(nodes)} GPU nodes {'cordoned' if on else 'uncordoned'} within "
              f"{sent:.2f}s: {writes} status writes to {profiles} profiles "
              f"({writes / max(profiles, 1):.2f} per profile written), last write "
              f"{last - t0:.2f}s after the first {'cordon' if on else 'uncordon'}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="5,000 nodes, 1,000 profiles, 1,000 changes")
    p.add_argument("--nodes", type=int)
    p.add_argument("--profiles", type=int)
    p.add_argument("--changes", type=int, help="label changes timed under churn")
    p.add_argument("--events", type=int, default=3, help="appear/leave events per absent model")
    p.add_argument("--heartbeats", type=float, default=50.0, help="per second, during --changes")
    p.add_argument(
        "--change-interval",
        type=float,
        default=0.0,
        help="seconds between one change settling and the next (0: back to back, which a "
        "matcher's rate limiter on node-event re-evaluations then paces)",
    )
    p.add_argument("--storm", type=int, default=100, help="nodes cordoned within a second")
    p.add_argument("--write-latency", type=float, default=0.005)
    args = p.parse_args(argv)
    n_nodes = args.nodes or (5000 if args.full else 1000)
    n_profiles = args.profiles or (1000 if args.full else 300)
    changes = args.changes or (1000 if args.full else 150)
    rng = random.Random(SEED)

    t = time.monotonic()
    world = World(n_nodes, n_profiles)
    srv = world.srv
    try:
        srv.faults.set_latency(args.write_latency, writes_only=True)  # type: ignore[call-arg,unused-ignore]
        delayed = "every write"
    except TypeError:  # a test server without writes_only: reads are delayed too
        srv.faults.set_latency(args.write_latency)
        delayed = "every request (this test server has no writes_only)"
    wanting = ", ".join(f"{m} {len(v)}" for m, v in world.wanting.items())
    print(f"{n_nodes} realistic nodes, {n_profiles} profiles (wanting absent models: {wanting}) "
          f"seeded in {time.monotonic() - t:.1f}s; {delayed} answered "
          f"{args.write_latency * 1000:.0f} ms late; {_load()}")  # fmt: skip

    port = free_port()
    log = (world.tmp / "matcher.log").open("w")
    started = time.monotonic()
    matcher = start_matcher(world.kubeconfig, port, log, extra=EXTRA)
    api = connect(world.kubeconfig, pool_size=4)
    try:
        _wait(lambda: ready(port), 120, "the matcher's caches", interval=0.05)
        names = world.profiles
        _wait(lambda: len(set(_status_writes(srv))) >= names, 120, "first statuses", 0.05)
        _settle(srv, port, quiet=1.0)
        print(f"  first status on all {names} profiles {time.monotonic() - started:.1f}s after "
              f"start")  # fmt: skip
        _events(world, api, port, rng, args.events)
        _latency(
            world,
            api,
            port,
            rng,
            changes=changes,
            rate=args.heartbeats,
            interval=args.change_interval,
        )
        _storm(world, api, port, rng, args.storm)
        print(f"  {_load()}")
    finally:
        api.close()
        stop(matcher)
        log.close()
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
