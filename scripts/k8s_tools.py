"""Where the Kubernetes tools the project runs are: the ones `make tools` builds from their
pinned Go modules (tools/) into .tools/bin/. Never whatever kubectl happens to be on PATH: its
minor version must match the API server's, and Debian's (1.20) cannot render kustomize
components."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS_BIN = REPO / ".tools" / "bin"


class ToolMissingError(RuntimeError):
    """A tool `make tools` builds is not there."""


def tool(name: str) -> str:
    """Absolute path of ``.tools/bin/<name>`` (kubectl, kube-apiserver, etcd)."""
    path = TOOLS_BIN / name
    if not os.access(path, os.X_OK):
        raise ToolMissingError(
            f"{path} is missing: run `make tools` (builds kubectl, kube-apiserver and etcd "
            "from their pinned Go modules in tools/)"
        )
    return str(path)
