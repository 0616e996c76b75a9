"""The matching benchmark's baseline gives the shipped matcher's answers, so its speed-up figures
compare equal work: every status (counts, messages, nearest miss) the same, on nodes and
profiles built for the cases realistic inputs rarely hit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.bench_matching import baseline, matching_by, single_pass
from matcher.api.models import parse_profile
from matcher.core.affinity import label_terms
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.evaluate import evaluate
from matcher.core.matching import match_nodes
from matcher.core.nodes import node_view
from matcher.core.resources import parsed_requests, resolve_resources
from tests.test_matching import NOW, mi300x_node, node_obj, profile

UPSTREAM = Path(__file__).parent / "upstream_profiles"

NODES = [
    mi300x_node("a"),
    mi300x_node("b", gpus="7"),
    mi300x_node("cordoned", unschedulable=True),
    mi300x_node("not-ready", ready=False),
    mi300x_node("both", unschedulable=True, ready=False),
    node_obj(
        "cpx",
        {"MI300X": "8", "EPYC_ZEN4": "192"},
        {"amd.com/cpx_nps4": "64"},
        schemes={"CPX-NPS4": "64"},
    ),
    node_obj("cpx-single", {"MI300X": "8"}, {"amd.com/gpu": "64"}, schemes={"CPX-NPS4": "64"}),
    node_obj(
        "mi325x",
        {"MI325X": "8", "EPYC_ZEN5": "128"},
        {"amd.com/gpu": "8"},
        schemes={"default": "8"},
    ),
    node_obj("cpu", {"EPYC_ZEN5": "128"}, {"cpu": "254", "memory": "1000Gi"}),
    node_obj("small", {"MI210": "4"}, {"amd.com/gpu": "4", "cpu": "8", "memory": "64Gi"}),
]
GPU = {"acceleratorModel": "MI300X", "acceleratorType": "gpu"}
SPECS: list[dict[str, Any]] = [
    GPU | {"acceleratorCount": 1},
    GPU | {"acceleratorCount": 8},
    GPU | {"acceleratorCount": 8, "resources": {"requests": {"cpu": "500", "memory": "64Gi"}}},
    GPU | {"acceleratorCount": 16},  # nothing fits: the nearest miss
    GPU | {"acceleratorCount": 1, "acceleratorPartitioningMode": "partitioned"},
    GPU | {"acceleratorCount": 0, "resources": {"requests": {"amd.com/cpx_nps4": "4"}}},
    GPU | {"acceleratorCount": 0, "acceleratorPartitioningMode": "cpx-nps4"},
    {"acceleratorModel": "MI400X", "acceleratorType": "gpu", "acceleratorCount": 8},
    {"acceleratorModel": "mi300x", "acceleratorType": "gpu", "acceleratorCount": 1},
    {"acceleratorModel": "EPYC_ZEN5", "acceleratorType": "cpu", "acceleratorCount": 64},
    {"resources": {"requests": {"amd.com/gpu": "4"}}},  # no model: the scarcest resource's pool
    {"resources": {"requests": {"amd.com/gpu": "2", "amd.com/cpx_nps4": "2"}}},
    {"resources": {"requests": {"amd.com/cpx-nps4": "2"}}},  # nobody advertises it
    {"resources": {"requests": {"cpu": "4"}}},
    {},
]
CONFIGS = [
    MatcherConfig(),
    replace(MatcherConfig(), count_unschedulable_nodes=True),
    replace(MatcherConfig(), count_not_ready_nodes=True, count_unschedulable_nodes=True),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "count-cordoned", "count-both"])
@pytest.mark.parametrize("spec", SPECS, ids=[str(i) for i in range(len(SPECS))])
def test_single_pass_matches_the_index(spec, config):
    views = [node_view(o) for o in NODES]
    p = profile(spec)
    terms = label_terms(p.spec, config)
    requests = parsed_requests(resolve_resources(p.spec, config))
    expected = match_nodes(ClusterIndex(views), terms, requests, config)
    assert single_pass(views, terms, requests, config) == expected


@pytest.mark.parametrize("memo", [False, True])
def test_statuses_through_the_baseline_equal_the_shipped_ones(memo):
    views = [node_view(o) for o in NODES]
    profiles = [profile(spec) for spec in SPECS]
    for path in sorted(UPSTREAM.glob("*.yaml")):
        profiles += [parse_profile(d) for d in yaml.safe_load_all(path.read_text()) if d]
    shipped = [evaluate(p, ClusterIndex(views), MatcherConfig(), NOW).to_dict() for p in profiles]
    cluster = ClusterIndex(views)
    with matching_by(baseline(views, memo=memo)):
        through = [evaluate(p, cluster, MatcherConfig(), NOW).to_dict() for p in profiles]
    assert through == shipped
    assert {s["status"] for s in shipped} == {"Ready", "NotAvailable"}
