"""The test API server through the official Python client: CRUD, metadata, patches,
conflicts, selectors, paging, status subresource, validation, CRDs at run time."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from tests.apiserver import ApiServer
from tests.conftest import REPO

TESTDATA = REPO / "tests" / "apiserver" / "testdata"
GROUP, VERSION, PLURAL = "test.aim.dev", "v1alpha1", "widgets"


@pytest.fixture
def core(kube):
    return client.CoreV1Api(kube.api_client())


@pytest.fixture
def custom(kube):
    kube.apply_crds([TESTDATA / "widgets.yaml"])
    return client.CustomObjectsApi(kube.api_client())


def status_of(err: ApiException) -> dict[str, Any]:
    """The Status object an ApiException carries."""
    return dict(json.loads(err.body or "{}"))


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 1, **spec},
    }


def raw(
    api: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    query: str = "",
) -> tuple[int, dict[str, Any]]:
    """One request through the client's REST layer (for content types the typed API hides)."""
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    api.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
    resp = api.rest_client.request(
        method, api.configuration.host + path + query, headers=headers, body=body
    )
    resp.read()
    return resp.status, json.loads(resp.data or b"{}")


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


# -- core objects ---------------------------------------------------------------------------
def test_configmap_crud_sets_server_metadata(core):
    created = core.create_namespaced_config_map("default", cm("a", x="1"))
    md = created.metadata
    assert md.uid
    assert md.creation_timestamp
    assert md.namespace == "default"
    assert md.generation is None  # built-ins we serve carry no generation, as in Kubernetes
    got = core.read_namespaced_config_map("a", "default")
    assert got.data == {"x": "1"}
    assert got.metadata.resource_version == md.resource_version
    got.data["y"] = "2"
    updated = core.replace_namespaced_config_map("a", "default", got)
    assert int(updated.metadata.resource_version) > int(md.resource_version)
    assert updated.metadata.uid == md.uid
    core.delete_namespaced_config_map("a", "default")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("a", "default")
    assert err.value.status == 404


