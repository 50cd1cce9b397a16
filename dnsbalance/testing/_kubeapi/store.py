"""The in-memory store behind FakeKubernetesAPI: objects, one resourceVersion, watch history.

Everything here is pure Python without I/O, guarded by one lock (a Condition that
watchers wait on). Like etcd, one global counter numbers every write across all kinds;
each kind keeps its last ``history`` events (the watch cache), and a watch or an exact
list from a resourceVersion older than what is retained is answered 410 Expired.
"""

from __future__ import annotations

import copy
import random
import threading
import uuid
from collections import deque
from typing import Any

from . import kinds, nodes
from .bodies import check_preconditions, prepare_body
from .kinds import Resource
from .metadata import CONFLICT_MESSAGE, NAME_CHARS, go_strings, spec_changed, timestamp_now
from .paging import LATEST, decode_continue, encode_continue, parse_rv
from .patch import apply_patch
from .selectors import FieldSelector, LabelSelector
from .services import (
    ServiceAllocator,
    carry_allocations,
    init_ip_families,
    validate_service_update,
)
from .status import (
    FieldError,
    StatusError,
    already_exists,
    bad_request,
    conflict,
    expired,
    expired_continue,
    expired_in_etcd,
    invalid,
    not_found,
)
from .watch import MAX_QUEUED_EVENTS, Event, Watcher

__all__ = ["Store"]

JSON = dict[str, Any]


