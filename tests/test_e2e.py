"""End to end with real processes: the detector labels Nodes from fixture host trees, two
``aim-matcher run`` replicas watch the cluster, ``kubectl apply`` creates the spec's example
profiles and ``kubectl get aimclusterprofiles`` shows their statuses. Then the live loop: a
new MI355X node appears and its profile flips to Ready, the leading matcher is killed and the
standby takes over, and SIGTERM stops the last one cleanly, releasing the lease.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.controller_support import create_node, node_obj, wait_for
from tests.hosttrees import SMALL_CPU, build_host

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

REPO = Path(__file__).resolve().parent.parent

#: Node name -> (fixture host tree, allocatable GPU resources the device plugin would report).
NODES: dict[str, tuple[str, dict[str, str]]] = {
    "mi300x-0": ("mi300x-8-spx-nps1", {"amd.com/gpu": "8"}),
    "mi300x-cpx-0": ("mi300x-8-cpx-nps4", {"amd.com/cpx_nps4": "64"}),
    "mi325x-0": ("mi325x-8", {"amd.com/gpu": "8"}),
    "epyc-zen5-0": ("epyc-zen5-2s", {}),
}
# DPX-NPS2 under the device plugin's single strategy: 16 partitions as amd.com/gpu.
LATE_NODE = ("mi355x-0", "mi355x-8-dpx-nps2", {"amd.com/gpu": "16"})
#: Written for that node's partitions (AIM Engine's acceleratorPartitioningMode).
DPX_PROFILE = {
    "apiVersion": "aim.eai.amd.com/v1alpha2",
    "kind": "AIMClusterProfile",
    "metadata": {"name": "qwen-qwen3-32b-mi355x-dpx-nps2"},
    "spec": {
        "aimId": "qwen/qwen3-32b",
        "image": "amdenterpriseai/aim-qwen-qwen3-32b:0.9.0",
        "acceleratorModel": "MI355X",
        "acceleratorType": "gpu",
        "acceleratorCount": 2,
        "acceleratorPartitioningMode": "DPX-NPS2",
    },
}

EXPECTED_CLUSTER = {
    "llama-3-1-405b-mi325x-lat-fp8": "NotAvailable",  # 16 GPUs, nodes have 8
    "phi-2-epyc-zen4-lat-fp32": "Ready",  # the CPX node's EPYC 9654s
    "phi-2-epyc-zen5-lat-fp32": "Ready",
    "qwen-qwen3-32b-mi300x-cpx-nps4": "Ready",
    "qwen-qwen3-32b-mi300x-cpx-nps4-seed": "NotAvailable",  # amd.com/cpx-nps4: never advertised
    # the CPX node here advertises amd.com/cpx_nps4 (mixed strategy), not amd.com/gpu
    "qwen-qwen3-32b-mi300x-cpx-nps4-partitions": "NotAvailable",
    "qwen-qwen3-32b-mi300x-lat-fp8": "Ready",
    "qwen-qwen3-32b-mi325x-thr-fp8": "Ready",
    "qwen-qwen3-32b-mi355x-lat-fp4": "NotAvailable",  # whole GPUs: the MI355X node is DPX
    "qwen-qwen3-32b-mi355x-dpx-nps2": "NotAvailable",  # until the MI355X node joins
}
EXPECTED_NAMESPACED = {
    "ml-team/my-finetuned-qwen-mi300x-lat-fp8": "Ready",
    "dev-team/small-model-cpu": "Ready",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.pop("KUBECONFIG", None)
    return env


def _add_node(kube, core, where: Path, node: tuple[str, str, dict[str, str]]) -> None:
    """The Node as its kubelet registers it, then the detector's one cycle labels it."""
    name, host, gpus = node
    obj = node_obj(name, gpus=0, cpu="190", memory="2000Gi", extra_allocatable=gpus)
    create_node(core, obj)
    # Small CPUs keep the trees small; the real EPYC-only host keeps its sockets.
    root = build_host(where / "hosts", host, cpu=None if not gpus else SMALL_CPU)
    proc = subprocess.run(
        [sys.executable, "-m", "detector", "--once", "--node-name", name,
         "--kubeconfig", str(kube.kubeconfig), "--host-root", str(root),
         "--gpu-backend", "sysfs"],
        capture_output=True, text=True, timeout=60, env=_env(), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"aim-detector --once for {name}: {proc.stderr}{proc.stdout}"


class Matcher:
    """One ``aim-matcher run`` process, its JSON log in a file."""

    def __init__(self, kube, tmp_path: Path, identity: str) -> None:
        self.identity = identity
        self.log_path = tmp_path / f"{identity}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "matcher", "run", "--kubeconfig", str(kube.kubeconfig),
             "--identity", identity, "--lease-namespace", "default",
             "--config-map-namespace", "default", "--health-addr", "127.0.0.1:0",
             "--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.3"],
            stdout=self._log, stderr=subprocess.STDOUT, env=_env(),
        )  # fmt: skip

    def log(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                entries.append({"msg": line})
        return entries

    def logged(self, msg: str) -> bool:
        return any(e.get("msg") == msg for e in self.log())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()


def _statuses(kube) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for plural in ("aimclusterprofiles", "aimprofiles"):
        args = ["get", plural, "-o", "json"]
        if plural == "aimprofiles":
            args.append("--all-namespaces")
        for item in json.loads(kube.kubectl(*args).stdout)["items"]:
            meta = item["metadata"]
            key = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]
            out[key] = (item.get("status") or {}).get("status")
    return out


