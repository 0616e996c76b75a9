"""Offline checks of the shipped monitoring objects: ``python -m scripts.validate_monitoring``.

``daemonset/components/monitoring/`` ships alert rules (a PrometheusRule) and a Grafana
dashboard; the chart renders the same files. Nothing here needs a Prometheus or a Grafana:

1. ``promtool check rules`` (promtool built from the pinned Prometheus module, tools/prometheus)
   on the rule groups, with every lint;
2. ``promtool test rules`` on ``tests/monitoring/alerts.test.yaml``: each alert fires, with
   its labels and annotations, exactly on the series it is meant for;
3. every alert has a severity, a summary and a description;
4. the dashboard's shape: the JSON schema below (what Grafana needs to load it), unique panel
   ids, panels that do not overlap on the 24-column grid, unique query ids per panel, every
   ``$variable`` defined, every query on the dashboard's data-source variable;
5. every dashboard query parses: each becomes a recording rule (Grafana's variables replaced
   by values of their kind) for ``promtool check rules``;
6. every metric the rules and the dashboard name is one the programs export: the names are
   read from the programs' own registries (detector.metrics, detector.fence,
   matcher.controller.metrics), and each query's names from its parse tree (promql-parser).

The objects themselves are validated against the prometheus-operator CRDs by
``scripts.validate_manifests`` (variant ``monitoring``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import yaml
from prometheus_client import CollectorRegistry

from scripts.k8s_tools import tool

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "daemonset" / "components" / "monitoring"
RULE_FILE = MONITORING / "prometheusrule.yaml"
DASHBOARD_FILE = MONITORING / "dashboard.json"
RULE_TESTS = ROOT / "tests" / "monitoring" / "alerts.test.yaml"
#: The name the rule tests give the rule file (their `rule_files:`).
RULES_UNDER_TEST = "aim-accelerator.rules.yaml"

#: The series a metric family of each type exposes.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
#: Grafana's own variables, and a value of the right kind for each, to make a query PromQL.
GRAFANA_BUILTINS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
    "__interval_ms": "60000",
}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "text", "gauge", "bargauge", "heatmap"}
GRID_COLUMNS = 24

#: What a dashboard needs for Grafana to load it the way it is meant (a sanity check, not
#: Grafana's whole model).
DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "time": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        },
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {
                            "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                            "type": {"enum": ["datasource", "query", "custom", "constant"]},
                        },
                    },
                }
            },
        },
        "panels": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/panel"}},
    },
    "definitions": {
        "gridPos": {
            "type": "object",
            "required": ["x", "y", "w", "h"],
            "properties": {
                "x": {"type": "integer", "minimum": 0, "maximum": GRID_COLUMNS - 1},
                "y": {"type": "integer", "minimum": 0},
                "w": {"type": "integer", "minimum": 1, "maximum": GRID_COLUMNS},
                "h": {"type": "integer", "minimum": 1},
            },
        },
        "panel": {
            "type": "object",
            "required": ["id", "type", "title", "gridPos"],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "type": {"enum": sorted(PANEL_TYPES)},
                "title": {"type": "string", "minLength": 1},
                "gridPos": {"$ref": "#/definitions/gridPos"},
                "targets": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["refId", "expr", "datasource"],
                        "properties": {
                            "refId": {"type": "string", "minLength": 1},
                            "expr": {"type": "string", "minLength": 1},
                        },
                    },
                },
                "panels": {"type": "array", "items": {"$ref": "#/definitions/panel"}},
            },
            "if": {"properties": {"type": {"not": {"enum": ["row", "text"]}}}},
            "then": {"required": ["targets", "datasource"]},
        },
    },
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


class PromtoolError(RuntimeError):
    """promtool failed; the message carries its output."""


# --- the programs' metrics -----------------------------------------------------------------


def _series(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def exported_metrics() -> dict[str, set[str]]:
    """program -> the series names it exports, read from its own metric registries."""
    from detector.fence import NodeFence  # noqa: PLC0415 (the programs' code, not ours)
    from detector.metrics import Metrics as DetectorMetrics  # noqa: PLC0415
    from matcher.controller.metrics import Metrics as MatcherMetrics  # noqa: PLC0415
    from matcher.controller.metrics import ProfileStatusSeries  # noqa: PLC0415

    detector = DetectorMetrics()

    def refuse(node: str, patch: Mapping[str, Any]) -> Any:  # never sent: built, not checked
        raise AssertionError("the node fence is not checked here")

    NodeFence(refuse, "node", registry=detector.registry)  # registers aim_detector_node_fence
    matcher = MatcherMetrics()
    matcher.profiles_by_status(dict)
    matcher.profile_status(ProfileStatusSeries(list, 0))  # aim_profile_status and its cap
    return {"aim-detector": _series(detector.registry), "aim-matcher": _series(matcher.registry)}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (from its parse tree)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                found.add(node.name)
            for matcher in getattr(node.matchers, "matchers", None) or []:
                if matcher.name == "__name__":
                    found.add(matcher.value)
        for attribute in ("lhs", "rhs", "expr", "vector_selector", "param"):
            child = getattr(node, attribute, None)
            if child is not None and not isinstance(child, (str, int, float)):
                walk(child)
        for child in getattr(node, "args", None) or []:
            walk(child)

    walk(promql_parser.parse(expr))
    return found


# --- the rules -----------------------------------------------------------------------------


def rule_groups(path: Path = RULE_FILE) -> list[dict[str, Any]]:
    """The rule groups of the shipped PrometheusRule."""
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["spec"]["groups"]
    return groups


def alerts(groups: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for group in groups:
        yield from (rule for rule in group.get("rules") or [] if "alert" in rule)


def promtool(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [tool("promtool"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
    )
    if result.returncode != 0:
        raise PromtoolError(f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}".strip())
    return result.stdout


def check_rules(groups: list[dict[str, Any]]) -> str:
    """``promtool check rules --lint=all --lint-fatal`` on the groups; its output."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / RULES_UNDER_TEST
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        return promtool("check", "rules", "--lint=all", "--lint-fatal", str(path))


