"""The matching core: resources, affinity, node matching, status and diagnostics."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.labels import (
    LABEL_PREFIX,
    OWNED_LABELS_ANNOTATION,
    accelerator_label_key,
    partition_label_key,
)
from matcher.api.models import Phase, parse_profile
from matcher.core.cluster import ClusterIndex
from matcher.core.config import ConfigError, MatcherConfig
from matcher.core.evaluate import (
    evaluate,
    is_cpu_only,
    label_terms,
    node_affinity,
    required_label_key,
    resolve_resources,
)
from matcher.core.nodes import NodeError, node_view
from matcher.core.resources import image_version

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)
MI300X = accelerator_label_key("MI300X")
DEFAULT_SCHEME = partition_label_key("default")


def node_obj(
    name: str,
    accel: dict[str, str] | None = None,
    allocatable: dict[str, str] | None = None,
    *,
    unschedulable: bool = False,
    ready: bool = True,
    schemes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Node as the API returns it (the fields that matter, shaped like the real thing).

    ``schemes``: partitioning-scheme labels (``{"default": "8"}``, as the detector writes on an
    unpartitioned GPU node)."""
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    labels.update({accelerator_label_key(k): v for k, v in (accel or {}).items()})
    labels.update({partition_label_key(k): v for k, v in (schemes or {}).items()})
    alloc = {"cpu": "190", "memory": "2063613Mi", "pods": "110", "ephemeral-storage": "3500Gi"}
    alloc.update(allocatable or {})
    spec: dict[str, Any] = {"providerID": f"metal://{name}"}
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "resourceVersion": "1"},
        "spec": spec,
        "status": {
            "allocatable": alloc,
            "capacity": alloc,
            "conditions": [
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientMemory",
                },
                {
                    "type": "Ready",
                    "status": "True" if ready else "Unknown",
                    "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                },
            ],
        },
    }


def mi300x_node(name: str, gpus: str = "8", **kw: Any) -> dict[str, Any]:
    """An unpartitioned 8 x MI300X node, labelled as the detector labels it."""
    kw.setdefault("schemes", {"default": "8"})
    return node_obj(name, {"MI300X": "8", "EPYC_ZEN4": "192"}, {"amd.com/gpu": gpus}, **kw)


def cluster_of(*objs: dict[str, Any]) -> ClusterIndex:
    return ClusterIndex(node_view(o) for o in objs)


def profile(spec: dict[str, Any], kind: str = "AIMClusterProfile", generation: int = 1, **meta):
    doc: dict[str, Any] = {
        "apiVersion": "aim.eai.amd.com/v1alpha2",
        "kind": kind,
        "metadata": {"name": "p", "generation": generation, **meta},
        "spec": {"aimId": "qwen/qwen3-32b", "image": "amdenterpriseai/aim-qwen:0.8.5", **spec},
    }
    return parse_profile(doc)


GPU1 = {"acceleratorModel": "MI300X", "acceleratorType": "gpu", "acceleratorCount": 1}
DEFAULT = MatcherConfig()


def hw_condition(status):
    condition = status.condition("HardwareAvailable")
    assert condition is not None
    return condition


# --- nodes and the index -----------------------------------------------------------------------


def test_node_view_keeps_only_our_labels_and_parses_allocatable():
    obj = mi300x_node("n1")
    obj["metadata"]["labels"]["amd.com/gpu.product-name"] = "AMD_Instinct_MI300X"
    view = node_view(obj)
    assert set(view.labels) == {MI300X, accelerator_label_key("EPYC_ZEN4"), DEFAULT_SCHEME}
    assert view.allocatable["amd.com/gpu"] == 8
    assert view.allocatable["memory"] == 2063613 * 1024**2
    assert (view.schedulable, view.ready) == (True, True)


def test_node_view_flags():
    assert node_view(mi300x_node("c", unschedulable=True)).schedulable is False
    assert node_view(mi300x_node("r", ready=False)).ready is False
    no_conditions = mi300x_node("x")
    del no_conditions["status"]["conditions"]
    assert node_view(no_conditions).ready is False


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda n: n["status"].pop("allocatable"), "status.allocatable: missing"),
        (lambda n: n["status"]["allocatable"].update(cpu="lots"), "status.allocatable['cpu']"),
        (lambda n: n["metadata"].pop("name"), "metadata.name"),
        (lambda n: n["metadata"].update(labels=["a"]), "metadata.labels"),
    ],
)
def test_node_errors_name_the_field(mutate, words):
    obj = mi300x_node("bad")
    mutate(obj)
    with pytest.raises(NodeError) as err:
        node_view(obj)
    assert words in str(err.value)


def test_index_ignores_changes_the_matcher_does_not_see():
    obj = mi300x_node("n1")
    index = cluster_of(obj)
    heartbeat = copy.deepcopy(obj)
    heartbeat["metadata"]["resourceVersion"] = "2"
    heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-11-27T08:00:00Z"
    heartbeat["metadata"]["labels"]["topology.kubernetes.io/zone"] = "b"
    assert index.upsert(node_view(heartbeat)) is False

    relabelled = copy.deepcopy(obj)
    relabelled["metadata"]["labels"][MI300X] = "4"
    assert index.upsert(node_view(relabelled)) is True
    cordoned = copy.deepcopy(obj)
    cordoned["spec"]["unschedulable"] = True
    assert index.upsert(node_view(cordoned)) is True


