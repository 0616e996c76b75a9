"""Evaluate 1,000 profiles against 5,000 nodes: the label-key index vs a plain nested loop.

Run: ``.venv/bin/python -m benchmarks.bench_matching`` (about 10 s). Both paths run the same
``evaluate()``; the naive one gets a ClusterIndex stand-in that scans every node for every
profile and memoises nothing, which is what a matcher without an index does. The statuses of
both are compared, so the speed-up cannot come from doing less.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Hashable
from datetime import UTC, datetime
from typing import Any, TypeVar

from detector.labels import accelerator_label_key, partition_label_key
from matcher.api.models import Profile, ProfileStatus, parse_profile
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.evaluate import evaluate
from matcher.core.nodes import NodeView, node_view

T = TypeVar("T")
NODES = 5_000
PROFILES = 1_000
SEED = 20261127
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

# (GPU model, GPUs per node, share of GPU nodes, CPU generation, cores, memory per node in Gi)
GPU_MODELS = [
    ("MI300X", 8, 0.25, "EPYC_ZEN4", 192, 2048),
    ("MI325X", 8, 0.15, "EPYC_ZEN5", 128, 3072),
    ("MI355X", 8, 0.10, "EPYC_ZEN5", 128, 3072),
    ("MI350X", 8, 0.08, "EPYC_ZEN5", 128, 3072),
    ("MI308X", 8, 0.07, "EPYC_ZEN4", 192, 1536),
    ("MI300A", 4, 0.05, "EPYC_ZEN4", 96, 512),
    ("MI250X", 4, 0.05, "EPYC_ZEN3", 64, 512),
    ("MI210", 4, 0.05, "EPYC_ZEN3", 64, 256),
]
CPU_ONLY = [("EPYC_ZEN5", 128, 1024), ("EPYC_ZEN4", 96, 768)]
#: 10 accelerator models: 8 GPUs and 2 EPYC generations that profiles can target.
MODELS = [m[0] for m in GPU_MODELS] + ["EPYC_ZEN5", "EPYC_ZEN4"]


def make_node(rng: random.Random, index: int) -> dict[str, Any]:
    labels: dict[str, str] = {
        "kubernetes.io/hostname": f"node-{index}",
        "kubernetes.io/os": "linux",
    }
    allocatable: dict[str, str] = {"pods": "110", "ephemeral-storage": "3500Gi"}
    roll = rng.random()
    cumulative = 0.0
    for model, gpus, share, cpu_gen, cores, mem_gi in GPU_MODELS:
        cumulative += share
        if roll < cumulative:
            labels[accelerator_label_key(model)] = str(gpus)
            labels[accelerator_label_key(cpu_gen)] = str(cores)
            if model == "MI300X" and rng.random() < 0.2:  # CPX-NPS4 partitioned
                labels[partition_label_key("CPX-NPS4")] = str(gpus * 8)
                resource = "amd.com/gpu" if rng.random() < 0.5 else "amd.com/cpx_nps4"
                allocatable[resource] = str(gpus * 8)
            else:
                labels[partition_label_key("default")] = str(gpus)
                # a few nodes with a GPU down
                allocatable["amd.com/gpu"] = str(gpus - (1 if rng.random() < 0.05 else 0))
            allocatable["cpu"] = str(cores - 2)
            allocatable["memory"] = f"{mem_gi * 1024 - rng.randrange(2048, 8192)}Mi"
            break
    else:
        cpu_gen, cores, mem_gi = rng.choice(CPU_ONLY)
        labels[accelerator_label_key(cpu_gen)] = str(cores)
        allocatable["cpu"] = f"{cores * 1000 - 1500}m"
        allocatable["memory"] = f"{mem_gi * 1024 * 1024 - rng.randrange(2**20, 2**23)}Ki"
    ready = rng.random() > 0.03
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"node-{index:05d}", "labels": labels},
        "spec": {"unschedulable": True} if rng.random() < 0.05 else {},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}],
        },
    }


def make_profile(rng: random.Random, index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "aimId": f"org/model-{index % 120}",
        "image": f"amdenterpriseai/aim-model-{index % 120}:0.{index % 10}.{index % 7}",
        "metric": rng.choice(["latency", "throughput"]),
        "precision": rng.choice(["fp8", "fp16", "bf16", "fp4"]),
        "type": rng.choice(["optimized", "general", "preview", "unoptimized"]),
        "primary": rng.random() < 0.3,
    }
    roll = rng.random()
    if roll < 0.05:
        pass  # CPU-only
    elif roll < 0.08:
        spec["acceleratorModel"] = "MI400X"  # hardware nobody has yet
        spec["acceleratorCount"] = 8
    elif roll < 0.10:
        spec["resources"] = {"requests": {"amd.com/gpu": str(rng.choice([1, 2, 4]))}}
    else:
        model = rng.choice(MODELS)
        spec["acceleratorModel"] = model
        if model.startswith("EPYC_"):
            spec["acceleratorType"] = "cpu"
            spec["acceleratorCount"] = rng.choice([8, 16, 32, 64])
        else:
            spec["acceleratorType"] = "gpu"
            spec["acceleratorCount"] = rng.choice([1, 1, 2, 4, 8, 8, 16])
        if rng.random() < 0.6:
            spec["resources"] = {
                "requests": {
                    "cpu": str(rng.choice([4, 8, 16, 32])),
                    "memory": f"{rng.choice([32, 64, 128, 256, 512])}Gi",
                }
            }
    return {
        "apiVersion": "aim.eai.amd.com/v1alpha2",
        "kind": "AIMClusterProfile",
        "metadata": {"name": f"profile-{index:04d}", "generation": 1},
        "spec": spec,
    }


class NaiveCluster(ClusterIndex):
    """Same interface, no index: every lookup scans every node, nothing is memoised."""

    def nodes_with_key(self, label_key: str) -> Collection[NodeView]:
        return [node for node in self if label_key in node.labels]

    def nodes_with_resource(self, resource: str) -> Collection[NodeView]:
        return [node for node in self if node.allocatable.get(resource, 0) > 0]

    def label_keys(self) -> set[str]:
        return {key for node in self for key in node.labels}

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        return compute()


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def evaluate_all(profiles: list[Profile], cluster: ClusterIndex) -> list[ProfileStatus]:
    config = MatcherConfig()
    return [evaluate(p, cluster, config, NOW) for p in profiles]


def main() -> None:
    rng = random.Random(SEED)
    node_objs = [make_node(rng, i) for i in range(NODES)]
    profile_objs = [make_profile(rng, i) for i in range(PROFILES)]

    views, parse_nodes_s = timed(lambda: [node_view(o) for o in node_objs])
    profiles, parse_profiles_s = timed(lambda: [parse_profile(o) for o in profile_objs])
    cluster, index_s = timed(lambda: ClusterIndex(views))
    indexed, indexed_s = timed(lambda: evaluate_all(profiles, cluster))
    # Index without the shared-result memo, to show what each part contributes.
    no_memo = ClusterIndex(views)
    no_memo.memo = lambda key, compute: compute()  # type: ignore[method-assign]
    _, no_memo_s = timed(lambda: evaluate_all(profiles, no_memo))
    naive, naive_s = timed(lambda: evaluate_all(profiles, NaiveCluster(views)))
    if [s.to_dict() for s in indexed] != [s.to_dict() for s in naive]:
        raise SystemExit("indexed and naive evaluation disagree")

    ready = sum(1 for s in indexed if s.status == "Ready")
    print(f"{PROFILES} profiles x {NODES} nodes, {len(MODELS)} accelerator models (seed {SEED})")
    print(f"  parse nodes (node_view)           {parse_nodes_s * 1000:8.1f} ms")
    print(f"  parse profiles (parse_profile)    {parse_profiles_s * 1000:8.1f} ms")
    print(f"  build index                       {index_s * 1000:8.1f} ms")
    print(f"  evaluate, indexed (target < 1 s)  {indexed_s * 1000:8.1f} ms")
    print(f"  evaluate, indexed without memo    {no_memo_s * 1000:8.1f} ms")
    print(f"  evaluate, naive profiles x nodes  {naive_s * 1000:8.1f} ms")
    print(f"  speed-up naive / indexed          {naive_s / indexed_s:8.1f} x")
    print(f"  speed-up naive / indexed-no-memo  {naive_s / no_memo_s:8.1f} x")
    print(f"  statuses identical: yes; Ready {ready}, NotAvailable {PROFILES - ready}")


if __name__ == "__main__":
    main()
