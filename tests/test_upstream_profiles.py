"""Profiles in AIM Engine's shape (tests/upstream_profiles/) apply here unchanged.

Each one must parse with our models, apply to our CRDs on the `kube` fixture's API server
(the test server, or a real kube-apiserver), come back with every field as written, and
resolve (node affinity, resources, hardware summary, version, matching nodes) as AIM Engine
documents it, on a reference cluster labelled the way AIM Engine's AcceleratorDetector labels
nodes. Deliberate differences are in docs/status.md ("Differences from AIM Engine").
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from detector.labels import accelerator_label_key, partition_label_key
from matcher.api.models import GROUP, VERSION, parse_profile
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.evaluate import evaluate
from matcher.core.nodes import node_view

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "upstream_profiles"
NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
DEFAULT = partition_label_key("default")


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def node(name: str, labels: dict[str, str], allocatable: dict[str, str]) -> dict[str, Any]:
    alloc = {"cpu": "190", "memory": "2000Gi", "pods": "110", **allocatable}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "status": {
            "allocatable": alloc,
            "capacity": alloc,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def model(name: str, count: int) -> dict[str, str]:
    return {accelerator_label_key(name): str(count)}


def scheme(name: str, count: int) -> dict[str, str]:
    return {partition_label_key(name): str(count)}


#: AIM Engine's AcceleratorDetector label table (docs/docs/concepts/accelerator-detection.md):
#: an unpartitioned MI300X carries `default` and `SPX-NPS1`; a CPX-NPS4 one only its scheme; a
#: Radeon or NVIDIA GPU `default`. `mi300x-today` is what this project's detector writes now
#: (no SPX-NPS1 yet). Partitions are advertised as amd.com/gpu (the device plugin's single
#: strategy, the one AIM Engine supports).
REFERENCE_NODES = [
    node(
        "mi300x-spx",
        {**model("MI300X", 8), **scheme("default", 8), **scheme("SPX-NPS1", 8)},
        {"amd.com/gpu": "8"},
    ),
    node("mi300x-today", {**model("MI300X", 8), **scheme("default", 8)}, {"amd.com/gpu": "8"}),
    node("mi300x-cpx", {**model("MI300X", 8), **scheme("CPX-NPS4", 64)}, {"amd.com/gpu": "64"}),
    node("mi325x", {**model("MI325X", 8), **scheme("default", 8)}, {"amd.com/gpu": "8"}),
    node("radeon", {**model("RadeonW7900", 4), **scheme("default", 4)}, {"amd.com/gpu": "4"}),
    node("h100", {**model("H100", 8), **scheme("default", 8)}, {"nvidia.com/gpu": "8"}),
    node("epyc", model("EPYC_9965", 192), {"cpu": "382", "memory": "1500Gi"}),
]


@dataclass(frozen=True)
class Resolved:
    affinity: list[tuple[str, str]]
    requests: dict[str, str]
    limits: dict[str, str]
    summary: str
    version: str | None
    matching: int
    phase: str = "Ready"


MI300X, MI325X = accelerator_label_key("MI300X"), accelerator_label_key("MI325X")
EXPECTED: dict[str, Resolved] = {
    "aim-qwen3-32b-vllm-mi300x-fp8-tp1-latency": Resolved(
        [(MI300X, "Exists"), (DEFAULT, "Exists")],
        {"amd.com/gpu": "1"},
        {"amd.com/gpu": "1"},
        "1 x MI300X",
        "0.8.5",
        2,  # both unpartitioned MI300X nodes; never the CPX one
    ),
    "ft-qwen3-32b-mi300x-cpx-nps4-thr": Resolved(
        [(MI300X, "Exists"), (partition_label_key("CPX-NPS4"), "Exists")],  # cpx-nps4 upper-cased
        {"amd.com/gpu": "4", "cpu": "16", "memory": "128Gi"},
        {"amd.com/gpu": "4", "memory": "128Gi"},
        "4 x MI300X",
        "0.8.5",
        1,
    ),
    "aim-base-vllm-mi325x-bf16-tp8-throughput": Resolved(
        [(MI325X, "Exists"), (DEFAULT, "Exists")],
        {"amd.com/gpu": "8"},
        {"amd.com/gpu": "8"},
        "8 x MI325X",
        None,  # pinned by digest
        1,
    ),
    "aim-llama-3-1-8b-mi300x-partitioned": Resolved(
        [(MI300X, "Exists"), (DEFAULT, "DoesNotExist")],
        {"amd.com/gpu": "1"},
        {"amd.com/gpu": "1"},
        "1 x MI300X",
        "0.8.5",
        1,
    ),
    "aim-llama-3-1-8b-mi300x-spx-nps1": Resolved(
        [(MI300X, "Exists"), (partition_label_key("SPX-NPS1"), "Exists")],
        {"amd.com/gpu": "2"},
        {"amd.com/gpu": "2"},
        "2 x MI300X",
        "0.8.5",
        1,  # only the node whose detector publishes SPX-NPS1 beside default
    ),
    "aim-phi-2-epyc-9965-fp32-latency": Resolved(
        [(accelerator_label_key("EPYC_9965"), "Exists")],  # CPU profiles get no partition term
        {"cpu": "192", "memory": "240Gi"},
        {"cpu": "192", "memory": "240Gi"},
        "192 x EPYC_9965",
        "0.8.5",
        1,
    ),
    "aim-phi-2-radeonw7900-fp64-usp4": Resolved(
        [(accelerator_label_key("RadeonW7900"), "Exists"), (DEFAULT, "Exists")],
        {"amd.com/gpu": "1"},
        {"amd.com/gpu": "1"},
        "1 x RadeonW7900",
        "0.8.5",
        1,
    ),
    "aim-qwen3-32b-h100-bf16-tp2-latency": Resolved(
        [(accelerator_label_key("H100"), "Exists"), (DEFAULT, "Exists")],
        {"nvidia.com/gpu": "2"},
        {"nvidia.com/gpu": "2"},
        "2 x H100",
        "0.8.5",
        1,
    ),
    "aim-qwen3-32b-mi355x-fp4-tp1-latency": Resolved(
        [(accelerator_label_key("MI355X"), "Exists"), (DEFAULT, "Exists")],
        {"amd.com/gpu": "1"},
        {"amd.com/gpu": "1"},
        "1 x MI355X",
        "0.9.0",  # a registry port is not a tag
        0,
        "NotAvailable",
    ),
}


def upstream_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as AIM Engine's API server and ours store it: the core/v1 and profile defaults
    both CRDs declare. (AIM Engine's also adds acceleratorPartitioningMode: unpartitioned and
    manualSelectionOnly: false; ours does not, see docs/status.md.)"""
    out = copy.deepcopy(spec)
    out.setdefault("primary", False)

    def env(entries: list[dict[str, Any]] | None) -> None:
        for entry in entries or ():
            source = entry.get("valueFrom") or {}
            for ref in ("configMapKeyRef", "secretKeyRef"):
                if ref in source:
                    source[ref].setdefault("name", "")
            if "fileKeyRef" in source:
                source["fileKeyRef"].setdefault("optional", False)

    env(out.get("containerEnv"))
    for source in out.get("modelSources") or ():
        env(source.get("env"))
    if "caching" in out:
        out["caching"].setdefault("enabled", False)
        env(out["caching"].get("env"))
    for secret in out.get("imagePullSecrets") or ():
        secret.setdefault("name", "")
    return out


