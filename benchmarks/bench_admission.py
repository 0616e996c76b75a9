"""Admission latency and memory: 1,000 profiles cached, pods as a ReplicaSet creates them.

Run: ``.venv/bin/python -m benchmarks.bench_admission`` (about a minute on 2 cores).

Inputs of real size and shape: 1,000 realistic profiles (``benchmarks/realistic.py``: 17
models, 15 % namespaced, engine arguments, model sources), each with the status the real core
evaluates against 2,000 realistic nodes, held exactly as the controller holds them
(``cached_profile`` projections in a dict, read through ``profile_lookup``). Pods are a
Deployment's (two containers, probes, env, volumes, an existing zone affinity and
tolerations, about 3 KiB of JSON); half name a profile (an AIMProfile name checked in the
namespace first, then the cluster profile), half ask for a model (automatic selection over the
some 60 profiles of that aimId, with and without a metric filter).

Printed, each over ``--n`` admissions (default 2,000, so p99 rests on 20 samples):

1. the decision alone (``matcher.core.admission.admit``), in this process;
2. the whole HTTPS round trip to the webhook in a process of its own, on one kept-alive
   connection (what kube-apiserver does; the TLS handshake is excluded): the target is
   p99 < 10 ms;
3. the same with 4 clients at once;
4. the server process's resident memory: before the caches, with them, listening, and after
   serving all of the above (the cost of serving);
5. the baseline a webhook without caches would be: the same decision with the profile read
   from a real kube-apiserver per admission (GET by name; a list by the ``spec.aimId`` field
   selector for automatic selection), through the project's own client on a kept-alive
   connection. Skipped with ``--no-baseline`` or when ``make tools`` has not built
   kube-apiserver.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from benchmarks.realistic import AIMS, realistic_nodes, realistic_profiles
from matcher.api.models import KIND_CLUSTER_PROFILE, KIND_PROFILE, Profile
from matcher.controller.reconciler import CachedProfile, cached_profile
from matcher.controller.status_writer import ProfileKey
from matcher.controller.webhook import profile_lookup
from matcher.core.admission import (
    AIM_ID_KEY,
    MAX_LABEL_VALUE,
    METRIC_KEY,
    PROFILE_KEY,
    Lookup,
    admit,
    encode_aim_id,
)
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.evaluate import evaluate
from matcher.core.nodes import node_view

SEED = 20261120
PROFILES = 1000
NODES = 2000
TARGET_P99_MS = 10.0
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NAMESPACES = ["ml-team", "research", "prod-inference", "dev-team"]


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


# --- inputs --------------------------------------------------------------------------------------


def evaluated_objects() -> list[dict[str, Any]]:
    """The realistic profiles with the statuses the real core gives them."""
    cluster = ClusterIndex()
    for node in realistic_nodes(NODES, seed=SEED):
        cluster.upsert(node_view(node))
    config = MatcherConfig()
    out = []
    for obj in realistic_profiles(PROFILES, seed=SEED):
        # The generator puts "_" of EPYC_ZEN4 in some names, which kube-apiserver refuses.
        obj["metadata"]["name"] = obj["metadata"]["name"].replace("_", "-")
        cached = cached_profile(obj)
        assert cached.profile is not None, cached.error
        status = evaluate(cached.profile, cluster, config, NOW)
        out.append({**obj, "status": status.to_dict()})
    return out


def cache_of(objects: list[dict[str, Any]]) -> dict[ProfileKey, CachedProfile]:
    cache: dict[ProfileKey, CachedProfile] = {}
    for obj in objects:
        cached = cached_profile(obj)
        cache[cached.key] = cached
    return cache


def deployment_pod(
    rng: random.Random, labels: dict[str, str], annotations: dict[str, str]
) -> dict[str, Any]:
    """A pod as the replicaset controller creates it from a real-looking Deployment."""
    name = f"svc-{rng.randrange(10**6):06d}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{name}-7d9f8c6b5-",
            "namespace": rng.choice(NAMESPACES),
            "labels": {"app.kubernetes.io/name": name, "pod-template-hash": "7d9f8c6b5",
                       "team": "inference", **labels},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8000",
                            **annotations},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": f"{name}-7d9f8c6b5", "controller": True,
                                 "blockOwnerDeletion": True,
                                 "uid": "3f0c4e43-5b3a-4c57-9a3f-0f4f0c6d2a11"}],
        },
        "spec": {
            "containers": [
                {
                    "name": "inference",
                    "image": "amdenterpriseai/aim-qwen-qwen3-32b:0.8.5",
                    "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
                    "env": [{"name": f"AIM_SETTING_{i}", "value": f"value-{i}"} for i in range(12)]
                    + [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token",
                                                                             "key": "token"}}}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                                       "periodSeconds": 10, "failureThreshold": 3},
                    "livenessProbe": {"httpGet": {"path": "/health", "port": "http"},
                                      "periodSeconds": 20, "failureThreshold": 6},
                    "volumeMounts": [{"name": "models", "mountPath": "/models"},
                                     {"name": "dshm", "mountPath": "/dev/shm"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                },
                {
                    "name": "metrics-proxy",
                    "image": "registry.example.com/proxy:1.4.2",
                    "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                  "limits": {"memory": "128Mi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                },
            ],
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
                        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In",
                     "values": ["zone-a", "zone-b"]}]}]}}},
            "tolerations": [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "priority": 0,
            "enableServiceLinks": True,
        },
    }  # fmt: skip


def pods(objects: list[dict[str, Any]], n: int, seed: int = SEED) -> list[dict[str, Any]]:
    """Half by profile name, half by aimId (some with a metric filter)."""
    rng = random.Random(seed)
    names = [o["metadata"]["name"] for o in objects if o["kind"] == KIND_CLUSTER_PROFILE]
    out = []
    for i in range(n):
        if i % 2 == 0:
            name = rng.choice(names)
            if len(name) <= MAX_LABEL_VALUE:
                out.append(deployment_pod(rng, {PROFILE_KEY: name}, {}))
            else:  # a name a label value cannot hold goes in the annotation
                out.append(deployment_pod(rng, {PROFILE_KEY: ""}, {PROFILE_KEY: name}))
        else:
            aim_id, _ = rng.choice(AIMS)
            label = encode_aim_id(aim_id)
            assert label is not None
            filters = {METRIC_KEY: "latency"} if rng.random() < 0.5 else {}
            out.append(deployment_pod(rng, {AIM_ID_KEY: label}, filters))
    return out


def review(pod: dict[str, Any], uid: int) -> bytes:
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"00000000-0000-4000-8000-{uid:012d}",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": pod["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
        },
    }
    return json.dumps(body).encode()


# --- measuring -----------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cuts[49] * 1000, "p99": cuts[98] * 1000, "max": ordered[-1] * 1000}


def show(what: str, samples: list[float], extra: str = "") -> dict[str, float]:
    p = percentiles(samples)
    print(
        f"{what:<58} n={len(samples):>5}  p50 {p['p50']:6.2f} ms  p99 {p['p99']:6.2f} ms  "
        f"max {p['max']:6.2f} ms{extra}",
        flush=True,
    )
    return p


def time_decisions(lookup: Lookup, bodies: list[dict[str, Any]]) -> list[float]:
    config = MatcherConfig()
    out = []
    for pod in bodies:
        started = time.perf_counter()
        decision = admit(pod, pod["metadata"]["namespace"], lookup, config)
        out.append(time.perf_counter() - started)
        assert decision.allowed or decision.message
    return out


class Client:
    """One kept-alive HTTPS connection to the webhook, handshake done before timing."""

    def __init__(self, port: int, ca_pem: str) -> None:
        context = ssl.create_default_context(cadata=ca_pem)
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        self.conn.connect()

    def post(self, body: bytes) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        self.conn.request(
            "POST", "/mutate-pods", body=body, headers={"Content-Type": "application/json"}
        )
        answer = self.conn.getresponse()
        data = answer.read()
        elapsed = time.perf_counter() - started
        assert answer.status == 200, data[:200]
        return elapsed, json.loads(data)


def round_trips(port: int, ca_pem: str, bodies: list[bytes], clients: int) -> list[float]:
    samples: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []

    def run(share: list[bytes]) -> None:
        client = Client(port, ca_pem)
        mine = []
        for body in share:
            elapsed, answer = client.post(body)
            if answer["response"]["uid"] != json.loads(body)["request"]["uid"]:
                failures.append("uid mismatch")
            mine.append(elapsed)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=run, args=(bodies[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    return samples


# --- the server process --------------------------------------------------------------------------


def serve(info: Path) -> None:
    """The webhook as the matcher runs it, in this process; RSS reported at each stage."""
    from matcher.webhook import certs  # noqa: PLC0415
    from matcher.webhook.server import PodAdmission, TlsStore, WebhookServer  # noqa: PLC0415

    stages = {"start": rss()}
    objects = json.loads(Path(os.environ["BENCH_PROFILES"]).read_text())
    cache = cache_of(objects)
    del objects
    stages["caches"] = rss()
    ca = certs.make_ca(datetime.now(UTC))
    tls = TlsStore()
    tls.load(certs.make_serving(ca, ["127.0.0.1"], datetime.now(UTC)))
    admission = PodAdmission(profile_lookup(cache), MatcherConfig, lambda: True)
    server = WebhookServer("127.0.0.1", 0, admission, tls).start()
    stages["listening"] = rss()
    info.write_text(json.dumps({"port": server.port, "ca": ca.cert_pem.decode(), **stages}))
    for line in sys.stdin:
        if line.strip() == "rss":
            print(
                json.dumps({"rss": rss(), "peak": psutil.Process().memory_info().rss}), flush=True
            )
        elif line.strip() == "quit":
            break
    server.stop()


def rss_probe(proc: subprocess.Popen[str]) -> int:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write("rss\n")
    proc.stdin.flush()
    return int(json.loads(proc.stdout.readline())["rss"])


# --- the baseline: no caches ---------------------------------------------------------------------


def baseline(objects: list[dict[str, Any]], bodies: list[dict[str, Any]]) -> list[float] | None:
    """The decision with the profile(s) read from kube-apiserver per admission."""
    from aimkit.kube import KubeClient  # noqa: PLC0415
    from aimkit.kubeconfig import load  # noqa: PLC0415
    from matcher.core.admission import CachedEntry  # noqa: PLC0415
    from scripts.k8s_tools import tool  # noqa: PLC0415
    from tests.conftest import project_crd_files  # noqa: PLC0415
    from tests.controlplane.plane import ControlPlane  # noqa: PLC0415

    try:
        tool("kube-apiserver")
    except Exception:  # not built: make tools
        print("baseline skipped: kube-apiserver is not built (make tools)")
        return None
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(Path(tmp)) as plane:
        kubectl = [tool("kubectl"), "--kubeconfig", str(plane.admin_kubeconfig)]
        for crd in project_crd_files():
            subprocess.run([*kubectl, "apply", "-f", str(crd)], check=True, capture_output=True)
        subprocess.run([*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
                       check=True, capture_output=True)  # fmt: skip
        for ns in {o["metadata"].get("namespace") for o in objects} - {None}:
            plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        started = time.monotonic()
        for obj in objects:
            path = _collection(obj)
            body = {k: v for k, v in obj.items() if k != "status"}
            status, made = plane.request("POST", path, body)
            assert status == 201, made
            plane.request("PATCH", f"{path}/{obj['metadata']['name']}/status",
                          {"status": obj["status"]})  # fmt: skip
        print(f"(baseline: {len(objects)} profiles created on kube-apiserver in "
              f"{time.monotonic() - started:.1f} s)")  # fmt: skip
        api = KubeClient(load(plane.admin_kubeconfig), pool_size=2)
        config = MatcherConfig()

        def named(kind: str, namespace: str, name: str) -> CachedEntry | None:
            path = _collection({"kind": kind, "metadata": {"namespace": namespace}})
            try:
                obj = api.request("GET", f"{path}/{name}")
            except Exception:
                return None
            cached = cached_profile(obj)
            return CachedEntry(cached.profile, cached.error)

        def by_aim_id(aim_id: str) -> list[Profile]:
            out = []
            for kind in (KIND_CLUSTER_PROFILE, KIND_PROFILE):
                path = _collection({"kind": kind, "metadata": {}})
                items = api.request("GET", path, query={"fieldSelector": f"spec.aimId={aim_id}"})
                out += [p for o in items.get("items") or [] if (p := cached_profile(o).profile)]
            return out

        lookup = Lookup(named=named, by_aim_id=by_aim_id)
        samples = []
        for pod in bodies:
            started_one = time.perf_counter()
            admit(pod, pod["metadata"]["namespace"], lookup, config)
            samples.append(time.perf_counter() - started_one)
        api.close()
        return samples


def _collection(obj: dict[str, Any]) -> str:
    base = "/apis/aim.eai.amd.com/v1alpha2"
    if obj["kind"] == KIND_PROFILE:
        return f"{base}/namespaces/{obj['metadata'].get('namespace') or 'default'}/aimprofiles"
    return f"{base}/aimclusterprofiles"


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Admission latency and memory.")
    parser.add_argument("--n", type=int, default=2000, help="admissions per scenario")
    parser.add_argument("--no-baseline", action="store_true", help="skip the kube-apiserver one")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0

    started = time.monotonic()
    objects = evaluated_objects()
    phases: dict[str, int] = {}
    for obj in objects:
        phase = obj["status"]["status"]
        phases[phase] = phases.get(phase, 0) + 1
    print(f"{len(objects)} profiles evaluated against {NODES} nodes in "
          f"{time.monotonic() - started:.1f} s: {phases}")  # fmt: skip
    cache = cache_of(objects)
    lookup = profile_lookup(cache)
    bodies = pods(objects, args.n)
    size = statistics.mean(len(json.dumps(p)) for p in bodies)
    outcomes: dict[str, int] = {}
    for pod in bodies:
        outcome = admit(pod, pod["metadata"]["namespace"], lookup, MatcherConfig()).outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"{len(bodies)} pods of {size / 1024:.1f} KiB JSON on average; outcomes {outcomes}")

    time_decisions(lookup, bodies[:200])  # warm up
    show("1. decision alone (admit), in process", time_decisions(lookup, bodies))

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "profiles.json"
        data.write_text(json.dumps(objects))
        info = Path(tmp) / "info.json"
        env = {**os.environ, "BENCH_PROFILES": str(data)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_admission", "--serve", str(info)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not info.exists() or not info.read_text():
                assert proc.poll() is None, "the webhook process died"
                assert time.monotonic() < deadline, "the webhook process never listened"
                time.sleep(0.05)
            server = json.loads(info.read_text())
            encoded = [review(p, i) for i, p in enumerate(bodies)]
            round_trips(server["port"], server["ca"], encoded[:200], 1)  # warm up
            sequential = round_trips(server["port"], server["ca"], encoded, 1)
            p = show("2. HTTPS round trip, one kept-alive connection", sequential)
            began = time.perf_counter()
            concurrent = round_trips(server["port"], server["ca"], encoded, 4)
            rate = len(encoded) / (time.perf_counter() - began)
            show("3. HTTPS round trip, 4 clients at once", concurrent, f"  ({rate:.0f}/s)")
            served = rss_probe(proc)
        finally:
            if proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.close()
            proc.wait(30)
    print(
        f"4. webhook process RSS: {mib(server['start'])} before the caches, "
        f"{mib(server['caches'])} with {len(objects)} profiles cached "
        f"(+{mib(server['caches'] - server['start'])}), {mib(server['listening'])} listening, "
        f"{mib(served)} after {3 * len(bodies) + 400} admissions "
        f"(serving cost +{mib(served - server['listening'])})"
    )
    met = p["p99"] < TARGET_P99_MS
    print(f"target: HTTPS p99 < {TARGET_P99_MS:.0f} ms: {'met' if met else 'MISSED'}")

    if not args.no_baseline:
        few = bodies[: min(len(bodies), 1000)]
        samples = baseline(objects, few)
        if samples is not None:
            show("5. baseline: profiles read from kube-apiserver per admission", samples)
            show("   the same pods, decision from the caches", time_decisions(lookup, few))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
