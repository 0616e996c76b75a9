"""Helpers for the controller tests: Node and profile objects, a controller with short timings,
polling with deadlines, and counting status writes in the test API server's request log."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from kubernetes import client

from aimkit.kube import connect
from detector.labels import accelerator_label_key, partition_label_key
from matcher.controller.informer import InformerSettings
from matcher.controller.manager import Controller, ControllerSettings

GROUP, VERSION = "aim.eai.amd.com", "v1alpha2"
MI300X = accelerator_label_key("MI300X")
MI325X = accelerator_label_key("MI325X")
MI355X = accelerator_label_key("MI355X")
DEFAULT_SCHEME = partition_label_key("default")


def gpu_labels(model_key: str, count: str = "8") -> dict[str, str]:
    """What the detector writes on a node of unpartitioned GPUs: the model and the `default`
    partitioning scheme (whole-GPU profiles require the latter)."""
    return {model_key: count, DEFAULT_SCHEME: count}


#: Short timings so leader changes and retries happen within a test's second or two.
FAST_INFORMER = InformerSettings(
    page_size=100, watch_timeout=30, backoff_base=0.05, backoff_cap=0.4, degraded_after=0.5
)


def node_obj(
    name: str,
    labels: dict[str, str] | None = None,
    *,
    gpus: int = 8,
    cpu: str = "128",
    memory: str = "1Ti",
    unschedulable: bool = False,
    ready: bool = True,
    extra_allocatable: dict[str, str] | None = None,
) -> dict[str, Any]:
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110", **(extra_allocatable or {})}
    if gpus:
        allocatable["amd.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "capacity": dict(allocatable),
            "allocatable": allocatable,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        },
    }


def create_node(core: Any, obj: dict[str, Any]) -> None:
    """Create a Node and set its status (a real API server drops status on create)."""
    core.create_node(obj)
    core.patch_node_status(obj["metadata"]["name"], {"status": obj["status"]})


def cluster_profile(name: str, model: str | None, count: int = 1, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "aimId": "qwen/qwen3-32b",
        "image": "amdenterpriseai/aim-qwen-qwen3-32b:0.8.5",
        "metric": "latency",
        "precision": "fp8",
        **spec,
    }
    if model is not None:
        body.update(acceleratorModel=model, acceleratorType="gpu", acceleratorCount=count)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIMClusterProfile",
        "metadata": {"name": name},
        "spec": body,
    }


def create_cluster_profile(custom: client.CustomObjectsApi, obj: dict[str, Any]) -> None:
    custom.create_cluster_custom_object(GROUP, VERSION, "aimclusterprofiles", obj)


def cluster_status(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    obj: Any = custom.get_cluster_custom_object(GROUP, VERSION, "aimclusterprofiles", name)
    return dict(obj.get("status") or {})


def phase(custom: client.CustomObjectsApi, name: str) -> str | None:
    return cluster_status(custom, name).get("status")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_phases(
    custom: client.CustomObjectsApi, expected: dict[str, str], timeout: float = 10.0
) -> None:
    def current() -> dict[str, str | None]:
        return {name: phase(custom, name) for name in expected}

    deadline = time.monotonic() + timeout
    seen: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        seen = current()
        if seen == expected:
            return
        time.sleep(0.02)
    raise AssertionError(f"statuses did not converge: expected {expected}, got {seen}")


def status_writes(server: Any, name: str | None = None, agent: str | None = None) -> int:
    """Status patches the server accepted (for one profile when ``name`` is given)."""
    count = 0
    for r in server.requests:
        if r.verb != "patch" or not r.path.endswith("/status") or "aim.eai.amd.com" not in r.path:
            continue
        if name is not None and f"/{name}/status" not in r.path:
            continue
        if agent is not None and agent not in r.user_agent:
            continue
        if 200 <= r.status < 300:
            count += 1
    return count


def start_controller(
    kube: Any, identity: str = "matcher-a", start: bool = True, **overrides: Any
) -> Controller:
    # The controller's own client (aimkit.kube); tests read back with the official one.
    api = connect(kube.kubeconfig, user_agent=f"aim-matcher/{identity}", pool_size=16)
    settings: dict[str, Any] = {
        "identity": identity,
        "lease_name": "aim-matcher",
        "lease_namespace": "default",
        "config_map_namespace": "default",
        "lease_duration": 2.0,
        "renew_deadline": 1.5,
        "retry_period": 0.2,
        "informer": FAST_INFORMER,
        "retry_base": 0.02,
        "retry_cap": 0.5,
        "workers": 2,
        "health_host": "127.0.0.1",
        "health_port": 0,
    }
    settings.update(overrides)
    controller = Controller(api, ControllerSettings(**settings))
    if start:
        controller.start()
    return controller


def writes_at_least(server: Any, n: int, timeout: float = 5.0, **match: Any) -> int:
    """Wait until ``n`` status writes are on record and return the count.

    The server records a request when it completes, a moment after the client sees the new
    status, so counts are read only once the expected writes have landed.
    """
    return int(
        wait_for(lambda: (c := status_writes(server, **match)) >= n and c, timeout, f"{n} writes")
    )


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET to the controller's health server (an error status too)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
