"""Shared fixtures. `kube` gives a test a Kubernetes API, and every test that takes it runs
twice: on a fresh in-process test API server (`[testserver]`, where faults can be injected and
requests are recorded) and on a real kube-apiserver with etcd (`[kube-apiserver]`, one control
plane per pytest run, reset to its baseline after each test; tests/controlplane/). With
AIM_TEST_KUBECONFIG set, the second runs on that cluster instead. AIM_TEST_SERVERS=testserver
(or kube-apiserver) runs one side only."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config

from scripts.k8s_tools import tool
from tests.apiserver import ApiServer
from tests.controlplane.crds import FixtureCRDs
from tests.controlplane.plane import ControlPlane
from tests.controlplane.reset import Baseline

REPO = Path(__file__).resolve().parent.parent
PROJECT_CRDS = REPO / "daemonset" / "crds"
#: CRDs the test API server's own tests apply (kept on the run's control plane while unchanged).
TEST_CRD_FILES = sorted((REPO / "tests" / "apiserver" / "testdata").glob("*.yaml"))
REAL_CLUSTER_ENV = "AIM_TEST_KUBECONFIG"
SERVERS_ENV = "AIM_TEST_SERVERS"
TEST_SERVER = "testserver"
KUBE_APISERVER = "kube-apiserver"


def project_crd_files() -> list[Path]:
    return sorted(PROJECT_CRDS.glob("*.yaml")) if PROJECT_CRDS.is_dir() else []


@dataclass
class Kube:
    """A Kubernetes endpoint for one test (see tests/conftest.py)."""

    kubeconfig: Path
    url: str
    server: ApiServer | None
    cache_dir: Path
    #: The real control plane of this run (None on the test server and on AIM_TEST_KUBECONFIG).
    plane: ControlPlane | None = None
    #: The plane's CRDs applied from files, kept between tests (tests/controlplane/crds.py).
    fixture_crds: FixtureCRDs | None = None
    _clients: list[Any] = field(default_factory=list)

    @property
    def flavor(self) -> str:
        """`testserver` or `kube-apiserver` (a real one: ours or AIM_TEST_KUBECONFIG's)."""
        return TEST_SERVER if self.server is not None else KUBE_APISERVER

    def require_plane(self) -> ControlPlane:
        """The run's own kube-apiserver (service-account tokens, audit log); skips elsewhere."""
        if self.plane is None:
            pytest.skip("needs the suite's own kube-apiserver (tokens, audit log)")
        return self.plane

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
        if paths is None and self.plane is not None:
            return  # part of the control plane's baseline
        files = paths if paths is not None else project_crd_files()
        if self.server is not None:
            for f in files:
                self.server.load_crd(f)
            return
        if self.fixture_crds is not None:
            self.fixture_crds.apply(
                [
                    doc
                    for f in files
                    for doc in yaml.safe_load_all(f.read_text())
                    if doc and doc.get("kind") == "CustomResourceDefinition"
                ]
            )
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
        cmd = [
            tool("kubectl"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache_dir),
            *args,
        ]
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


class SharedPlane:
    """The run's control plane: started on first use, the project's CRDs applied, reset to
    that baseline after every test that used it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.plane: ControlPlane | None = None
        self.baseline: Baseline | None = None
        self.fixture_crds: FixtureCRDs | None = None

    def get(self) -> tuple[ControlPlane, Baseline]:
        if self.plane is None or self.baseline is None:
            plane = ControlPlane(self.workdir).start()
            self.plane = plane
            k = Kube(plane.admin_kubeconfig, plane.url, None, self.workdir / "kubectl-cache")
            k.apply_crds()
            self.baseline = Baseline(plane).take()
            self.fixture_crds = FixtureCRDs(plane)
            # The test CRDs too, now: the first create of a CRD's object within 2 s of its
            # Established sleeps 2 s on kube-apiserver; by the first test using them, it won't.
            self.fixture_crds.apply(
                [
                    doc
                    for f in TEST_CRD_FILES
                    for doc in yaml.safe_load_all(f.read_text())
                    if doc and doc.get("kind") == "CustomResourceDefinition"
                ]
            )
        return self.plane, self.baseline

    def kube(self, cache: Path) -> Kube:
        plane, _ = self.get()
        return Kube(
            plane.admin_kubeconfig,
            plane.url,
            None,
            cache,
            plane=plane,
            fixture_crds=self.fixture_crds,
        )

    def restore(self) -> None:
        if self.baseline is not None:
            self.baseline.restore(self.fixture_crds)

    def stop(self) -> None:
        if self.plane is not None:
            self.plane.stop()


def selected_servers() -> list[str]:
    raw = os.environ.get(SERVERS_ENV, f"{TEST_SERVER},{KUBE_APISERVER}")
    chosen = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = set(chosen) - {TEST_SERVER, KUBE_APISERVER}
    if unknown or not chosen:
        raise pytest.UsageError(f"{SERVERS_ENV}={raw}: use {TEST_SERVER} and/or {KUBE_APISERVER}")
    return chosen


@contextlib.contextmanager
def open_kube(
    tmp_path: Path, flavor: str = TEST_SERVER, shared: SharedPlane | None = None
) -> Iterator[Kube]:
    """The `kube` fixture's body. `testserver`: a fresh test API server with the project's
    CRDs. `kube-apiserver`: $AIM_TEST_KUBECONFIG's cluster when set, else `shared`'s plane,
    reset after the test."""
    cache = tmp_path / "kubectl-cache"
    if flavor == KUBE_APISERVER:
        real = os.environ.get(REAL_CLUSTER_ENV)
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
        if shared is None:
            raise ValueError("the kube-apiserver flavor needs the run's shared control plane")
        k = shared.kube(cache)
        try:
            yield k
        finally:
            k.close()
            shared.restore()
        return
    srv = ApiServer(crd_paths=project_crd_files()).start()
    k = Kube(srv.write_kubeconfig(tmp_path / "kubeconfig"), srv.url, srv, cache)
    try:
        yield k
    finally:
        k.close()
        srv.stop()


@pytest.fixture(scope="session")
def shared_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedPlane]:
    shared = SharedPlane(tmp_path_factory.mktemp("controlplane"))
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture(params=selected_servers())
def kube(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kube]:
    """A Kubernetes API for this test: the test API server (project CRDs loaded), or a real
    kube-apiserver (the run's own control plane, or $AIM_TEST_KUBECONFIG's cluster)."""
    shared = request.getfixturevalue("shared_plane") if request.param == KUBE_APISERVER else None
    with open_kube(tmp_path, request.param, shared) as k:
        yield k


@pytest.fixture
def real_kube(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kube]:
    """The kube-apiserver side only, for what only a real server can show (RBAC, admission
    policy, tokens, the whole install bundle); skipped when AIM_TEST_SERVERS leaves it out."""
    if SERVERS_ENV in os.environ and KUBE_APISERVER not in selected_servers():
        pytest.skip(f"{SERVERS_ENV} leaves out {KUBE_APISERVER}")
    with open_kube(tmp_path, KUBE_APISERVER, request.getfixturevalue("shared_plane")) as k:
        yield k


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take `kube` talk to a Kubernetes API: mark them `cluster` (`-m cluster`)."""
    for item in items:
        if {"kube", "real_kube"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)
