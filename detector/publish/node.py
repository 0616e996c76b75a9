"""``node`` mode: the agent labels its own Node with one JSON merge patch.

Each publish reads the Node, lets :func:`detector.reconcile.node_patch` work out the difference
within the detector's own keys, and sends one ``PATCH`` with ``application/merge-patch+json``
only when something differs. Labels and the ownership annotation change in the same request.
The annotation stays (empty) when the detector owns no label: the mark that it ran here.

Why a merge patch and no ``resourceVersion``: a merge patch names only the keys it changes and
the API server applies it to the Node as it is at that moment, so labels that others write in
the meantime are kept. Adding ``metadata.resourceVersion`` would turn it into a
compare-and-swap that fails with 409 whenever anything else touched the Node since our read,
and the kubelet updates Nodes all the time; the keys we set are ours alone, so there is no
lost update to guard against. (A strategic merge patch would do the same for labels; the
merge patch is the simpler, standard format, and it is what the admission policy expects.)

Why not the ``kubernetes`` package: importing it costs about 30 MiB and its generated
``CoreV1Api`` module 80 MiB more, for two calls a minute. The publisher goes through
``aimkit.kube`` instead (urllib3 underneath): the same kubeconfig and in-cluster auth as the
matcher, token files re-read so rotated service-account tokens are used, TLS with the cluster's
CA. The agent's peak RSS went from about 58 to under 40 MiB (``benchmarks/bench_detector_loop``).

Failures: 429, 5xx and connection errors are retried with capped exponential back-off and
jitter, honouring ``Retry-After``; the retries stop early when the agent is asked to stop.
Anything else (403 from RBAC or the admission policy, 404 for a wrong ``NODE_NAME``, 422) is
reported at once. Either way the agent tries again next cycle.

``dry_run_patch`` sends a patch with ``dryRun=All``: the API server runs admission (RBAC, the
admission policy) and answers as if it had written, but stores nothing. The node fence's proof
is built on it (``detector/fence.py``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aimkit.kube import MERGE_PATCH, ApiError, KubeClient, TransportError
from detector.publish import PublishError
from detector.reconcile import node_patch, published_labels

log = logging.getLogger(__name__)

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


class NodePublisher:
    """Publishes the detector's labels on one Node (see the module docstring)."""

    def __init__(
        self,
        api: KubeClient,
        node_name: str,
        *,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        request_timeout: tuple[float, float] = (5.0, 20.0),
        rng: random.Random | None = None,
    ) -> None:
        if not node_name:
            raise ValueError("node mode needs the Node's name (--node-name or NODE_NAME)")
        self._api = api
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

    def publish(
        self, labels: Mapping[str, str], *, complete: bool = True, mark: bool | None = True
    ) -> bool:
        metadata = self._get_metadata()
        # After a failed probe the mark is neither added nor removed: "ran and found nothing"
        # is not known, and a mark written earlier is still true.
        mark = mark if complete else None
        patch = node_patch(metadata.get("labels"), metadata.get("annotations"), labels, mark=mark)
        if patch is None:
            return False
        self._call("PATCH", patch)
        log.info(
            "node patched",
            extra={"node": self.node_name, "patch": json.dumps(patch, sort_keys=True)},
        )
        return True

    def cleanup(self) -> bool:
        # No mark either: after the uninstall the Node carries nothing of the detector.
        return self.publish({}, mark=False)

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
        """One API call to our Node with retries; the decoded JSON response."""
        name = self.node_name
        retry = 0
        while True:
            try:
                return self._call_once(method, body)
            except ApiCallError as err:
                if not err.retryable or retry + 1 >= self._backoff.attempts:
                    raise
                delay = self._backoff.delay(retry, err.retry_after, self._rng)
                # The final failure is the caller's to report; the attempts before it are detail.
                log.debug(
                    "api call failed, retrying",
                    extra={
                        "method": method,
                        "node": name,
                        "error": str(err),
                        "retry_in_s": round(delay, 3),
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
        query: dict[str, str] = {}
        if body is not None:
            query["fieldManager"] = FIELD_MANAGER
            if dry_run:
                query["dryRun"] = "All"
        name = node_name or self.node_name
        what = f"{method} node {name}" + (" (dry run)" if dry_run else "")
        try:
            return self._api.request(
                method,
                _NODE_PATH.format(name=name),
                query=query or None,
                body=dict(body) if body is not None else None,
                content_type=MERGE_PATCH,
                timeout=self._timeout,
            )
        except ApiError as err:
            raise _status_error(what, err) from err
        except TransportError as err:
            raise ApiCallError(f"{what}: {err.why}", retryable=True) from err


def _status_error(what: str, err: ApiError) -> ApiCallError:
    hint = {
        403: " (the detector may only change its own labels on its own Node: check RBAC and "
        "the admission policy)",
        404: " (is NODE_NAME / --node-name right?)",
    }.get(err.status, "")
    message = err.message or err.reason
    result = ApiCallError(
        f"{what}: HTTP {err.status}: {message}{hint}",
        err.status,
        retryable=err.status == 429 or err.status >= 500,
    )
    result.retry_after = err.retry_after
    return result
