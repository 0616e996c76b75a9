"""The controller's first status against the real kube-apiserver, writes answered 5 ms late.

Run: ``.venv/bin/python -m benchmarks.bench_controller_real --nodes 20000`` (needs ``make
tools``; builds ``latency-proxy`` if missing). ``bench_controller`` measures the same against the
test API server, which runs in the benchmark's own interpreter: there its floor is set by how
fast a Python server answers PATCHes, not by the 5 ms it adds. Here:

- etcd and kube-apiserver of the test control plane (``tests/controlplane``: TLS, RBAC, audit
  log) hold ``--nodes`` realistic nodes (``benchmarks/realistic.py``, 10-14 KB each, created
  through the API) and ``--profiles`` profiles;
- ``latency-proxy`` (``tools/latency-proxy``, Go) stands in front of it and answers every write
  ``--write-latency`` late (5 ms: a loaded etcd), as the test server's
  ``faults.set_latency(..., writes_only=True)`` does; reads and watches pass at once. The
  matcher and the floor both go through it. The PATCH latency with and without it is printed;
- **the floor**, as in ``bench_controller``: the paged node list, its decode by ``nodecodec``,
  and one status PATCH per profile (precomputed, to labelled copies deleted before the matcher
  starts) with as many at once as the matcher has workers; each part measured ``--runs`` times,
  the floor being the sum of their medians;
- **the first status**, ``--runs`` times (every status removed in between): from the matcher's
  process start (interpreter and imports included) until every profile's first status PATCH
  has been answered, read from kube-apiserver's audit log (its ``stageTimestamp``), so the
  benchmark polls nothing the servers answer; as a ratio to the floor; the matcher's peak RSS
  (psutil, every 20 ms).

Targets (issue 14): first status within 1.5x the floor at 5,000 nodes, < 10 s and < 250 MiB at
20,000. ``BENCH_MATCHER_ARGS`` passes extra flags to the matcher.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from aimkit.kube import MERGE_PATCH, connect
from benchmarks.bench_controller import (
    NAMESPACES,
    SEED,
    RssSampler,
    decode_pages,
    floor_statuses,
    list_pages,
    patch_statuses,
    profile_path,
)
from benchmarks.matcher_process import free_port, ready, start_matcher, stop
from benchmarks.realistic import realistic_nodes, realistic_profiles
from scripts.k8s_tools import tool
from tests.apiserver.kubeconfig import write_kubeconfig
from tests.controlplane.crds import FixtureCRDs
from tests.controlplane.plane import ControlPlane
from tests.controlplane.process import Process

REPO = Path(__file__).resolve().parent.parent
GROUP, VERSION = "aim.eai.amd.com", "v1alpha2"
EXTRA = os.environ.get("BENCH_MATCHER_ARGS", "").split()
#: Server-set fields a create must not carry.
SERVER_SET = ("resourceVersion", "uid", "creationTimestamp")


def _proxy(plane: ControlPlane, workdir: Path, latency: float) -> tuple[Process, str]:
    # A no-op once built (make tools builds it too).
    subprocess.run([str(REPO / "tools" / "build.sh"), "latency-proxy"], check=True)
    port = free_port()
    proc = Process(
        "latency-proxy",
        [tool("latency-proxy"), f"-listen=127.0.0.1:{port}", f"-upstream={plane.url}",
         f"-ca={plane.ca_file}", f"-write-latency={latency * 1000:g}ms"],
        workdir / "latency-proxy.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    probe = write_kubeconfig(workdir / "probe.kubeconfig", url, token=plane.admin_token)

    def up() -> bool:
        try:
            with closing(connect(probe)) as api:
                api.get("/version")
            return True
        except Exception:
            return False

    proc.start(up, 30)
    return proc, url


def _create(plane: ControlPlane, path: str, obj: dict[str, Any]) -> None:
    body = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k not in SERVER_SET}}
    status, answer = plane.request("POST", path, body)
    if status != 201:
        raise SystemExit(f"creating {path}/{obj['metadata']['name']}: HTTP {status}: {answer}")


def _collection(obj: dict[str, Any]) -> str:
    return profile_path(obj).rsplit("/", 1)[0]


def _seed(plane: ControlPlane, nodes: int, profiles: list[dict[str, Any]]) -> float:
    t0 = time.monotonic()
    crds = [
        yaml.safe_load(p.read_text()) for p in sorted((REPO / "daemonset" / "crds").glob("*.yaml"))
    ]
    FixtureCRDs(plane).apply(crds)
    for ns in NAMESPACES:
        _create(plane, "/api/v1/namespaces", {"metadata": {"name": ns}})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: _create(plane, "/api/v1/nodes", n), realistic_nodes(nodes, SEED)))
        list(pool.map(lambda p: _create(plane, _collection(p), p), profiles))
    return time.monotonic() - t0


def _patch_latency(kubeconfig: Path, obj: dict[str, Any], samples: int = 200) -> float:
    """Median of sequential PATCHes of one object's labels over one connection (ms)."""
    times = []
    with closing(connect(kubeconfig)) as api:
        for i in range(samples):
            t0 = time.perf_counter()
            api.request("PATCH", profile_path(obj), body={"metadata": {"labels": {"n": str(i)}}},
                        content_type=MERGE_PATCH)  # fmt: skip
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


