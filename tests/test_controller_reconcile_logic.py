"""The controller's decisions over plain data: desired status, Degraded, Failed, patches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detector.labels import accelerator_label_key, partition_label_key
from matcher.controller.reconciler import cached_profile, desired_status, normalised, profile_deps
from matcher.controller.status_writer import ProfileKey, merge_diff
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.nodes import node_view

MI300X = accelerator_label_key("MI300X")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def profile(name="qwen3-mi300x", count=1, model="MI300X", status=None, **spec):
    obj = {
        "apiVersion": "aim.eai.amd.com/v1alpha2",
        "kind": "AIMClusterProfile",
        "metadata": {"name": name, "generation": 3, "resourceVersion": "10", "uid": "u-1"},
        "spec": {
            "aimId": "qwen/qwen3-32b",
            "image": "amdenterpriseai/aim-qwen-qwen3-32b:0.8.5",
            "acceleratorModel": model,
            "acceleratorType": "gpu",
            "acceleratorCount": count,
            **spec,
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def node(name, labels, gpus="8"):
    return node_view(
        {
            "metadata": {"name": name, "labels": labels},
            "status": {
                "allocatable": {"cpu": "128", "amd.com/gpu": gpus},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )


def cluster_with_mi300x() -> ClusterIndex:
    return ClusterIndex([node("gpu-1", {MI300X: "8", partition_label_key("default"): "8"})])


def test_ready_then_identical_on_reevaluation_so_nothing_is_written():
    cached = cached_profile(profile())
    assert cached.key == ProfileKey("AIMClusterProfile", "", "qwen3-mi300x")
    first = desired_status(cached, cluster_with_mi300x(), MatcherConfig(), None, NOW).to_dict()
    assert first["status"] == "Ready"
    assert first["matchingNodes"] == 1
    later = cached_profile(profile(status=first))
    again = desired_status(
        later, cluster_with_mi300x(), MatcherConfig(), None, NOW + timedelta(hours=1)
    )
    assert again.to_dict() == first
    assert normalised(later.status) == first


def test_degraded_names_the_error_and_recovers_to_the_true_status():
    ready = desired_status(
        cached_profile(profile()), cluster_with_mi300x(), MatcherConfig(), None, NOW
    ).to_dict()
    cached = cached_profile(profile(status=ready))
    degraded = desired_status(
        cached, cluster_with_mi300x(), MatcherConfig(), "HTTP 500: etcd is down", NOW
    ).to_dict()
    assert degraded["status"] == "Degraded"
    (condition,) = degraded["conditions"]
    assert condition["status"] == "Unknown"
    assert "HTTP 500: etcd is down" in condition["message"]
    back = desired_status(
        cached_profile(profile(status=degraded)),
        cluster_with_mi300x(),
        MatcherConfig(),
        None,
        NOW + timedelta(minutes=5),
    ).to_dict()
    assert back["status"] == "Ready"
    assert back["conditions"][0]["lastTransitionTime"] == "2026-01-02T03:09:05Z"


def test_cpu_only_profiles_do_not_go_degraded():
    cpu = profile(model=None, count=None)
    del cpu["spec"]["acceleratorModel"], cpu["spec"]["acceleratorCount"]
    del cpu["spec"]["acceleratorType"]
    status = desired_status(cached_profile(cpu), ClusterIndex(), MatcherConfig(), "boom", NOW)
    assert status.to_dict()["status"] == "Ready"


def test_an_invalid_profile_is_failed_with_the_field_named():
    bad = profile(count=-1)
    cached = cached_profile(bad)
    assert cached.profile is None
    assert profile_deps(cached, MatcherConfig()).node_independent
    status = desired_status(cached, ClusterIndex(), MatcherConfig(), None, NOW).to_dict()
    assert status["status"] == "Failed"
    assert "spec.acceleratorCount" in status["conditions"][0]["message"]


def test_deps_follow_the_configured_gpu_resource_name():
    cached = cached_profile(profile(count=2))
    assert profile_deps(cached, MatcherConfig()).resources == {"amd.com/gpu"}
    deps = profile_deps(cached, MatcherConfig(gpu_resource_name="amd.com/cpx_nps4"))
    assert deps.label_key == MI300X
    assert deps.resources == {"amd.com/cpx_nps4"}


def test_merge_diff_nulls_what_disappears_and_sends_only_changes():
    old = {
        "status": "Ready",
        "matchingNodes": 2,
        "resolvedNodeAffinity": {"x": 1},
        "resources": {"requests": {"amd.com/gpu": "1", "cpu": "8"}},
    }
    new = {"status": "Ready", "matchingNodes": 3, "resources": {"requests": {"amd.com/gpu": "1"}}}
    assert merge_diff(old, new) == {
        "matchingNodes": 3,
        "resolvedNodeAffinity": None,
        "resources": {"requests": {"cpu": None}},
    }
