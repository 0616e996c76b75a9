"""Shared fixtures. `kube` gives a test a Kubernetes API: a fresh in-process test API server
by default, or the real cluster named by the AIM_TEST_KUBECONFIG environment variable."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config

from tests.apiserver import ApiServer

REPO = Path(__file__).resolve().parent.parent
PROJECT_CRDS = REPO / "daemonset" / "crds"
REAL_CLUSTER_ENV = "AIM_TEST_KUBECONFIG"


def project_crd_files() -> list[Path]:
    return sorted(PROJECT_CRDS.glob("*.yaml")) if PROJECT_CRDS.is_dir() else []


@dataclass
class Kube:
    """A Kubernetes endpoint for one test (see tests/conftest.py)."""

    kubeconfig: Path
    url: str
    server: ApiServer | None
    cache_dir: Path
    _clients: list[Any] = field(default_factory=list)

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for `self.kubeconfig` (closed at teardown)."""
        client = config.new_client_from_config(config_file=str(self.kubeconfig))
        self._clients.append(client)
        return client

    def require_server(self) -> ApiServer:
        """The test API server; skips the test when running against a real cluster."""
        if self.server is None:
            pytest.skip(
                "needs the test API server (faults or request record); running on a real cluster"
            )
        return self.server

    def unique(self, name: str) -> str:
        """`name` plus a random suffix, so tests never collide on a shared real cluster."""
        return f"{name}-{secrets.token_hex(3)}"

    def apply_crds(self, paths: list[Path] | None = None) -> None:
        """Register the project's CRDs (daemonset/crds/*.yaml) or the given files."""
        files = paths if paths is not None else project_crd_files()
        if self.server is not None:
            for f in files:
                self.server.load_crd(f)
            return
        for f in files:
            self.kubectl("apply", "-f", str(f))
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    name = doc["metadata"]["name"]
                    self.kubectl(
                        "wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s"
                    )

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this endpoint; raises with stderr shown when check fails."""
        exe = shutil.which("kubectl")
        if exe is None:
            pytest.skip("kubectl is not installed")
        cmd = [exe, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def close(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()


def _real_cluster_url(kubeconfig: Path) -> str:
    doc = yaml.safe_load(kubeconfig.read_text()) or {}
    ctx_name = doc.get("current-context")
    ctx: dict[str, Any] = next(
        (c["context"] for c in doc.get("contexts") or [] if c.get("name") == ctx_name), {}
    )
    cluster: dict[str, Any] = next(
        (c["cluster"] for c in doc.get("clusters") or [] if c.get("name") == ctx.get("cluster")), {}
    )
    return str(cluster.get("server", ""))


@contextlib.contextmanager
def open_kube(tmp_path: Path) -> Iterator[Kube]:
    """The `kube` fixture's body: $AIM_TEST_KUBECONFIG's cluster when set, else a fresh test
    API server with the project's CRDs."""
    real = os.environ.get(REAL_CLUSTER_ENV)
    cache = tmp_path / "kubectl-cache"
    if real:
        path = Path(real).expanduser()
        if not path.is_file():
            raise pytest.UsageError(f"{REAL_CLUSTER_ENV}={real}: no such kubeconfig file")
        k = Kube(path, _real_cluster_url(path), None, cache)
        try:
            yield k
        finally:
            k.close()
        return
    srv = ApiServer(crd_paths=project_crd_files()).start()
    k = Kube(srv.write_kubeconfig(tmp_path / "kubeconfig"), srv.url, srv, cache)
    try:
        yield k
    finally:
        k.close()
        srv.stop()


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Kube]:
    """A Kubernetes API for this test: the test API server (project CRDs loaded when
    daemonset/crds exists), or the real cluster of $AIM_TEST_KUBECONFIG."""
    with open_kube(tmp_path) as k:
        yield k


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take `kube` talk to a Kubernetes API: mark them `cluster` (`-m cluster`)."""
    for item in items:
        if "kube" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