def run_rule_tests(groups: list[dict[str, Any]], tests: Path = RULE_TESTS) -> str:
    """``promtool test rules`` on ``tests`` with the groups as its rule file; its output."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / RULES_UNDER_TEST).write_text(yaml.safe_dump({"groups": groups}))
        shutil.copy(tests, Path(tmp) / tests.name)
        return promtool("test", "rules", tests.name, cwd=Path(tmp))


def alert_problems(groups: list[dict[str, Any]]) -> list[str]:
    problems = []
    for rule in alerts(groups):
        name = rule["alert"]
        if (rule.get("labels") or {}).get("severity") not in {"critical", "warning", "info"}:
            problems.append(f"alert {name}: needs a severity label (critical, warning or info)")
        for key in ("summary", "description"):
            if not (rule.get("annotations") or {}).get(key):
                problems.append(f"alert {name}: needs a {key} annotation")
    return problems


# --- the dashboard -------------------------------------------------------------------------


def load_dashboard(path: Path = DASHBOARD_FILE) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            yield (
                f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}",
                str(target.get("expr", "")),
            )
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query") if isinstance(query, Mapping) else query
            yield f"variable ${variable.get('name')}", str(text)


def _variables(dashboard: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(v["name"]): str(v.get("type"))
        for v in (dashboard.get("templating") or {}).get("list") or []
    }


def as_promql(query: str, variables: Mapping[str, str]) -> str:
    """A dashboard query with Grafana's variables replaced by values of their kind."""
    label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query)
    if label_values:  # Grafana's variable query function: its first argument is PromQL
        query = label_values.group(1)

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return GRAFANA_BUILTINS.get(name, ".*")

    return _VARIABLE.sub(value, query)


