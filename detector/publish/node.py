"""``node`` mode: the agent labels its own Node with one JSON merge patch.

Each publish reads the Node, lets :func:`detector.reconcile.node_patch` work out the difference
within the detector's own keys, and sends one ``PATCH`` with ``application/merge-patch+json``
only when something differs. Labels and the ownership annotation change in the same request.

Why a merge patch and no ``resourceVersion``: a merge patch names only the keys it changes and
the API server applies it to the Node as it is at that moment, so labels that others write in
the meantime are kept. Adding ``metadata.resourceVersion`` would turn it into a
compare-and-swap that fails with 409 whenever anything else touched the Node since our read,
and the kubelet updates Nodes all the time; the keys we set are ours alone, so there is no
lost update to guard against. (A strategic merge patch would do the same for labels; the
merge patch is the simpler, standard format, and it is what the admission policy expects.)

Why ``ApiClient`` and not ``CoreV1Api.patch_node``: the generated ``CoreV1Api`` module alone
adds about 90 MiB of resident memory when imported (client 37), which would put a node agent
far past its 64 MiB budget. The two calls we need go through the official client's
``ApiClient`` all the same (kubeconfig and in-cluster auth, token refresh, TLS, proxies); we
just build the request ourselves. ``patch_node`` would also default to the JSON-patch content
type (which the client turns into a strategic merge patch for dict bodies), so it needed
``_content_type="application/merge-patch+json"`` anyway.

Failures: 429, 5xx and connection errors are retried with capped exponential back-off and
jitter, honouring ``Retry-After``; the retries stop early when the agent is asked to stop.
Anything else (403 from RBAC or the admission policy, 404 for a wrong ``NODE_NAME``, 422) is
reported at once. Either way the agent tries again next cycle.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from detector.publish import PublishError
from detector.reconcile import node_patch, published_labels

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "aim-detector"
_NODE_PATH = "/api/v1/nodes/{name}"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry schedule of one API call: ``base * 2**n`` capped, jittered, ``attempts`` tries."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return rng.uniform(0.5, 1.0) * min(self.cap, self.base * 2.0**retry)


class ApiCallError(PublishError):
    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after: float | None = None


def api_client_from(kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """An ApiClient from ``kubeconfig``, else in-cluster credentials, else ``$KUBECONFIG``/~.

    ``persist_config=False``: refreshed tokens are not written back (read-only file systems).
    """
    if not kubeconfig:
        try:
            configuration = Configuration()
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
            return ApiClient(configuration)
        except kube_config.ConfigException:
            pass  # not in a pod: the usual kubeconfig search, for running the agent by hand
    client: ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, context=context, persist_config=False
    )
    return client


class NodePublisher:
    """Publishes the detector's labels on one Node (see the module docstring)."""

    def __init__(
        self,
        api_client: ApiClient,
        node_name: str,
        *,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        request_timeout: tuple[float, float] = (5.0, 20.0),
        rng: random.Random | None = None,
    ) -> None:
        if not node_name:
            raise ValueError("node mode needs the Node's name (--node-name or NODE_NAME)")
        self._api = api_client
        self.node_name = node_name
        self.target = f"node/{node_name}"
        self._backoff = backoff or Backoff()
        self._stop = stop or threading.Event()
        self._timeout = request_timeout
        self._rng = rng or random.Random()

    # -- the Publisher protocol ----------------------------------------------------------

    def read(self) -> dict[str, str]:
        metadata = self._get_metadata()
        return published_labels(metadata.get("labels"), metadata.get("annotations"))

    def publish(self, labels: Mapping[str, str]) -> bool:
        metadata = self._get_metadata()
        patch = node_patch(metadata.get("labels"), metadata.get("annotations"), labels)
        if patch is None:
            return False
        self._call("PATCH", patch)
        log.info(
            "node patched",
            extra={"kv": {"node": self.node_name, "patch": json.dumps(patch, sort_keys=True)}},
        )
        return True

    def cleanup(self) -> bool:
        return self.publish({})

    def dry_run_patch(self, node_name: str, patch: Mapping[str, Any]) -> None:
        """One merge patch of Node ``node_name`` with ``dryRun=All``: admission runs, nothing is
        stored (the node fence's proof, detector/fence.py). No retries; raises ApiCallError."""
        self._call_once("PATCH", patch, node_name=node_name, dry_run=True)

    # -- HTTP ----------------------------------------------------------------------------

    def _get_metadata(self) -> dict[str, Any]:
        node = self._call("GET")
        metadata = node.get("metadata")
        return metadata if isinstance(metadata, dict) else {}

    def _call(self, method: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One API call with retries; the decoded JSON response."""
        retry = 0
        while True:
            try:
                return self._call_once(method, body)
            except ApiCallError as err:
                if not err.retryable or retry + 1 >= self._backoff.attempts:
                    raise
                delay = self._backoff.delay(retry, err.retry_after, self._rng)
                log.warning(
                    "api call failed, retrying",
                    extra={
                        "kv": {
                            "method": method,
                            "node": self.node_name,
                            "error": str(err),
                            "retry_in_s": round(delay, 3),
                        }
                    },
                )
                if self._stop.wait(delay):
                    raise
                retry += 1

    def _call_once(
        self,
        method: str,
        body: Mapping[str, Any] | None,
        *,
        node_name: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        query: list[tuple[str, str]] | None = None
        if body is not None:
            headers["Content-Type"] = MERGE_PATCH
            query = [("fieldManager", FIELD_MANAGER)]
            if dry_run:
                query.append(("dryRun", "All"))
        node = node_name or self.node_name
        request = self._api.param_serialize(
            method=method,
            resource_path=_NODE_PATH,
            path_params={"name": node},
            query_params=query,
            header_params=headers,
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        what = f"{method} node {node}" + (" (dry run)" if dry_run else "")
        try:
            response = self._api.call_api(*request, _request_timeout=self._timeout)
            data: bytes = response.read()  # type: ignore[no-untyped-call]
        except ApiException as err:  # the client reports TLS errors as status 0
            raise ApiCallError(f"{what}: {err.reason}", err.status, retryable=True) from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise ApiCallError(f"{what}: {type(err).__name__}: {err}", retryable=True) from err
        status = int(response.status)
        if not 200 <= status < 300:
            raise _status_error(what, status, response.reason, data, response.headers)
        try:
            decoded = json.loads(data)
        except ValueError as err:
            raise ApiCallError(f"{what}: response is not JSON: {err}", status) from err
        if not isinstance(decoded, dict):
            raise ApiCallError(f"{what}: response is not a JSON object", status)
        return decoded


def _status_error(
    what: str, status: int, reason: str | None, data: bytes | None, headers: Any
) -> ApiCallError:
    message = reason or ""
    try:
        body = json.loads(data or b"")
        if isinstance(body, dict) and body.get("message"):
            message = str(body["message"])
    except ValueError:
        pass
    hint = {
        403: " (the detector may only change its own labels on its own Node: check RBAC and "
        "the admission policy)",
        404: " (is NODE_NAME / --node-name right?)",
    }.get(status, "")
    err = ApiCallError(
        f"{what}: HTTP {status}: {message}{hint}",
        status,
        retryable=status == 429 or status >= 500,
    )
    err.retry_after = _retry_after(headers)
    return err


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date: fall back to our own schedule
