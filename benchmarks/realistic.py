"""Node and profile objects of real size and shape, for benchmarks at cluster scale.

A Node as ``kubectl get nodes -o json`` returns it from a cluster of AMD Instinct and EPYC
machines running Node Feature Discovery, AMD's device plugin and node labeller, and our
detector: NFD's ``feature.node.kubernetes.io/*`` labels (CPUID flags, kernel, OS, PCI, memory,
storage) and its ``feature-labels`` annotation, the labeller's ``amd.com/gpu.*`` and
``beta.amd.com/gpu.*`` labels, our ``aim-accelerator.*`` labels, ``managedFields`` of kubeadm,
the kubelet, kube-controller-manager, nfd-master, the labeller and aim-detector, addresses,
``nodeInfo``, four conditions with heartbeats, allocatable and capacity including
``amd.com/gpu`` (or ``amd.com/cpx_nps4`` on partitioned MI300X), and ``status.images`` (ROCm,
vLLM, AIM and system images with sizes; the kubelet reports at most 50). A GPU node is 10-14 KB
as compact JSON (``json.dumps``), a CPU-only node 6-9 KB.

Profiles follow the spec's examples: many models (``aimId``), each with latency and throughput
profiles over several precisions and accelerators, ``engineArgs`` with typed values,
``modelSources``, a share of namespaced ``AIMProfile`` objects, partitioned-GPU profiles, and
profiles for hardware no node has (they come out NotAvailable).

API (deterministic per seed; the first ``k`` objects of ``n`` do not depend on ``n``)::

    realistic_nodes(n, seed=0) -> Iterator[dict]      # Node objects
    realistic_profiles(n, seed=0) -> Iterator[dict]   # AIMClusterProfile / AIMProfile objects
    write_json_list(path, objects)                    # as `kubectl get ... -o json` writes it
    write_yaml_list(path, objects)                    # as `kubectl get ... -o yaml` writes it
    write_yaml_documents(path, objects)               # one YAML document per object
    KubectlList(path, "json" | "yaml")                # the same, one item at a time

The writers stream, so 20,000 nodes never sit in memory at once.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from detector.labels import (
    OWNED_LABELS_ANNOTATION,
    accelerator_label_key,
    partition_label_key,
)

#: "now" for every timestamp, so output depends on the seed only.
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

# (model, GPUs per node, share of nodes, device id, product name, VRAM, CUs,
#  CPU generation, physical cores, memory per node in Gi)
GPU_MACHINES = [
    ("MI300X", 8, 0.25, "74a1", "AMD_Instinct_MI300X_OAM", "192G", 304, "EPYC_ZEN4", 192, 2048),
    ("MI325X", 8, 0.15, "74a5", "AMD_Instinct_MI325X_OAM", "256G", 304, "EPYC_ZEN5", 128, 3072),
    ("MI355X", 8, 0.10, "75a3", "AMD_Instinct_MI355X_OAM", "288G", 256, "EPYC_ZEN5", 128, 3072),
    ("MI350X", 8, 0.08, "75a0", "AMD_Instinct_MI350X_OAM", "288G", 256, "EPYC_ZEN5", 128, 3072),
    ("MI308X", 8, 0.07, "74a2", "AMD_Instinct_MI308X_OAM", "192G", 80, "EPYC_ZEN4", 192, 1536),
    ("MI300A", 4, 0.05, "74a0", "AMD_Instinct_MI300A", "128G", 228, "EPYC_ZEN4", 96, 512),
    ("MI250X", 4, 0.05, "740c", "AMD_Instinct_MI250X_MI250", "128G", 220, "EPYC_ZEN3", 64, 512),
    ("MI210", 4, 0.05, "740f", "AMD_Instinct_MI210", "64G", 104, "EPYC_ZEN3", 64, 256),
]
# (CPU generation, physical cores, memory in Gi, CPU family/model as NFD reports them)
CPU_MACHINES = [("EPYC_ZEN5", 128, 1024, "26", "2"), ("EPYC_ZEN4", 96, 768, "25", "17")]
CPU_MODEL_OF = {"EPYC_ZEN3": ("25", "1"), "EPYC_ZEN4": ("25", "17"), "EPYC_ZEN5": ("26", "2")}
#: Every accelerator id a profile can target on these nodes.
MODELS = [m[0] for m in GPU_MACHINES] + ["EPYC_ZEN5", "EPYC_ZEN4"]
#: Hardware no generated node has: profiles for it are NotAvailable.
ABSENT_MODELS = ["MI400X", "MI450X"]

# NFD's cpu-cpuid features on a Zen 4 EPYC (``feature.node.kubernetes.io/cpu-cpuid.<X>``).
CPUID = [
    *("ADX", "AESNI", "AVX", "AVX2", "AVX512BF16", "AVX512BW", "AVX512F", "AVX512VL"),
    *("AVX512VNNI", "FMA3", "FSRM", "GFNI", "SHA", "SVM", "VAES", "VPCLMULQDQ"),
]
NFD_OTHER = {
    "cpu-hardware_multithreading": "true",
    "cpu-model.vendor_id": "AMD",
    "cpu-pstate.status": "active",
    "kernel-version.full": "6.8.0-60-generic",
    "kernel-version.major": "6",
    "kernel-version.minor": "8",
    "kernel-version.revision": "0",
    "memory-numa": "true",
    "network-sriov.capable": "true",
    "pci-1a03.present": "true",
    "pci-15b3.present": "true",
    "storage-nonrotationaldisk": "true",
    "system-os_release.ID": "ubuntu",
    "system-os_release.VERSION_ID": "22.04",
}
NFD = "feature.node.kubernetes.io/"

# (repository, tags, size in GB range) of images a GPU node pulls; the kubelet lists the 50
# largest, each under its digest and its tag.
GPU_IMAGES = [
    (
        "docker.io/rocm/vllm",
        [
            "rocm6.4.1_vllm_0.9.1_20250715",
            "rocm6.3.1_vllm_0.8.5_20250521",
            "instinct_main",
            "rocm6.4.1_vllm_0.10.0_20250812",
        ],
        (20, 27),
    ),
    ("docker.io/rocm/vllm-dev", ["nightly_0624_rc2_0624_rc2_20250620", "main"], (21, 26)),
    (
        "docker.io/rocm/pytorch",
        [
            "rocm6.4.1_ubuntu22.04_py3.10_pytorch_release_2.6.0",
            "rocm6.3_ubuntu22.04_py3.10_pytorch_release_2.4.0",
        ],
        (18, 24),
    ),
    ("docker.io/rocm/sgl-dev", ["v0.4.9.post2-rocm630-mi30x-20250716"], (30, 36)),
    ("docker.io/amdenterpriseai/aim-qwen-qwen3-32b", ["0.8.5", "0.8.4"], (22, 26)),
    ("docker.io/amdenterpriseai/aim-meta-llama-llama-3-1-70b-instruct", ["0.8.5"], (22, 26)),
    ("docker.io/amdenterpriseai/aim-meta-llama-llama-3-3-70b-instruct", ["0.8.5"], (22, 26)),
    ("docker.io/amdenterpriseai/aim-deepseek-ai-deepseek-r1", ["0.8.5"], (23, 27)),
    ("docker.io/amdenterpriseai/aim-mistralai-mixtral-8x22b-instruct-v0-1", ["0.8.4"], (22, 26)),
    ("docker.io/amdenterpriseai/aim-base", ["0.8.5", "0.8.4", "0.8.3"], (20, 24)),
    ("docker.io/rocm/k8s-device-plugin", ["1.31.0.7"], (0.06, 0.08)),
    ("docker.io/rocm/k8s-device-plugin", ["labeller-1.31.0.7"], (0.09, 0.11)),
    ("docker.io/rocm/device-metrics-exporter", ["v1.3.0"], (0.6, 0.8)),
    ("docker.io/rocm/gpu-operator", ["v1.3.0"], (0.05, 0.07)),
]
GPU_REPOS = {repo for repo, _, _ in GPU_IMAGES}
SYSTEM_IMAGES = [
    ("registry.k8s.io/kube-proxy", ["v1.32.4"], (0.03, 0.04)),
    ("registry.k8s.io/nfd/node-feature-discovery", ["v0.17.3"], (0.07, 0.08)),
    ("docker.io/calico/node", ["v3.29.3"], (0.14, 0.16)),
    ("docker.io/calico/cni", ["v3.29.3"], (0.09, 0.1)),
    ("docker.io/calico/pod2daemon-flexvol", ["v3.29.3"], (0.006, 0.008)),
    ("quay.io/prometheus/node-exporter", ["v1.9.1"], (0.011, 0.013)),
    ("ghcr.io/amd/aim-accelerator", ["0.1.0"], (0.09, 0.11)),
    ("docker.io/library/python", ["3.12-slim"], (0.04, 0.05)),
    ("registry.k8s.io/pause", ["3.10"], (0.0003, 0.0004)),
    ("docker.io/grafana/alloy", ["v1.8.3"], (0.16, 0.18)),
    ("registry.k8s.io/csi-secrets-store/driver", ["v1.5.1"], (0.03, 0.04)),
    ("docker.io/library/busybox", ["1.37"], (0.002, 0.003)),
]
#: The labeller's experimental ``beta.amd.com/gpu.*`` labels kept here, each with a counter
#: label ``beta.amd.com/gpu.<key>.<value>=<GPUs>``.
BETA_KEYS = ("family", "product-name", "device-id")
CONDITIONS = [
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "KubeletReady", "kubelet is posting ready status"),
]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def _uid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}"


def _images(rng: random.Random, gpu: bool) -> list[dict[str, Any]]:
    catalogue = (GPU_IMAGES if gpu else []) + SYSTEM_IMAGES
    images: list[dict[str, Any]] = []
    for repo, tags, (low, high) in catalogue:
        for tag in tags:
            if rng.random() < (0.15 if repo in GPU_REPOS else 0.6):
                digest = hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()
                size = int(rng.uniform(low, high) * 1e9)
                images.append(
                    {"names": [f"{repo}@sha256:{digest}", f"{repo}:{tag}"], "sizeBytes": size}
                )
    images.sort(key=lambda image: -image["sizeBytes"])
    return images[:50]


def _fields(keys: Iterable[str]) -> dict[str, Any]:
    return {f"f:{key}": {} for key in keys}


def _managed_fields(
    labels: dict[str, str],
    *,
    nfd_keys: list[str],
    amd_keys: list[str],
    ours: list[str],
    resources: list[str],
    created: datetime,
    heartbeat: datetime,
) -> list[dict[str, Any]]:
    def entry(manager: str, when: datetime, fields: dict[str, Any], **extra: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
            "manager": manager,
            "operation": "Update",
            "time": _stamp(when),
            **extra,
        }

    kubelet_labels = [k for k in labels if k.startswith(("kubernetes.io/", "beta.kubernetes.io/"))]
    conditions = {
        f'k:{{"type":"{kind}"}}': {
            ".": {},
            **_fields(
                ["lastHeartbeatTime", "lastTransitionTime", "message", "reason", "status", "type"]
            ),
        }
        for kind, _, _ in CONDITIONS
    }
    return [
        entry(
            "kubeadm",
            created,
            {"f:metadata": {"f:annotations": _fields(["kubeadm.alpha.kubernetes.io/cri-socket"])}},
        ),
        entry(
            "kubelet",
            created,
            {
                "f:metadata": {
                    "f:annotations": {
                        ".": {},
                        **_fields(["volumes.kubernetes.io/controller-managed-attach-detach"]),
                    },
                    "f:labels": {".": {}, **_fields(kubelet_labels)},
                },
                "f:spec": _fields(["providerID"]),
            },
        ),
        entry(
            "kube-controller-manager",
            created + timedelta(seconds=20),
            {
                "f:metadata": {"f:annotations": _fields(["node.alpha.kubernetes.io/ttl"])},
                "f:spec": {"f:podCIDR": {}, "f:podCIDRs": {".": {}, 'v:"10.244.0.0/24"': {}}},
            },
        ),
        entry(
            "nfd-master",
            created + timedelta(minutes=2),
            {
                "f:metadata": {
                    "f:annotations": _fields(["nfd.node.kubernetes.io/feature-labels"]),
                    "f:labels": _fields(NFD + k for k in nfd_keys),
                }
            },
        ),
        *(
            [
                entry(
                    "amdgpu-node-labeller",
                    created + timedelta(minutes=3),
                    {"f:metadata": {"f:labels": _fields(amd_keys)}},
                )
            ]
            if amd_keys
            else []
        ),
        entry(
            "aim-detector",
            created + timedelta(minutes=3),
            {
                "f:metadata": {
                    "f:annotations": _fields([OWNED_LABELS_ANNOTATION]),
                    "f:labels": _fields(ours),
                }
            },
        ),
        entry(
            "kubelet",
            heartbeat,
            {
                "f:status": {
                    "f:allocatable": _fields(resources),
                    "f:capacity": _fields(resources),
                    "f:conditions": conditions,
                    "f:images": {},
                    "f:nodeInfo": {"f:bootID": {}},
                }
            },
            subresource="status",
        ),
    ]


def realistic_node(rng: random.Random, index: int) -> dict[str, Any]:
    """One Node; ``rng`` decides its machine type, health and everything random about it."""
    name = f"node-{index:05d}"
    roll = rng.random()
    cumulative = 0.0
    machine = None
    for entry in GPU_MACHINES:
        cumulative += entry[2]
        if roll < cumulative:
            machine = entry
            break
    ours: dict[str, str] = {}
    amd: dict[str, str] = {}
    allocatable: dict[str, str] = {}
    if machine is not None:
        model, gpus, _, device, product, vram, cus, cpu_gen, cores, mem_gi = machine
        ours[accelerator_label_key(model)] = str(gpus)
        ours[accelerator_label_key(cpu_gen)] = str(cores)
        partitioned = model == "MI300X" and rng.random() < 0.2  # CPX-NPS4
        if partitioned:
            ours[partition_label_key("CPX-NPS4")] = str(gpus * 8)
            resource = "amd.com/gpu" if rng.random() < 0.5 else "amd.com/cpx_nps4"
            allocatable[resource] = str(gpus * 8)
        else:
            ours[partition_label_key("default")] = str(gpus)
            allocatable["amd.com/gpu"] = str(gpus - (1 if rng.random() < 0.05 else 0))
        family = "AI"
        partition = "cpx_nps4" if partitioned else "spx_nps1"
        for prefix in ("amd.com/gpu.", "beta.amd.com/gpu."):
            for key, value in (
                ("cu-count", str(cus)),
                ("device-id", device),
                ("family", family),
                ("product-name", product),
                ("simd-count", str(cus * 4)),
                ("vram", vram),
                ("driver-version", "6.12.12"),
                ("compute-memory-partition", partition),
            ):
                if prefix.startswith("beta.") and key not in BETA_KEYS:
                    continue
                amd[prefix + key] = value
                if prefix.startswith("beta."):
                    amd[f"{prefix}{key}.{value}"] = str(gpus)
        cpu_family, cpu_model = CPU_MODEL_OF[cpu_gen]
        allocatable["cpu"] = str(cores * 2 - 4)
        allocatable["memory"] = f"{mem_gi * 1024 - rng.randrange(2048, 8192)}Mi"
    else:
        cpu_gen, cores, mem_gi, cpu_family, cpu_model = rng.choice(CPU_MACHINES)
        ours[accelerator_label_key(cpu_gen)] = str(cores)
        allocatable["cpu"] = f"{cores * 2000 - 1500}m"
        allocatable["memory"] = f"{mem_gi * 1024 * 1024 - rng.randrange(2**20, 2**23)}Ki"
    allocatable |= {
        "ephemeral-storage": "3410179856326",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "pods": "110",
    }
    capacity = dict(allocatable, **{"ephemeral-storage": "3700228096Ki"})
    nfd = {f"cpu-cpuid.{flag}": "true" for flag in CPUID if rng.random() < 0.97}
    nfd |= NFD_OTHER | {"cpu-model.family": cpu_family, "cpu-model.id": cpu_model}
    if machine is not None:
        nfd["pci-1002.present"] = "true"
        nfd["pci-1002.sriov.capable"] = "true"
    zone = f"zone-{rng.randrange(4)}"
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        **{NFD + key: value for key, value in nfd.items()},
        **amd,
        **ours,
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "bare-metal",
        "topology.kubernetes.io/region": "us-central",
        "topology.kubernetes.io/zone": zone,
    }
    created = NOW - timedelta(days=rng.randrange(1, 400), seconds=rng.randrange(86400))
    heartbeat = NOW - timedelta(seconds=rng.randrange(40))
    ready = rng.random() > 0.03
    conditions = []
    for kind, reason, message in CONDITIONS:
        healthy = ready or kind != "Ready"
        conditions.append(
            {
                "lastHeartbeatTime": _stamp(heartbeat),
                "lastTransitionTime": _stamp(created + timedelta(minutes=1)),
                "message": message if healthy else "Kubelet stopped posting node status.",
                "reason": reason if healthy else "NodeStatusUnknown",
                "status": ("True" if kind == "Ready" else "False") if healthy else "Unknown",
                "type": kind,
            }
        )
    ip = f"10.{20 + index // 65536}.{index // 256 % 256}.{index % 256}"
    spec: dict[str, Any] = {
        "podCIDR": f"10.{128 + index // 256 % 64}.{index % 256}.0/24",
        "podCIDRs": [f"10.{128 + index // 256 % 64}.{index % 256}.0/24"],
        "providerID": f"metal://{name}",
    }
    if rng.random() < 0.05:
        spec["unschedulable"] = True
        spec["taints"] = [
            {
                "effect": "NoSchedule",
                "key": "node.kubernetes.io/unschedulable",
                "timeAdded": _stamp(NOW - timedelta(hours=3)),
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "annotations": {
                OWNED_LABELS_ANNOTATION: ",".join(sorted(ours)),
                "csi.volume.kubernetes.io/nodeid": json.dumps(
                    {"secrets-store.csi.k8s.io": name}, separators=(",", ":")
                ),
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
                "nfd.node.kubernetes.io/feature-labels": ",".join(sorted(nfd)),
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
            "creationTimestamp": _stamp(created),
            "labels": labels,
            "managedFields": _managed_fields(
                labels,
                nfd_keys=sorted(nfd),
                amd_keys=sorted(amd),
                ours=sorted(ours),
                resources=sorted(allocatable),
                created=created,
                heartbeat=heartbeat,
            ),
            "name": name,
            "resourceVersion": str(rng.randrange(10**6, 10**8)),
            "uid": _uid(rng),
        },
        "spec": spec,
        "status": {
            "addresses": [
                {"address": ip, "type": "InternalIP"},
                {"address": name, "type": "Hostname"},
            ],
            "allocatable": allocatable,
            "capacity": capacity,
            "conditions": conditions,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "features": {"supplementalGroupsPolicy": True},
            "images": _images(rng, machine is not None),
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": _uid(rng),
                "containerRuntimeVersion": "containerd://1.7.27",
                "kernelVersion": "6.8.0-60-generic",
                "kubeProxyVersion": "v1.32.4",
                "kubeletVersion": "v1.32.4",
                "machineID": _hex(rng, 32),
                "operatingSystem": "linux",
                "osImage": "Ubuntu 22.04.5 LTS",
                "systemUUID": _uid(rng),
            },
            "runtimeHandlers": [
                {
                    "features": {"recursiveReadOnlyMounts": True, "userNamespaces": False},
                    "name": name_,
                }
                for name_ in ("runc", "")
            ],
        },
    }


def realistic_nodes(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` Node objects, one at a time (deterministic per seed)."""
    rng = random.Random(seed)
    for index in range(n):
        yield realistic_node(rng, index)


