"""The fidelity table: the same scenarios recorded against kube-apiserver (the reference) and
the project's test API server, compared record by record after normalising server-chosen
values (tests/fidelity.py). Every difference that remains is in KNOWN below, with what each
side does and why it stays; tests/apiserver/README.md shows the same list as a table.

Each scenario runs on a fresh test API server and on the run's control plane (reset after
it), both at once in two threads."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from tests.apiserver import ApiServer
from tests.conftest import (
    KUBE_APISERVER,
    REPO,
    TEST_CRD_FILES,
    SharedPlane,
    project_crd_files,
    selected_servers,
)
from tests.fidelity import TABLE, Api, Recorder, Reply, events

pytestmark = pytest.mark.cluster

CM = "/api/v1/namespaces/default/configmaps"
NODES = "/api/v1/nodes"
WIDGETS = "/apis/test.aim.dev/v1alpha1/namespaces/default/widgets"
GADGETS = "/apis/test.aim.dev/v1/namespaces/default/gadgets"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
EVENTS = "/api/v1/namespaces/{ns}/events"
EVENTS_V1 = "/apis/events.k8s.io/v1/namespaces/{ns}/events"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
PROFILES = "/apis/aim.eai.amd.com/v1alpha2/aimclusterprofiles"
MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"
MICRO = "2026-01-01T00:00:00.000001Z"
EXAMPLE_PROFILE = REPO / "examples" / "profiles" / "qwen-qwen3-32b-mi300x-lat-fp8.yaml"


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "test.aim.dev/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 1, **spec},
    }


def namespace(t: Recorder, name: str) -> None:
    t.api.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})


# -- scenarios ----------------------------------------------------------------------------------
def errors(t: Recorder) -> None:
    """Status codes, reasons and messages of the common failures."""
    t.call("get missing", "GET", f"{CM}/nope")
    first = t.call("create", "POST", CM, {"metadata": {"name": "a"}, "data": {"k": "v"}}).body
    t.call("create again", "POST", CM, {"metadata": {"name": "a"}})
    t.call("merge patch", "PATCH", f"{CM}/a", {"data": {"k": "w"}}, ctype=MERGE)
    t.call("update stale", "PUT", f"{CM}/a", first)
    t.call("update name mismatch", "PUT", f"{CM}/a", {"metadata": {"name": "b"}})
    t.call("update missing", "PUT", f"{CM}/nope", {"metadata": {"name": "nope"}})
    t.call(
        "create in missing namespace",
        "POST",
        "/api/v1/namespaces/nowhere/configmaps",
        {"metadata": {"name": "x"}},
    )
    t.call(
        "create with resourceVersion",
        "POST",
        CM,
        {"metadata": {"name": "r", "resourceVersion": "5"}},
    )
    t.call("create without name", "POST", CM, {"metadata": {}})
    t.call("generateName", "POST", CM, {"metadata": {"generateName": "gen-"}})
    t.call("invalid name", "POST", CM, {"metadata": {"name": "Bad_Name"}})
    t.call(
        "invalid labels and annotations",
        "POST",
        CM,
        {
            "metadata": {
                "name": "l",
                "labels": {"a/b/c": "x", "ok": "-bad-"},
                "annotations": {"-x": "1"},
            }
        },
    )
    t.call("invalid data key", "POST", CM, {"metadata": {"name": "d"}, "data": {"a b": "1"}})
    t.call("invalid namespace name", "POST", "/api/v1/namespaces", {"metadata": {"name": "Bad.ns"}})
    t.call(
        "json patch test fails",
        "PATCH",
        f"{CM}/a",
        [{"op": "test", "path": "/data/k", "value": "zzz"}],
        ctype="application/json-patch+json",
    )
    t.call("unsupported patch type", "PATCH", f"{CM}/a", {"data": {}}, ctype="text/plain")
    t.call(
        "delete with a stale uid precondition",
        "DELETE",
        f"{CM}/a",
        {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}},
    )
    t.call("delete", "DELETE", f"{CM}/a")
    t.call("delete missing", "DELETE", f"{CM}/a")
    t.call("deletecollection of namespaces", "DELETE", "/api/v1/namespaces")


def unconditional_updates(t: Recorder) -> None:
    """PUT without metadata.resourceVersion: allowed for ConfigMaps, refused for Leases,
    custom resources (main and status) and CRDs."""
    t.api.call("POST", CM, {"metadata": {"name": "u"}})
    t.call("configmap", "PUT", f"{CM}/u", {"metadata": {"name": "u"}, "data": {"a": "1"}})
    t.api.call("POST", LEASES, {"metadata": {"name": "u"}, "spec": {"holderIdentity": "a"}})
    t.call(
        "lease", "PUT", f"{LEASES}/u", {"metadata": {"name": "u"}, "spec": {"holderIdentity": "b"}}
    )
    t.api.call("POST", WIDGETS, widget("u"))
    t.call("custom resource", "PUT", f"{WIDGETS}/u", widget("u", size=2))
    t.call("custom resource status", "PUT", f"{WIDGETS}/u/status", widget("u"))
    crd = t.api.call("GET", f"{CRDS}/widgets.test.aim.dev").body
    crd["metadata"].pop("resourceVersion")
    t.call("crd", "PUT", f"{CRDS}/widgets.test.aim.dev", crd)


def patches_and_apply(t: Recorder) -> None:
    """Server-side apply and its options; strategic merge of built-ins; 415 for custom."""
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "s"},
        "data": {"a": "1", "b": "2"},
    }
    t.call("apply without fieldManager", "PATCH", f"{CM}/s", body, ctype=APPLY)
    t.call("apply creates", "PATCH", f"{CM}/s?fieldManager=tool", body, ctype=APPLY)
    t.call("merge patch with force", "PATCH", f"{CM}/s?force=true", {"data": {}}, ctype=MERGE)
    t.call("merge patch by another", "PATCH", f"{CM}/s", {"data": {"other": "x"}}, ctype=MERGE)
    t.call(
        "apply again without b",
        "PATCH",
        f"{CM}/s?fieldManager=tool&force=true",
        {**body, "data": {"a": "1"}},
        ctype=APPLY,
    )
    applied = t.api.call("GET", f"{CM}/s").body
    t.keep(
        "managedFields",
        [(m["manager"], m["operation"]) for m in applied["metadata"].get("managedFields", [])],
    )
    t.call(
        "strategic merge of labels",
        "PATCH",
        f"{CM}/s",
        {"metadata": {"labels": {"x": "1"}}},
        ctype="application/strategic-merge-patch+json",
    )
    t.api.call("POST", WIDGETS, widget("s"))
    t.call(
        "strategic merge on a custom resource",
        "PATCH",
        f"{WIDGETS}/s",
        {"spec": {"size": 2}},
        ctype="application/strategic-merge-patch+json",
    )
    t.call(
        "merge patch of a custom resource",
        "PATCH",
        f"{WIDGETS}/s",
        {"spec": {"size": 3}},
        ctype=MERGE,
    )
    t.call("same merge patch again", "PATCH", f"{WIDGETS}/s", {"spec": {"size": 3}}, ctype=MERGE)
    conflict = {**body, "metadata": {"name": "c"}}
    t.api.call("PATCH", f"{CM}/c?fieldManager=tool", conflict, ctype=APPLY)
    t.call(
        "apply by another manager, no force",
        "PATCH",
        f"{CM}/c?fieldManager=other-tool",
        {**conflict, "data": {"a": "2"}},
        ctype=APPLY,
    )


SELECTORS = [
    "tier=gpu",
    "tier==gpu,zone=z1",
    "tier!=gpu",
    "zone in (z1, z2)",
    "zone notin (z1)",
    "zone",
    "!zone",
    "zone in ()",
    "zone notin ()",
    "zone in (z1,)",
    "zone=",
    "gpus>4",
    "gpus<4,gpus>0",
    "gpus>-1",
    "gpus>1.5",
    "gpus >",
    "zone in z1",
    "zone in (z1",
    "a,",
    ",a",
    "!a=b",
    "a b",
    "a/b/c",
    "x in (in)",
]


def label_selectors(t: Recorder) -> None:
    for name, labels in {
        "a": {"tier": "gpu", "zone": "z1", "gpus": "8"},
        "b": {"tier": "gpu", "zone": "z2", "gpus": "2"},
        "c": {"tier": "cpu", "zone": "", "gpus": "x"},
        "d": {},
    }.items():
        t.api.call("POST", NODES, {"metadata": {"name": f"sel-{name}", "labels": labels}})
    for sel in SELECTORS:
        reply = t.api.call("GET", f"{NODES}?labelSelector={_q(sel)}")
        if reply.code == 200:
            names = [i["metadata"]["name"] for i in reply.body["items"]]
            t.keep(sel, [n for n in names if n.startswith("sel-")])
        else:
            t.keep(sel, t.normalise_reply(reply))


def field_selectors(t: Recorder) -> None:
    namespace(t, "fs")
    t.api.call("POST", "/api/v1/namespaces/fs/configmaps", {"metadata": {"name": "one"}})
    for sel in (
        "metadata.name=one",
        "metadata.namespace=fs",
        "metadata.name!=one,metadata.namespace=fs",
        "data.x=1",
        "metadata.name",
    ):
        reply = t.api.call("GET", f"/api/v1/configmaps?fieldSelector={_q(sel)}")
        if reply.code == 200:
            t.keep(f"configmaps {sel}", [i["metadata"]["name"] for i in reply.body["items"]])
        else:
            t.keep(f"configmaps {sel}", t.normalise_reply(reply))
    for path, sel in (
        ("/api/v1/nodes", "spec.unschedulable=false"),
        ("/api/v1/nodes", "status.phase=x"),
        ("/api/v1/namespaces", "status.phase=Active"),
        ("/api/v1/namespaces/fs/events", "involvedObject.kind=Node,reason=R"),
        ("/apis/events.k8s.io/v1/namespaces/fs/events", "regarding.kind=Node"),
        ("/apis/events.k8s.io/v1/namespaces/fs/events", "involvedObject.kind=Node"),
    ):
        t.keep(f"{path} {sel}", t.api.call("GET", f"{path}?fieldSelector={_q(sel)}").code)


def _event(name: str, ns_of_object: str | None = None, **extra: Any) -> dict[str, Any]:
    involved: dict[str, Any] = {"kind": "Pod" if ns_of_object else "Node", "name": "n1"}
    if ns_of_object:
        involved["namespace"] = ns_of_object
    return {
        "metadata": {"name": name},
        "involvedObject": involved,
        "reason": "R",
        "message": "m",
        "type": "Normal",
        **extra,
    }


NEW = {"eventTime": MICRO, "reportingComponent": "aim", "reportingInstance": "aim-1", "action": "A"}


def event_validation(t: Recorder) -> None:
    """Which Events kube-apiserver takes, through core/v1 and events.k8s.io/v1."""
    namespace(t, "team")
    core = EVENTS.format(ns="team")
    t.call(
        "core: old-style event on a node in default",
        "POST",
        EVENTS.format(ns="default"),
        _event("c1"),
    )
    t.call("core: old-style event on a node in team", "POST", core, _event("c2"))
    t.call("core: old-style event of default's pod in team", "POST", core, _event("c3", "default"))
    t.call("core: old-style event of team's pod in team", "POST", core, _event("c4", "team"))
    t.call("core: new-style event on a node in team", "POST", core, _event("c5", **NEW))
    t.call(
        "core: new-style event on a node in kube-system",
        "POST",
        EVENTS.format(ns="kube-system"),
        _event("c6", **NEW),
    )
    t.call(
        "core: new-style event of default's pod in team",
        "POST",
        core,
        _event("c7", "default", **NEW),
    )
    t.call(
        "core: new-style event without reporting fields",
        "POST",
        EVENTS.format(ns="default"),
        {**_event("c8"), "eventTime": MICRO, "reason": ""},
    )
    for label, stamp in (
        ("whole second", "2026-01-01T00:00:00Z"),
        ("offset", "2026-01-01T00:00:00+00:00"),
        ("milliseconds", "2026-01-01T00:00:00.123Z"),
        ("nanoseconds", "2026-01-01T00:00:00.123456789Z"),
        ("not a time", "yesterday"),
    ):
        t.call(
            f"core: eventTime {label}",
            "POST",
            EVENTS.format(ns="default"),
            _event("t", **{**NEW, "eventTime": stamp}),
        )
    t.call("core: name that is no DNS subdomain", "POST", core, _event("Bad_Name", "team"))
    v1 = EVENTS_V1.format(ns="team")
    new_v1 = {
        "regarding": {"kind": "Node", "name": "n1"},
        "reason": "R",
        "note": "n",
        "type": "Normal",
        "eventTime": MICRO,
        "reportingController": "aim",
        "reportingInstance": "aim-1",
        "action": "A",
    }
    t.call(
        "v1: event on a node in default",
        "POST",
        EVENTS_V1.format(ns="default"),
        {"metadata": {"name": "e1"}, **new_v1},
    )
    t.call("v1: event on a node in team", "POST", v1, {"metadata": {"name": "e2"}, **new_v1})
    t.call(
        "v1: event of default's pod in team",
        "POST",
        v1,
        {
            "metadata": {"name": "e3"},
            **new_v1,
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        },
    )
    t.call(
        "v1: empty event",
        "POST",
        EVENTS_V1.format(ns="default"),
        {"metadata": {"name": "e4"}, "regarding": {"kind": "Node", "name": "n1"}},
    )
    t.call(
        "v1: bad type, controller and a deprecated field",
        "POST",
        EVENTS_V1.format(ns="default"),
        {
            "metadata": {"name": "e5"},
            **new_v1,
            "type": "Bogus",
            "reportingController": "a b",
            "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z",
        },
    )
    t.call(
        "v1: too long",
        "POST",
        EVENTS_V1.format(ns="default"),
        {
            "metadata": {"name": "e6"},
            **new_v1,
            "reason": "R" * 200,
            "note": "n" * 1100,
            "reportingInstance": "i" * 130,
            "action": "a" * 130,
        },
    )
    t.call(
        "v1: series of one",
        "POST",
        EVENTS_V1.format(ns="default"),
        {"metadata": {"name": "e7"}, **new_v1, "series": {"count": 1, "lastObservedTime": MICRO}},
    )
    t.call("v1: read back a core event", "GET", f"{EVENTS_V1.format(ns='team')}/c4")
    got = t.api.call("GET", f"{EVENTS_V1.format(ns='default')}/e1").body
    t.call(
        "v1: change the note",
        "PUT",
        f"{EVENTS_V1.format(ns='default')}/e1",
        {**got, "note": "changed"},
    )


def lease_validation(t: Recorder) -> None:
    def lease(name: str, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": spec}

    t.call(
        "valid",
        "POST",
        LEASES,
        lease(
            "ok",
            holderIdentity="a",
            leaseDurationSeconds=15,
            renewTime=MICRO,
            acquireTime=MICRO,
            leaseTransitions=0,
        ),
    )
    t.call("zero duration", "POST", LEASES, lease("d0", leaseDurationSeconds=0))
    t.call("negative transitions", "POST", LEASES, lease("t", leaseTransitions=-1))
    t.call("preferred holder without strategy", "POST", LEASES, lease("p", preferredHolder="b"))
    t.call("renewTime whole second", "POST", LEASES, lease("r", renewTime="2026-01-01T00:00:00Z"))
    t.call(
        "acquireTime with offset",
        "POST",
        LEASES,
        lease("q", acquireTime="2026-01-01T00:00:00.000000+02:00"),
    )
    current = t.api.call("GET", f"{LEASES}/ok").body
    t.call(
        "renew",
        "PUT",
        f"{LEASES}/ok",
        {**current, "spec": {**current["spec"], "renewTime": "2026-01-01T00:00:01.000001Z"}},
    )
    t.call("renew with a stale resourceVersion", "PUT", f"{LEASES}/ok", current)


def _profile(name: str, **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE_PROFILE.read_text())
    doc["metadata"] = {"name": name}
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


PROFILE_VARIANTS: dict[str, dict[str, Any]] = {
    "precision auto": {"precision": "auto"},
    "negative acceleratorCount": {"acceleratorCount": -1},
    "model with a space": {"acceleratorModel": "bad model"},
    "caching on a cluster profile": {"caching": {"enabled": True}},
    "no image": {"image": None},
    "empty aimId": {"aimId": ""},
    "cpu request not a quantity": {"resources": {"requests": {"cpu": "lots"}}},
    "engineArgs of a list": {"engineArgs": ["x"]},
    "wrong types": {"primary": "yes", "acceleratorCount": "one"},
    "unknown metric": {"metric": "speed"},
}


def profile_validation(t: Recorder) -> None:
    """Validation errors of the project's CRDs, as a user sees them."""
    for label, change in PROFILE_VARIANTS.items():
        t.call(label, "POST", PROFILES, _profile("v", **change))
    t.call("valid", "POST", PROFILES, _profile("ok"))
    t.call(
        "aimId changed", "PATCH", f"{PROFILES}/ok", {"spec": {"aimId": "other/model"}}, ctype=MERGE
    )
    t.call(
        "unknown field, strict",
        "POST",
        f"{PROFILES}?fieldValidation=Strict",
        {**_profile("s"), "bogus": 1},
    )
    t.call(
        "status written",
        "PATCH",
        f"{PROFILES}/ok/status",
        {"status": {"status": "Ready", "matchingNodes": 2}},
        ctype=MERGE,
    )
    t.call(
        "status invalid",
        "PATCH",
        f"{PROFILES}/ok/status",
        {"status": {"status": "Sunny"}},
        ctype=MERGE,
    )