def test_index_by_key_follows_upserts_and_removals():
    index = cluster_of(mi300x_node("a"), mi300x_node("b"), node_obj("e", {"EPYC_ZEN5": "128"}))
    assert sorted(n.name for n in index.nodes_with_key(MI300X)) == ["a", "b"]
    relabelled = node_obj("a", {"MI325X": "8"}, {"amd.com/gpu": "8"})
    index.upsert(node_view(relabelled))
    assert [n.name for n in index.nodes_with_key(MI300X)] == ["b"]
    assert [n.name for n in index.nodes_with_key(accelerator_label_key("MI325X"))] == ["a"]
    assert index.remove("b") is not None
    assert index.remove("b") is None
    assert MI300X not in index.label_keys()
    assert len(index) == 2
    assert sorted(n.name for n in index.nodes_with_resource("amd.com/gpu")) == ["a"]


# --- resources, affinity ----------------------------------------------------------------------


def test_gpu_count_derives_the_gpu_resource_and_spec_resources_merge_on_top():
    p = profile({**GPU1, "resources": {"requests": {"cpu": "4", "memory": "32Gi"}}})
    assert resolve_resources(p.spec, DEFAULT) == {
        "limits": {"amd.com/gpu": "1"},
        "requests": {"amd.com/gpu": "1", "cpu": "4", "memory": "32Gi"},
    }


def test_gpu_resource_name_comes_from_config():
    config = MatcherConfig.from_configmap_data({"gpuResourceName": "amd.com/cpx_nps4"})
    p = profile({**GPU1, "acceleratorCount": 4})
    assert resolve_resources(p.spec, config)["requests"] == {"amd.com/cpx_nps4": "4"}


def test_explicit_key_wins_and_limits_are_kept():
    p = profile(
        {
            **GPU1,
            "acceleratorCount": 2,
            "resources": {
                "requests": {"amd.com/gpu": "4", "cpu": 8},
                "limits": {"cpu": "16", "memory": "64Gi"},
            },
        }
    )
    assert resolve_resources(p.spec, DEFAULT) == {
        "limits": {"amd.com/gpu": "4", "cpu": "16", "memory": "64Gi"},
        # memory had only a limit: Kubernetes defaults the request to it
        "requests": {"amd.com/gpu": "4", "cpu": "8", "memory": "64Gi"},
    }


def test_count_zero_derives_nothing_and_partition_resources_are_literal():
    p = profile(
        {**GPU1, "acceleratorCount": 0, "resources": {"requests": {"amd.com/cpx-nps4": "4"}}}
    )
    assert resolve_resources(p.spec, DEFAULT) == {
        "limits": {"amd.com/cpx-nps4": "4"},
        "requests": {"amd.com/cpx-nps4": "4"},
    }


def test_cpu_count_derives_cpu():
    explicit = profile(
        {"acceleratorModel": "EPYC_ZEN5", "acceleratorType": "cpu", "acceleratorCount": 32}
    )
    assert resolve_resources(explicit.spec, DEFAULT) == {"requests": {"cpu": "32"}}


def test_without_accelerator_type_nothing_is_derived_unless_the_config_opts_in():
    """The spec derives only from acceleratorType; guessing it from the model is opt-in."""
    epyc = profile({"acceleratorModel": "EPYC_ZEN5", "acceleratorCount": 32})
    gpu = profile({"acceleratorModel": "MI300X", "acceleratorCount": 2})
    assert resolve_resources(epyc.spec, DEFAULT) == {}
    assert resolve_resources(gpu.spec, DEFAULT) == {}
    # the label is still matched, and no partition term is added (no GPU request)
    assert [t.key for t in label_terms(gpu.spec, DEFAULT)] == [MI300X]
    infer = MatcherConfig.from_configmap_data({"inferAcceleratorType": "true"})
    assert resolve_resources(epyc.spec, infer) == {"requests": {"cpu": "32"}}
    assert resolve_resources(gpu.spec, infer)["requests"] == {"amd.com/gpu": "2"}
    assert [t.key for t in label_terms(gpu.spec, infer)] == [MI300X, DEFAULT_SCHEME]


def test_nvidia_vendor_derives_the_nvidia_resource():
    p = profile({**GPU1, "acceleratorVendor": "nvidia", "acceleratorModel": "H100"})
    assert resolve_resources(p.spec, DEFAULT)["requests"] == {"nvidia.com/gpu": "1"}
    amd = profile({**GPU1, "acceleratorVendor": "amd"})
    assert resolve_resources(amd.spec, DEFAULT)["requests"] == {"amd.com/gpu": "1"}


def test_affinity_is_the_model_term_and_the_partition_term():
    p = profile(GPU1)
    assert required_label_key(p.spec) == "feature.node.kubernetes.io/aim-accelerator.MI300X"
    assert node_affinity(label_terms(p.spec, DEFAULT)) == {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": MI300X, "operator": "Exists"},
                        {"key": DEFAULT_SCHEME, "operator": "Exists"},
                    ]
                }
            ]
        }
    }
    assert required_label_key(profile({}).spec) is None
    assert node_affinity(label_terms(profile({}).spec, DEFAULT)) is None