def test_duplicate_create_and_stale_update_conflict(core):
    first = core.create_namespaced_config_map("default", cm("dup"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", cm("dup"))
    assert err.value.status == 409
    assert '"reason":"AlreadyExists"' in str(err.value.body)
    core.patch_namespaced_config_map("dup", "default", {"data": {"k": "v"}})
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map(
            "dup", "default", first
        )  # carries the old resourceVersion
    assert err.value.status == 409
    assert '"reason":"Conflict"' in str(err.value.body)


def test_noop_write_keeps_resource_version(core, kube):
    srv = kube.require_server()
    obj = core.create_namespaced_config_map("default", cm("same", x="1"))
    before = srv.store.rv
    again = core.patch_namespaced_config_map("same", "default", {"data": {"x": "1"}})
    assert again.metadata.resource_version == obj.metadata.resource_version
    assert srv.store.rv == before


def test_patch_types(core, kube):
    core.create_namespaced_config_map("default", cm("p", {"a": "1", "b": "2"}, x="1", y="2"))
    api = kube.api_client()
    # JSON merge patch: null deletes
    code, _ = raw(
        api,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/p",
        {"data": {"x": None, "z": "3"}},
        content_type="application/merge-patch+json",
    )
    assert code == 200
    got = core.read_namespaced_config_map("p", "default")
    assert got.data == {"y": "2", "z": "3"}
    # strategic merge (the client's default for dict bodies): labels merge key by key
    core.patch_namespaced_config_map(
        "p", "default", {"metadata": {"labels": {"c": "3", "a": None}}}
    )
    assert core.read_namespaced_config_map("p", "default").metadata.labels == {"b": "2", "c": "3"}
    # JSON patch (list body)
    core.patch_namespaced_config_map(
        "p", "default", [{"op": "replace", "path": "/data/y", "value": "9"}]
    )
    assert core.read_namespaced_config_map("p", "default").data["y"] == "9"
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map(
            "p", "default", [{"op": "test", "path": "/data/y", "value": "0"}]
        )
    assert err.value.status == 422


def test_node_status_is_a_subresource(core):
    core.create_node({"metadata": {"name": "n1"}, "status": {"allocatable": {"amd.com/gpu": "8"}}})
    core.patch_node(
        "n1", {"metadata": {"labels": {"k": "v"}}, "status": {"allocatable": {"amd.com/gpu": "1"}}}
    )
    node = core.read_node("n1")
    assert node.metadata.labels == {"k": "v"}
    assert node.status.allocatable == {"amd.com/gpu": "8"}
    core.patch_node_status(
        "n1",
        {
            "status": {
                "allocatable": {"amd.com/gpu": "4"},
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        },
    )
    node = core.read_node("n1")
    assert node.status.allocatable == {"amd.com/gpu": "4"}
    assert node.metadata.labels == {"k": "v"}
    # strategic merge keys node conditions by type
    core.patch_node_status(
        "n1", {"status": {"conditions": [{"type": "DiskPressure", "status": "False"}]}}
    )
    assert {c.type for c in core.read_node("n1").status.conditions} == {"Ready", "DiskPressure"}


def test_invalid_labels_rejected(core):
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", cm("bad", {"a/b/c": "x"}))
    assert err.value.status == 422
    assert "metadata.labels" in str(err.value.body)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", cm("bad", {"ok": "x" * 64}))
    assert err.value.status == 422


def test_missing_namespace_is_not_found(core):
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("nowhere", cm("x"))
    assert err.value.status == 404
    assert 'namespaces \\"nowhere\\" not found' in str(err.value.body)


def test_namespace_deletion(core, kube):
    core.create_namespace({"metadata": {"name": "gone"}})
    assert core.read_namespace("gone").status.phase == "Active"
    core.create_namespaced_config_map("gone", cm("x"))
    core.delete_namespace("gone")
    if kube.server is not None:
        # The test server finalizes at once, as a cluster's namespace controller does in time.
        assert core.list_namespaced_config_map("gone").items == []
        with pytest.raises(ApiException) as err:
            core.read_namespace("gone")
        assert err.value.status == 404
        return
    # kube-apiserver alone (no controller-manager): the namespace stays Terminating with its
    # objects, and refuses new ones.
    ns = core.read_namespace("gone")
    assert ns.status.phase == "Terminating"
    assert ns.metadata.deletion_timestamp
    assert [c.metadata.name for c in core.list_namespaced_config_map("gone").items] == ["x"]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("gone", cm("y"))
    assert err.value.status == 403
    assert "because it is being terminated" in status_of(err.value)["message"]


def new_event(name: str, event_time: str, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "involvedObject": {"kind": "Node", "name": "n1"},
        "reason": "Labeled",
        "message": "hi",
        "type": "Normal",
        "eventTime": event_time,
        "reportingComponent": "aim",
        "reportingInstance": "aim-1",
        "action": "Label",
        **extra,
    }


def test_leases_and_events(kube, core):
    api = kube.api_client()
    coord: Any = client.CoordinationV1Api(api)
    events_api: Any = client.EventsV1Api(api)
    lease = coord.create_namespaced_lease(
        "kube-node-lease",
        {"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}},
    )
    lease.spec.lease_duration_seconds = 10
    assert (
        coord.replace_namespaced_lease("n1", "kube-node-lease", lease).spec.lease_duration_seconds
        == 10
    )
    # Leases, like custom resources, take no unconditional update.
    lease.metadata.resource_version = None
    with pytest.raises(ApiException) as err:
        coord.replace_namespaced_lease("n1", "kube-node-lease", lease)
    assert err.value.status == 422
    assert (
        "metadata.resourceVersion: Invalid value: 0: must be specified for an update"
        in (status_of(err.value)["message"])
    )
    # This client re-serialises MicroTime with isoformat(), which drops a zero fraction: the
    # server reads eventTime only as 2006-01-02T15:04:05.000000Z07:00, so that is a 400.
    with pytest.raises(ApiException) as err:
        core.create_namespaced_event("default", new_event("e0", "2026-01-01T00:00:00.000000Z"))
    assert err.value.status == 400
    assert 'cannot parse "+00:00" as ".000000"' in status_of(err.value)["message"]
    core.create_namespaced_event("default", new_event("e1", "2026-01-01T00:00:00.000001Z"))
    ev = events_api.read_namespaced_event("e1", "default")
    assert ev.regarding.name == "n1"
    assert ev.note == "hi"
    events_api.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e2"},
            "regarding": {"kind": "Node", "name": "n2"},
            "reason": "R",
            "note": "n",
            "type": "Warning",
            "eventTime": "2026-01-01T00:00:00.000001Z",
            "reportingController": "aim",
            "reportingInstance": "aim-1",
            "action": "Label",
        },
    )
    assert core.read_namespaced_event("e2", "default").involved_object.name == "n2"
    selected = core.list_namespaced_event("default", field_selector="involvedObject.name=n2")
    assert [e.metadata.name for e in selected.items] == ["e2"]
    selected = events_api.list_namespaced_event("default", field_selector="regarding.name=n1")
    assert [e.metadata.name for e in selected.items] == ["e1"]
    # An Event about a cluster-scoped object belongs in default (or kube-system).
    core.create_namespace({"metadata": {"name": "team"}})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_event("team", new_event("e3", "2026-01-01T00:00:00.000001Z"))
    assert err.value.status == 422
    causes = status_of(err.value)["details"]["causes"]
    assert [(c["field"], c["message"]) for c in causes] == [
        ("involvedObject.namespace", 'Invalid value: "": does not match event.namespace')
    ]


# -- selectors and paging ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=gpu", ["a", "b"]),
        ("tier==gpu,zone=z1", ["a"]),
        ("tier!=gpu", ["c", "d"]),
        ("zone in (z1, z2)", ["a", "b", "c"]),
        ("zone notin (z1)", ["b", "c", "d"]),
        ("zone", ["a", "b", "c"]),
        ("!zone", ["d"]),
        ("tier=gpu,!missing", ["a", "b"]),
    ],
)
def test_label_selectors(core, selector, expected):
    for name, labels in {
        "a": {"tier": "gpu", "zone": "z1"},
        "b": {"tier": "gpu", "zone": "z2"},
        "c": {"tier": "cpu", "zone": "z2"},
        "d": {},
    }.items():
        core.create_node({"metadata": {"name": name, "labels": labels}})
    assert [n.metadata.name for n in core.list_node(label_selector=selector).items] == expected


