"""The profile API models: every spec example validates; invalid variants name the field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from matcher.api.models import (
    AIMClusterProfileSpec,
    AIMProfileSpec,
    Condition,
    ConditionStatus,
    Phase,
    ProfileError,
    ProfileStatus,
    parse_profile,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_FILES = sorted((ROOT / "examples" / "profiles").glob("*.yaml")) + sorted(
    (ROOT / "examples" / "spec").glob("*.yaml")
)


def example_docs():
    for path in EXAMPLE_FILES:
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                yield pytest.param(doc, id=f"{path.stem}[{index}]")


def spec_example():
    return yaml.safe_load(
        (ROOT / "examples/profiles/qwen-qwen3-32b-mi300x-lat-fp8.yaml").read_text()
    )


def test_every_spec_example_is_a_fixture():
    names = {
        parse_profile(doc).name
        for path in EXAMPLE_FILES
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    assert {
        "qwen-qwen3-32b-mi300x-lat-fp8",
        "my-finetuned-qwen-mi300x-lat-fp8",
        "small-model-cpu",
        "qwen-qwen3-32b-mi300x-cpx-nps4-seed",
    } <= names


@pytest.mark.parametrize("doc", list(example_docs()))
def test_examples_validate(doc):
    profile = parse_profile(doc)
    assert profile.name == doc["metadata"]["name"]
    # every field survives a round trip through the model
    assert profile.spec.model_dump(mode="json", by_alias=True, exclude_unset=True) == doc["spec"]
    assert profile.spec.aim_id == doc["spec"]["aimId"]
    if doc["kind"] == "AIMProfile":
        assert profile.namespace == doc["metadata"]["namespace"]
        assert isinstance(profile.spec, AIMProfileSpec)
    else:
        assert profile.namespace is None
        assert isinstance(profile.spec, AIMClusterProfileSpec)


def test_spec_fields_keep_their_values_and_types():
    profile = parse_profile(spec_example())
    spec = profile.spec
    assert spec.accelerator_model == "MI300X"
    assert spec.accelerator_count == 1
    assert spec.primary is True
    assert spec.resources is not None
    assert spec.resources.requests == {"cpu": "4", "memory": "32Gi"}
    assert spec.engine_args == {
        "distributed_executor_backend": "mp",
        "gpu-memory-utilization": "0.95",
    }
    assert spec.model_sources is not None
    assert spec.model_sources[0].source_uri == "hf://qwen/qwen3-32b-fp8"


def test_engine_args_keep_typed_values():
    doc = spec_example()
    doc["spec"]["engineArgs"] = {
        "tp": 8,
        "util": 0.9,
        "eager": True,
        "name": "x",
        "nested": {"a": [1]},
    }
    spec = parse_profile(doc).spec
    assert spec.engine_args == {
        "tp": 8,
        "util": 0.9,
        "eager": True,
        "name": "x",
        "nested": {"a": [1]},
    }
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["engineArgs"]["util"] == 0.9


def test_a_cpu_profile_cannot_ask_for_partitions():
    doc = yaml.safe_load((ROOT / "examples/profiles/phi-2-epyc-zen5-lat-fp32.yaml").read_text())
    doc["spec"]["acceleratorPartitioningMode"] = "unpartitioned"
    assert parse_profile(doc).spec.accelerator_partitioning_mode == "unpartitioned"
    doc["spec"]["acceleratorPartitioningMode"] = "CPX-NPS4"
    with pytest.raises(ProfileError) as err:
        parse_profile(doc)
    assert str(err.value) == (
        "spec.acceleratorPartitioningMode: acceleratorPartitioningMode must be 'unpartitioned' "
        "(or unset) when acceleratorType is cpu, not 'CPX-NPS4'"
    )


def test_limits_equal_to_requests_in_other_units_are_fine():
    doc = spec_example()
    doc["spec"]["resources"] = {
        "requests": {"memory": "1Gi", "cpu": "500m"},
        "limits": {"memory": "1024Mi", "cpu": "0.5", "amd.com/gpu": 1},
    }
    assert parse_profile(doc).spec.resources is not None


def test_aim_id_may_be_missing_or_empty_as_in_aim_engine():
    """AIM Engine's base profiles carry no aimId; they are evaluated, never selected."""
    for value in (KeyError, ""):
        doc = _mutate(("spec", "aimId"), value)
        assert parse_profile(doc).spec.aim_id in (None, "")