WIDGET_VARIANTS: dict[str, dict[str, Any]] = {
    "size not an integer": {"size": "big"},
    "size below minimum": {"size": -1},
    "size above maximum": {"size": 101},
    "color not in enum": {"color": "pink"},
    "model against pattern": {"model": "-bad-"},
    "model too long": {"model": "x" * 11},
    "model empty": {"model": ""},
    "resources value not a quantity": {"resources": {"amd.com/gpu": "lots"}},
    "parts duplicate": {"parts": [{"name": "a"}, {"name": "a"}]},
    "parts without name": {"parts": [{"count": 1}]},
    "CEL rule": {"size": 60, "color": "blue"},
}


def widget_validation(t: Recorder) -> None:
    for label, spec in WIDGET_VARIANTS.items():
        t.call(label, "POST", WIDGETS, widget("v", **spec))
    t.call("unknown field warns", "POST", WIDGETS, widget("w", bogus=1))
    t.keep(
        "unknown field warning header",
        t.api.call("POST", WIDGETS, widget("w2", bogus=1)).headers.get("warning"),
    )
    t.call(
        "unknown field, strict", "POST", f"{WIDGETS}?fieldValidation=Strict", widget("w3", bogus=1)
    )
    t.api.call("POST", WIDGETS, widget("t", serial="s1", label="l1"))
    t.call("immutable serial", "PATCH", f"{WIDGETS}/t", {"spec": {"serial": "s2"}}, ctype=MERGE)
    t.call("immutable label", "PATCH", f"{WIDGETS}/t", {"spec": {"label": "l2"}}, ctype=MERGE)


