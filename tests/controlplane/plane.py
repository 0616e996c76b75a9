"""A real Kubernetes control plane for tests: etcd and kube-apiserver (built by `make tools`)
on loopback ports of their own, with the settings of a normal cluster.

- TLS with a throwaway CA; an admin (group system:masters) authenticated by a static token.
- `--authorization-mode=Node,RBAC`, the default admission plugins plus NodeRestriction, so
  ValidatingAdmissionPolicy, PodSecurity and ServiceAccount admission all run.
- A service-account issuer and signing key, so the TokenRequest API issues real tokens
  (bound to a Pod, they carry the node-name claim).
- An audit log at Metadata level (`audit_events()`), where a policy's `Audit` action shows.

No controller-manager, scheduler or kubelet (as envtest): nothing reconciles, namespaces do
not finalize on their own, Pods never run. `start()` undoes a half-finished start; `stop()`
stops kube-apiserver, then etcd, and removes nothing the caller did not ask it to.
`restart(wipe=..., restore=...)` stops both and starts them again on the same ports and
credentials, with etcd's data deleted, or replaced by a copy `backup_storage()` made, in
between (a storage lost or restored from a backup): for a plane a test starts for itself, since
the run's shared plane would lose its baseline.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scripts.k8s_tools import tool
from tests.controlplane.certs import TinyCA, write_signing_key
from tests.controlplane.process import Process, free_port

ADMIN_USER = "aim-test-admin"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


@dataclass
class ControlPlane:
    workdir: Path
    url: str = ""
    ca_file: Path = field(init=False)
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    admin_kubeconfig: Path = field(init=False)
    audit_log: Path = field(init=False)
    _processes: list[Process] = field(default_factory=list)
    #: How to tell each process in _processes is ready again after a restart.
    _ready: dict[str, Any] = field(default_factory=dict)
    #: Idle kept-alive connections (requests may come from several threads at once).
    _idle: list[http.client.HTTPSConnection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.ca_file = self.workdir / "ca.crt"
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"
        self.audit_log = self.workdir / "audit.log"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            etcd_url = self._start_etcd(timeout)
            self._start_apiserver(etcd_url, timeout)
        except BaseException:
            self.stop()
            raise
        self.write_kubeconfig(self.admin_kubeconfig, token=self.admin_token, user=ADMIN_USER)
        return self

    def stop(self) -> None:
        """Stop in reverse order of start; every process is stopped even if one fails."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        errors: list[BaseException] = []
        while self._processes:
            try:
                self._processes.pop().stop()
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
        if errors:
            raise RuntimeError(f"stopping the control plane: {errors}")

    def restart(
        self, *, wipe: bool = False, restore: Path | None = None, timeout: float = 120
    ) -> None:
        """Stop kube-apiserver and etcd, then start them again on the same ports, certificates
        and tokens. In between, `wipe` deletes etcd's data (resourceVersions start over, every
        object is gone) and `restore` puts back a copy `backup_storage()` made (objects and
        resourceVersions as they were then). Clients meanwhile get connections refused, then
        find a server that forgot what they saw."""
        etcd_data = self.workdir / "etcd"
        self._stopped_for_restart()
        if wipe or restore is not None:
            shutil.rmtree(etcd_data, ignore_errors=True)
        if restore is not None:
            shutil.copytree(restore, etcd_data)
        self._start_again(timeout)

    def backup_storage(self, dest: Path, timeout: float = 120) -> Path:
        """A cold copy of etcd's data at `dest` (both servers stop for it and start again),
        for `restart(restore=dest)`: an etcd backup and its restore."""
        self._stopped_for_restart()
        shutil.copytree(self.workdir / "etcd", dest)
        self._start_again(timeout)
        return dest

    def _stopped_for_restart(self) -> None:
        if len(self._processes) != 2:
            raise RuntimeError("restarting needs a started plane")
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for process in reversed(self._processes):
            process.stop()

    def _start_again(self, timeout: float) -> None:
        for process in self._processes:
            process.start(self._ready[process.name], timeout)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_etcd(self, timeout: float) -> str:
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        etcd = Process(
            "etcd",
            [
                tool("etcd"),
                "--name=aim-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=aim-test={peer_url}",
                # Test data: durability buys nothing and fsync dominates write latency.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        )
        self._processes.append(etcd)
        self._ready["etcd"] = lambda: _get(f"{client_url}/health", None, None) == 200
        etcd.start(self._ready["etcd"], timeout)
        return client_url

    def _start_apiserver(self, etcd_url: str, timeout: float) -> None:
        ca = TinyCA.create()
        self.ca_file.write_bytes(ca.cert_pem)
        cert, key = ca.serving_pair(["127.0.0.1", "localhost"])
        (self.workdir / "apiserver.crt").write_bytes(cert)
        (self.workdir / "apiserver.key").write_bytes(key)
        signing_key, verify_key = self.workdir / "sa.key", self.workdir / "sa.pub"
        write_signing_key(signing_key, verify_key)
        (self.workdir / "tokens.csv").write_text(
            f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
        )
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(_AUDIT_POLICY))
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        apiserver = Process(
            "kube-apiserver",
            [
                tool("kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'certs'}",
                f"--tls-cert-file={self.workdir / 'apiserver.crt'}",
                f"--tls-private-key-file={self.workdir / 'apiserver.key'}",
                f"--client-ca-file={self.ca_file}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={verify_key}",
                f"--service-account-signing-key-file={signing_key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--profiling=false",
                "--v=1",
            ],
            self.workdir / "kube-apiserver.log",
        )
        self._processes.append(apiserver)
        self._ready["kube-apiserver"] = lambda: (
            _get(f"{self.url}/readyz", self.admin_token, self.ca_file) == 200
        )
        apiserver.start(self._ready["kube-apiserver"], timeout)

    # -- clients ----------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path, *, token: str, user: str) -> Path:
        """A kubeconfig for this plane authenticating with `token`."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "aim-test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(
                            self.ca_file.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "aim-test", "user": user}}],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON body) of one admin (or `token`) request. A 429 (the watch
        cache of a just-established CRD answers "storage is (re)initializing") is retried for
        up to 30 s, as clients do."""
        deadline = time.monotonic() + 30
        while True:
            status, answer = self._request_once(method, path, body, token)
            if status != 429 or time.monotonic() > deadline:
                return status, answer
            time.sleep(0.2)

    def _request_once(
        self, method: str, path: str, body: Any, token: str | None
    ) -> tuple[int, Any]:
        """One request on a kept-alive connection (resetting the plane between tests makes
        many small requests, several at once)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Authorization": f"Bearer {token or self.admin_token}",
            "Accept": "application/json",
        }
        if data is not None:
            ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
            headers["Content-Type"] = ctype
        for attempt in (1, 2):
            conn = None
            if attempt == 1:  # the retry must not pick another pooled, maybe closed, one
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
            if conn is None:
                host = urllib.parse.urlsplit(self.url)
                conn = http.client.HTTPSConnection(
                    host.hostname or "127.0.0.1",
                    host.port,
                    context=_ssl(self.ca_file),
                    timeout=30,
                )
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                answer = resp.status, _json(resp.read())
            except (OSError, http.client.HTTPException):
                conn.close()  # a kept-alive connection the server closed: once more, anew
                if attempt == 2:
                    raise
                # The others idled as long (kube-apiserver closes a connection idle for 90 s,
                # a common gap in a long run): the retry opens a fresh one.
                with self._lock:
                    stale, self._idle = self._idle, []
                for other in stale:
                    other.close()
                continue
            with self._lock:
                self._idle.append(conn)
            return answer
        raise AssertionError("unreachable")

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit event written so far (Metadata level)."""
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line]


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def _ssl(ca_file: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else None


def _get(url: str, token: str | None, ca_file: Path | None) -> int:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=_ssl(ca_file), timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ssl.SSLError):
        return 0
