"""``aim-matcher check`` and ``select`` as real subprocesses over real YAML files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NODES = ROOT / "examples/cluster/nodes.yaml"
PROFILES = ROOT / "examples/profiles"
CONFIG = ROOT / "examples/cluster/matcher-config.yaml"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "matcher", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )


def example_nodes():
    return yaml.safe_load(NODES.read_text())["items"]


def write_profile(path: Path, name: str, **spec) -> Path:
    doc = {
        "apiVersion": "aim.eai.amd.com/v1alpha2",
        "kind": "AIMClusterProfile",
        "metadata": {"name": name},
        "spec": {"aimId": "qwen/qwen3-32b", "image": "img:1", **spec},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def table_rows(stdout: str) -> dict[str, list[str]]:
    lines = stdout.splitlines()
    name_at = 1 if lines[0].startswith("NAMESPACE") else 0
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        if name_at and "profile/" not in cells[1]:
            cells.insert(0, "")  # a cluster profile: empty NAMESPACE cell
        rows[cells[name_at].rsplit("/", 1)[-1]] = cells
    return rows


def test_check_prints_a_kubectl_like_table_and_exits_1_when_something_is_not_available():
    result = run("check", "--nodes", NODES, "--profiles", PROFILES, "--config", CONFIG)
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    header = result.stdout.splitlines()[0].split()
    assert header == ["NAMESPACE", "NAME", "STATUS", "HARDWARE", "NODES", "REASON", "MESSAGE"]
    rows = table_rows(result.stdout)
    assert rows["qwen-qwen3-32b-mi300x-lat-fp8"][2:8] == [
        "Ready",
        "1",
        "x",
        "MI300X",
        "2",
        "HardwareAvailable",
    ]
    assert rows["qwen-qwen3-32b-mi355x-lat-fp4"][2] == "NotAvailable"
    assert rows["small-model-cpu"][:3] == ["dev-team", "aimprofile/small-model-cpu", "Ready"]
    assert "No node has label feature.node.kubernetes.io/aim-accelerator.MI355X" in result.stdout
    assert len(rows) == 11


def test_check_exits_0_when_every_profile_is_ready(tmp_path):
    write_profile(
        tmp_path / "a.yaml",
        "a",
        acceleratorModel="MI300X",
        acceleratorType="gpu",
        acceleratorCount=1,
    )
    write_profile(tmp_path / "b.yml", "b")
    result = run("check", "--nodes", NODES, "--profiles", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "STATUS"]  # no NAMESPACE column without namespaced ones
    assert [line.split()[0] for line in lines[1:]] == ["a", "b"]


def test_check_json_output_carries_full_statuses():
    result = run(
        "check",
        "--nodes",
        NODES,
        "--profiles",
        PROFILES / "qwen-qwen3-32b-mi300x-lat-fp8.yaml",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["kind"] == "List"
    (item,) = listing["items"]
    status = item["status"]
    assert status["status"] == "Ready"
    assert status["matchingNodes"] == 2
    assert status["version"] == "0.8.5"
    assert status["resources"]["requests"] == {"amd.com/gpu": "1", "cpu": "4", "memory": "32Gi"}
    assert item["spec"]["aimId"] == "qwen/qwen3-32b"


def test_check_yaml_output():
    result = run(
        "check", "--nodes", NODES, "--profiles", PROFILES / "small-model-cpu.yaml", "-o", "yaml"
    )
    assert result.returncode == 0
    listing = yaml.safe_load(result.stdout)
    assert listing["items"][0]["status"]["conditions"][0]["reason"] == "NoAcceleratorSpecified"


def test_bad_inputs_get_one_line_each_and_the_rest_is_still_evaluated(tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    write_profile(
        profiles / "good.yaml",
        "good",
        acceleratorModel="MI300X",
        acceleratorType="gpu",
        acceleratorCount=1,
    )
    write_profile(profiles / "auto.yaml", "auto", precision="auto")
    (profiles / "broken.yaml").write_text("apiVersion: aim.eai.amd.com/v1alpha2\nkind: [unclosed\n")
    (profiles / "multi.yaml").write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "aim.eai.amd.com/v1alpha2",
                    "kind": "AIMClusterProfile",
                    "metadata": {"name": "cached"},
                    "spec": {"aimId": "x", "image": "i", "caching": {"enabled": True}},
                },
                {
                    "apiVersion": "aim.eai.amd.com/v1alpha2",
                    "kind": "AIMClusterProfile",
                    "metadata": {"name": "second"},
                    "spec": {"aimId": "x", "image": "i"},
                },
            ]
        )
    )
    nodes = example_nodes()
    del nodes[0]["status"]["allocatable"]
    nodes_file = tmp_path / "nodes.yaml"
    nodes_file.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": nodes}))

    result = run("check", "--nodes", nodes_file, "--profiles", profiles)
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    assert (
        f"error: {nodes_file}: items[0] (node/mi300x-0): node mi300x-0: status.allocatable: missing"
        in errors
    )
    assert any(
        e.startswith(
            f"error: {profiles / 'auto.yaml'} (aimclusterprofile/auto): "
            "spec.precision: Input should be 'fp4'"
        )
        for e in errors
    )
    assert any(
        e.startswith(f"error: {profiles / 'broken.yaml'}: line ") and "invalid YAML" in e
        for e in errors
    )
    assert any(
        e.startswith(
            f"error: {profiles / 'multi.yaml'}: document 1 (aimclusterprofile/cached): "
            "spec.caching: caching is not a field of AIMClusterProfile"
        )
        for e in errors
    )
    assert len(errors) == 4
    rows = table_rows(result.stdout)
    assert sorted(rows) == ["good", "second"]
    assert rows["good"][1] == "Ready"
    # mi300x-0 was dropped, mi300x-2 is cordoned; mi300x-cpx-0's amd.com/gpu are partitions
    assert rows["good"][5] == "1"


@pytest.mark.parametrize(
    ("resources", "words"),
    [
        ({"requests": {"memory": "-1"}}, "spec.resources.requests.memory: '-1' is negative"),
        ({"limits": {"amd.com/gpu": -8}}, "spec.resources.limits.amd.com/gpu: -8 is negative"),
        (
            {"requests": {"cpu": "8"}, "limits": {"cpu": "4"}},
            "spec.resources.limits: cpu: limit 4 is below its request 8",
        ),
    ],
)
def test_negative_quantities_and_limits_below_requests_are_invalid_input(
    tmp_path, resources, words
):
    """Issue 13: these used to be accepted and Ready, advertising what no pod can use."""
    path = write_profile(tmp_path / "p.yaml", "p", resources=resources)
    result = run("check", "--nodes", NODES, "--profiles", path)
    assert result.returncode == 2
    assert f"error: {path} (aimclusterprofile/p): {words}" in result.stderr


def test_node_files_may_be_multi_document_or_a_single_node(tmp_path):
    nodes = example_nodes()
    multi = tmp_path / "multi.yaml"
    multi.write_text(yaml.safe_dump_all(nodes[:2]))
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump(nodes[5]))  # mi325x-0
    profile = write_profile(
        tmp_path / "p.yaml",
        "p",
        acceleratorModel="MI300X",
        acceleratorType="gpu",
        acceleratorCount=1,
    )
    result = run("check", "--nodes", multi, "--nodes", single, "--profiles", profile, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["items"][0]["status"]["matchingNodes"] == 2
    mi325 = write_profile(
        tmp_path / "q.yaml",
        "q",
        acceleratorModel="MI325X",
        acceleratorType="gpu",
        acceleratorCount=8,
    )
    result = run("check", "--nodes", single, "--profiles", mi325, "-o", "json")
    assert json.loads(result.stdout)["items"][0]["status"]["matchingNodes"] == 1


def test_a_non_node_in_the_nodes_file_is_named(tmp_path):
    nodes_file = tmp_path / "nodes.yaml"
    nodes_file.write_text(
        yaml.safe_dump_all(
            [example_nodes()[0], {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}]
        )
    )
    result = run("check", "--nodes", nodes_file, "--profiles", PROFILES / "small-model-cpu.yaml")
    assert result.returncode == 2
    assert f"error: {nodes_file}: document 2: kind: expected Node, got 'Pod'" in result.stderr


def test_config_changes_the_outcome_and_bad_config_is_refused(tmp_path):
    config = tmp_path / "cm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": {"countNotReadyNodes": "true"},
            }
        )
    )
    profile = PROFILES / "qwen-qwen3-32b-mi325x-thr-fp8.yaml"
    result = run("check", "--nodes", NODES, "--profiles", profile, "--config", config, "-o", "json")
    assert json.loads(result.stdout)["items"][0]["status"]["matchingNodes"] == 2

    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": {"countNotReady": "true"},
            }
        )
    )
    result = run("check", "--nodes", NODES, "--profiles", profile, "--config", config)
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"error: {config}: data.countNotReady: unknown key (known keys: "
        "acceleratorPreference, countNotReadyNodes, countUnschedulableNodes, gpuResourceName, "
        "inferAcceleratorType)"
    )


def test_missing_file_is_one_clear_line(tmp_path):
    result = run("check", "--nodes", tmp_path / "nope.yaml", "--profiles", PROFILES)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: no such file or directory"


def test_select_prints_the_choice_and_why_the_others_lost():
    result = run(
        "select",
        "--nodes",
        NODES,
        "--profiles",
        PROFILES,
        "--aim-id",
        "qwen/qwen3-32b",
        "--metric",
        "latency",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "chosen: aimclusterprofile/qwen-qwen3-32b-mi300x-lat-fp8 (cluster, primary, type optimized"
    )
    assert (
        "  not chosen: aimclusterprofile/qwen-qwen3-32b-mi355x-lat-fp4: not Ready (NotAvailable)"
        in lines
    )


def test_select_namespace_and_non_primary_json():
    result = run(
        "select", "--nodes", NODES, "--profiles", PROFILES, "--aim-id", "qwen/qwen3-32b",
        "--namespace", "ml-team", "--include-non-primary", "--precision", "fp8", "-o", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["chosen"] == {
        "kind": "AIMProfile",
        "name": "my-finetuned-qwen-mi300x-lat-fp8",
        "namespace": "ml-team",
    }
    lost = {r["name"]: r["reason"] for r in doc["rejected"]}
    assert (
        lost["qwen-qwen3-32b-mi300x-lat-fp8"]
        == "a namespaced profile takes precedence over cluster profiles"
    )


def test_select_wide_shows_the_ranking_one_column_per_criterion(tmp_path):
    result = run(
        "select", "--nodes", NODES, "--profiles", PROFILES, "--aim-id", "qwen/qwen3-32b",
        "--include-non-primary", "-o", "wide",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("chosen: aimclusterprofile/qwen-qwen3-32b-mi325x-thr-fp8 (")
    assert lines[1].split() == [
        "RANK", "PROFILE", "SCOPE", "PRIMARY", "TYPE", "ACCELERATOR", "METRIC", "PRECISION",
        "DEVICES", "KIND", "VERSION", "RESULT",
    ]  # fmt: skip
    rows = {line.split()[1]: line.split() for line in lines[2:-1]}
    assert [r[0] for r in rows.values()] == ["1", "2", "3", "4", "-", "-", "-"]
    chosen = rows["aimclusterprofile/qwen-qwen3-32b-mi325x-thr-fp8"]
    assert chosen[2:] == [
        "cluster", "true", "optimized", "MI325X", "throughput", "fp8", "8", "gpu", "0.8.5",
        "chosen",
    ]  # fmt: skip
    second = " ".join(rows["aimclusterprofile/qwen-qwen3-32b-mi300x-lat-fp8"][11:])
    assert second.startswith("accelerator MI300X ranks below MI325X")
    assert rows["aimclusterprofile/qwen-qwen3-32b-mi355x-lat-fp4"][11:] == [
        "not", "Ready", "(NotAvailable)"
    ]  # fmt: skip
    assert lines[-1] == (
        "ranking: scope > primary > type > accelerator > metric > precision > devices > kind > "
        "version > name"
    )

    # the accelerator preference is the matcher config's
    config = tmp_path / "cm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": {"acceleratorPreference": "MI300X, MI325X"},
            }
        )
    )
    result = run(
        "select", "--nodes", NODES, "--profiles", PROFILES, "--aim-id", "qwen/qwen3-32b",
        "--config", config, "-o", "json",
    )  # fmt: skip
    doc = json.loads(result.stdout)
    assert doc["chosen"]["name"] == "qwen-qwen3-32b-mi300x-lat-fp8"
    assert [(r["rank"], r["name"], r["accelerator"]) for r in doc["ranking"]] == [
        (1, "qwen-qwen3-32b-mi300x-lat-fp8", "MI300X"),
        (2, "qwen-qwen3-32b-mi325x-thr-fp8", "MI325X"),
    ]


def test_select_with_nothing_to_choose_exits_1():
    result = run(
        "select",
        "--nodes",
        NODES,
        "--profiles",
        PROFILES,
        "--aim-id",
        "meta-llama/llama-3.1-405b-instruct",
    )
    assert result.returncode == 1
    assert result.stdout.startswith(
        "chosen: none (no Ready profile for aimId meta-llama/llama-3.1-405b-instruct matches)"
    )


def test_usage_errors_exit_2():
    assert run("check", "--profiles", PROFILES).returncode == 2
    assert run("frobnicate").returncode == 2


def test_run_forwards_to_the_controller():
    pytest.importorskip("matcher.controller.app")
    result = run("run", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