@pytest.mark.parametrize(
    ("spec", "cpu_only"),
    [
        ({}, True),
        ({"resources": {"requests": {"cpu": "4", "memory": "8Gi", "hugepages-2Mi": "1Gi"}}}, True),
        ({"acceleratorCount": 0}, False),
        ({"acceleratorType": "cpu"}, False),
        ({"acceleratorModel": "EPYC_ZEN5"}, False),
        ({"resources": {"requests": {"amd.com/gpu": "1"}}}, False),
        # the seed's words: "without extended device resource *requests*" (AIM Engine's
        # HasAcceleratorRequirement reads requests only as well)
        ({"resources": {"limits": {"amd.com/gpu": "1"}}}, True),
        ({"acceleratorPartitioningMode": "unpartitioned"}, True),
    ],
)
def test_cpu_only(spec, cpu_only):
    assert is_cpu_only(profile(spec).spec) is cpu_only


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("amdenterpriseai/aim-qwen-qwen3-32b:0.8.5", "0.8.5"),
        ("docker.io/library/img:latest", "latest"),
        ("registry.example.com:5000/aim/img:1.2.0", "1.2.0"),
        ("registry.example.com:5000/aim/img", None),
        ("img", None),
        ("img@sha256:" + "a" * 64, None),
        # the spec: none for digests, even with a tag (the digest is what runs)
        ("img:0.9.0@sha256:" + "a" * 64, None),
        ("registry.example.com:5000/aim/img:1.2.0@sha512:" + "b" * 128, None),
        ("registry.example.com:5000/aim/img@sha512:" + "b" * 128, None),
    ],
)
def test_version_from_image_tag(image, version):
    assert image_version(image) == version


# --- status --------------------------------------------------------------------------------------


def test_ready_status_is_complete():
    p = profile({**GPU1, "resources": {"requests": {"cpu": "4", "memory": "32Gi"}}}, generation=3)
    status = evaluate(p, cluster_of(mi300x_node("a"), mi300x_node("b")), DEFAULT, NOW)
    data = status.to_dict()
    assert data["status"] == "Ready"
    assert data["observedGeneration"] == 3
    assert data["version"] == "0.8.5"
    assert data["matchingNodes"] == 2
    assert data["hardwareSummary"] == "1 x MI300X"
    assert data["resources"]["requests"] == {"amd.com/gpu": "1", "cpu": "4", "memory": "32Gi"}
    assert data["resolvedNodeAffinity"] == node_affinity(label_terms(p.spec, DEFAULT))
    assert data["conditions"] == [
        {
            "type": "HardwareAvailable",
            "status": "True",
            "reason": "HardwareAvailable",
            "message": f"2 nodes with label {MI300X} and label {DEFAULT_SCHEME} and allocatable "
            "amd.com/gpu: 1, cpu: 4, memory: 32Gi",
            "lastTransitionTime": "2026-11-27T08:00:00Z",
            "observedGeneration": 3,
        }
    ]


def test_label_value_is_informational_only():
    node = node_obj("n", {"MI300X": "1"}, {"amd.com/gpu": "8"}, schemes={"default": "1"})
    status = evaluate(profile({**GPU1, "acceleratorCount": 4}), cluster_of(node), DEFAULT, NOW)
    assert status.status is Phase.READY


def test_hardware_summary_forms():
    assert (
        evaluate(
            profile({**GPU1, "acceleratorCount": 0}), ClusterIndex(), DEFAULT, NOW
        ).hardware_summary
        == "MI300X"
    )
    assert (
        evaluate(
            profile({"acceleratorModel": "MI300X"}), ClusterIndex(), DEFAULT, NOW
        ).hardware_summary
        == "MI300X"
    )
    assert evaluate(profile({}), ClusterIndex(), DEFAULT, NOW).hardware_summary == "CPU"


def test_cpu_only_is_always_ready_even_without_nodes():
    status = evaluate(profile({}), ClusterIndex(), DEFAULT, NOW)
    assert status.status is Phase.READY
    assert hw_condition(status).reason == "NoAcceleratorSpecified"
    assert status.resolved_node_affinity is None
    assert status.resources is None


def test_no_label_in_cluster_names_the_labels_that_exist():
    status = evaluate(
        profile({**GPU1, "acceleratorModel": "MI355X"}),
        cluster_of(mi300x_node("a"), node_obj("e", {"EPYC_ZEN5": "128"})),
        DEFAULT,
        NOW,
    )
    assert status.status is Phase.NOT_AVAILABLE
    assert status.matching_nodes == 0
    condition = hw_condition(status)
    assert (condition.status, condition.reason) == ("False", "HardwareNotAvailable")
    # The nearest models of the same kind: a GPU profile is not told about CPUs.
    assert condition.message == (
        "No node has label feature.node.kubernetes.io/aim-accelerator.MI355X; nearest "
        "accelerator models in the cluster: MI300X"
    )


def _no_label_message(wanted: str, models: list[str]) -> str:
    nodes = [node_obj(f"n{i}", {m: "8"}) for i, m in enumerate(models)]
    spec = {**GPU1, "acceleratorModel": wanted}
    if wanted.startswith("EPYC"):
        spec = {**spec, "acceleratorType": "cpu", "acceleratorCount": 0}
    return str(hw_condition(evaluate(profile(spec), cluster_of(*nodes), DEFAULT, NOW)).message)


