"""The detector's ValidatingAdmissionPolicy, evaluated as the API server would.

The policy is taken from the rendered install bundle (``kubectl kustomize daemonset/``), not
copied here, and evaluated with a CEL interpreter following the API server's rules: the
request must match ``matchConstraints`` and every ``matchCondition`` for the policy to apply;
``variables`` are visible as ``variables.<name>``; every validation must evaluate to true, and
with ``failurePolicy: Fail`` an evaluation error denies too.

The Node updates are built the way the detector builds them (``detector.reconcile.node_patch``,
a JSON merge patch) and applied to the stored Node, like the API server does before admission.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import celpy
import pytest
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from detector.labels import LABEL_PREFIX, OWNED_LABELS_ANNOTATION, accelerator_label_key
from detector.reconcile import node_patch
from scripts.validate_manifests import ROOT, RenderError, render

DETECTOR_USER = "system:serviceaccount:aim-system:aim-detector"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
MI300X = accelerator_label_key("MI300X")
ZEN4 = accelerator_label_key("EPYC_ZEN4")


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    try:
        objects = render(ROOT / "daemonset")
    except RenderError as exc:
        pytest.fail(str(exc))
    policies = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"]
    assert len(policies) == 1
    bindings = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert [b["spec"]["policyName"] for b in bindings] == [policies[0]["metadata"]["name"]]
    assert bindings[0]["spec"]["validationActions"] == ["Deny"]
    return policies[0]


# --- A small ValidatingAdmissionPolicy evaluator -----------------------------------------


@dataclass(frozen=True)
class Verdict:
    applies: bool
    allowed: bool
    message: str = ""


def _cel(value: Any) -> Any:
    return json_to_cel(value)


def _evaluate(expression: str, activation: dict[str, Any]) -> Any:
    env = celpy.Environment()
    program = env.program(env.compile(expression))
    result = program.evaluate(activation)
    if isinstance(result, CELEvalError):
        raise result
    return result


def _rule_matches(rule: dict[str, Any], request: dict[str, Any]) -> bool:
    resource = request["resource"]["resource"]
    sub = request.get("subResource", "")
    full = f"{resource}/{sub}" if sub else resource
    resources = rule.get("resources", [])
    resource_ok = any(
        r in {"*", full} or (r.endswith("/*") and sub and r[:-2] == resource) for r in resources
    )
    return (
        (request["operation"] in rule.get("operations", []) or "*" in rule.get("operations", []))
        and (request["resource"]["group"] in rule.get("apiGroups", []) or "*" in rule["apiGroups"])
        and resource_ok
    )


def admit(policy: dict[str, Any], request: dict[str, Any], obj: Any, old: Any) -> Verdict:
    spec = policy["spec"]
    rules = spec["matchConstraints"]["resourceRules"]
    if not any(_rule_matches(rule, request) for rule in rules):
        return Verdict(applies=False, allowed=True)
    activation: dict[str, Any] = {
        "object": _cel(obj),
        "oldObject": _cel(old),
        "request": _cel(request),
        "params": _cel(None),
    }
    fail_closed = spec.get("failurePolicy", "Fail") == "Fail"
    for condition in spec.get("matchConditions", []):
        try:
            if not _evaluate(condition["expression"], activation):
                return Verdict(applies=False, allowed=True)
        except CELEvalError as exc:
            return Verdict(True, not fail_closed, f"matchCondition error: {exc}")
    variables: dict[str, Any] = {}
    for variable in spec.get("variables", []):
        variables[variable["name"]] = _evaluate(
            variable["expression"], {**activation, "variables": _cel(variables)}
        )
    activation["variables"] = _cel(variables)
    for validation in spec["validations"]:
        try:
            ok = _evaluate(validation["expression"], activation)
        except CELEvalError as exc:
            if fail_closed:
                return Verdict(True, False, f"evaluation error: {exc}")
            continue
        if not ok:
            return Verdict(True, False, validation.get("message", ""))
    return Verdict(True, True)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def request_for(
    node: str,
    *,
    user: str = DETECTOR_USER,
    bound_node: str | None = None,
    operation: str = "UPDATE",
    sub_resource: str = "",
    extra: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """An AdmissionRequest as the API server hands it to CEL (empty fields omitted)."""
    user_info: dict[str, Any] = {
        "username": user,
        "uid": "4f1c",
        "groups": [
            "system:serviceaccounts",
            "system:serviceaccounts:aim-system",
            "system:authenticated",
        ],
    }
    if extra is None and bound_node is not None:
        extra = {
            NODE_NAME_KEY: [bound_node],
            "authentication.kubernetes.io/node-uid": ["0b4c"],
            "authentication.kubernetes.io/pod-name": ["aim-detector-x7k2p"],
        }
    if extra:
        user_info["extra"] = extra
    request: dict[str, Any] = {
        "uid": "705ab4f5",
        "kind": {"group": "", "version": "v1", "kind": "Node"},
        "resource": {"group": "", "version": "v1", "resource": "nodes"},
        "name": node,
        "operation": operation,
        "userInfo": user_info,
        "dryRun": False,
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return request


def gpu_node(name: str = "gpu-1") -> dict[str, Any]:
    """A Node as a real GPU worker looks: foreign labels, annotations, taints, status."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": "0b4c",
            "resourceVersion": "8121",
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/gpu": "",
                "amd.com/gpu.product-name": "AMD_Instinct_MI300X",
                MI300X: "8",
                ZEN4: "96",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                OWNED_LABELS_ANNOTATION: f"{ZEN4},{MI300X}",
            },
        },
        "spec": {
            "podCIDR": "10.244.3.0/24",
            "taints": [{"key": "amd.com/gpu", "value": "present", "effect": "NoSchedule"}],
        },
        "status": {
            "allocatable": {"cpu": "191", "memory": "2113500Mi", "amd.com/gpu": "8"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def detector_update(node: dict[str, Any], desired: dict[str, str]) -> dict[str, Any]:
    """The Node after the detector's own merge patch for ``desired`` labels."""
    meta = node["metadata"]
    patch = node_patch(meta.get("labels"), meta.get("annotations"), desired)
    assert patch is not None, "the test needs a change"
    updated: dict[str, Any] = merge_patch(node, patch)
    return updated


# --- The policy's strings are the detector's ---------------------------------------------


def test_policy_strings_are_the_detector_label_format(policy):
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert _evaluate(variables["labelPrefix"], {}) == LABEL_PREFIX
    assert _evaluate(variables["ownedAnnotation"], {}) == OWNED_LABELS_ANNOTATION
    assert _evaluate(variables["nodeNameKey"], {}) == NODE_NAME_KEY
    # The messages people read name the same strings.
    messages = " ".join(v["message"] for v in policy["spec"]["validations"])
    assert LABEL_PREFIX in messages
    assert OWNED_LABELS_ANNOTATION in messages


def test_policy_matches_the_detector_service_account_of_the_bundle(policy):
    objects = render(ROOT / "daemonset")
    daemonset = next(o for o in objects if o["kind"] == "DaemonSet")
    account = daemonset["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = daemonset["metadata"]["namespace"]
    user = f"system:serviceaccount:{namespace}:{account}"
    assert user == DETECTOR_USER
    [condition] = policy["spec"]["matchConditions"]
    assert _evaluate(condition["expression"], {"request": _cel(request_for("n", user=user))})
    assert policy["spec"]["failurePolicy"] == "Fail"


# --- Allowed -----------------------------------------------------------------------------


def test_detector_adds_a_label_on_its_own_node(policy):
    node = gpu_node()
    new = detector_update(node, {MI300X: "8", ZEN4: "96", LABEL_PREFIX + "MI325X": "2"})
    verdict = admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node)
    assert verdict == Verdict(applies=True, allowed=True)


def test_detector_changes_and_removes_its_labels(policy):
    node = gpu_node()
    new = detector_update(node, {MI300X: "4"})  # count changed, EPYC label gone
    assert ZEN4 not in new["metadata"]["labels"]
    assert new["metadata"]["annotations"][OWNED_LABELS_ANNOTATION] == MI300X
    assert admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node).allowed


def test_detector_cleanup_removes_everything_it_owns(policy):
    node = gpu_node()
    new = detector_update(node, {})
    assert OWNED_LABELS_ANNOTATION not in new["metadata"]["annotations"]
    assert admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node).allowed


