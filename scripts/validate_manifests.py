"""Offline validation of the install bundle: ``python -m scripts.validate_manifests``.

For the default install (``daemonset/``) and each ready-made variant (``examples/install/*``):

1. render it with ``kubectl kustomize``;
2. validate every object against the Kubernetes OpenAPI schemas of a pinned release
   (``kubernetes-validate``, strict: unknown fields are errors);
3. check that every CRD's schema is structural (the rules the API server enforces for
   ``apiextensions.k8s.io/v1``);
4. compile every CEL expression (admission policy, CRD ``x-kubernetes-validations``) and check
   that every object fits ``kubectl apply``'s last-applied annotation;
5. check the objects refer to each other correctly (service accounts, role bindings, the
   policy binding, selectors, the matcher's ConfigMap) and that namespaced objects sit in a
   namespace the bundle creates while cluster-scoped ones carry none;
6. check the node fence covers every service account that may write Nodes: the admission
   policy's binding selects it as a parameter and the policy's match condition picks its user
   (``fence_problems``).

Finally ``kubectl apply -k <variant> --dry-run=client -o name`` runs for each variant. Even a
client-side dry run asks an API server for discovery (which kinds exist, under which resource
names, namespaced or not), so it runs against the project's test API server (``tests/apiserver``)
with the bundle's built-in kinds registered, or against the cluster of ``--kubeconfig`` /
``$AIM_TEST_KUBECONFIG`` when given.

The ``monitoring`` variant (``examples/install/monitoring``: the default install plus
``daemonset/components/monitoring``) has a PrometheusRule and PodMonitors, kinds that only the
Prometheus Operator's CRDs define: those objects are validated against the CRDs' schemas (the
release pinned in tools/prometheus-operator, strict as above), and the test API server serves
those CRDs for the dry run. The ``cert-manager`` variant (``examples/install/cert-manager``: the
default install plus ``daemonset/components/cert-manager``) has an Issuer and a Certificate,
validated the same way against cert-manager's CRDs (the release pinned in tools/cert-manager).

The Helm chart (``charts/aim-accelerator``) renders every variant too, with the values in
``CHART_VALUES``: ``helm template --include-crds`` must give exactly the objects of
``kubectl kustomize`` of that variant (``chart_differences``), so the two installs cannot drift.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from scripts.k8s_tools import cert_manager_crds, helm_env, prometheus_operator_crds, tool

ROOT = Path(__file__).resolve().parent.parent
#: The oldest Kubernetes release the bundle supports: ValidatingAdmissionPolicy v1 is GA in
#: 1.30 and bound service-account tokens carry the node name since 1.30.
KUBERNETES_VERSION = "1.31"
#: The detector's namespace (Pod Security enforces "privileged": it mounts host paths) and the
#: matcher's (enforces "restricted").
DETECTOR_NAMESPACE = "aim-detector"
MATCHER_NAMESPACE = "aim-system"
#: name -> kustomization directory (relative to the repository root).
VARIANTS = {
    "default": "daemonset",
    "amdsmi": "examples/install/amdsmi",
    "nfd": "examples/install/nfd",
    "cleanup": "examples/install/cleanup",
    "mixed": "examples/install/mixed",
    "plugin": "examples/install/plugin",
}
#: Variants that need CRDs the bundle does not bring (the Prometheus Operator's, cert-manager's).
MONITORING_VARIANTS = {"monitoring": "examples/install/monitoring"}
CERT_MANAGER_VARIANTS = {"cert-manager": "examples/install/cert-manager"}
ALL_VARIANTS = {**VARIANTS, **MONITORING_VARIANTS, **CERT_MANAGER_VARIANTS}
CHART = ROOT / "charts" / "aim-accelerator"
#: The chart's values that render each variant (docs/install.md lists them).
CHART_VALUES: dict[str, dict[str, Any]] = {
    "default": {},
    "amdsmi": {"detector": {"gpuBackend": "amdsmi"}},
    "nfd": {"detector": {"mode": "nfd"}},
    "cleanup": {"detector": {"cleanup": True}},
    "mixed": {"detector": {"gpuBackend": "mixed"}},
    "plugin": {"plugin": {"roles": True}},
    "monitoring": {
        "monitoring": {
            "podMonitors": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "dashboard": {"enabled": True},
        }
    },
    "cert-manager": {"matcher": {"webhook": {"certManager": True}}},
}
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "PriorityClass",
}
NAMESPACED = {
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "DaemonSet",
    "Deployment",
    "PodDisruptionBudget",
    "Job",
    "NetworkPolicy",
    "PodMonitor",
    "PrometheusRule",
    "Issuer",
    "Certificate",
}
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_FORBIDDEN_IN_JUNCTOR = ("description", "type", "default", "additionalProperties", "nullable")


class RenderError(RuntimeError):
    """kubectl kustomize failed; the message carries its stderr."""


@dataclass(frozen=True)
class Report:
    variant: str
    objects: int
    problems: tuple[str, ...]


def render(path: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize <path>`` produces, in order."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {path}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_chart(
    values: Mapping[str, Any] | None = None, chart: Path = CHART
) -> list[dict[str, Any]]:
    """The objects ``helm template --include-crds`` renders from ``chart`` with ``values``."""
    with tempfile.TemporaryDirectory() as tmp:
        values_file = Path(tmp) / "values.json"  # JSON is YAML
        values_file.write_text(json.dumps(dict(values or {})))
        result = subprocess.run(
            [tool("helm"), "template", "aim-accelerator", str(chart), "--include-crds",
             "--values", str(values_file)],
            capture_output=True, text=True, check=False, timeout=120, env=helm_env(Path(tmp)),
        )  # fmt: skip
    if result.returncode != 0:
        raise RenderError(f"helm template {chart}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def object_key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(API group, kind, namespace, name): what identifies an object in a cluster."""
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name"))