@pytest.mark.parametrize(
    ("wanted", "models", "named"),
    [
        # Closest number first, at most three, same kind only.
        ("MI400X", ["MI210", "MI250X", "MI300X", "MI325X", "MI350X", "MI355X", "EPYC_ZEN5"],
         "MI355X, MI350X, MI325X"),
        ("MI300", ["MI300A", "MI300X", "MI355X", "MI100"], "MI300A, MI300X, MI355X"),
        ("EPYC_ZEN6", ["EPYC_ZEN4", "EPYC_ZEN5", "MI300X"], "EPYC_ZEN5, EPYC_ZEN4"),
        # No model of its kind: the nearest of the others.
        ("MI355X", ["EPYC_ZEN5", "EPYC_ZEN4"], "EPYC_ZEN4, EPYC_ZEN5"),
    ],
)  # fmt: skip
def test_a_label_no_node_has_names_the_nearest_models(wanted, models, named):
    assert _no_label_message(wanted, models).endswith(
        f"nearest accelerator models in the cluster: {named}"
    )


def test_a_model_far_from_the_wanted_one_appearing_leaves_the_message_alone():
    """Model churn elsewhere in the cluster does not rewrite every NotAvailable status."""
    models = ["MI210", "MI250X", "MI300X", "MI325X", "MI350X", "MI355X"]
    before = _no_label_message("MI400X", models)
    assert _no_label_message("MI400X", [*models, "MI308X", "MI100", "EPYC_ZEN5"]) == before
    # A nearer one does change it: it is what the user most likely meant.
    assert _no_label_message("MI400X", [*models, "MI380X"]) != before


def test_a_node_joining_with_a_known_model_leaves_no_label_messages_alone():
    """The inventory names models, not node counts: a node joining or leaving does not
    rewrite the status of every profile whose label no node has."""
    p = profile({**GPU1, "acceleratorModel": "MI355X"})
    before = evaluate(p, cluster_of(mi300x_node("a")), DEFAULT, NOW)
    after = evaluate(p, cluster_of(mi300x_node("a"), mi300x_node("b")), DEFAULT, NOW)
    assert before == after


def _marked(name: str) -> dict[str, Any]:
    """A node where aim-detector ran and found nothing: its annotation, empty."""
    node = node_obj(name)
    node["metadata"]["annotations"] = {OWNED_LABELS_ANNOTATION: ""}
    return node


def test_no_detector_labels_at_all_counts_where_the_detector_ran_and_found_nothing():
    """No accelerator label anywhere: the message names the program (aim-detector) and tells
    "ran, found nothing" (its annotation is on the node, empty) from "did not run" (no
    annotation), with how to see what it finds on a node."""
    p = profile(GPU1)
    dry_run = "aim-detector --once --dry-run on a node shows what it finds there"
    head = f"No node has label {MI300X}; no node has any {LABEL_PREFIX}* label: aim-detector"

    def message(*nodes: dict[str, Any]) -> str:
        return str(hw_condition(evaluate(p, cluster_of(*nodes), DEFAULT, NOW)).message)

    assert message(node_obj("plain")) == (
        f"{head} ran on 0 of 1 node: none carries its annotation {OWNED_LABELS_ANNOTATION} "
        f"(is the aim-detector DaemonSet running? in --mode nfd it writes no annotation; "
        f"{dry_run})"
    )
    assert message(_marked("a"), _marked("b")) == (
        f"{head} ran on 2 of 2 nodes and found no AMD GPU or EPYC CPU there ({dry_run})"
    )
    assert message(_marked("a"), _marked("b"), _marked("c"), node_obj("d"), node_obj("e")) == (
        f"{head} ran on 3 of 5 nodes and found no AMD GPU or EPYC CPU there; 2 nodes carry no "
        f"annotation {OWNED_LABELS_ANNOTATION} (is the aim-detector DaemonSet running on them? "
        f"{dry_run})"
    )
    assert message(_marked("a"), node_obj("d")) == (
        f"{head} ran on 1 of 2 nodes and found no AMD GPU or EPYC CPU there; 1 node carries no "
        f"annotation {OWNED_LABELS_ANNOTATION} (is the aim-detector DaemonSet running on it? "
        f"{dry_run})"
    )
    assert message() == f"No node has label {MI300X}; no node has any {LABEL_PREFIX}* label: " + (
        "the cluster has no node"
    )


