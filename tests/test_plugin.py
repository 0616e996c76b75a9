"""``kubectl aim`` through the real kubectl (it finds ``kubectl-aim`` on PATH), on the test API
server and on kube-apiserver: what it prints, its exit codes, and that it agrees with
``aim-matcher check`` on the same objects and with the statuses the controller writes."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from detector.labels import OWNED_LABELS_ANNOTATION, partition_label_key
from tests.conftest import Kube
from tests.controller_support import (
    MI300X,
    MI325X,
    cluster_profile,
    create_node,
    gpu_labels,
    node_obj,
    start_controller,
    wait_for,
)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CPX = partition_label_key("CPX-NPS4")
CONFIG_MAP = "aim-matcher-config"


def kubectl_aim(
    kube: Kube, *args: str, env: dict[str, str] | None = None, flag: bool = True
) -> subprocess.CompletedProcess[str]:
    """``kubectl aim ARGS`` with the venv's bin on PATH, as an installed package puts it.

    kubectl's own flags go after the plugin's name (kubectl hands everything after ``aim`` to
    the plugin), so ``--kubeconfig`` is given there, or through $KUBECONFIG (``flag=False``).
    """
    assert (BIN / "kubectl-aim").exists(), "the package's kubectl-aim script is not installed"
    base = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "PYTHONPATH")}
    base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
    base["HOME"] = str(kube.cache_dir)
    if not flag:
        base["KUBECONFIG"] = str(kube.kubeconfig)
    cluster = ["--kubeconfig", str(kube.kubeconfig)] if flag else []
    command = [str(ROOT / ".tools" / "bin" / "kubectl"), "aim", *cluster, *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
        check=False,
    )


def matcher_check(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "matcher", "check", "--kubeconfig", str(kube.kubeconfig), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def ensure_namespace(core: Any, name: str) -> None:
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except client.ApiException as err:
        if err.status != 409:
            raise


def namespaced_profile(name: str, namespace: str, model: str, count: int) -> dict[str, Any]:
    obj = cluster_profile(name, model, count)
    obj["kind"] = "AIMProfile"
    obj["metadata"]["namespace"] = namespace
    return obj


def statuses(stdout: str) -> dict[str, tuple[str, int, str]]:
    """``-o json`` of check: name -> (status, matchingNodes, message)."""
    out = {}
    for item in json.loads(stdout)["items"]:
        meta, status = item["metadata"], item["status"]
        key = f"{meta.get('namespace', '')}/{meta['name']}"
        (condition,) = [c for c in status["conditions"] if c["type"] == "HardwareAvailable"]
        out[key] = (status["status"], status["matchingNodes"], condition["message"])
    return out


@pytest.fixture
def world(kube: Kube) -> dict[str, Any]:
    """Four nodes (whole MI300X GPUs, CPX-partitioned MI300X, a cordoned MI325X, a CPU node),
    four cluster profiles, two AIMProfiles, and the matcher's ConfigMap."""
    api = kube.api_client()
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    run = kube.unique("aim")
    nodes = {
        "whole": node_obj(f"{run}-whole", gpu_labels(MI300X)),
        "cpx": node_obj(f"{run}-cpx", {MI300X: "8", CPX: "64"}, gpus=64),
        "cordoned": node_obj(f"{run}-cordoned", gpu_labels(MI325X), unschedulable=True),
        "cpu": node_obj(f"{run}-cpu", gpus=0),
    }
    for obj in nodes.values():
        obj["metadata"]["labels"]["aim.test/run"] = run
        create_node(core, obj)
    profiles = {
        "one": cluster_profile(f"{run}-one", "MI300X", 1),
        "sixteen": cluster_profile(f"{run}-sixteen", "MI300X", 16),
        "cpx": cluster_profile(f"{run}-cpx", "MI300X", 4, acceleratorPartitioningMode="CPX-NPS4"),
        "mi325x": cluster_profile(f"{run}-mi325x", "MI325X", 8),
    }
    for obj in profiles.values():
        custom.create_cluster_custom_object(
            "aim.eai.amd.com", "v1alpha2", "aimclusterprofiles", obj
        )
    ns = f"{run}-team"
    ensure_namespace(core, ns)
    team = {
        # Same name as a cluster profile: -n makes the namespaced one win.
        "one": namespaced_profile(f"{run}-one", ns, "MI300X", 2),
        "mine": namespaced_profile(f"{run}-mine", ns, "MI300X", 8),
    }
    for obj in team.values():
        custom.create_namespaced_custom_object(
            "aim.eai.amd.com", "v1alpha2", ns, "aimprofiles", obj
        )
    ensure_namespace(core, "aim-system")
    core.create_namespaced_config_map(
        "aim-system",
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name=CONFIG_MAP), data={}),
    )
    return {"run": run, "ns": ns, "nodes": nodes, "profiles": profiles, "team": team,
            "core": core, "custom": custom}  # fmt: skip


