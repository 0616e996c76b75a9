"""The node fence: the detector's ValidatingAdmissionPolicy, evaluated as the API server would,
in every install variant, and on a real kube-apiserver.

The policy is taken from the rendered install bundle (``kubectl kustomize daemonset/``), not
copied here, and evaluated with a CEL interpreter following the API server's rules: the
request must match ``matchConstraints``; the binding's parameters (the labelled detector
ServiceAccounts) are each evaluated in turn, and for each the request must match every
``matchCondition`` for the policy to apply; ``variables`` are visible as ``variables.<name>``;
every validation must evaluate to true, and with ``failurePolicy: Fail`` an evaluation error
denies too.

The Node updates are built the way the detector builds them (``detector.reconcile.node_patch``,
a JSON merge patch) and applied to the stored Node, like the API server does before admission.

The variants (the shipped components, a ``nameSuffix`` copy of the agent for a mixed cluster,
the detector moved to another namespace, a ``namePrefix`` over everything) are rendered with
``kubectl kustomize`` and each detector DaemonSet's service account is checked to be fenced, by
this evaluator and, on the suite's kube-apiserver, with a real token bound to a pod on a Node.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from detector.labels import (
    LABEL_PREFIX,
    MAX_NAME_LENGTH,
    NAME_STEM,
    OWNED_LABELS_ANNOTATION,
    PREFIX_DOMAIN,
    accelerator_label_key,
)
from detector.reconcile import annotation_value, node_patch
from scripts.validate_manifests import (
    ROOT,
    VARIANTS,
    RenderError,
    check_objects,
    fence_problems,
    node_writers,
    render,
)
from tests.fence_support import (
    OWN_LABEL,
    add_node,
    detector_token,
    dry_run_label,
    install,
    validation_failures,
    wait_for_policy,
)

DETECTOR_USER = "system:serviceaccount:aim-detector:aim-detector"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
#: The policy's limits on the detector's own labels (daemonset/detector/node-fence-policy.yaml).
MAX_OWNED_LABELS = 64
MAX_ANNOTATION_LENGTH = 5823
MI300X = accelerator_label_key("MI300X")
ZEN4 = accelerator_label_key("EPYC_ZEN4")


@dataclass(frozen=True)
class Fence:
    """A policy, its binding, and the parameters the binding selects in a rendered bundle."""

    policy: dict[str, Any]
    binding: dict[str, Any]
    params: tuple[dict[str, Any], ...]


def fence_of(objects: list[dict[str, Any]]) -> Fence:
    policies = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"]
    assert len(policies) == 1
    bindings = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert [b["spec"]["policyName"] for b in bindings] == [policies[0]["metadata"]["name"]]
    return Fence(policies[0], bindings[0], tuple(selected_params(bindings[0], objects)))


def selected_params(binding: dict[str, Any], objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ServiceAccounts a binding's paramRef selects (namespace + label selector)."""
    ref = binding["spec"]["paramRef"]
    wanted = ref["selector"].get("matchLabels", {})
    return [
        o
        for o in objects
        if o["kind"] == "ServiceAccount"
        and o["metadata"].get("namespace") == ref["namespace"]
        and all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
    ]


@pytest.fixture(scope="module")
def bundle_objects() -> list[dict[str, Any]]:
    try:
        return render(ROOT / "daemonset")
    except RenderError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def policy(bundle_objects) -> Fence:
    fence = fence_of(bundle_objects)
    assert fence.binding["spec"]["validationActions"] == ["Deny", "Audit"]
    assert fence.binding["spec"]["paramRef"]["parameterNotFoundAction"] == "Allow"
    assert [p["metadata"]["name"] for p in fence.params] == ["aim-detector"]
    return fence


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


