"""Which cluster, as whom: one resolution order for every program of this project.

The order is controller-runtime's ``config.GetConfig`` (client-go's loading rules plus the
in-cluster fallback), which is what Kubernetes controllers and operators use:

1. an explicit kubeconfig (``--kubeconfig``; the detector's ``AIM_DETECTOR_KUBECONFIG``): the
   file must exist;
2. ``$KUBECONFIG``: a ``:``-separated list of files, merged as kubectl merges them (the first
   file to define a cluster, user, context or current-context wins; files that do not exist are
   skipped, but at least one must);
3. in-cluster: the pod's service account (``KUBERNETES_SERVICE_HOST``/``_PORT``, the token, CA
   and namespace under ``/var/run/secrets/kubernetes.io/serviceaccount``);
4. ``~/.kube/config``.

Relative paths in a kubeconfig (CA, client certificate and key, token file, an exec command
with a ``/``) are relative to the file that names them. Every failure is a :class:`ConfigError`
whose message is one line naming the file or setting at fault.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimkit.kubeauth import EXEC_API_VERSIONS, Auth, ClientCert, ExecPlugin, ExecSpec, TokenFile

#: The cluster extension an exec plugin receives as ``spec.cluster.config``.
_EXEC_EXTENSION = "client.authentication.k8s.io/exec"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

#: auth-provider names and what replaced them, for the error message.
_AUTH_PROVIDER_SUCCESSORS = {
    "gcp": "gke-gcloud-auth-plugin",
    "azure": "kubelogin",
    "oidc": "kubelogin (int128/kubelogin)",
}


class ConfigError(Exception):
    """The Kubernetes configuration cannot be loaded; one line naming what is wrong."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where the API server is and how to talk to it."""

    server: str
    """``https://host:port`` (or ``http://``), without a trailing slash."""
    source: str
    """Where this came from, for logs: ``kubeconfig /path (context ctx)``, ``in-cluster``."""
    auth: Auth = field(default_factory=Auth)
    ca_pem: bytes | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    namespace: str = "default"


def load(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    home: Path | None = None,
) -> ClusterConfig:
    """The configuration in the module docstring's order."""
    env = os.environ if env is None else env
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise ConfigError(f"kubeconfig {path}: {_missing(path)}")
        return from_kubeconfig([path], context)
    listed = env.get("KUBECONFIG", "")
    if listed:
        paths = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
        existing = [p for p in paths if p.is_file()]
        if not existing:
            raise ConfigError(f"KUBECONFIG={listed}: no such file")
        return from_kubeconfig(existing, context)
    if env.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster(env, service_account_dir)
    default = (home or Path.home()) / ".kube" / "config"
    if default.is_file():
        return from_kubeconfig([default], context)
    raise ConfigError(
        f"no Kubernetes configuration: not in a pod, KUBECONFIG unset and no {default}; "
        "pass --kubeconfig"
    )


