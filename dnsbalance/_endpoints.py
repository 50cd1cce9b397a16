"""The endpoint model and the pure diff between two endpoint sets."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One ready backend: an IP address and port, as DNS or the API publishes it.

    ``ttl`` (seconds, from DNS; ``None`` from the API) is informational and not
    part of equality, so a TTL counting down in a cache is never a change.

    The topology fields come from an EndpointSlice only (DNS carries none) and, like
    ``ttl``, take no part in equality, hashing or sorting: the merge compares DNS and
    the API by address and port, and a hint that changes is no endpoint change.
    ``zone``/``node_name`` are the endpoint's ``zone`` and ``nodeName``;
    ``zone_hints``/``node_hints`` the names in ``hints.forZones`` and
    ``hints.forNodes``; ``ready`` its ``ready`` condition (``False`` only for a
    terminating endpoint used by ``include_terminating``). See
    :mod:`dnsbalance._kube.topology` for what they decide.
    """

    address: str
    port: int
    hostname: str | None = None
    ttl: int | None = field(default=None, compare=False)
    zone: str | None = field(default=None, compare=False)
    node_name: str | None = field(default=None, compare=False)
    zone_hints: frozenset[str] = field(default=frozenset(), compare=False)
    node_hints: frozenset[str] = field(default=frozenset(), compare=False)
    ready: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        # Every endpoint is an IP address: whatever DNS or the API sent, a name or a
        # number never reaches grpc as one.
        if not isinstance(self.address, str):
            raise ValueError(f"Endpoint address must be an IP address string, not {self.address!r}")
        try:
            _address_order(self.address)
        except ValueError:
            raise ValueError(f"Endpoint address {self.address!r} is not an IP address") from None

    @property
    def version(self) -> int:
        """4 or 6: the address is an IP (checked when made), and only IPv6 has a colon
        (read per endpoint per rebuild: ``ipaddress`` took ~70 us each)."""
        return 6 if ":" in self.address else 4

    @property
    def hostport(self) -> str:
        """``10.0.0.1:8000`` or ``[fd00::1]:8000``."""
        return host_port(self.address, self.port)

    def sort_key(self) -> tuple[int, int, int, str]:
        version, number = _address_order(self.address)
        return (version, number, self.port, self.hostname or "")

    def __str__(self) -> str:
        return self.hostport if self.hostname is None else f"{self.hostport} ({self.hostname})"


def host_port(address: object, port: int) -> str:
    """``10.0.0.1:8000`` or ``[fd00::1]:8000``: the one way dnsbalance writes an address
    with its port (IPv6 in brackets, as grpc targets and resolv.conf readers expect)."""
    text = str(address)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


Endpoints = tuple[Endpoint, ...]
"""An endpoint set as every stage passes it on: normalized (sorted, no duplicates)."""


@functools.lru_cache(maxsize=8192)
def _address_order(address: str) -> tuple[int, int]:
    """(IP version, numeric value): pollers sort the same addresses every few seconds."""
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def normalize(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """Sorted (IPv4 before IPv6, numerically), duplicates dropped keeping the lowest TTL."""
    best: dict[Endpoint, Endpoint] = {}
    for ep in endpoints:
        seen = best.get(ep)
        if seen is None or (ep.ttl is not None and (seen.ttl is None or ep.ttl < seen.ttl)):
            best[ep] = ep
    return tuple(sorted(best.values(), key=Endpoint.sort_key))


@dataclass(frozen=True)
class Change:
    """A real change between two endpoint sets (both normalized)."""

    old: tuple[Endpoint, ...]
    new: tuple[Endpoint, ...]
    added: tuple[Endpoint, ...]
    removed: tuple[Endpoint, ...]

    def __str__(self) -> str:
        counts = f"+{len(self.added)} -{len(self.removed)}"
        return f"{len(self.old)} -> {len(self.new)} endpoints ({counts})"


def diff(old: Iterable[Endpoint], new: Iterable[Endpoint]) -> Change | None:
    """The change from ``old`` to ``new``, or ``None`` when they hold the same endpoints."""
    if isinstance(old, tuple) and isinstance(new, tuple) and old == new:
        return None  # the common case of every unchanged poll, without sorting
    old_t, new_t = normalize(old), normalize(new)
    if old_t == new_t:
        return None
    old_s, new_s = set(old_t), set(new_t)
    return Change(
        old=old_t,
        new=new_t,
        added=tuple(ep for ep in new_t if ep not in old_s),
        removed=tuple(ep for ep in old_t if ep not in new_s),
    )


def dashed_ip(address: str) -> str:
    """CoreDNS's DNS label for an endpoint without a hostname: ``10.244.1.5`` ->
    ``10-244-1-5``; IPv6 uses the compressed text, ``fd00::1`` -> ``fd00--1`` (a
    trailing dash gets a ``0``: ``fd00::`` -> ``fd00--0``)."""
    text = str(ipaddress.ip_address(address))
    if "." in text:
        return text.replace(".", "-")
    dashed = text.replace(":", "-")
    return dashed + "0" if dashed.endswith("-") else dashed


@dataclass(frozen=True)
class Discrepancy:
    """DNS and the API disagree about ``endpoint`` since ``since`` (monotonic seconds).

    ``kind``: ``"api-only"`` (the API calls it ready, DNS does not list it),
    ``"dns-only"`` (DNS lists it, the API does not call it ready) or ``"panic"`` (not
    ready, used anyway because no endpoint is: panic mode).
    """

    endpoint: Endpoint
    kind: Literal["api-only", "dns-only", "panic"]
    since: float

    def __str__(self) -> str:
        if self.kind == "api-only":
            return f"{self.endpoint}: ready in the API but not in DNS"
        if self.kind == "panic":
            return f"{self.endpoint}: not ready in the API, used in panic mode (none is ready)"
        return f"{self.endpoint}: in DNS but not ready in the API"