def test_engine_args_nested_absurdly_deep_are_refused_not_a_crash():
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ProfileError) as err:
        parse_profile(_mutate(("spec", "engineArgs"), deep))
    assert str(err.value).startswith("spec.engineArgs: ")
    assert "nested more than 64 levels deep" in str(err.value)


def test_engine_args_may_be_any_json_value():
    for value in ([1, "two", {"three": 3.0}], "--tp 8", 8, True):
        doc = _mutate(("spec", "engineArgs"), value)
        assert parse_profile(doc).spec.engine_args == value


def test_primary_defaults_to_false():
    doc = spec_example()
    del doc["spec"]["primary"]
    assert parse_profile(doc).spec.primary is False


def test_namespaced_profile_without_namespace_lands_in_default():
    doc = yaml.safe_load((ROOT / "examples/profiles/small-model-cpu.yaml").read_text())
    del doc["metadata"]["namespace"]
    assert parse_profile(doc).namespace == "default"


def test_caching_is_accepted_on_aimprofile():
    doc = yaml.safe_load((ROOT / "examples/profiles/small-model-cpu.yaml").read_text())
    doc["spec"]["caching"] = {"enabled": True, "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}]}
    spec = parse_profile(doc).spec
    assert isinstance(spec, AIMProfileSpec)
    assert spec.caching is not None
    assert spec.caching.enabled is True


def _mutate(path, value):
    doc = spec_example()
    target = doc
    *parents, leaf = path
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (("spec", "precision"), "auto", "spec.precision", "'fp4'"),
        (("spec", "acceleratorCount"), -1, "spec.acceleratorCount", "greater than or equal to 0"),
        (("spec", "acceleratorCount"), "2", "spec.acceleratorCount", "valid integer"),
        (("spec", "acceleratorModel"), "MI300X!", "spec.acceleratorModel", "pattern"),
        (("spec", "acceleratorModel"), "-MI300X", "spec.acceleratorModel", "pattern"),
        (("spec", "acceleratorModel"), "M" * 48, "spec.acceleratorModel", "at most 47"),
        (("spec", "acceleratorModel"), "M" * 48, "spec.acceleratorModel", "63-character name"),
        (
            ("spec", "acceleratorPartitioningMode"),
            "C" * 28,
            "spec.acceleratorPartitioningMode",
            "at most 27",
        ),
        (
            ("spec", "acceleratorPartitioningMode"),
            "cpx nps4",
            "spec.acceleratorPartitioningMode",
            "pattern",
        ),
        (("spec", "acceleratorVendor"), "intel", "spec.acceleratorVendor", "'amd' or 'nvidia'"),
        (("spec", "variant"), "USP4", "spec.variant", "pattern"),
        (("spec", "features"), ["adapters", "adapters"], "spec.features", "duplicate entry"),
        (
            ("spec", "containerEnv"),
            [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
            "spec.containerEnv",
            "duplicate name 'A'",
        ),
        (("spec", "engineArgs"), {"x": float("nan")}, "spec.engineArgs", "not a JSON number"),
        (("spec", "caching"), {"enabled": True}, "spec.caching", "only namespaced AIMProfile"),
        (("spec", "image"), KeyError, "spec.image", "Field required"),
        (("spec", "image"), "", "spec.image", "at least 1"),
        (("spec", "metric"), "fast", "spec.metric", "'latency' or 'throughput'"),
        (("spec", "type"), "best", "spec.type", "'optimized'"),
        (("spec", "acceleratorType"), "npu", "spec.acceleratorType", "'gpu' or 'cpu'"),
        (("spec", "primary"), "yes", "spec.primary", "valid boolean"),
        (
            ("spec", "resources"),
            {"requests": {"cpu": "4 cores"}},
            "spec.resources.requests.cpu",
            "'4 cores'",
        ),
        (("spec", "resources"), {"requests": {"cpu": 0.5}}, "spec.resources.requests.cpu", "500m"),
        # issue 13: negative quantities, and limits below requests
        (
            ("spec", "resources"),
            {"requests": {"memory": "-1"}},
            "spec.resources.requests.memory",
            "negative",
        ),
        (
            ("spec", "resources"),
            {"limits": {"amd.com/gpu": -8}},
            "spec.resources.limits.amd.com/gpu",
            "negative",
        ),
        (
            ("spec", "resources"),
            {"requests": {"memory": "32Gi"}, "limits": {"memory": "16Gi"}},
            "spec.resources.limits",
            "memory: limit 16Gi is below its request 32Gi",
        ),
        (
            ("spec", "modelSources"),
            [{"modelId": "a/b", "sourceUri": "hf://a/b", "size": "-10Gi"}],
            "spec.modelSources[0].size",
            "negative",
        ),
        (
            ("spec", "modelSources"),
            [{"modelId": "x"}],
            "spec.modelSources[0].sourceUri",
            "Field required",
        ),
        (("spec", "engineEnv"), {"A": 1}, "spec.engineEnv.A", "valid string"),
        (("spec", "acceleratorModle"), "MI300X", "spec.acceleratorModle", "unknown field"),
    ],
)
def test_invalid_variants_name_the_field(path, value, field, words):
    with pytest.raises(ProfileError) as err:
        parse_profile(_mutate(path, value))
    message = str(err.value)
    assert message.startswith(f"{field}: "), message
    assert words in message


