"""The main job on one machine, no Kubernetes needed (``make demo``).

1. Runs the detector once on this host (``aim-detector --once --dry-run``) and shows the labels
   it would put on this node.
2. Adds this host to the example cluster (``examples/cluster/nodes.yaml``) as one more Node: its
   detected labels and its real allocatable CPU and memory.
3. Runs ``aim-matcher check`` on the example profiles against that cluster and shows the
   status every profile would get.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import yaml

from detector.labels import OWNED_LABELS_ANNOTATION
from detector.reconcile import annotation_value

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = ROOT / "out"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def detect_labels() -> dict[str, str]:
    banner("aim-detector --once --dry-run (this host)")
    subprocess.run([str(BIN / "aim-detector"), "--once", "--dry-run"], check=True)
    out = subprocess.run(
        [str(BIN / "aim-detector"), "--once", "--dry-run", "--output", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    labels: dict[str, str] = json.loads(out)["labels"]
    return labels


def this_host_as_node(labels: dict[str, str]) -> dict[str, Any]:
    """A Node as the API server would hold it for this machine once the detector published:
    its labels and its annotation (empty where it found nothing: the mark that it ran)."""
    cpus = len(os.sched_getaffinity(0))
    memory_ki = psutil.virtual_memory().total // 1024
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": socket.gethostname().split(".")[0].lower() or "this-host",
            "labels": {"kubernetes.io/os": "linux", **labels},
            "annotations": {OWNED_LABELS_ANNOTATION: annotation_value(labels)},
        },
        "status": {
            "capacity": {"cpu": str(cpus), "memory": f"{memory_ki}Ki"},
            "allocatable": {"cpu": str(cpus), "memory": f"{memory_ki}Ki"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def main() -> int:
    labels = detect_labels()
    nodes_doc = yaml.safe_load((ROOT / "examples/cluster/nodes.yaml").read_text())
    host = this_host_as_node(labels)
    nodes_doc["items"].append(host)
    OUT.mkdir(exist_ok=True)
    nodes_file = OUT / "demo-nodes.yaml"
    nodes_file.write_text(yaml.safe_dump(nodes_doc, sort_keys=False))
    alloc = host["status"]["allocatable"]
    banner(
        f"example cluster + this host ({host['metadata']['name']}: "
        f"cpu {alloc['cpu']}, memory {alloc['memory']}) -> {nodes_file.relative_to(ROOT)}"
    )
    check = [
        str(BIN / "aim-matcher"),
        "check",
        "--nodes",
        str(nodes_file),
        "--profiles",
        str(ROOT / "examples/profiles"),
        "--config",
        str(ROOT / "examples/cluster/matcher-config.yaml"),
    ]
    banner("aim-matcher check --nodes out/demo-nodes.yaml --profiles examples/profiles")
    rc = subprocess.run(check, check=False).returncode
    # 1 means "some profile is NotAvailable": an answer, not a failure of the demo.
    if rc not in (0, 1):
        return rc
    # The same profiles against this host alone: which of them could run here.
    host_file = OUT / "this-host.yaml"
    host_file.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [host]}))
    banner("profiles this host alone can serve (aim-matcher check --nodes out/this-host.yaml)")
    rc = subprocess.run([*check[:3], str(host_file), *check[4:]], check=False).returncode
    if rc not in (0, 1):
        return rc
    print(
        "\nFull statuses: .venv/bin/aim-matcher check --nodes out/demo-nodes.yaml "
        "--profiles examples/profiles -o yaml"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