def _differences(a: Any, b: Any, path: str, names: tuple[str, str]) -> Iterator[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in b:
                yield f"{where}: only in {names[0]}: {json.dumps(a[key])[:160]}"
            elif key not in a:
                yield f"{where}: only in {names[1]}: {json.dumps(b[key])[:160]}"
            else:
                yield from _differences(a[key], b[key], where, names)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _differences(x, y, f"{path}[{index}]", names)
    elif a != b or type(a) is not type(b):
        yield (f"{path}: {names[0]} {json.dumps(a)[:160]} != {names[1]} {json.dumps(b)[:160]}")


def object_differences(
    expected: list[dict[str, Any]],
    got: list[dict[str, Any]],
    names: tuple[str, str] = ("kustomize", "helm"),
) -> list[str]:
    """Every difference between two renders, object by object (order does not matter; within
    an object every field counts, list order included)."""
    problems: list[str] = []
    indexed: list[dict[tuple[str, str, str, str], dict[str, Any]]] = [{}, {}]
    for side, objects in enumerate((expected, got)):
        for obj in objects:
            key = object_key(obj)
            if key in indexed[side]:
                problems.append(f"{describe(obj)}: rendered twice by {names[side]}")
            indexed[side][key] = obj
    for key in sorted(set(indexed[0]) | set(indexed[1])):
        if key not in indexed[1]:
            problems.append(f"{describe(indexed[0][key])}: only in {names[0]}")
        elif key not in indexed[0]:
            problems.append(f"{describe(indexed[1][key])}: only in {names[1]}")
        else:
            problems += [
                f"{describe(indexed[0][key])}: {difference}"
                for difference in _differences(indexed[0][key], indexed[1][key], "", names)
            ]
    return problems


def chart_differences(variant: str, root: Path = ROOT) -> list[str]:
    """How the chart with ``CHART_VALUES[variant]`` differs from ``kubectl kustomize`` of the
    variant's kustomization (empty: identical)."""
    try:
        return object_differences(
            render(root / ALL_VARIANTS[variant]),
            render_chart(CHART_VALUES[variant], root / "charts" / "aim-accelerator"),
        )
    except RenderError as exc:
        return [str(exc)]


def describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {namespace}{meta.get('name')}"


def _strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as kubectl's strict field validation does (the
    API server would prune them silently)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    node = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


