"""The records of one in-memory zone and how a DNS query is answered from them: pure.

:class:`~dnsbalance._channel.zone_server.ZoneResponder` holds a :class:`Snapshot` and
does the sockets; what it answers (see its module documentation) is decided here.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

OUR_PAYLOAD = 1232  # EDNS payload size we advertise
UDP_LIMIT = 512
TCP_LIMIT = 65535

Node = Mapping[dns.rdatatype.RdataType, dns.rrset.RRset]


@dataclass(frozen=True)
class Snapshot:
    """Immutable view of the zone: never mutated once published."""

    user: Mapping[dns.name.Name, Node]  # what replace() installed
    nodes: Mapping[dns.name.Name, Node]  # user + SOA/NS/ns.dns address
    names: frozenset[dns.name.Name]  # every existing name, empty non-terminals included
    soa: dns.rrset.RRset


def check_rrset(origin: dns.name.Name, rrset: dns.rrset.RRset) -> None:
    """ValueError for a name outside the zone, a class other than IN, SOA/NS at the apex."""
    if not rrset.name.is_absolute() or not rrset.name.is_subdomain(origin):
        raise ValueError(f"{rrset.name} is not in zone {origin}")
    if rrset.rdclass != dns.rdataclass.IN:
        raise ValueError(f"{rrset.name}: only class IN is served")
    if rrset.name == origin and rrset.rdtype in (dns.rdatatype.SOA, dns.rdatatype.NS):
        raise ValueError("the zone's SOA and NS are not replaceable")


def build_snapshot(
    origin: dns.name.Name,
    ttl: int,
    serial: int,
    user: Mapping[dns.name.Name, Node],
    ns_address: dns.rrset.RRset | None,
) -> Snapshot:
    """A new snapshot from the user's records plus SOA, NS and the NS address."""
    ns_name = dns.name.from_text("ns.dns", origin)
    soa = dns.rrset.from_text(
        origin,
        ttl,
        "IN",
        "SOA",
        f"{ns_name} hostmaster.{origin} {serial} 7200 1800 86400 {ttl}",
    )
    ns = dns.rrset.from_text(origin, ttl, "IN", "NS", ns_name.to_text())
    nodes: dict[dns.name.Name, Node] = dict(user)
    nodes[origin] = MappingProxyType(
        {**user.get(origin, {}), dns.rdatatype.SOA: soa, dns.rdatatype.NS: ns}
    )
    if ns_address is not None and ns_name not in user:
        nodes[ns_name] = MappingProxyType({ns_address.rdtype: ns_address})
    names: set[dns.name.Name] = set()
    for name in nodes:
        # Walk up to the apex, so empty non-terminals exist too.
        for _ in range(len(name) - len(origin) + 1):
            if name in names:
                break
            names.add(name)
            name = name.parent()
    return Snapshot(MappingProxyType(dict(user)), MappingProxyType(nodes), frozenset(names), soa)


def answer(
    response: dns.message.Message,
    snapshot: Snapshot,
    origin: dns.name.Name,
    question: dns.rrset.RRset,
    *,
    with_additional: bool,
) -> None:
    """Fill ``response`` for ``question`` from ``snapshot`` (rcode, flags, sections)."""
    qname, rdtype, rdclass = question.name, question.rdtype, question.rdclass
    if rdclass != dns.rdataclass.IN or not qname.is_subdomain(origin):
        response.set_rcode(dns.rcode.REFUSED)
        return
    if rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        response.set_rcode(dns.rcode.NOTIMP)
        return
    response.flags |= dns.flags.AA
    node = snapshot.nodes.get(qname, {})
    if rdtype == dns.rdatatype.ANY:
        found = list(node.values())
    else:
        found = [node[rdtype]] if rdtype in node else []
    if found:
        response.answer.extend(found)
        if with_additional:
            for rrset in found:
                _add_additional(response, snapshot, rrset)
        return
    if qname not in snapshot.names:
        response.set_rcode(dns.rcode.NXDOMAIN)
    response.authority.append(snapshot.soa)


def _add_additional(
    response: dns.message.Message, snapshot: Snapshot, rrset: dns.rrset.RRset
) -> None:
    if rrset.rdtype not in (dns.rdatatype.SRV, dns.rdatatype.NS):
        return
    seen: set[dns.name.Name] = set()
    for rdata in rrset:
        target: dns.name.Name = rdata.target
        if target in seen:
            continue
        seen.add(target)
        node = snapshot.nodes.get(target, {})
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            if rdtype in node:
                response.additional.append(node[rdtype])


def render(response: dns.message.Message, limit: int) -> bytes:
    """Wire format within ``limit``: Additional trimmed first, else TC and question only."""
    wire = response.to_wire(max_size=limit, prefer_truncation=True)
    if wire[2] & (dns.flags.TC >> 8):
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        wire = response.to_wire(max_size=limit)
    return wire


def formerr(wire: bytes) -> bytes | None:
    """FORMERR for a message whose header is readable; None otherwise (or for a response)."""
    if len(wire) < 12:
        return None
    msg_id, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    opcode_and_rd = flags & (0x7800 | dns.flags.RD)
    return struct.pack(
        "!HHHHHH", msg_id, dns.flags.QR | opcode_and_rd | dns.rcode.FORMERR, 0, 0, 0, 0
    )
