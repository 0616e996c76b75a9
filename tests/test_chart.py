"""The Helm chart (charts/aim-accelerator): the same objects as the kustomize bundle for every
variant, values that do what they say, a schema that refuses what it should, and an install on
a real kube-apiserver with the helm built from its Go module (tools/helm)."""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from matcher.core.config import MatcherConfig
from scripts import chart_files
from scripts.k8s_tools import helm_env, tool
from scripts.validate_manifests import (
    ALL_VARIANTS,
    CHART,
    CHART_VALUES,
    RenderError,
    chart_differences,
    check_objects,
    object_differences,
    render,
    render_chart,
)
from scripts.values_schema import AnnotationError, generate, key_notes

ROOT = Path(__file__).resolve().parent.parent


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects
    }


def container(objects: list[dict[str, Any]], kind: str, namespace: str, name: str) -> Any:
    return by_key(objects)[(kind, namespace, name)]["spec"]["template"]["spec"]["containers"][0]


# --- the chart and the kustomize bundle render the same objects ----------------------------------


@pytest.mark.parametrize("variant", list(ALL_VARIANTS))
def test_chart_renders_each_variant_exactly_as_kustomize(variant):
    assert chart_differences(variant) == []


def test_a_drift_between_chart_and_bundle_is_named(tmp_path):
    chart = tmp_path / "aim-accelerator"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "matcher.yaml"
    template.write_text(template.read_text().replace("periodSeconds: 20", "periodSeconds: 21"))
    differences = object_differences(render(ROOT / "daemonset"), render_chart({}, chart))
    assert differences == [
        "Deployment aim-system/aim-matcher: spec.template.spec.containers[0].livenessProbe."
        "periodSeconds: kustomize 20 != helm 21"
    ]


def test_object_differences_name_missing_extra_and_changed_objects():
    a = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "x"},
         "data": {"k": "1", "gone": "y"}}  # fmt: skip
    b = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "x"}}
    changed = copy.deepcopy(a)
    changed["data"] = {"k": 1, "new": "z"}
    assert object_differences([a, b], [changed]) == [
        'ConfigMap x/a: data.gone: only in kustomize: "y"',
        'ConfigMap x/a: data.k: kustomize "1" != helm 1',
        'ConfigMap x/a: data.new: only in helm: "z"',
        "ConfigMap x/b: only in kustomize",
    ]
    assert object_differences([a], [a, a]) == ["ConfigMap x/a: rendered twice by helm"]
    listed = {**a, "data": ["p", "q"]}
    assert object_differences([listed], [{**a, "data": ["q", "p"]}]) == [
        'ConfigMap x/a: data[0]: kustomize "p" != helm "q"',
        'ConfigMap x/a: data[1]: kustomize "q" != helm "p"',
    ]


