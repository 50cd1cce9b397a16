"""core/v1 Endpoints in FakeKubernetesAPI: a read-only view derived from EndpointSlices.

Clients that predate EndpointSlices (kuberesolver v3, older controllers) read
``/api/v1/namespaces/{ns}/endpoints/{name}`` and watch it, on the collection with
``?watch=1`` or on the legacy ``/api/v1/watch/namespaces/{ns}/endpoints[/{name}]``
path. Here every such request is answered from the Service's current EndpointSlices
(label ``kubernetes.io/service-name``), computed on read, so the Endpoints view and the
slice view change in the same instant: there is no controller lag to model.

What the Endpoints controller writes, and so this view:

- the object exists while the Service exists or any of its slices does; it carries the
  Service's labels. A Service without a selector gets no Endpoints from any controller:
  they are written by hand, and the mirroring controller copies them into slices labelled
  ``endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io``;
  here they exist while such slices do, read from those alone. Deleting the Service
  deletes them (the endpoints controller deletes ``Endpoints/<name>`` of a deleted
  Service, the mirroring controller its slices: :meth:`Store.delete`);
- ``subsets``: endpoints grouped by identical port sets (``RepackSubsets``), each with
  ``addresses`` (ready), ``notReadyAddresses`` (not ready and not terminating) and
  ``ports`` (``name`` omitted when empty); addresses sorted by IP. Terminating endpoints
  are left out. Only the Service's primary IP family is listed (IPv4 when unknown);
  FQDN slices are ignored. Ports keep the slices' order (the controller sorts them by
  a hash, so "the first port" of an Endpoints subset is arbitrary but stable there);
- at most 1000 addresses (``maxCapacity``): above that, ready addresses are kept before
  not-ready ones, spread over subsets in proportion (``truncateEndpoints``), and the
  object is annotated ``endpoints.kubernetes.io/over-capacity: truncated``.

``resourceVersion`` is the store's resourceVersion at which this view first saw the
current content. Writes to Endpoints are refused (405): change the slices instead.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import kinds
from .kinds import Resource
from .selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
)
from .status import not_found
from .watch import Watcher

if TYPE_CHECKING:
    from .store import Store

__all__ = ["ENDPOINTS", "MAX_CAPACITY", "OVER_CAPACITY", "EndpointsView"]

JSON = dict[str, Any]
ENDPOINTS = Resource("endpoints", "Endpoints", "", "v1", True, "dns1035")
MAX_CAPACITY = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_POLL = 0.2
_EVERYTHING = parse_field_selector("", ("metadata.name",))
_ALL_LABELS = parse_label_selector("")


class EndpointsView:
    """Endpoints objects computed from the store's Services and EndpointSlices."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[str, str]] = {}  # key -> (content, rv)

    # -- reading --------------------------------------------------------------------

    def current(self, namespace: str, name: str) -> JSON | None:
        """The Endpoints object of Service ``name`` now, or None."""
        service = _find(self._store.objects(kinds.SERVICES, namespace), name)
        slices = [
            s
            for s in self._store.objects(kinds.ENDPOINT_SLICES, namespace)
            if ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == name
        ]
        if service is not None and not (service.get("spec") or {}).get("selector"):
            # No controller writes the Endpoints of a selector-less Service: they are
            # written by hand, and the mirroring controller copies them into slices it
            # labels as its own. Served from those copies; other slices make none.
            slices = [s for s in slices if kinds.is_mirrored_slice_of(s, namespace, name)]
            if not slices:
                return None
        if service is None and not slices:
            return None
        return self._stamp(namespace, name, endpoints_object(namespace, name, service, slices))

    def get(self, namespace: str, name: str) -> JSON:
        obj = self.current(namespace, name)
        if obj is None:
            raise not_found(ENDPOINTS.resource, ENDPOINTS.group, name)
        return obj

    def names(self, namespace: str | None) -> list[tuple[str, str]]:
        """(namespace, name) of every Endpoints object that exists, sorted."""
        keys = {
            (str(meta.get("namespace")), str(meta.get("name")))
            for meta in (o.get("metadata") or {} for o in self._store.objects(kinds.SERVICES))
        }
        for s in self._store.objects(kinds.ENDPOINT_SLICES):
            meta = s.get("metadata") or {}
            service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
            if service:
                keys.add((str(meta.get("namespace")), str(service)))
        return sorted(k for k in keys if namespace is None or k[0] == namespace)

    def list(self, namespace: str | None, labels: LabelSelector, fields: FieldSelector) -> JSON:
        match = Watcher(ENDPOINTS, namespace, labels, fields)
        items = [obj for ns, name in self.names(namespace) if (obj := self.current(ns, name))]
        return {
            "kind": "EndpointsList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": self._store.resource_version},
            "items": [obj for obj in items if match.matches(obj)],
        }

    def _stamp(self, namespace: str, name: str, obj: JSON) -> JSON:
        content = json.dumps([obj["metadata"], obj.get("subsets")], sort_keys=True)
        with self._lock:
            seen = self._seen.get((namespace, name))
            if seen is None or seen[0] != content:
                seen = (content, self._store.resource_version)
                self._seen[(namespace, name)] = seen
        obj["metadata"]["resourceVersion"] = seen[1]
        return obj

    # -- watching -------------------------------------------------------------------

    def watch(
        self,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        resource_version: int | None,
        *,
        write: Callable[[str, JSON], bool],
        stop: Callable[[], bool],
        timeout: float,
    ) -> str:
        """Stream events through ``write(type, object)`` until ``timeout``, ``stop()``,
        a failed write, or the store ending the underlying watches.

        Returns why it ended: "clean", "cut" (hang up), "closed", "gone" (the client).
        Without ``resource_version`` the stream starts with an ADDED event per object,
        as a real watch without resourceVersion does.
        """
        match = Watcher(ENDPOINTS, namespace, labels, fields)
        store = self._store
        slices = store.watch(kinds.ENDPOINT_SLICES, namespace, _ALL_LABELS, _EVERYTHING, None)
        services = store.watch(kinds.SERVICES, namespace, _ALL_LABELS, _EVERYTHING, None)
        sent: dict[tuple[str, str], JSON] = {}
        try:
            for key in self.names(namespace):
                obj = self.current(*key)
                if obj is None or not match.matches(obj):
                    continue
                sent[key] = obj
                newer = (
                    resource_version is not None
                    and int(obj["metadata"]["resourceVersion"]) > resource_version
                )
                if (resource_version is None or newer) and not write(
                    "ADDED" if resource_version is None else "MODIFIED", obj
                ):
                    return "gone"
            end_at = time.monotonic() + timeout
            for _ in range(int(timeout / 0.001) + 10):  # a round waits; never hit
                now = time.monotonic()
                if now >= end_at or stop():
                    return "clean"
                changed, ended = store.take(slices, min(_POLL, end_at - now))
                more, ended_too = store.take(services, 0.0)
                ended = ended or ended_too
                if ended == "cut":
                    return "cut"
                keys = {_service_of(obj) for _, obj in changed} | {_key_of(obj) for _, obj in more}
                for key in sorted(k for k in keys if k is not None):
                    event = self._event(key, sent, match)
                    if event is not None and not write(*event):
                        return "gone"
                if ended is not None:
                    return "closed" if ended == "closed" else "clean"
            return "clean"
        finally:
            store.unwatch(slices)
            store.unwatch(services)

    def _event(
        self, key: tuple[str, str], sent: dict[tuple[str, str], JSON], match: Watcher
    ) -> tuple[str, JSON] | None:
        obj = self.current(*key)
        if obj is not None and not match.matches(obj):
            obj = None
        before = sent.get(key)
        if obj is None:
            if before is None:
                return None
            del sent[key]
            gone = copy.deepcopy(before)
            gone["metadata"]["resourceVersion"] = self._store.resource_version
            return ("DELETED", gone)
        sent[key] = obj
        if before is None:
            return ("ADDED", obj)
        if before == obj:
            return None
        return ("MODIFIED", obj)


