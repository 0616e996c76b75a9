"""Who we are to the API server: bearer tokens, client certificates and exec plugins.

Matches client-go's behaviour where it matters for long-running agents:

- a token file (the pod's projected service-account token, or a kubeconfig ``tokenFile``) is
  re-read once it is a minute old, and at once after a 401, so rotated tokens are picked up
  (the kubelet rewrites projected tokens well before they expire);
- an exec plugin (``client.authentication.k8s.io/v1`` or ``v1beta1``) runs when no credential
  is cached, again after its ``expirationTimestamp`` and after a 401; it may return a token or
  a client certificate and key; its ``installHint`` is shown when the command is missing;
- a 401 drops cached credentials once and the request is retried once (``refresh``).

``auth-provider`` entries (the removed in-tree gcp/azure/oidc plugins) are refused with a
message naming the exec plugin that replaced them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: How long a token read from a file is trusted before it is read again (client-go: 1 min).
TOKEN_FILE_TTL = 60.0
#: Refresh an exec credential this long before it says it expires.
EXPIRY_MARGIN = 10.0
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class AuthError(Exception):
    """Credentials cannot be obtained; the message is one line naming what failed."""


@dataclass(frozen=True, slots=True)
class ClientCert:
    """A PEM certificate (chain) and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes


class TokenFile:
    """A bearer token read from ``path``, re-read when a minute old or after a 401."""

    def __init__(
        self, path: Path, ttl: float = TOKEN_FILE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._read_at = -float("inf")

    def token(self) -> str:
        with self._lock:
            if self._clock() - self._read_at >= self._ttl:
                try:
                    text = self.path.read_text().strip()
                except OSError as err:
                    if not self._token:
                        raise AuthError(f"token file {self.path}: {_os_reason(err)}") from None
                    # Keep the last token: the file may be mid-rotation (atomic swap of links).
                    log.warning(
                        "cannot re-read token file, keeping the last token",
                        extra={"path": str(self.path), "error": _os_reason(err)},
                    )
                else:
                    if not text:
                        raise AuthError(f"token file {self.path} is empty")
                    self._token = text
                self._read_at = self._clock()
            return self._token

    def expire(self) -> None:
        with self._lock:
            self._read_at = -float("inf")


@dataclass(frozen=True, slots=True)
class ExecSpec:
    """A kubeconfig ``user.exec`` entry, with its command resolved."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = EXEC_API_VERSIONS[0]
    install_hint: str = ""
    interactive_mode: str = "IfAvailable"
    provide_cluster_info: bool = False
    #: The ``cluster`` part of KUBERNETES_EXEC_INFO when provide_cluster_info is set.
    cluster_info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _ExecCredential:
    token: str | None
    cert: ClientCert | None
    expires: float | None  # time.time() seconds


class ExecPlugin:
    """Runs an exec credential plugin and caches its answer until it expires or a 401."""

    def __init__(
        self,
        spec: ExecSpec,
        run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run,
        clock: Callable[[], float] = time.time,
        timeout: float = 60.0,
    ) -> None:
        self.spec = spec
        self._run = run
        self._clock = clock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._cached: _ExecCredential | None = None

    def credential(self) -> _ExecCredential:
        with self._lock:
            cached = self._cached
            if cached is None or (
                cached.expires is not None and self._clock() >= cached.expires - EXPIRY_MARGIN
            ):
                cached = self._cached = self._exec()
            return cached

    def expire(self) -> None:
        with self._lock:
            self._cached = None

    def _exec(self) -> _ExecCredential:
        s = self.spec
        name = Path(s.command).name
        if s.interactive_mode == "Always":
            raise AuthError(
                f"exec plugin {name}: needs an interactive terminal (interactiveMode: Always), "
                "which an agent never has"
            )
        if shutil.which(s.command) is None:
            hint = f" ({s.install_hint.strip()})" if s.install_hint.strip() else ""
            raise AuthError(f"exec plugin {s.command}: command not found{hint}")
        exec_spec: dict[str, Any] = {"interactive": False}
        if s.provide_cluster_info:
            exec_spec["cluster"] = dict(s.cluster_info)
        info = {"apiVersion": s.api_version, "kind": "ExecCredential", "spec": exec_spec}
        env = {**os.environ, **dict(s.env), "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            done = self._run(
                [s.command, *s.args],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self._timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise AuthError(f"exec plugin {name}: no answer within {self._timeout:g}s") from None
        except OSError as err:
            raise AuthError(f"exec plugin {name}: {_os_reason(err)}") from None
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else "no message"
            raise AuthError(f"exec plugin {name} failed (exit {done.returncode}): {why}")
        return _parse_exec_output(name, s.api_version, done.stdout)


def _parse_exec_output(name: str, api_version: str, stdout: bytes) -> _ExecCredential:
    try:
        doc = json.loads(stdout)
    except ValueError:
        raise AuthError(f"exec plugin {name}: output is not an ExecCredential (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise AuthError(f"exec plugin {name}: output is not an ExecCredential")
    if doc.get("apiVersion") != api_version:
        raise AuthError(
            f"exec plugin {name}: answered apiVersion {doc.get('apiVersion')!r}, "
            f"the kubeconfig asks for {api_version!r}"
        )
    status = doc.get("status") or {}
    token = status.get("token") or None
    cert_data, key_data = status.get("clientCertificateData"), status.get("clientKeyData")
    cert = None
    if cert_data or key_data:
        if not (cert_data and key_data):
            raise AuthError(
                f"exec plugin {name}: clientCertificateData and clientKeyData go together"
            )
        cert = ClientCert(str(cert_data).encode(), str(key_data).encode())
    if token is None and cert is None:
        raise AuthError(f"exec plugin {name}: the ExecCredential has neither token nor cert")
    expires = None
    stamp = status.get("expirationTimestamp")
    if stamp:
        try:
            expires = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise AuthError(f"exec plugin {name}: bad expirationTimestamp {stamp!r}") from None
    return _ExecCredential(token, cert, expires)


@dataclass
class Auth:
    """Everything that identifies us, from one kubeconfig user or the pod's service account."""

    token: str | None = None
    token_file: TokenFile | None = None
    basic: tuple[str, str] | None = None
    client_cert: ClientCert | None = None
    exec_plugin: ExecPlugin | None = None

    def headers(self) -> dict[str, str]:
        """The Authorization header for the next request (none when anonymous)."""
        headers: dict[str, str] = {}
        token = self.token
        if self.token_file is not None:
            token = self.token_file.token()
        if self.exec_plugin is not None:
            token = self.exec_plugin.credential().token or token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self.basic is not None:
            pair = f"{self.basic[0]}:{self.basic[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def cert(self) -> ClientCert | None:
        if self.exec_plugin is not None:
            cert = self.exec_plugin.credential().cert
            if cert is not None:
                return cert
        return self.client_cert

    def refresh(self) -> bool:
        """After a 401: forget what can be fetched again; True when a retry may help."""
        refreshed = False
        if self.token_file is not None:
            self.token_file.expire()
            refreshed = True
        if self.exec_plugin is not None:
            self.exec_plugin.expire()
            refreshed = True
        return refreshed

    def describe(self) -> str:
        parts = []
        if self.exec_plugin is not None:
            parts.append(f"exec plugin {Path(self.exec_plugin.spec.command).name}")
        if self.token_file is not None:
            parts.append(f"token file {self.token_file.path}")
        elif self.token:
            parts.append("token")
        if self.client_cert is not None:
            parts.append("client certificate")
        if self.basic is not None:
            parts.append("basic auth")
        return ", ".join(parts) or "anonymous"


def _os_reason(err: OSError) -> str:
    return err.strerror or str(err)
