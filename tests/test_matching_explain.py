"""``matcher.core.explain``: one node against one profile, as plain data (no server).

The property that matters most: a node lacks nothing exactly when the profile's
``matchingNodes`` counts it, on realistic clusters and profiles as well as on the cases below.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any

import pytest

from benchmarks.realistic import realistic_nodes, realistic_profiles
from detector.labels import accelerator_label_key, partition_label_key
from matcher.api.models import parse_profile
from matcher.core import explain
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.evaluate import evaluate
from matcher.core.matching import matching_names
from matcher.core.nodes import node_view
from tests.test_matching import (
    DEFAULT,
    GPU1,
    NOW,
    cluster_of,
    mi300x_node,
    node_obj,
    profile,
)

MI300X = accelerator_label_key("MI300X")
DEFAULT_SCHEME = partition_label_key("default")
CPX = partition_label_key("CPX-NPS4")


def named(name: str, spec: dict[str, Any], kind: str = "AIMClusterProfile", **meta: Any) -> Any:
    return profile(spec, kind, name=name, **meta)


@pytest.mark.parametrize(
    "config",
    [
        DEFAULT,
        MatcherConfig(count_unschedulable_nodes=True, count_not_ready_nodes=True),
        MatcherConfig(gpu_resource_name="amd.com/cpx_nps4", infer_accelerator_type=True),
    ],
)
def test_a_node_lacks_nothing_exactly_when_the_status_counts_it(config):
    cluster = ClusterIndex(node_view(n) for n in realistic_nodes(400, seed=5))
    profiles = [parse_profile(p) for p in realistic_profiles(150, seed=5)]
    reports = explain.node_reports(cluster, profiles, config, near=0)
    served = Counter(p.ref for report in reports.values() for p in report.serves)
    for p in profiles:
        status = evaluate(p, cluster, config, NOW)
        assert served[p.ref] == status.matching_nodes, p.ref
        req = explain.requirements(p, config)
        names = matching_names(cluster, req.terms, req.requests, config)
        for node in cluster:
            assert (not explain.misses(node, req, config)) is (node.name in names), (p.ref, node)
    # Realistic data exercises both answers.
    assert 0 < sum(served.values()) < len(profiles) * len(cluster)


def test_what_a_node_lacks_in_the_order_the_matcher_checks():
    whole = explain.requirements(profile({**GPU1, "acceleratorCount": 16}), DEFAULT)
    cpx_node = node_view(
        mi300x_node("cpx", gpus="64", schemes={"CPX-NPS4": "64"}, unschedulable=True)
    )
    misses = explain.misses(cpx_node, whole, DEFAULT)
    assert [m.kind for m in misses] == ["label", "cordoned"]
    assert [m.text() for m in misses] == ["no partitioning-scheme.default label", "cordoned"]

    small = node_view(mi300x_node("small", gpus="8", ready=False))
    misses = explain.misses(small, whole, DEFAULT)
    assert [m.text() for m in misses] == ["amd.com/gpu 8 (needs 16)", "NotReady"]
    assert misses[0].to_dict() == {
        "kind": "resource",
        "text": "amd.com/gpu 8 (needs 16)",
        "key": "amd.com/gpu",
        "need": "16",
        "have": "8",
    }
    counting = MatcherConfig(count_not_ready_nodes=True)
    assert [m.kind for m in explain.misses(small, whole, counting)] == ["resource"]

    partitioned = explain.requirements(
        profile({**GPU1, "acceleratorPartitioningMode": "partitioned"}), DEFAULT
    )
    (miss,) = explain.misses(node_view(mi300x_node("whole")), partitioned, DEFAULT)
    assert (miss.kind, miss.key, miss.text()) == (
        "unwanted-label",
        DEFAULT_SCHEME,
        "has partitioning-scheme.default label",
    )
    assert whole.describe() == "MI300X label, partitioning-scheme.default label, amd.com/gpu 16"


def test_nearest_nodes_put_the_right_hardware_first():
    """A node of the profile's model that is short of GPUs is nearer than a node of another
    model with room to spare; serving nodes come first of all."""
    cluster = cluster_of(
        node_obj("mi325x", {"MI325X": "8"}, {"amd.com/gpu": "8"}, schemes={"default": "8"}),
        mi300x_node("small", gpus="2"),
        mi300x_node("big", gpus="8"),
        mi300x_node("cordoned", gpus="8", unschedulable=True),
        node_obj("cpu-only", {"EPYC_ZEN5": "128"}),
        # Of the profile's model but partitioned: one label short, like mi325x, yet nearer
        # (repartitioning a node is a smaller step than buying another model).
        mi300x_node("zz-cpx", gpus="64", schemes={"CPX-NPS4": "64"}),
    )
    req = explain.requirements(profile({**GPU1, "acceleratorCount": 4}), DEFAULT)
    fits = explain.nearest_nodes(cluster, req, DEFAULT)
    assert [(f.node.name, [m.text() for m in f.misses]) for f in fits] == [
        ("big", []),
        ("cordoned", ["cordoned"]),
        ("small", ["amd.com/gpu 2 (needs 4)"]),
        ("zz-cpx", ["no partitioning-scheme.default label"]),
        ("mi325x", ["no MI300X label"]),
        ("cpu-only", ["no MI300X label", "no partitioning-scheme.default label",
                      "amd.com/gpu 0 (needs 4)"]),
    ]  # fmt: skip
    assert [f.serves for f in fits] == [True, False, False, False, False, False]


def test_node_reports_serves_and_near_misses_of_its_own_hardware():
    cluster = cluster_of(
        mi300x_node("whole"),
        mi300x_node("cpx", gpus="64", schemes={"CPX-NPS4": "64"}),
        node_obj("mi325x", {"MI325X": "8"}, {"amd.com/gpu": "8"}, schemes={"default": "8"}),
    )
    one = named("one-gpu", GPU1)
    two = named("two-gpu", {**GPU1, "acceleratorCount": 2})
    big = named("sixteen", {**GPU1, "acceleratorCount": 16})
    big_too = named(
        "sixteen-too", {**GPU1, "acceleratorCount": 16}, namespace="ml", kind="AIMProfile"
    )
    cpx = named("cpx", {**GPU1, "acceleratorPartitioningMode": "CPX-NPS4", "acceleratorCount": 4})
    mi355 = named("mi355x", {**GPU1, "acceleratorModel": "MI355X"})
    reports = explain.node_reports(cluster, [big_too, mi355, two, one, big, cpx], DEFAULT, near=3)

    whole = reports["whole"]
    assert [p.name for p in whole.serves] == ["one-gpu", "two-gpu"]
    # Nearest first: the GPUs it lacks (the two profiles asking for 16 GPUs are one
    # requirement), then a label it lacks; never the MI355X profile.
    assert [([p.ref for p in ps], [m.text() for m in ms]) for ps, ms in whole.near] == [
        (
            ["aimclusterprofile/sixteen", "aimprofile/ml/sixteen-too"],
            ["amd.com/gpu 8 (needs 16)"],
        ),
        (["aimclusterprofile/cpx"], ["no partitioning-scheme.CPX-NPS4 label"]),
    ]
    (kept,) = explain.node_reports(cluster, [cpx, big], DEFAULT, near=1)["whole"].near
    assert [p.name for p in kept[0]] == ["sixteen"]
    assert [p.name for p in reports["cpx"].serves] == ["cpx"]
    assert reports["mi325x"].serves == []
    assert reports["mi325x"].near == []  # no profile asks for an MI325X
    assert explain.node_reports(cluster, [one], DEFAULT, near=0)["whole"].near == []


def test_requirements_of_profiles_that_ask_the_same_are_equal():
    a = explain.requirements(profile({**GPU1, "resources": {"requests": {"memory": "1Gi"}}}),
                             DEFAULT)  # fmt: skip
    b = explain.requirements(
        profile({**GPU1, "resources": {"requests": {"memory": "1024Mi"}}}), DEFAULT
    )
    assert a.key == b.key
    assert a.requests["memory"] == Fraction(1024**3)
