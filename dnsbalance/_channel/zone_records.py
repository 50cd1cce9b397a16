"""The records of one in-memory zone and how a DNS query is answered from them: pure.

:class:`~dnsbalance._channel.zone_server.ZoneResponder` holds a :class:`Snapshot` and
does the sockets; what it answers (see its module documentation) is decided here.

A name whose records are only addresses (the local DNS's channel names) can be held
as an :class:`AddressNode`: its answers' records are written to the wire once, when
it is made, and a plain A or AAAA question for it (no EDNS) is answered from them by
:func:`quick_reply` without dnspython; its RRsets are made only if another question
needs them. For 1000 addresses dnspython took ~80 ms to build the RRset and ~45 ms
to render each answer; the wire records take ~0.3 ms.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
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
    quick: Mapping[bytes, AddressNode] = field(default_factory=dict)
    """The AddressNodes by their names' lower-case wire form (see :func:`quick_reply`)."""
    soa_wire: bytes = b""  # the SOA as one Authority record, its names uncompressed


_WIRE_TYPES = {dns.rdatatype.A: socket.AF_INET, dns.rdatatype.AAAA: socket.AF_INET6}


class AddressNode(Mapping[dns.rdatatype.RdataType, dns.rrset.RRset]):
    """The A and AAAA records of one name, from address strings: a :data:`Node`.

    ``wire`` holds each type's answer records as they go on the wire (the owner name
    a pointer to the question's); the dnspython RRsets are made on first use.
    """

    def __init__(
        self,
        name: dns.name.Name,
        ttl: int,
        addresses: Mapping[dns.rdatatype.RdataType, Sequence[str]],
    ) -> None:
        self.name = name
        self.ttl = ttl
        self._texts = {t: tuple(sorted(set(a))) for t, a in addresses.items() if a}
        self.wire: dict[int, tuple[int, bytes]] = {}
        for rdtype, texts in self._texts.items():
            family = _WIRE_TYPES[rdtype]  # KeyError: only A and AAAA
            size = 4 if family == socket.AF_INET else 16
            head = struct.pack("!HHHIH", 0xC00C, rdtype, dns.rdataclass.IN, ttl, size)
            packed = sorted({socket.inet_pton(family, text) for text in texts})
            self.wire[int(rdtype)] = (len(packed), b"".join(head + p for p in packed))
        self._rrsets: dict[dns.rdatatype.RdataType, dns.rrset.RRset] = {}

    def __getitem__(self, rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset:
        rrset = self._rrsets.get(rdtype)
        if rrset is None:
            texts = self._texts[rdtype]  # KeyError for a type the name lacks
            rrset = dns.rrset.from_text_list(self.name, self.ttl, dns.rdataclass.IN, rdtype, texts)
            self._rrsets[rdtype] = rrset  # made twice in a race at worst: same records
        return rrset

    def __iter__(self) -> Iterator[dns.rdatatype.RdataType]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)


def check_rrset(origin: dns.name.Name, rrset: dns.rrset.RRset) -> None:
    """ValueError for a name outside the zone, a class other than IN, SOA/NS at the apex."""
    if not rrset.name.is_absolute() or not rrset.name.is_subdomain(origin):
        raise ValueError(f"{rrset.name} is not in zone {origin}")
    if rrset.rdclass != dns.rdataclass.IN:
        raise ValueError(f"{rrset.name}: only class IN is served")
    if rrset.name == origin and rrset.rdtype in (dns.rdatatype.SOA, dns.rdatatype.NS):
        raise ValueError("the zone's SOA and NS are not replaceable")


def checked_nodes(
    origin: dns.name.Name, nodes: Mapping[dns.name.Name, Node]
) -> Mapping[dns.name.Name, Node]:
    """``nodes``; ValueError for a whole node's name outside the zone, or the apex."""
    for name in nodes:
        if not name.is_absolute() or not name.is_subdomain(origin) or name == origin:
            raise ValueError(f"{name} is not a name below zone {origin}")
    return nodes