def status_subresource(t: Recorder) -> None:
    t.call("create with status", "POST", WIDGETS, {**widget("w"), "status": {"phase": "Ready"}})
    t.call(
        "status patch touching spec",
        "PATCH",
        f"{WIDGETS}/w/status",
        {"status": {"phase": "Ready"}, "spec": {"size": 9}},
        ctype=MERGE,
    )
    t.call(
        "status patch removing phase",
        "PATCH",
        f"{WIDGETS}/w/status",
        {"status": {"phase": None}},
        ctype=MERGE,
    )
    t.call(
        "main patch touching status",
        "PATCH",
        f"{WIDGETS}/w",
        {"metadata": {"labels": {"a": "b"}}, "status": {"phase": "Failed"}},
        ctype=MERGE,
    )
    t.call("spec change", "PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}}, ctype=MERGE)
    created = t.call(
        "gadget created with status",
        "POST",
        GADGETS,
        {
            "apiVersion": "test.aim.dev/v1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
            "spec": {"size": 3},
            "status": {"phase": "Done"},
        },
    ).body
    t.call("gadget write-back", "PUT", f"{GADGETS}/g", created)
    again = t.api.call("GET", f"{GADGETS}/g").body
    t.call("gadget write-back again", "PUT", f"{GADGETS}/g", again)
    t.call(
        "finalizer holds deletion",
        "POST",
        WIDGETS,
        {**widget("f"), "metadata": {"name": "f", "finalizers": ["test/x"]}},
    )
    t.call("delete with a finalizer", "DELETE", f"{WIDGETS}/f")
    t.call(
        "finalizer removed",
        "PATCH",
        f"{WIDGETS}/f",
        {"metadata": {"finalizers": None}},
        ctype=MERGE,
    )
    t.call("gone", "GET", f"{WIDGETS}/f")


def _table(t: Recorder, label: str, path: str) -> None:
    reply = t.api.call("GET", path, accept=TABLE)
    body = reply.body
    columns = [c for c in body.get("columnDefinitions") or []]
    aged = {
        i
        for i, c in enumerate(columns)
        if c["type"] == "date" or c["name"] in ("Age", "Last Seen", "First Seen")
    }
    rows = [
        [
            "<age>" if i in aged and cell not in (None, "<unknown>") else cell
            for i, cell in enumerate(r["cells"])
        ]
        for r in body.get("rows") or []
    ]
    t.keep(label, {"code": reply.code, "columns": columns, "rows": rows})


NODE_INFO = {
    "kubeletVersion": "v1.32.1",
    "kubeProxyVersion": "",
    "machineID": "m",
    "systemUUID": "s",
    "bootID": "b",
    "kernelVersion": "6.8.0",
    "osImage": "Ubuntu",
    "containerRuntimeVersion": "containerd://2.0",
    "operatingSystem": "linux",
    "architecture": "amd64",
}


def printer_columns(t: Recorder) -> None:
    nodes: dict[str, dict[str, Any]] = {
        "ready": {
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": NODE_INFO,
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            }
        },
        "not-ready": {
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
            "metadata": {"labels": {"node-role.kubernetes.io/worker": ""}},
        },
        "unknown": {
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
            "spec": {"unschedulable": True},
        },
        "no-conditions": {
            "metadata": {
                "labels": {"kubernetes.io/role": "gpu", "node-role.kubernetes.io/infra": ""}
            }
        },
    }
    for name, extra in nodes.items():
        body = {
            "metadata": {"name": f"tbl-{name}", **extra.get("metadata", {})},
            **{k: v for k, v in extra.items() if k != "metadata"},
        }
        t.api.call("POST", NODES, body)
        _table(t, f"node {name}", f"{NODES}/tbl-{name}")
    namespace(t, "tbl")
    _table(t, "namespace", "/api/v1/namespaces/tbl")
    t.api.call(
        "POST",
        "/api/v1/namespaces/tbl/configmaps",
        {"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}},
    )
    _table(t, "configmaps", "/api/v1/namespaces/tbl/configmaps")
    t.api.call(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/tbl/leases",
        {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}},
    )
    _table(t, "leases", "/apis/coordination.k8s.io/v1/namespaces/tbl/leases")
    t.api.call(
        "POST",
        EVENTS.format(ns="tbl"),
        {
            **_event("old", "tbl"),
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:00:05Z",
            "count": 3,
        },
    )
    t.api.call(
        "POST",
        EVENTS_V1.format(ns="tbl"),
        {
            "metadata": {"name": "new"},
            "regarding": {
                "kind": "Pod",
                "name": "p",
                "namespace": "tbl",
                "fieldPath": "spec.containers{c}",
            },
            "reason": "R",
            "note": " padded ",
            "type": "Warning",
            "eventTime": MICRO,
            "reportingController": "aim",
            "reportingInstance": "aim-1",
            "action": "A",
        },
    )
    _table(t, "events", EVENTS.format(ns="tbl"))
    _table(t, "events.k8s.io events", EVENTS_V1.format(ns="tbl"))
    _table(t, "a CRD", f"{CRDS}/aimclusterprofiles.aim.eai.amd.com")
    t.api.call("POST", PROFILES, _profile("p"))
    _table(t, "aimclusterprofiles", f"{PROFILES}/p")
    t.api.call("POST", WIDGETS, widget("w", size=3))
    _table(t, "widgets", f"{WIDGETS}/w")