def test_no_detector_labels_message_ignores_what_the_counts_do_not_read():
    """Only the node counts and the marks enter it: a node whose allocatable, readiness or
    other annotations change (heartbeats, cordons) leaves the message as it was."""
    p = profile(GPU1)
    before = evaluate(p, cluster_of(_marked("a"), node_obj("b")), DEFAULT, NOW)
    busy = _marked("a")
    busy["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] = "0"
    after = evaluate(
        p,
        cluster_of(busy, node_obj("b", {}, {"cpu": "64"}, ready=False, unschedulable=True)),
        DEFAULT,
        NOW,
    )
    assert hw_condition(after).message == hw_condition(before).message


def test_the_index_counts_marked_nodes_through_upserts_and_removals():
    index = ClusterIndex([node_view(_marked("a")), node_view(node_obj("b"))])
    assert (len(index), index.detector_ran) == (2, 1)
    assert index.upsert(node_view(_marked("a"))) is False  # same projection: no change
    assert index.upsert(node_view(_marked("b"))) is True  # the detector reached b
    assert index.detector_ran == 2
    index.remove("a")
    assert (len(index), index.detector_ran) == (1, 1)
    assert index.upsert(node_view(node_obj("b"))) is True  # cleaned up (uninstall)
    assert index.detector_ran == 0


def test_wrong_case_model_gets_a_hint():
    status = evaluate(
        profile({**GPU1, "acceleratorModel": "mi300x"}), cluster_of(mi300x_node("a")), DEFAULT, NOW
    )
    assert "did you mean MI300X?" in hw_condition(status).message


def test_not_enough_resource_names_the_nearest_node():
    cluster = cluster_of(
        mi300x_node("a", gpus="4"), mi300x_node("b", gpus="6"), mi300x_node("c", gpus="2")
    )
    status = evaluate(
        profile({**GPU1, "acceleratorCount": 8, "resources": {"requests": {"cpu": "16"}}}),
        cluster,
        DEFAULT,
        NOW,
    )
    assert status.status is Phase.NOT_AVAILABLE
    assert hw_condition(status).message == (
        f"3 nodes with label {MI300X} and label {DEFAULT_SCHEME} but none has enough "
        "amd.com/gpu (needs 8); nearest is b with allocatable amd.com/gpu: 6, cpu: 190"
    )


def test_unadvertised_resource_is_pointed_out():
    cluster = cluster_of(node_obj("cpx", {"MI300X": "8"}, {"amd.com/cpx_nps4": "64"}))
    p = profile(
        {**GPU1, "acceleratorCount": 0, "resources": {"requests": {"amd.com/cpx-nps4": "4"}}}
    )
    message = hw_condition(evaluate(p, cluster, DEFAULT, NOW)).message
    assert "no node advertises amd.com/cpx-nps4" in message
    assert "amd.com/cpx_nps4" in message


def test_cordoned_and_not_ready_nodes_are_left_out_and_counted_in_the_message():
    cluster = cluster_of(
        mi300x_node("ok"),
        mi300x_node("cordoned", unschedulable=True),
        mi300x_node("down", ready=False),
        mi300x_node("both", unschedulable=True, ready=False),
    )
    status = evaluate(profile(GPU1), cluster, DEFAULT, NOW)
    assert status.matching_nodes == 1
    assert hw_condition(status).message.endswith("; 3 more left out: 2 cordoned, 2 NotReady")


def test_all_matching_nodes_unavailable_is_its_own_diagnosis():
    cluster = cluster_of(
        mi300x_node("cordoned", unschedulable=True), mi300x_node("down", ready=False)
    )
    status = evaluate(profile(GPU1), cluster, DEFAULT, NOW)
    assert status.status is Phase.NOT_AVAILABLE
    message = hw_condition(status).message
    assert message.startswith(
        f"2 nodes with label {MI300X} and label {DEFAULT_SCHEME} and allocatable amd.com/gpu: 1 "
        "but all are left out: 1 cordoned, 1 NotReady"
    )
    assert "countUnschedulableNodes" in message


def test_config_can_count_cordoned_and_not_ready_nodes():
    cluster = cluster_of(
        mi300x_node("cordoned", unschedulable=True), mi300x_node("down", ready=False)
    )
    both = MatcherConfig.from_configmap_data(
        {"countUnschedulableNodes": "true", "countNotReadyNodes": "true"}
    )
    assert evaluate(profile(GPU1), cluster, both, NOW).matching_nodes == 2
    cordoned_only = MatcherConfig(count_unschedulable_nodes=True)
    status = evaluate(profile(GPU1), cluster, cordoned_only, NOW)
    assert status.matching_nodes == 1
    assert hw_condition(status).message.endswith("1 more left out: 1 NotReady")


def test_extended_resource_without_model_matches_by_resources_only():
    cluster = cluster_of(
        mi300x_node("a", gpus="2"),
        node_obj("unlabelled-gpu", None, {"amd.com/gpu": "4"}),
        node_obj("cpu"),
    )
    p = profile({"resources": {"requests": {"amd.com/gpu": "2"}}})
    status = evaluate(p, cluster, DEFAULT, NOW)
    assert not is_cpu_only(p.spec)
    assert status.status is Phase.READY
    assert status.matching_nodes == 2
    assert status.resolved_node_affinity is None
    assert status.hardware_summary == "CPU"  # the spec: CPU when there is no model
    assert hw_condition(status).reason == "HardwareAvailable"
    short = evaluate(
        profile({"resources": {"requests": {"amd.com/gpu": "8"}}}), cluster, DEFAULT, NOW
    )
    assert short.status is Phase.NOT_AVAILABLE
    assert (
        "none has enough amd.com/gpu (needs 8); nearest is unlabelled-gpu"
        in hw_condition(short).message
    )


def test_reevaluating_an_unchanged_world_is_identical():
    cluster = cluster_of(mi300x_node("a"))
    first = evaluate(profile(GPU1), cluster, DEFAULT, NOW)
    stored = replace(profile(GPU1), status=first)
    again = evaluate(stored, cluster, DEFAULT, NOW + timedelta(hours=1))
    assert again == first
    assert again.to_dict() == first.to_dict()


def test_last_transition_time_moves_only_when_the_condition_status_changes():
    p = profile(GPU1)
    ready = evaluate(p, cluster_of(mi300x_node("a"), mi300x_node("b")), DEFAULT, NOW)
    with_status = replace(p, status=ready)
    # one node fewer: same condition status, new message, same transition time
    fewer = evaluate(with_status, cluster_of(mi300x_node("a")), DEFAULT, NOW + timedelta(minutes=5))
    assert hw_condition(fewer).message != hw_condition(ready).message
    assert hw_condition(fewer).last_transition_time == NOW
    # no node: status flips, transition time moves
    later = NOW + timedelta(minutes=10, microseconds=123)
    gone = evaluate(with_status, ClusterIndex(), DEFAULT, later)
    assert hw_condition(gone).last_transition_time == later.replace(microsecond=0)


def test_other_conditions_are_kept():
    doc_status = {
        "status": "Ready",
        "conditions": [
            {
                "type": "Validated",
                "status": "True",
                "reason": "Ok",
                "message": "",
                "lastTransitionTime": "2026-11-01T00:00:00Z",
            }
        ],
    }
    p = parse_profile(
        {
            "apiVersion": "aim.eai.amd.com/v1alpha2",
            "kind": "AIMClusterProfile",
            "metadata": {"name": "p"},
            "spec": {"aimId": "a", "image": "i", **GPU1},
            "status": doc_status,
        }
    )
    status = evaluate(p, cluster_of(mi300x_node("a")), DEFAULT, NOW)
    assert [c.type for c in status.conditions or ()] == ["HardwareAvailable", "Validated"]


def test_exact_quantities_decide_fits():
    node = node_obj(
        "n",
        {"MI300X": "8"},
        {"amd.com/gpu": "8", "cpu": "3900m", "memory": "32Gi"},
        schemes={"default": "8"},
    )
    cluster = cluster_of(node)
    fits = profile({**GPU1, "resources": {"requests": {"cpu": "3.9", "memory": "32768Mi"}}})
    over = profile({**GPU1, "resources": {"requests": {"cpu": "3901m"}}})
    assert evaluate(fits, cluster, DEFAULT, NOW).status is Phase.READY
    assert evaluate(over, cluster, DEFAULT, NOW).status is Phase.NOT_AVAILABLE


def test_config_accelerator_preference_and_infer_type():
    config = MatcherConfig.from_configmap_data(
        {"acceleratorPreference": " MI300X, MI325X ,", "inferAcceleratorType": "yes"}
    )
    assert config.accelerator_preference == ("MI300X", "MI325X")
    assert config.infer_accelerator_type is True
    assert MatcherConfig().accelerator_preference[:4] == ("MI355X", "MI350X", "MI325X", "MI300X")
    with pytest.raises(ConfigError, match=r"data\.acceleratorPreference: 'MI 300X'"):
        MatcherConfig.from_configmap_data({"acceleratorPreference": "MI 300X"})
    with pytest.raises(ConfigError, match=r"data\.acceleratorPreference: a model is listed twice"):
        MatcherConfig.from_configmap_data({"acceleratorPreference": "MI300X,mi300x"})


def test_hardware_summary_is_cpu_without_a_model_whatever_is_requested():
    """The spec: CPU when there is no accelerator model (not `16 x amd.com/gpu`)."""
    for spec in (
        {"acceleratorType": "gpu", "acceleratorCount": 16},
        {"resources": {"requests": {"amd.com/gpu": "16"}}},
    ):
        status = evaluate(profile(spec), cluster_of(mi300x_node("a")), DEFAULT, NOW)
        assert status.hardware_summary == "CPU"
        assert status.resources is not None


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"data\.countNotReadyNodes"):
        MatcherConfig.from_configmap_data({"countNotReadyNodes": "maybe"})
    with pytest.raises(ConfigError, match=r"data\.gpuResourceName"):
        MatcherConfig.from_configmap_data({"gpuResourceName": "amd gpu"})
    with pytest.raises(ConfigError, match=r"data\.gpuResourcename: unknown key"):
        MatcherConfig.from_configmap_data({"gpuResourcename": "amd.com/gpu"})
    assert MatcherConfig.from_configmap_data(None) == MatcherConfig()


