"""``aim-matcher run``'s command line: flags, the shipped Deployment's args, logs, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from aimkit.logs import Formatter
from matcher.cli import main as cli_main
from matcher.controller.app import build_parser, settings_from_args

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