def discovery(t: Recorder) -> None:
    t.call("aim group", "GET", "/apis/aim.eai.amd.com")
    for label, path in (
        ("aim resources", "/apis/aim.eai.amd.com/v1alpha2"),
        ("test resources", "/apis/test.aim.dev/v1alpha1"),
    ):
        # kube-apiserver lists a group's CRDs in no fixed order.
        body = t.api.call("GET", path).body
        t.keep(label, sorted(body["resources"], key=lambda r: r["name"]))


def _watch(t: Recorder, label: str, path: str) -> None:
    _watched(t, label, t.api.call("GET", path, timeout=30))


def _watched(t: Recorder, label: str, reply: Reply) -> None:
    if reply.code == 200:
        t.keep(label, {"code": reply.code, "events": events(reply, t)})
    else:
        t.keep(label, t.normalise_reply(reply))


def _watch_all(t: Recorder, watches: dict[str, str]) -> None:
    """Several watches of a second or so at once; recorded in the order given."""
    with ThreadPoolExecutor(len(watches)) as pool:
        replies = {label: pool.submit(t.api.call, "GET", path) for label, path in watches.items()}
        for label, reply in replies.items():
            _watched(t, label, reply.result())


def watches(t: Recorder) -> None:
    """Event sequences: resume, selector transitions, initial events, watch-list bookmarks,
    410 for a resourceVersion before the watch cache, future resourceVersions, options."""
    namespace(t, "w")
    base = "/api/v1/namespaces/w/configmaps"
    start = t.api.call("GET", base).body["metadata"]["resourceVersion"]
    t.api.call("POST", base, {"metadata": {"name": "a", "labels": {"pool": "x"}}})
    t.api.call("PATCH", f"{base}/a", {"data": {"k": "v"}}, ctype=MERGE)
    t.api.call("PATCH", f"{base}/a", {"metadata": {"labels": {"pool": "y"}}}, ctype=MERGE)
    t.api.call("PATCH", f"{base}/a", {"metadata": {"labels": {"pool": "x"}}}, ctype=MERGE)
    t.api.call("POST", base, {"metadata": {"name": "b"}})
    t.api.call("DELETE", f"{base}/a")
    now = int(t.api.call("GET", base).body["metadata"]["resourceVersion"])
    w = f"{base}?watch=true&timeoutSeconds=1"
    not_older = "resourceVersionMatch=NotOlderThan"
    _watch_all(
        t,
        {
            "resume": f"{w}&resourceVersion={start}",
            "resume with a selector": f"{w}&resourceVersion={start}&labelSelector=pool%3Dx",
            "initial events": w,
            "watch-list": f"{w}&sendInitialEvents=true&{not_older}&allowWatchBookmarks=true",
            "sendInitialEvents alone": f"{w}&sendInitialEvents=true",
            "resourceVersionMatch alone": f"{w}&resourceVersion=1&{not_older}",
            # a CRD's watch cache starts when the CRD does: resourceVersion 1 is before it
            "before the watch cache": f"{WIDGETS}?{w.partition('?')[2]}&resourceVersion=1",
            "future resourceVersion": f"{w}&resourceVersion={now + 1000}",
            "invalid resourceVersion": f"{w}&resourceVersion=abc",
            "one object": f"{w}&fieldSelector=metadata.name%3Db",
        },
    )