class Store:
    """Services and EndpointSlices with Kubernetes write and watch semantics."""

    def __init__(self, *, history: int = 1000, service_cidr: str = "10.96.0.0/12") -> None:
        if history < 0:
            raise ValueError("history must be >= 0")
        self.cond = threading.Condition()
        self._rv = 1
        self._history_size = history
        self._objects: dict[str, dict[tuple[str, str], JSON]] = {r: {} for r in kinds.RESOURCES}
        self._history: dict[str, deque[Event]] = {r: deque() for r in kinds.RESOURCES}
        self._floor: dict[str, int] = dict.fromkeys(kinds.RESOURCES, self._rv)
        self._compacted = 0  # the resourceVersion of the last compact()
        self._watchers: set[Watcher] = set()
        self._services = ServiceAllocator(service_cidr)
        self._random = random.Random(0)

    # -- reading --------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        with self.cond:
            return str(self._rv)

    def get(self, res: Resource, namespace: str, name: str) -> JSON:
        with self.cond:
            obj = self._objects[res.resource].get((namespace, name))
            if obj is None:
                raise not_found(res.resource, res.group, name)
            return copy.deepcopy(obj)

    def list_collection(
        self,
        res: Resource,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        *,
        resource_version: str = "",
        match: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> JSON:
        """A ``<Kind>List``: current state, or the state at an Exact resourceVersion."""
        start = ("", "")
        with self.cond:
            list_rv = self._rv
            if continue_token:
                list_rv, start = decode_continue(continue_token)
                if list_rv == LATEST:
                    list_rv = self._rv
                elif list_rv < self._floor[res.resource]:
                    raise expired_continue(encode_continue(LATEST, start))
            elif match == "Exact":
                list_rv = parse_rv(resource_version)
                if list_rv < self._floor[res.resource]:
                    raise expired_in_etcd("list")
            objects = self._state_at(res, list_rv)
        probe = Watcher(res, namespace, labels, fields)
        items = sorted((key, obj) for key, obj in objects.items() if probe.matches(obj))
        if continue_token:
            items = [(key, obj) for key, obj in items if key > start]
        metadata: JSON = {"resourceVersion": str(list_rv)}
        if limit and len(items) > limit:
            last_key = items[limit - 1][0]
            metadata["continue"] = encode_continue(list_rv, last_key)
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        out = []
        for _, obj in items:
            item = copy.deepcopy(obj)
            item.pop("kind", None)  # list items carry no kind/apiVersion
            item.pop("apiVersion", None)
            out.append(item)
        return {
            "kind": res.list_kind,
            "apiVersion": res.api_version,
            "metadata": metadata,
            "items": out,
        }

    def _state_at(self, res: Resource, rv: int) -> dict[tuple[str, str], JSON]:
        state = dict(self._objects[res.resource])
        if rv >= self._rv:
            return state
        for event in reversed(self._history[res.resource]):
            if event.rv <= rv:
                break
            meta = event.obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            if event.type == "ADDED":
                state.pop(key, None)
            elif event.prev is not None:
                state[key] = event.prev
        return state

    # -- writing --------------------------------------------------------------------

    def create(self, res: Resource, namespace: str, body: JSON, *, dry_run: bool = False) -> JSON:
        obj = prepare_body(res, namespace, body, name=None)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise StatusError(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": "resourceVersion should not be set on objects to be created",
                    "code": 500,
                }
            )
        with self.cond:
            if not meta.get("name") and meta.get("generateName"):
                for _ in range(16):
                    suffix = "".join(self._random.choice(NAME_CHARS) for _ in range(5))
                    meta["name"] = meta["generateName"] + suffix
                    if (namespace, meta["name"]) not in self._objects[res.resource]:
                        break
            for key in (
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ):
                meta.pop(key, None)
            meta["namespace"] = namespace
            if not res.namespaced:  # Nodes: no namespace in the object
                del meta["namespace"]
            self._admit(res, obj, None)
            name = meta["name"]
            if (namespace, name) in self._objects[res.resource]:
                self._free(res, obj, None)
                raise already_exists(res.resource, res.group, name)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = timestamp_now()
            if res.generation:
                meta["generation"] = 1
            if dry_run:
                self._free(res, obj, None)
                return copy.deepcopy(obj)
            self._commit(res, "ADDED", obj, None)
            return copy.deepcopy(obj)

    def update(
        self, res: Resource, namespace: str, name: str, body: JSON, *, dry_run: bool = False
    ) -> JSON:
        obj = prepare_body(res, namespace, body, name=name)
        with self.cond:
            return self._update_locked(res, namespace, name, obj, dry_run=dry_run)

    def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        *,
        dry_run: bool = False,
    ) -> JSON:
        with self.cond:
            current = self._objects[res.resource].get((namespace, name))
            if current is None:
                raise not_found(res.resource, res.group, name)
            patched = apply_patch(content_type, current, patch)
            if not isinstance(patched, dict):
                raise bad_request("the patched object is not a JSON object")
            obj = prepare_body(res, namespace, patched, name=name)
            return self._update_locked(res, namespace, name, obj, dry_run=dry_run)

    def delete(
        self,
        res: Resource,
        namespace: str,
        name: str,
        *,
        preconditions: JSON | None = None,
        dry_run: bool = False,
        as_object: bool = False,
    ) -> JSON:
        """Delete; answers the object (Services) or a Status Success (EndpointSlices)."""
        with self.cond:
            current = self._objects[res.resource].get((namespace, name))
            if current is None:
                raise not_found(res.resource, res.group, name)
            check_preconditions(res, current, preconditions or {})
            if current["metadata"].get("finalizers"):
                # As the registry's Store.Delete: finalizers hold the object; DELETE only
                # sets deletionTimestamp (once) and answers the object, not a Status.
                # A dry run answers the object as that update would make it, storing nothing.
                held = copy.deepcopy(current)
                if not held["metadata"].get("deletionTimestamp"):
                    held["metadata"]["deletionTimestamp"] = timestamp_now()
                    held["metadata"]["deletionGracePeriodSeconds"] = 0
                    if not dry_run:
                        self._commit(res, "MODIFIED", held, current)
                return copy.deepcopy(held)
            gone = copy.deepcopy(current)
            if not dry_run:
                self._free(res, current, None)
                self._commit(res, "DELETED", gone, current)
                if res is kinds.SERVICES:
                    self._service_gone(namespace, name)
            if res.return_deleted_object or as_object:
                return copy.deepcopy(gone)
            details: JSON = {"name": name}
            if res.group:
                details["group"] = res.group
            details["kind"] = res.resource
            details["uid"] = current["metadata"].get("uid", "")
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }

    def put(self, obj: JSON) -> JSON:
        """Create or unconditionally replace (helpers for tests), through admission."""
        res = kinds.resource_for(str(obj.get("kind") or ""))
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or ("default" if res.namespaced else "")
        name = meta.get("name") or ""
        body = copy.deepcopy(obj)
        body.setdefault("metadata", {}).pop("resourceVersion", None)
        with self.cond:
            if name and (namespace, name) in self._objects[res.resource]:
                return self.update(res, namespace, name, body)
            return self.create(res, namespace, body)

    # -- internals of writes --------------------------------------------------------

    def _update_locked(
        self, res: Resource, namespace: str, name: str, obj: JSON, *, dry_run: bool
    ) -> JSON:
        current = self._objects[res.resource].get((namespace, name))
        if current is None:
            raise not_found(res.resource, res.group, name)
        meta = obj["metadata"]
        old_meta = current["metadata"]
        rv = meta.get("resourceVersion")
        if rv and rv != old_meta["resourceVersion"]:
            raise conflict(res.resource, res.group, name, CONFLICT_MESSAGE)
        uid = meta.get("uid")
        if uid and uid != old_meta["uid"]:
            raise conflict(
                res.resource,
                res.group,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{old_meta['uid']}",
            )
        for key in (
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        if old_meta.get("deletionTimestamp"):
            new = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
            if new:
                raise invalid(
                    res.kind,
                    res.group,
                    name,
                    [
                        FieldError.forbidden(
                            "metadata.finalizers",
                            "no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {go_strings(sorted(new))}",
                        )
                    ],
                )
        self._admit(res, obj, current)
        if res.generation and spec_changed(res, obj, current):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if obj == current:  # a no-op write is not written: no new resourceVersion, no event
            self._free(res, obj, current)
            return copy.deepcopy(current)
        if dry_run:
            self._free(res, obj, current)
            return copy.deepcopy(obj)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # The last finalizer is gone: the registry deletes instead of updating (one
            # DELETED event, carrying the object as it was stored), answering the update.
            self._free(res, current, None)
            self._commit(res, "DELETED", copy.deepcopy(current), current)
            if res is kinds.SERVICES:
                self._service_gone(namespace, name)
            meta["resourceVersion"] = str(self._rv)
            return copy.deepcopy(obj)
        self._free(res, current, obj)
        self._commit(res, "MODIFIED", obj, current)
        return copy.deepcopy(obj)

    def _admit(self, res: Resource, obj: JSON, old: JSON | None) -> None:
        """Default, validate and allocate; raises 422 Invalid with every field error."""
        meta = obj["metadata"]
        if res is kinds.SERVICES:
            if old is not None:
                carry_allocations(obj, old)
            init_ip_families(obj, old)
            kinds.default_service(obj)
            if old is not None:  # status is not written through the main resource
                obj["status"] = copy.deepcopy(old.get("status", {"loadBalancer": {}}))
            errors = kinds.validate_service(obj)
            if old is not None:
                errors += validate_service_update(obj, old)
        elif res is kinds.NODES:
            nodes.default_node(obj)
            errors = nodes.validate_node(obj)
        else:
            kinds.default_slice(obj)
            errors = kinds.validate_slice(obj, old)
        if errors:
            raise invalid(res.kind, res.group, meta.get("name") or "", errors)
        if res is kinds.SERVICES:
            self._services.allocate(obj, old)

    def _free(self, res: Resource, holder: JSON | None, keep: JSON | None) -> None:
        if res is kinds.SERVICES:
            self._services.free(holder, keep)

    def _service_gone(self, namespace: str, name: str) -> None:
        """The controllers' answer to a deleted Service: the endpoints controller deletes
        ``Endpoints/<name>`` and the mirroring controller the slices it mirrored from it
        (Endpoints are a view of those slices here, so both go with the slices). Slices of
        other managers stay: the EndpointSlice controller's are deleted by the garbage
        collector through owner references, which this fake does not model."""
        slices = self._objects[kinds.ENDPOINT_SLICES.resource]
        for _, obj in sorted(slices.items()):
            if kinds.is_mirrored_slice_of(obj, namespace, name):
                self._commit(kinds.ENDPOINT_SLICES, "DELETED", copy.deepcopy(obj), obj)

    def _commit(self, res: Resource, kind: str, obj: JSON, prev: JSON | None) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if kind == "DELETED":
            del self._objects[res.resource][key]
        else:
            self._objects[res.resource][key] = obj
        event = Event(kind, self._rv, obj, prev)
        history = self._history[res.resource]
        history.append(event)
        while len(history) > self._history_size:
            dropped = history.popleft()
            self._floor[res.resource] = max(self._floor[res.resource], dropped.rv)
        for watcher in self._watchers:
            if watcher.resource is res and watcher.ended is None:
                seen = watcher.convert(event)
                if seen is not None:
                    watcher.queue.append(seen)
                    if len(watcher.queue) > MAX_QUEUED_EVENTS:
                        watcher.ended = "overflow"
        self.cond.notify_all()

    # -- watching -------------------------------------------------------------------

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        resource_version: int | None,
    ) -> Watcher:
        """Register a watcher; from ``resource_version`` (replayed) or the current state."""
        watcher = Watcher(res, namespace, labels, fields)
        with self.cond:
            if resource_version is None:
                for _, obj in sorted(self._objects[res.resource].items()):
                    if watcher.matches(obj):
                        watcher.queue.append(("ADDED", obj))
            else:
                floor = self._floor[res.resource]
                if resource_version < self._compacted:  # etcd's words: watched from etcd
                    raise expired_in_etcd("watch")
                if resource_version < floor:  # the watch cache's words
                    raise expired(f"too old resource version: {resource_version} ({floor})")
                for event in self._history[res.resource]:
                    if event.rv > resource_version:
                        seen = watcher.convert(event)
                        if seen is not None:
                            watcher.queue.append(seen)
            self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        with self.cond:
            self._watchers.discard(watcher)
        watcher.done.set()

    def take(self, watcher: Watcher, timeout: float) -> tuple[list[tuple[str, JSON]], str | None]:
        """Wait up to ``timeout`` for events; returns them and why the watch ended, if it did."""
        with self.cond:
            if not watcher.queue and watcher.ended is None:
                self.cond.wait(max(0.0, timeout))
            items = list(watcher.queue)
            watcher.queue.clear()
            return items, watcher.ended

    def bookmark_rv(self, watcher: Watcher) -> str | None:
        """The resourceVersion a BOOKMARK may carry now (None while events are queued)."""
        with self.cond:
            return None if watcher.queue else str(self._rv)

    def end_watchers(self, reason: str) -> list[Watcher]:
        with self.cond:
            ended = [w for w in self._watchers if w.ended is None]
            for watcher in ended:
                watcher.ended = reason
            self.cond.notify_all()
            return ended

    @property
    def watch_count(self) -> int:
        with self.cond:
            return len(self._watchers)

    def compact(self) -> None:
        """Drop all history, as an etcd compaction does to a kube-apiserver serving from
        etcd: only a watch from the current resourceVersion is still served."""
        with self.cond:
            self._compacted = self._rv
            for resource, history in self._history.items():
                history.clear()
                self._floor[resource] = self._rv

    def objects(self, res: Resource, namespace: str | None = None) -> list[JSON]:
        with self.cond:
            return [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._objects[res.resource].items())
                if namespace is None or ns == namespace
            ]
