"""Fidelity details of the test API server through the official client: paged lists served
from one snapshot, CRD defaults applied on read, label selector edge cases."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client import ApiException

from tests.apiserver.registry import SNAPSHOTS
from tests.conftest import REPO
from tests.test_apiserver_client import status_of

TESTDATA = REPO / "tests" / "apiserver" / "testdata"
GADGETS = TESTDATA / "gadgets.yaml"
GROUP, VERSION, PLURAL = "test.aim.dev", "v1", "gadgets"
CLUSTER_PROFILES = REPO / "daemonset" / "crds" / "aim.eai.amd.com_aimclusterprofiles.yaml"


@pytest.fixture
def core(kube):
    return client.CoreV1Api(kube.api_client())


@pytest.fixture
def custom(kube):
    return client.CustomObjectsApi(kube.api_client())


def names(items: list[Any]) -> list[str]:
    return [i.metadata.name for i in items]


# -- paged lists --------------------------------------------------------------------------------
def test_continue_pages_come_from_the_first_pages_snapshot(core):
    for n in ("a", "b", "c", "d"):
        core.create_node({"metadata": {"name": n, "labels": {"v": "1"}}})
    first = core.list_node(limit=2)
    assert names(first.items) == ["a", "b"]
    rv = first.metadata.resource_version
    c_rv = core.read_node("c").metadata.resource_version
    core.create_node({"metadata": {"name": "bb"}})  # after the snapshot: not in later pages
    core.delete_node("d")  # deleted after the snapshot: still in later pages
    core.patch_node("c", {"metadata": {"labels": {"v": "2"}}})  # changed: the old version
    second = core.list_node(limit=2, _continue=first.metadata._continue)
    assert names(second.items) == ["c", "d"]
    assert second.metadata.resource_version == rv
    assert second.items[0].metadata.resource_version == c_rv
    assert second.items[0].metadata.labels == {"v": "1"}
    assert not second.metadata._continue
    # the same token again (a client retrying) gets the same page
    again = core.list_node(limit=2, _continue=first.metadata._continue)
    assert names(again.items) == ["c", "d"]
    # a fresh list sees the present
    fresh = core.list_node()
    assert names(fresh.items) == ["a", "b", "bb", "c"]
    assert int(fresh.metadata.resource_version) > int(rv)


def test_continue_pages_keep_the_resource_version_and_apply_the_selector(core):
    for i in range(7):
        core.create_node({"metadata": {"name": f"n{i}", "labels": {"odd": str(i % 2)}}})
    first = core.list_node(limit=1, label_selector="odd=1")
    rv = first.metadata.resource_version
    got, token = names(first.items), first.metadata._continue
    core.create_node({"metadata": {"name": "n9", "labels": {"odd": "1"}}})
    core.delete_node("n5")
    while token:
        page = core.list_node(limit=1, label_selector="odd=1", _continue=token)
        assert page.metadata.resource_version == rv
        got, token = got + names(page.items), page.metadata._continue
    assert got == ["n1", "n3", "n5"]


def test_evicted_continue_token_is_410_expired(core, kube):
    kube.require_server()
    for n in ("a", "b"):
        core.create_node({"metadata": {"name": n}})
    first = core.list_node(limit=1)
    for _ in range(SNAPSHOTS):  # newer paged lists push the first one's snapshot out
        assert core.list_node(limit=1).metadata._continue
    with pytest.raises(ApiException) as err:
        core.list_node(limit=1, _continue=first.metadata._continue)
    assert err.value.status == 410
    assert json.loads(err.value.body or "{}")["reason"] == "Expired"
    assert names(core.list_node(limit=1).items) == ["a"]  # a new list works


# -- defaults on read ---------------------------------------------------------------------------
def without_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [without_defaults(v) for v in node]
    return node


def gadget(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Gadget",
        "metadata": {"name": name},
        "spec": {"size": 3},
        **extra,
    }


def watched(custom, name: str) -> dict[str, Any]:
    w = watch.Watch()
    for ev in w.stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL, timeout_seconds=5
    ):
        if ev["object"]["metadata"]["name"] == name:
            w.stop()
            obj: dict[str, Any] = ev["object"]
            return obj
    raise AssertionError(f"no watch event for {name}")


def test_status_default_on_create_and_status_patch(kube, custom):
    kube.apply_crds([GADGETS])
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, gadget("g", status={"phase": "Done"})
    )
    assert created["status"] == {"phase": "New"}  # status dropped, then defaulted
    rv = created["metadata"]["resourceVersion"]
    got = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g")
    assert got["status"] == {"phase": "New"}
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"]
    assert [i["status"] for i in listed] == [{"phase": "New"}]
    assert watched(custom, "g")["status"] == {"phase": "New"}
    # The defaulted status is shown, not stored (status is dropped after defaulting on
    # create): writing back what was read stores it once (a new resourceVersion); writing
    # the same again is a no-op.
    same = custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g", got)
    assert int(same["metadata"]["resourceVersion"]) > int(rv)
    again = custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g", same)
    assert again["metadata"]["resourceVersion"] == same["metadata"]["resourceVersion"]
    # a /status merge patch lands on the defaulted status
    patched = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "g", {"status": {"note": "hi"}}
    )
    assert patched["status"] == {"phase": "New", "note": "hi"}
    patched = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "g", {"status": {"phase": "Done"}}
    )
    assert patched["status"] == {"phase": "Done", "note": "hi"}


def test_defaults_are_applied_on_read(kube, custom, tmp_path: Path):
    """Objects stored before their CRD gained defaults read back defaulted (no write)."""
    crd = yaml.safe_load(GADGETS.read_text())
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(without_defaults(copy.deepcopy(crd))))
    kube.apply_crds([plain])
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, {**gadget("g"), "spec": {}}
    )
    assert "status" not in created
    assert created["spec"] == {}
    rv = created["metadata"]["resourceVersion"]
    kube.apply_crds([GADGETS])  # now with defaults
    got = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g")
    assert got["status"] == {"phase": "New"}
    assert got["spec"] == {"size": 1}
    assert got["metadata"]["resourceVersion"] == rv  # a read writes nothing
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"]
    assert [(i["spec"], i["status"]) for i in listed] == [({"size": 1}, {"phase": "New"})]
    assert watched(custom, "g")["status"] == {"phase": "New"}
    patched = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "g", {"status": {"note": "x"}}
    )
    assert patched["status"] == {"phase": "New", "note": "x"}
    assert int(patched["metadata"]["resourceVersion"]) > int(rv)


def test_project_cluster_profile_reads_pending_before_any_controller(kube, custom):
    if not CLUSTER_PROFILES.exists() or "default: {}" not in CLUSTER_PROFILES.read_text():
        pytest.skip("the project's CRDs do not default status yet")
    kube.apply_crds([CLUSTER_PROFILES])
    version = yaml.safe_load(CLUSTER_PROFILES.read_text())["spec"]["versions"][0]["name"]
    body = {
        "apiVersion": f"aim.eai.amd.com/{version}",
        "kind": "AIMClusterProfile",
        "metadata": {"name": kube.unique("p")},
        "spec": {"aimId": "qwen/qwen3-32b", "image": "registry.example.com/aim/qwen3:0.8.5"},
    }
    created = custom.create_cluster_custom_object(
        "aim.eai.amd.com", version, "aimclusterprofiles", body
    )
    name = created["metadata"]["name"]
    assert created["status"]["status"] == "Pending"
    got = custom.get_cluster_custom_object("aim.eai.amd.com", version, "aimclusterprofiles", name)
    assert got["status"]["status"] == "Pending"
    out = kube.kubectl("get", "aimclusterprofiles", name).stdout
    assert "Pending" in out.splitlines()[1]


# -- label selectors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("gpus > x", "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', "),
        ("gpus >", "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt'"),
        # the value of Gt/Lt must be a valid label value too: no sign
        ("gpus>-1", 'unable to parse requirement: values[0][gpus]: Invalid value: "-1": a valid'),
        ("zone in z1", "unable to parse requirement: found 'z1' expected: '('"),
        ("a,", "found '', expected: identifier after ','"),
    ],
)
def test_bad_label_selectors_are_400(core, selector, message):
    with pytest.raises(ApiException) as err:
        core.list_node(label_selector=selector)
    assert err.value.status == 400
    assert status_of(err.value)["message"].startswith(message)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("gpus>4", ["a"]),
        ("gpus < 4", ["b"]),
        ("gpus>0,gpus<9", ["a", "b"]),
        # "()" is the set of the empty string (not an error), as labels.Parse reads it
        ("zone in ()", ["c"]),
        ("zone notin ()", ["a", "b", "d"]),
        ("zone in (z1,)", ["a", "c"]),
        ("zone!=", ["a", "b", "d"]),
    ],
)
def test_label_selector_edge_cases(core, selector, expected):
    for name, labels in {
        "a": {"gpus": "8", "zone": "z1"},
        "b": {"gpus": "2"},
        "c": {"gpus": "x", "zone": ""},
        "d": {},
    }.items():
        core.create_node({"metadata": {"name": name, "labels": labels}})
    assert names(core.list_node(label_selector=selector).items) == expected
