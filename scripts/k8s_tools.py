"""Where the Kubernetes tools the project runs are: the ones `make tools` builds from their
pinned Go modules (tools/) into .tools/bin/ (kubectl, kube-apiserver, etcd, helm, promtool), and
the prometheus-operator and cert-manager CRDs it takes from theirs. Never whatever kubectl
happens to be on PATH: its minor version must match the API server's, and Debian's (1.20)
cannot render kustomize components."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS_BIN = REPO / ".tools" / "bin"
#: The PrometheusRule and PodMonitor CRDs (`tools/build.sh prometheus-operator`).
PROMETHEUS_OPERATOR_CRDS = REPO / ".tools" / "prometheus-operator-crds"
#: The Issuer and Certificate CRDs (`tools/build.sh cert-manager`).
CERT_MANAGER_CRDS = REPO / ".tools" / "cert-manager-crds"


class ToolMissingError(RuntimeError):
    """A tool `make tools` builds is not there."""


def tool(name: str) -> str:
    """Absolute path of ``.tools/bin/<name>`` (kubectl, kube-apiserver, etcd, helm, promtool)."""
    path = TOOLS_BIN / name
    if not os.access(path, os.X_OK):
        raise ToolMissingError(
            f"{path} is missing: run `make tools` (builds kubectl, kube-apiserver, etcd, helm and "
            "promtool from their pinned Go modules in tools/)"
        )
    return str(path)


def prometheus_operator_crds() -> list[Path]:
    """The prometheus-operator CRD files the monitoring objects need."""
    files = sorted(PROMETHEUS_OPERATOR_CRDS.glob("*.yaml"))
    if not files:
        raise ToolMissingError(
            f"{PROMETHEUS_OPERATOR_CRDS} is missing: run `make tools` (copies the PrometheusRule "
            "and PodMonitor CRDs out of the prometheus-operator module pinned in tools/)"
        )
    return files


def cert_manager_crds() -> list[Path]:
    """The cert-manager CRD files the webhook's cert-manager component needs."""
    files = sorted(CERT_MANAGER_CRDS.glob("*.yaml"))
    if not files:
        raise ToolMissingError(
            f"{CERT_MANAGER_CRDS} is missing: run `make tools` (copies the Issuer and Certificate "
            "CRDs out of the cert-manager module pinned in tools/)"
        )
    return files


def helm_env(home: Path) -> dict[str, str]:
    """The environment for running helm with its cache, config and data under ``home``, so that
    nothing in the user's own helm setup (repositories, plugins) changes what it renders."""
    env = dict(os.environ)
    for var, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        env[var] = str(home / sub)
    env.pop("KUBECONFIG", None)
    return env
