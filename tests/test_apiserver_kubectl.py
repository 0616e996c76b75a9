"""kubectl against the test API server: get (tables, -o yaml, selectors), apply (client-side),
label, patch --subresource=status, CRD printer columns, CRDs registered at run time."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from tests.conftest import REPO, project_crd_files
from tests.test_apiserver_client import RUNTIME_GROUP, runtime_crd

TESTDATA = REPO / "tests" / "apiserver" / "testdata"
WIDGETS = TESTDATA / "widgets.yaml"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def header(out: str) -> list[str]:
    return out.splitlines()[0].split()


@pytest.fixture
def widgets(kube):
    kube.apply_crds([WIDGETS])
    return kube


WIDGET = """\
    apiVersion: test.aim.dev/v1alpha1
    kind: Widget
    metadata:
      name: w1
    spec:
      size: {size}
      model: MI300X
    """


# kubectl validates a Node against the server's OpenAPI: on kube-apiserver a partial
# status.nodeInfo is refused client-side (its fields are required), so give them all.
NODE_INFO = """{kubeletVersion: v1.32.1, kubeProxyVersion: "", machineID: m, systemUUID: s,
                   bootID: b, kernelVersion: 6.8.0, osImage: Ubuntu, containerRuntimeVersion: c,
                   operatingSystem: linux, architecture: amd64}"""


def test_get_nodes_table_and_label_selector(kube, tmp_path):
    nodes = f"""\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Node
          metadata:
            name: gpu-1
            labels: {{feature.node.kubernetes.io/aim-accelerator.MI300X: "8"}}
          status:
            conditions: [{{type: Ready, status: "True"}}]
            nodeInfo: {NODE_INFO}
        - apiVersion: v1
          kind: Node
          metadata: {{name: cpu-1, labels: {{node-role.kubernetes.io/worker: ""}}}}
        - apiVersion: v1
          kind: Node
          metadata: {{name: lost-1}}
          status: {{conditions: [{{type: Ready, status: Unknown}}]}}
          spec: {{unschedulable: true}}
        """
    kube.kubectl("apply", "-f", write(tmp_path, "nodes.yaml", nodes))
    out = kube.kubectl("get", "nodes").stdout
    assert header(out) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["gpu-1"][1:3] == ["Ready", "<none>"]
    assert rows["gpu-1"][4] == "v1.32.1"
    assert rows["cpu-1"][1:3] == ["Unknown", "worker"]  # no Ready condition at all
    assert rows["lost-1"][1] == "NotReady,SchedulingDisabled"  # Ready is Unknown
    wide = kube.kubectl("get", "node", "gpu-1", "-o", "wide").stdout
    assert header(wide)[5:] == [
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ]
    assert wide.splitlines()[1].split()[5:] == ["<none>", "<none>", "Ubuntu", "6.8.0", "c"]
    out = kube.kubectl(
        "get", "nodes", "-l", "feature.node.kubernetes.io/aim-accelerator.MI300X", "-o", "name"
    ).stdout
    assert out.split() == ["node/gpu-1"]
    out = kube.kubectl(
        "get", "nodes", "-l", "!feature.node.kubernetes.io/aim-accelerator.MI300X", "-o", "name"
    ).stdout
    assert out.split() == ["node/cpu-1", "node/lost-1"]


def test_get_o_yaml_and_label(kube):
    kube.kubectl("create", "configmap", "cfg", "--from-literal=a=1")
    kube.kubectl("label", "configmap", "cfg", "tier=gpu")
    kube.kubectl("label", "configmap", "cfg", "tier=cpu", "--overwrite")
    obj = yaml.safe_load(kube.kubectl("get", "configmap", "cfg", "-o", "yaml").stdout)
    assert obj["data"] == {"a": "1"}
    assert obj["metadata"]["labels"] == {"tier": "cpu"}
    assert obj["metadata"]["uid"]
    assert obj["metadata"]["resourceVersion"]
    kube.kubectl("label", "configmap", "cfg", "tier-")
    obj = yaml.safe_load(kube.kubectl("get", "configmap", "cfg", "-o", "yaml").stdout)
    assert not obj["metadata"].get("labels")
    assert header(kube.kubectl("get", "cm", "cfg").stdout) == ["NAME", "DATA", "AGE"]


def test_apply_custom_resource_twice(widgets, tmp_path):
    kube = widgets
    out = kube.kubectl("apply", "-f", write(tmp_path, "w.yaml", WIDGET.format(size=3))).stdout
    assert "widget.test.aim.dev/w1 created" in out
    out = kube.kubectl("apply", "-f", write(tmp_path, "w.yaml", WIDGET.format(size=4))).stdout
    assert "widget.test.aim.dev/w1 configured" in out
    out = kube.kubectl("apply", "-f", write(tmp_path, "w.yaml", WIDGET.format(size=4))).stdout
    assert "widget.test.aim.dev/w1 unchanged" in out
    obj = yaml.safe_load(kube.kubectl("get", "widget", "w1", "-o", "yaml").stdout)
    assert obj["spec"]["size"] == 4
    assert obj["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]


def test_apply_reports_validation_errors(widgets, tmp_path):
    proc = widgets.kubectl(
        "apply", "-f", write(tmp_path, "w.yaml", WIDGET.format(size=500)), check=False
    )
    assert proc.returncode != 0
    assert "spec.size" in proc.stderr
    assert "less than or equal to 100" in proc.stderr
    bad = WIDGET.format(size=1) + "  bogus: 1\n"
    proc = widgets.kubectl("apply", "-f", write(tmp_path, "b.yaml", bad), check=False)
    assert proc.returncode != 0
    assert 'unknown field "spec.bogus"' in proc.stderr


def test_patch_status_subresource_and_printer_columns(widgets, tmp_path):
    kube = widgets
    kube.kubectl("apply", "-f", write(tmp_path, "w.yaml", WIDGET.format(size=3)))
    out = kube.kubectl("get", "widgets").stdout
    assert header(out) == ["NAME", "SIZE", "COLOR", "PHASE", "AGE"]
    kube.kubectl(
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Ready"}}',
    )
    row = kube.kubectl("get", "wd", "w1", "--no-headers").stdout.split()
    assert row[:4] == ["w1", "3", "green", "Ready"]
    assert row[4].endswith("s")  # an age such as 0s, from the date column
    # main-resource patches cannot touch status
    kube.kubectl(
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Failed"},"spec":{"size":5}}',
    )
    assert kube.kubectl("get", "aimtest", "--no-headers").stdout.split()[:4] == [
        "widget.test.aim.dev/w1",
        "5",
        "green",
        "Ready",
    ]


def test_crd_applied_at_run_time(kube, tmp_path):
    crd = tmp_path / "crd.yaml"
    crd.write_text(yaml.safe_dump(runtime_crd()))  # a CRD no other test applies
    kube.kubectl("apply", "-f", str(crd))
    if kube.server is None:
        kube.kubectl("wait", "--for=condition=Established", f"crd/widgets.{RUNTIME_GROUP}")
    widget = WIDGET.format(size=2).replace("test.aim.dev", RUNTIME_GROUP)
    kube.kubectl("apply", "-f", write(tmp_path, "w.yaml", widget))
    assert kube.kubectl("get", f"widgets.{RUNTIME_GROUP}", "-o", "name").stdout.split() == [
        f"widget.{RUNTIME_GROUP}/w1"
    ]
    kube.kubectl("delete", f"widgets.{RUNTIME_GROUP}", "w1")
    assert "No resources found" in kube.kubectl("get", f"widgets.{RUNTIME_GROUP}").stderr


def test_project_crd_printer_columns(kube, tmp_path):
    if not project_crd_files():
        pytest.skip("daemonset/crds has no CRDs yet")
    kube.apply_crds()
    profile = """\
        apiVersion: aim.eai.amd.com/v1alpha2
        kind: AIMClusterProfile
        metadata: {name: p1}
        spec:
          aimId: qwen/qwen3-32b
          image: registry.example.com/aim/qwen3:0.8.5
          metric: latency
          precision: fp8
          acceleratorModel: MI300X
          acceleratorType: gpu
          acceleratorCount: 1
        """
    kube.kubectl("apply", "-f", write(tmp_path, "p.yaml", profile))
    out = kube.kubectl("get", "aimclusterprofiles").stdout
    cols = out.splitlines()[0]
    assert cols.split()[:3] == ["NAME", "AIM", "ID"]
    assert "qwen/qwen3-32b" in out.splitlines()[1]


def test_generators_describe_and_server_side_apply(kube, tmp_path):
    # `kubectl create configmap|namespace` send protobuf bodies
    ns = kube.unique("team")
    kube.kubectl("create", "namespace", ns)
    kube.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=k=v")
    assert kube.kubectl("get", "cm", "cfg", "-n", ns, "-o", "jsonpath={.data.k}").stdout == "v"
    assert kube.kubectl("get", "ns", ns, "-o", "jsonpath={.status.phase}").stdout == "Active"
    node = """\
        apiVersion: v1
        kind: Node
        metadata: {name: n1}
        status: {allocatable: {amd.com/gpu: "8"}, capacity: {amd.com/gpu: "8"}}
        """
    kube.kubectl("apply", "--server-side", "-f", write(tmp_path, "n.yaml", node))
    out = kube.kubectl("describe", "node", "n1").stdout
    assert "amd.com/gpu" in out
    assert "Non-terminated Pods:" in out
    if kube.server is not None:
        kube.kubectl("delete", "namespace", ns)
        assert kube.kubectl("get", "ns", ns, check=False).returncode != 0
        return
    # kube-apiserver alone: no namespace controller finalizes it, so kubectl would wait
    # for ever; the namespace stays Terminating.
    kube.kubectl("delete", "namespace", ns, "--wait=false")
    assert kube.kubectl("get", "ns", ns, "-o", "jsonpath={.status.phase}").stdout == "Terminating"


def test_explain_reads_the_published_schema_metadata_included(kube):
    out = kube.kubectl("explain", "aimclusterprofile.metadata").stdout
    assert "FIELD: metadata <ObjectMeta>" in out
    assert "labels\t<map[string]string>" in out
    out = kube.kubectl("explain", "aimclusterprofile.metadata.labels").stdout
    assert "Map of string keys and values that can be used to organize" in out
    out = kube.kubectl("explain", "aimclusterprofile.spec.aimId").stdout
    assert "FIELD: aimId <string>" in out


def test_kubectl_validates_built_ins_client_side_only_against_kube_apiserver(kube, tmp_path):
    """kubectl validates the items of a List against the server's OpenAPI before sending
    them: kube-apiserver publishes schemas for its built-in kinds, so a Node with a partial
    status.nodeInfo is refused; the test server publishes none for them. (A single object is
    sent with fieldValidation=Strict instead, which checks unknown fields only.)"""
    node = """\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Node
          metadata: {name: partial}
          status: {nodeInfo: {kubeletVersion: v1.32.1}}
        """
    proc = kube.kubectl("apply", "-f", write(tmp_path, "n.yaml", node), check=False)
    if kube.server is None:
        assert proc.returncode != 0
        assert 'missing required field "machineID"' in proc.stderr
        assert "io.k8s.api.core.v1.NodeSystemInfo" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert kube.server.get_object("v1", "Node", "partial") is not None