def test_precision_auto_message_lists_the_choices():
    with pytest.raises(ProfileError) as err:
        parse_profile(_mutate(("spec", "precision"), "auto"))
    assert str(err.value) == (
        "spec.precision: Input should be 'fp4', 'fp8', 'fp16', 'fp32', 'fp64', 'bf16', 'int4' "
        "or 'int8'"
    )


def test_several_problems_are_all_reported():
    doc = spec_example()
    doc["spec"]["precision"] = "auto"
    doc["spec"]["acceleratorCount"] = -2
    with pytest.raises(ProfileError) as err:
        parse_profile(doc)
    paths = [path for path, _ in err.value.problems]
    assert paths == ["spec.precision", "spec.acceleratorCount"]


@pytest.mark.parametrize(
    ("mutation", "field"),
    [
        (lambda d: d.update(apiVersion="aim.eai.amd.com/v1alpha1"), "apiVersion"),
        (lambda d: d.update(kind="AIMServiceTemplate"), "kind"),
        (lambda d: d["metadata"].pop("name"), "metadata.name"),
        (lambda d: d.pop("spec"), "spec"),
        (lambda d: d["metadata"].update(generation="3"), "metadata.generation"),
    ],
)
def test_envelope_errors_name_the_field(mutation, field):
    doc = spec_example()
    mutation(doc)
    with pytest.raises(ProfileError) as err:
        parse_profile(doc)
    assert str(err.value).startswith(f"{field}: ")


def test_generation_and_status_are_read():
    doc = spec_example()
    doc["metadata"].update(generation=4, resourceVersion="77", uid="u-1")
    doc["status"] = {
        "status": "Ready",
        "observedGeneration": 3,
        "matchingNodes": 2,
        "conditions": [
            {
                "type": "HardwareAvailable",
                "status": "True",
                "reason": "HardwareAvailable",
                "message": "ok",
                "lastTransitionTime": "2026-11-27T07:00:00Z",
            }
        ],
        "someFutureField": 1,
    }
    profile = parse_profile(doc)
    assert (profile.generation, profile.resource_version, profile.uid) == (4, "77", "u-1")
    assert profile.status is not None
    assert profile.status.status is Phase.READY
    condition = profile.status.condition("HardwareAvailable")
    assert condition is not None
    assert condition.last_transition_time == datetime(2026, 11, 27, 7, tzinfo=UTC)


def test_status_round_trips_through_its_dict():
    status = ProfileStatus(
        status=Phase.NOT_AVAILABLE,
        observed_generation=2,
        matching_nodes=0,
        hardware_summary="1 x MI300X",
        conditions=[
            Condition(
                type="HardwareAvailable",
                status=ConditionStatus.FALSE,
                reason="HardwareNotAvailable",
                message="none",
                last_transition_time=datetime(2026, 11, 27, 7, 1, 2, 345678, tzinfo=UTC),
                observed_generation=2,
            )
        ],
    )
    data = status.to_dict()
    assert data["conditions"][0]["lastTransitionTime"] == "2026-11-27T07:01:02Z"
    assert "version" not in data  # None values are left out
    assert data["status"] == "NotAvailable"
    assert ProfileStatus.from_dict(copy.deepcopy(data)) == status
    assert ProfileStatus.from_dict(data).to_dict() == data


def test_status_defaults_to_pending():
    assert ProfileStatus().status is Phase.PENDING
    assert ProfileStatus.from_dict({}).to_dict() == {"status": "Pending"}


def test_an_unreadable_status_is_dropped_not_fatal():
    doc = spec_example()
    doc["status"] = {"status": "Exploded", "conditions": [{"type": "HardwareAvailable"}]}
    profile = parse_profile(doc)
    assert profile.status is None
    assert profile.spec.aim_id == "qwen/qwen3-32b"