def in_cluster(
    env: Mapping[str, str] | None = None, service_account_dir: Path = SERVICE_ACCOUNT_DIR
) -> ClusterConfig:
    """The pod's service account, as client-go's ``rest.InClusterConfig``."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError(
            "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"
        )
    token_path = service_account_dir / "token"
    if not token_path.is_file():
        raise ConfigError(
            f"in-cluster: {token_path}: {_missing(token_path)} "
            "(automountServiceAccountToken disabled?)"
        )
    ca_path = service_account_dir / "ca.crt"
    try:
        ca = ca_path.read_bytes()
    except OSError as err:
        raise ConfigError(f"in-cluster: {ca_path}: {err.strerror or err}") from None
    namespace = "default"
    with contextlib.suppress(OSError):
        namespace = (service_account_dir / "namespace").read_text().strip() or namespace
    server_host = f"[{host}]" if ":" in host else host
    return ClusterConfig(
        server=f"https://{server_host}:{port}",
        source="in-cluster",
        auth=Auth(token_file=TokenFile(token_path)),
        ca_pem=ca,
        namespace=namespace,
    )


# --- kubeconfig files ------------------------------------------------------------------------


@dataclass
class _Merged:
    clusters: dict[str, tuple[dict[str, Any], Path]] = field(default_factory=dict)
    users: dict[str, tuple[dict[str, Any], Path]] = field(default_factory=dict)
    contexts: dict[str, tuple[dict[str, Any], Path]] = field(default_factory=dict)
    current_context: str = ""


def from_kubeconfig(paths: list[Path], context: str | None = None) -> ClusterConfig:
    merged = _merge(paths)
    shown = ":".join(str(p) for p in paths)
    name = context or merged.current_context
    if not name:
        raise ConfigError(f"kubeconfig {shown}: no current-context (pass --context)")
    if name not in merged.contexts:
        raise ConfigError(f"kubeconfig {shown}: context {name!r} not found")
    ctx, _ = merged.contexts[name]
    cluster_name, user_name = str(ctx.get("cluster") or ""), str(ctx.get("user") or "")
    if cluster_name not in merged.clusters:
        raise ConfigError(
            f"kubeconfig {shown}: context {name!r} names cluster "
            f"{cluster_name!r}, which is not defined"
        )
    cluster, cluster_file = merged.clusters[cluster_name]
    where = f"kubeconfig {shown}, cluster {cluster_name!r}"
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: server {server!r} is not an http(s) URL")
    ca_pem = _data_or_file(cluster, "certificate-authority", cluster_file, where)
    auth = Auth()
    if user_name:
        if user_name not in merged.users:
            raise ConfigError(
                f"kubeconfig {shown}: context {name!r} names user {user_name!r}, "
                "which is not defined"
            )
        user, user_file = merged.users[user_name]
        auth = _auth(user, user_file, f"kubeconfig {shown}, user {user_name!r}", cluster, ca_pem)
    return ClusterConfig(
        server=server,
        source=f"kubeconfig {shown} (context {name})",
        auth=auth,
        ca_pem=ca_pem,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name") or None,
        proxy_url=cluster.get("proxy-url") or None,
        namespace=str(ctx.get("namespace") or "default"),
    )


def _merge(paths: list[Path]) -> _Merged:
    import yaml  # noqa: PLC0415 - only for kubeconfig files; a pod's agent never needs it

    merged = _Merged()
    for path in paths:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise ConfigError(f"kubeconfig {path}: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"kubeconfig {path}: not valid YAML: {_first_line(err)}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"kubeconfig {path}: not a kubeconfig (expected a mapping)")
        for key, table in (
            ("clusters", merged.clusters),
            ("users", merged.users),
            ("contexts", merged.contexts),
        ):
            inner = {"clusters": "cluster", "users": "user", "contexts": "context"}[key]
            for entry in doc.get(key) or ():
                if not isinstance(entry, dict) or not entry.get("name"):
                    raise ConfigError(f"kubeconfig {path}: an entry of {key} has no name")
                body = entry.get(inner) or {}
                if not isinstance(body, dict):
                    raise ConfigError(f"kubeconfig {path}: {key} {entry['name']!r} is malformed")
                table.setdefault(str(entry["name"]), (body, path.parent))
        if not merged.current_context and doc.get("current-context"):
            merged.current_context = str(doc["current-context"])
    return merged


def _auth(
    user: Mapping[str, Any],
    base: Path,
    where: str,
    cluster: Mapping[str, Any],
    ca_pem: bytes | None,
) -> Auth:
    if user.get("auth-provider"):
        provider = str((user["auth-provider"] or {}).get("name") or "")
        successor = _AUTH_PROVIDER_SUCCESSORS.get(provider, "its exec credential plugin")
        raise ConfigError(
            f"{where}: auth-provider {provider!r} is not supported (Kubernetes removed these "
            f"plugins); use an exec plugin such as {successor}"
        )
    if any(user.get(k) for k in ("as", "as-uid", "as-groups", "as-user-extra")):
        raise ConfigError(f"{where}: impersonation (as, as-groups, ...) is not supported")
    auth = Auth()
    if user.get("tokenFile"):
        path = _resolve(base, str(user["tokenFile"]))
        if not path.is_file():
            raise ConfigError(f"{where}: tokenFile {path}: {_missing(path)}")
        auth.token_file = TokenFile(path)
    elif user.get("token"):
        auth.token = str(user["token"])
    if user.get("username") or user.get("password"):
        auth.basic = (str(user.get("username") or ""), str(user.get("password") or ""))
    cert = _data_or_file(user, "client-certificate", base, where)
    key = _data_or_file(user, "client-key", base, where)
    if (cert is None) != (key is None):
        raise ConfigError(f"{where}: client-certificate and client-key go together")
    if cert is not None and key is not None:
        auth.client_cert = ClientCert(cert, key)
    if user.get("exec"):
        auth.exec_plugin = ExecPlugin(_exec_spec(user["exec"], base, where, cluster, ca_pem))
    return auth


def _exec_spec(
    raw: Any, base: Path, where: str, cluster: Mapping[str, Any], ca_pem: bytes | None
) -> ExecSpec:
    if not isinstance(raw, dict) or not raw.get("command"):
        raise ConfigError(f"{where}: exec needs a command")
    api_version = str(raw.get("apiVersion") or "")
    if api_version not in EXEC_API_VERSIONS:
        raise ConfigError(
            f"{where}: exec apiVersion {api_version!r} is not supported "
            f"(use {' or '.join(EXEC_API_VERSIONS)})"
        )
    command = str(raw["command"])
    if "/" in command and not Path(command).is_absolute():
        command = str(_resolve(base, command))  # kubectl: relative to the kubeconfig
    env = tuple((str(e.get("name")), str(e.get("value") or "")) for e in raw.get("env") or () if e)
    default_mode = "IfAvailable" if api_version.endswith("v1beta1") else ""
    mode = str(raw.get("interactiveMode") or default_mode)
    if mode not in ("Never", "IfAvailable", "Always"):
        raise ConfigError(
            f"{where}: exec interactiveMode {mode!r}: use Never, IfAvailable or Always"
        )
    cluster_info: dict[str, Any] = {"server": cluster.get("server", "")}
    if ca_pem is not None:
        cluster_info["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    for key in ("insecure-skip-tls-verify", "tls-server-name", "proxy-url"):
        if cluster.get(key):
            cluster_info[key] = cluster[key]
    for extension in cluster.get("extensions") or ():
        if (
            isinstance(extension, dict)
            and extension.get("name") == "client.authentication.k8s.io/exec"
        ):
            cluster_info["config"] = extension.get("extension")
    return ExecSpec(
        command=command,
        args=tuple(str(a) for a in raw.get("args") or ()),
        env=env,
        api_version=api_version,
        install_hint=str(raw.get("installHint") or ""),
        interactive_mode=mode,
        provide_cluster_info=bool(raw.get("provideClusterInfo")),
        cluster_info=cluster_info,
    )


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path, where: str) -> bytes | None:
    """``<key>-data`` (base64), else the file ``<key>``, else None."""
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: {key}-data is not valid base64") from None
    name = entry.get(key)
    if not name:
        return None
    path = _resolve(base, str(name))
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{where}: {key} {path}: {err.strerror or err}") from None


def _resolve(base: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path


def _missing(path: Path) -> str:
    """Why ``path`` is not a file, naming the first directory of it that does not exist."""
    if path.is_dir():
        return "is a directory, not a file"
    if path.exists():
        return "not a regular file"
    missing_dir = None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing_dir, parent = parent, parent.parent
    return f"no such file (no directory {missing_dir})" if missing_dir else "no such file"


def _first_line(err: Exception) -> str:
    return " ".join(str(err).split())[:200]