def bookmarks(t: Recorder) -> None:
    """A bookmark comes 2 s before the watch times out, once the resourceVersion moved past
    where the watch started: for kube-apiserver, that resource's watch cache; with nothing
    new there, none. Two watches of 3 s at once, and a ConfigMap written elsewhere."""
    namespace(t, "bm")
    namespace(t, "elsewhere")
    base = "/api/v1/namespaces/bm/configmaps"
    start = t.api.call("GET", base).body["metadata"]["resourceVersion"]
    tail = f"watch=true&resourceVersion={start}&allowWatchBookmarks=true&timeoutSeconds=3"
    with ThreadPoolExecutor(2) as pool:
        configmaps = pool.submit(t.api.call, "GET", f"{base}?{tail}")
        nodes = pool.submit(t.api.call, "GET", f"{NODES}?{tail}")
        time.sleep(0.3)
        moved = t.api.call(
            "POST", "/api/v1/namespaces/elsewhere/configmaps", {"metadata": {"name": "x"}}
        ).body
        t.rv(moved["metadata"]["resourceVersion"])
        t.keep("configmaps, after a ConfigMap written elsewhere", events(configmaps.result(), t))
        t.keep("nodes, after a ConfigMap written", events(nodes.result(), t))


def namespace_deletion(t: Recorder) -> None:
    namespace(t, "gone")
    t.api.call("POST", "/api/v1/namespaces/gone/configmaps", {"metadata": {"name": "x"}})
    t.call("delete", "DELETE", "/api/v1/namespaces/gone")
    t.call("read after delete", "GET", "/api/v1/namespaces/gone")
    t.call(
        "create inside", "POST", "/api/v1/namespaces/gone/configmaps", {"metadata": {"name": "y"}}
    )