def test_first_labels_on_a_node_without_labels_or_annotations(policy):
    node = gpu_node()
    del node["metadata"]["labels"], node["metadata"]["annotations"]
    new = detector_update(node, {ZEN4: "96"})
    assert admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node).allowed


def test_policy_ignores_everyone_else(policy):
    node = gpu_node()
    new = copy.deepcopy(node)
    new["spec"]["unschedulable"] = True
    new["metadata"]["labels"]["team"] = "ml"
    for user in (
        "kubernetes-admin",
        "system:node:gpu-1",
        "system:serviceaccount:aim-system:aim-matcher",
    ):
        verdict = admit(policy, request_for("gpu-1", user=user), new, node)
        assert verdict.applies is False
        assert verdict.allowed


# --- Denied ------------------------------------------------------------------------------


def test_detector_cannot_label_another_node(policy):
    node = gpu_node("gpu-2")
    new = detector_update(node, {MI300X: "8", ZEN4: "96", LABEL_PREFIX + "MI355X": "8"})
    verdict = admit(policy, request_for("gpu-2", bound_node="gpu-1"), new, node)
    assert not verdict.allowed
    assert "bound to" in verdict.message


@pytest.mark.parametrize(
    "extra",
    [
        {},  # a legacy token: no user extra at all
        {"authentication.kubernetes.io/pod-name": ["aim-detector-x7k2p"]},
        {NODE_NAME_KEY: []},
        {NODE_NAME_KEY: ["gpu-1", "gpu-2"]},
    ],
    ids=["no-extra", "no-node-name", "empty-node-name", "two-node-names"],
)
def test_detector_token_without_a_single_node_name_is_denied(policy, extra):
    node = gpu_node()
    new = detector_update(node, {MI300X: "8", ZEN4: "96", LABEL_PREFIX + "MI325X": "2"})
    request = request_for("gpu-1", extra=extra)
    if not extra:
        assert "extra" not in request["userInfo"]
    verdict = admit(policy, request, new, node)
    assert verdict.applies
    assert not verdict.allowed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda n: n["metadata"]["labels"].update(team="ml"), "only change labels"),
        (lambda n: n["metadata"]["labels"].pop("kubernetes.io/os"), "only change labels"),
        (
            lambda n: n["metadata"]["labels"].update({"amd.com/gpu.product-name": "MI355X"}),
            "only change labels",
        ),
        # Near misses of the prefix.
        (
            lambda n: n["metadata"]["labels"].update(
                {"feature.node.kubernetes.io/aim-acceleratorMI300X": "8"}
            ),
            "only change labels",
        ),
        (
            lambda n: n["metadata"]["labels"].update({"feature.node.kubernetes.io/pci-1002": "1"}),
            "only change labels",
        ),
        (lambda n: n["spec"].update(unschedulable=True), "spec"),
        (lambda n: n["spec"].pop("taints"), "spec"),
        (
            lambda n: n["spec"]["taints"].append({"key": "evict", "effect": "NoExecute"}),
            "spec",
        ),
        (lambda n: n["spec"].update(podCIDR="10.0.0.0/8"), "spec"),
        (
            lambda n: n["metadata"]["annotations"].update({"node.alpha.kubernetes.io/ttl": "5"}),
            "annotation",
        ),
        (lambda n: n["metadata"]["annotations"].update(owner="me"), "annotation"),
        (
            lambda n: n["metadata"]["annotations"].pop(
                "volumes.kubernetes.io/controller-managed-attach-detach"
            ),
            "annotation",
        ),
        (lambda n: n["metadata"].update(finalizers=["example.com/block"]), "finalizers"),
        (
            lambda n: n["metadata"].update(
                ownerReferences=[
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "d1e5"}
                ]
            ),
            "ownerReferences",
        ),
    ],
    ids=[
        "add-foreign-label",
        "remove-foreign-label",
        "change-foreign-label",
        "prefix-without-dot",
        "other-nfd-label",
        "cordon",
        "remove-taints",
        "add-taint",
        "pod-cidr",
        "change-other-annotation",
        "add-other-annotation",
        "remove-other-annotation",
        "add-finalizer",
        "add-owner-reference",
    ],
)
def test_detector_cannot_touch_anything_else(policy, change, message):
    node = gpu_node()
    # Alongside a legitimate change, so that only the foreign change can be the reason.
    new = detector_update(node, {MI300X: "8", ZEN4: "96", LABEL_PREFIX + "MI325X": "2"})
    change(new)
    verdict = admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node)
    assert verdict.applies
    assert not verdict.allowed
    assert message in verdict.message


def test_only_foreign_change_is_denied_too(policy):
    node = gpu_node()
    new = copy.deepcopy(node)
    new["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = ""
    assert not admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node).allowed


@pytest.mark.parametrize(
    ("operation", "sub_resource"),
    [("CREATE", ""), ("DELETE", ""), ("UPDATE", "status")],
)
def test_detector_cannot_create_delete_or_write_status(policy, operation, sub_resource):
    node = gpu_node()
    obj = None if operation == "DELETE" else detector_update(node, {MI300X: "8"})
    old = None if operation == "CREATE" else node
    request = request_for(
        "gpu-1", bound_node="gpu-1", operation=operation, sub_resource=sub_resource
    )
    verdict = admit(policy, request, obj, old)
    assert verdict.applies
    assert not verdict.allowed
    assert "only update Node objects" in verdict.message
