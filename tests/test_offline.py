"""``aim-matcher check`` and ``select`` as real subprocesses over real YAML and JSON files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.realistic import (
    realistic_nodes,
    realistic_profiles,
    write_json_list,
    write_yaml_documents,
    write_yaml_list,
)

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
        f"warning: {nodes_file}: items[0] (node/mi300x-0): node mi300x-0: status.allocatable: "
        "missing; left out until the kubelet reports it"
    ) in errors
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
    assert len(errors) == 4  # three errors and the warning
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
        "inferAcceleratorType, webhookNamespaces, webhookNotAvailable)"
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
    missing = run("check", "--profiles", PROFILES)
    assert missing.returncode == 2
    assert (
        "aim-matcher check: error: --nodes required (or --kubeconfig/--context to read a cluster)"
        in missing.stderr
    )
    assert run("select", "--nodes", NODES, "--aim-id", "x").returncode == 2
    assert run("frobnicate").returncode == 2


def test_a_missing_kubeconfig_is_one_line_and_exit_2(tmp_path):
    result = run("check", "--kubeconfig", tmp_path / "nope" / "config")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: kubeconfig {tmp_path / 'nope' / 'config'}: no such file "
        f"(no directory {tmp_path / 'nope'})\n"
    )


def test_run_forwards_to_the_controller():
    pytest.importorskip("matcher.controller.app")
    result = run("run", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


# --- JSON, stdin and streaming -------------------------------------------------------------------


def run_with_input(*args: str | Path, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "matcher", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


def realistic_cluster(tmp_path: Path, nodes: int = 150, profiles: int = 60) -> dict[str, Path]:
    """The same realistic cluster as kubectl's JSON and YAML, as one multi-document file of
    Nodes, and profiles as YAML documents and as a JSON List."""
    items = list(realistic_nodes(nodes, seed=3))
    files = {
        "json": tmp_path / "nodes.json",
        "yaml": tmp_path / "nodes.yaml",
        "documents": tmp_path / "nodes-docs.yaml",
        "profiles": tmp_path / "profiles.yaml",
        "profiles-json": tmp_path / "profiles.json",
    }
    write_json_list(files["json"], items)
    write_yaml_list(files["yaml"], items)
    write_yaml_documents(files["documents"], items)
    profile_objs = list(realistic_profiles(profiles, seed=3))
    write_yaml_documents(files["profiles"], profile_objs)
    write_json_list(files["profiles-json"], profile_objs)
    return files


def test_json_yaml_and_documents_give_the_same_result_on_the_same_cluster(tmp_path):
    files = realistic_cluster(tmp_path)
    runs = {
        (nodes, profiles, output): run(
            "check", "--nodes", files[nodes], "--profiles", files[profiles], "-o", output
        )
        for nodes, profiles, output in [
            ("json", "profiles", "json"),
            ("yaml", "profiles", "json"),
            ("documents", "profiles", "json"),
            ("json", "profiles-json", "json"),
            ("json", "profiles", "table"),
            ("yaml", "profiles", "table"),
        ]
    }
    for result in runs.values():
        assert result.returncode == 1, result.stderr  # the MI400X profiles are NotAvailable
        assert result.stderr == ""
    for output in ("json", "table"):
        texts = {_without_times(r.stdout) for key, r in runs.items() if key[2] == output}
        assert len(texts) == 1
    items = json.loads(runs["json", "profiles", "json"].stdout)["items"]
    assert {i["status"]["status"] for i in items} == {"Ready", "NotAvailable"}
    assert max(i["status"]["matchingNodes"] for i in items) > 100


def _without_times(text: str) -> str:
    """Conditions carry the time of the run."""
    return "\n".join(line for line in text.splitlines() if "lastTransitionTime" not in line)


def test_nodes_from_stdin_in_either_format(tmp_path):
    files = realistic_cluster(tmp_path, nodes=50, profiles=20)
    expected = run("check", "--nodes", files["yaml"], "--profiles", files["profiles"])
    for form in ("json", "yaml"):
        result = run_with_input(
            "check", "--nodes", "-", "--profiles", files["profiles"], stdin=files[form].read_text()
        )
        assert result.returncode == expected.returncode == 1, result.stderr
        assert result.stdout == expected.stdout


def test_profiles_from_stdin_and_stdin_only_once(tmp_path):
    result = run_with_input(
        "check", "--nodes", NODES, "--profiles", "-", "-o", "json",
        stdin=(PROFILES / "qwen-qwen3-32b-mi300x-lat-fp8.yaml").read_text(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["items"][0]["status"]["matchingNodes"] == 2
    twice = run_with_input("check", "--nodes", "-", "--profiles", "-", stdin="")
    assert twice.returncode == 2
    assert twice.stderr == "error: standard input (-) can be given only once\n"


def test_messages_name_stdin_and_json_items(tmp_path):
    nodes = example_nodes()
    nodes[1]["status"]["allocatable"]["cpu"] = "lots"
    listing = json.dumps({"apiVersion": "v1", "items": nodes, "kind": "List"}, indent=4)
    result = run_with_input(
        "check", "--nodes", "-", "--profiles", PROFILES / "small-model-cpu.yaml", stdin=listing
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: <stdin>: items[1] (node/mi300x-1): node mi300x-1: status.allocatable['cpu']: "
    )


def test_a_directory_of_profiles_may_hold_json(tmp_path):
    profile = yaml.safe_load((PROFILES / "qwen-qwen3-32b-mi300x-lat-fp8.yaml").read_text())
    (tmp_path / "p.json").write_text(json.dumps(profile))
    (tmp_path / "notes.txt").write_text("not read")
    result = run("check", "--nodes", NODES, "--profiles", tmp_path)
    assert result.returncode == 0, result.stderr
    assert table_rows(result.stdout)["qwen-qwen3-32b-mi300x-lat-fp8"][1] == "Ready"


def test_a_node_without_allocatable_is_a_warning_not_a_failed_run(tmp_path):
    nodes = example_nodes()
    registering = {k: v for k, v in nodes[0].items()}
    registering["metadata"] = {**nodes[0]["metadata"], "name": "registering"}
    registering["status"] = {"conditions": nodes[0]["status"]["conditions"]}
    nodes_file = tmp_path / "nodes.yaml"
    nodes_file.write_text(yaml.safe_dump_all([*nodes, registering]))
    profile = PROFILES / "qwen-qwen3-32b-mi300x-lat-fp8.yaml"
    result = run("check", "--nodes", nodes_file, "--profiles", profile, "-o", "json")
    assert result.returncode == 0
    assert result.stderr == (
        f"warning: {nodes_file}: document 11 (node/registering): node registering: "
        "status.allocatable: missing; left out until the kubelet reports it\n"
    )
    assert json.loads(result.stdout)["items"][0]["status"]["matchingNodes"] == 2


def test_a_file_that_stops_parsing_contributes_nothing(tmp_path):
    """As before streaming: the nodes read before the syntax error are taken back out."""
    nodes = example_nodes()
    good = tmp_path / "a-good.yaml"
    good.write_text(yaml.safe_dump_all(nodes[:1]))  # mi300x-0
    broken = tmp_path / "b-broken.json"
    text = json.dumps({"apiVersion": "v1", "items": nodes, "kind": "List"}, indent=4)
    broken.write_text(text[: text.rindex("mi325x-0")] + "\n  oops")  # cut in the 6th item
    profile = PROFILES / "qwen-qwen3-32b-mi300x-lat-fp8.yaml"
    result = run("check", "--nodes", good, "--nodes", broken, "--profiles", profile, "-o", "json")
    assert result.returncode == 2
    (error,) = result.stderr.splitlines()
    assert error.startswith(f"error: {broken}: line ")
    assert "invalid JSON" in error
    # mi300x-0 stays as a-good.yaml gave it; mi300x-1 and mi300x-cpx-0 from the broken file
    # are gone, and no "appears twice" for mi300x-0 either.
    assert json.loads(result.stdout)["items"][0]["status"]["matchingNodes"] == 1


# --- hostile input -------------------------------------------------------------------------------


def bomb_profile(tmp_path: Path, levels: int = 9) -> Path:
    """The alias bomb of issue 13, in a profile's engineArgs: 9**levels strings once expanded."""
    lines = ['    l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"    l{level}: &l{level} [{refs}]")
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "apiVersion: aim.eai.amd.com/v1alpha2\nkind: AIMClusterProfile\n"
        "metadata:\n  name: bomb\nspec:\n  aimId: qwen/qwen3-32b\n  image: img:1\n"
        "  engineArgs:\n" + "\n".join(lines) + "\n"
    )
    return path