def admit(fence: Fence, request: dict[str, Any], obj: Any, old: Any) -> Verdict:
    """The binding's verdict: the policy evaluated once per parameter, results ANDed (and no
    parameter with parameterNotFoundAction Allow: the policy does not apply)."""
    verdicts = [_admit_with(fence.policy, param, request, obj, old) for param in fence.params]
    for verdict in verdicts:
        if not verdict.allowed:
            return verdict
    return Verdict(applies=any(v.applies for v in verdicts), allowed=True)


def _admit_with(
    policy: dict[str, Any], param: Any, request: dict[str, Any], obj: Any, old: Any
) -> Verdict:
    spec = policy["spec"]
    rules = spec["matchConstraints"]["resourceRules"]
    if not any(_rule_matches(rule, request) for rule in rules):
        return Verdict(applies=False, allowed=True)
    activation: dict[str, Any] = {
        "object": _cel(obj),
        "oldObject": _cel(old),
        "request": _cel(request),
        "params": _cel(param),
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
            "system:serviceaccounts:aim-detector",
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


def detector_update(
    node: dict[str, Any], desired: dict[str, str], *, mark: bool = True
) -> dict[str, Any]:
    """The Node after the detector's own merge patch for ``desired`` labels."""
    meta = node["metadata"]
    patch = node_patch(meta.get("labels"), meta.get("annotations"), desired, mark=mark)
    assert patch is not None, "the test needs a change"
    updated: dict[str, Any] = merge_patch(node, patch)
    return updated


# --- The policy's strings are the detector's ---------------------------------------------


def test_policy_strings_are_the_detector_label_format(policy):
    spec = policy.policy["spec"]
    variables = {v["name"]: v["expression"] for v in spec["variables"]}
    assert _evaluate(variables["labelPrefix"], {}) == LABEL_PREFIX
    assert _evaluate(variables["ownedAnnotation"], {}) == OWNED_LABELS_ANNOTATION
    assert _evaluate(variables["nodeNameKey"], {}) == NODE_NAME_KEY
    # The messages people read name the same strings and limits.
    messages = " ".join(v["message"] for v in spec["validations"])
    assert LABEL_PREFIX in messages
    assert OWNED_LABELS_ANNOTATION in messages
    assert f"at most {MAX_OWNED_LABELS} labels" in messages
    assert f"at most {MAX_ANNOTATION_LENGTH} characters" in messages


def test_policy_limits_fit_the_longest_legal_ownership_annotation(policy):
    """The annotation cap is exactly what 64 of the longest legal keys need, so a detector
    within the label limit is never refused for its annotation."""
    variables = {v["name"]: v["expression"] for v in policy.policy["spec"]["variables"]}
    assert _evaluate(variables["maxOwnedLabels"], {}) == MAX_OWNED_LABELS
    assert _evaluate(variables["maxOwnedAnnotationLength"], {}) == MAX_ANNOTATION_LENGTH
    longest = [PREFIX_DOMAIN + "/" + f"{NAME_STEM}{i:02d}".ljust(MAX_NAME_LENGTH, "X")
               for i in range(MAX_OWNED_LABELS)]  # fmt: skip
    assert all(len(k.split("/", 1)[1]) == MAX_NAME_LENGTH for k in longest)
    assert len(annotation_value(longest)) == MAX_ANNOTATION_LENGTH


def test_policy_matches_the_detector_service_account_of_the_bundle(policy, bundle_objects):
    daemonset = next(o for o in bundle_objects if o["kind"] == "DaemonSet")
    account = daemonset["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = daemonset["metadata"]["namespace"]
    user = f"system:serviceaccount:{namespace}:{account}"
    assert user == DETECTOR_USER
    [condition] = policy.policy["spec"]["matchConditions"]
    [param] = policy.params
    activation = {"request": _cel(request_for("n", user=user)), "params": _cel(param)}
    assert _evaluate(condition["expression"], activation)
    assert policy.policy["spec"]["failurePolicy"] == "Fail"
    assert fence_problems(bundle_objects) == []


def test_policy_applies_to_nobody_without_a_fenced_account(policy):
    """No labelled account (the namespace is gone): parameterNotFoundAction Allow, so nobody's
    Node writes are refused; "Deny" would refuse every Node write in the cluster."""
    unfenced = Fence(policy.policy, policy.binding, ())
    node = gpu_node()
    new = copy.deepcopy(node)
    new["spec"]["unschedulable"] = True
    for user in (DETECTOR_USER, "system:node:gpu-1"):
        verdict = admit(unfenced, request_for("gpu-1", user=user, bound_node="gpu-1"), new, node)
        assert verdict == Verdict(applies=False, allowed=True)


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
    new = detector_update(node, {}, mark=False)
    assert OWNED_LABELS_ANNOTATION not in new["metadata"]["annotations"]
    assert admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node).allowed


def test_detector_that_finds_nothing_leaves_an_empty_annotation(policy):
    """Its mark that it ran: the labels go, the annotation stays empty; on a fresh Node it adds
    the empty annotation alone. The fence admits both."""
    node = gpu_node()
    new = detector_update(node, {})
    assert new["metadata"]["annotations"][OWNED_LABELS_ANNOTATION] == ""
    assert not any(k.startswith(LABEL_PREFIX) for k in new["metadata"]["labels"])
    assert admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node).allowed
    fresh = gpu_node()
    del fresh["metadata"]["labels"][MI300X], fresh["metadata"]["labels"][ZEN4]
    del fresh["metadata"]["annotations"][OWNED_LABELS_ANNOTATION]
    new = detector_update(fresh, {})
    assert new["metadata"]["annotations"][OWNED_LABELS_ANNOTATION] == ""
    assert admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, fresh).allowed


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