@functools.lru_cache(maxsize=64)
def ns_address(origin: dns.name.Name, ttl: int, rdtype: str, host: str) -> dns.rrset.RRset:
    """The A/AAAA of ``ns.dns.<zone>`` (read once: every replace needs it)."""
    return dns.rrset.from_text(dns.name.from_text("ns.dns", origin), ttl, "IN", rdtype, host)


@functools.lru_cache(maxsize=64)
def _apex(
    origin: dns.name.Name, ttl: int
) -> tuple[dns.name.Name, dns.rdata.Rdata, dns.rrset.RRset]:
    """The zone's NS name, SOA record (serial 0) and NS RRset, read from text once:
    every replace needs them, and only the SOA's serial changes."""
    ns_name = dns.name.from_text("ns.dns", origin)
    soa = dns.rdata.from_text("IN", "SOA", f"{ns_name} hostmaster.{origin} 0 7200 1800 86400 {ttl}")
    ns = dns.rrset.from_text(origin, ttl, "IN", "NS", ns_name.to_text())
    return ns_name, soa, ns


def build_snapshot(
    origin: dns.name.Name,
    ttl: int,
    serial: int,
    user: Mapping[dns.name.Name, Node],
    ns_address: dns.rrset.RRset | None,
) -> Snapshot:
    """A new snapshot from the user's records plus SOA, NS and the NS address."""
    ns_name, soa_template, ns = _apex(origin, ttl)
    soa = dns.rrset.from_rdata(origin, ttl, soa_template.replace(serial=serial))
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
    quick = {
        name.to_digestable(): node for name, node in user.items() if isinstance(node, AddressNode)
    }
    soa_wire = origin.to_digestable() + struct.pack("!HHI", soa.rdtype, soa.rdclass, soa.ttl)
    rdata = soa[0].to_wire()
    soa_wire += struct.pack("!H", len(rdata)) + rdata
    return Snapshot(
        MappingProxyType(dict(user)),
        MappingProxyType(nodes),
        frozenset(names),
        soa,
        MappingProxyType(quick),
        soa_wire,
    )


_HEADER = struct.Struct("!HHHHHH")
_OPCODE_MASK = 0x7800
_QUICK_TYPES = frozenset({int(dns.rdatatype.A), int(dns.rdatatype.AAAA)})


def quick_reply(wire: bytes, snapshot: Snapshot, *, tcp: bool) -> bytes | None:
    """The reply to a plain A or AAAA question for an :class:`AddressNode`'s name, or
    None (then :func:`answer` decides): the reply :func:`answer` and :func:`render`
    give, from the records written when the node was made.

    Plain: a standard query (QR clear, opcode QUERY), one question of class IN, no
    other record (so no EDNS: the answer is limited to 512 bytes over UDP).
    """
    if len(wire) < 17:
        return None
    msg_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    if flags & (dns.flags.QR | _OPCODE_MASK) or (qdcount, ancount, nscount, arcount) != (
        1,
        0,
        0,
        0,
    ):
        return None
    end = 12
    for _ in range(128):  # labels; a name has at most 127
        length = wire[end] if end < len(wire) else 0xFF
        if length == 0 or length > 63:
            break
        end += 1 + length
    if end >= len(wire) or wire[end] != 0 or len(wire) != end + 5:
        return None  # a compressed, bad or cut name, or bytes after the question
    qname = wire[12 : end + 1].lower()
    qtype, qclass = struct.unpack_from("!HH", wire, end + 1)
    node = snapshot.quick.get(qname)
    if node is None or qtype not in _QUICK_TYPES or qclass != dns.rdataclass.IN:
        return None
    question = wire[12 : end + 5]
    reply_flags = dns.flags.QR | dns.flags.AA | (flags & dns.flags.RD)
    count, records = node.wire.get(qtype, (0, b""))
    authority = b"" if count else snapshot.soa_wire
    limit = TCP_LIMIT if tcp else UDP_LIMIT
    if 12 + len(question) + len(records) + len(authority) > limit:
        return _HEADER.pack(msg_id, reply_flags | dns.flags.TC, 1, 0, 0, 0) + question
    head = _HEADER.pack(msg_id, reply_flags, 1, count, 0 if count else 1, 0)
    return head + question + records + authority


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
