"""The chaos run's scenarios (issue 13), timed: convergence and status writes per scenario.

Run: ``.venv/bin/python -m benchmarks.bench_controller_chaos`` (a few minutes on 2 cores);
``--scale 1k`` for 1,000 profiles on 500 realistic nodes instead of the chaos run's 58 profiles
on 12 nodes. Each scenario gets a fresh test API server (in this process) and ``aim-matcher run``
as a subprocess (two for the Lease scenario), with the shipped defaults except short lease
timings. ``BENCH_MATCHER_SRC`` runs the matcher from another checkout, so one command measures
the version before a change: flags the older version lacks are not passed. Printed per
scenario: the time until every profile carries the status a fresh evaluation gives (or
"no convergence in N s"), status writes by result, and what the scenario is about:

1. ``restore``: the storage goes back to a backup taken before the matcher ran (objects and
   resourceVersions as then; 200 writes happened since); then a user changes one profile.
2. ``blip``: three failed node watches in a row, about one second.
3. ``retry-after``: every status write answered 429 with ``Retry-After: 2`` for 4 s, during a
   change that needs writes: attempts per profile in that window, and how many came sooner
   than 2 s after the previous one.
4. ``no-answer``: every status write's connection dropped for 3 s during such a change: what
   ``aim_matcher_status_writes_total{result="error"}`` says.
5. ``lease-deleted``: two replicas, the Lease deleted by hand: how long both led at once
   (their ``aim_matcher_is_leader`` sampled every 5 ms).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aimkit.kube import MERGE_PATCH, KubeClient, connect
from benchmarks.matcher_process import free_port, stop
from benchmarks.realistic import realistic_nodes, realistic_profiles
from matcher.api.models import parse_profile
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.evaluate import evaluate
from matcher.core.nodes import node_view
from tests.apiserver import ApiServer

REPO = Path(__file__).resolve().parent.parent
GROUP, VERSION = "aim.eai.amd.com", "v1alpha2"
NAMESPACES = ("ml-team", "research", "prod-inference")
MATCHER_SRC = Path(os.environ.get("BENCH_MATCHER_SRC") or REPO)
SCALES = {"chaos": (12, 58), "1k": (500, 1000)}
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/aim-matcher"


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def _sample(text: str, name: str) -> float:
    """The value of the series ``name`` (with its labels, as exposed) in a scrape."""
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return 0.0


@dataclass
class World:
    srv: ApiServer
    kubeconfig: Path
    api: KubeClient
    profiles: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    tmp: Path

    def path(self, obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        plural = "aimprofiles" if obj["kind"] == "AIMProfile" else "aimclusterprofiles"
        scope = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
        return f"/apis/{GROUP}/{VERSION}{scope}/{plural}/{meta['name']}"

    def expected(self) -> dict[str, str]:
        """What a fresh evaluation of the server's objects gives: phase per profile."""
        nodes = self.srv.list_objects("v1", "Node")
        cluster = ClusterIndex(node_view(n) for n in nodes)
        now = datetime.now(UTC)
        out = {}
        for obj in self.profiles:
            stored = self._get(obj)
            status = evaluate(
                parse_profile({**stored, "status": None}), cluster, MatcherConfig(), now
            )
            out[obj["metadata"]["name"]] = status.status.value
        return out

    def _get(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.api.request("GET", self.path(obj))

    def phases(self) -> dict[str, str | None]:
        return {
            obj["metadata"]["name"]: (self._get(obj).get("status") or {}).get("status")
            for obj in self.profiles
        }

    def converged(self) -> bool:
        return self.phases() == self.expected()

    def writes(self) -> Counter[str]:
        """Status patches by result since the request log was last cleared."""
        out: Counter[str] = Counter()
        for r in self.srv.requests:
            if r.verb == "patch" and r.path.endswith("/status") and GROUP in r.path:
                out[{200: "ok", 409: "conflict", 0: "dropped"}.get(r.status, str(r.status))] += 1
        return out

    def matcher(self, identity: str, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=str(MATCHER_SRC))
        log = (self.tmp / f"{identity}.log").open("w")
        return subprocess.Popen(
            [sys.executable, "-m", "matcher", "run", "--kubeconfig", str(self.kubeconfig),
             "--health-addr", f"127.0.0.1:{port}", "--lease-namespace", "default",
             "--config-map-namespace", "default", "--identity", identity,
             "--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1",
             "--log-level", "info", *extra],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=MATCHER_SRC,
        )  # fmt: skip


def _world(scale: str, seed: int = 7) -> World:
    n_nodes, n_profiles = SCALES[scale]
    srv = ApiServer(crd_paths=[REPO / "daemonset" / "crds"]).start()
    tmp = Path(tempfile.mkdtemp(prefix="chaos-"))
    kubeconfig = srv.write_kubeconfig(tmp / "kubeconfig")
    for ns in NAMESPACES:
        srv.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    nodes = list(realistic_nodes(n_nodes, seed=seed))
    for node in nodes:
        srv.seed(node)
    profiles = list(realistic_profiles(n_profiles, seed=seed))
    for obj in profiles:
        obj["metadata"]["name"] = obj["metadata"]["name"].replace("_", "-")
        srv.seed(obj)
    return World(srv, kubeconfig, connect(kubeconfig, pool_size=4), profiles, nodes, tmp)


def _until(predicate: Callable[[], bool], timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def _fmt(seconds: float | None, timeout: float) -> str:
    return f"{seconds:.1f}s" if seconds is not None else f"no convergence in {timeout:.0f}s"


def _start(world: World, extra: list[str], identity: str = "m-a") -> tuple[Any, int]:
    port = free_port()
    proc = world.matcher(identity, port, extra)
    if _until(world.converged, 120) is None:
        raise SystemExit(f"{identity} never converged at start")
    return proc, port


def _ready_flip(world: World, ready: bool, count: int = 3) -> None:
    """Flip the Ready condition of a few GPU nodes: a change that needs status writes."""
    for node in world.nodes[:count]:
        name = node["metadata"]["name"]
        condition = {"type": "Ready", "status": "True" if ready else "False", "reason": "x"}
        world.api.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            body={"status": {"conditions": [condition]}},
            content_type="application/strategic-merge-patch+json",
        )


def restore(scale: str, extra: list[str], timeout: float) -> str:
    world = _world(scale)
    backup = world.srv.faults.snapshot()
    proc, _ = _start(world, extra)
    try:
        for i in range(200):
            world.api.request(
                "POST", "/api/v1/namespaces/default/configmaps",
                body={"metadata": {"name": f"churn-{i}"}},
            )  # fmt: skip
        world.srv.requests.clear()
        world.srv.faults.restore(backup)
        converged = _until(world.converged, timeout)
        after_restore = dict(world.writes())
        # A user changes a profile after the restore (its resourceVersion is below our notes).
        target = next(p for p in world.profiles if p["spec"].get("acceleratorCount"))
        world.srv.requests.clear()
        world.api.request(
            "PATCH", world.path(target), body={"spec": {"acceleratorCount": 64}},
            content_type=MERGE_PATCH,
        )  # fmt: skip
        written = _until(
            lambda: (world._get(target).get("status") or {}).get("observedGeneration") == 2,
            timeout,
        )
        return (
            f"storage restored: every status again in {_fmt(converged, timeout)}, writes "
            f"{after_restore}; a profile changed after it written in {_fmt(written, timeout)}, "
            f"writes {dict(world.writes())}"
        )
    finally:
        stop(proc)
        world.srv.stop()


def blip(scale: str, extra: list[str], timeout: float) -> str:
    world = _world(scale)
    proc, _ = _start(world, extra)
    try:
        world.srv.requests.clear()
        world.srv.faults.fail_next(3, code=500, path_contains="/api/v1/nodes")
        world.srv.faults.end_watches()
        time.sleep(5)
        converged = _until(world.converged, timeout)
        return (
            f"three failed node watches: writes {dict(world.writes())} (statuses right again "
            f"{_fmt(converged, timeout)} after the 5 s watched)"
        )
    finally:
        stop(proc)
        world.srv.stop()


def retry_after(scale: str, extra: list[str], timeout: float) -> str:
    world = _world(scale)
    proc, _ = _start(world, extra)
    try:
        world.srv.requests.clear()
        # Profile status writes only: the Ready flips below are node patches.
        world.srv.faults.fail_ratio(
            1.0, code=429, retry_after=2.0, verb="patch", path_contains=f"/apis/{GROUP}/"
        )
        stamps: dict[str, list[float]] = {}
        seen = 0
        _ready_flip(world, False)
        start = time.monotonic()
        while time.monotonic() - start < 4:
            records = world.srv.requests.snapshot()
            for r in records[seen:]:
                if r.verb == "patch" and r.status == 429 and GROUP in r.path:
                    stamps.setdefault(r.path, []).append(time.monotonic())
            seen = len(records)
            time.sleep(0.01)
        world.srv.faults.clear()
        converged = _until(world.converged, timeout)
        gaps = [b - a for times in stamps.values() for a, b in itertools.pairwise(times)]
        early = sum(1 for g in gaps if g < 1.9)
        attempts = sum(len(t) for t in stamps.values())
        return (
            f"429 + Retry-After 2 s for 4 s: {attempts} attempts on {len(stamps)} profiles "
            f"(max {max((len(t) for t in stamps.values()), default=0)} per profile), {early} of "
            f"{len(gaps)} retries sooner than 2 s; converged {_fmt(converged, timeout)} after"
        )
    finally:
        stop(proc)
        world.srv.stop()


def no_answer(scale: str, extra: list[str], timeout: float) -> str:
    world = _world(scale)
    proc, port = _start(world, extra)
    try:
        world.srv.requests.clear()
        world.srv.faults.fail_ratio(
            1.0, drop_connection=True, verb="patch", path_contains=f"/apis/{GROUP}/"
        )
        _ready_flip(world, False)
        time.sleep(3)
        world.srv.faults.clear()
        converged = _until(world.converged, timeout)
        metrics = _scrape(port)
        errors = _sample(metrics, 'aim_matcher_status_writes_total{result="error"}')
        return (
            f"connections dropped for 3 s: {world.writes().get('dropped', 0)} writes without an "
            f'answer, aim_matcher_status_writes_total{{result="error"}} = {errors:.0f}; '
            f"converged {_fmt(converged, timeout)} after"
        )
    finally:
        stop(proc)
        world.srv.stop()


def lease_deleted(scale: str, extra: list[str], timeout: float) -> str:
    world = _world(scale)
    a, port_a = _start(world, extra, "m-a")
    b = world.matcher("m-b", port_b := free_port(), extra)
    try:
        _until(lambda: "aim_matcher_is_leader" in _scrape(port_b), 60)
        both = []
        for _ in range(5):
            time.sleep(random.uniform(0.2, 1.0))
            world.api.request("DELETE", LEASE)
            start, overlap, last = time.monotonic(), 0.0, time.monotonic()
            while time.monotonic() - start < 6:
                now = time.monotonic()
                leaders = [_sample(_scrape(p), "aim_matcher_is_leader") for p in (port_a, port_b)]
                if all(v == 1 for v in leaders):
                    overlap += now - last
                last = now
                time.sleep(0.005)
            both.append(overlap)
        return "Lease deleted by hand, 5 times: both replicas leading for " + ", ".join(
            f"{s:.2f}s" for s in both
        )
    finally:
        stop(a, b)
        world.srv.stop()


SCENARIOS = {
    "restore": restore,
    "blip": blip,
    "retry-after": retry_after,
    "no-answer": no_answer,
    "lease-deleted": lease_deleted,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scale", choices=sorted(SCALES), default="chaos")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = p.parse_args(argv)
    extra = os.environ.get("BENCH_MATCHER_ARGS", "").split()
    n_nodes, n_profiles = SCALES[args.scale]
    print(f"{n_profiles} profiles on {n_nodes} realistic nodes; matcher from {MATCHER_SRC}")
    for name in args.scenarios:
        t0 = time.monotonic()
        print(f"{name}: {SCENARIOS[name](args.scale, extra, args.timeout)} "
              f"[{time.monotonic() - t0:.0f}s]", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
