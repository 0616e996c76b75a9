"""``aim-matcher check`` on what the real kubectl prints: ``kubectl get nodes -o json`` and
``-o yaml`` piped into ``--nodes -`` give the statuses that the generated files give."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.realistic import realistic_nodes, realistic_profiles, write_yaml_documents

ROOT = Path(__file__).resolve().parent.parent
SERVER_SET = ("resourceVersion", "uid", "creationTimestamp", "managedFields")


def check(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "matcher", "check", *map(str, args), "-o", "json"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


def statuses(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, int]]:
    assert result.stderr == "", result.stderr
    items = json.loads(result.stdout)["items"]
    return {
        i["metadata"]["name"]: (i["status"]["status"], i["status"]["matchingNodes"]) for i in items
    }


def test_kubectl_get_nodes_json_and_yaml_piped_to_check(kube, tmp_path):
    """Nodes created as the kubelet creates them (status included), read back by kubectl."""
    run = kube.unique("offline")
    nodes = []
    for node in realistic_nodes(40, seed=11):
        meta = {k: v for k, v in node["metadata"].items() if k not in SERVER_SET}
        meta["name"] = f"{run}-{meta['name']}"
        meta["labels"] = {**meta["labels"], "aim.test/run": run}
        nodes.append({**node, "metadata": meta})
    created = tmp_path / "nodes.json"
    created.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
    kube.kubectl("create", "-f", str(created))
    profiles = tmp_path / "profiles.yaml"
    write_yaml_documents(profiles, realistic_profiles(30, seed=11))
    try:
        expected = statuses(check("--nodes", created, "--profiles", profiles))
        assert {status for status, _ in expected.values()} == {"Ready", "NotAvailable"}
        for output in ("json", "yaml"):
            listing = kube.kubectl("get", "nodes", "-l", f"aim.test/run={run}", "-o", output)
            got = check("--nodes", "-", "--profiles", profiles, stdin=listing.stdout)
            assert statuses(got) == expected
    finally:
        kube.kubectl("delete", "nodes", "-l", f"aim.test/run={run}", "--wait=false")
