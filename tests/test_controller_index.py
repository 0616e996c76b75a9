"""Which profiles a node change reaches, from real NodeView projections of Node objects."""

from __future__ import annotations

import copy

from detector.labels import accelerator_label_key, partition_label_key
from matcher.controller.index import AffectedIndex, ProfileDeps
from matcher.core.nodes import node_view

MI300X = accelerator_label_key("MI300X")
MI325X = accelerator_label_key("MI325X")


def node(name="n1", labels=None, *, gpus="8", unschedulable=False, ready="True", cpu="128"):
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "1Ti", "amd.com/gpu": gpus},
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def index() -> AffectedIndex[str]:
    idx: AffectedIndex[str] = AffectedIndex()
    idx.put("mi300x-1", ProfileDeps(MI300X, frozenset({"amd.com/gpu"})))
    idx.put("mi300x-8", ProfileDeps(MI300X, frozenset({"amd.com/gpu"})))
    idx.put("mi325x", ProfileDeps(MI325X, frozenset({"amd.com/gpu"})))
    idx.put("any-gpu", ProfileDeps(None, frozenset({"amd.com/gpu"})))
    idx.put("invalid", ProfileDeps(None, frozenset(), node_independent=True))
    return idx


def test_a_heartbeat_affects_nothing():
    obj = node(labels={MI300X: "8"})
    beat = copy.deepcopy(obj)
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:10Z"
    beat["metadata"]["resourceVersion"] = "99"
    assert node_view(obj) == node_view(beat)
    assert index().affected_by_node(node_view(obj), node_view(beat)) == set()


def test_gaining_a_label_reaches_only_that_labels_profiles():
    before = node_view(node())
    after = node_view(node(labels={MI300X: "8"}))
    assert index().affected_by_node(before, after) == {"mi300x-1", "mi300x-8"}


def test_capacity_change_reaches_the_nodes_labels_and_label_free_profiles_of_that_resource():
    before = node_view(node(labels={MI300X: "8"}))
    after = node_view(node(labels={MI300X: "8"}, gpus="4"))
    assert index().affected_by_node(before, after) == {"mi300x-1", "mi300x-8", "any-gpu"}
    cpu_only = node_view(node(labels={MI300X: "8"}, cpu="64"))
    assert index().affected_by_node(before, cpu_only) == {"mi300x-1", "mi300x-8"}


def test_cordon_not_ready_add_and_delete_reach_label_and_label_free_profiles():
    base = node_view(node(labels={MI325X: "8"}))
    expected = {"mi325x", "any-gpu"}
    idx = index()
    cordoned = node_view(node(labels={MI325X: "8"}, unschedulable=True))
    not_ready = node_view(node(labels={MI325X: "8"}, ready="False"))
    assert idx.affected_by_node(base, cordoned) == expected
    assert idx.affected_by_node(base, not_ready) == expected
    assert idx.affected_by_node(None, base) == expected
    assert idx.affected_by_node(base, None) == expected


def test_profiles_move_between_buckets_and_leave_on_remove():
    idx = index()
    idx.put("mi300x-1", ProfileDeps(MI325X, frozenset({"amd.com/gpu"})))
    assert idx.with_label(MI300X) == {"mi300x-8"}
    assert idx.with_label(MI325X) == {"mi300x-1", "mi325x"}
    idx.remove("mi325x")
    idx.remove("mi300x-1")
    assert idx.label_keys() == {MI300X}
    assert "invalid" in idx
    assert sorted(idx.node_dependent()) == ["any-gpu", "mi300x-8"]


def test_repartitioning_a_node_reaches_the_profiles_of_its_model():
    """A profile's partition term reads partitioning-scheme labels that are not its key: a
    node switched SPX -> CPX (same MI300X label, same allocatable) must re-evaluate it."""
    default, cpx = partition_label_key("default"), partition_label_key("CPX-NPS4")
    before = node_view(node(labels={MI300X: "8", default: "8"}))
    after = node_view(node(labels={MI300X: "8", cpx: "64"}))
    assert index().affected_by_node(before, after) == {"mi300x-1", "mi300x-8"}
