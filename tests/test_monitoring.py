"""The shipped monitoring objects (daemonset/components/monitoring): rules checked and unit-tested
by promtool, every metric they and the dashboard name exported by the programs (their registries,
and the same names served by the running programs), the dashboard's shape, the objects valid for
the prometheus-operator CRDs and applied on a real kube-apiserver that has them."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.k8s_tools import prometheus_operator_crds
from scripts.validate_manifests import ALL_VARIANTS, render, schema_problems
from scripts.validate_monitoring import (
    _SUFFIXES,
    PromtoolError,
    alert_problems,
    alerts,
    as_promql,
    check_rules,
    dashboard_problems,
    dashboard_rule_groups,
    exported_metrics,
    load_dashboard,
    metric_names,
    panels,
    rule_groups,
    run_rule_tests,
    unknown_metric_problems,
    validate,
)
from tests.apiserver import ApiServer
from tests.controlplane.process import free_port
from tests.hosttrees import build_host

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_rules_and_dashboard_pass_every_check():
    results = validate()
    assert results == {check: [] for check in results}
    assert len(results) == 6


def test_metric_names_are_read_from_the_parse_tree():
    expr = (
        'max by (namespace, pod, node) (aim_detector_node_fence{state="open"}) == 1 '
        "or absent(aim_matcher_is_leader) + histogram_quantile(0.9, sum by (le) "
        "(rate(aim_detector_probe_duration_seconds_bucket[5m]))) - time() "
        '+ count({__name__="aim_matcher_nodes"}) + sum(up offset 5m) '
        "+ max_over_time(aim_matcher_queue_depth[10m:1m]) * -x_total"
    )
    assert metric_names(expr) == {
        "aim_detector_node_fence", "aim_matcher_is_leader",
        "aim_detector_probe_duration_seconds_bucket", "aim_matcher_nodes", "up",
        "aim_matcher_queue_depth", "x_total",
    }  # fmt: skip


def test_exported_metrics_are_the_programs_registries():
    exported = exported_metrics()
    detector, matcher = exported["aim-detector"], exported["aim-matcher"]
    assert {
        "aim_detector_probe_errors_total", "aim_detector_node_fence",
        "aim_detector_probe_duration_seconds_bucket", "aim_detector_devices",
    } <= detector  # fmt: skip
    assert "aim_detector_probe_errors" not in detector  # a counter is served as ..._total
    assert {"aim_matcher_profiles", "aim_matcher_status_writes_total",
            "aim_matcher_reconcile_duration_seconds_count"} <= matcher  # fmt: skip
    assert not detector & matcher


def test_a_metric_no_program_exports_is_named():
    problems = unknown_metric_problems(
        iter([("rule X", "rate(aim_detector_probe_error_total[5m]) > 0"), ("rule Y", "sum((")]),
        exported_metrics(),
    )
    assert problems[0] == (
        "rule X: aim_detector_probe_error_total is not a metric of aim-detector or aim-matcher "
        "(their registries: detector/metrics.py, detector/fence.py, "
        "matcher/controller/metrics.py)"
    )
    assert problems[1].startswith("rule Y: does not parse:")


def _served_series(url: str, wanted: str, process: subprocess.Popen[str]) -> set[str]:
    """The series names a /metrics page declares (its # TYPE lines), once ``wanted`` is there."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            text = ""
        if f"# TYPE {wanted} " in text:
            names = set()
            for match in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
                name, kind = match.groups()
                if kind == "counter":  # the exposition's family name has no _total
                    name = name.removesuffix("_total")
                names |= {name + suffix for suffix in _SUFFIXES.get(kind, ("",))}
            return names
        time.sleep(0.2)
    raise AssertionError(f"{url} never served {wanted}")


@pytest.mark.slow
def test_the_running_programs_serve_exactly_the_registries_names(tmp_path):
    """What the check reads from the code is what the programs serve: the detector in node
    mode (its node fence's gauge included) and the matcher with its profile collector."""
    exported = exported_metrics()
    root = build_host(tmp_path / "hosts", "mi300x-8-spx-nps1")
    with ApiServer(crd_paths=sorted((ROOT / "daemonset" / "crds").glob("*.yaml"))) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        server.seed({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-0"}})
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
        detector_port, matcher_port = free_port(), free_port()
        detector = subprocess.Popen(
            [sys.executable, "-m", "detector", "--node-name", "gpu-0", "--kubeconfig",
             str(kubeconfig), "--host-root", str(root), "--gpu-backend", "sysfs",
             "--metrics-address", "127.0.0.1", "--metrics-port", str(detector_port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        matcher = subprocess.Popen(
            [sys.executable, "-m", "matcher", "run", "--kubeconfig", str(kubeconfig),
             "--no-leader-elect", "--health-addr", f"127.0.0.1:{matcher_port}",
             "--config-map-namespace", "default"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            served_detector = _served_series(
                f"http://127.0.0.1:{detector_port}/metrics", "aim_detector_node_fence", detector
            )
            served_matcher = _served_series(
                f"http://127.0.0.1:{matcher_port}/metrics", "aim_matcher_profiles", matcher
            )
        finally:
            for process in (detector, matcher):
                process.terminate()
                process.communicate(timeout=30)
    # The programs may serve more (prometheus_client's process and platform collectors are
    # not in these registries); every name of the registries is served.
    assert exported["aim-detector"] <= served_detector
    assert exported["aim-matcher"] <= served_matcher
    ours = re.compile(r"^aim_(detector_|matcher_|profile_status$)")  # the per-profile series too
    assert {n for n in served_detector if ours.match(n)} == exported["aim-detector"]
    assert {n for n in served_matcher if ours.match(n)} == exported["aim-matcher"]


def test_promtool_refuses_a_rule_that_does_not_parse():
    with pytest.raises(PromtoolError, match=r"parse error|unexpected"):
        check_rules([{"name": "g", "rules": [{"alert": "A", "expr": "sum((aim_matcher_nodes"}]}])


def test_the_rule_tests_catch_a_changed_alert():
    groups = copy.deepcopy(rule_groups())
    probe = next(a for a in alerts(groups) if a["alert"] == "AimDetectorProbeFailing")
    probe["for"] = "30m"
    with pytest.raises(PromtoolError, match="alertname: AimDetectorProbeFailing, time: 17m"):
        run_rule_tests(groups)
    groups = copy.deepcopy(rule_groups())
    fence = next(a for a in alerts(groups) if a["alert"] == "AimDetectorNodeFenceOpen")
    fence["expr"] = 'max by (namespace, pod, node) (aim_detector_node_fence{state!="proven"}) == 1'
    with pytest.raises(PromtoolError, match="AimDetectorNodeFenceOpen"):
        run_rule_tests(groups)  # would page on "waived" and "unknown" too


def test_every_alert_needs_a_severity_and_both_annotations():
    groups = copy.deepcopy(rule_groups())
    rule = next(alerts(groups))
    del rule["labels"]["severity"]
    del rule["annotations"]["description"]
    assert alert_problems(groups) == [
        f"alert {rule['alert']}: needs a severity label (critical, warning or info)",
        f"alert {rule['alert']}: needs a description annotation",
    ]


def test_the_operations_page_lists_every_shipped_alert():
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("### Alerts") : text.index("## Logs")]
    listed = re.findall(r"^\| `(\w+)` \|", section, re.M)
    shipped = [a["alert"] for a in alerts(rule_groups())]
    assert listed == shipped
    for rule in alerts(rule_groups()):
        row = next(line for line in section.splitlines() if line.startswith(f"| `{rule['alert']}`"))
        assert f"| {rule['for']} | {rule['labels']['severity']} |" in row


def test_the_dashboard_answers_the_operators_questions():
    dashboard = load_dashboard()
    titles = {p["title"] for p in panels(dashboard)}
    assert {"Devices per node and model", "Labels per node", "Probe failures",
            "Profiles by status", "Status writes", "Queue depth"} <= titles  # fmt: skip
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[-1]["title"] == "Admission outcomes (webhook)"
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "node"}


def _broken(change) -> list[str]:
    dashboard = copy.deepcopy(load_dashboard())
    change(dashboard)
    return dashboard_problems(dashboard)


def test_dashboard_problems_are_named():
    def overlap(d: dict[str, Any]) -> None:
        d["panels"][2]["gridPos"] = dict(d["panels"][1]["gridPos"])

    def same_id(d: dict[str, Any]) -> None:
        d["panels"][2]["id"] = d["panels"][1]["id"]

    def unknown_variable(d: dict[str, Any]) -> None:
        d["panels"][1]["targets"][0]["expr"] = 'sum(aim_detector_healthy{node=~"$nodes"})'

    def other_source(d: dict[str, Any]) -> None:
        d["panels"][1]["datasource"] = {"type": "prometheus", "uid": "prometheus"}

    def no_targets(d: dict[str, Any]) -> None:
        del d["panels"][1]["targets"]

    def too_wide(d: dict[str, Any]) -> None:
        d["panels"][1]["gridPos"]["w"] = 30

    first = load_dashboard()["panels"][1]
    where = f"panel {first['id']} {first['title']!r}"
    assert any(p.startswith("panel 3 ") and "overlaps panel 2" in p for p in _broken(overlap))
    assert f"panel {first['id']} 'Node fence not proven': id already used by" in "".join(
        _broken(same_id)
    )
    assert _broken(unknown_variable) == [f"{where} A: $nodes is not a variable of the dashboard"]
    assert _broken(other_source) == [
        f"{where}: data source {{'type': 'prometheus', 'uid': 'prometheus'}} is not ${{datasource}}"
    ]
    assert _broken(no_targets) == ["dashboard: panels.1: 'targets' is a required property"]
    assert (
        _broken(too_wide)[0]
        == "dashboard: panels.1.gridPos.w: 30 is greater than the maximum of 24"
    )


def test_dashboard_queries_become_promql_promtool_can_parse():
    dashboard = load_dashboard()
    rules = dashboard_rule_groups(dashboard)[0]["rules"]
    assert len(rules) == sum(len(p.get("targets") or []) for p in panels(dashboard)) + 1
    assert as_promql('rate(x{node=~"$node"}[$__rate_interval])', {"node": "query"}) == (
        'rate(x{node=~".*"}[5m])'
    )
    assert as_promql("label_values(aim_detector_healthy, node)", {}) == "aim_detector_healthy"
    broken = copy.deepcopy(dashboard)
    broken["panels"][1]["targets"][0]["expr"] = "sum(aim_detector_healthy{node=~$node})"
    with pytest.raises(PromtoolError):
        check_rules(dashboard_rule_groups(broken))


def test_the_objects_fit_the_prometheus_operator_crds_and_a_bad_field_is_named():
    objects = [
        o for o in render(ROOT / ALL_VARIANTS["monitoring"])
        if o["apiVersion"].startswith("monitoring.coreos.com/")
    ]  # fmt: skip
    assert sorted(o["kind"] for o in objects) == ["PodMonitor", "PodMonitor", "PrometheusRule"]
    assert [p for o in objects for p in schema_problems(o)] == []
    monitor = copy.deepcopy(next(o for o in objects if o["kind"] == "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
    monitor["spec"]["podMetricsEndpoints"][0]["port"] = 9477
    problems = schema_problems(monitor)
    assert any("spec.podMetricsEndpoints.0: Additional properties are not allowed ('intervall'"
               in p for p in problems), problems  # fmt: skip
    assert any("spec.podMetricsEndpoints.0.port: 9477 is not of type 'string'" in p
               for p in problems), problems  # fmt: skip


@pytest.mark.slow
def test_monitoring_component_applies_on_kube_apiserver(real_kube):
    # The prometheus-operator CRDs of the pinned release, then the default install plus the
    # component, server-side with strict field validation (kubectl's default).
    for path in prometheus_operator_crds():
        real_kube.kubectl("apply", "--server-side", "-f", str(path))
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        real_kube.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    applied = real_kube.kubectl(
        "apply", "--server-side", "-k", str(ROOT / ALL_VARIANTS["monitoring"])
    ).stdout
    for name in ("podmonitor.monitoring.coreos.com/aim-detector",
                 "podmonitor.monitoring.coreos.com/aim-matcher",
                 "prometheusrule.monitoring.coreos.com/aim-accelerator",
                 "configmap/aim-accelerator-dashboard"):  # fmt: skip
        assert f"{name} serverside-applied" in applied, applied
    get = ("-n", "aim-system", "get", "-o", "json")
    rule = json.loads(real_kube.kubectl(*get, "prometheusrule", "aim-accelerator").stdout)
    assert [a["alert"] for a in alerts(rule["spec"]["groups"])] == [
        a["alert"] for a in alerts(rule_groups())
    ]
    dashboard = json.loads(real_kube.kubectl(*get, "configmap", "aim-accelerator-dashboard").stdout)
    assert json.loads(dashboard["data"]["aim-accelerator.json"]) == load_dashboard()
