"""tools/latency-proxy, which benchmarks/bench_controller_real.py puts in front of kube-apiserver:
writes answered late, reads and watches passed at once and streamed, credentials passed on."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest

from aimkit.kube import ApiError, connect
from benchmarks.bench_controller_real import _proxy
from tests.apiserver.kubeconfig import write_kubeconfig

LATENCY = 0.3


@pytest.fixture
def proxied(real_kube, tmp_path):
    plane = real_kube.require_plane()
    proc, url = _proxy(plane, tmp_path, LATENCY)
    try:
        yield plane, url
    finally:
        proc.stop()


def test_writes_wait_reads_do_not_and_watches_stream(proxied, tmp_path):
    plane, url = proxied
    kubeconfig = write_kubeconfig(tmp_path / "proxy.kubeconfig", url, token=plane.admin_token)
    name = f"proxy-{time.monotonic_ns()}"
    path = "/api/v1/namespaces/default/configmaps"
    with closing(connect(kubeconfig)) as api:
        events: list[tuple[str, str]] = []
        stream = api.watch(path, {"fieldSelector": f"metadata.name={name}", "timeoutSeconds": 60})

        def follow() -> None:
            for kind, obj in stream:
                events.append((kind, obj["metadata"]["name"]))
                return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()

        t0 = time.monotonic()
        api.request("POST", path, body={"metadata": {"name": name}})
        assert time.monotonic() - t0 >= LATENCY

        # The event arrives while the watch is still open: streamed, not held to its end.
        reader.join(30)
        assert events == [("ADDED", name)]
        stream.close()

        # A read is answered by the upstream itself (what it stored), not delayed by the proxy:
        # 20 of them take less than one write's delay each.
        t0 = time.monotonic()
        for _ in range(20):
            assert api.get(f"{path}/{name}")["metadata"]["name"] == name
        assert (time.monotonic() - t0) / 20 < LATENCY

        t0 = time.monotonic()
        api.request("DELETE", f"{path}/{name}")
        assert time.monotonic() - t0 >= LATENCY


def test_the_callers_credentials_are_what_the_upstream_sees(proxied, tmp_path):
    plane, url = proxied
    admin = write_kubeconfig(tmp_path / "admin.kubeconfig", url, token=plane.admin_token)
    with closing(connect(admin)) as api:
        assert api.get("/api/v1/namespaces/default/configmaps")["kind"] == "ConfigMapList"
    wrong = write_kubeconfig(tmp_path / "wrong.kubeconfig", url, token="not-a-token")
    with closing(connect(wrong)) as api, pytest.raises(ApiError) as err:
        api.get("/api/v1/namespaces/default/configmaps")
    assert err.value.status == 401