def test_an_alias_bomb_is_refused_with_exit_2_and_the_rest_evaluated(tmp_path):
    bomb = bomb_profile(tmp_path)
    result = run(
        "check", "--nodes", NODES, "--profiles", bomb, "--profiles", PROFILES, "-o", "json"
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {bomb}: line 14: aliases expand to more than 100,000 nodes in this document: "
        "refused (an alias bomb?)\n"
    )
    examples = [d for f in PROFILES.glob("*.yaml") for d in yaml.safe_load_all(f.read_text())]
    assert len(json.loads(result.stdout)["items"]) == len(examples)  # every other profile


def test_aliases_a_profile_may_use_are_kept(tmp_path):
    path = bomb_profile(tmp_path, levels=3)  # 729 strings: a big but honest engineArgs
    result = run("check", "--nodes", NODES, "--profiles", path, "-o", "json")
    assert result.returncode == 0, result.stderr
    args = json.loads(result.stdout)["items"][0]["spec"]["engineArgs"]
    assert len(args["l2"]) == 9
    assert args["l2"][8][8] == ["lol"] * 9


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_50000_nested_brackets_are_bad_input_not_a_crash(tmp_path, fmt):
    path = tmp_path / f"deep.{fmt}"
    deep = "[" * 50_000 + "]" * 50_000
    path.write_text(
        f"apiVersion: aim.eai.amd.com/v1alpha2\nkind: AIMClusterProfile\nmetadata: {{name: deep}}\n"
        f"spec: {{aimId: x, image: i, engineArgs: {{a: {deep}}}}}\n"
        if fmt == "yaml"
        else '{"kind": "AIMClusterProfile", "spec": {"engineArgs": ' + deep + "}}"
    )
    result = run("check", "--nodes", NODES, "--profiles", path)
    assert result.returncode == 2  # not 1: that would read as "some profile NotAvailable"
    assert "Traceback" not in result.stderr
    (error,) = result.stderr.splitlines()
    assert error.startswith(f"error: {path}: line ")
    assert "nesting deeper than 100 levels" in error or "maximum nesting depth" in error


