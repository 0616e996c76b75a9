"""A Kubernetes API server for tests: faithful enough for the official client and kubectl.

from tests.apiserver import ApiServer
with ApiServer(crd_paths=["daemonset/crds"]) as srv:
    srv.write_kubeconfig(tmp_path / "kubeconfig")
"""

from .errors import ApiError
from .faults import Faults, RequestLog, RequestRecord
from .server import ApiServer

__all__ = ["ApiError", "ApiServer", "Faults", "RequestLog", "RequestRecord"]