@functools.cache
def custom_resource_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> strict JSON schema, for the kinds of the Prometheus Operator CRDs
    the monitoring objects use and of the cert-manager CRDs the webhook's cert-manager component
    uses (the releases pinned in tools/prometheus-operator and tools/cert-manager)."""
    found = {}
    for path in [*prometheus_operator_crds(), *cert_manager_crds()]:
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                found[key] = _strict(version["schema"]["openAPIV3Schema"])
    return found


def _custom_resource_problems(obj: Mapping[str, Any], schema: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(e.path)):
        where = ".".join(str(part) for part in error.path) or "(root)"
        problems.append(f"{describe(obj)}: {where}: {error.message} (its CRD's schema)")
    return problems


def schema_problems(obj: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Problems validating one object against the pinned release's OpenAPI schema (a built-in
    kind) or its CRD's schema (a kind of the Prometheus Operator's or cert-manager's)."""
    api_version = str(obj.get("apiVersion", ""))
    if api_version.startswith(("monitoring.coreos.com/", "cert-manager.io/")):
        schema = custom_resource_schemas().get((api_version, str(obj.get("kind"))))
        if schema is None:
            owner = "cert-manager" if api_version.startswith("cert-") else "prometheus-operator"
            return [f"{describe(obj)}: not a kind of the pinned {owner} CRDs"]
        return _custom_resource_problems(obj, schema)
    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path) or "(root)"
        return [f"{describe(obj)}: {where}: {exc.message} (Kubernetes {version} schema)"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{describe(obj)}: {obj.get('apiVersion')} {obj.get('kind')} is not a built-in "
            f"kind of Kubernetes {version}"
        ]
    return []


def _walk_structural(
    node: Any, path: str, *, in_junctor: bool, problems: list[str], root: bool = False
) -> None:
    if not isinstance(node, Mapping):
        problems.append(f"{path}: a schema must be an object")
        return
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if in_junctor:
        for key in _FORBIDDEN_IN_JUNCTOR:
            if key in node:
                problems.append(f"{path}: {key} is not allowed inside allOf/anyOf/oneOf/not")
    elif "type" not in node and not int_or_string and not preserve:
        problems.append(f"{path}: no type (every node of a structural schema needs one)")
    if root and node.get("type") != "object":
        problems.append(f"{path}: the root of a CRD schema must be type: object")
    if "$ref" in node:
        problems.append(f"{path}: $ref is not allowed in a CRD schema")
    if node.get("uniqueItems") is True:
        problems.append(f"{path}: uniqueItems: true is not allowed in a CRD schema")
    if node.get("additionalProperties") is False:
        problems.append(f"{path}: additionalProperties cannot be false in a CRD schema")
    if "properties" in node and isinstance(node.get("additionalProperties"), Mapping):
        problems.append(f"{path}: properties and additionalProperties are mutually exclusive")
    if "items" in node and not isinstance(node["items"], Mapping):
        problems.append(f"{path}.items: must be a single schema, not a list")
    if root:
        metadata = (node.get("properties") or {}).get("metadata")
        if isinstance(metadata, Mapping):
            extra = set(metadata) - {"type", "properties"}
            fields = set(metadata.get("properties") or {}) - {"name", "generateName"}
            if extra or fields:
                problems.append(
                    f"{path}.properties.metadata: only metadata.name and metadata.generateName "
                    "may be restricted"
                )
    properties = node.get("properties") or {}
    for name, child in properties.items():
        _walk_structural(
            child, f"{path}.properties.{name}", in_junctor=in_junctor, problems=problems
        )
    if isinstance(node.get("additionalProperties"), Mapping):
        _walk_structural(
            node["additionalProperties"],
            f"{path}.additionalProperties",
            in_junctor=in_junctor,
            problems=problems,
        )
    if isinstance(node.get("items"), Mapping):
        _walk_structural(node["items"], f"{path}.items", in_junctor=in_junctor, problems=problems)
    for junctor in _JUNCTORS:
        branches = node.get(junctor)
        if branches is None:
            continue
        for index, branch in enumerate(branches if isinstance(branches, list) else [branches]):
            where = f"{path}.{junctor}[{index}]"
            if int_or_string and junctor == "anyOf" and set(branch) == {"type"}:
                continue  # the documented int-or-string pattern: anyOf [{type: integer}, ...]
            _walk_structural(branch, where, in_junctor=True, problems=problems)
            for name in (branch.get("properties") or {}) if isinstance(branch, Mapping) else ():
                if name not in properties:
                    problems.append(
                        f"{where}.properties.{name}: a field inside {junctor} must also be "
                        "specified outside it"
                    )