def test_every_fixture_has_an_expectation_and_all_shapes_are_covered():
    docs = [load(p) for p in fixture_files()]
    assert {d["metadata"]["name"] for d in docs} == set(EXPECTED)
    specs = [d["spec"] for d in docs]
    # the upstream fields the issue names are all exercised
    assert any("aimId" not in s for s in specs)
    assert {s.get("acceleratorPartitioningMode") for s in specs} >= {
        "unpartitioned", "partitioned", "cpx-nps4", "SPX-NPS1", None,
    }  # fmt: skip
    assert any(not isinstance(s.get("engineArgs", {}), dict) for s in specs)
    assert any(s.get("imagePullSecrets") == [{}] for s in specs)
    assert any(s.get("features") for s in specs)
    assert any(s.get("acceleratorVendor") == "nvidia" for s in specs)
    assert any("manualSelectionOnly" in s for s in specs)
    sources = [m for s in specs for m in s.get("modelSources") or ()]
    assert any("size" in m for m in sources)
    assert any("env" in m for m in sources)
    env_sources = {
        k
        for s in specs
        for e in [*(s.get("containerEnv") or ()), *((s.get("caching") or {}).get("env") or ())]
        for k in (e.get("valueFrom") or {})
    }
    assert env_sources == {
        "secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef", "fileKeyRef",
    }  # fmt: skip


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.stem)
def test_parses_and_keeps_every_field_through_the_model(path):
    doc = load(path)
    profile = parse_profile(doc)
    assert profile.name == doc["metadata"]["name"]
    dumped = profile.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped == doc["spec"]


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.stem)
def test_resolves_as_aim_engine_documents(path):
    profile = parse_profile(load(path))
    want = EXPECTED[profile.name]
    cluster = ClusterIndex(node_view(n) for n in REFERENCE_NODES)
    status = evaluate(profile, cluster, MatcherConfig(), NOW).to_dict()
    terms = status["resolvedNodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (term,) = terms["nodeSelectorTerms"]
    assert [(e["key"], e["operator"]) for e in term["matchExpressions"]] == want.affinity
    assert status["resources"]["requests"] == want.requests
    assert status["resources"].get("limits", {}) == want.limits
    assert status["hardwareSummary"] == want.summary
    assert status.get("version") == want.version
    assert status["matchingNodes"] == want.matching
    assert status["status"] == want.phase


def test_claims_are_passed_through():
    profile = parse_profile(load(FIXTURES / "claims-mi355x.yaml"))
    status = evaluate(profile, ClusterIndex(), MatcherConfig(), NOW).to_dict()
    assert status["resources"]["claims"] == [{"name": "rdma", "request": "nic"}]


# --- on the API server ---------------------------------------------------------------------------


def _namespace(kube) -> str:
    name: str = kube.unique("upstream")
    doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    return name


def _place(kube, doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] = kube.unique(doc["metadata"]["name"])
    if doc["kind"] == "AIMProfile":
        doc["metadata"]["namespace"] = namespace
    return doc


def _apply_all(kube, namespace: str) -> list[dict[str, Any]]:
    """Every fixture, placed under unique names, applied in one `kubectl apply` (as a user
    would: client-side apply with strict field validation)."""
    docs = [_place(kube, load(path), namespace) for path in fixture_files()]
    result = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs), check=False)
    assert result.returncode == 0, result.stderr
    return docs