def dashboard_problems(dashboard: Mapping[str, Any]) -> list[str]:
    """The dashboard's shape: schema, ids, grid, query ids, variables, data source."""
    problems = [
        f"dashboard: {'.'.join(str(p) for p in error.path) or '(root)'}: {error.message}"
        for error in jsonschema.Draft7Validator(DASHBOARD_SCHEMA).iter_errors(dict(dashboard))
    ]
    if problems:
        return problems
    variables = _variables(dashboard)
    datasources = [name for name, kind in variables.items() if kind == "datasource"]
    if len(datasources) != 1:
        problems.append("dashboard: needs exactly one data-source variable")
    expected_source = f"${{{datasources[0]}}}" if datasources else None
    seen: dict[int, str] = {}
    cells: dict[tuple[int, int], int] = {}
    for panel in panels(dashboard):
        pid, title = panel["id"], panel["title"]
        if pid in seen:
            problems.append(f"panel {pid} {title!r}: id already used by {seen[pid]!r}")
        seen[pid] = title
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > GRID_COLUMNS:
            problems.append(f"panel {pid} {title!r}: wider than the {GRID_COLUMNS}-column grid")
        if panel["type"] == "row" and panel.get("collapsed"):
            pass  # the row's own panels are laid out when it opens, under it
        elif panel in (dashboard.get("panels") or []):
            for x in range(grid["x"], min(grid["x"] + grid["w"], GRID_COLUMNS)):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    if (x, y) in cells:
                        problems.append(f"panel {pid} {title!r}: overlaps panel {cells[(x, y)]}")
                        break
                    cells[(x, y)] = pid
                else:
                    continue
                break
        ref_ids = [t["refId"] for t in panel.get("targets") or []]
        if len(ref_ids) != len(set(ref_ids)):
            problems.append(f"panel {pid} {title!r}: query ids repeat: {ref_ids}")
        for target in [panel, *(panel.get("targets") or [])]:
            source = (target.get("datasource") or {}) if "datasource" in target else None
            if source is not None and source.get("uid") != expected_source:
                problems.append(
                    f"panel {pid} {title!r}: data source {source} is not {expected_source}"
                )
    for where, query in queries(dashboard):
        for match in _VARIABLE.finditer(query):
            name = match.group(1) or match.group(2)
            if name not in variables and name not in GRAFANA_BUILTINS:
                problems.append(f"{where}: ${name} is not a variable of the dashboard")
    return problems


def dashboard_rule_groups(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every dashboard query as a recording rule, for promtool to parse."""
    variables = _variables(dashboard)
    rules = [
        {"record": f"dashboard:query_{index}", "expr": as_promql(query, variables)}
        for index, (_, query) in enumerate(queries(dashboard))
    ]
    return [{"name": "dashboard-queries", "rules": rules}]


# --- all of it -----------------------------------------------------------------------------


def unknown_metric_problems(
    named: Iterator[tuple[str, str]], exported: Mapping[str, set[str]]
) -> list[str]:
    every = set().union(*exported.values())
    problems = []
    for where, expr in named:
        try:
            names = metric_names(expr)
        except Exception as exc:
            problems.append(f"{where}: does not parse: {exc}")
            continue
        for name in sorted(names - every):
            problems.append(
                f"{where}: {name} is not a metric of aim-detector or aim-matcher "
                "(their registries: detector/metrics.py, detector/fence.py, "
                "matcher/controller/metrics.py)"
            )
    return problems


def rule_expressions(groups: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for group in groups:
        for rule in group.get("rules") or []:
            yield f"rule {rule.get('alert') or rule.get('record')}", str(rule["expr"])


def validate(
    rules: Path = RULE_FILE, dashboard_file: Path = DASHBOARD_FILE, tests: Path = RULE_TESTS
) -> dict[str, list[str]]:
    """check -> its problems (empty lists: all good)."""
    groups = rule_groups(rules)
    dashboard = load_dashboard(dashboard_file)
    exported = exported_metrics()
    results: dict[str, list[str]] = {}
    runs: list[tuple[str, Callable[[], str]]] = [
        ("promtool check rules", lambda: check_rules(groups)),
        (f"promtool test rules {tests.relative_to(ROOT)}", lambda: run_rule_tests(groups, tests)),
    ]
    for name, run in runs:
        try:
            run()
            results[name] = []
        except PromtoolError as exc:
            results[name] = [str(exc)]
    results["alerts have severity, summary, description"] = alert_problems(groups)
    shape = dashboard_problems(dashboard)
    results["dashboard shape (schema, ids, grid, variables, data source)"] = shape
    try:
        check_rules(dashboard_rule_groups(dashboard))
        results["dashboard queries parse (promtool)"] = []
    except PromtoolError as exc:
        results["dashboard queries parse (promtool)"] = [str(exc)]
    variables = _variables(dashboard)
    dashboard_promql = [(where, as_promql(q, variables)) for where, q in queries(dashboard)]
    results["every metric named exists in the programs"] = unknown_metric_problems(
        iter([*rule_expressions(groups), *dashboard_promql]), exported
    )
    return results


def main() -> int:
    failed = False
    for check, problems in validate().items():
        print(f"{check}: {'FAILED' if problems else 'ok'}")
        for problem in problems:
            print("  " + problem.replace("\n", "\n  "))
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