def test_a_dry_run_is_judged_like_a_real_write(policy):
    """The detector proves the fence with dry runs (detector/fence.py): the policy must not
    treat them differently."""
    node = gpu_node()
    new = copy.deepcopy(node)
    new["metadata"]["labels"]["aim.eai.amd.com/node-fence-probe"] = "1"
    request = request_for("gpu-1", bound_node="gpu-1")
    request["dryRun"] = True
    verdict = admit(policy, request, new, node)
    assert not verdict.allowed
    assert "only change labels" in verdict.message


# --- Limits on the detector's own labels ---------------------------------------------------


def _own_labels(count: int, value: str = "1") -> dict[str, str]:
    return {accelerator_label_key(f"M{i}"): value for i in range(count)}


def test_at_most_64_own_labels(policy):
    node = gpu_node()
    del node["metadata"]["labels"][MI300X], node["metadata"]["labels"][ZEN4]
    del node["metadata"]["annotations"][OWNED_LABELS_ANNOTATION]
    request = request_for("gpu-1", bound_node="gpu-1")
    allowed = detector_update(node, _own_labels(MAX_OWNED_LABELS))
    assert admit(policy, request, allowed, node).allowed
    denied = detector_update(node, _own_labels(MAX_OWNED_LABELS + 1))
    verdict = admit(policy, request, denied, node)
    assert not verdict.allowed
    assert f"at most {MAX_OWNED_LABELS} labels" in verdict.message


def test_too_many_labels_put_there_by_someone_else_never_lock_the_detector_out(policy):
    """Over the cap already (an admin wrote them): removing some is admitted, adding is not."""
    node = gpu_node()
    node["metadata"]["labels"].update(_own_labels(MAX_OWNED_LABELS + 6))
    fewer = copy.deepcopy(node)
    for key in list(_own_labels(3)):
        del fewer["metadata"]["labels"][key]
    request = request_for("gpu-1", bound_node="gpu-1")
    assert admit(policy, request, fewer, node).allowed
    more = copy.deepcopy(node)
    more["metadata"]["labels"][accelerator_label_key("ONE_MORE")] = "1"
    assert not admit(policy, request, more, node).allowed


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("8", True), ("0", True), ("true", True), ("eight", False), ("-1", False),
     ("8.0", False), ("True", False), ("", False)],
)  # fmt: skip
def test_own_label_values_are_counts_or_true(policy, value, allowed):
    node = gpu_node()
    new = copy.deepcopy(node)
    new["metadata"]["labels"][accelerator_label_key("MI325X")] = value
    verdict = admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node)
    assert verdict.allowed is allowed, verdict
    if not allowed:
        assert "counts (digits) or true" in verdict.message


