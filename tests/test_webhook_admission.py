"""Admission as plain data: the example profiles, evaluated by the real core against the example
cluster, and pods as the API server sends them (defaulted, ``resources: {}``) in; the decision,
its JSON patch applied with an RFC 6902 implementation, out. Tables: which pods, resolution
(precedence, selection, ties), the patch (affinity, resources, annotations) and refusals."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from detector.labels import accelerator_label_key, partition_label_key
from matcher.api.models import KIND_CLUSTER_PROFILE, KIND_PROFILE, Phase, Profile, parse_profile
from matcher.core.admission import (
    AIM_ID_KEY,
    CONTAINER_KEY,
    METRIC_KEY,
    NON_PRIMARY_KEY,
    OUTCOME_DENIED,
    OUTCOME_MUTATED,
    OUTCOME_SKIPPED,
    OUTCOME_UNCHANGED,
    PRECISION_KEY,
    PROFILE_KEY,
    RESOLVED_GENERATION_KEY,
    RESOLVED_PROFILE_KEY,
    RESOLVED_STATUS_KEY,
    SELECTION_REASON_KEY,
    CachedEntry,
    Decision,
    admit,
    decode_aim_id,
    encode_aim_id,
    is_label_value,
    lookup_over,
    merged_terms,
)
from matcher.core.config import ConfigError, MatcherConfig
from matcher.core.selection import select
from matcher.offline import Inputs, evaluate_all, load_nodes, load_profiles

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MI300X = accelerator_label_key("MI300X")
MI325X = accelerator_label_key("MI325X")
MI355X = accelerator_label_key("MI355X")
DEFAULT_SCHEME = partition_label_key("default")
QWEN = "qwen/qwen3-32b"


def evaluated(extra: list[dict[str, Any]] | None = None) -> list[Profile]:
    """examples/profiles (plus `extra` objects) with the statuses the real core gives them
    against examples/cluster/nodes.yaml."""
    errors: list[str] = []
    cluster = load_nodes([REPO / "examples" / "cluster" / "nodes.yaml"], errors, [])
    profiles = load_profiles([REPO / "examples" / "profiles"], errors, [])
    profiles += [(parse_profile(o), o) for o in extra or []]
    assert errors == []
    inputs = Inputs(cluster=cluster, config=MatcherConfig(), profiles=profiles, errors=[])
    return [
        dataclasses.replace(p, generation=p.generation or 1) for p, _ in evaluate_all(inputs, NOW)
    ]


def entries(profiles: list[Profile], invalid: dict[tuple[str, str, str], str] | None = None):
    table = {(p.kind, p.namespace or "", p.name): CachedEntry(p) for p in profiles}
    for key, error in (invalid or {}).items():
        table[key] = CachedEntry(None, error)
    return lookup_over(table)


PROFILES = evaluated()
LOOKUP = entries(PROFILES)


def by_name(name: str, profiles: list[Profile] = PROFILES) -> Profile:
    [found] = [p for p in profiles if p.name == name]
    return found


def pod(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    *,
    containers: list[dict[str, Any]] | None = None,
    affinity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A pod as kube-apiserver hands it to a mutating webhook: from a ReplicaSet's template,
    defaulted (resources {}, pull policy, termination message, DNS policy ...)."""
    spec: dict[str, Any] = {
        "containers": containers
        or [
            {
                "name": "inference",
                "image": "amdenterpriseai/aim-qwen-qwen3-32b:0.8.5",
                "ports": [{"containerPort": 8000, "name": "http", "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "securityContext": {},
        "schedulerName": "default-scheduler",
    }
    if affinity is not None:
        spec["affinity"] = affinity
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "qwen-7d9f8c6b5-",
            "namespace": "ml-team",
            "labels": {"app": "qwen", "pod-template-hash": "7d9f8c6b5", **(labels or {})},
            **({"annotations": annotations} if annotations is not None else {}),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "qwen-7d9f8c6b5",
                    "uid": "3f0c4e43-5b3a-4c57-9a3f-0f4f0c6d2a11",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": {},
    }


def run(
    obj: dict[str, Any],
    namespace: str = "ml-team",
    lookup=LOOKUP,
    config: MatcherConfig | None = None,
) -> tuple[Decision, dict[str, Any]]:
    """The decision, and the pod with its patch applied (as the API server applies it)."""
    decision = admit(obj, namespace, lookup, config or MatcherConfig())
    patched = (
        jsonpatch.apply_patch(copy.deepcopy(obj), list(decision.patch)) if decision.patch else obj
    )
    # Admission must be idempotent: the patched pod admitted again changes nothing.
    if decision.allowed:
        again = admit(patched, namespace, lookup, config or MatcherConfig())
        assert again.allowed
        assert again.patch == (), again.patch
        assert again.outcome in (OUTCOME_UNCHANGED, OUTCOME_SKIPPED)
    return decision, patched


def node_terms(obj: dict[str, Any]) -> list[dict[str, Any]]:
    affinity = obj["spec"]["affinity"]["nodeAffinity"]
    terms: list[dict[str, Any]] = affinity["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    return terms


def exists(key: str) -> dict[str, str]:
    return {"key": key, "operator": "Exists"}


PROFILE_TERM = [exists(MI300X), exists(DEFAULT_SCHEME)]

# --- which pods ----------------------------------------------------------------------------------


def test_a_pod_that_does_not_opt_in_is_left_alone():
    decision, _ = run(pod())
    assert decision == Decision(allowed=True, outcome=OUTCOME_SKIPPED)


@pytest.mark.parametrize(
    ("aim_id", "label"),
    [
        ("qwen/qwen3-32b", "qwen--qwen3-32b"),
        ("meta-llama/llama-3.1-405b-instruct", "meta-llama--llama-3.1-405b-instruct"),
        ("microsoft/phi-2", "microsoft--phi-2"),
        ("model-without-org", "model-without-org"),
        ("org/sub/model", "org--sub--model"),
    ],
)
def test_aim_id_label_encoding_round_trips(aim_id, label):
    assert encode_aim_id(aim_id) == label
    assert is_label_value(label)
    assert decode_aim_id(label) == aim_id


@pytest.mark.parametrize(
    "aim_id",
    [
        "a--b/c",  # "--" would not come back as itself
        "deepseek-ai/" + "x" * 60,  # over 63 characters
        "org/model@v2",  # a character no label value may hold
        "org/model-",  # must end alphanumeric
    ],
)
def test_aim_ids_a_label_cannot_hold_have_no_encoding(aim_id):
    assert encode_aim_id(aim_id) is None


def test_long_aim_id_goes_in_the_annotation():
    long_id = "deepseek-ai/deepseek-r1-distill-llama-70b-instruct-with-a-very-long-suffix"
    extra = cluster_obj("long-id", aimId=long_id, primary=True)
    lookup = entries(evaluated([extra]))
    decision, patched = run(pod({AIM_ID_KEY: ""}, {AIM_ID_KEY: long_id}), lookup=lookup)
    assert decision.outcome == OUTCOME_MUTATED
    assert patched["metadata"]["annotations"][RESOLVED_PROFILE_KEY] == "AIMClusterProfile/long-id"


REFUSED_REQUESTS = [
    (
        "both labels",
        {PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8", AIM_ID_KEY: "qwen--qwen3-32b"},
        {},
        f"both labels {PROFILE_KEY} and {AIM_ID_KEY}",
    ),
    ("empty label", {PROFILE_KEY: ""}, {}, f"label {PROFILE_KEY} is empty"),
    (
        "label and annotation disagree",
        {AIM_ID_KEY: "qwen--qwen3-32b"},
        {AIM_ID_KEY: "microsoft/phi-2"},
        "disagree",
    ),
    ("bad metric", {AIM_ID_KEY: "qwen--qwen3-32b"}, {METRIC_KEY: "fast"}, "not one of latency"),
    ("bad precision", {AIM_ID_KEY: "qwen--qwen3-32b"}, {PRECISION_KEY: "fp7"}, "fp7"),
    ("bad flag", {AIM_ID_KEY: "qwen--qwen3-32b"}, {NON_PRIMARY_KEY: "yes"}, '"true" or "false"'),
    (
        "unknown container",
        {PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"},
        {CONTAINER_KEY: "vllm"},
        "container 'vllm', which the pod does not have (containers: inference)",
    ),
]


@pytest.mark.parametrize(
    ("labels", "annotations", "message"),
    [r[1:] for r in REFUSED_REQUESTS],
    ids=[r[0] for r in REFUSED_REQUESTS],
)
def test_a_malformed_request_is_refused_naming_the_key(labels, annotations, message):
    decision, _ = run(pod(labels, annotations))
    assert not decision.allowed
    assert decision.outcome == OUTCOME_DENIED
    assert message in decision.message
    assert decision.patch == ()


def test_selection_filters_on_an_explicit_profile_are_ignored_with_a_warning():
    decision, _ = run(
        pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}, {METRIC_KEY: "throughput"})
    )
    assert decision.outcome == OUTCOME_MUTATED
    assert any(METRIC_KEY in w and "ignored" in w for w in decision.warnings)


def test_namespaces_outside_webhook_namespaces_are_admitted_unchanged_with_a_warning():
    config = MatcherConfig(webhook_namespaces=("prod-inference",))
    decision, _ = run(pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}), config=config)
    assert decision.allowed
    assert decision.patch == ()
    assert decision.outcome == OUTCOME_SKIPPED
    assert "not in webhookNamespaces" in decision.warnings[0]
    decision, _ = run(
        pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}), "prod-inference", config=config
    )
    assert decision.outcome == OUTCOME_MUTATED


