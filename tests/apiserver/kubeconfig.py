"""Kubeconfig files pointing kubectl and the official client at a test server."""

from __future__ import annotations

from pathlib import Path

import yaml


def kubeconfig_text(
    url: str, name: str = "aim-test", namespace: str = "default", token: str = "aim-test-token"
) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: Path | str, url: str, token: str = "aim-test-token") -> Path:
    """A kubeconfig for ``url`` with a bearer ``token`` (any token passes the test server; a
    real one for a proxy in front of kube-apiserver)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(kubeconfig_text(url, token=token))
    return out