@pytest.mark.parametrize("variant", list(ALL_VARIANTS))
def test_helm_lint_strict_passes_with_each_variant_s_values(variant, tmp_path):
    values = tmp_path / "values.json"
    values.write_text(json.dumps(CHART_VALUES[variant]))
    result = subprocess.run(
        [tool("helm"), "lint", "--strict", str(CHART), "--values", str(values)],
        capture_output=True, text=True, check=False, env=helm_env(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_chart_version_follows_the_programs():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    bundle = yaml.safe_load((ROOT / "daemonset" / "kustomization.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == version
    assert bundle["images"] == [{"name": "aim-accelerator", "newTag": version}]


def test_no_packaged_chart_is_committed():
    tracked = subprocess.run(
        ["git", "ls-files", "charts"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert tracked, "the chart is tracked"
    assert not [p for p in tracked if p.endswith((".tgz", ".tar.gz")) or p.endswith("index.yaml")]


def test_generated_chart_files_are_current():
    # values.schema.json and the copies of the node fence and the monitoring files.
    assert chart_files.stale() == []


def test_chart_files_check_names_a_stale_copy(tmp_path, monkeypatch):
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "files" / "dashboard.json").write_text("{}\n")
    (chart / "values.schema.json").unlink()
    problems = chart_files.stale(chart)
    assert problems == [
        f"{chart / 'values.schema.json'}: missing (run: make generated)",
        f"{chart / 'files/dashboard.json'}: stale, differs from its source (run: make generated)",
    ]
    chart_files.write(chart)
    assert chart_files.stale(chart) == []


# --- values do what they say --------------------------------------------------------------


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    return render_chart(values)


def test_image_repository_tag_and_digest():
    objects = _render({"image": {"repository": "registry.example.com/aim", "tag": "1.2.3"}})
    assert container(objects, "DaemonSet", "aim-detector", "aim-detector")["image"] == (
        "registry.example.com/aim:1.2.3"
    )
    digest = "sha256:" + "a" * 64
    objects = _render({"image": {"repository": "r/aim", "digest": digest, "pullPolicy": "Always"}})
    matcher = container(objects, "Deployment", "aim-system", "aim-matcher")
    assert (matcher["image"], matcher["imagePullPolicy"]) == (f"r/aim@{digest}", "Always")
    objects = _render({"image": {"repository": "r/aim"}, "detector": {"gpuBackend": "amdsmi"}})
    assert container(objects, "DaemonSet", "aim-detector", "aim-detector")["image"] == (
        "r/aim:0.1.0-amdsmi"
    )
    objects = _render({"detector": {"gpuBackend": "mixed", "amdsmi": {"tag": "rocm-7"}}})
    images = {
        name: container(objects, "DaemonSet", "aim-detector", name)["image"]
        for name in ("aim-detector-sysfs", "aim-detector-amdsmi")
    }
    assert images == {
        "aim-detector-sysfs": "aim-accelerator:0.1.0",
        "aim-detector-amdsmi": "aim-accelerator:rocm-7",
    }


def test_other_namespaces_move_every_reference_and_keep_the_fence():
    values = {"namespaces": {"detector": "gpu-agents", "matcher": "aim-ops"}}
    objects = _render(values)
    keys = by_key(objects)
    assert ("Namespace", "", "gpu-agents") in keys
    assert ("Namespace", "", "aim-ops") in keys
    assert {o["metadata"].get("namespace") for o in objects} <= {None, "gpu-agents", "aim-ops"}
    binding = keys[("ValidatingAdmissionPolicyBinding", "", "aim-detector-own-node-labels")]
    assert binding["spec"]["paramRef"]["namespace"] == "gpu-agents"
    subject = keys[("ClusterRoleBinding", "", "aim-matcher")]["subjects"][0]
    assert subject == {"kind": "ServiceAccount", "name": "aim-matcher", "namespace": "aim-ops"}
    # Schemas, references, and the node fence still covering the detector's account.
    assert check_objects(objects) == []


def test_without_namespaces_the_objects_still_name_them():
    objects = _render({"namespaces": {"create": False}})
    assert not [o for o in objects if o["kind"] == "Namespace"]
    assert {o["metadata"].get("namespace") for o in objects} == {None, "aim-detector", "aim-system"}


def test_detector_settings_become_flags():
    objects = _render({
        "detector": {"interval": 30, "jitter": 0.2, "probeTimeout": 5, "removalConfirmations": 3,
                     "logLevel": "debug", "waiveNodeFence": True, "metricsPort": 9500,
                     "extraArgs": ["--fence-peer-node=gpu-0"]},
    })  # fmt: skip
    detector = container(objects, "DaemonSet", "aim-detector", "aim-detector")
    assert detector["args"] == [
        "--mode=node", "--sysfs-root=/host/sys", "--procfs-root=/host/proc",
        "--metrics-port=9500", "--interval=30", "--jitter=0.2", "--probe-timeout=5",
        "--removal-confirmations=3", "--waive-node-fence", "--log-level=debug",
        "--fence-peer-node=gpu-0",
    ]  # fmt: skip
    assert detector["ports"][0]["containerPort"] == 9500
    # Every flag is one the program has (its --help), checked like the bundle's.
    help_text = subprocess.run(
        [str(ROOT / ".venv/bin/aim-detector"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for arg in detector["args"]:
        assert arg.split("=", 1)[0] in help_text


def test_matcher_settings_become_flags_and_config():
    objects = _render({
        "matcher": {"replicas": 3, "leaderElect": False, "watchNamespaces": ["ml-team", "dev"],
                    "resyncPeriod": 0, "logFormat": "text", "logLevel": "info",
                    "config": {"gpuResourceName": "amd.com/cpx_nps4",
                               "countUnschedulableNodes": True,
                               "webhookNotAvailable": "warn",
                               "webhookNamespaces": ["ml-team", "prod"]},
                    "podDisruptionBudget": {"enabled": False}},
    })  # fmt: skip
    keys = by_key(objects)
    deployment = keys[("Deployment", "aim-system", "aim-matcher")]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--no-leader-elect", "--lease-name=aim-matcher", "--config-map=aim-matcher-config",
        "--metrics-port=8080", "--log-format=text", "--webhook-addr=:9443",
        "--namespace=ml-team", "--namespace=dev", "--resync-period=0", "--log-level=info",
    ]  # fmt: skip
    data = keys[("ConfigMap", "aim-system", "aim-matcher-config")]["data"]
    assert data == {
        "gpuResourceName": "amd.com/cpx_nps4",
        "countUnschedulableNodes": "true",
        "countNotReadyNodes": "false",
        "webhookNotAvailable": "warn",
        "webhookNamespaces": "ml-team,prod",
    }
    # The matcher's own parser reads the rendered ConfigMap.
    config = MatcherConfig.from_configmap_data(data)
    assert (config.webhook_not_available, config.webhook_namespaces) == (
        "warn",
        ("ml-team", "prod"),
    )
    assert ("PodDisruptionBudget", "aim-system", "aim-matcher") not in keys


def test_the_webhook_can_be_left_out_or_moved_with_the_matcher():
    objects = _render({"matcher": {"webhook": {"enabled": False}}})
    assert not [o for o in objects if "webhook" in o["metadata"]["name"]
                or o["kind"] == "MutatingWebhookConfiguration"]  # fmt: skip
    matcher = container(objects, "Deployment", "aim-system", "aim-matcher")
    assert not [a for a in matcher["args"] if a.startswith("--webhook")]
    assert [p["name"] for p in matcher["ports"]] == ["metrics"]
    assert check_objects(objects) == []
    objects = _render(
        {"namespaces": {"matcher": "aim-ops"}, "matcher": {"webhook": {"port": 9500}}}
    )
    keys = by_key(objects)
    [hook, _] = keys[("MutatingWebhookConfiguration", "", "aim-matcher")]["webhooks"]
    assert hook["clientConfig"]["service"]["namespace"] == "aim-ops"
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system", "aim-ops"]
    matcher = container(objects, "Deployment", "aim-ops", "aim-matcher")
    assert "--webhook-addr=:9500" in matcher["args"]
    assert {"name": "webhook", "containerPort": 9500, "protocol": "TCP"} in matcher["ports"]
    assert check_objects(objects) == []


def test_plugin_roles_follow_the_matcher_and_bind_the_subjects_given():
    assert not [o for o in _render({}) if "aim-plugin" in o["metadata"]["name"]]
    group = {"kind": "Group", "name": "platform-team", "apiGroup": "rbac.authorization.k8s.io"}
    robot = {"kind": "User", "name": "ci-bot", "apiGroup": "rbac.authorization.k8s.io"}
    objects = _render(
        {
            "namespaces": {"matcher": "aim-ops"},
            "plugin": {"roles": True, "subjects": [group, robot]},
        }
    )
    keys = by_key(objects)
    reader = keys[("ClusterRoleBinding", "", "aim-plugin-reader")]
    assert reader["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "aim-plugin-reader",
    }
    assert reader["subjects"] == [group, robot]
    config = keys[("RoleBinding", "aim-ops", "aim-plugin-config-reader")]
    assert config["roleRef"]["name"] == "aim-plugin-config-reader"
    assert config["subjects"] == [group, robot]
    role = keys[("Role", "aim-ops", "aim-plugin-config-reader")]
    assert role["rules"][0]["resourceNames"] == ["aim-matcher-config"]
    assert check_objects(objects) == []


def test_scheduling_values():
    objects = _render({
        "imagePullSecrets": [{"name": "registry"}],
        # Maps merge with the defaults (Helm's rule); null removes a default's key.
        "detector": {"tolerations": [{"key": "amd.com/gpu", "operator": "Exists"}],
                     "priorityClassName": "",
                     "nodeSelector": {"gpu": "amd", "kubernetes.io/os": None},
                     "resources": {"requests": {"cpu": "20m"}}, "maxUnavailable": 1},
        "matcher": {"priorityClassName": "system-cluster-critical", "topologySpreadConstraints": [],
                    "tolerations": [{"operator": "Exists"}]},
    })  # fmt: skip
    keys = by_key(objects)
    detector = keys[("DaemonSet", "aim-detector", "aim-detector")]
    pod = detector["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "amd.com/gpu", "operator": "Exists"}]
    assert "priorityClassName" not in pod
    assert pod["nodeSelector"] == {"gpu": "amd"}
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "20m", "memory": "64Mi"},
        "limits": {"memory": "128Mi"},
    }
    assert detector["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1
    matcher = keys[("Deployment", "aim-system", "aim-matcher")]["spec"]["template"]["spec"]
    assert matcher["priorityClassName"] == "system-cluster-critical"
    assert "topologySpreadConstraints" not in matcher
    assert matcher["tolerations"] == [{"operator": "Exists"}]
    assert matcher["imagePullSecrets"] == [{"name": "registry"}]


def test_network_policies_follow_their_values():
    peers = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
    ]
    keys = by_key(_render({"networkPolicy": {"metricsFrom": peers}}))
    for namespace, name in (("aim-detector", "aim-detector"), ("aim-system", "aim-matcher")):
        assert keys[("NetworkPolicy", namespace, name)]["spec"]["ingress"][0]["from"] == peers
    assert not [o for o in _render({"networkPolicy": {"enabled": False}})
                if o["kind"] == "NetworkPolicy"]  # fmt: skip


def test_monitoring_values_label_and_pace_the_objects():
    objects = _render({"monitoring": {
        "podMonitors": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "dashboard": {"enabled": True, "labels": {"grafana_dashboard": "1", "team": "ml"}},
    }, "namespaces": {"matcher": "aim-ops"}})  # fmt: skip
    keys = by_key(objects)
    monitor = keys[("PodMonitor", "aim-detector", "aim-detector")]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["podMetricsEndpoints"][0]["interval"] == "15s"
    assert ("PodMonitor", "aim-ops", "aim-matcher") in keys
    rule = keys[("PrometheusRule", "aim-ops", "aim-accelerator")]
    assert rule["metadata"]["labels"]["release"] == "prom"
    # The alerts reach Prometheus untemplated, {{ $labels.node }} and all.
    alert = rule["spec"]["groups"][0]["rules"][0]
    assert "{{ $labels.node }}" in alert["annotations"]["summary"]
    dashboard = keys[("ConfigMap", "aim-ops", "aim-accelerator-dashboard")]
    assert dashboard["metadata"]["labels"]["team"] == "ml"
    assert json.loads(dashboard["data"]["aim-accelerator.json"])["uid"] == "aim-accelerator"


# --- the schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"detector": {"mdoe": "nfd"}}, "additional properties 'mdoe' not allowed"),
        ({"detector": {"mode": "nodes"}}, "at '/detector/mode': value must be one of"),
        ({"detector": {"interval": -5}}, "at '/detector/interval'"),
        ({"matcher": {"replicas": "two"}}, "at '/matcher/replicas'"),
        ({"image": {"digest": "latest"}}, "at '/image/digest'"),
        ({"image": {"repository": None}}, "missing property 'repository'"),
        ({"networkPolicy": {"metricsFrom": []}}, "at '/networkPolicy/metricsFrom'"),
        (
            {"monitoring": {"podMonitors": {"interval": "often"}}},
            "/monitoring/podMonitors/interval",
        ),
        (
            {"plugin": {"roles": True, "subjects": [{"kind": "Team", "name": "a"}]}},
            "/plugin/subjects/0/kind",
        ),
        (
            {"plugin": {"subjects": [{"kind": "Group", "name": "a"}]}},
            "set plugin.roles=true as well",
        ),
    ],
)
def test_the_schema_refuses_bad_values_and_names_them(values, words):
    with pytest.raises(RenderError) as raised:
        _render(values)
    assert words in str(raised.value)


def test_an_empty_metrics_peer_list_never_admits_everyone(tmp_path):
    # A NetworkPolicy rule without peers admits everyone. `--set networkPolicy.metricsFrom=null`
    # deletes the key: the schema requires it; and the template refuses even without the schema.
    with pytest.raises(RenderError, match="missing property 'metricsFrom'"):
        _render({"networkPolicy": {"metricsFrom": None}})
    result = subprocess.run(
        [tool("helm"), "template", str(CHART), "--skip-schema-validation",
         "--set", "networkPolicy.metricsFrom=null"],
        capture_output=True, text=True, check=False, env=helm_env(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "networkPolicy.metricsFrom is empty: it would admit everyone" in result.stderr


def test_schema_descriptions_come_from_the_comments():
    schema = json.loads((CHART / "values.schema.json").read_text())
    mode = schema["properties"]["detector"]["properties"]["mode"]
    assert mode["enum"] == ["node", "nfd"]
    assert mode["description"].startswith("node: patch this Node's labels. nfd: write")
    interval = schema["properties"]["detector"]["properties"]["interval"]
    assert interval["type"] == ["number", "null"]
    assert "interval" not in schema["properties"]["detector"]["required"]
    resources = schema["properties"]["detector"]["properties"]["resources"]
    assert resources == {
        "description": "The agent's container resources (measured peak: about 56 MiB).",
        "type": "object",
        "additionalProperties": True,
    }


def test_values_schema_generator_rules(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(
        "# file header, not attached\n\n"
        "# -- Top.\n"
        "top:\n"
        "  # -- A count.\n"
        '  # @schema {"minimum": 1}\n'
        "  count: 2\n"
        "  ratio: 0.5\n"
        "  list:\n"
        "    - a\n"
        "    # a comment inside a list is fine\n"
        "    - b\n"
        '  # @schema {"additionalProperties": {"type": "string"}}\n'
        "  free:\n"
        "    any: thing\n"
        "after: true\n"
    )
    schema = generate(values)
    top = schema["properties"]["top"]
    assert top["description"] == "Top."
    assert top["properties"]["count"] == {
        "description": "A count.",
        "type": "integer",
        "minimum": 1,
    }
    assert top["properties"]["ratio"] == {"type": "number"}
    assert top["properties"]["list"] == {"type": "array", "items": {"type": "string"}}
    assert top["properties"]["free"] == {
        "type": "object", "additionalProperties": {"type": "string"}
    }  # fmt: skip
    assert top["required"] == ["count", "ratio", "list", "free"]
    assert schema["properties"]["after"] == {"type": "boolean"}
    assert "description" not in schema
    assert key_notes(values.read_text())[("top", "count")].schema == {"minimum": 1}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("x: null\n", "x: a null default needs an @schema annotation with a type"),
        ("x: []\n", "x: an empty list needs an @schema annotation with items"),
        ("x:\n  - 1\n  - a\n", "x: items of several types"),
        ('x:\n  # @schema {"minimum": 1}\n  - 1\n', "line 2: @schema inside a list"),
        ("# @schema {bad json}\nx: 1\n", "line 1: @schema is not JSON"),
        ("x: 1\n# @schema {}\n", "@schema at the end of the file"),
    ],
)
def test_values_schema_generator_refuses_what_it_cannot_place(tmp_path, text, words):
    values = tmp_path / "values.yaml"
    values.write_text(text)
    with pytest.raises(AnnotationError, match=words.replace("{", r"\{").replace("[", r"\[")):
        generate(values)


# --- on a real kube-apiserver --------------------------------------------------------------


def _helm(kube, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("helm"), "--kubeconfig", str(kube.kubeconfig), *args],
        capture_output=True, text=True, check=False, env=helm_env(home), timeout=180,
    )  # fmt: skip


@pytest.mark.slow
def test_helm_install_and_uninstall_on_kube_apiserver(real_kube, tmp_path):
    # --create-namespace with one of the chart's own namespaces (why docs/install.md warns
    # against it): Helm creates that namespace first, then creating the chart's own Namespace
    # object fails, after other objects were created; the failed release must be uninstalled.
    conflict = _helm(real_kube, tmp_path, "install", "conflict", str(CHART),
                     "--namespace", "aim-x", "--create-namespace",
                     "--set", "namespaces.matcher=aim-x,namespaces.detector=aim-y")  # fmt: skip
    assert conflict.returncode != 0
    assert 'namespaces "aim-x" already exists' in conflict.stderr
    assert (
        "STATUS: failed" in _helm(real_kube, tmp_path, "status", "conflict", "-n", "aim-x").stdout
    )
    assert _helm(real_kube, tmp_path, "uninstall", "conflict", "-n", "aim-x").returncode == 0

    # The documented command (docs/install.md), then every object the chart renders is there,
    # as the server holds it, and the node fence's CEL type-checked without warnings.
    installed = _helm(real_kube, tmp_path, "install", "aim-accelerator", str(CHART),
                      "--namespace", "default",
                      "--set", "image.repository=registry.example.com/aim-accelerator")  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert "STATUS: deployed" in installed.stdout
    # NOTES.txt: the image the pods pull, and what to do when it cannot be pulled.
    assert "Image: registry.example.com/aim-accelerator:0.1.0." in installed.stdout
    assert "ImagePullBackOff" in installed.stdout
    objects = render_chart({"image": {"repository": "registry.example.com/aim-accelerator"}})
    for obj in objects:
        meta = obj["metadata"]
        args = ["get", f"{obj['kind'].lower()}.{obj['apiVersion'].rpartition('/')[0] or ''}",
                meta["name"], "-o", "json"]  # fmt: skip
        args[1] = args[1].rstrip(".")
        if meta.get("namespace"):
            args += ["-n", meta["namespace"]]
        got = json.loads(real_kube.kubectl(*args).stdout)
        assert got["metadata"]["labels"]["app.kubernetes.io/part-of"] == "aim-accelerator", obj
    policy = json.loads(
        real_kube.kubectl(
            "get", "validatingadmissionpolicy", "aim-detector-own-node-labels", "-o", "json"
        ).stdout
    )
    assert not (policy.get("status") or {}).get("typeChecking", {}).get("expressionWarnings")
    image = real_kube.kubectl(
        "-n", "aim-system", "get", "deployment", "aim-matcher",
        "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout  # fmt: skip
    assert image == "registry.example.com/aim-accelerator:0.1.0"

    # The schema is enforced by helm before anything reaches the server.
    upgrade = ("upgrade", "aim-accelerator", str(CHART), "--namespace", "default", "--reuse-values")
    upgraded = _helm(real_kube, tmp_path, *upgrade, "--set", "detector.mode=nodes")
    assert upgraded.returncode != 0
    assert "value must be one of 'node', 'nfd'" in upgraded.stderr

    # What the matcher's leader writes after install (the webhook's caBundle, its Secret's data),
    # as it writes them: neither is in the chart, and an upgrade must keep both.
    bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    ops = [{"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle.decode()}
           for i in (0, 1)]  # fmt: skip
    real_kube.kubectl("patch", "mutatingwebhookconfiguration", "aim-matcher", "--type=json",
                      "-p", json.dumps(ops))  # fmt: skip
    data = json.dumps({"data": {"tls.crt": bundle.decode()}})
    real_kube.kubectl("-n", "aim-system", "patch", "secret", "aim-matcher-webhook-tls",
                      "--type=merge", "-p", data)  # fmt: skip

    # An upgrade to NFD mode removes the detector's RBAC, as the nfd component does.
    upgraded = _helm(real_kube, tmp_path, *upgrade, "--set", "detector.mode=nfd")
    assert upgraded.returncode == 0, upgraded.stderr
    gone = real_kube.kubectl("get", "clusterrole", "aim-detector", check=False)
    assert "NotFound" in gone.stderr
    kept = json.loads(
        real_kube.kubectl("get", "mutatingwebhookconfiguration", "aim-matcher", "-o", "json").stdout
    )
    assert [w["clientConfig"]["caBundle"] for w in kept["webhooks"]] == [bundle.decode()] * 2
    secret = json.loads(
        real_kube.kubectl(
            "-n", "aim-system", "get", "secret", "aim-matcher-webhook-tls", "-o", "json"
        ).stdout
    )
    assert secret["data"] == {"tls.crt": bundle.decode()}

    # Uninstall deletes what the chart templated and keeps the CRDs (Helm never deletes crds/).
    removed = _helm(real_kube, tmp_path, "uninstall", "aim-accelerator", "--namespace", "default")
    assert removed.returncode == 0, removed.stderr
    assert (
        "NotFound"
        in real_kube.kubectl(
            "get", "validatingadmissionpolicy", "aim-detector-own-node-labels", check=False
        ).stderr
    )
    assert (
        "NotFound"
        in real_kube.kubectl(
            "-n", "aim-system", "get", "deployment", "aim-matcher", check=False
        ).stderr
    )
    real_kube.kubectl("get", "crd", "aimclusterprofiles.aim.eai.amd.com")