# --- the patch -----------------------------------------------------------------------------------


def test_explicit_cluster_profile_on_a_bare_pod():
    decision, patched = run(pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}))
    assert decision.allowed
    assert decision.outcome == OUTCOME_MUTATED
    assert decision.warnings == ()
    assert node_terms(patched) == [{"matchExpressions": PROFILE_TERM}]
    # The derived GPU (request = limit, as Kubernetes demands of extended resources) and the
    # profile's cpu/memory override.
    assert patched["spec"]["containers"][0]["resources"] == {
        "requests": {"amd.com/gpu": "1", "cpu": "4", "memory": "32Gi"},
        "limits": {"amd.com/gpu": "1"},
    }
    assert patched["metadata"]["annotations"] == {
        RESOLVED_PROFILE_KEY: "AIMClusterProfile/qwen-qwen3-32b-mi300x-lat-fp8",
        RESOLVED_GENERATION_KEY: "1",
        RESOLVED_STATUS_KEY: "Ready",
    }
    # Only what the profile adds changed.
    rest = copy.deepcopy(patched)
    del rest["spec"]["affinity"]
    del rest["metadata"]["annotations"]
    rest["spec"]["containers"][0]["resources"] = {}
    assert rest == pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"})


def test_patch_paths_escape_slashes_in_keys():
    obj = pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}, {"team": "ml"})
    obj["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "2"}}
    decision, patched = run(obj)
    paths = [op["path"] for op in decision.patch]
    assert "/spec/containers/0/resources/requests/amd.com~1gpu" in paths
    assert f"/metadata/annotations/{RESOLVED_PROFILE_KEY.replace('/', '~1')}" in paths
    assert patched["metadata"]["annotations"]["team"] == "ml"


AFFINITIES: list[tuple[str, dict[str, Any] | None, list[dict[str, Any]]]] = [
    (
        "none",
        None,
        [{"matchExpressions": PROFILE_TERM}],
    ),
    (
        "pod anti-affinity only",
        {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        [{"matchExpressions": PROFILE_TERM}],
    ),
    (
        "preferred node affinity only",
        {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "preference": {"matchExpressions": [exists("ssd")]}}
                ]
            }
        },
        [{"matchExpressions": PROFILE_TERM}],
    ),
    (
        "one term of the pod's own",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "topology.kubernetes.io/zone", "operator": "In",
                                 "values": ["zone-a"]}
                            ]
                        }
                    ]
                }
            }
        },
        [
            {
                "matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-a"]},
                    *PROFILE_TERM,
                ]
            }
        ],
    ),
    (
        "two ORed terms, one with fields: each gets the profile's requirements",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [exists("rack-a")]},
                        {"matchFields": [{"key": "metadata.name", "operator": "In",
                                          "values": ["mi300x-1"]}]},
                    ]
                }
            }
        },
        [
            {"matchExpressions": [exists("rack-a"), *PROFILE_TERM]},
            {
                "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["mi300x-1"]}],
                "matchExpressions": PROFILE_TERM,
            },
        ],
    ),
    (
        "a term that already holds one of the requirements",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [exists(MI300X)]}]
                }
            }
        },
        [{"matchExpressions": PROFILE_TERM}],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("affinity", "terms"), [a[1:] for a in AFFINITIES], ids=[a[0] for a in AFFINITIES]
)
def test_the_profile_term_is_anded_into_every_node_selector_term(affinity, terms):
    obj = pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}, affinity=copy.deepcopy(affinity))
    decision, patched = run(obj)
    assert decision.outcome == OUTCOME_MUTATED
    assert node_terms(patched) == terms
    # Everything else the pod had under affinity stays.
    for key, value in (affinity or {}).items():
        if key != "nodeAffinity":
            assert patched["spec"]["affinity"][key] == value
    preferred = ((affinity or {}).get("nodeAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution"
    )
    if preferred is not None:
        assert (
            patched["spec"]["affinity"]["nodeAffinity"][
                "preferredDuringSchedulingIgnoredDuringExecution"
            ]
            == preferred
        )


def test_profiles_with_several_terms_are_crossed_and_stay_idempotent():
    pod_terms = [{"matchExpressions": [exists("a")]}, {"matchExpressions": [exists("b")]}]
    profile_terms = [{"matchExpressions": [exists("x")]}, {"matchExpressions": [exists("y")]}]
    merged = merged_terms(pod_terms, profile_terms)
    assert merged == [
        {"matchExpressions": [exists("a"), exists("x")]},
        {"matchExpressions": [exists("a"), exists("y")]},
        {"matchExpressions": [exists("b"), exists("x")]},
        {"matchExpressions": [exists("b"), exists("y")]},
    ]
    assert merged_terms(merged, profile_terms) == merged
    # An empty term matches no node; ANDing cannot widen it.
    assert merged_terms([{}], profile_terms) == [{}]


RESOURCES = [
    (
        "the container's own value wins, with a warning when it differs",
        {"limits": {"amd.com/gpu": "2"}},
        {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"amd.com/gpu": "2"}},
        ["container inference sets amd.com/gpu limits 2; kept over the profile's requests 1, "
         "limits 1"],
    ),
    (
        "a resource named on one side is the container's on both",
        {"limits": {"memory": "16Gi"}},
        {"requests": {"amd.com/gpu": "1", "cpu": "4"},
         "limits": {"amd.com/gpu": "1", "memory": "16Gi"}},
        [],
    ),
    (
        "equal quantities written differently are no conflict",
        {"requests": {"memory": "32768Mi", "cpu": "4000m"}},
        {"requests": {"memory": "32768Mi", "cpu": "4000m", "amd.com/gpu": "1"},
         "limits": {"amd.com/gpu": "1"}},
        [],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("own", "result", "warnings"), [r[1:] for r in RESOURCES], ids=[r[0] for r in RESOURCES]
)
def test_resources_merge_keeping_what_the_pod_sets(own, result, warnings):
    obj = pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"})
    obj["spec"]["containers"][0]["resources"] = copy.deepcopy(own)
    decision, patched = run(obj)
    assert patched["spec"]["containers"][0]["resources"] == result
    assert list(decision.warnings) == warnings


def test_a_container_without_a_resources_field_gets_one():
    obj = pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"})
    del obj["spec"]["containers"][0]["resources"]
    _, patched = run(obj)
    assert patched["spec"]["containers"][0]["resources"]["limits"] == {"amd.com/gpu": "1"}


def test_multiple_containers_first_by_default_or_the_annotated_one():
    sidecar = {"name": "metrics-proxy", "image": "proxy:1", "resources": {}}
    main = {"name": "inference", "image": "aim:1", "resources": {}}
    _, patched = run(
        pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}, containers=[main, sidecar])
    )
    assert patched["spec"]["containers"][0]["resources"]["limits"] == {"amd.com/gpu": "1"}
    assert patched["spec"]["containers"][1]["resources"] == {}
    _, patched = run(
        pod(
            {PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"},
            {CONTAINER_KEY: "inference"},
            containers=[copy.deepcopy(sidecar), copy.deepcopy(main)],
        )
    )
    assert patched["spec"]["containers"][0]["resources"] == {}
    assert patched["spec"]["containers"][1]["resources"]["limits"] == {"amd.com/gpu": "1"}


def test_an_already_mutated_pod_is_unchanged():
    _, patched = run(pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}))
    decision = admit(patched, "ml-team", LOOKUP, MatcherConfig())
    assert decision == Decision(
        allowed=True, outcome=OUTCOME_UNCHANGED, profile=by_name("qwen-qwen3-32b-mi300x-lat-fp8")
    )