def test_partition_labels_are_not_accelerators_in_the_inventory():
    node = node_obj("n", {"MI300X": "8"}, {"amd.com/gpu": "64"})
    node["metadata"]["labels"][partition_label_key("CPX-NPS4")] = "64"
    status = evaluate(
        profile({**GPU1, "acceleratorModel": "MI325X"}), cluster_of(node), DEFAULT, NOW
    )
    assert hw_condition(status).message.endswith("accelerator models in the cluster: MI300X")


# --- the example cluster ----------------------------------------------------------------------

EXPECTED = {
    # name: (status, matchingNodes, hardwareSummary, reason)
    # mi300x-cpx-0 advertises its 64 CPX partitions as amd.com/gpu (the device plugin's
    # single strategy): the partition term keeps these whole-GPU profiles off it.
    "qwen-qwen3-32b-mi300x-lat-fp8": ("Ready", 2, "1 x MI300X", "HardwareAvailable"),
    "my-finetuned-qwen-mi300x-lat-fp8": ("Ready", 2, "2 x MI300X", "HardwareAvailable"),
    "small-model-cpu": ("Ready", 8, "CPU", "NoAcceleratorSpecified"),
    "qwen-qwen3-32b-mi300x-cpx-nps4-seed": ("NotAvailable", 0, "MI300X", "HardwareNotAvailable"),
    "qwen-qwen3-32b-mi300x-cpx-nps4": ("Ready", 1, "MI300X", "HardwareAvailable"),
    "qwen-qwen3-32b-mi300x-cpx-nps4-partitions": ("Ready", 1, "4 x MI300X", "HardwareAvailable"),
    "qwen-qwen3-32b-mi325x-thr-fp8": ("Ready", 1, "8 x MI325X", "HardwareAvailable"),
    "llama-3-1-405b-mi325x-lat-fp8": ("NotAvailable", 0, "16 x MI325X", "HardwareNotAvailable"),
    "qwen-qwen3-32b-mi355x-lat-fp4": ("NotAvailable", 0, "1 x MI355X", "HardwareNotAvailable"),
    "phi-2-epyc-zen5-lat-fp32": ("Ready", 3, "32 x EPYC_ZEN5", "HardwareAvailable"),
    "phi-2-epyc-zen4-lat-fp32": ("Ready", 5, "2 x EPYC_ZEN4", "HardwareAvailable"),
}


