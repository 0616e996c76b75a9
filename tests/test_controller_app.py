"""``aim-matcher run``'s command line: flags, the shipped Deployment's args, logs, bad input."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from aimkit.kube import connect
from aimkit.logs import Formatter
from matcher.cli import main as cli_main
from matcher.controller.app import build_parser, settings_from_args
from matcher.controller.manager import Controller, ControllerSettings
from tests.apiserver import ApiServer
from tests.apiserver.kubeconfig import write_kubeconfig
from tests.controller_support import FAST_INFORMER, http_get, start_controller, wait_for

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _keep_root_logger():
    """``main`` installs its JSON handler on the root logger, on the stderr pytest captures
    for one test: put the root logger back so later tests do not log into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_deployments_args_parse_to_the_intended_settings(monkeypatch):
    monkeypatch.setenv("POD_NAMESPACE", "aim-system")
    monkeypatch.setenv("POD_NAME", "aim-matcher-7d9f-abcde")
    deployment = yaml.safe_load((REPO / "daemonset/matcher/deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["aim-matcher", "run"]
    args = [a.replace("$(POD_NAMESPACE)", "aim-system") for a in container.get("args", [])]
    settings = settings_from_args(build_parser().parse_args(args))
    assert settings.leader_election
    assert settings.lease_namespace == "aim-system"
    assert settings.config_map_namespace == "aim-system"
    assert settings.config_map_name == "aim-matcher-config"
    assert settings.identity == "aim-matcher-7d9f-abcde"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probe_port = container["readinessProbe"]["httpGet"]["port"]
    assert settings.health_port == ports.get(probe_port, probe_port)


def test_flags_map_onto_settings():
    args = build_parser().parse_args(
        ["--namespace", "team-a", "--namespace", "team-b", "--no-leader-elect",
         "--health-addr", "127.0.0.1:0", "--lease-duration", "4", "--renew-deadline", "3",
         "--retry-period", "1", "--page-size", "50", "--workers", "3", "--no-events"]
    )  # fmt: skip
    s = settings_from_args(args)
    assert s.profile_namespaces == ("team-a", "team-b")
    assert not s.leader_election
    assert (s.health_host, s.health_port) == ("127.0.0.1", 0)
    assert (s.lease_duration, s.renew_deadline, s.retry_period) == (4.0, 3.0, 1.0)
    assert s.informer.page_size == 50
    assert s.workers == 3
    assert not s.events


def test_logs_are_json_lines_with_the_extra_fields():
    record = logging.makeLogRecord(
        {"name": "matcher.controller", "levelname": "INFO", "msg": "status written %s",
         "args": ("now",), "profile": "aimclusterprofile/x", "status": "Ready"}
    )  # fmt: skip
    entry = json.loads(Formatter("json").format(record))
    assert entry["msg"] == "status written now"
    assert entry["level"] == "info"
    assert entry["profile"] == "aimclusterprofile/x"
    assert entry["status"] == "Ready"
    assert entry["time"].endswith("+00:00")


def test_a_missing_kubeconfig_is_one_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope" / "kubeconfig"
    assert cli_main(["run", "--kubeconfig", str(missing), "--health-addr", ""]) == 2
    err = capsys.readouterr().err
    assert "cannot load Kubernetes configuration" in err
    assert "nope" in err


def test_inconsistent_lease_timings_are_refused(kube, capsys):
    code = cli_main(
        ["run", "--kubeconfig", str(kube.kubeconfig), "--health-addr", "",
         "--lease-duration", "5", "--renew-deadline", "10"]
    )  # fmt: skip
    assert code == 2
    assert "renew_deadline < lease_duration" in capsys.readouterr().err


def test_help_lists_the_operational_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["run", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--kubeconfig",
        "--lease-duration",
        "--health-addr",
        "--config-map",
        "--namespace",
    ):
        assert flag in out


# --- start-up, missing CRDs, an unreachable API server ---------------------------------------


def test_health_listens_on_loopback_by_default_outside_a_pod(kube, monkeypatch):
    monkeypatch.delenv("POD_IP", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = settings_from_args(build_parser().parse_args([]))
    assert (settings.health_host, settings.health_port) == ("", 8080)
    controller = start_controller(kube, health_host="", health_port=0)
    try:
        assert controller.health is not None
        assert controller.health.addresses == [f"127.0.0.1:{controller.health.port}"]
    finally:
        controller.stop()


def test_missing_crds_are_said_once_and_picked_up_once_installed(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with ApiServer() as srv:  # no CRDs
        kubeconfig = srv.write_kubeconfig(tmp_path / "kubeconfig")
        settings = ControllerSettings(
            identity="crd-test", leader_election=False, informer=FAST_INFORMER,
            health_host="127.0.0.1", health_port=0,
        )  # fmt: skip
        controller = Controller(connect(kubeconfig), settings)
        controller.start()
        try:
            assert controller.health is not None
            readyz = f"http://127.0.0.1:{controller.health.port}/readyz"
            wait_for(
                lambda: srv.requests.count(path_contains="aimclusterprofiles") >= 5,
                what="several failed lists",
            )
            status, body = http_get(readyz)
            assert status == 503
            assert "[-]caches failed: caches not synced: " in body
            assert "is not served by the API server: install the CRDs (kubectl apply -k" in body
            said = [
                r
                for r in caplog.records
                if r.levelno >= logging.WARNING and "install the CRDs" in r.getMessage()
            ]
            assert sorted(getattr(r, "informer", "") for r in said) == [
                "aimclusterprofiles",
                "aimprofiles",
            ], "once per collection, not once per retry"
            srv.load_crd(REPO / "daemonset" / "crds")
            assert controller.wait_synced(10)
            assert http_get(readyz) == (200, "ok\n")
        finally:
            controller.stop()


def test_an_unreachable_api_server_is_one_line_per_failure(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "matcher", "run", "--kubeconfig", str(kubeconfig),
         "--health-addr", "127.0.0.1:0", "--backoff-cap", "0.2", "--retry-period", "0.2",
         "--renew-deadline", "0.5", "--lease-duration", "1", "--config-map-namespace", "aim",
         "--lease-namespace", "aim", "--identity", "m1"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    # From the first failure on (start-up itself takes seconds on a loaded machine, and a
    # SIGTERM before the handler is installed kills the process): a dozen retries of every
    # informer and of the lease.
    wait_for(lambda: any("cannot reach" in line for line in lines), timeout=60,
             what="the first failure logged")  # fmt: skip
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    reader.join(timeout=10)
    stderr = "".join(lines)
    assert proc.returncode == 0, stderr
    entries = [json.loads(line) for line in stderr.splitlines()]
    (settings,) = [e for e in entries if e["msg"] == "settings"]
    assert settings["config_map_namespace"] == "aim"
    assert settings["informer.backoff_cap"] == 0.2
    (watching,) = [e for e in entries if e["msg"] == "watching"]
    assert watching["configmap"] == "aim/aim-matcher-config"
    problems = [e for e in entries if e["level"] in ("warning", "error")]
    assert problems, "the outage is reported"
    seen = [(e["msg"], e.get("informer"), e.get("lease")) for e in problems]
    assert len(seen) == len(set(seen)), f"a failure repeated: {seen}"
    assert all(f"cannot reach http://127.0.0.1:{port}: connection refused" in e["msg"]
               for e in problems if "informer" in e or "lease" in e)  # fmt: skip
