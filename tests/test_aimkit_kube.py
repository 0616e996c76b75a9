"""aimkit.kube: the kubeconfig resolution order, credentials, TLS, errors and watches.

Resolution is tested on real files and environments. Calls go over real HTTP to the project's
test API server, and over HTTPS with authentication to the same server behind
``tests/tls_support.SecureApiServer`` (bearer tokens, client certificates, a CA of its own).
"""

from __future__ import annotations

import base64
import json
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from aimkit.kube import ApiError, KubeClient, TransportError, connect
from aimkit.kubeauth import TokenFile
from aimkit.kubeconfig import ConfigError, in_cluster, load
from tests.tls_support import SecureApiServer

NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}}}


def kubeconfig(
    path: Path,
    server: str,
    *,
    name: str = "ctx",
    cluster: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    current: bool = True,
) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": name, "user": user or {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }
    if current:
        doc["current-context"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def service_account(directory: Path, token: str, ca: bytes = b"") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(ca)
    (directory / "namespace").write_text("aim-system")
    return directory


# --- the resolution order ----------------------------------------------------------------------


def test_order_flag_then_kubeconfig_env_then_in_cluster_then_home(tmp_path):
    flag = kubeconfig(tmp_path / "flag", "https://flag:6443")
    env_file = kubeconfig(tmp_path / "env", "https://env:6443")
    home = tmp_path / "home"
    kubeconfig(home / ".kube" / "config", "https://home:6443")
    sa = service_account(tmp_path / "sa", "t")
    pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    everything = {**pod, "KUBECONFIG": str(env_file)}

    def server(kubeconfig_arg: Path | None, env: dict[str, str]) -> str:
        config = load(kubeconfig_arg, env=env, service_account_dir=sa, home=home)
        return config.server

    assert server(flag, everything) == "https://flag:6443"
    assert server(None, everything) == "https://env:6443"
    assert server(None, pod) == "https://10.96.0.1:443"
    assert server(None, {}) == "https://home:6443"


def test_a_missing_explicit_kubeconfig_names_the_path_in_one_line(tmp_path):
    missing = tmp_path / "nope" / "kubeconfig"
    with pytest.raises(ConfigError) as err:
        load(missing, env={})
    message = str(err.value)
    assert "\n" not in message
    assert str(missing) in message
    assert f"no directory {tmp_path / 'nope'}" in message


def test_nothing_found_says_where_it_looked(tmp_path):
    with pytest.raises(
        ConfigError, match=r"not in a pod, KUBECONFIG unset and no .*/\.kube/config"
    ):
        load(env={}, home=tmp_path)
    with pytest.raises(ConfigError, match=r"KUBECONFIG=.*a:.*b: no such file"):
        load(env={"KUBECONFIG": f"{tmp_path}/a:{tmp_path}/b"}, home=tmp_path)


def test_kubeconfig_files_merge_first_definition_wins(tmp_path):
    first = kubeconfig(tmp_path / "one", "https://one:6443", name="shared", current=False)
    second = kubeconfig(tmp_path / "two", "https://two:6443", name="shared")
    missing = tmp_path / "absent"
    config = load(env={"KUBECONFIG": f"{missing}:{first}:{second}"})
    # current-context comes from the second file (the first sets none), the cluster from
    # the first file that defines it; missing files in the list are skipped.
    assert config.server == "https://one:6443"


def test_relative_paths_are_relative_to_their_kubeconfig(tmp_path):
    (tmp_path / "conf" / "certs").mkdir(parents=True)
    (tmp_path / "conf" / "certs" / "ca.crt").write_bytes(b"CA PEM")
    (tmp_path / "conf" / "token").write_text("tok\n")
    path = kubeconfig(
        tmp_path / "conf" / "config",
        "https://x:6443",
        cluster={"certificate-authority": "certs/ca.crt"},
        user={"tokenFile": "token"},
    )
    config = load(path)
    assert config.ca_pem == b"CA PEM"
    assert config.auth.headers() == {"Authorization": "Bearer tok"}


@pytest.mark.parametrize(
    ("user", "cluster", "message"),
    [
        (
            {"auth-provider": {"name": "oidc"}},
            {},
            "auth-provider 'oidc' is not supported.*kubelogin",
        ),
        ({"client-certificate-data": "eA=="}, {}, "client-certificate and client-key go together"),
        ({"tokenFile": "/nonexistent/token"}, {}, "tokenFile /nonexistent/token: no such file"),
        ({}, {"certificate-authority-data": "not base64!"}, "certificate-authority-data is not"),
        ({"exec": {"command": "x", "apiVersion": "v1"}}, {}, "exec apiVersion 'v1' is not"),
        ({"as": "admin"}, {}, "impersonation"),
    ],
)
def test_unusable_kubeconfig_entries_are_one_clear_error(tmp_path, user, cluster, message):
    path = kubeconfig(tmp_path / "config", "https://x:6443", cluster=cluster, user=user)
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_unknown_context_and_server_are_named(tmp_path):
    path = kubeconfig(tmp_path / "config", "https://x:6443")
    with pytest.raises(ConfigError, match="context 'other' not found"):
        load(path, context="other")
    bad = kubeconfig(tmp_path / "bad", "x:6443")
    with pytest.raises(ConfigError, match="server 'x:6443' is not an http"):
        load(bad)


def test_in_cluster_reads_the_service_account(tmp_path):
    sa = service_account(tmp_path / "sa", "pod-token\n", b"CA")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    config = in_cluster(env, sa)
    assert config.server == "https://[fd00::1]:443"
    assert config.namespace == "aim-system"
    assert config.auth.headers() == {"Authorization": "Bearer pod-token"}
    (sa / "token").unlink()
    with pytest.raises(ConfigError, match="automountServiceAccountToken"):
        in_cluster(env, sa)


def test_a_token_file_is_reread_once_a_minute_old(tmp_path):
    path = tmp_path / "token"
    path.write_text("first")
    now = [0.0]
    source = TokenFile(path, clock=lambda: now[0])
    assert source.token() == "first"
    path.write_text("second")
    now[0] = 59.0
    assert source.token() == "first"
    now[0] = 60.0
    assert source.token() == "second"
    path.unlink()  # mid-rotation: keep the last token rather than fail
    now[0] = 200.0
    assert source.token() == "second"


# --- calls over HTTP ---------------------------------------------------------------------------


@pytest.fixture
def api(kube):
    client = connect(kube.kubeconfig, user_agent="aimkit-test")
    yield client
    client.close()


def test_request_round_trip_and_status_errors(kube, api):
    name = kube.unique("n")
    created = api.request("POST", "/api/v1/nodes", body={**NODE, "metadata": {"name": name}})
    assert created["metadata"]["name"] == name
    patched = api.request(
        "PATCH",
        f"/api/v1/nodes/{name}",
        body={"metadata": {"labels": {"x": "1"}}},
        content_type="application/merge-patch+json",
    )
    assert patched["metadata"]["labels"]["x"] == "1"
    with pytest.raises(ApiError) as err:
        api.get(f"/api/v1/nodes/{name}-missing")
    assert err.value.status == 404
    assert err.value.reason == "NotFound"
    assert "not found" in err.value.message
    assert str(err.value).startswith(f"GET /api/v1/nodes/{name}-missing: HTTP 404 NotFound")
    api.request("DELETE", f"/api/v1/nodes/{name}")


def test_dry_run_patches_change_nothing(kube, api):
    name = kube.unique("n")
    api.request("POST", "/api/v1/nodes", body={**NODE, "metadata": {"name": name}})
    answer = api.request(
        "PATCH",
        f"/api/v1/nodes/{name}",
        query={"dryRun": "All"},
        body={"metadata": {"labels": {"x": "1"}}},
        content_type="application/merge-patch+json",
    )
    assert answer["metadata"]["labels"] == {"x": "1"}
    assert "x" not in (api.get(f"/api/v1/nodes/{name}")["metadata"].get("labels") or {})
    api.request("DELETE", f"/api/v1/nodes/{name}")


def test_retry_after_is_reported(kube, api):
    srv = kube.require_server()
    srv.faults.fail_next(1, code=429, retry_after=3, verb="list")
    with pytest.raises(ApiError) as err:
        api.get("/api/v1/nodes")
    assert err.value.status == 429
    assert err.value.retry_after == 3.0


def test_an_unreachable_server_is_one_line(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    client = connect(kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}"))
    with pytest.raises(TransportError) as err:
        client.get("/api/v1/nodes")
    assert str(err.value) == (
        f"GET /api/v1/nodes: cannot reach http://127.0.0.1:{port}: connection refused"
    )


def test_a_watch_streams_events_and_can_be_interrupted(kube, api):
    listed = api.get("/api/v1/nodes")
    stream = api.watch(
        "/api/v1/nodes",
        {"resourceVersion": listed["metadata"]["resourceVersion"], "timeoutSeconds": 30},
    )
    name = kube.unique("watched")
    api.request("POST", "/api/v1/nodes", body={**NODE, "metadata": {"name": name}})
    events = iter(stream)
    kind, obj = next(events)
    assert (kind, obj["metadata"]["name"]) == ("ADDED", name)
    threading.Timer(0.2, stream.interrupt).start()
    started = time.monotonic()
    with pytest.raises((TransportError, StopIteration)):
        next(events)
    assert time.monotonic() - started < 10
    api.request("DELETE", f"/api/v1/nodes/{name}")


def test_an_interrupted_watch_keeps_its_connection_from_other_requests(kube):
    """interrupt() comes from another thread (an informer asked to re-list) while the reader is
    between two reads. The connection must not go back to the pool then: a request that took it
    would leave the reader on a closed response (an AttributeError deep in urllib3 killed an
    informer thread that way). One connection in the pool, so the next request would take it."""
    client = connect(kube.kubeconfig, pool_size=1)
    try:
        name = kube.unique("watched")
        path = "/api/v1/namespaces/default/configmaps"
        client.request("POST", path, body={"metadata": {"name": name}, "data": {"x": "y" * 20000}})
        stream = client.watch(
            path, {"fieldSelector": f"metadata.name={name}", "timeoutSeconds": 30}
        )
        lines = stream.lines()
        assert name.encode() in next(lines)
        stream.interrupt()
        assert client.get(f"{path}/{name}")["metadata"]["name"] == name
        with pytest.raises(TransportError):
            for _ in lines:
                pass
        stream.close()
        # The pool still serves: the interrupted connection was dropped, not reused.
        assert client.get(f"{path}/{name}")["metadata"]["name"] == name
        client.request("DELETE", f"{path}/{name}")
    finally:
        client.close()


# --- TLS and credentials -----------------------------------------------------------------------


@pytest.fixture
def secure(tmp_path):
    server = SecureApiServer(tmp_path / "secure", tokens={"good-token"}).start()
    yield server
    server.stop()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_ca_file_and_token(tmp_path, secure):
    ca = tmp_path / "ca.crt"
    ca.write_bytes(secure.ca.pem)
    path = kubeconfig(
        tmp_path / "config",
        secure.url,
        cluster={"certificate-authority": str(ca)},
        user={"token": "good-token"},
    )
    assert connect(path).get("/api/v1/nodes")["kind"] == "NodeList"
    assert secure.seen == ["token:good-token"]


def test_client_certificate_data_and_files(tmp_path, secure):
    pair = secure.ca.issue("aim-detector")
    cluster = {"certificate-authority-data": _b64(secure.ca.pem)}
    inline = kubeconfig(
        tmp_path / "inline",
        secure.url,
        cluster=cluster,
        user={
            "client-certificate-data": _b64(pair.cert_pem),
            "client-key-data": _b64(pair.key_pem),
        },
    )
    connect(inline).get("/api/v1/nodes")
    cert, key = pair.write(tmp_path, "client")
    files = kubeconfig(
        tmp_path / "files",
        secure.url,
        cluster=cluster,
        user={"client-certificate": str(cert), "client-key": str(key)},
    )
    connect(files).get("/api/v1/nodes")
    assert secure.seen == ["cert:aim-detector", "cert:aim-detector"]


def test_a_wrong_ca_fails_verification_in_one_line(tmp_path, secure):
    other = SecureApiServer(tmp_path / "other").ca
    path = kubeconfig(
        tmp_path / "config",
        secure.url,
        cluster={"certificate-authority-data": _b64(other.pem)},
        user={"token": "good-token"},
    )
    with pytest.raises(TransportError) as err:
        connect(path).get("/api/v1/nodes")
    assert "\n" not in str(err.value)
    assert f"cannot reach {secure.url}: TLS: certificate verify failed" in str(err.value)
    assert secure.seen == []


def test_insecure_skip_tls_verify(tmp_path, secure):
    path = kubeconfig(
        tmp_path / "config",
        secure.url,
        cluster={"insecure-skip-tls-verify": True},
        user={"token": "good-token"},
    )
    assert connect(path).get("/api/v1/nodes")["kind"] == "NodeList"


def test_tls_server_name_checks_the_certificate_against_that_name(tmp_path):
    server = SecureApiServer(
        tmp_path / "named", tokens={"t"}, serving_hosts=("api.cluster.example",)
    ).start()
    try:
        cluster = {"certificate-authority-data": _b64(server.ca.pem)}
        plain = kubeconfig(tmp_path / "plain", server.url, cluster=cluster, user={"token": "t"})
        with pytest.raises(TransportError, match="TLS"):
            connect(plain).get("/api/v1/nodes")
        named = kubeconfig(
            tmp_path / "named.cfg",
            server.url,
            cluster={**cluster, "tls-server-name": "api.cluster.example"},
            user={"token": "t"},
        )
        assert connect(named).get("/api/v1/nodes")["kind"] == "NodeList"
    finally:
        server.stop()


def test_in_cluster_token_rotation_is_picked_up_after_a_401(tmp_path, secure):
    sa = service_account(tmp_path / "sa", "good-token", secure.ca.pem)
    host, port = secure.url.removeprefix("https://").split(":")
    client = KubeClient(
        in_cluster({"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}, sa)
    )
    client.get("/api/v1/nodes")
    # The kubelet rotates the projected token; the API server stops accepting the old one.
    (sa / "token").write_text("rotated-token")
    secure.tokens.clear()
    secure.tokens.add("rotated-token")
    client.get("/api/v1/nodes")
    assert secure.seen == ["token:good-token", "token:rotated-token"]


EXEC_PLUGIN = """#!{python}
import json, os, pathlib, sys
calls = pathlib.Path(sys.argv[1])
calls.write_text(str(int(calls.read_text() or 0) + 1) if calls.exists() else "1")
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["spec"]["interactive"] is False, info
assert os.environ["PLUGIN_ENV"] == "set"
status = json.loads(pathlib.Path(sys.argv[2]).read_text())
print(json.dumps({{"apiVersion": info["apiVersion"], "kind": "ExecCredential",
                  "status": status}}))
"""


def exec_plugin(tmp_path: Path) -> tuple[Path, Path, Path]:
    plugin = tmp_path / "bin" / "credential-plugin"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.write_text(EXEC_PLUGIN.format(python=sys.executable))
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    return plugin, tmp_path / "calls", tmp_path / "status.json"


def exec_user(plugin: Path, calls: Path, status: Path, **extra: Any) -> dict[str, Any]:
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "args": [str(calls), str(status)],
            "env": [{"name": "PLUGIN_ENV", "value": "set"}],
            "interactiveMode": "Never",
            **extra,
        }
    }


def test_exec_plugin_token_is_cached_and_refreshed_after_a_401(tmp_path, secure):
    plugin, calls, status = exec_plugin(tmp_path)
    status.write_text(json.dumps({"token": "good-token"}))
    path = kubeconfig(
        tmp_path / "config",
        secure.url,
        cluster={"certificate-authority-data": _b64(secure.ca.pem)},
        user=exec_user(plugin, calls, status),
    )
    client = connect(path)
    client.get("/api/v1/nodes")
    client.get("/api/v1/nodes")
    assert calls.read_text() == "1"
    status.write_text(json.dumps({"token": "next-token"}))
    secure.tokens.clear()
    secure.tokens.add("next-token")
    client.get("/api/v1/nodes")
    assert calls.read_text() == "2"
    assert secure.seen == ["token:good-token", "token:good-token", "token:next-token"]


def test_exec_plugin_expiry_and_client_certificates(tmp_path, secure):
    plugin, calls, status = exec_plugin(tmp_path)
    pair = secure.ca.issue("from-plugin")
    status.write_text(
        json.dumps(
            {
                "clientCertificateData": pair.cert_pem.decode(),
                "clientKeyData": pair.key_pem.decode(),
                "expirationTimestamp": "2000-01-01T00:00:00Z",  # already expired
            }
        )
    )
    path = kubeconfig(
        tmp_path / "config",
        secure.url,
        cluster={"certificate-authority-data": _b64(secure.ca.pem)},
        user=exec_user(plugin, calls, status),
    )
    client = connect(path)
    client.get("/api/v1/nodes")
    client.get("/api/v1/nodes")
    assert secure.seen == ["cert:from-plugin", "cert:from-plugin"]
    assert int(calls.read_text()) >= 2  # expired credentials are never reused


def test_exec_plugin_failures_are_one_line(tmp_path):
    hint = "install it with: brew install credential-plugin"
    missing = kubeconfig(
        tmp_path / "missing",
        "https://127.0.0.1:1",
        user={
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "no-such-credential-plugin",
                "installHint": hint,
            }
        },
    )
    with pytest.raises(TransportError, match=f"command not found \\({hint}\\)"):
        connect(missing).get("/api/v1/nodes")
    always = kubeconfig(
        tmp_path / "always",
        "https://127.0.0.1:1",
        user={"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "sh",
                       "interactiveMode": "Always"}},
    )  # fmt: skip
    with pytest.raises(TransportError, match="needs an interactive terminal"):
        connect(always).get("/api/v1/nodes")
    failing = kubeconfig(
        tmp_path / "failing",
        "https://127.0.0.1:1",
        user={"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "sh",
                       "args": ["-c", "echo 'token expired, run login' >&2; exit 3"],
                       "interactiveMode": "Never"}},
    )  # fmt: skip
    with pytest.raises(TransportError, match=r"failed \(exit 3\): token expired, run login"):
        connect(failing).get("/api/v1/nodes")