def _mine(world: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Only this test's objects (a real cluster has others)."""
    return {k: v for k, v in result.items() if world["run"] in k}


def test_check_is_aim_matcher_check_on_the_live_cluster(kube, world, tmp_path):
    proc = kubectl_aim(kube, "check", "-o", "json")
    assert proc.returncode == 1, proc.stderr  # some profiles are NotAvailable
    got = _mine(world, statuses(proc.stdout))
    run, ns = world["run"], world["ns"]
    assert {k: v[:2] for k, v in got.items()} == {
        f"/{run}-one": ("Ready", 1),
        f"/{run}-sixteen": ("NotAvailable", 0),
        f"/{run}-cpx": ("Ready", 1),
        f"/{run}-mi325x": ("NotAvailable", 0),  # its only node is cordoned
        f"{ns}/{run}-one": ("Ready", 1),
        f"{ns}/{run}-mine": ("Ready", 1),
    }
    assert "all are left out: 1 cordoned" in got[f"/{run}-mi325x"][2]

    # aim-matcher check --kubeconfig prints the very same, and so does aim-matcher check on the
    # files kubectl writes of the same objects.
    same = matcher_check(kube, "-o", "json")
    assert same.returncode == 1
    assert _mine(world, statuses(same.stdout)) == got
    nodes = tmp_path / "nodes.json"
    nodes.write_text(kube.kubectl("get", "nodes", "-o", "json").stdout)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(
        kube.kubectl("get", "aimclusterprofiles,aimprofiles", "-A", "-o", "yaml").stdout
    )
    config = tmp_path / "cm.yaml"
    config.write_text(
        kube.kubectl("-n", "aim-system", "get", "configmap", CONFIG_MAP, "-o", "yaml").stdout
    )
    files = subprocess.run(
        [sys.executable, "-m", "matcher", "check", "--nodes", str(nodes), "--profiles",
         str(profiles), "--config", str(config), "-o", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert _mine(world, statuses(files.stdout)) == got

    # select reads the cluster the same way: the namespace's AIMProfile with fewer GPUs wins.
    chosen = subprocess.run(
        [sys.executable, "-m", "matcher", "select", "--kubeconfig", str(kube.kubeconfig),
         "--aim-id", "qwen/qwen3-32b", "--namespace", ns, "--include-non-primary", "-o", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout)["chosen"] == {
        "kind": "AIMProfile", "name": f"{run}-one", "namespace": ns
    }  # fmt: skip

    # The table, through $KUBECONFIG instead of the flag; -n lists one namespace's AIMProfiles.
    table = kubectl_aim(kube, "check", "-n", ns, flag=False)
    assert table.returncode == 1, table.stderr
    rows = [line.split()[:3] for line in table.stdout.splitlines()]
    assert rows[0] == ["NAMESPACE", "NAME", "STATUS"]
    assert [ns, f"aimprofile/{run}-mine", "Ready"] in rows
    # Cluster profiles have no NAMESPACE cell; every AIMProfile row is in ns.
    assert {r[0] for r in rows[1:] if r[0].startswith("aimprofile/")} == set()
    assert {r[0] for r in rows[1:] if not r[0].startswith("aimclusterprofile/")} == {ns}


def test_check_exit_codes(kube, world, tmp_path):
    ns = world["ns"]
    # Only Ready profiles in view: 0. The cluster profiles are always in view, so drop the
    # NotAvailable ones first.
    custom = world["custom"]
    for key in ("sixteen", "mi325x"):
        name = world["profiles"][key]["metadata"]["name"]
        custom.delete_cluster_custom_object(
            "aim.eai.amd.com", "v1alpha2", "aimclusterprofiles", name
        )
    others = [
        line.split()[0]
        for line in kube.kubectl("get", "aimclusterprofiles", "--no-headers").stdout.splitlines()
        if world["run"] not in line
    ]
    if others:
        pytest.skip(f"the cluster has other cluster profiles: {others[:3]}")
    proc = kubectl_aim(kube, "check", "-n", ns)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # A matcher ConfigMap with a typo is bad input: 2, naming the key.
    world["core"].patch_namespaced_config_map(
        CONFIG_MAP, "aim-system", {"data": {"gpuResourceNme": "x"}}
    )
    proc = kubectl_aim(kube, "check")
    assert proc.returncode == 2
    assert f"configmap aim-system/{CONFIG_MAP}: data.gpuResourceNme: unknown key" in proc.stderr
    # Without it, the defaults apply and say so.
    world["core"].delete_namespaced_config_map(CONFIG_MAP, "aim-system")
    proc = kubectl_aim(kube, "check", "-n", ns)
    assert proc.returncode == 0
    assert (
        f"note: ConfigMap aim-system/{CONFIG_MAP} not found: the default settings apply"
        in proc.stderr
    )
    # Another one, by name.
    proc = kubectl_aim(kube, "check", "--config-map", "kube-system/nope")
    assert "ConfigMap kube-system/nope not found" in proc.stderr

    # A server nobody answers on: 2, one line.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: c, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: c}}]\n"
    )
    proc = kubectl_aim(kube, "check", env={"KUBECONFIG": str(dead)}, flag=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: get configmap aim-system/{CONFIG_MAP}: cannot reach https://127.0.0.1:{port}: "
        "connection refused"
    ]
    # A context that is not there, and --context for one that is.
    proc = kubectl_aim(kube, "--context", "nope", "check")
    assert proc.returncode == 2
    assert "context 'nope' not found" in proc.stderr
    current = yaml.safe_load(kube.kubeconfig.read_text())["current-context"]
    assert kubectl_aim(kube, "check", "--context", current, "-n", ns).returncode == 0


def test_check_against_profile_files_before_the_crds_exist(kube, world, tmp_path):
    """Local profiles against the live nodes: what a team sees before it installs anything."""
    files = tmp_path / "profiles"
    files.mkdir()
    mine = world["profiles"]["one"]
    (files / "p.yaml").write_text(yaml.safe_dump({**mine, "metadata": {"name": "from-file"}}))
    proc = kubectl_aim(kube, "check", "-f", str(files), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert statuses(proc.stdout)["/from-file"][:2] == ("Ready", 1)


def test_nodes_lists_what_each_node_serves(kube, world):
    run = world["run"]
    selector = f"aim.test/run={run}"
    proc = kubectl_aim(kube, "nodes", "-l", selector)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[0] == ["NAME", "STATUS", "ACCELERATORS", "PROFILES"]
    assert rows[1:] == [
        [f"{run}-cordoned", "Ready,SchedulingDisabled", "MI325X=8", "0"],
        [f"{run}-cpu", "Ready", "<no-detector>", "0"],
        [f"{run}-cpx", "Ready", "MI300X=8", "1"],
        [f"{run}-whole", "Ready", "MI300X=8", "3"],
    ]
    # Where the detector ran and found nothing, its mark (an empty annotation) says so.
    client.CoreV1Api(kube.api_client()).patch_node(
        f"{run}-cpu", {"metadata": {"annotations": {OWNED_LABELS_ANNOTATION: ""}}}
    )
    marked = kubectl_aim(kube, "nodes", "-l", selector, "--no-headers", "-o", "wide")
    assert marked.stdout.splitlines()[1].split()[:3] == [f"{run}-cpu", "Ready", "<none-found>"]

    doc = json.loads(kubectl_aim(kube, "nodes", "-l", selector, "-o", "json").stdout)
    by_name = {n["name"]: n for n in doc["nodes"]}
    assert [by_name[f"{run}-{k}"]["detectorRan"] for k in ("cpu", "whole")] == [True, False]
    ns = world["ns"]
    assert by_name[f"{run}-whole"]["serves"] == [
        f"aimclusterprofile/{run}-one",
        f"aimprofile/{ns}/{run}-mine",
        f"aimprofile/{ns}/{run}-one",
    ]
    assert by_name[f"{run}-whole"]["partitioning"] == {"default": "8"}
    (near, *_) = by_name[f"{run}-whole"]["nearMisses"]
    assert near == {
        "profiles": [f"aimclusterprofile/{run}-sixteen"],
        "missing": [{"kind": "resource", "text": "amd.com/gpu 8 (needs 16)",
                     "key": "amd.com/gpu", "need": "16", "have": "8"}],
    }  # fmt: skip
    assert by_name[f"{run}-cordoned"]["nearMisses"][0]["missing"] == [
        {"kind": "cordoned", "text": "cordoned"}
    ]
    # The count per profile is its matchingNodes.
    served: dict[str, int] = {}
    for node in doc["nodes"]:
        for ref in node["serves"]:
            served[ref] = served.get(ref, 0) + 1
    assert served[f"aimclusterprofile/{run}-one"] == 1
    assert f"aimclusterprofile/{run}-sixteen" not in served

    # Filters: by model (a label selector the API server applies) and by what is served.
    wide = kubectl_aim(kube, "nodes", "-l", selector, "--model", "MI300X", "-o", "wide")
    lines = wide.stdout.splitlines()
    assert lines[0].split()[:6] == [
        "NAME",
        "STATUS",
        "ACCELERATORS",
        "PROFILES",
        "PARTITIONING",
        "SERVES",
    ]
    assert [line.split()[0] for line in lines[1:]] == [f"{run}-cpx", f"{run}-whole"]
    assert lines[2].endswith(f"{run}-sixteen: amd.com/gpu 8 (needs 16)")
    idle = kubectl_aim(kube, "nodes", "-l", selector, "--serving", "none", "--no-headers")
    assert [line.split()[0] for line in idle.stdout.splitlines()] == [
        f"{run}-cordoned",
        f"{run}-cpu",
    ]


def test_why_explains_and_follows_the_namespace_precedence(kube, world):
    run, ns = world["run"], world["ns"]
    proc = kubectl_aim(kube, "why", f"{run}-sixteen")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"aimclusterprofile/{run}-sixteen"
    assert (
        lines[1] == "  needs:     MI300X label, partitioning-scheme.default label, amd.com/gpu 16"
    )
    assert lines[2].startswith("  status:    NotAvailable (HardwareNotAvailable), 0 of ")
    # No matcher has run: the stored status says so.
    assert lines[4].startswith("  stored:    Pending: the matcher has not evaluated this profile")
    table = lines[lines.index("nearest other nodes:") + 1 :]
    assert table[0].split() == ["NODE", "ACCELERATORS", "WHY", "NOT"]
    assert table[1].split() == [f"{run}-whole", "MI300X=8", "amd.com/gpu", "8", "(needs", "16)"]

    # The same name in a namespace: -n picks the AIMProfile (the spec's precedence), without -n
    # the cluster profile; KIND/NAME says which.
    assert kubectl_aim(kube, "why", f"{run}-one").stdout.startswith(
        f"aimclusterprofile/{run}-one\n"
    )
    assert kubectl_aim(kube, "why", f"{run}-one", "-n", ns).stdout.startswith(
        f"aimprofile/{ns}/{run}-one\n"
    )
    assert kubectl_aim(kube, "-n", ns, "why", f"aimcp/{run}-one").stdout.startswith(
        f"aimclusterprofile/{run}-one\n"
    )
    # A namespace without that AIMProfile sees the cluster profile.
    assert kubectl_aim(kube, "why", f"{run}-sixteen", "-n", ns).returncode == 1
    missing = kubectl_aim(kube, "why", "nope", "-n", ns)
    assert missing.returncode == 2
    assert missing.stderr == f"error: no aimprofile {ns}/nope and no aimclusterprofile nope\n"

    doc = json.loads(kubectl_aim(kube, "why", f"{run}-mine", "-n", ns, "-o", "json").stdout)
    assert doc["profile"] == {"kind": "AIMProfile", "name": f"{run}-mine", "namespace": ns}
    assert doc["live"]["status"] == "Ready"
    assert doc["matchingNodes"] == [f"{run}-whole"]
    assert doc["storedState"] == "pending"


def test_why_compares_with_the_status_the_controller_writes(kube, world):
    """With the matcher running, the stored status is the live evaluation; once it stops and
    the world changes, why says the stored status is stale."""
    run = world["run"]
    controller = start_controller(
        kube, config_map_namespace="aim-system", lease_namespace="aim-system"
    )
    custom = world["custom"]
    name = f"{run}-sixteen"

    def stored() -> dict[str, Any]:
        obj = custom.get_cluster_custom_object(
            "aim.eai.amd.com", "v1alpha2", "aimclusterprofiles", name
        )
        return dict(obj.get("status") or {})

    try:
        wait_for(lambda: stored().get("status") == "NotAvailable", 15, "the controller's status")
        check = kubectl_aim(kube, "check", "-o", "json")
        # Every status the controller wrote is what check computes.
        for key, (phase, count, message) in _mine(world, statuses(check.stdout)).items():
            namespace, _, obj_name = key.partition("/")
            status = wait_for(functools.partial(_written, custom, namespace, obj_name), 15, key)
            (cond,) = [c for c in status["conditions"] if c["type"] == "HardwareAvailable"]
            assert (status["status"], status["matchingNodes"], cond["message"]) == (
                phase,
                count,
                message,
            ), key
        proc = kubectl_aim(kube, "why", name)
        assert (
            "  stored:    the same as the live evaluation: the matcher is up to date" in proc.stdout
        )
    finally:
        controller.stop()

    # A bigger node joins while no matcher runs: the live answer moves, the stored one not.
    big = node_obj(f"{run}-big", gpu_labels(MI300X, "16"), gpus=16)
    big["metadata"]["labels"]["aim.test/run"] = run
    create_node(world["core"], big)
    proc = kubectl_aim(kube, "why", name, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["live"]["status"] == "Ready"
    assert doc["stored"]["status"] == "NotAvailable"
    assert doc["storedState"] == "stale"
    assert "status NotAvailable -> Ready; matchingNodes 0 -> 1" in doc["storedVerdict"]
    assert "the matcher is not running or not leading" in doc["storedVerdict"]
    assert doc["matchingNodes"] == [f"{run}-big"]


def _written(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    if namespace:
        obj = custom.get_namespaced_custom_object(
            "aim.eai.amd.com", "v1alpha2", namespace, "aimprofiles", name
        )
    else:
        obj = custom.get_cluster_custom_object(
            "aim.eai.amd.com", "v1alpha2", "aimclusterprofiles", name
        )
    status = dict(obj.get("status") or {})
    return status if status.get("observedGeneration") else {}


def test_the_plugin_is_on_path_and_answers_help(kube):
    proc = kubectl_aim(kube, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: kubectl aim")
    listed = subprocess.run(
        [str(ROOT / ".tools" / "bin" / "kubectl"), "plugin", "list"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    assert str(BIN / "kubectl-aim") in listed.stdout