def test_a_value_someone_else_wrote_is_left_alone(policy):
    node = gpu_node()
    node["metadata"]["labels"][accelerator_label_key("LEGACY")] = "yes"
    new = detector_update(node, {MI300X: "4", ZEN4: "96"})
    assert new["metadata"]["labels"][accelerator_label_key("LEGACY")] == "yes"
    assert admit(policy, request_for("gpu-1", bound_node="gpu-1"), new, node).allowed


def test_ownership_annotation_size_cap(policy):
    node = gpu_node()
    request = request_for("gpu-1", bound_node="gpu-1")
    for length, allowed in ((MAX_ANNOTATION_LENGTH, True), (MAX_ANNOTATION_LENGTH + 1, False)):
        new = copy.deepcopy(node)
        new["metadata"]["annotations"][OWNED_LABELS_ANNOTATION] = "x" * length
        verdict = admit(policy, request, new, node)
        assert verdict.allowed is allowed, length
    unchanged = copy.deepcopy(node)
    unchanged["metadata"]["annotations"][OWNED_LABELS_ANNOTATION] = "x" * 9000
    grown = copy.deepcopy(unchanged)
    grown["metadata"]["labels"][MI300X] = "4"  # an unrelated change keeps the old annotation
    assert admit(policy, request, grown, unchanged).allowed


# --- Who is fenced: accounts, not names -------------------------------------------------------


def test_other_accounts_of_the_namespace_are_not_fenced(policy):
    """The fence picks accounts by label and matches the exact user: an unlabelled account in
    the same namespace (or a system controller, were the detector installed beside one) is left
    alone."""
    node = gpu_node()
    new = copy.deepcopy(node)
    new["spec"]["taints"].append({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"})
    for user in (
        "system:serviceaccount:aim-detector:default",
        "system:serviceaccount:kube-system:node-controller",
        "system:serviceaccount:aim-detector-x:aim-detector",
        "system:serviceaccount:aim-detector:aim-detector-x",
    ):
        assert admit(policy, request_for("gpu-1", user=user), new, node).applies is False


def test_every_labelled_account_is_fenced(policy):
    second = copy.deepcopy(policy.params[0])
    second["metadata"]["name"] = "aim-detector-amdsmi"
    both = Fence(policy.policy, policy.binding, (*policy.params, second))
    node = gpu_node("gpu-2")
    new = copy.deepcopy(node)
    new["metadata"]["labels"]["team"] = "ml"
    for account in ("aim-detector", "aim-detector-amdsmi"):
        user = f"system:serviceaccount:aim-detector:{account}"
        verdict = admit(both, request_for("gpu-2", user=user, bound_node="gpu-2"), new, node)
        assert verdict.applies
        assert not verdict.allowed


# --- Every install variant fences its detectors ------------------------------------------------


def _overlay(root: Path, files: dict[str, dict[str, Any]]) -> Path:
    """Write kustomizations (relative path -> content) under `root`; return `root`."""
    for name, content in files.items():
        path = root / name / "kustomization.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1",
                                        "kind": "Kustomization", **content}))  # fmt: skip
    return root


def _rel(root: Path, name: str, target: str) -> str:
    """A path from overlay `root/name` to `target` (relative to the repository): kustomize
    refuses absolute paths."""
    return os.path.relpath(ROOT / target, root / name)