SCENARIOS: dict[str, Callable[[Recorder], None]] = {
    "errors": errors,
    "unconditional updates": unconditional_updates,
    "patches and apply": patches_and_apply,
    "label selectors": label_selectors,
    "field selectors": field_selectors,
    "event validation": event_validation,
    "lease validation": lease_validation,
    "profile validation": profile_validation,
    "widget validation": widget_validation,
    "status subresource": status_subresource,
    "printer columns": printer_columns,
    "discovery": discovery,
    "watches": watches,
    "bookmarks": bookmarks,
    "namespace deletion": namespace_deletion,
}


# -- known differences ------------------------------------------------------------------------
@dataclass(frozen=True)
class Known:
    """A step that differs: what kube-apiserver does, what the test server does, and why the
    difference stays. `real`/`ours` are compared with the records (a dict: its keys only)."""

    real: Any
    ours: Any
    why: str


NAMESPACE_CONTROLLER = (
    "the run's control plane has no controller-manager, so no namespace controller empties and "
    "finalizes a deleted namespace; the test server does at once what a cluster does in time"
)
KNOWN: dict[tuple[str, str], Known] = {
    ("namespace deletion", "delete"): Known(
        real={"code": 200, "body": {"status": {"phase": "Terminating"}}},
        ours={"code": 200, "body": {"status": "Success"}},
        why=NAMESPACE_CONTROLLER,
    ),
    ("namespace deletion", "read after delete"): Known(
        real={"code": 200, "body": {"status": {"phase": "Terminating"}}},
        ours={"code": 404},
        why=NAMESPACE_CONTROLLER,
    ),
    ("namespace deletion", "create inside"): Known(
        real={"code": 403, "body": {"reason": "Forbidden"}},
        ours={"code": 404},
        why=NAMESPACE_CONTROLLER,
    ),
    ("patches and apply", "apply by another manager, no force"): Known(
        real={"code": 409, "body": {"reason": "Conflict"}},
        ours={"code": 200, "body": {"data": {"a": "2"}}},
        why="the test server does not track which manager owns fields it wrote with non-apply "
        "writes, so it never reports an apply conflict (as if force=true)",
    ),
    ("bookmarks", "nodes, after a ConfigMap written"): Known(
        real=[],
        ours=[("BOOKMARK", "rv1", {})],
        why="the test server has one resourceVersion counter, not a watch cache per resource: "
        "any write moves every watch's bookmark along (a real cluster's constant writes, and "
        "etcd's progress notifications, do the same in time)",
    ),
    ("patches and apply", "managedFields"): Known(
        real=[("tool", "Apply"), ("unknown", "Update")],
        ours=[],
        why="the test server keeps no managedFields (its server-side apply tracks the fields "
        "each manager applied as its own state); nothing here reads them",
    ),
}


