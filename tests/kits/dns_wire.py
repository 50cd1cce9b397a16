"""Building DNS responses byte by byte, good and hostile, for the answer-reading tests."""

from __future__ import annotations

import struct

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

A, AAAA, SRV, SOA, TXT, OPT, TSIG, CNAME, NS = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.SRV,
    dns.rdatatype.SOA,
    dns.rdatatype.TXT,
    dns.rdatatype.OPT,
    dns.rdatatype.TSIG,
    dns.rdatatype.CNAME,
    dns.rdatatype.NS,
)
IN, CH, HS = dns.rdataclass.IN, dns.rdataclass.CH, dns.rdataclass.HS
QR, AA, TC = 0x8000, 0x0400, 0x0200
POINTER_TO_QUESTION = b"\xc0\x0c"


def name(text: str) -> bytes:
    """``text`` in uncompressed wire form, case kept."""
    return dns.name.from_text(text).to_wire()


def rr(owner: bytes, rtype: int, rdata: bytes, *, rclass: int = IN, ttl: int = 5) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def srv_rdata(port: int, target: bytes, *, priority: int = 0, weight: int = 10) -> bytes:
    return struct.pack("!HHH", priority, weight, port) + target


def soa_rdata() -> bytes:
    return name("ns.dns.cluster.local") + name("hostmaster.cluster.local") + bytes(20)


def message(
    query: bytes,
    *,
    answer: list[bytes] = (),  # type: ignore[assignment]
    authority: list[bytes] = (),  # type: ignore[assignment]
    additional: list[bytes] = (),  # type: ignore[assignment]
    rcode: int = 0,
    flags: int = QR | AA,
    counts: tuple[int, int, int, int] | None = None,
    question: bytes | None = None,
    query_id: bytes | None = None,
) -> bytes:
    """A response to ``query`` (its ID and question unless given), RD copied, with
    these raw records. ``counts`` overrides the header's section counts."""
    rd = int.from_bytes(query[2:4], "big") & 0x0100
    if question is None:
        question = query[12 : _question_end(query)]
    qd, an, ns, ar = counts or (1, len(answer), len(authority), len(additional))
    header = (query_id or query[:2]) + struct.pack("!HHHHH", flags | rd | rcode, qd, an, ns, ar)
    return header + question + b"".join(answer) + b"".join(authority) + b"".join(additional)


def opt(
    *, owner: bytes = b"\x00", payload: int = 1232, ext_rcode: int = 0, options: bytes = b""
) -> bytes:
    return owner + struct.pack("!HHIH", OPT, payload, ext_rcode << 24, len(options)) + options


def rendered(response: dns.message.Message) -> bytes:
    return response.to_wire()


def _question_end(query: bytes) -> int:
    pos = 12
    while query[pos]:
        pos += 1 + query[pos]
    return pos + 5


def position_after_question(query: bytes) -> int:
    return _question_end(query)