# (aimId, parameters in billions): the models AIM images serve.
AIMS = [
    ("qwen/qwen3-32b", 32),
    ("qwen/qwen3-235b-a22b", 235),
    ("qwen/qwen2.5-72b-instruct", 72),
    ("meta-llama/llama-3.1-8b-instruct", 8),
    ("meta-llama/llama-3.1-70b-instruct", 70),
    ("meta-llama/llama-3.1-405b-instruct", 405),
    ("meta-llama/llama-3.3-70b-instruct", 70),
    ("meta-llama/llama-4-scout-17b-16e-instruct", 109),
    ("deepseek-ai/deepseek-r1", 671),
    ("deepseek-ai/deepseek-v3", 671),
    ("mistralai/mixtral-8x22b-instruct-v0.1", 141),
    ("mistralai/mistral-small-24b-instruct-2501", 24),
    ("google/gemma-3-27b-it", 27),
    ("microsoft/phi-4", 14),
    ("microsoft/phi-2", 3),
    ("openai/gpt-oss-120b", 120),
]
PRECISIONS = ["fp8", "fp16", "bf16", "fp4", "int8"]


def _short(aim_id: str) -> str:
    return aim_id.replace("/", "-").replace(".", "-").lower()


def realistic_profile(rng: random.Random, index: int) -> dict[str, Any]:
    aim_id, params = AIMS[index % len(AIMS)]
    metric = rng.choice(["latency", "throughput"])
    precision = rng.choice(PRECISIONS)
    roll = rng.random()
    spec: dict[str, Any] = {
        "aimId": aim_id,
        "modelId": f"{aim_id}-{precision}" if precision != "bf16" else aim_id,
        "engine": "vllm",
        "metric": metric,
        "precision": precision,
        "type": rng.choice(["optimized", "optimized", "general", "preview", "unoptimized"]),
        "primary": rng.random() < 0.3,
    }
    if roll < 0.04:  # CPU fallback on any EPYC generation
        model = rng.choice(["EPYC_ZEN5", "EPYC_ZEN4"])
        spec |= {
            "acceleratorModel": model,
            "acceleratorType": "cpu",
            "acceleratorCount": rng.choice([16, 32, 64]),
        }
        spec["resources"] = {"requests": {"memory": f"{rng.choice([64, 128, 256])}Gi"}}
    elif roll < 0.06:  # no accelerator at all: always Ready
        spec["precision"] = "fp32"
    elif roll < 0.10:  # partitioned MI300X, the device plugin's mixed-strategy resource
        spec |= {"acceleratorModel": "MI300X", "acceleratorType": "gpu", "acceleratorCount": 0}
        spec["resources"] = {"requests": {"amd.com/cpx_nps4": str(rng.choice([1, 2, 4, 8]))}}
    else:
        model = rng.choice(MODELS[:8] + ABSENT_MODELS[:1])
        gpus = 1 if params <= 32 else 2 if params <= 72 else 4 if params <= 141 else 8
        gpus = min(8, gpus * rng.choice([1, 1, 2]))
        spec |= {"acceleratorModel": model, "acceleratorType": "gpu", "acceleratorCount": gpus}
        if rng.random() < 0.6:
            spec["resources"] = {
                "requests": {
                    "cpu": str(rng.choice([4, 8, 16, 32])),
                    "memory": f"{rng.choice([32, 64, 128, 256, 512])}Gi",
                }
            }
        spec["engineArgs"] = {
            "distributed_executor_backend": "mp",
            "gpu-memory-utilization": rng.choice(["0.95", "0.90", 0.92]),
            "tensor-parallel-size": gpus,
            "max-model-len": rng.choice([8192, 32768, 131072]),
            "max-num-seqs": rng.choice([128, 256, 512]),
            "enable-chunked-prefill": rng.random() < 0.5,
            **({"kv-cache-dtype": "fp8"} if precision in ("fp8", "fp4") else {}),
        }
        spec["engineEnv"] = {
            "VLLM_DO_NOT_TRACK": "1",
            "VLLM_USE_TRITON_FLASH_ATTN": "0",
            "HIP_FORCE_DEV_KERNARG": "1",
        }
    accel = spec.get("acceleratorModel", "cpu").lower()
    tag = f"0.8.{rng.randrange(3, 6)}"
    spec["image"] = f"amdenterpriseai/aim-{_short(aim_id)}:{tag}"
    spec["modelSources"] = [{"modelId": spec["modelId"], "sourceUri": f"hf://{spec['modelId']}"}]
    name = f"{_short(aim_id)}-{accel}-{metric[:3]}-{spec['precision']}-{index:05d}"
    metadata: dict[str, Any] = {"name": name, "generation": 1}
    kind = "AIMClusterProfile"
    if rng.random() < 0.15:  # a team's own profile: custom weights, secrets, caching
        kind = "AIMProfile"
        metadata["namespace"] = rng.choice(["ml-team", "research", "prod-inference"])
        spec["image"] = f"amdenterpriseai/aim-base:{tag}"
        spec["modelSources"] = [
            {
                "modelId": f"my-org/{_short(aim_id)}-ft",
                "sourceUri": f"s3://models/{_short(aim_id)}-ft/",
                "precision": spec["precision"],
            }
        ]
        spec["imagePullSecrets"] = [{"name": "registry-credentials"}]
        spec["containerEnv"] = [
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
            }
        ]
        spec["caching"] = {"enabled": rng.random() < 0.5}
    return {
        "apiVersion": "aim.eai.amd.com/v1alpha2",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    }


