"""ApiServer: the test Kubernetes API server, serving real HTTP on loopback."""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from . import cel
from .errors import ApiError
from .faults import Faults, RequestLog
from .handler import Handler
from .kubeconfig import write_kubeconfig
from .registry import CRDS, Registry
from .resources import ResourceType
from .store import Store


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients closing keep-alive connections (or tests dropping them) are routine.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=64)
def _parse(path: Path, _mtime_ns: int, _size: int) -> tuple[dict[str, Any], ...]:
    try:
        loaded = list(yaml.load_all(path.read_text(), Loader=_Loader))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from exc
    return tuple(d for d in loaded if isinstance(d, dict))


def read_yaml_docs(path: Path) -> list[dict[str, Any]]:
    """Every YAML document in a file, or in the *.yaml/*.yml files of a directory (parsed
    once per file version: every test starts a server with the project's CRDs)."""
    files = (
        sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        if path.is_dir()
        else [path]
    )
    docs: list[dict[str, Any]] = []
    for f in files:
        st = f.stat()
        docs += copy.deepcopy(list(_parse(f.resolve(), st.st_mtime_ns, st.st_size)))
    return docs


class ApiServer:
    """In-memory kube-apiserver. `ApiServer(crd_paths=[...]).start()`; `.url`; `.stop()`."""

    def __init__(
        self,
        crd_paths: Iterable[str | Path] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        bookmark_interval: float = 1.0,
        history_limit: int = 20000,
        *,
        too_large_wait: float = 3.0,
    ) -> None:
        self.host, self._port = host, port
        self.bookmark_interval = bookmark_interval
        self.store = Store(history_limit=history_limit)
        self.registry = Registry(self.store)
        self.registry.too_large_wait = too_large_wait
        self.faults = Faults(self.store)
        self.requests = RequestLog()
        self.stopping = False
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        for p in crd_paths:
            self.load_crd(p)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> ApiServer:
        handler = type("BoundHandler", (Handler,), {"app": self})
        self._httpd = _HTTPServer((self.host, self._port), handler)
        self._port = self._httpd.server_address[1]
        self.stopping = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="test-apiserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.store.end_watches()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ApiServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def write_kubeconfig(self, path: str | Path) -> Path:
        return write_kubeconfig(path, self.url)

    # -- content ----------------------------------------------------------------------------
    def load_crd(self, obj_or_path: Mapping[str, Any] | str | Path) -> list[dict[str, Any]]:
        """Register CRDs from an object, a YAML file, or a directory of YAML files (idempotent)."""
        if isinstance(obj_or_path, Mapping):
            docs = [dict(obj_or_path)]
        else:
            docs = read_yaml_docs(Path(obj_or_path))
        out = []
        for doc in docs:
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            try:
                out.append(self.seed(doc))
            except ApiError as err:
                raise ValueError(
                    f"{obj_or_path}: CRD {doc.get('metadata', {}).get('name')!r}: {err.message}"
                ) from err
        return out

    def resource_type(self, api_version: str, kind: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        for rt in self.registry.types():
            if rt.group == group and version in rt.versions and rt.kind == kind:
                return rt
        raise ValueError(f"no resource serves apiVersion={api_version!r} kind={kind!r}")

    def seed(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store `obj` directly (create, or replace if it exists), bypassing HTTP.
        Unlike a create over HTTP, `status` is kept for custom resources too."""
        rt = self.resource_type(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        md = dict(obj.get("metadata") or {})
        ns = (md.get("namespace") or "default") if rt.namespaced else None
        body = copy.deepcopy(dict(obj))
        body["metadata"] = {k: v for k, v in md.items() if k != "resourceVersion"}
        status = body.get("status")
        with self.store.lock:
            if self.store.get(rt.key, (ns or "", md.get("name", ""))) is None:
                stored = self.registry.create(rt, ns, body).obj
            else:
                stored = self.registry.update(rt, ns, md["name"], body, unconditional=True).obj
            if (
                rt.has_status
                and status is not None
                and stored.get("status") != status
                and rt.key != CRDS
            ):
                stored = self.registry.update(
                    rt,
                    ns,
                    stored["metadata"]["name"],
                    {"status": status},
                    subresource="status",
                    unconditional=True,
                ).obj
        return stored

    @staticmethod
    def unevaluated_cel_rules() -> dict[str, str]:
        """CEL rules seen so far that celpy could not evaluate (rule -> why); they were
        skipped, never turned into a 422."""
        return dict(cel.UNSUPPORTED)

    def get_object(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The stored object (a deep copy), or None; a shortcut for assertions."""
        rt = self.resource_type(api_version, kind)
        entry = self.store.get(rt.key, ((namespace or "default") if rt.namespaced else "", name))
        return copy.deepcopy(self.registry.view(rt, entry).obj) if entry else None

    def list_objects(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        rt = self.resource_type(api_version, kind)
        return [
            copy.deepcopy(self.registry.view(rt, e).obj)
            for _, e in self.store.items(rt.key, namespace)
        ]
