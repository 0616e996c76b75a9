"""CRD validation ratcheting (GA in Kubernetes 1.33): after an upgrade tightens a schema, an
object stored under the old one keeps working. The matcher depends on it: its status writes go
to profiles whose spec a newer CRD may reject (as when acceleratorModel's limit went from 63
to 47), and they must not start failing. Shown on both servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.controller_support import wait_for

TESTDATA = Path(__file__).resolve().parent / "apiserver" / "testdata"
# widgets.yaml's Widget in a group of its own: this test changes the CRD, and the run's control
# plane keeps the CRDs other tests apply from widgets.yaml between tests.
GROUP, VERSION, PLURAL = "ratchet.aim.dev", "v1alpha1", "widgets"


def _widget(name: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 3, "model": model},
    }


def _rejected(custom: Any, body: dict[str, Any]) -> bool:
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    except ApiException as e:
        return bool(e.status == 422)
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, body["metadata"]["name"]
    )
    return False


def _served(custom: Any) -> bool:
    try:
        custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    except ApiException as e:
        if e.status in (404, 429):  # a real server serves a new CRD a moment later
            return False
        raise
    return True


def test_status_and_untouched_fields_ratchet_after_a_schema_tightens(kube):
    api = kube.api_client()
    ext: Any = client.ApiextensionsV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    crd = next(yaml.safe_load_all((TESTDATA / "widgets.yaml").read_text()))
    crd["spec"]["group"] = GROUP
    crd["metadata"]["name"] = f"{PLURAL}.{GROUP}"
    ext.create_custom_resource_definition(crd)
    wait_for(lambda: _served(custom), what="widgets served")
    custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, _widget("old", "ABCDEFGHIJ")
    )

    # The upgrade: model may now be at most 5 characters.
    ext.patch_custom_resource_definition(
        crd["metadata"]["name"],
        [
            {
                "op": "replace",
                "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties"
                "/model/maxLength",
                "value": 5,
            }
        ],
    )
    wait_for(
        lambda: _rejected(custom, _widget("new", "ABCDEFGHIJ")),
        what="the tightened schema in force",
    )

    # A status write on the old object is accepted (the matcher's case).
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "old", {"status": {"phase": "Ready"}}
    )
    # So is a spec change that leaves the now-invalid field as it was...
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "old", {"spec": {"size": 4}}
    )
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "old")
    assert (stored["spec"]["size"], stored["spec"]["model"]) == (4, "ABCDEFGHIJ")
    assert stored["status"]["phase"] == "Ready"
    # ...but changing it to another invalid value is not.
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "old", {"spec": {"model": "KLMNOPQRST"}}
        )
    assert err.value.status == 422
    assert "spec.model" in str(err.value.body)