def test_a_cpu_only_profile_without_resources_records_only_the_decision():
    decision, patched = run(pod({PROFILE_KEY: "small-model-cpu"}), "dev-team")
    assert decision.outcome == OUTCOME_MUTATED
    assert "affinity" not in patched["spec"]
    assert patched["spec"]["containers"][0]["resources"] == {}
    assert patched["metadata"]["annotations"][RESOLVED_PROFILE_KEY] == (
        "AIMProfile/dev-team/small-model-cpu"
    )


def test_partitioned_profile_gets_the_partition_term():
    decision, patched = run(pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-cpx-nps4-partitions"}))
    assert decision.outcome == OUTCOME_MUTATED
    keys = [e["key"] for e in node_terms(patched)[0]["matchExpressions"]]
    assert keys == [MI300X, partition_label_key("CPX-NPS4")]
    # Without a mode and with an explicit partition resource: no partition term (the spec's
    # CPX example), and the partition resource is what the container gets.
    _, patched = run(pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-cpx-nps4"}))
    assert node_terms(patched) == [{"matchExpressions": [exists(MI300X)]}]
    assert patched["spec"]["containers"][0]["resources"]["requests"] == {"amd.com/cpx_nps4": "4"}


# --- resolution ----------------------------------------------------------------------------------


def cluster_obj(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aim.eai.amd.com/v1alpha2",
        "kind": "AIMClusterProfile",
        "metadata": {"name": name, "generation": 1},
        "spec": {
            "aimId": QWEN,
            "image": "amdenterpriseai/aim-qwen-qwen3-32b:0.8.5",
            "metric": "latency",
            "precision": "fp8",
            "type": "optimized",
            "acceleratorModel": "MI300X",
            "acceleratorType": "gpu",
            "acceleratorCount": 1,
            **spec,
        },
    }


def namespaced_obj(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    obj = cluster_obj(name, **spec)
    obj["kind"] = "AIMProfile"
    obj["metadata"]["namespace"] = namespace
    return obj


def test_an_aimprofile_in_the_pod_s_namespace_wins_over_the_cluster_profile_of_its_name():
    shadow = namespaced_obj("qwen-qwen3-32b-mi300x-lat-fp8", "ml-team", acceleratorCount=2)
    lookup = entries(evaluated([shadow]))
    _, patched = run(pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}), "ml-team", lookup)
    annotations = patched["metadata"]["annotations"]
    assert annotations[RESOLVED_PROFILE_KEY] == "AIMProfile/ml-team/qwen-qwen3-32b-mi300x-lat-fp8"
    assert patched["spec"]["containers"][0]["resources"]["limits"] == {"amd.com/gpu": "2"}
    # From another namespace the AIMProfile is invisible: the cluster profile.
    _, patched = run(pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"}), "research", lookup)
    annotations = patched["metadata"]["annotations"]
    assert annotations[RESOLVED_PROFILE_KEY] == "AIMClusterProfile/qwen-qwen3-32b-mi300x-lat-fp8"


@pytest.mark.parametrize("namespace", ["ml-team", "dev-team", "research"])
@pytest.mark.parametrize(
    "annotations",
    [{}, {METRIC_KEY: "throughput"}, {PRECISION_KEY: "fp4"}, {NON_PRIMARY_KEY: "true"}],
)
@pytest.mark.parametrize("aim_id", sorted({p.spec.aim_id for p in PROFILES if p.spec.aim_id}))
def test_automatic_selection_gives_what_aim_matcher_select_gives(namespace, annotations, aim_id):
    """One ranking: admission resolves exactly the profile `aim-matcher select` picks."""
    label = encode_aim_id(aim_id)
    assert label is not None
    decision, patched = run(pod({AIM_ID_KEY: label}, dict(annotations)), namespace)
    expected = select(
        PROFILES,
        aim_id,
        namespace=namespace,
        metric=annotations.get(METRIC_KEY),
        precision=annotations.get(PRECISION_KEY),
        include_non_primary=annotations.get(NON_PRIMARY_KEY) == "true",
    )
    if expected.chosen is None:
        assert decision.outcome == OUTCOME_DENIED
        assert expected.reason in decision.message
        return
    assert decision.profile == expected.chosen
    recorded = patched["metadata"]["annotations"]
    assert recorded[RESOLVED_PROFILE_KEY].endswith("/" + expected.chosen.name)
    assert recorded[SELECTION_REASON_KEY] == f"aimId {aim_id}: {expected.reason}"
    assert "\n" not in recorded[SELECTION_REASON_KEY]


def test_selection_ties_are_broken_by_name_whatever_the_listing_order():
    twins = [cluster_obj(n, primary=True) for n in ("qwen-b", "qwen-a", "qwen-c")]
    profiles = [p for p in evaluated(twins) if p.name in ("qwen-b", "qwen-a", "qwen-c")]
    for ordered in (profiles, list(reversed(profiles))):
        lookup = entries(ordered)
        decision, patched = run(pod({AIM_ID_KEY: "qwen--qwen3-32b"}), "research", lookup)
        assert decision.profile is not None
        assert decision.profile.name == "qwen-a"
        assert "best of 3 candidate(s)" in patched["metadata"]["annotations"][SELECTION_REASON_KEY]


def test_a_namespaced_profile_is_selected_over_cluster_ones_in_its_namespace():
    mine = namespaced_obj("qwen-team", "research", primary=True, type="preview")
    lookup = entries(evaluated([mine]))
    decision, _ = run(pod({AIM_ID_KEY: "qwen--qwen3-32b"}), "research", lookup)
    assert decision.profile is not None
    assert (decision.profile.kind, decision.profile.name) == (KIND_PROFILE, "qwen-team")
    decision, _ = run(pod({AIM_ID_KEY: "qwen--qwen3-32b"}), "dev-team", lookup)
    assert decision.profile is not None
    assert decision.profile.kind == KIND_CLUSTER_PROFILE


# --- refusals and warnings ----------------------------------------------------------------------


def test_a_missing_profile_is_refused_naming_both_places_looked():
    decision, _ = run(pod({PROFILE_KEY: "qwen-typo"}))
    assert decision.outcome == OUTCOME_DENIED
    assert "no AIMProfile ml-team/qwen-typo and no AIMClusterProfile qwen-typo" in decision.message
    assert decision.profile is None


def test_an_invalid_profile_is_refused_with_the_field():
    lookup = entries(PROFILES, {(KIND_CLUSTER_PROFILE, "", "broken"): "spec.acceleratorCount: -1"})
    decision, _ = run(pod({PROFILE_KEY: "broken"}), lookup=lookup)
    assert decision.outcome == OUTCOME_DENIED
    assert "AIMClusterProfile broken is invalid: spec.acceleratorCount: -1" in decision.message


def test_not_available_is_refused_with_the_profile_s_own_reason():
    profile = by_name("qwen-qwen3-32b-mi355x-lat-fp4")
    assert profile.status is not None
    assert profile.status.status is Phase.NOT_AVAILABLE
    why = profile.status.conditions[0].message  # type: ignore[index]
    decision, _ = run(pod({PROFILE_KEY: profile.name}))
    assert decision.outcome == OUTCOME_DENIED
    assert decision.message.startswith(f"AIMClusterProfile {profile.name} is NotAvailable: {why}")
    assert "webhookNotAvailable: warn" in decision.message
    assert decision.profile == profile


def test_not_available_with_warn_admits_a_pod_that_waits_for_capacity():
    config = MatcherConfig(webhook_not_available="warn")
    decision, patched = run(pod({PROFILE_KEY: "qwen-qwen3-32b-mi355x-lat-fp4"}), config=config)
    assert decision.outcome == OUTCOME_MUTATED
    assert "is NotAvailable; the pod stays Pending" in decision.warnings[0]
    assert node_terms(patched)[0]["matchExpressions"][0] == exists(MI355X)
    assert patched["metadata"]["annotations"][RESOLVED_STATUS_KEY] == "NotAvailable"


def with_status(profile: Profile, **changes: Any) -> Profile:
    assert profile.status is not None
    return dataclasses.replace(profile, status=profile.status.model_copy(update=changes))


def test_degraded_admits_with_the_last_resolved_fields_and_a_warning():
    name = "qwen-qwen3-32b-mi300x-lat-fp8"
    degraded = with_status(by_name(name), status=Phase.DEGRADED)
    lookup = entries([degraded])
    decision, patched = run(pod({PROFILE_KEY: name}), lookup=lookup)
    assert decision.outcome == OUTCOME_MUTATED
    assert decision.warnings[0].startswith(f"AIMClusterProfile {name} is Degraded; its last")
    assert node_terms(patched) == [{"matchExpressions": PROFILE_TERM}]


def test_a_profile_never_evaluated_is_refused_until_it_is():
    name = "qwen-qwen3-32b-mi300x-lat-fp8"
    pending = dataclasses.replace(by_name(name), status=None)
    decision, _ = run(pod({PROFILE_KEY: name}), lookup=entries([pending]))
    assert decision.outcome == OUTCOME_DENIED
    assert "has not been evaluated yet (Pending): retry in a moment" in decision.message


def test_a_stale_status_is_applied_with_a_warning():
    name = "qwen-qwen3-32b-mi300x-lat-fp8"
    stale = dataclasses.replace(with_status(by_name(name), observed_generation=1), generation=2)
    decision, patched = run(pod({PROFILE_KEY: name}), lookup=entries([stale]))
    assert decision.outcome == OUTCOME_MUTATED
    assert "status is for generation 1, the spec is at 2" in decision.warnings[0]
    assert patched["metadata"]["annotations"][RESOLVED_GENERATION_KEY] == "1"


def test_no_selectable_profile_is_refused_with_the_reasons():
    decision, _ = run(pod({AIM_ID_KEY: "qwen--qwen3-32b"}, {PRECISION_KEY: "int4"}))
    assert decision.outcome == OUTCOME_DENIED
    assert "no profile can be selected for aimId qwen/qwen3-32b (precision int4)" in (
        decision.message
    )
    assert "precision is fp8, wanted int4" in decision.message
    decision, _ = run(pod({AIM_ID_KEY: "nobody--nothing"}))
    assert "no profile has aimId nobody/nothing" in decision.message


def test_warnings_are_one_short_line_each():
    name = "qwen-qwen3-32b-mi300x-lat-fp8"
    long_reason = "word " * 200
    profile = by_name(name)
    assert profile.status is not None
    conditions = [
        c.model_copy(update={"message": long_reason}) for c in profile.status.conditions or []
    ]
    degraded = with_status(profile, status=Phase.DEGRADED, conditions=conditions)
    decision, _ = run(pod({PROFILE_KEY: name}), lookup=entries([degraded]))
    assert all(len(w) <= 256 and "\n" not in w for w in decision.warnings)
    assert decision.warnings[0].endswith("...")


# --- settings (the matcher's ConfigMap) ---------------------------------------------------------


def test_webhook_settings_are_read_from_the_configmap_and_bad_ones_name_the_key():
    config = MatcherConfig.from_configmap_data(
        {"webhookNotAvailable": "warn", "webhookNamespaces": "ml-team, prod-inference"}
    )
    assert config.webhook_not_available == "warn"
    assert config.webhook_namespaces == ("ml-team", "prod-inference")
    assert config.webhook_mutates("ml-team")
    assert not config.webhook_mutates("default")
    assert MatcherConfig.from_configmap_data({}).webhook_mutates("default")
    for data, message in (
        ({"webhookNotAvailable": "wait"}, "data.webhookNotAvailable: expected one of deny, warn"),
        ({"webhookNamespaces": "ML_Team"}, "data.webhookNamespaces: 'ML_Team' is not a namespace"),
        ({"webhookNamespaces": "a,a"}, "data.webhookNamespaces: a namespace is listed twice"),
    ):
        with pytest.raises(ConfigError, match=message):
            MatcherConfig.from_configmap_data(data)