class AuditTail:
    """The first successful status PATCH of each profile, by kube-apiserver's own clock, read
    from its audit log from where the log ends when this is made."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("rb")
        self.file.seek(0, os.SEEK_END)
        self.partial = b""
        self.first: dict[str, float] = {}

    def poll(self) -> None:
        data = self.partial + self.file.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if b'"subresource":"status"' not in line or b'"verb":"patch"' not in line:
                continue
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete":
                continue
            if (event.get("responseStatus") or {}).get("code", 0) >= 300:
                continue
            ref = event["objectRef"]
            key = f"{ref.get('namespace', '')}/{ref['name']}"
            stamp = datetime.fromisoformat(event["stageTimestamp"]).timestamp()
            self.first[key] = min(stamp, self.first.get(key, stamp))

    def close(self) -> None:
        self.file.close()


def _floor(
    plane: ControlPlane, kubeconfig: Path, profiles: list[dict[str, Any]], workers: int, runs: int
) -> float:
    """The floor (see the docstring), each part measured ``runs`` times: the sum of medians."""
    lists, decodes, patches = [], [], []
    plain_decode = 0.0
    with closing(connect(kubeconfig, pool_size=workers + 2)) as api:
        for run in range(runs):
            pages, listed = list_pages(api)
            views, decoded, plain = decode_pages(pages, plain=not run)
            del pages
            lists.append(listed)
            decodes.append(decoded)
            plain_decode = plain or plain_decode
        bodies = floor_statuses(profiles, views)
        copies = [copy for copy, _ in bodies]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda copy: _create(plane, _collection(copy), copy), copies))
        for run in range(runs):
            if run:
                _clear_statuses(kubeconfig, copies, workers)
            patches.append(patch_statuses(api, bodies, workers))
    # The matcher must not find the copies.
    for path in {_collection(copy) for copy in copies}:
        plane.request("DELETE", path + "?labelSelector=bench%3Dfloor")
    for path in (
        f"/apis/{GROUP}/{VERSION}/aimprofiles",
        f"/apis/{GROUP}/{VERSION}/aimclusterprofiles",
    ):
        while plane.request("GET", path + "?labelSelector=bench%3Dfloor")[1]["items"]:
            time.sleep(0.1)
    listed, decoded, patched = (statistics.median(x) for x in (lists, decodes, patches))
    floor = listed + decoded + patched
    print(f"floor: {floor:.2f}s = list {listed:.2f}s ({len(views)} nodes) + decode {decoded:.2f}s "
          f"(nodecodec; json.loads + node_view: {plain_decode:.2f}s) + {len(bodies)} status "
          f"PATCHes {patched:.2f}s ({workers} at once); medians of {runs}: list "
          f"{_spread(lists)}, decode {_spread(decodes)}, PATCHes {_spread(patches)}")  # fmt: skip
    return floor


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}s"


def first_status(
    plane: ControlPlane, kubeconfig: Path, keys: set[str], log_path: Path
) -> tuple[float, float, int]:
    """Start ``aim-matcher run``; seconds from its start until every profile in ``keys`` has had
    a status PATCH answered (kube-apiserver's clock), until it was ready, and its peak RSS."""
    audit = AuditTail(plane.audit_log)
    port = free_port()
    log = log_path.open("w")
    started = time.time()
    matcher = start_matcher(kubeconfig, port, log, extra=EXTRA)
    sampler = RssSampler(matcher.pid)
    sampler.start()
    try:
        synced = 0.0
        deadline = time.monotonic() + 180
        while not keys <= audit.first.keys():
            if time.monotonic() > deadline:
                missing = len(keys - audit.first.keys())
                raise SystemExit(f"timed out: {missing} profiles have no status; see {log_path}")
            if not synced and ready(port):
                synced = time.time() - started
            time.sleep(0.05)
            audit.poll()
        return max(audit.first[k] for k in keys) - started, synced, sampler.peak
    finally:
        audit.close()
        sampler.stopped.set()
        stop(matcher)
        log.close()


def _clear_statuses(kubeconfig: Path, profiles: list[dict[str, Any]], workers: int) -> float:
    """Remove every profile's status (for the next run to write them all again)."""
    t0 = time.monotonic()
    with closing(connect(kubeconfig, pool_size=workers)) as api:

        def clear(obj: dict[str, Any]) -> None:
            api.request("PATCH", profile_path(obj) + "/status", body={"status": None},
                        content_type=MERGE_PATCH)  # fmt: skip

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(clear, profiles))
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--profiles", type=int, default=1000)
    p.add_argument("--write-latency", type=float, default=0.005)
    p.add_argument("--workers", type=int, default=8, help="for the floor: the matcher's --workers")
    p.add_argument("--runs", type=int, default=3, help="matcher starts (statuses removed between)")
    args = p.parse_args(argv)

    # As the image has it (make bench does the same): no start-up figure includes compiling.
    compileall.compile_dir(REPO / "matcher", quiet=2)
    compileall.compile_dir(REPO / "aimkit", quiet=2)
    compileall.compile_dir(REPO / "detector", quiet=2)
    workdir = Path(tempfile.mkdtemp(prefix="bench-controller-real-"))
    profiles = list(realistic_profiles(args.profiles, seed=SEED))
    for obj in profiles:
        obj["metadata"]["name"] = obj["metadata"]["name"].replace("_", "-")
    keys = {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in profiles}
    plane = ControlPlane(workdir).start()
    proxy: Process | None = None
    try:
        seeded = _seed(plane, args.nodes, profiles)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"kube-apiserver: {args.nodes} realistic nodes and {args.profiles} profiles created "
              f"in {seeded:.1f}s; load average {load}")  # fmt: skip
        proxy, url = _proxy(plane, workdir, args.write_latency)
        slow = write_kubeconfig(workdir / "proxy.kubeconfig", url, token=plane.admin_token)
        direct, via = (
            _patch_latency(plane.admin_kubeconfig, profiles[0]),
            _patch_latency(slow, profiles[0]),
        )
        print(f"one PATCH, median of 200 on one connection: {direct:.2f} ms direct, {via:.2f} ms "
              f"through latency-proxy (writes {args.write_latency * 1000:g} ms late)")  # fmt: skip

        floor = _floor(plane, slow, profiles, args.workers, args.runs)

        figures = []
        for run in range(args.runs):
            if run:
                cleared = _clear_statuses(slow, profiles, args.workers)
                print(f"  (statuses of the {len(profiles)} profiles removed in {cleared:.1f}s)")
            total, synced, peak = first_status(plane, slow, keys, workdir / f"matcher-{run}.log")
            figures.append(total)
            print(f"run {run + 1}: first status on all {len(keys)} profiles {total:.2f}s after "
                  f"start ({total / floor:.2f}x the floor; caches synced by {synced:.2f}s), "
                  f"matcher peak RSS {peak / 2**20:.0f} MiB")  # fmt: skip
        median = statistics.median(figures)
        print(f"first status: median {median:.2f}s of {len(figures)} runs, "
              f"{median / floor:.2f}x the floor ({floor:.2f}s)")  # fmt: skip
    finally:
        if proxy is not None:
            proxy.stop()
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