def example_cluster() -> ClusterIndex:
    listing = yaml.safe_load((ROOT / "examples/cluster/nodes.yaml").read_text())
    return ClusterIndex(node_view(item) for item in listing["items"])


def example_profiles():
    for path in sorted((ROOT / "examples/profiles").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield parse_profile(doc)


def test_example_cluster_gives_the_documented_statuses():
    cluster = example_cluster()
    config_doc = yaml.safe_load((ROOT / "examples/cluster/matcher-config.yaml").read_text())
    config = MatcherConfig.from_configmap_data(config_doc["data"])
    got = {}
    for p in example_profiles():
        status = evaluate(p, cluster, config, NOW)
        got[p.name] = (
            str(status.status),
            status.matching_nodes,
            status.hardware_summary,
            hw_condition(status).reason,
        )
    assert got == EXPECTED
    readme = (ROOT / "examples/README.md").read_text()
    for name, (phase, nodes, _, _) in EXPECTED.items():
        assert f"| `{name}` | {phase} | {nodes} |" in readme, name


def test_example_cluster_has_the_promised_nodes():
    cluster = example_cluster()
    nodes = list(cluster)
    assert {n.name for n in nodes if not n.schedulable} == {"mi300x-2"}
    assert {n.name for n in nodes if not n.ready} == {"mi325x-1"}
    assert any(n.allocatable.get("amd.com/gpu") == Fraction(64) for n in nodes)
    assert any(n.allocatable.get("amd.com/cpx_nps4") == Fraction(64) for n in nodes)
    assert any(not any("MI3" in k for k in n.labels) for n in nodes)  # EPYC-only nodes


def test_results_follow_node_changes_through_the_memo():
    index = cluster_of(mi300x_node("a", gpus="2"))
    p = profile({**GPU1, "acceleratorCount": 4})
    assert evaluate(p, index, DEFAULT, NOW).status is Phase.NOT_AVAILABLE
    assert index.upsert(node_view(mi300x_node("a", gpus="8")))
    assert evaluate(p, index, DEFAULT, NOW).matching_nodes == 1
    index.upsert(node_view(mi300x_node("b", unschedulable=True)))
    status = evaluate(p, index, DEFAULT, NOW)
    assert (status.matching_nodes, hw_condition(status).message.endswith("1 cordoned")) == (1, True)
    index.remove("a")
    assert evaluate(p, index, DEFAULT, NOW).status is Phase.NOT_AVAILABLE


def test_resource_only_profile_without_any_provider():
    p = profile({"resources": {"requests": {"amd.com/cpx_nps4": "4", "cpu": "2"}}})
    status = evaluate(p, cluster_of(mi300x_node("a")), DEFAULT, NOW)
    assert status.status is Phase.NOT_AVAILABLE
    assert hw_condition(status).message == "No node has allocatable amd.com/cpx_nps4"


def test_cpu_type_without_model_matches_on_cpu_alone():
    p = profile({"acceleratorType": "cpu", "acceleratorCount": 100})
    cluster = cluster_of(mi300x_node("big"), node_obj("small", None, {"cpu": "64"}))
    status = evaluate(p, cluster, DEFAULT, NOW)
    assert not is_cpu_only(p.spec)
    assert (status.status, status.matching_nodes, status.hardware_summary) == (
        Phase.READY,
        1,
        "CPU",
    )
    assert hw_condition(status).message == "1 node with allocatable cpu: 100"


# --- partition-aware affinity (AIM Engine's partition term, reconciled with the seed) ----------

SPX = partition_label_key("SPX-NPS1")
CPX = partition_label_key("CPX-NPS4")


def partition_cluster() -> ClusterIndex:
    """The partition states a node can be in, labelled as the detectors label them."""
    return cluster_of(
        # AIM Engine's detector on an unpartitioned MI300X: default and SPX-NPS1
        mi300x_node("spx-both", schemes={"default": "8", "SPX-NPS1": "8"}),
        # this project's detector today: default only
        mi300x_node("spx-default", schemes={"default": "8"}),
        # CPX-NPS4 under the device plugin's single strategy: 64 partitions as amd.com/gpu
        mi300x_node("cpx", gpus="64", schemes={"CPX-NPS4": "64"}),
    )


def matching(spec: dict[str, Any], config: MatcherConfig = DEFAULT) -> list[str]:
    """Which of partition_cluster()'s nodes a profile matches (by evaluating it alone per node)."""
    names = []
    for n in partition_cluster():
        one = ClusterIndex([n])
        if evaluate(profile(spec), one, config, NOW).matching_nodes:
            names.append(n.name)
    return names


def terms_of(spec: dict[str, Any], config: MatcherConfig = DEFAULT) -> list[tuple[str, str]]:
    return [(t.key, t.operator) for t in label_terms(profile(spec).spec, config)]


@pytest.mark.parametrize(
    ("spec", "terms", "nodes"),
    [
        # the bug this fixes: 8 whole GPUs must not land on 64 CPX partitions
        (
            {**GPU1, "acceleratorCount": 8},
            [(DEFAULT_SCHEME, "Exists")],
            ["spx-both", "spx-default"],
        ),
        (
            {**GPU1, "acceleratorPartitioningMode": "unpartitioned"},
            [(DEFAULT_SCHEME, "Exists")],
            ["spx-both", "spx-default"],
        ),
        (
            {**GPU1, "acceleratorPartitioningMode": "Unpartitioned"},
            [(DEFAULT_SCHEME, "Exists")],
            ["spx-both", "spx-default"],
        ),
        (
            {**GPU1, "acceleratorPartitioningMode": "partitioned"},
            [(DEFAULT_SCHEME, "DoesNotExist")],
            ["cpx"],
        ),
        ({**GPU1, "acceleratorPartitioningMode": "cpx-nps4"}, [(CPX, "Exists")], ["cpx"]),
        ({**GPU1, "acceleratorPartitioningMode": "SPX-NPS1"}, [(SPX, "Exists")], ["spx-both"]),
        # a scheme no node has (AIM Engine: accepted, fails safe to zero nodes)
        (
            {**GPU1, "acceleratorPartitioningMode": "CPX"},
            [(partition_label_key("CPX"), "Exists")],
            [],
        ),
        # the seed's CPX example: count 0, an explicit partition resource, no mode: no term
        (
            {**GPU1, "acceleratorCount": 0, "resources": {"requests": {"amd.com/gpu": "4"}}},
            [],
            ["spx-both", "spx-default", "cpx"],
        ),
        # an explicit mode applies even without a derived request (AIM Engine's behaviour)
        (
            {**GPU1, "acceleratorCount": 0, "acceleratorPartitioningMode": "unpartitioned"},
            [(DEFAULT_SCHEME, "Exists")],
            ["spx-both", "spx-default"],
        ),
        # CPU profiles never get one
        (
            {"acceleratorModel": "EPYC_ZEN4", "acceleratorType": "cpu", "acceleratorCount": 8},
            [],
            ["spx-both", "spx-default", "cpx"],
        ),
        # no type: nothing derived, no partition term, the label alone matches
        (
            {"acceleratorModel": "MI300X", "acceleratorCount": 8},
            [],
            ["spx-both", "spx-default", "cpx"],
        ),
    ],
)
def test_partition_term_per_mode(spec, terms, nodes):
    model_key = accelerator_label_key(spec["acceleratorModel"])
    assert terms_of(spec) == [(model_key, "Exists"), *terms]
    assert matching(spec) == nodes
    # status and scheduling agree: the affinity written is exactly these terms
    status = evaluate(profile(spec), partition_cluster(), DEFAULT, NOW)
    expressions = (status.to_dict()["resolvedNodeAffinity"]
                   ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
                   ["matchExpressions"])  # fmt: skip
    assert [(e["key"], e["operator"]) for e in expressions] == [(model_key, "Exists"), *terms]
    assert status.matching_nodes == len(nodes)


def test_a_configured_partition_resource_is_not_a_whole_gpu():
    """With the device plugin's mixed strategy, gpu x N may derive amd.com/cpx_nps4: then an
    unset mode adds no default term (it would rule out the very nodes that have the resource)."""
    config = MatcherConfig.from_configmap_data({"gpuResourceName": "amd.com/cpx_nps4"})
    assert terms_of({**GPU1, "acceleratorCount": 4}, config) == [(MI300X, "Exists")]
    spx_named = MatcherConfig.from_configmap_data({"gpuResourceName": "amd.com/spx_nps1"})
    assert terms_of({**GPU1, "acceleratorCount": 4}, spx_named)[1] == (DEFAULT_SCHEME, "Exists")


def test_whole_gpus_on_a_partitioned_cluster_say_why():
    cluster = cluster_of(mi300x_node("cpx", gpus="64", schemes={"CPX-NPS4": "64"}))
    status = evaluate(profile({**GPU1, "acceleratorCount": 8}), cluster, DEFAULT, NOW)
    assert status.status is Phase.NOT_AVAILABLE
    assert hw_condition(status).message == (
        f"1 node with label {MI300X} but none has label {DEFAULT_SCHEME} (the profile asks for "
        "unpartitioned GPUs; partitioning schemes on those nodes: CPX-NPS4; set "
        "acceleratorPartitioningMode to the scheme the profile is written for)"
    )
    wrong_scheme = evaluate(
        profile({**GPU1, "acceleratorPartitioningMode": "DPX-NPS2"}), cluster, DEFAULT, NOW
    )
    assert "the profile asks for GPUs partitioned as DPX-NPS2" in hw_condition(wrong_scheme).message
    whole = cluster_of(mi300x_node("spx"))
    partitioned = evaluate(
        profile({**GPU1, "acceleratorPartitioningMode": "partitioned"}), whole, DEFAULT, NOW
    )
    assert hw_condition(partitioned).message == (
        f"1 node with label {MI300X} but all have label {DEFAULT_SCHEME} (the profile asks for "
        "partitioned GPUs; partitioning schemes on those nodes: default)"
    )


def test_a_node_repartitioned_is_followed_through_the_memo():
    index = cluster_of(mi300x_node("n"))
    p = profile({**GPU1, "acceleratorCount": 8})
    assert evaluate(p, index, DEFAULT, NOW).matching_nodes == 1
    assert index.upsert(node_view(mi300x_node("n", gpus="64", schemes={"CPX-NPS4": "64"})))
    assert evaluate(p, index, DEFAULT, NOW).matching_nodes == 0