def _find(objs: Iterable[JSON], name: str) -> JSON | None:
    return next((o for o in objs if (o.get("metadata") or {}).get("name") == name), None)


def _key_of(obj: JSON) -> tuple[str, str] | None:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace")), str(meta.get("name")))


def _service_of(obj: JSON) -> tuple[str, str] | None:
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (str(meta.get("namespace")), str(service)) if service else None


def endpoints_object(namespace: str, name: str, service: JSON | None, slices: list[JSON]) -> JSON:
    """The Endpoints the controller would write for these slices (see the module doc)."""
    families = ((service or {}).get("spec") or {}).get("ipFamilies") or []
    present = {s.get("addressType") for s in slices}
    family = families[0] if families else ("IPv4" if "IPv4" in present or not present else "IPv6")
    groups: dict[str, tuple[list[JSON], dict[str, JSON], dict[str, JSON]]] = {}
    for s in sorted(slices, key=lambda o: str((o.get("metadata") or {}).get("name"))):
        if s.get("addressType") != family:
            continue
        ports = [
            port
            for entry in s.get("ports") or ()
            if isinstance(entry, dict) and (port := _port(entry)) is not None
        ]
        group = groups.setdefault(json.dumps(ports, sort_keys=True), (ports, {}, {}))
        for ep in s.get("endpoints") or ():
            addresses = ep.get("addresses") or []
            if not addresses or not isinstance(addresses[0], str):
                continue
            conditions = ep.get("conditions") or {}
            ready = conditions.get("ready") is not False
            terminating = conditions.get("terminating") is True
            if terminating and not ready:
                continue
            address: JSON = {"ip": addresses[0]}
            for field, value in (
                ("hostname", ep.get("hostname")),
                ("nodeName", ep.get("nodeName")),
                ("targetRef", ep.get("targetRef")),
            ):
                if value:
                    address[field] = value
            (group[1] if ready else group[2])[addresses[0]] = address
    subsets = []
    for ports, ready_set, not_ready_set in groups.values():
        not_ready = {ip: a for ip, a in not_ready_set.items() if ip not in ready_set}
        if not ready_set and not not_ready:
            continue
        subset: JSON = {}
        if ready_set:
            subset["addresses"] = _sorted(ready_set.values())
        if not_ready:
            subset["notReadyAddresses"] = _sorted(not_ready.values())
        subset["ports"] = ports
        subsets.append(subset)
    meta_src = (service or {}).get("metadata") or (slices[0].get("metadata") if slices else {})
    metadata: JSON = {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"endpoints/{namespace}/{name}")),
        "creationTimestamp": (meta_src or {}).get("creationTimestamp"),
    }
    labels = ((service or {}).get("metadata") or {}).get("labels")
    if labels:
        metadata["labels"] = dict(labels)
    if truncate(subsets):
        metadata["annotations"] = {OVER_CAPACITY: "truncated"}
    obj: JSON = {"kind": "Endpoints", "apiVersion": "v1", "metadata": metadata}
    if subsets:
        obj["subsets"] = subsets
    return obj