def structural_problems(crd: Mapping[str, Any]) -> list[str]:
    """Problems that make a v1 CRD's schemas non-structural (or the CRD unusable)."""
    problems: list[str] = []
    name = (crd.get("metadata") or {}).get("name", "?")
    spec = crd.get("spec") or {}
    if spec.get("preserveUnknownFields") is True:
        problems.append(f"CRD {name}: spec.preserveUnknownFields must be false")
    plural = (spec.get("names") or {}).get("plural")
    if name != f"{plural}.{spec.get('group')}":
        problems.append(f"CRD {name}: metadata.name must be <plural>.<group>")
    versions = spec.get("versions") or []
    if sum(1 for v in versions if v.get("storage")) != 1:
        problems.append(f"CRD {name}: exactly one version must be the storage version")
    for version in versions:
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        where = f"CRD {name} {version.get('name')}: openAPIV3Schema"
        if schema is None:
            problems.append(f"{where}: missing (v1 CRDs need a schema per version)")
            continue
        _walk_structural(schema, where, in_junctor=False, problems=problems, root=True)
    return problems


def _crd_rules(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if not isinstance(node, Mapping):
        return
    for index, rule in enumerate(node.get("x-kubernetes-validations") or []):
        yield f"{path}.x-kubernetes-validations[{index}].rule", str(rule.get("rule", ""))
    for name, child in (node.get("properties") or {}).items():
        yield from _crd_rules(child, f"{path}.properties.{name}")
    for key in ("items", "additionalProperties"):
        yield from _crd_rules(node.get(key), f"{path}.{key}")


def cel_expressions(obj: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expression) for every CEL expression in an object."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "ValidatingAdmissionPolicy":
        for section in ("matchConditions", "variables", "validations", "auditAnnotations"):
            for index, item in enumerate(spec.get(section) or []):
                for key in ("expression", "messageExpression", "valueExpression"):
                    if key in item:
                        yield f"{describe(obj)} spec.{section}[{index}].{key}", str(item[key])
    elif obj.get("kind") == "CustomResourceDefinition":
        for version in spec.get("versions") or []:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            yield from _crd_rules(schema, f"{describe(obj)} {version.get('name')}")


def cel_problems(obj: Mapping[str, Any]) -> list[str]:
    environment = celpy.Environment()
    problems = []
    for where, expression in cel_expressions(obj):
        try:
            environment.compile(expression)
        except CELParseError as exc:
            problems.append(f"{where}: CEL does not parse: {exc}")
    return problems


def _pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if obj.get("kind") in {"DaemonSet", "Deployment", "Job"}:
        return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def reference_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Dangling references, duplicates and misplaced namespaces between the bundle's objects."""
    problems: list[str] = []
    seen: set[tuple[str, str, str, str]] = set()
    by_kind: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    created_namespaces = {
        (o.get("metadata") or {}).get("name") for o in objects if o.get("kind") == "Namespace"
    }
    for obj in objects:
        meta = obj.get("metadata") or {}
        kind, name, namespace = obj.get("kind", ""), meta.get("name", ""), meta.get("namespace", "")
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        key = (group, kind, namespace, name)
        if key in seen:
            problems.append(f"{describe(obj)}: defined twice")
        seen.add(key)
        scope = "" if kind in CLUSTER_SCOPED else namespace
        by_kind.setdefault(kind, {})[(scope, name)] = obj
        if kind == "Certificate":  # cert-manager's: found by the Secret it writes
            secret_name = str((obj.get("spec") or {}).get("secretName") or "")
            by_kind.setdefault("Certificate", {})[(namespace, secret_name)] = obj
        if kind in CLUSTER_SCOPED and namespace:
            problems.append(f"{describe(obj)}: cluster-scoped, must not set metadata.namespace")
        elif kind in NAMESPACED and namespace not in created_namespaces:
            problems.append(
                f"{describe(obj)}: namespace {namespace or '(none)'} is not one the bundle creates"
            )
        elif kind not in CLUSTER_SCOPED | NAMESPACED:
            problems.append(f"{describe(obj)}: unexpected kind in the install bundle")

    def exists(kind: str, namespace: str, name: str) -> bool:
        return (namespace, name) in by_kind.get(kind, {})

    for obj in objects:
        kind = obj.get("kind")
        spec = obj.get("spec") or {}
        if kind in {"RoleBinding", "ClusterRoleBinding"}:
            ref = obj.get("roleRef") or {}
            binding_ns = (obj.get("metadata") or {}).get("namespace", "")
            ref_ns = "" if ref.get("kind") == "ClusterRole" else binding_ns
            if not exists(str(ref.get("kind")), ref_ns, str(ref.get("name"))):
                problems.append(
                    f"{describe(obj)}: roleRef {ref.get('kind')} {ref.get('name')} "
                    "is not in the bundle"
                )
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and not exists(
                    "ServiceAccount", str(subject.get("namespace")), str(subject.get("name"))
                ):
                    problems.append(
                        f"{describe(obj)}: subject ServiceAccount "
                        f"{subject.get('namespace')}/{subject.get('name')} is missing"
                    )
        if kind == "ValidatingAdmissionPolicyBinding" and not exists(
            "ValidatingAdmissionPolicy", "", str(spec.get("policyName"))
        ):
            problems.append(f"{describe(obj)}: policy {spec.get('policyName')} is missing")
        pod = _pod_spec(obj)
        if pod is not None:
            namespace = (obj.get("metadata") or {}).get("namespace", "")
            account = pod.get("serviceAccountName", "default")
            if not exists("ServiceAccount", namespace, account):
                problems.append(f"{describe(obj)}: ServiceAccount {account} is missing")
            template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            if not _labels_match(selector, template_labels or {}):
                problems.append(f"{describe(obj)}: selector does not match the pod template")
            for volume in pod.get("volumes") or []:
                cm = (volume.get("configMap") or {}).get("name")
                if cm and not exists("ConfigMap", namespace, cm):
                    problems.append(f"{describe(obj)}: ConfigMap {cm} is missing")
            for container in pod.get("containers") or []:
                for arg in container.get("args") or []:
                    if str(arg).startswith("--config-map="):
                        cm = str(arg).split("=", 1)[1]
                        if not exists("ConfigMap", namespace, cm):
                            problems.append(f"{describe(obj)}: ConfigMap {cm} is missing")
                problems += _webhook_problems(obj, container, exists)
        if kind in {"Service", "PodDisruptionBudget", "PodMonitor"}:
            selector = spec.get("selector") or {}
            selector = selector.get("matchLabels", selector) if kind != "Service" else selector
            namespace = (obj.get("metadata") or {}).get("namespace", "")
            pods = [
                o
                for o in objects
                if _pod_spec(o) is not None
                and (o.get("metadata") or {}).get("namespace") == namespace
                and _labels_match(
                    selector,
                    (((o.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
                        "labels"
                    )
                    or {},
                )
            ]
            if not pods:
                problems.append(f"{describe(obj)}: selector matches no workload in the bundle")
    problems += _orphan_problems(objects)
    return problems


def _flag(args: list[Any], name: str, default: str) -> str:
    for arg in args:
        if str(arg).startswith(f"{name}="):
            return str(arg).split("=", 1)[1]
    return default


def _webhook_problems(
    obj: Mapping[str, Any], container: Mapping[str, Any], exists: Any
) -> list[str]:
    """A matcher that serves the webhook needs its Secret, its configuration, a Service on its
    port and the port itself; without them its readiness never passes (matcher/controller)."""
    args = list(container.get("args") or [])
    if not _flag(args, "--webhook-addr", ""):
        return []
    namespace = (obj.get("metadata") or {}).get("namespace", "")
    problems = []
    secret = _flag(args, "--webhook-secret", "aim-matcher-webhook-tls")
    # With --webhook-certs=external a cert-manager Certificate makes the Secret.
    maker = "Certificate" if _flag(args, "--webhook-certs", "self") == "external" else "Secret"
    if not exists(maker, namespace, secret):
        what = f"a Certificate writing Secret {secret}" if maker != "Secret" else f"Secret {secret}"
        problems.append(f"{describe(obj)}: serves the webhook but {what} is missing")
    configuration = _flag(args, "--webhook-configuration", "aim-matcher")
    if not exists("MutatingWebhookConfiguration", "", configuration):
        problems.append(
            f"{describe(obj)}: serves the webhook but MutatingWebhookConfiguration "
            f"{configuration} is missing"
        )
    service = _flag(args, "--webhook-service", "aim-matcher-webhook")
    if not exists("Service", namespace, service):
        problems.append(f"{describe(obj)}: serves the webhook but Service {service} is missing")
    if "webhook" not in {p.get("name") for p in container.get("ports") or []}:
        problems.append(f"{describe(obj)}: serves the webhook but has no port named webhook")
    return problems


#: Roles shipped for people to bind (daemonset/plugin: the readers of `kubectl aim`), not for a
#: workload of the install: unbound is how they are meant to arrive.
USER_BOUND_ROLES = {
    ("ClusterRole", "aim-plugin-reader"),
    ("Role", "aim-plugin-config-reader"),
}


def _orphan_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Service accounts no workload runs as, and roles nothing binds: the sign of a reference
    kustomize resolved to the wrong object (two copies of one base, one without a nameSuffix,
    end up sharing one account while the other account and its role are left unused). The
    roles people bind themselves (USER_BOUND_ROLES) are left out."""
    used_accounts = set()
    for obj in objects:
        pod = _pod_spec(obj)
        if pod is not None:
            namespace = (obj.get("metadata") or {}).get("namespace", "")
            used_accounts.add((namespace, pod.get("serviceAccountName", "default")))
    bound = set()
    for obj in objects:
        if obj.get("kind") in {"RoleBinding", "ClusterRoleBinding"}:
            ref = obj.get("roleRef") or {}
            namespace = (obj.get("metadata") or {}).get("namespace", "")
            bound.add(
                (ref.get("kind"), namespace if ref.get("kind") == "Role" else "", ref.get("name"))
            )
    problems = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name"))
        if obj.get("kind") == "ServiceAccount" and key not in used_accounts:
            problems.append(f"{describe(obj)}: no workload runs as this service account")
        if (
            obj.get("kind") in {"Role", "ClusterRole"}
            and (obj.get("kind"), *key) not in bound
            and (obj.get("kind"), key[1]) not in USER_BOUND_ROLES
        ):
            problems.append(f"{describe(obj)}: nothing binds this role")
    return problems


#: Verbs that change a Node (a `*` grants them all).
_NODE_WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection", "*"})


def _grants_node_writes(rule: Mapping[str, Any]) -> bool:
    groups = set(rule.get("apiGroups") or ())
    resources = set(rule.get("resources") or ())
    return (
        bool(groups & {"", "*"})
        and bool(resources & {"nodes", "nodes/*", "*"})
        and bool(set(rule.get("verbs") or ()) & _NODE_WRITE_VERBS)
    )


def node_writers(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, name) of every ServiceAccount the bundle's RBAC lets write Nodes.

    Nodes are cluster-scoped, so only a ClusterRoleBinding to a ClusterRole can grant that.
    """
    roles = {
        (o.get("metadata") or {}).get("name"): o for o in objects if o.get("kind") == "ClusterRole"
    }
    found: list[tuple[str, str]] = []
    for binding in objects:
        if binding.get("kind") != "ClusterRoleBinding":
            continue
        ref = binding.get("roleRef") or {}
        role = roles.get(ref.get("name")) if ref.get("kind") == "ClusterRole" else None
        if role is None or not any(_grants_node_writes(r) for r in role.get("rules") or ()):
            continue
        for subject in binding.get("subjects") or ():
            if subject.get("kind") == "ServiceAccount":
                account = (str(subject.get("namespace", "")), str(subject.get("name", "")))
                if account not in found:
                    found.append(account)
    return found


def _match_conditions_hold(policy: Mapping[str, Any], user: str, param: Any) -> bool:
    """Whether every match condition of ``policy`` is true for a request by ``user``."""
    environment = celpy.Environment()
    activation = {
        "request": json_to_cel({"userInfo": {"username": user}}),
        "params": json_to_cel(param),
    }
    for condition in (policy.get("spec") or {}).get("matchConditions") or ():
        result = environment.program(environment.compile(condition["expression"])).evaluate(
            activation
        )
        if isinstance(result, CELEvalError) or not (
            isinstance(result, celtypes.BoolType) and bool(result)
        ):
            return False
    return True


def _fences(
    binding: Mapping[str, Any], policy: Mapping[str, Any], account: Mapping[str, Any]
) -> bool:
    """Whether ``binding`` of ``policy`` denies writes by ``account`` that its rules refuse."""
    spec = binding.get("spec") or {}
    if "Deny" not in (spec.get("validationActions") or ()):
        return False
    meta = account.get("metadata") or {}
    param_kind = (policy.get("spec") or {}).get("paramKind")
    param: Any = None
    if param_kind is not None:
        if (param_kind.get("apiVersion"), param_kind.get("kind")) != ("v1", "ServiceAccount"):
            return False
        ref = spec.get("paramRef") or {}
        selector = ref.get("selector") or {}
        labels = meta.get("labels") or {}
        by_name = ref.get("name") == meta.get("name")
        by_labels = (
            "selector" in ref
            and not selector.get("matchExpressions")
            and all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
        )
        if ref.get("namespace") != meta.get("namespace") or not (by_name or by_labels):
            return False
        param = account
    user = f"system:serviceaccount:{meta.get('namespace')}:{meta.get('name')}"
    return _match_conditions_hold(policy, user, param)


def fence_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Service accounts that may write Nodes but that no admission policy fences.

    RBAC cannot limit a Node write to one Node or to some labels, so every such account must be
    selected by a ValidatingAdmissionPolicyBinding (with Deny) whose policy's match conditions
    pick the account's user: exactly the check a `nameSuffix` or `namespace` overlay can break.
    Each fencing policy must also leave other users alone (a kubelet writing its own Node).
    """
    accounts = {
        ((o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name")): o
        for o in objects
        if o.get("kind") == "ServiceAccount"
    }
    policies = {
        (o.get("metadata") or {}).get("name"): o
        for o in objects
        if o.get("kind") == "ValidatingAdmissionPolicy"
    }
    bindings = [o for o in objects if o.get("kind") == "ValidatingAdmissionPolicyBinding"]
    problems: list[str] = []
    for namespace, name in node_writers(objects):
        account = accounts.get((namespace, name))
        if account is None:
            continue  # reference_problems reports the missing account
        fencing = [
            policies[b["spec"]["policyName"]]
            for b in bindings
            if (b.get("spec") or {}).get("policyName") in policies
            and _fences(b, policies[b["spec"]["policyName"]], account)
        ]
        if not fencing:
            problems.append(
                f"ServiceAccount {namespace}/{name} may write Nodes, but no admission policy "
                "binding fences it (its policy would not match the account's user)"
            )
        for policy in fencing:
            if _match_conditions_hold(policy, "system:node:any-node", account):
                problems.append(
                    f"{describe(policy)}: its match conditions also catch other users "
                    "(a kubelet writing its own Node)"
                )
    return problems


#: Client-side ``kubectl apply`` stores the whole object in an annotation, and all annotations
#: of an object together may not exceed 256 KiB (a big CRD fails ``apply`` on a real cluster).
MAX_ANNOTATIONS_BYTES = 256 * 1024


def apply_size_problems(obj: Mapping[str, Any]) -> list[str]:
    size = len(json.dumps(obj, separators=(",", ":")))
    if size >= MAX_ANNOTATIONS_BYTES:
        return [
            f"{describe(obj)}: {size} bytes; `kubectl apply` (client-side) cannot store it in "
            f"its last-applied annotation (limit {MAX_ANNOTATIONS_BYTES}); use --server-side"
        ]
    return []


def check_objects(objects: list[dict[str, Any]], version: str = KUBERNETES_VERSION) -> list[str]:
    """Every offline problem with a rendered bundle."""
    problems: list[str] = []
    for obj in objects:
        problems += schema_problems(obj, version)
        problems += apply_size_problems(obj)
        if obj.get("kind") == "CustomResourceDefinition":
            problems += structural_problems(obj)
        problems += cel_problems(obj)
    problems += reference_problems(objects)
    problems += fence_problems(objects)
    return problems


#: The built-in resources the bundle creates: (group, version, kind, plural, namespaced). The
#: test API server serves only what the project's code uses; these are added for the dry run.
BUILTIN_RESOURCES = (
    ("", "v1", "Namespace", "namespaces", False),
    ("", "v1", "ServiceAccount", "serviceaccounts", True),
    ("", "v1", "ConfigMap", "configmaps", True),
    ("", "v1", "Secret", "secrets", True),
    ("", "v1", "Service", "services", True),
    ("apps", "v1", "DaemonSet", "daemonsets", True),
    ("apps", "v1", "Deployment", "deployments", True),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        False,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        False,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
    ),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False),
)


def serve_builtin_kinds(server: Any) -> None:
    """Register the bundle's built-in kinds on a ``tests.apiserver.ApiServer`` lacking them."""
    from tests.apiserver.resources import ResourceType  # noqa: PLC0415 (test tooling only)

    for group, version, kind, plural, namespaced in BUILTIN_RESOURCES:
        if server.registry.find(group, version, plural) is None:
            server.registry.register(
                ResourceType(
                    group=group,
                    versions=(version,),
                    storage_version=version,
                    kind=kind,
                    plural=plural,
                    singular=kind.lower(),
                    namespaced=namespaced,
                )
            )


def applied_name(obj: Mapping[str, Any]) -> str:
    """How ``kubectl apply -o name`` names an object: ``deployment.apps/aim-matcher``."""
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    kind = str(obj.get("kind", "")).lower()
    return (
        f"{kind}.{group}/{obj['metadata']['name']}"
        if group
        else f"{kind}/{obj['metadata']['name']}"
    )


def client_dry_run(path: Path, kubeconfig: Path) -> list[str]:
    """Problems of ``kubectl apply -k <path> --dry-run=client -o name`` on an API server.

    Besides kubectl's own errors, every rendered object must be named in its output.
    """
    result = subprocess.run(
        [
            tool("kubectl"),
            "apply",
            "-k",
            str(path),
            "--dry-run=client",
            "-o",
            "name",
            "--kubeconfig",
            str(kubeconfig),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        return [f"kubectl apply -k {path} --dry-run=client: {result.stderr.strip()}"]
    printed = set(result.stdout.split())
    return [
        f"kubectl apply -k {path} --dry-run=client: {applied_name(obj)} not applied"
        for obj in render(path)
        if applied_name(obj) not in printed
    ]


def dry_run_on_test_server(paths: list[Path]) -> dict[Path, list[str]]:
    """``client_dry_run`` for each path against a fresh in-process test API server."""
    from tests.apiserver import ApiServer  # noqa: PLC0415 (test tooling only)

    crds = [*prometheus_operator_crds(), *cert_manager_crds()]
    with tempfile.TemporaryDirectory() as tmp, ApiServer(crd_paths=crds) as server:
        serve_builtin_kinds(server)
        kubeconfig = server.write_kubeconfig(Path(tmp) / "kubeconfig")
        return {path: client_dry_run(path, kubeconfig) for path in paths}


def validate_variant(name: str, root: Path = ROOT, version: str = KUBERNETES_VERSION) -> Report:
    path = root / ALL_VARIANTS[name]
    try:
        objects = render(path)
    except RenderError as exc:
        return Report(name, 0, (str(exc),))
    return Report(name, len(objects), tuple(check_objects(objects, version)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--kubernetes-version",
        default=KUBERNETES_VERSION,
        help=f"Kubernetes release whose schemas to validate against (default {KUBERNETES_VERSION})",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=os.environ.get("AIM_TEST_KUBECONFIG") or None,
        help="run the client dry run against this cluster instead of the test API server "
        "(default: $AIM_TEST_KUBECONFIG)",
    )
    parser.add_argument(
        "variants",
        nargs="*",
        metavar="VARIANT",
        help=f"any of {', '.join(ALL_VARIANTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants) - set(ALL_VARIANTS))
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r} (choose from {', '.join(ALL_VARIANTS)})")
    names = args.variants or list(ALL_VARIANTS)
    paths = [ROOT / ALL_VARIANTS[name] for name in names]
    if args.kubeconfig:
        dry_runs = {path: client_dry_run(path, args.kubeconfig) for path in paths}
        where = f"the cluster of {args.kubeconfig}"
    else:
        dry_runs = dry_run_on_test_server(paths)
        where = "the test API server"
    failed = False
    for name, path in zip(names, paths, strict=True):
        report = validate_variant(name, version=args.kubernetes_version)
        problems = [*report.problems, *dry_runs[path]]
        status = "FAILED" if problems else "ok"
        print(
            f"{name} ({ALL_VARIANTS[name]}): {report.objects} objects; Kubernetes "
            f"{args.kubernetes_version} schemas, structural CRDs, CEL, references and "
            f"kubectl apply --dry-run=client on {where}: {status}"
        )
        for problem in problems:
            print(f"  {problem}")
        differences = chart_differences(name)
        print(
            f"{name}: helm template {CHART.relative_to(ROOT)} with values "
            f"{json.dumps(CHART_VALUES[name])}: same objects as kubectl kustomize: "
            f"{'FAILED' if differences else 'ok'}"
        )
        for difference in differences:
            print(f"  {difference}")
        failed = failed or bool(problems) or bool(differences)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