def test_field_selectors(core):
    # kube-apiserver keeps ConfigMaps of its own in kube-system: use namespaces of ours.
    for ns, name in (("sel-a", "one"), ("sel-b", "two")):
        core.create_namespace({"metadata": {"name": ns}})
        core.create_namespaced_config_map(ns, cm(name))
    got = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=sel-b")
    assert [c.metadata.name for c in got.items] == ["two"]
    got = core.list_config_map_for_all_namespaces(
        field_selector="metadata.name!=two,metadata.namespace!=kube-system"
    )
    assert "one" in [c.metadata.name for c in got.items]
    assert "two" not in [c.metadata.name for c in got.items]
    with pytest.raises(ApiException) as err:
        core.list_config_map_for_all_namespaces(field_selector="data.x=1")
    assert err.value.status == 400


def test_bad_label_selector_is_400(core):
    with pytest.raises(ApiException) as err:
        core.list_node(label_selector="a in (b")
    assert err.value.status == 400


def test_paging_with_continue(core, kube):
    for i in range(7):
        core.create_node({"metadata": {"name": f"n{i}"}})
    names, token, pages = [], None, 0
    while True:
        page = core.list_node(limit=3, _continue=token)
        names += [n.metadata.name for n in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(names)
    assert names == [f"n{i}" for i in range(7)]
    assert pages == 3
    first = core.list_node(limit=2)
    kube.require_server().faults.expire_resource_versions()
    with pytest.raises(ApiException) as err:
        core.list_node(limit=2, _continue=first.metadata._continue)
    assert err.value.status == 410
    # The 410 offers a token to go on with, inconsistently, from the present state.
    status = status_of(err.value)
    assert status["reason"] == "Expired"
    core.delete_node("n3")
    rest = core.list_node(_continue=status["metadata"]["continue"])
    assert [n.metadata.name for n in rest.items] == ["n2", "n4", "n5", "n6"]


# -- custom resources -----------------------------------------------------------------------------
def test_custom_resource_status_split_and_generation(custom):
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, {**widget("w"), "status": {"phase": "Ready"}}
    )
    assert created["metadata"]["generation"] == 1
    assert "status" not in created
    assert created["spec"]["color"] == "green"
    assert created["spec"]["primary"] is False
    st = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w", {"status": {"phase": "Ready"}, "spec": {"size": 9}}
    )
    assert st["status"] == {"phase": "Ready"}
    assert st["spec"]["size"] == 1
    assert st["metadata"]["generation"] == 1
    st = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w", {"status": {"phase": None}}
    )
    assert st["status"] == {"phase": "Pending"}  # defaulted once the status object exists
    labelled = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "w",
        {"metadata": {"labels": {"a": "b"}}, "status": {"phase": "Failed"}},
    )
    assert labelled["metadata"]["generation"] == 1
    assert labelled["status"]["phase"] == "Pending"
    bumped = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w", {"spec": {"size": 2}}
    )
    assert bumped["metadata"]["generation"] == 2
    same = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w", {"spec": {"size": 2}}
    )
    assert same["metadata"]["resourceVersion"] == bumped["metadata"]["resourceVersion"]


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"size": "big"}, "spec.size", "FieldValueTypeInvalid"),
        ({"size": -1}, "spec.size", "FieldValueInvalid"),
        ({"size": 101}, "spec.size", "FieldValueInvalid"),
        ({"color": "pink"}, "spec.color", "FieldValueNotSupported"),
        ({"model": "-bad-"}, "spec.model", "FieldValueInvalid"),
        ({"model": "x" * 11}, "spec.model", "FieldValueTooLong"),
        ({"model": ""}, "spec.model", "FieldValueInvalid"),
        # additionalProperties keys join with a dot in OpenAPI errors, as kube-openapi does
        ({"resources": {"amd.com/gpu": "lots"}}, "spec.resources.amd.com/gpu", "FieldValueInvalid"),
        ({"parts": [{"name": "a"}, {"name": "a"}]}, "spec.parts[1]", "FieldValueDuplicate"),
        ({"parts": [{"count": 1}]}, "spec.parts[0].name", "FieldValueRequired"),
        ({"size": 60, "color": "blue"}, "spec", "FieldValueInvalid"),  # CEL rule
    ],
)
def test_custom_resource_validation(custom, spec, field, reason):
    body = widget("v", **spec)
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    assert err.value.status == 422
    causes = json.loads(str(err.value.body))["details"]["causes"]
    assert {"field": field, "reason": reason} in [
        {"field": c["field"], "reason": c["reason"]} for c in causes
    ], causes