# -- the test -------------------------------------------------------------------------------------
def _subset(record: Any, expected: Any) -> bool:
    if isinstance(expected, dict) and isinstance(record, dict):
        return all(k in record and _subset(record[k], v) for k, v in expected.items())
    return bool(record == expected)


@pytest.fixture(scope="module")
def real(request: pytest.FixtureRequest) -> SharedPlane:
    if KUBE_APISERVER not in selected_servers():
        pytest.skip(
            "the fidelity table compares both servers; AIM_TEST_SERVERS lacks kube-apiserver"
        )
    shared: SharedPlane = request.getfixturevalue("shared_plane")
    shared.get()
    return shared


def _record_real(shared: SharedPlane, scenario: Callable[[Recorder], None]) -> dict[str, Any]:
    plane, _ = shared.get()
    assert shared.fixture_crds is not None
    shared.fixture_crds.apply(
        [d for f in TEST_CRD_FILES for d in yaml.safe_load_all(f.read_text()) if d]
    )
    rec = Recorder(Api(plane.url, plane.admin_token, plane.ca_file))
    try:
        scenario(rec)
    finally:
        shared.restore()
    return rec.records


def _record_ours(scenario: Callable[[Recorder], None]) -> dict[str, Any]:
    with ApiServer(crd_paths=[*project_crd_files(), *TEST_CRD_FILES]) as srv:
        rec = Recorder(Api(srv.url))
        scenario(rec)
        return rec.records


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fidelity_table(real: SharedPlane, name: str) -> None:
    scenario = SCENARIOS[name]
    with ThreadPoolExecutor(2) as pool:
        theirs = pool.submit(_record_real, real, scenario)
        ours = pool.submit(_record_ours, scenario)
        real_records, our_records = theirs.result(), ours.result()
    assert list(real_records) == list(our_records)
    problems: list[str] = []
    for step, record in real_records.items():
        known = KNOWN.get((name, step))
        mine = our_records[step]
        if known is None:
            if record != mine:
                problems.append(f"{step}:\n  kube-apiserver: {record}\n  test server:    {mine}")
            continue
        if not _subset(record, known.real):
            problems.append(f"{step}: kube-apiserver no longer does what KNOWN says: {record}")
        if not _subset(mine, known.ours):
            problems.append(f"{step}: the test server no longer does what KNOWN says: {mine}")
    assert not problems, f"{name}: differences not in KNOWN:\n" + "\n".join(problems)


def test_every_known_difference_names_a_scenario_step() -> None:
    assert {s for s, _ in KNOWN} <= set(SCENARIOS)
    assert all(k.why for k in KNOWN.values())


def _q(text: str) -> str:
    return quote(text, safe="")
