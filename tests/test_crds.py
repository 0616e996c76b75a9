"""The generated CRDs: structural, current, and carrying the validation the spec asks for."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from matcher.api import crd
from matcher.api.models import parse_profile
from matcher.core.cluster import ClusterIndex
from matcher.core.config import MatcherConfig
from matcher.core.evaluate import evaluate
from matcher.core.nodes import node_view

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "daemonset" / "crds"
CRD_FILES = {
    "AIMProfile": CRD_DIR / "aim.eai.amd.com_aimprofiles.yaml",
    "AIMClusterProfile": CRD_DIR / "aim.eai.amd.com_aimclusterprofiles.yaml",
}

# The OpenAPI v3 keywords apiextensions.k8s.io/v1 accepts (JSONSchemaProps), plus extensions.
ALLOWED_KEYS = {
    "type", "format", "description", "default", "nullable", "enum", "maximum", "minimum",
    "exclusiveMaximum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems",
    "minItems", "uniqueItems", "multipleOf", "maxProperties", "minProperties", "required",
    "items", "properties", "additionalProperties", "allOf", "anyOf", "oneOf", "not", "example",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type", "x-kubernetes-validations",
}  # fmt: skip
# Inside anyOf/allOf/oneOf/not only value validations are allowed (structural rule 3).
FORBIDDEN_IN_JUNCTORS = {"description", "default", "nullable", "additionalProperties", "title"}
INT_OR_STRING_BRANCHES = [{"type": "integer"}, {"type": "string"}]


def structural_problems(schema: Any, path: str = "") -> list[str]:
    """Why a schema is not structural (apiextensions' rules, as far as this CRD needs them)."""
    problems: list[str] = []
    if not isinstance(schema, dict):
        return [f"{path}: not a schema object"]
    for key in schema:
        if key not in ALLOWED_KEYS:
            problems.append(f"{path}: keyword {key!r} not allowed")
    untyped_ok = schema.get("x-kubernetes-int-or-string") or schema.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if not schema.get("type") and not untyped_ok:
        problems.append(f"{path}: no type")
    if schema.get("x-kubernetes-int-or-string"):
        if "type" in schema:
            problems.append(f"{path}: int-or-string must not have a type")
        if schema.get("anyOf") not in (None, INT_OR_STRING_BRANCHES):
            problems.append(f"{path}: int-or-string anyOf must be integer|string")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: properties and additionalProperties together")
    if isinstance(schema.get("additionalProperties"), bool):
        problems.append(f"{path}: boolean additionalProperties")
    if schema.get("nullable") and not schema.get("type") and not untyped_ok:
        problems.append(f"{path}: nullable without type")
    for junctor in ("anyOf", "allOf", "oneOf"):
        for index, branch in enumerate(schema.get(junctor) or []):
            bad = FORBIDDEN_IN_JUNCTORS & set(branch)
            if bad:
                problems.append(f"{path}.{junctor}[{index}]: {sorted(bad)} not allowed")
            if "type" in branch and branch not in INT_OR_STRING_BRANCHES:
                problems.append(f"{path}.{junctor}[{index}]: type inside a junctor")
    if schema.get("x-kubernetes-list-type") == "map":
        items = schema.get("items") or {}
        keys = schema.get("x-kubernetes-list-map-keys") or []
        missing = [k for k in keys if k not in (items.get("required") or [])]
        if not keys or missing:
            problems.append(f"{path}: map list keys {keys} must be required item fields")
    for name, sub in (schema.get("properties") or {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}[*]")
    if "items" in schema:
        problems += structural_problems(schema["items"], f"{path}[]")
    return problems


def find_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [k for k in node if k in ("$ref", "$defs", "definitions", "title")]
        return found + [r for v in node.values() for r in find_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in find_refs(v)]
    return []


def load(kind: str):
    return yaml.safe_load(CRD_FILES[kind].read_text())


def schema_of(kind: str):
    return load(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_generated_crds_are_current(kind):
    assert CRD_FILES[kind].read_text() == crd.render_all()[CRD_FILES[kind].name]


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_crds_are_structural(kind):
    schema = schema_of(kind)
    assert find_refs(schema) == []
    assert structural_problems(schema) == []
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_the_checker_catches_what_pydantic_would_emit():
    raw = {
        "type": "object",
        "title": "X",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "b": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    }
    problems = structural_problems(raw)
    assert any("'title'" in p for p in problems)
    assert any(p.startswith(".a: no type") for p in problems)
    assert any("properties and additionalProperties" in p for p in problems)


def test_cluster_profile_has_no_caching_and_profile_has_it():
    assert "caching" in schema_of("AIMProfile")["properties"]["spec"]["properties"]
    assert "caching" not in schema_of("AIMClusterProfile")["properties"]["spec"]["properties"]


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_spec_validation_rules(kind):
    spec = schema_of(kind)["properties"]["spec"]
    props = spec["properties"]
    # aimId is optional as in AIM Engine (base profiles), immutable once set
    assert spec["required"] == ["image"]
    assert "minLength" not in props["aimId"]
    assert props["aimId"]["x-kubernetes-validations"] == [
        {"rule": "oldSelf == '' || self == oldSelf", "message": "aimId is immutable once set"}
    ]
    rules = {r["fieldPath"]: r for r in spec["x-kubernetes-validations"]}
    assert "oldSelf.aimId" in rules[".aimId"]["rule"]  # removing it counts as changing it
    assert "'cpu'" in rules[".acceleratorPartitioningMode"]["rule"]
    assert props["image"]["minLength"] == 1
    assert "auto" not in props["precision"]["enum"]
    assert props["precision"]["enum"] == [
        "fp4", "fp8", "fp16", "fp32", "fp64", "bf16", "int4", "int8"
    ]  # fmt: skip
    assert props["type"]["enum"] == ["optimized", "general", "preview", "unoptimized"]
    assert props["metric"]["enum"] == ["latency", "throughput"]
    assert props["acceleratorType"]["enum"] == ["gpu", "cpu"]
    assert props["acceleratorVendor"]["enum"] == ["amd", "nvidia"]
    assert props["acceleratorModel"]["pattern"] == "^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
    # AIM Engine's 63, plus the reason a model longer than 47 can never match
    assert props["acceleratorModel"]["maxLength"] == 63
    (length,) = props["acceleratorModel"]["x-kubernetes-validations"]
    assert length["rule"] == "size(self) <= 47"
    assert "63-character name limit" in length["message"]
    mode = props["acceleratorPartitioningMode"]
    assert mode["pattern"] == props["acceleratorModel"]["pattern"]
    assert "default" not in mode  # unset means something here (the spec's CPX example)
    assert props["acceleratorCount"]["minimum"] == 0
    assert props["acceleratorCount"]["format"] == "int32"
    # any JSON value, as AIM Engine's schemaless engineArgs
    assert props["engineArgs"] == {
        "description": props["engineArgs"]["description"],
        "x-kubernetes-preserve-unknown-fields": True,
    }
    resources = props["resources"]
    quantity = resources["properties"]["requests"]["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True
    assert quantity["anyOf"] == INT_OR_STRING_BRANCHES
    assert quantity["minimum"] == 0
    assert quantity["pattern"].startswith("^\\+?(")  # an optional plus, never a minus
    assert "quantity(" in resources["x-kubernetes-validations"][0]["rule"]
    assert props["primary"]["default"] is False
    for env in (props["containerEnv"], props["modelSources"]["items"]["properties"]["env"]):
        assert env["x-kubernetes-list-type"] == "map"
        assert env["x-kubernetes-list-map-keys"] == ["name"]
        assert "fileKeyRef" in env["items"]["properties"]["valueFrom"]["properties"]
    assert props["features"]["x-kubernetes-list-type"] == "set"
    assert "required" not in props["imagePullSecrets"]["items"]
    assert set(props["modelSources"]["items"]["properties"]) >= {"size", "env"}
    for field in ("manualSelectionOnly", "variant", "acceleratorVendor"):
        assert field in props


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_status_shape(kind):
    version = load(kind)["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["status"]["default"] == "Pending"
    assert status["status"]["enum"] == [
        "Pending", "Progressing", "Ready", "Degraded", "Failed", "NotAvailable"
    ]  # fmt: skip
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) == {
        "type", "status", "reason", "message", "lastTransitionTime"
    }  # fmt: skip
    assert status["matchingNodes"]["format"] == "int32"
    assert status["observedGeneration"]["format"] == "int64"


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_names_and_printer_columns(kind):
    doc = load(kind)
    names = doc["spec"]["names"]
    assert names["categories"] == ["aim", "all"]
    assert names["shortNames"] == (
        ["aimp", "aimprf"] if kind == "AIMProfile" else ["aimcp", "aimclprf"]
    )
    assert doc["spec"]["scope"] == ("Namespaced" if kind == "AIMProfile" else "Cluster")
    version = doc["spec"]["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha2", True, True)
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == [
        "AIM ID", "Status", "Hardware", "Nodes", "Metric", "Precision", "Type", "Primary",
        "Version", "Partitioning", "Age", "Reason", "Message",
    ]  # fmt: skip
    assert [c["name"] for c in columns if c.get("priority")] == [
        "Partitioning",
        "Reason",
        "Message",
    ]  # fmt: skip (-o wide only)
    assert version["selectableFields"] == [{"jsonPath": ".spec.aimId"}]
    schema = version["schema"]["openAPIV3Schema"]
    for column in columns:
        # a list filter ([?(@.type=="HardwareAvailable")]) selects items of the list field
        path = re.sub(r"\[\?\(@\.[\w]+==\"[^\"]*\"\)\]", ".items", column["jsonPath"])
        *parents, leaf = path.lstrip(".").split(".")
        node = schema
        for part in parents:
            node = node[part] if part == "items" else node["properties"][part]
        if parents != ["metadata"]:
            assert leaf in node["properties"], column


def test_generation_is_deterministic():
    assert crd.render_all() == crd.render_all()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "matcher", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_crds_command_writes_and_check_names_the_stale_file(tmp_path):
    out = tmp_path / "crds"
    result = _run("crds", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in CRD_FILES.values())
    assert _run("crds", "--check", "--out", str(out)).returncode == 0

    stale = out / "aim.eai.amd.com_aimprofiles.yaml"
    stale.write_text(stale.read_text().replace("aimId is immutable", "aimId can change"))
    result = _run("crds", "--check", "--out", str(out))
    assert result.returncode == 1
    assert "aim.eai.amd.com_aimprofiles.yaml" in result.stderr
    assert "aimclusterprofiles" not in result.stderr

    (out / "aim.eai.amd.com_aimclusterprofiles.yaml").unlink()
    result = _run("crds", "--check", "--out", str(out))
    assert result.returncode == 1
    assert "aimclusterprofiles.yaml: missing" in result.stderr


def test_committed_crds_pass_the_check():
    result = _run("crds", "--check", "--out", str(CRD_DIR))
    assert result.returncode == 0, result.stderr


def test_crds_command_writes_both_install_paths_the_same_files():
    # `aim-matcher crds` (no --out) is `make crds`: the bundle's and the chart's directories,
    # byte for byte the same, and `--check` covers both (`make generated-check`).
    assert crd.OUT_DIRS == ("daemonset/crds", "charts/aim-accelerator/crds")
    assert _run("crds", "--check").returncode == 0
    chart = ROOT / "charts" / "aim-accelerator" / "crds"
    assert sorted(p.name for p in chart.iterdir()) == sorted(p.name for p in CRD_FILES.values())
    for path in CRD_FILES.values():
        assert (chart / path.name).read_bytes() == path.read_bytes()
        labels = yaml.safe_load(path.read_text())["metadata"]["labels"]
        assert labels == {"app.kubernetes.io/part-of": "aim-accelerator"}


# --- against an API server (the test API server, or a real cluster) ----------------------------

EXAMPLE_FILES = sorted((ROOT / "examples/profiles").glob("*.yaml")) + sorted(
    (ROOT / "examples/spec").glob("*.yaml")
)


def _example_docs() -> list[dict[str, Any]]:
    return [d for path in EXAMPLE_FILES for d in yaml.safe_load_all(path.read_text()) if d]


def _apply(kube, doc: dict[str, Any]):
    return kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)


def _namespace(kube):
    name = kube.unique("aim-crd-test")
    doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    return name


@pytest.mark.cluster
def test_every_example_is_accepted_by_the_api_server(kube):
    kube.apply_crds()
    namespace = _namespace(kube)
    for doc in _example_docs():
        doc["metadata"]["name"] = kube.unique(doc["metadata"]["name"])[:63]
        if doc["kind"] == "AIMProfile":
            doc["metadata"]["namespace"] = namespace
        result = _apply(kube, doc)
        assert result.returncode == 0, f"{doc['metadata']['name']}: {result.stderr}"
        kind = doc["kind"].lower()
        got = kube.kubectl("get", kind, doc["metadata"]["name"], "-n", namespace, "-o", "json")
        stored = yaml.safe_load(got.stdout)
        # Nothing pruned: every field of the example survived the schema.
        assert stored["spec"] == {**doc["spec"], "primary": doc["spec"].get("primary", False)}
    table = kube.kubectl("get", "aimclusterprofiles", "-o", "wide").stdout.splitlines()[0].split()
    assert table[:4] == ["NAME", "AIM", "ID", "STATUS"]
    assert "VERSION" in table


@pytest.mark.cluster
def test_wide_output_says_why_a_profile_has_its_status(kube):
    kube.apply_crds()
    name = kube.unique("wide")
    doc = {
        "apiVersion": "aim.eai.amd.com/v1alpha2",
        "kind": "AIMClusterProfile",
        "metadata": {"name": name},
        "spec": {"aimId": "qwen/qwen3-32b", "acceleratorModel": "MI355X",
                 "acceleratorType": "gpu", "acceleratorCount": 1,
                 "image": "amdenterpriseai/aim-qwen-qwen3-32b:0.8.5"},
    }  # fmt: skip
    assert _apply(kube, doc).returncode == 0
    message = "No node has label feature.node.kubernetes.io/aim-accelerator.MI355X"
    status = {
        "status": {
            "status": "NotAvailable",
            "conditions": [
                {"type": "Unrelated", "status": "True", "reason": "Other", "message": "other",
                 "lastTransitionTime": "2026-11-02T09:14:00Z"},
                {"type": "HardwareAvailable", "status": "False", "reason": "HardwareNotAvailable",
                 "message": message, "lastTransitionTime": "2026-11-02T09:14:00Z"},
            ],
        }
    }  # fmt: skip
    kube.kubectl("patch", "aimclusterprofile", name, "--subresource=status", "--type=merge",
                 "-p", json.dumps(status))  # fmt: skip
    header, row = kube.kubectl("get", "aimclusterprofile", name, "-o", "wide").stdout.splitlines()
    # After AGE, as kubectl's own wide columns; the HardwareAvailable condition's, not the first.
    assert header.split()[-3:] == ["AGE", "REASON", "MESSAGE"]
    assert row.split()[:1] == [name]
    assert row[header.index("REASON") :].split(None, 1) == ["HardwareNotAvailable", message]
    plain = kube.kubectl("get", "aimclusterprofile", name).stdout.splitlines()[0].split()
    assert "REASON" not in plain
    assert "MESSAGE" not in plain


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("precision", "auto", 'spec.precision: Unsupported value: "auto"'),
        ("acceleratorCount", -1, "spec.acceleratorCount"),
        ("acceleratorModel", "bad model", "spec.acceleratorModel"),
        ("caching", {"enabled": True}, "spec.caching"),
        ("image", None, "spec.image: Required value"),
        ("acceleratorModel", "M" * 50, "63-character name limit"),
        ("acceleratorPartitioningMode", "cpx nps4", "spec.acceleratorPartitioningMode"),
        ("resources", {"requests": {"memory": "-1"}}, "spec.resources.requests"),
        ("resources", {"limits": {"amd.com/gpu": -8}}, "greater than or equal to 0"),
        (
            "resources",
            {"requests": {"memory": "2Gi"}, "limits": {"memory": "1024Mi"}},
            "limits may not be lower than requests",
        ),
        ("containerEnv", [{"name": "A"}, {"name": "A"}], "spec.containerEnv[1]: Duplicate value"),
        ("features", ["adapters", "adapters"], "spec.features[1]: Duplicate value"),
    ],
)
def test_invalid_variants_are_rejected_by_the_api_server(kube, field, value, words):
    kube.apply_crds()
    doc = yaml.safe_load(
        (ROOT / "examples/profiles/qwen-qwen3-32b-mi300x-lat-fp8.yaml").read_text()
    )
    doc["metadata"]["name"] = kube.unique("invalid")
    if value is None:
        del doc["spec"][field]
    else:
        doc["spec"][field] = value
    result = _apply(kube, doc)
    assert result.returncode != 0
    assert words in result.stderr


@pytest.mark.cluster
def test_aim_id_is_immutable_and_status_defaults_to_pending(kube):
    kube.apply_crds()
    doc = yaml.safe_load(
        (ROOT / "examples/profiles/qwen-qwen3-32b-mi300x-lat-fp8.yaml").read_text()
    )
    name = kube.unique("immutable")
    doc["metadata"]["name"] = name
    assert _apply(kube, doc).returncode == 0
    change_id = '{"spec":{"aimId":"other/model"}}'
    result = kube.kubectl(
        "patch", "aimclusterprofile", name, "--type=merge", "-p", change_id, check=False
    )  # fmt: skip
    assert result.returncode != 0
    assert "aimId is immutable" in result.stderr
    # other fields stay mutable
    kube.kubectl(
        "patch", "aimclusterprofile", name, "--type=merge", "-p", '{"spec":{"primary":false}}'
    )
    kube.kubectl(
        "patch", "aimclusterprofile", name, "--subresource=status", "--type=merge",
        "-p", '{"status":{"matchingNodes":0}}',
    )  # fmt: skip
    stored = yaml.safe_load(kube.kubectl("get", "aimclusterprofile", name, "-o", "json").stdout)
    assert stored["status"] == {"status": "Pending", "matchingNodes": 0}
    kube.kubectl("delete", "aimclusterprofile", name)


@pytest.mark.cluster
def test_a_status_from_evaluate_is_accepted_by_the_schema(kube):
    """What the controller writes must pass the CRD's status schema."""
    kube.apply_crds()
    nodes = yaml.safe_load((ROOT / "examples/cluster/nodes.yaml").read_text())["items"]
    cluster = ClusterIndex(node_view(n) for n in nodes)
    for path in sorted((ROOT / "examples/profiles").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] != "AIMClusterProfile":
                continue
            doc["metadata"]["name"] = kube.unique(doc["metadata"]["name"])[:63]
            assert _apply(kube, doc).returncode == 0
            status = evaluate(parse_profile(doc), cluster, MatcherConfig(), datetime.now(UTC))
            kube.kubectl(
                "patch", "aimclusterprofile", doc["metadata"]["name"], "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": status.to_dict()}),
            )  # fmt: skip
            stored = yaml.safe_load(
                kube.kubectl(
                    "get", "aimclusterprofile", doc["metadata"]["name"], "-o", "json"
                ).stdout
            )
            assert stored["status"] == status.to_dict()
            kube.kubectl("delete", "aimclusterprofile", doc["metadata"]["name"])
