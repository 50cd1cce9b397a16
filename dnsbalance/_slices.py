"""What a Service's EndpointSlices say: pure reading and merging, no I/O.

A Service has one or more slices (at most 100 endpoints each, one per address
family in dual-stack), joined by the label ``kubernetes.io/service-name``.
A target without a port (``port=None``) uses the Service's first port, see
:func:`first_port`. They
are merged by slice name, and a DELETED slice takes only its own endpoints with
it: the "last slice wins" bug class (kuberesolver #66) cannot happen here.

Readiness follows the API: ``ready`` (nil means true) endpoints are used.
Terminating endpoints are never ready; with ``include_terminating`` those still
``serving`` are used too (for long drains). FQDN slices are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._endpoints import Endpoint, normalize

__all__ = ["SERVICE_NAME_LABEL", "SliceSet", "first_port", "read_slice"]

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class SliceEndpoints:
    """One slice's endpoints for the target's port: those to use, and the rest."""

    usable: tuple[Endpoint, ...]
    unusable: tuple[Endpoint, ...]


def read_slice(
    obj: Mapping[str, Any], port: int | str, *, include_terminating: bool = False
) -> SliceEndpoints:
    """Read one EndpointSlice (a JSON dict, camelCase as the API sends it).

    ``port``: a number is used as given; a name is looked up in the slice's
    ``ports`` (a slice without it contributes nothing).
    """
    address_type = obj.get("addressType")
    if address_type not in ("IPv4", "IPv6"):
        log.debug("ignoring EndpointSlice %s of addressType %s", _name(obj), address_type)
        return SliceEndpoints((), ())
    number = _port_number(obj, port)
    if number is None:
        return SliceEndpoints((), ())
    usable: list[Endpoint] = []
    unusable: list[Endpoint] = []
    for item in obj.get("endpoints") or ():
        if not isinstance(item, Mapping):
            continue
        conditions = item.get("conditions") or {}
        ready = conditions.get("ready") is not False
        serving = conditions.get("serving") is not False
        terminating = conditions.get("terminating") is True
        use = (ready and not terminating) or (include_terminating and serving and terminating)
        hostname = item.get("hostname") or None
        for address in item.get("addresses") or ():
            if not isinstance(address, str):
                continue
            try:
                endpoint = Endpoint(address=address, port=number, hostname=hostname)
                endpoint.sort_key()  # a valid IP address
            except ValueError:
                log.debug("ignoring bad address %r in EndpointSlice %s", address, _name(obj))
                continue
            (usable if use else unusable).append(endpoint)
    return SliceEndpoints(normalize(usable), normalize(unusable))


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
        self._raw: dict[str, Mapping[str, Any]] = {}  # port None only
        self._first: str | None = None

    def reset(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """Replace everything with a fresh list's items."""
        self._slices = {}
        self._raw = {}
        for obj in objs:
            self.upsert(obj)

    def upsert(self, obj: Mapping[str, Any]) -> None:
        """An ADDED or MODIFIED slice."""
        if self._port is None:
            self._raw[_name(obj)] = obj
            if self._rechoose():
                return
        port = self._port if self._port is not None else self._first
        if port is None:
            self._slices[_name(obj)] = SliceEndpoints((), ())
            return
        self._slices[_name(obj)] = read_slice(
            obj, port, include_terminating=self._include_terminating
        )

    def delete(self, obj: Mapping[str, Any]) -> None:
        """A DELETED slice: only its own endpoints go."""
        self._slices.pop(_name(obj), None)
        if self._port is None:
            self._raw.pop(_name(obj), None)
            self._rechoose()

    def _rechoose(self) -> bool:
        """Port None: choose the first port again; re-read every slice (True) when it
        changed."""
        first = first_port(self._raw.values())
        if first == self._first:
            return False
        self._first = first
        self._slices = {
            name: SliceEndpoints((), ())
            if first is None
            else read_slice(obj, first, include_terminating=self._include_terminating)
            for name, obj in self._raw.items()
        }
        return True

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._slices))

    def usable(self) -> tuple[Endpoint, ...]:
        """The endpoints to send calls to, over all slices."""
        return normalize(ep for s in self._slices.values() for ep in s.usable)

    def unusable(self) -> tuple[Endpoint, ...]:
        """Endpoints the API knows but says not to use (not ready, terminating)."""
        usable = set(self.usable())
        return normalize(ep for s in self._slices.values() for ep in s.unusable if ep not in usable)