def _port(entry: JSON) -> JSON | None:
    number = entry.get("port")
    if not isinstance(number, int):
        return None
    port: JSON = {"port": number, "protocol": entry.get("protocol") or "TCP"}
    if entry.get("name"):
        port["name"] = entry["name"]
    if entry.get("appProtocol"):
        port["appProtocol"] = entry["appProtocol"]
    return port


def _sorted(addresses: Iterable[JSON]) -> list[JSON]:
    return sorted(addresses, key=lambda a: ipaddress.ip_address(a["ip"]))


def truncate(subsets: list[JSON]) -> bool:
    """The Endpoints controller's ``truncateEndpoints``: at most MAX_CAPACITY addresses,
    ready ones first, each subset keeping its share (rounded up, the last gets what is
    left). True when something was cut."""
    ready = sum(len(s.get("addresses", ())) for s in subsets)
    not_ready = sum(len(s.get("notReadyAddresses", ())) for s in subsets)
    if ready + not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = ready > MAX_CAPACITY
    limit, total = (MAX_CAPACITY, ready) if truncate_ready else (MAX_CAPACITY - ready, not_ready)
    room = limit
    for subset in subsets:
        field = "addresses" if truncate_ready else "notReadyAddresses"
        count = len(subset.get(field, ()))
        keep = min(math.ceil(count / total * limit), room)
        subset[field] = subset.get(field, [])[:keep]
        if truncate_ready:
            subset.pop("notReadyAddresses", None)
        room -= len(subset[field])
        if not subset[field]:
            del subset[field]
    return True