def realistic_profiles(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` profiles, one at a time (deterministic per seed)."""
    rng = random.Random(seed)
    for index in range(n):
        yield realistic_profile(rng, index)


# --- writers -----------------------------------------------------------------------------------

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_DUMPER, sort_keys=True, default_flow_style=False, width=10**9)


class KubectlList:
    """A v1 List file written item by item, the way ``kubectl get ... -o json`` (4-space indent,
    keys sorted) or ``-o yaml`` (keys sorted, sequences not indented) writes it."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.fmt = fmt
        self.items = 0
        self.out = path.open("w")
        self.out.write(
            '{\n    "apiVersion": "v1",\n    "items": ['
            if fmt == "json"
            else "apiVersion: v1\nitems:\n"
        )

    @staticmethod
    def item_text(obj: dict[str, Any], fmt: str) -> str:
        """One item as it appears in the List (so that several lists can share the work)."""
        if fmt == "json":
            return "\n        " + json.dumps(obj, indent=4, sort_keys=True).replace(
                "\n", "\n        "
            )
        return _yaml([obj])

    def add(self, obj: dict[str, Any] | None = None, text: str | None = None) -> None:
        text = text if text is not None else self.item_text(obj or {}, self.fmt)
        self.out.write(("," if self.items and self.fmt == "json" else "") + text)
        self.items += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write('\n    ],\n    "kind": "List",\n    "metadata": {\n')
            self.out.write('        "resourceVersion": ""\n    }\n}\n')
        else:
            self.out.write('kind: List\nmetadata:\n  resourceVersion: ""\n')
        self.out.close()

    def __enter__(self) -> KubectlList:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json_list(path: Path, objects: Iterable[dict[str, Any]]) -> None:
    with KubectlList(path, "json") as out:
        for obj in objects:
            out.add(obj)


def write_yaml_list(path: Path, objects: Iterable[dict[str, Any]]) -> None:
    with KubectlList(path, "yaml") as out:
        for obj in objects:
            out.add(obj)


def write_yaml_documents(path: Path, objects: Iterable[dict[str, Any]]) -> None:
    """One YAML document per object (``---`` between them)."""
    with path.open("w") as out:
        for number, obj in enumerate(objects):
            out.write(("---\n" if number else "") + _yaml(obj))


def _sizes() -> None:
    """Print the size of the generated objects (``python -m benchmarks.realistic``)."""
    gpu: list[tuple[int, int]] = []
    cpu: list[tuple[int, int]] = []
    for node in realistic_nodes(2000):
        size = len(json.dumps(node))
        yaml_size = len(_yaml(node))
        has_gpu = NFD + "pci-1002.present" in node["metadata"]["labels"]
        (gpu if has_gpu else cpu).append((size, yaml_size))
    for name, sizes in (("GPU", gpu), ("CPU-only", cpu)):
        js = sorted(s for s, _ in sizes)
        ys = sorted(y for _, y in sizes)
        print(
            f"{name} nodes: {len(sizes)}; JSON {js[0]}..{js[-1]} B (median {js[len(js) // 2]}), "
            f"YAML median {ys[len(ys) // 2]} B"
        )
    profile_sizes = sorted(len(json.dumps(p)) for p in realistic_profiles(1000))
    print(f"profiles: JSON median {profile_sizes[500]} B")


if __name__ == "__main__":
    _sizes()
