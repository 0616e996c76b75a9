"""The live cluster as input: its nodes, profiles and the matcher's ConfigMap, read once.

``kubectl aim`` and ``aim-matcher check --kubeconfig`` read what the controller watches and hand
it to the offline loaders (``matcher.offline``), so the three cannot disagree. Read-only, and
only these calls (docs/plugin.md lists them as the RBAC a user needs):

- ``list`` nodes (pages of 500, with an optional label selector);
- ``list`` aimclusterprofiles, and aimprofiles in every namespace or in one;
- ``get`` one aimclusterprofile or aimprofile (``kubectl aim why``);
- ``get`` the matcher's ConfigMap (``aim-system/aim-matcher-config`` by default); when it
  cannot be read the defaults apply, and the caller says so.

Every failure is a :class:`LiveError` whose message is one line: which call, and why
(unreachable server, no permission, CRDs not installed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aimkit.build import version
from aimkit.kube import ApiError, ConfigError, KubeClient, KubeError, TransportError, connect
from matcher.api.crd import KINDS
from matcher.api.models import GROUP, KIND_CLUSTER_PROFILE, KIND_PROFILE, VERSION

#: Where the install bundle puts the matcher's settings (daemonset/matcher/configmap.yaml).
DEFAULT_CONFIG_MAP = "aim-system/aim-matcher-config"
PAGE_SIZE = 500
CRDS_HINT = "install the CRDs (kubectl apply -k daemonset/crds), or give profile files"
RBAC_HINT = "see docs/plugin.md#permissions"


class LiveError(Exception):
    """The cluster cannot be read; one line."""


def open_client(
    kubeconfig: str | os.PathLike[str] | None, context: str | None, program: str
) -> KubeClient:
    """A client in the project's one resolution order (``aimkit.kubeconfig``)."""
    try:
        return connect(kubeconfig, context, user_agent=f"{program}/{version()}", pool_size=1)
    except ConfigError as err:
        raise LiveError(str(err)) from None


def _plural(kind: str) -> str:
    return str(KINDS[kind]["plural"])


def profiles_path(kind: str, namespace: str | None = None) -> str:
    scope = f"/namespaces/{namespace}" if namespace and kind == KIND_PROFILE else ""
    return f"/apis/{GROUP}/{VERSION}{scope}/{_plural(kind)}"


def _failure(err: KubeError, what: str, resource: str) -> LiveError:
    if isinstance(err, ApiError):
        if err.status == 403:
            return LiveError(f"{what}: forbidden: {err.message or err.reason} ({RBAC_HINT})")
        if err.status == 404 and resource.endswith(GROUP):
            return LiveError(f"{what}: the cluster does not serve {resource}: {CRDS_HINT}")
        return LiveError(f"{what}: {err}")
    if isinstance(err, TransportError):
        return LiveError(f"{what}: {err.why}")
    return LiveError(f"{what}: {err}")


def list_objects(
    api: KubeClient,
    path: str,
    resource: str,
    kind: str,
    query: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every object of a collection, a page at a time, each with its ``apiVersion``/``kind``
    (a List's items carry neither)."""
    what = f"list {resource}"
    api_version = "v1" if kind == "Node" else f"{GROUP}/{VERSION}"
    token: str | None = None
    while True:
        params: dict[str, Any] = {**(query or {}), "limit": PAGE_SIZE}
        if token:
            params["continue"] = token
        try:
            page = api.request("GET", path, query=params)
        except ApiError as err:
            if err.status == 410 and token:
                raise LiveError(
                    f"{what}: the list changed faster than it could be paged through (HTTP "
                    "410); run again"
                ) from None
            raise _failure(err, what, resource) from None
        except KubeError as err:
            raise _failure(err, what, resource) from None
        for item in page.get("items") or ():
            if isinstance(item, dict):
                yield {"apiVersion": api_version, "kind": kind, **item}
        token = (page.get("metadata") or {}).get("continue") or None
        if not token:
            return


def nodes(api: KubeClient, selector: str | None = None) -> Iterator[dict[str, Any]]:
    query = {"labelSelector": selector} if selector else None
    return list_objects(api, "/api/v1/nodes", "nodes", "Node", query)


def profiles(api: KubeClient, namespace: str | None = None) -> Iterator[dict[str, Any]]:
    """Cluster profiles, then the AIMProfiles of ``namespace`` (every namespace when None)."""
    for kind in (KIND_CLUSTER_PROFILE, KIND_PROFILE):
        resource = f"{_plural(kind)}.{GROUP}"
        yield from list_objects(api, profiles_path(kind, namespace), resource, kind)


def get_profile(
    api: KubeClient, kind: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    """One profile; None when it does not exist (and its CRD does)."""
    resource = f"{_plural(kind)}.{GROUP}"
    where = f"{namespace}/{name}" if kind == KIND_PROFILE else name
    try:
        return api.request("GET", f"{profiles_path(kind, namespace)}/{name}")
    except ApiError as err:
        if err.status == 404 and err.reason == "NotFound" and not _crd_missing(err):
            return None
        raise _failure(err, f"get {resource} {where}", resource) from None
    except KubeError as err:
        raise _failure(err, f"get {resource} {where}", resource) from None


def _crd_missing(err: ApiError) -> bool:
    """A 404 for an unknown resource type, not for a missing object: the Status of a missing
    object names it in ``details.name``; kube-apiserver answers an unknown type with a bare
    ``404 page not found``."""
    try:
        details = json.loads(err.body or b"{}").get("details") or {}
    except (ValueError, AttributeError):
        return True
    return not details.get("name")


@dataclass(frozen=True, slots=True)
class ConfigMapRead:
    """The matcher's ConfigMap as read: the object, or why there is none."""

    where: str
    """``namespace/name``."""
    obj: dict[str, Any] | None
    missing: str | None = None
    """Why it could not be used (not found, forbidden): the defaults apply."""


def config_map(api: KubeClient, ref: str = DEFAULT_CONFIG_MAP) -> ConfigMapRead:
    namespace, _, name = ref.rpartition("/")
    namespace = namespace or "aim-system"
    where = f"{namespace}/{name}"
    try:
        obj = api.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    except ApiError as err:
        if err.status == 404:
            return ConfigMapRead(where, None, f"ConfigMap {where} not found")
        if err.status == 403:
            return ConfigMapRead(where, None, f"ConfigMap {where} not readable (forbidden)")
        raise _failure(err, f"get configmap {where}", "configmaps") from None
    except KubeError as err:
        raise _failure(err, f"get configmap {where}", "configmaps") from None
    return ConfigMapRead(where, {"apiVersion": "v1", "kind": "ConfigMap", **obj})
