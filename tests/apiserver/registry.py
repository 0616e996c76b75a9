"""The API semantics: resource lookup, and get/list/create/update/patch/delete with the
metadata, status-subresource, generation, validation and no-op rules of kube-apiserver."""

from __future__ import annotations

import base64
import bisect
import copy
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import admission, crds, events, kinds, meta, schema
from .apply import Path, applied_paths, apply
from .errors import ApiError, Cause
from .patch import json_patch, merge_patch, strategic_merge_patch
from .resources import ResourceType, builtin_types
from .selectors import labels_match, parse_field_selector, parse_label_selector
from .store import Entry, Key, Store
from .validation import FieldError, forbidden, invalid, required

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NAMESPACES = admission.NAMESPACES
CRDS = admission.CRDS


@dataclass
class WriteResult:
    obj: dict[str, Any]
    created: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Snapshot:
    """The objects of one list at its first page's resourceVersion, sorted by key."""

    id: str  # "" until a continue token names it
    rkey: str
    ns: str | None
    rv: int
    keys: list[Key]
    entries: list[Entry]


# Paged-list snapshots kept for continue tokens (least recently used go first); a token
# whose snapshot is gone gets 410 Expired, as kube-apiserver answers after etcd compaction.
SNAPSHOTS = 64
CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