def test_custom_resource_valid_edge_values(custom):
    body = widget(
        "ok",
        size=60,
        color="red",
        resources={"amd.com/gpu": 8, "memory": "64Gi"},
        note=None,
        extra={"any": {"thing": [1]}},
    )
    created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    assert created["spec"]["note"] is None
    assert created["spec"]["extra"] == {"any": {"thing": [1]}}
    assert created["spec"]["resources"] == {"amd.com/gpu": 8, "memory": "64Gi"}


def test_cel_transition_rules(custom):
    custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, widget("t", serial="s1", label="l1")
    )
    for change, field in (({"serial": "s2"}, "spec"), ({"label": "l2"}, "spec.label")):
        with pytest.raises(ApiException) as err:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, "default", PLURAL, "t", {"spec": change}
            )
        assert err.value.status == 422
        assert f'"field":"{field}"' in str(err.value.body)
        assert "immutable" in str(err.value.body)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "t", {"spec": {"size": 5}}
    )


def test_unknown_fields_pruned_or_rejected(custom, kube):
    body = widget("u", bogus=1)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    assert "bogus" not in created["spec"]
    api = kube.api_client()
    code, status = raw(
        api,
        "POST",
        f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}",
        widget("u2", bogus=1),
        query="?fieldValidation=Strict",
    )
    assert code == 400
    assert 'unknown field "spec.bogus"' in status["message"]


def test_strategic_merge_patch_unsupported_for_custom_resources(custom, kube):
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("s"))
    code, status = raw(
        kube.api_client(),
        "PATCH",
        f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/s",
        {"spec": {"size": 2}},
        content_type="application/strategic-merge-patch+json",
    )
    assert code == 415
    assert status["reason"] == "UnsupportedMediaType"


def test_cluster_scoped_custom_resource(custom):
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClusterWidget",
        "metadata": {"name": "cw"},
        "spec": {"size": 1},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "clusterwidgets", body)
    st = custom.patch_cluster_custom_object_status(
        GROUP, VERSION, "clusterwidgets", "cw", {"status": {}}
    )
    assert st["status"] == {"phase": "Pending"}
    assert [
        o["metadata"]["name"]
        for o in custom.list_cluster_custom_object(GROUP, VERSION, "clusterwidgets")["items"]
    ] == ["cw"]


