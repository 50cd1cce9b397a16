"""What to ask cluster DNS and how to read the answers: the *lookup plan*.

A plan is a generator that yields DNS questions and receives the answers. It does
no I/O: the sync driver (:mod:`dnsbalance._dns.sync`) and the asyncio driver
(:mod:`dnsbalance._dns.aio`) ask the questions, the way dnspython's own
``_Resolution`` is shared by its two resolvers.

- Numeric port: A and AAAA of ``<svc>.<ns>.svc.<domain>``.
- Named port: SRV ``_<name>._tcp.<svc>.<ns>.svc.<domain>``; target addresses come
  from the Additional section when present, else from A/AAAA queries.
- NXDOMAIN is an empty answer (a headless Service with no ready endpoint);
  NODATA for AAAA is normal.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from dataclasses import dataclass, field

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from dns.rdtypes.IN.SRV import SRV

from dnsbalance._endpoints import Endpoint, dashed_ip, normalize
from dnsbalance._exceptions import TargetError
from dnsbalance._target import Target


@dataclass(frozen=True)
class Question:
    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Pollers look questions up every few seconds; a Name hashes label by label.
        object.__setattr__(self, "_hash", hash((self.name, self.rdtype)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True)
class Addresses:
    """An A or AAAA answer read straight off the wire (:mod:`dnsbalance._dns.answer_cache`):
    its addresses, as dnspython writes them, and its lowest TTL."""

    addresses: tuple[str, ...]
    ttl: int


# The answer sent back into a plan: an Answer (rrset None for NODATA), the Addresses
# of an A/AAAA answer, or None for NXDOMAIN.
Reply = dns.resolver.Answer | Addresses | None
Plan = Generator[Question, Reply, tuple[Endpoint, ...]]
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


def lookup_plan(target: Target) -> Plan:
    """The questions that find ``target``'s ready endpoints, and how to read the answers."""
    name = _name(target.fqdn)
    if target.port is None:  # a kubernetes target without a port: only the API knows it
        raise TargetError(
            "DNS cannot tell a target's port: add a port or a port name",
            target=str(target),
            part="port",
        )
    if target.port_name is None:
        assert isinstance(target.port, int)
        return (yield from _address_plan(name, target.port, hostname=None))
    return (yield from _srv_plan(_name(target.srv_name), name))


@functools.lru_cache(maxsize=1024)
def _name(text: str) -> dns.name.Name:
    """Names are immutable; a poller asks about the same ones every few seconds."""
    return dns.name.from_text(text)


def _address_plan(name: dns.name.Name, port: int, *, hostname: str | None) -> Plan:
    found: list[Endpoint] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        reply = yield Question(name, rdtype)
        if reply is None:  # NXDOMAIN: the name has no records of any type
            break
        found.extend(_addresses(reply, port, hostname))
    return normalize(found)


def _addresses(
    reply: dns.resolver.Answer | Addresses, port: int, hostname: str | None
) -> list[Endpoint]:
    if isinstance(reply, Addresses):
        ttl = reply.ttl
        return [_endpoint(a, port, hostname, ttl) for a in reply.addresses]
    if reply.rrset is None:
        return []
    ttl = reply.rrset.ttl
    return [_endpoint(rd.address, port, hostname, ttl) for rd in reply]


@functools.lru_cache(maxsize=8192)
def _endpoint(address: str, port: int, hostname: str | None, ttl: int | None) -> Endpoint:
    """Endpoints are immutable, and a poller reads the same ones every few seconds:
    making 1000 anew (a dataclass each, its address checked) took 2-4 ms of a poll
    that finds one of them changed. Keyed by every field an answer gives, TTL and
    hostname included, though they take no part in an Endpoint's equality."""
    return Endpoint(address=address, port=port, hostname=hostname, ttl=ttl)


def _srv_plan(srv_name: dns.name.Name, service_name: dns.name.Name) -> Plan:
    reply = yield Question(srv_name, dns.rdatatype.SRV)
    if not isinstance(reply, dns.resolver.Answer) or reply.rrset is None:
        return ()  # NXDOMAIN or NODATA (Addresses never answer an SRV question)
    srv_ttl = reply.rrset.ttl
    # Target addresses that came in the Additional section, by name.
    extra: dict[dns.name.Name, list[tuple[str, int]]] = {}
    for rrset in reply.response.additional:
        # Class IN only: an "A" of class CH is a Chaosnet address (an int), of HS or
        # an unknown class generic rdata; neither is an IP address.
        if rrset.rdclass == dns.rdataclass.IN and rrset.rdtype in _ADDRESS_TYPES:
            extra.setdefault(rrset.name, []).extend((rd.address, rrset.ttl) for rd in rrset)
    records = [rd for rd in reply if isinstance(rd, SRV) and rd.port != 0]
    missing = [rd for rd in records if rd.target not in extra]
    if missing:
        # No Additional records (BIND leaves them out of large answers, some servers
        # always do). One A/AAAA lookup of the Service name gives every ready address;
        # a target named by the dashed form of one of them (CoreDNS's name for a pod
        # without hostname) is that address. Only targets with a real hostname are
        # looked up one by one, so 1000 endpoints cost 3 queries, not 2001.
        by_dashed = {
            dashed_ip(ep.address): ep
            for ep in (yield from _address_plan(service_name, 0, hostname=None))
        }
        for rd in missing:
            label = _hostname(rd.target, service_name)
            known = by_dashed.get(label) if label is not None else None
            if known is not None:
                extra[rd.target] = [(known.address, known.ttl or srv_ttl)]
            else:
                extra[rd.target] = [
                    (ep.address, ep.ttl or srv_ttl)
                    for ep in (yield from _address_plan(rd.target, rd.port, hostname=None))
                ]
    found: list[Endpoint] = []
    for rd in records:
        hostname = _hostname(rd.target, service_name)
        for address, ttl in extra[rd.target]:
            found.append(
                _endpoint(
                    address,
                    rd.port,
                    None if hostname == dashed_ip(address) else hostname,
                    min(ttl, srv_ttl),
                )
            )
    return normalize(found)


def _hostname(target: dns.name.Name, service_name: dns.name.Name) -> str | None:
    """The pod hostname of an SRV target ``<host>.<svc>.<ns>.svc.<domain>``, if it is one."""
    if not target.is_subdomain(service_name) or target == service_name:
        return None
    label = target.relativize(service_name).labels[0]
    return label.decode("ascii", errors="replace").lower()