def _stored(kube, namespace: str) -> dict[str, dict[str, Any]]:
    """Name -> object, for every AIM profile visible (cluster-wide and in `namespace`)."""
    out = {}
    for kind, extra in (("aimclusterprofiles", []), ("aimprofiles", ["-n", namespace])):
        listing = json.loads(kube.kubectl("get", kind, *extra, "-o", "json").stdout)
        out.update({item["metadata"]["name"]: item for item in listing["items"]})
    return out


@pytest.mark.cluster
def test_apply_unchanged_and_round_trip_every_field(kube):
    """kubectl apply accepts each one; nothing is pruned or changed beyond the defaults both
    CRDs declare; the status our core computes for it is accepted and stored as written."""
    kube.apply_crds()
    namespace = _namespace(kube)
    docs = _apply_all(kube, namespace)
    stored = _stored(kube, namespace)
    cluster = ClusterIndex(node_view(n) for n in REFERENCE_NODES)
    custom = kubernetes.client.CustomObjectsApi(kube.api_client())
    statuses = {}
    for doc in docs:
        name = doc["metadata"]["name"]
        obj = stored[name]
        assert obj["spec"] == upstream_defaults(doc["spec"]), name
        assert obj["metadata"].get("labels") == doc["metadata"].get("labels")
        # read back through our models: nothing lost either
        assert (
            parse_profile(obj).spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
            == obj["spec"]
        )
        status = evaluate(parse_profile(obj), cluster, MatcherConfig(), NOW).to_dict()
        body = {"status": status}
        if doc["kind"] == "AIMProfile":
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "aimprofiles", name, body
            )
        else:
            custom.patch_cluster_custom_object_status(
                GROUP, VERSION, "aimclusterprofiles", name, body
            )
        statuses[name] = status
    again = _stored(kube, namespace)
    for name, status in statuses.items():
        assert again[name]["status"] == status, name


@pytest.mark.cluster
def test_upstream_names_categories_and_the_aim_id_field_selector(kube):
    kube.apply_crds()
    namespace = _namespace(kube)
    qwen: list[str] = []
    others: list[str] = []
    for doc in _apply_all(kube, namespace):
        if doc["kind"] == "AIMClusterProfile":
            is_qwen = doc["spec"].get("aimId") == "qwen/qwen3-32b"
            (qwen if is_qwen else others).append(doc["metadata"]["name"])
    selected = kube.kubectl(
        "get", "aimclprf", "--field-selector", "spec.aimId=qwen/qwen3-32b", "-o", "name"
    ).stdout.split()
    names = {line.rsplit("/", 1)[-1] for line in selected}
    # a real cluster may hold other tests' profiles: only ours are checked
    assert len(qwen) == 3
    assert set(qwen) <= names
    assert not names & set(others)
    namespaced = kube.kubectl("get", "aimprf", "-n", namespace, "-o", "name").stdout.split()
    assert len(namespaced) == 1
    assert namespaced[0].startswith("aimprofile.aim.eai.amd.com/ft-")
    listed = kube.kubectl(
        "get", "aim", "-n", namespace, "--field-selector", "spec.aimId=qwen/qwen3-32b", "-o", "name"
    ).stdout.split()
    assert namespaced[0] in listed  # the `aim` category spans both kinds
    wide = kube.kubectl("get", "aimclusterprofiles", "-o", "wide").stdout.splitlines()[0].split()
    assert "PARTITIONING" in wide