def detector_daemonsets(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, service account) of every detector DaemonSet."""
    return [
        (o["metadata"]["namespace"], o["spec"]["template"]["spec"]["serviceAccountName"])
        for o in objects
        if o["kind"] == "DaemonSet"
    ]


def assert_fenced(objects: list[dict[str, Any]]) -> None:
    """Each detector DaemonSet's account is a parameter of the binding, and a foreign label on
    its own Node by that account is refused by the policy."""
    assert fence_problems(objects) == []
    fence = fence_of(objects)
    params = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in fence.params}
    for namespace, account in detector_daemonsets(objects):
        assert (namespace, account) in params
        user = f"system:serviceaccount:{namespace}:{account}"
        node = gpu_node()
        new = copy.deepcopy(node)
        new["metadata"]["labels"]["team"] = "ml"
        verdict = admit(fence, request_for("gpu-1", user=user, bound_node="gpu-1"), new, node)
        assert verdict.applies, user
        assert not verdict.allowed, user


def namespace_overlay(root: Path) -> Path:
    """The detector moved to `gpu-agents` (an overlay of daemonset/detector), the rest as is."""
    return _overlay(root, {
        ".": {"resources": ["detector", _rel(root, ".", "daemonset/crds"),
                            _rel(root, ".", "daemonset/matcher"),
                            _rel(root, ".", "daemonset/webhook")]},
        "detector": {"resources": [_rel(root, "detector", "daemonset/detector")],
                     "namespace": "gpu-agents"},
    })  # fmt: skip


def prefix_overlay(root: Path) -> Path:
    return _overlay(root, {".": {"resources": [_rel(root, ".", "daemonset")],
                                 "namePrefix": "team-"}})  # fmt: skip


#: Kinds kustomize does not know to be cluster-scoped: a `namespace:` overlay stamps them with a
#: namespace, which kubectl drops when it applies them (tested on kube-apiserver below).
_STAMPED_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_shipped_variant_fences_its_detectors(variant):
    objects = render(ROOT / VARIANTS[variant])
    if variant == "nfd":  # no API access at all: nothing to fence, nothing writes Nodes
        assert node_writers(objects) == []
        return
    assert detector_daemonsets(objects)
    assert_fenced(objects)


def test_mixed_cluster_fences_both_detectors():
    objects = render(ROOT / VARIANTS["mixed"])
    assert sorted(a for _, a in detector_daemonsets(objects)) == [
        "aim-detector-amdsmi",
        "aim-detector-sysfs",
    ]
    assert_fenced(objects)


def test_detector_moved_to_another_namespace_stays_fenced(tmp_path):
    objects = render(namespace_overlay(tmp_path))
    assert detector_daemonsets(objects) == [("gpu-agents", "aim-detector")]
    assert_fenced(objects)
    binding = fence_of(objects).binding
    assert binding["spec"]["paramRef"]["namespace"] == "gpu-agents"
    namespaces = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Namespace"}
    assert set(namespaces) == {"gpu-agents", "aim-system"}
    assert namespaces["gpu-agents"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
    problems = check_objects(objects)
    assert problems == [
        f"{o['kind']} gpu-agents/{o['metadata']['name']}: cluster-scoped, must not set "
        "metadata.namespace"
        for o in objects
        if o["kind"] in _STAMPED_KINDS
    ]


def test_name_prefix_over_everything_stays_fenced(tmp_path):
    objects = render(prefix_overlay(tmp_path))
    fence = fence_of(objects)
    assert fence.policy["metadata"]["name"] == "team-aim-detector-own-node-labels"
    assert fence.binding["spec"]["policyName"] == "team-aim-detector-own-node-labels"
    assert detector_daemonsets(objects) == [("aim-detector", "team-aim-detector")]
    assert_fenced(objects)


def test_a_namespace_overlay_over_everything_fails_loudly(tmp_path):
    """One `namespace:` for both components would merge their namespaces (and Pod Security
    levels): kustomize refuses, so nobody ends up with a silently unfenced install."""
    root = _overlay(tmp_path, {".": {"resources": [_rel(tmp_path, ".", "daemonset")],
                                     "namespace": "everything"}})  # fmt: skip
    with pytest.raises(RenderError, match="ID conflict"):
        render(root)


def test_the_checker_catches_a_policy_that_names_the_account(tmp_path):
    """Issue 12's bug: the policy named system:serviceaccount:aim-system:aim-detector in CEL,
    so a renamed account escaped it. fence_problems reports such a bundle."""
    objects = render(ROOT / VARIANTS["mixed"])
    policy = next(o for o in objects if o["kind"] == "ValidatingAdmissionPolicy")
    del policy["spec"]["paramKind"]
    policy["spec"]["matchConditions"] = [
        {"name": "is-detector", "expression":
         "request.userInfo.username == 'system:serviceaccount:aim-detector:aim-detector'"}
    ]  # fmt: skip
    problems = fence_problems(objects)
    assert len(problems) == 2
    assert all("no admission policy binding fences it" in p for p in problems)


def test_the_checker_catches_a_kustomize_mixup_of_two_copies(tmp_path):
    """What docs/install.md used to recommend for mixed clusters: the bundle plus one suffixed
    copy of the agent. kustomize resolves "aim-detector" by original name and points the
    unsuffixed DaemonSet at the copy's account; the orphaned account and role give it away."""
    root = _overlay(tmp_path, {
        ".": {"resources": [_rel(tmp_path, ".", "daemonset"), "gpu"]},
        "gpu": {"resources": [_rel(tmp_path, "gpu", "daemonset/detector/agent")],
                "nameSuffix": "-gpu"},
    })  # fmt: skip
    problems = check_objects(render(root))
    assert "ServiceAccount aim-detector/aim-detector: no workload runs as this service account" in (
        problems
    )
    assert "ClusterRole aim-detector: nothing binds this role" in problems