def test_finalizers_hold_deletion(custom):
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        {**widget("f"), "metadata": {"name": "f", "finalizers": ["test/x"]}},
    )
    held = custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "f")
    assert held["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "f", {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "f")
    assert err.value.status == 404


RUNTIME_GROUP = "runtime.aim.dev"


def runtime_crd() -> dict[str, Any]:
    """widgets.yaml's Widget CRD in a group of its own: a CRD no other test applies, so that
    it is new when a test registers it (the run's control plane keeps the CRDs tests apply
    from files between tests)."""
    doc: dict[str, Any] = next(yaml.safe_load_all((TESTDATA / "widgets.yaml").read_text()))
    doc["spec"]["group"] = RUNTIME_GROUP
    doc["metadata"]["name"] = f"{PLURAL}.{RUNTIME_GROUP}"
    return doc


def test_crd_registered_at_run_time(kube):
    api = kube.api_client()
    ext: Any = client.ApiextensionsV1Api(api)
    name = f"{PLURAL}.{RUNTIME_GROUP}"
    ext.create_custom_resource_definition(runtime_crd())
    if kube.server is None:
        # kube-apiserver's naming and establishing controllers take a moment; the test
        # server establishes a CRD as it stores it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _established(ext, name):
            time.sleep(0.02)
    assert _established(ext, name)
    resources = client.ApisApi(api).get_api_versions()
    assert RUNTIME_GROUP in [g.name for g in resources.groups]
    _, listing = raw(api, "GET", f"/apis/{RUNTIME_GROUP}/{VERSION}")
    entry = next(r for r in listing["resources"] if r["name"] == PLURAL)
    assert entry["shortNames"] == ["wd"]
    assert entry["categories"] == ["aimtest"]
    assert entry["namespaced"]
    assert any(r["name"] == f"{PLURAL}/status" for r in listing["resources"])
    custom = client.CustomObjectsApi(api)
    body = {**widget("w"), "apiVersion": f"{RUNTIME_GROUP}/{VERSION}"}
    custom.create_namespaced_custom_object(RUNTIME_GROUP, VERSION, "default", PLURAL, body)
    status, deleted = raw(
        api, "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    )
    assert status == 200
    if kube.server is None:
        # kube-apiserver: the CRD is Terminating while its finalizer deletes the objects,
        # then it goes (seconds, or at once for one object); the test server does both at
        # once. The DELETE's answer is the CRD as the delete left it (a read after it may
        # already find it gone).
        assert deleted["kind"] == "CustomResourceDefinition"
        assert deleted["metadata"]["deletionTimestamp"]
        assert deleted["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _exists(ext, name):
            time.sleep(0.05)
    with pytest.raises(ApiException) as err:
        custom.list_namespaced_custom_object(RUNTIME_GROUP, VERSION, "default", PLURAL)
    assert err.value.status == 404


def _established(ext: Any, crd: str) -> bool:
    conditions = ext.read_custom_resource_definition(crd).status.conditions or []
    return {c.type: c.status for c in conditions}.get("Established") == "True"


def _exists(ext: Any, crd: str) -> bool:
    try:
        ext.read_custom_resource_definition(crd)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def test_project_crds_load_and_accept_examples(tmp_path):
    crds = sorted((REPO / "daemonset" / "crds").glob("*.yaml"))
    if not crds:
        pytest.skip("daemonset/crds has no CRDs yet")
    examples = sorted((REPO / "examples" / "profiles").glob("*.yaml"))
    with ApiServer(crd_paths=crds) as srv:
        kinds = {rt.kind for rt in srv.registry.types() if rt.is_custom}
        assert {"AIMProfile", "AIMClusterProfile"} <= kinds
        for f in examples:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc and doc.get("kind") in kinds:
                    ns = (doc.get("metadata") or {}).get("namespace")
                    if ns and srv.get_object("v1", "Namespace", ns) is None:
                        srv.seed(
                            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                        )
                    stored = srv.seed(doc)
                    assert stored["metadata"]["generation"] == 1, f.name


def test_dry_run_and_delete_collection(core):
    core.create_namespaced_config_map("default", cm("dry"), dry_run="All")
    assert core.list_namespaced_config_map("default").items == []
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        core.create_namespaced_config_map("default", cm(name, {"tier": tier}))
    core.delete_collection_namespaced_config_map("default", label_selector="tier=x")
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["c"]


def test_generate_name(core):
    made = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}})
    assert made.metadata.name.startswith("gen-")
    assert len(made.metadata.name) == len("gen-") + 5


def test_server_side_apply_owns_fields(kube, core):
    api = kube.api_client()
    path = "/api/v1/namespaces/default/configmaps/ssa"

    def apply(data: dict[str, str], manager: str = "tool") -> int:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data}
        code, _ = raw(
            api,
            "PATCH",
            path,
            json.dumps(body),
            content_type="application/apply-patch+yaml",
            query=f"?fieldManager={manager}&force=true",
        )
        return code

    assert apply({"a": "1", "b": "2"}) == 201
    core.patch_namespaced_config_map("ssa", "default", {"data": {"other": "x"}})
    assert apply({"a": "1"}) == 200
    # b was applied by this manager before and is now omitted: removed; other is not its field
    assert core.read_namespaced_config_map("ssa", "default").data == {"a": "1", "other": "x"}
    code, status = raw(api, "PATCH", path, "{}", content_type="application/apply-patch+yaml")
    assert code == 422
    assert status["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for '
        "apply patch"
    )