def test_duplicate_keys_are_refused_naming_file_line_and_key(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        (PROFILES / "qwen-qwen3-32b-mi300x-lat-fp8.yaml").read_text()
        + "---\n"
        + (PROFILES / "small-model-cpu.yaml")
        .read_text()
        .replace("  image:", "  precision: fp16\n  image:")
    )
    result = run("check", "--nodes", NODES, "--profiles", path)
    assert result.returncode == 2
    line = path.read_text().splitlines().index("  precision: fp16") + 1
    assert result.stderr == f"error: {path}: document 2: line {line}: duplicate key 'precision'\n"
    assert list(table_rows(result.stdout)) == ["qwen-qwen3-32b-mi300x-lat-fp8"]


def test_an_unquoted_timestamp_in_a_profile_is_written_as_kubernetes_writes_it(tmp_path):
    doc = (
        (PROFILES / "small-model-cpu.yaml")
        .read_text()
        .replace(
            "  name: small-model-cpu",
            "  name: small-model-cpu\n  creationTimestamp: 2026-11-02T09:14:00Z",
        )
    )
    path = tmp_path / "p.yaml"
    path.write_text(doc)
    result = run("check", "--nodes", NODES, "--profiles", path, "-o", "json")
    assert result.returncode == 0, result.stderr
    meta = json.loads(result.stdout)["items"][0]["metadata"]
    assert meta["creationTimestamp"] == "2026-11-02T09:14:00Z"


def test_a_closed_pipe_ends_the_output_quietly():
    """``aim-matcher check ... | head -1``: the reader goes away before the table is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "matcher", "check", "--nodes", NODES, "--profiles", PROFILES],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # like head after its line, but before any: the first write breaks
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1  # still what the check found: some NotAvailable
    assert stderr == ""
