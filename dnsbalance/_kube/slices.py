"""What a Service's EndpointSlices say: pure reading and merging, no I/O.

A Service has one or more slices (at most 100 endpoints each, one per address
family in dual-stack), joined by the label ``kubernetes.io/service-name``.
A target without a port (``port=None``) uses the Service's first port, see
:func:`first_port`. They
are merged by slice name, and a DELETED slice takes only its own endpoints with
it: the "last slice wins" bug class (kuberesolver #66) cannot happen here.

Readiness follows ``ready`` as written (nil means true), as CoreDNS publishes
on it: the EndpointSlice controller writes ``ready = publishNotReadyAddresses ||
(serving && !terminating)`` (``podToEndpoint`` in
staging/src/k8s.io/endpointslice/utils.go), so a terminating endpoint of a Service
with ``publishNotReadyAddresses`` is ready and used, and DNS lists it too. With
``include_terminating``, terminating endpoints still ``serving`` are used as well (for
long drains). FQDN slices are ignored.

An endpoint's ``addresses`` are fungible: the v1 API says consumers may use only the
first, and kube-proxy's endpointslicecache does; so does dnsbalance (one backend per
endpoint, never one per address).

Topology (``zone``, ``nodeName``, ``hints.forZones[].name``, ``hints.forNodes[].name``)
is kept on each :class:`Endpoint` for :mod:`dnsbalance._kube.topology`, checked by the
API's own rules (``pkg/apis/discovery/validation``: a zone is a label value, a node
name a DNS subdomain, at most 8 hints of each kind, no duplicates). A value the API
would have refused is never trusted: a bad ``zone``/``nodeName`` is dropped, and an
endpoint with any bad hint keeps none, so it counts as unhinted (and kube-proxy's rule
then uses every endpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dnsbalance._endpoints import Endpoint, normalize

from .pods import ReadyPairs, pod_uid, speaks_for
from .topology import MAX_HINTS, valid_node_name, valid_zone_name

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class ApiEndpoints(tuple[Endpoint, ...]):
    """The API's ready endpoints (the tuple itself, so it reads as any endpoint tuple),
    and what else it lists: ``listed`` every endpoint of the target's port, ready or
    not; ``serving`` those not ready but still serving. Panic mode needs both."""

    listed: tuple[Endpoint, ...]
    serving: tuple[Endpoint, ...]

    def __new__(
        cls,
        ready: tuple[Endpoint, ...] = (),
        listed: tuple[Endpoint, ...] = (),
        serving: tuple[Endpoint, ...] = (),
    ) -> ApiEndpoints:
        view = super().__new__(cls, ready)
        view.listed = listed
        view.serving = serving
        return view

    def same(self, other: tuple[Endpoint, ...] | None) -> bool:
        """Equal, the not-ready endpoints and the topology (zones, nodes, hints) included:
        a change of hints alone is a new view, for the topology rules to see."""
        return (
            isinstance(other, ApiEndpoints)
            and tuple(self) == tuple(other)
            and (self.listed, self.serving) == (other.listed, other.serving)
            and _topology(self.listed) == _topology(other.listed)
        )


def _topology(endpoints: Iterable[Endpoint]) -> tuple[object, ...]:
    """What the topology rules read of each endpoint (not part of its equality)."""
    return tuple(
        (ep.zone, ep.node_name, ep.zone_hints, ep.node_hints, ep.ready) for ep in endpoints
    )


@dataclass(frozen=True)
class SliceEndpoints:
    """One slice's endpoints for the target's port: those to use, and the rest."""

    usable: tuple[Endpoint, ...]
    unusable: tuple[Endpoint, ...]
    ports: tuple[tuple[str, int], ...] = ()
    """The slice's TCP ports as (name, number), whatever the target's port."""
    serving: tuple[Endpoint, ...] = ()
    """Unusable endpoints that still say ``serving``."""


def read_slice(
    obj: Mapping[str, Any],
    port: int | str,
    *,
    include_terminating: bool = False,
    names: frozenset[str] = frozenset(),
    ready_pods: ReadyPairs = frozenset(),
) -> SliceEndpoints:
    """Read one EndpointSlice (a JSON dict, camelCase as the API sends it).

    ``port``: a name is looked up in the slice's ``ports`` (a slice without it
    contributes nothing); a number goes through :func:`numeric_port`, ``names`` being
    the names other slices give that number. ``ready_pods``: the (UID, IP) of pods now
    Ready, which the EndpointSlice controller will write ready
    (:mod:`dnsbalance._kube.pods`): its endpoints there that the controller's slice
    still lists as not ready and not terminating are ready now.
    """
    address_type = obj.get("addressType")
    if address_type not in ("IPv4", "IPv6"):
        log.debug("ignoring EndpointSlice %s of addressType %s", _name(obj), address_type)
        return SliceEndpoints((), ())
    ports = _tcp_ports(obj)
    number = numeric_port(ports, port, names) if isinstance(port, int) else _port_number(obj, port)
    if number is None:
        return SliceEndpoints((), (), ports)
    usable: list[Endpoint] = []
    unusable: list[Endpoint] = []
    serving_only: list[Endpoint] = []
    foretold = bool(ready_pods) and speaks_for(obj)
    for item in obj.get("endpoints") or ():
        if not isinstance(item, Mapping):
            continue
        addresses = item.get("addresses") or ()
        address = addresses[0] if isinstance(addresses, list) and addresses else None
        if not isinstance(address, str):
            continue
        conditions = item.get("conditions") or {}
        ready = conditions.get("ready") is not False
        serving = conditions.get("serving") is not False
        terminating = conditions.get("terminating") is True
        if foretold and not ready and not terminating and (pod_uid(item), address) in ready_pods:
            ready = serving = True  # its pod is Ready: the controller will write so
        use = ready or (include_terminating and serving and terminating)
        hostname = item.get("hostname") or None
        zone_hints, node_hints = _hints(item.get("hints"), obj)
        try:
            endpoint = Endpoint(
                address=address,
                port=number,
                hostname=hostname,
                zone=_checked(item.get("zone"), valid_zone_name, "zone", obj),
                node_name=_checked(item.get("nodeName"), valid_node_name, "nodeName", obj),
                zone_hints=zone_hints,
                node_hints=node_hints,
                ready=ready,
            )
        except ValueError:
            log.debug("ignoring bad address %r in EndpointSlice %s", address, _name(obj))
            continue
        (usable if use else unusable).append(endpoint)
        if not use and serving:
            serving_only.append(endpoint)
    return SliceEndpoints(normalize(usable), normalize(unusable), ports, normalize(serving_only))


def _checked(value: Any, valid: Any, what: str, obj: Mapping[str, Any]) -> str | None:
    if value is None or value == "":
        return None
    if valid(value):
        return str(value)
    log.debug("ignoring bad %s %r in EndpointSlice %s", what, value, _name(obj))
    return None


def _hints(hints: Any, obj: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """``hints.forZones`` and ``hints.forNodes`` names, or none at all when any part is
    not what the API accepts (validateHints: at most 8, no duplicates, valid names)."""
    if hints is None:
        return frozenset(), frozenset()
    found: list[frozenset[str]] = []
    for key, valid in (("forZones", valid_zone_name), ("forNodes", valid_node_name)):
        entries = hints.get(key) if isinstance(hints, Mapping) else ()
        if entries is None:
            entries = []
        names = [e.get("name") if isinstance(e, Mapping) else None for e in entries or ()]
        if (
            not isinstance(hints, Mapping)
            or not isinstance(entries, list)
            or len(names) > MAX_HINTS
            or len(set(map(str, names))) != len(names)
            or not all(valid(n) for n in names)
        ):
            log.debug("ignoring bad hints %r in EndpointSlice %s", hints, _name(obj))
            return frozenset(), frozenset()
        found.append(frozenset(str(n) for n in names))
    return found[0], found[1]


def _tcp_ports(obj: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    for entry in obj.get("ports") or ():
        if not isinstance(entry, Mapping) or entry.get("protocol", "TCP") != "TCP":
            continue
        number = entry.get("port")
        if isinstance(number, int) and 1 <= number <= 65535:
            found.append((str(entry.get("name") or ""), number))
    return tuple(found)


def numeric_port(
    ports: tuple[tuple[str, int], ...], target: int, names: frozenset[str]
) -> int | None:
    """The port to dial a slice's endpoints at for a numeric target: never one the slice
    does not list when it lists ports. The target if listed (or if the slice lists no
    ports, as hand-made slices may); else the number of the slice's port named as the
    target's number is named in other slices (the controller writes one slice per
    mapping when a named targetPort changes number in a rollout); else none."""
    if not ports or any(number == target for _, number in ports):
        return target
    for name, number in ports:
        if name and name in names:
            return number
    return None


def port_mismatch(
    port: int | str | None, slice_ports: Iterable[tuple[tuple[str, int], ...]]
) -> tuple[tuple[str, int], ...]:
    """The pods' ports when a numeric target ``port`` is none of them (the Service port
    used instead of the pods' port, the usual migration slip), else ``()``. Slices that
    list no ports (hand-made) say nothing."""
    if not isinstance(port, int):
        return ()
    served = sorted({p for ports in slice_ports for p in ports})
    if not served or any(number == port for _, number in served):
        return ()
    return tuple(served)


def suggested_port(served: tuple[tuple[str, int], ...]) -> str:
    """The target port to use instead: the name when the pods serve one named port,
    else the number when they serve one port, else the first name."""
    names = sorted({name for name, _ in served if name})
    numbers = sorted({number for _, number in served})
    if len(names) == 1:
        return names[0]
    if len(numbers) == 1:
        return str(numbers[0])
    return names[0] if names else str(numbers[0])


def _port_number(obj: Mapping[str, Any], port: int | str) -> int | None:
    if isinstance(port, int):
        return port
    for entry in obj.get("ports") or ():
        if (
            isinstance(entry, Mapping)
            and (entry.get("name") or "") == port
            and entry.get("protocol", "TCP") == "TCP"
        ):
            number = entry.get("port")
            if isinstance(number, int) and 1 <= number <= 65535:
                return number
    log.debug("EndpointSlice %s has no TCP port named %r", _name(obj), port)
    return None


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("name", "?"))


def first_port(objs: Iterable[Mapping[str, Any]]) -> str | None:
    """The name ("" when unnamed) of a Service's first port, for a target without one.

    kuberesolver takes the first port of each Endpoints subset. Here "first" is the
    first TCP entry of a slice's ``ports`` (the EndpointSlice controller writes them in
    the Service's ``spec.ports`` order), taken from the slice whose name sorts first
    among those with a TCP port, so the choice does not depend on the order slices
    arrive in. The name, not the number, is chosen: every slice then contributes its
    endpoints at its own number for that name (a named ``targetPort`` can map to
    different container ports per slice). ``None`` when no slice has a TCP port.
    """
    for obj in sorted(objs, key=_name):
        for entry in obj.get("ports") or ():
            if isinstance(entry, Mapping) and entry.get("protocol", "TCP") == "TCP":
                name = entry.get("name") or ""
                return name if isinstance(name, str) else None
    return None


class SliceSet:
    """All slices of one Service, merged by slice name.

    ``port=None`` follows the Service's :func:`first_port` (re-chosen on every change).
    Not thread-safe: one watcher thread owns it.
    """

    def __init__(self, port: int | str | None, *, include_terminating: bool = False) -> None:
        self._port = port
        self._include_terminating = include_terminating
        self._slices: dict[str, SliceEndpoints] = {}
        self._objs: dict[str, Mapping[str, Any]] = {}
        self._names: frozenset[str] = frozenset()  # numeric port: other slices' names
        self._first: str | None = None  # no port: the Service's first port
        self._ready_pods: ReadyPairs = frozenset()

    def set_ready_pods(self, pairs: ReadyPairs) -> None:
        """The Ready pods (see :func:`read_slice`); the slices naming a pod whose
        readiness changed are read again."""
        changed = {uid for uid, _ in pairs ^ self._ready_pods}
        self._ready_pods = pairs
        for key, obj in list(self._objs.items()):
            if any(
                isinstance(item, Mapping) and pod_uid(item) in changed
                for item in obj.get("endpoints") or ()
            ):
                self._read(key)

    def reset(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """Replace everything with a fresh list's items."""
        self._slices = {}
        self._objs = {}
        for obj in objs:
            self.upsert(obj)

    def upsert(self, obj: Mapping[str, Any]) -> None:
        """An ADDED or MODIFIED slice."""
        self._objs[_name(obj)] = obj
        self._read(_name(obj))

    def delete(self, obj: Mapping[str, Any]) -> None:
        """A DELETED slice: only its own endpoints go."""
        self._slices.pop(_name(obj), None)
        self._objs.pop(_name(obj), None)
        self._read(None)

    def _read(self, name: str | None) -> None:
        """Read slice ``name``; every slice again when what decides the other slices'
        ports changed: for a numeric port, the names slices give that number; for no
        port, the Service's :func:`first_port`."""
        port = self._port
        if port is None:
            first = first_port(self._objs.values())
            if first != self._first:
                self._first = first
                name = None
            if first is None:
                self._slices = {key: SliceEndpoints((), ()) for key in self._objs}
                return
            port = first
        elif isinstance(port, int):
            names = frozenset(
                n
                for obj in self._objs.values()
                for n, number in _tcp_ports(obj)
                if number == self._port and n
            )
            if names != self._names:
                self._names = names
                name = None
        todo = [name] if name is not None else list(self._objs)
        for key in todo:
            self._slices[key] = read_slice(
                self._objs[key],
                port,
                include_terminating=self._include_terminating,
                names=self._names,
                ready_pods=self._ready_pods,
            )

    def port_mismatch(self) -> tuple[tuple[str, int], ...]:
        """See :func:`port_mismatch`, over every slice that has endpoints."""
        return port_mismatch(
            self._port,
            (s.ports for key, s in self._slices.items() if self._objs[key].get("endpoints")),
        )

    def usable(self) -> tuple[Endpoint, ...]:
        """The endpoints to send calls to, over all slices."""
        return normalize(ep for s in self._slices.values() for ep in s.usable)

    def view(self) -> ApiEndpoints:
        """The ready endpoints, with every listed one and the serving not-ready ones."""
        ready = self.usable()
        listed = normalize(ep for s in self._slices.values() for ep in (*s.usable, *s.unusable))
        keys = set(ready)
        serving = normalize(ep for s in self._slices.values() for ep in s.serving if ep not in keys)
        return ApiEndpoints(ready, listed, serving)