@dataclass
class ListResult:
    entries: list[Entry]
    resource_version: int
    cont: str = ""
    remaining: int | None = None


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._lock = threading.RLock()
        # server-side apply: (uid, field manager) -> the field paths it last applied
        self._owned: dict[tuple[str, str], frozenset[Path]] = {}
        self._snap_lock = threading.Lock()
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        #: How long a list "not older than" a future resourceVersion waits before its 504
        #: (kube-apiserver's watch cache waits 3 s).
        self.too_large_wait = 3.0
        for rt in builtin_types():
            self.register(rt)
        for ns in DEFAULT_NAMESPACES:
            self.create(self.lookup("", "v1", "namespaces"), None, {"metadata": {"name": ns}})

    # -- types -------------------------------------------------------------------
    def register(self, rt: ResourceType) -> None:
        with self._lock:
            self.unregister(rt.group, rt.plural)
            for v in rt.versions:
                self._types[(rt.group, v, rt.plural)] = rt

    def unregister(self, group: str, plural: str) -> None:
        with self._lock:
            for k in [k for k in self._types if k[0] == group and k[2] == plural]:
                del self._types[k]

    def types(self) -> list[ResourceType]:
        with self._lock:
            seen: dict[int, ResourceType] = {id(rt): rt for rt in self._types.values()}
            return list(seen.values())

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.find(group, version, plural)
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rt

    def group_versions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        with self._lock:
            for g, v, _ in self._types:
                if v not in out.setdefault(g, []):
                    out[g].append(v)
        for versions in out.values():
            versions.sort(key=crds.version_priority)
        return out

    # -- reads -------------------------------------------------------------------------
    def get(self, rt: ResourceType, ns: str | None, name: str) -> Entry:
        entry = self.store.get(rt.key, (ns or "", name))
        if entry is None:
            raise ApiError.not_found(rt.qualified, name, rt.plural)
        return self.view(rt, entry)

    def view(self, rt: ResourceType, entry: Entry) -> Entry:
        """`entry` as a read returns it: kube-apiserver applies a CRD's structural defaults
        when it decodes custom resources from etcd, so objects stored before their CRD gained
        a default show it (without a write). Cached per stored entry and schema."""
        if not rt.is_custom:
            return entry
        version = str(entry.obj.get("apiVersion", "")).rsplit("/", 1)[-1]
        sch = rt.schemas.get(version) or rt.schemas.get(rt.storage_version)
        if not sch or not schema.has_defaults(sch):
            return entry
        cached = entry._view
        if cached is not None and cached[0] is sch:
            return cached[1]
        obj = copy.deepcopy(entry.obj)
        schema.apply_defaults(obj, sch)
        out = entry if obj == entry.obj else Entry(obj)
        entry._view = (sch, out)
        return out

    def list_entries(
        self, rt: ResourceType, ns: str | None, query: Mapping[str, str]
    ) -> ListResult:
        """A list (page). Every page of one paged list is served from the snapshot taken by
        its first page and reports that page's resourceVersion, as etcd-backed lists do."""
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(
            query.get("fieldSelector"),
            rt.kind,
            events_v1=bool(rt.shares_storage_of),
            extra=rt.selectable_fields,
            custom=rt.is_custom,
            namespaced=rt.namespaced,
        )
        try:
            limit = int(query.get("limit") or 0)
        except ValueError as exc:
            raise ApiError.bad_request(f"invalid limit: {query.get('limit')!r}") from exc
        snap: _Snapshot | None = None
        start = 0
        wanted = query.get("resourceVersion") or ""
        if wanted not in ("", "0") and not query.get("continue"):
            if not wanted.isdigit():
                raise ApiError(
                    500,
                    "",
                    f'resourceVersion: Invalid value: "{wanted}": strconv.ParseUint: parsing '
                    f'"{wanted}": invalid syntax',
                )
            too_large = self.wait_for_resource_version(int(wanted), self.too_large_wait)
            if too_large is not None:
                raise too_large
        if query.get("continue"):
            token_rv, start_key, snap_id = _decode_continue(query["continue"])
            with self.store.lock:
                oldest = self.store.oldest_resumable()
            with self._snap_lock:
                snap = self._snapshots.get(snap_id)
                if snap is not None:
                    self._snapshots.move_to_end(snap_id)
            if token_rv == -1:  # the inconsistent continuation a 410 offers: from now on
                with self.store.lock:
                    pairs = self.store.items(rt.key, ns)
                    rv = self.store.rv
                snap = _Snapshot("", rt.key, ns, rv, [k for k, _ in pairs], [e for _, e in pairs])
            elif token_rv < oldest or snap is None or snap.rv != token_rv:
                error = ApiError.gone(CONTINUE_EXPIRED)
                error.metadata = {"continue": _encode_continue(-1, start_key, "")}
                raise error
            if snap.rkey != rt.key or snap.ns != ns:
                raise ApiError.bad_request("continue key is not valid: not for this list")
            start = bisect.bisect_right(snap.keys, start_key)
        else:
            with self.store.lock:
                pairs = self.store.items(rt.key, ns)
                rv = self.store.rv
            snap = _Snapshot("", rt.key, ns, rv, [k for k, _ in pairs], [e for _, e in pairs])
        keys, entries = snap.keys[start:], snap.entries[start:]
        if labels or query.get("fieldSelector"):
            chosen = [
                i for i, e in enumerate(entries) if labels_match(labels, e.obj) and fields(e.obj)
            ]
            keys, entries = [keys[i] for i in chosen], [entries[i] for i in chosen]
        if limit and len(entries) > limit:
            if not snap.id:
                snap.id = secrets.token_hex(8)
                with self._snap_lock:
                    self._snapshots[snap.id] = snap
                    while len(self._snapshots) > SNAPSHOTS:
                        self._snapshots.popitem(last=False)
            token = _encode_continue(snap.rv, keys[limit - 1], snap.id)
            page = [self.view(rt, e) for e in entries[:limit]]
            return ListResult(page, snap.rv, token, len(entries) - limit)
        return ListResult([self.view(rt, e) for e in entries], snap.rv)

    def wait_for_resource_version(self, rv: int, timeout: float) -> ApiError | None:
        """Wait until the store reaches `rv` (a list or watch-list "not older than" it); the
        504 kube-apiserver's watch cache answers after its 3 s wait, or None."""
        deadline = time.monotonic() + timeout
        with self.store.cond:
            while self.store.rv < rv:
                left = deadline - time.monotonic()
                if left <= 0:
                    return ApiError(
                        504,
                        "Timeout",
                        f"Timeout: Too large resource version: {rv}, current: {self.store.rv}",
                        details={
                            "causes": [
                                {
                                    "reason": "ResourceVersionTooLarge",
                                    "message": "Too large resource version",
                                }
                            ],
                            "retryAfterSeconds": 1,
                        },
                        headers={"Retry-After": "1"},
                    )
                self.store.cond.wait(left)
        return None

    # -- writes --------------------------------------------------------------------------
    def create(
        self,
        rt: ResourceType,
        ns: str | None,
        body: Mapping[str, Any],
        query: Mapping[str, str] | None = None,
    ) -> WriteResult:
        query = query or {}
        obj = self._decode(rt, body)
        md = obj.setdefault("metadata", {})
        if md.get("resourceVersion"):
            raise ApiError(500, "", "resourceVersion should not be set on objects to be created")
        _check_namespace(rt, ns, md)
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = meta.generate_name(md["generateName"])
            else:
                raise ApiError.invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        Cause(
                            "metadata.name",
                            "Required value: name or generateName is required",
                            "FieldValueRequired",
                        )
                    ],
                )
        with self.store.lock:
            key = (ns or "", md["name"])
            if rt.namespaced and self.store.get(NAMESPACES, ("", ns or "")) is None:
                raise ApiError.not_found("namespaces", ns or "")  # admission, before storage
            if rt.has_status and rt.is_custom:
                obj.pop("status", None)  # status is only written through /status
            for f in meta.SERVER_FIELDS:
                md.pop(f, None)
            md.pop("managedFields", None)
            md["uid"] = meta.new_uid()
            md["creationTimestamp"] = meta.now_rfc3339()
            if rt.has_generation:
                md["generation"] = 1
            if rt.namespaced:
                md["namespace"] = ns
            else:
                md.pop("namespace", None)
            admission.builtin_defaults(rt, obj)
            warnings = admission.admit(rt, obj, None, query)
            if rt.has_status and rt.is_custom:
                # kube-apiserver defaults while decoding the request, then drops status: a
                # defaulted status is not stored, only shown by every read (see view()).
                obj.pop("status", None)
            if self.store.get(rt.key, key) is not None:  # storage answers after validation
                raise ApiError.already_exists(rt.qualified, md["name"])
            if query.get("dryRun") == "All":
                return WriteResult(self.view(rt, Entry(obj)).obj, True, warnings)
            md["resourceVersion"] = str(self.store.next_rv())
            entry = self.store.commit(rt.key, key, "ADDED", obj)
            self._after_commit(rt, "ADDED", entry.obj)
            return WriteResult(self.view(rt, entry).obj, True, warnings)

    def update(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str = "",
        query: Mapping[str, str] | None = None,
        unconditional: bool = False,
    ) -> WriteResult:
        """PUT. Kinds whose strategy forbids unconditional updates (custom resources, CRDs,
        Leases) need the object's resourceVersion; `unconditional` lets `ApiServer.seed`
        through."""
        obj = self._decode(rt, body)
        md = obj.get("metadata") or {}
        if md.get("name") not in (None, name):
            raise ApiError.bad_request(
                f"the name of the object ({md.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        with self.store.lock:
            old = self.store.get(rt.key, (ns or "", name))
            if old is None:
                raise ApiError.not_found(rt.qualified, name, rt.plural)
            if not md.get("resourceVersion") and not unconditional and _needs_rv(rt):
                raise ApiError.invalid(
                    rt.plural,
                    rt.group,
                    name,
                    [
                        Cause.of(
                            invalid(
                                "metadata.resourceVersion", 0, "must be specified for an update"
                            )
                        )
                    ],
                )
            return self._replace(rt, ns, old, obj, subresource=subresource, query=query or {})

    def patch(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        content_type: str,
        raw: bytes,
        *,
        subresource: str = "",
        query: Mapping[str, str] | None = None,
    ) -> WriteResult:
        query = query or {}
        ptype = content_type.split(";", maxsplit=1)[0].strip()
        if ptype not in PATCH_TYPES:
            raise ApiError.unsupported_media_type(ptype)
        if rt.is_custom and ptype == STRATEGIC:
            raise ApiError.unsupported_patch_type(CUSTOM_PATCH_TYPES)
        _check_patch_options(ptype, query)
        try:
            patch = (
                yaml.safe_load(raw)
                if ptype == "application/apply-patch+yaml"
                else json.loads(raw or b"null")
            )
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError.bad_request(f"error decoding patch: {exc}") from exc
        with self.store.lock:
            old = self.store.get(rt.key, (ns or "", name))
            if ptype == "application/apply-patch+yaml":
                if not isinstance(patch, dict):
                    raise ApiError.bad_request("apply patch must be an object")
                owner = query["fieldManager"]
                if old is None:
                    if subresource:
                        raise ApiError.not_found(rt.qualified, name, rt.plural)
                    body = dict(patch)
                    body.setdefault("metadata", {})["name"] = name
                    made = self.create(rt, ns, body, query)
                    self._owned[(made.obj["metadata"]["uid"], owner)] = applied_paths(patch)
                    return made
                uid = old.obj["metadata"]["uid"]
                new = apply(
                    self.view(rt, old).obj, patch, self._owned.get((uid, owner), frozenset())
                )
                new = self._decode(rt, new)
                result = self._replace(rt, ns, old, new, subresource=subresource, query=query)
                self._owned[(uid, owner)] = applied_paths(patch)
                return result
            elif old is None:
                raise ApiError.not_found(rt.qualified, name, rt.plural)
            elif ptype == "application/merge-patch+json":
                if not isinstance(patch, dict):
                    raise ApiError.bad_request("merge patch must be a JSON object")
                new = merge_patch(self.view(rt, old).obj, patch)
            elif ptype == "application/strategic-merge-patch+json":
                if rt.is_custom:
                    raise ApiError.unsupported_media_type(ptype)
                if not isinstance(patch, dict):
                    raise ApiError.bad_request("strategic merge patch must be a JSON object")
                new = strategic_merge_patch(old.obj, patch, rt.merge_keys)
            elif ptype == "application/json-patch+json":
                new = json_patch(self.view(rt, old).obj, patch)
            else:
                raise ApiError.unsupported_media_type(ptype)
            if not isinstance(new, dict):
                raise ApiError.bad_request("patch result is not an object")
            new = self._decode(rt, new)
            return self._replace(rt, ns, old, new, subresource=subresource, query=query)

    def delete(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        options: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Delete; returns (object, gone). gone is False while finalizers hold it."""
        options = options or {}
        with self.store.lock:
            old = self.store.get(rt.key, (ns or "", name))
            if old is None:
                raise ApiError.not_found(rt.qualified, name, rt.plural)
            pre = options.get("preconditions") or {}
            md = old.obj["metadata"]
            for what, key in (("UID", "uid"), ("ResourceVersion", "resourceVersion")):
                if pre.get(key) and pre[key] != md.get(key):
                    raise ApiError.delete_precondition(
                        rt.kind, rt.group, name, what=what, wanted=pre[key], have=str(md.get(key))
                    )
            if (query or {}).get("dryRun") == "All":
                return old.obj, True
            if md.get("finalizers"):
                if md.get("deletionTimestamp"):
                    return old.obj, False
                new = copy.deepcopy(old.obj)
                new["metadata"]["deletionTimestamp"] = meta.now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                if rt.has_generation:
                    new["metadata"]["generation"] = md.get("generation", 1) + 1
                new["metadata"]["resourceVersion"] = str(self.store.next_rv())
                return self.store.commit(rt.key, (ns or "", name), "MODIFIED", new).obj, False
            return self._remove(rt, old.obj), True

    def delete_collection(self, rt: ResourceType, ns: str | None, query: Mapping[str, str]) -> int:
        with self.store.lock:
            result = self.list_entries(
                rt, ns, {k: v for k, v in query.items() if k in ("labelSelector", "fieldSelector")}
            )
            for e in result.entries:
                m = e.obj["metadata"]
                self.delete(rt, m.get("namespace"), m["name"])
            return len(result.entries)

    # -- internals -----------------------------------------------------------------------
    def _decode(self, rt: ResourceType, body: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ApiError.bad_request("the body of the request must be a JSON object")
        if rt.shares_storage_of:
            body = (
                events.to_core(dict(body))
                if body.get("apiVersion", "events.k8s.io/v1") == "events.k8s.io/v1"
                else dict(body)
            )
        else:
            kind, api_version = body.get("kind"), body.get("apiVersion")
            if kind not in (None, "", rt.kind):
                raise ApiError.bad_request(
                    f"the object provided is unrecognized (must be of type {rt.kind}): "
                    f"kind {kind!r}"
                )
            if (
                api_version
                and api_version.rsplit("/", 1)[0] != (rt.group or api_version)
                and rt.group
            ):
                raise ApiError.bad_request(
                    f"the API version in the data ({api_version}) does not match the "
                    f"expected API version ({rt.api_version()})"
                )
        obj: dict[str, Any] = {
            "kind": rt.kind,
            "apiVersion": "v1" if rt.shares_storage_of else rt.api_version(),
            "metadata": copy.deepcopy(dict(body.get("metadata") or {})),
        }
        for k, v in body.items():
            if k not in ("kind", "apiVersion", "metadata"):
                obj[k] = copy.deepcopy(v)
        kinds.decode(rt.key, rt.kind, obj)
        return obj

    def _replace(
        self,
        rt: ResourceType,
        ns: str | None,
        old: Entry,
        new: dict[str, Any],
        *,
        subresource: str,
        query: Mapping[str, str],
    ) -> WriteResult:
        """Update `old` (the stored entry) to `new` under the store lock (caller holds it)."""
        stored, old = old, self.view(rt, old)  # `old` as read: with on-read defaults
        if subresource and (subresource != "status" or not rt.has_status):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        old_md = old.obj["metadata"]
        md = new.setdefault("metadata", {})
        if md.get("resourceVersion") and md["resourceVersion"] != old_md["resourceVersion"]:
            raise ApiError.conflict(rt.qualified, old_md["name"])
        if md.get("uid") and md["uid"] != old_md["uid"]:
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {md['uid']}, "
                f"UID in object meta: {old_md['uid']}",
            )
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old.obj)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            md = new["metadata"]
        else:
            if rt.has_status:
                if "status" in old.obj:
                    new["status"] = copy.deepcopy(old.obj["status"])
                else:
                    new.pop("status", None)
            for f in (
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if f in old_md:
                    md[f] = old_md[f]
                else:
                    md.pop(f, None)
            md["name"] = old_md["name"]
            if rt.namespaced:
                md["namespace"] = ns
            md.pop("managedFields", None)
        warnings = admission.admit(rt, new, old.obj, query)
        md["resourceVersion"] = old_md["resourceVersion"]
        if rt.has_generation and admission.spec_changed(rt, old.obj, new):
            md["generation"] = int(old_md.get("generation", 1)) + 1
        if new == stored.obj:  # compared with what is stored, as etcd compares bytes
            return WriteResult(old.obj, False, warnings)  # no-op: no new resourceVersion, no event
        if query.get("dryRun") == "All":
            return WriteResult(new, False, warnings)
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            # The last finalizer gone: deleted instead of stored, and the answer is the object
            # at the resourceVersion it had, as kube-apiserver's deleteWithoutFinalizers gives.
            self._remove(rt, new)
            return WriteResult(new, False, warnings)
        md["resourceVersion"] = str(self.store.next_rv())
        entry = self.store.commit(rt.key, (ns or "", md["name"]), "MODIFIED", new)
        self._after_commit(rt, "MODIFIED", entry.obj)
        return WriteResult(entry.obj, False, warnings)

    def _remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.store.next_rv())
        key = (gone["metadata"].get("namespace", ""), gone["metadata"]["name"])
        entry = self.store.commit(rt.key, key, "DELETED", gone)
        self._after_commit(rt, "DELETED", entry.obj)
        return entry.obj

    def _after_commit(self, rt: ResourceType, type_: str, obj: dict[str, Any]) -> None:
        if rt.key == CRDS:
            self._crd_changed(type_, obj)
        elif rt.key == NAMESPACES and type_ == "DELETED":
            ns = obj["metadata"]["name"]
            for other in self.types():
                if other.namespaced and not other.shares_storage_of:
                    for _, e in self.store.items(other.key, ns):
                        self._remove(other, e.obj)

    def _crd_changed(self, type_: str, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        if type_ == "DELETED":
            plural = (spec.get("names") or {}).get("plural", "")
            key = f"{spec.get('group')}/{plural}"
            old = next((t for t in self.types() if t.key == key), None)
            if old is not None:
                for _, e in self.store.items(key):
                    self._remove(old, e.obj)
            self.unregister(spec.get("group", ""), plural)
            return
        self.register(crds.resource_type(obj))
        status = crds.established_status(obj, meta.now_rfc3339())
        current = obj.get("status") or {}
        if {k: current.get(k) for k in ("acceptedNames", "storedVersions")} != {
            k: status[k] for k in ("acceptedNames", "storedVersions")
        }:
            rt = self._crd_type()
            new = copy.deepcopy(obj)
            new["status"] = status
            new["metadata"]["resourceVersion"] = str(self.store.next_rv())
            self.store.commit(rt.key, ("", obj["metadata"]["name"]), "MODIFIED", new)

    def _crd_type(self) -> ResourceType:
        return self.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")


STRATEGIC = "application/strategic-merge-patch+json"
CUSTOM_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)
PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/merge-patch+json",
    STRATEGIC,
    "application/json-patch+json",
)


def _check_patch_options(ptype: str, query: Mapping[str, str]) -> None:
    """metav1 validation.ValidatePatchOptions: 422 on the PatchOptions."""
    errors = []
    if ptype != "application/apply-patch+yaml":
        if "force" in query:
            errors.append(forbidden("force", "may not be specified for non-apply patch"))
    elif not query.get("fieldManager"):
        errors.append(required("fieldManager", "is required for apply patch"))
    manager = query.get("fieldManager", "")
    if len(manager) > 128:
        errors.append(
            FieldError("FieldValueTooLong", "fieldManager", detail="may not be more than 128 bytes")
        )
    if errors:
        raise ApiError.invalid("PatchOptions", "meta.k8s.io", "", [Cause.of(e) for e in errors])


def _needs_rv(rt: ResourceType) -> bool:
    """The kinds whose registry strategy says AllowUnconditionalUpdate() == false."""
    return rt.is_custom or rt.key in (CRDS, kinds.LEASES)


def _check_namespace(rt: ResourceType, ns: str | None, md: dict[str, Any]) -> None:
    if rt.namespaced and md.get("namespace") and md["namespace"] != ns:
        raise ApiError.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )


def _encode_continue(rv: int, start: Key, snap_id: str) -> str:
    """The token names the list snapshot and the last key served (as etcd's names the
    resourceVersion and the key to continue after)."""
    raw = json.dumps(
        {"v": "meta.k8s.io/v1", "rv": rv, "start": list(start), "snapshot": snap_id}
    ).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str], str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        start = (str(data["start"][0]), str(data["start"][1]))
        return int(data["rv"]), start, str(data.get("snapshot", ""))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ApiError.bad_request(f"continue key is not valid: {exc}") from exc