# --- On a real kube-apiserver -----------------------------------------------------------------


def _real_variants(tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        "default": render(ROOT / VARIANTS["default"]),
        "mixed": render(ROOT / VARIANTS["mixed"]),
        "namespace": render(namespace_overlay(tmp_path / "namespace")),
    }


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["default", "mixed", "namespace"])
def test_fence_holds_on_kube_apiserver(real_kube, tmp_path, variant):
    """Install the rendered variant, then act as each of its detectors with a real token bound
    to a pod on gpu-1: its own labels on gpu-1 are admitted; a foreign label on gpu-1, or its
    own label on gpu-2, is refused by the policy and recorded in the audit log."""
    plane = real_kube.require_plane()
    since = len(plane.audit_events())
    objects = _real_variants(tmp_path)[variant]
    install(real_kube, objects)
    for node in ("gpu-1", "gpu-2"):
        add_node(plane, node)
    detectors = detector_daemonsets(objects)
    assert detectors
    for namespace, account in detectors:
        token = detector_token(plane, namespace, account, "gpu-1")
        wait_for_policy(plane, token, "gpu-1")
        assert dry_run_label(plane, token, "gpu-1", OWN_LABEL, "8") == (200, "")
        status, message = dry_run_label(plane, token, "gpu-2", OWN_LABEL, "8")
        assert status == 403
        assert "bound to" in message
        status, message = dry_run_label(plane, token, "gpu-1", OWN_LABEL, "eight")
        assert status == 403
        assert "counts (digits) or true" in message
        user = f"system:serviceaccount:{namespace}:{account}"
        failures = validation_failures(plane, user, since)
        assert any("bound to" in f for f in failures), failures
    # A kubelet-like write by someone else is untouched by the fence.
    status, _ = plane.request(
        "PATCH", "/api/v1/nodes/gpu-1?dryRun=All", {"spec": {"unschedulable": True}}
    )
    assert status == 200