def test_detector_matcher_kubectl_live_loop(kube, tmp_path):
    server = kube.require_server()
    core: Any = client.CoreV1Api(kube.api_client())
    for name, (host, gpus) in NODES.items():
        _add_node(kube, core, tmp_path, (name, host, gpus))
    labels = core.read_node("mi300x-cpx-0").metadata.labels
    assert labels["feature.node.kubernetes.io/aim-accelerator.MI300X"] == "8"

    matchers = [Matcher(kube, tmp_path, "matcher-a"), Matcher(kube, tmp_path, "matcher-b")]
    try:
        for ns in ("ml-team", "dev-team"):
            kube.kubectl("create", "namespace", ns)
        kube.kubectl("apply", "-f", str(REPO / "examples" / "profiles"))
        kube.kubectl("apply", "-f", "-", input=json.dumps(DPX_PROFILE))
        expected = {**EXPECTED_CLUSTER, **EXPECTED_NAMESPACED}
        wait_for(lambda: _statuses(kube) == expected, timeout=30, what="example statuses")

        table = kube.kubectl("get", "aimclusterprofiles").stdout
        print("\n$ kubectl get aimclusterprofiles\n" + table)
        header = table.splitlines()[0].split()
        assert header[:3] == ["NAME", "AIM", "STATUS"] or "STATUS" in header
        row = next(r for r in table.splitlines() if r.startswith("qwen-qwen3-32b-mi300x-lat-fp8"))
        assert "Ready" in row
        assert "1 x MI300X" in row

        # Exactly one replica leads and writes.
        lease: Any = client.CoordinationV1Api(kube.api_client()).read_namespaced_lease(
            "aim-matcher", "default"
        )
        holder = lease.spec.holder_identity
        leader = next(m for m in matchers if m.identity == holder)
        standby = next(m for m in matchers if m is not leader)
        assert wait_for(lambda: standby.logged("caches synced"), what="standby caches warm")
        patches = [
            r
            for r in server.requests
            if r.verb == "patch" and r.path.endswith("/status") and "aim.eai.amd.com" in r.path
        ]
        assert patches
        assert {r.user_agent for r in patches} == {f"aim-matcher/{leader.identity}"}

        # The leader dies hard; a new MI355X node joins while nobody leads.
        assert leader.stop(signal.SIGKILL) == -signal.SIGKILL
        _add_node(kube, core, tmp_path, LATE_NODE)
        started = time.monotonic()
        wait_for(
            lambda: _statuses(kube)["qwen-qwen3-32b-mi355x-dpx-nps2"] == "Ready",
            timeout=15,
            what="the standby takes over and writes the MI355X profile",
        )
        # The whole-GPU MI355X profile stays off the DPX partitions, and says why.
        whole = kube.kubectl(
            "get", "aimclusterprofile", "qwen-qwen3-32b-mi355x-lat-fp4",
            "-o", "jsonpath={.status.status} {.status.conditions[0].message}",
        ).stdout  # fmt: skip
        assert whole.startswith("NotAvailable ")
        assert "partitioning schemes on those nodes: DPX-NPS2" in whole
        print(f"standby took over and wrote in {time.monotonic() - started:.1f}s")
        assert standby.logged("became leader")

        # SIGTERM: a clean exit that hands the lease back.
        assert standby.stop(signal.SIGTERM) == 0
        assert standby.logged("released lease")
        lease = client.CoordinationV1Api(kube.api_client()).read_namespaced_lease(
            "aim-matcher", "default"
        )
        assert not lease.spec.holder_identity
    finally:
        for m in matchers:
            if m.proc.poll() is None:
                m.stop(signal.SIGKILL)
