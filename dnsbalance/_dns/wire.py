"""Reading DNS answers straight off the wire, as far as discovery needs.

dnspython parses a whole message into objects: about 0.3 ms for three A records,
40 ms for a thousand. A poller only needs to know whether an answer is the last
one again, and for A/AAAA answers, which addresses it holds. :func:`scan` reads
that much, and only messages that ``dns.message.from_wire`` accepts and that
dnspython's resolver reads the same way; anything else is None and goes to
dnspython (the same bytes, or its resolver). It reads a *subset* of DNS, so that
every message it accepts, dnspython accepts:

- the header: a response (QR) to a standard query with our ID, TC clear, NOERROR,
  or NXDOMAIN with an empty answer section; our question echoed back byte for byte;
- the answer section: records of the question's name, type and class IN only
  (A of 4 bytes, AAAA of 16, SRV with a well-formed target); a CNAME, another
  owner, class or type is for dnspython to read;
- the Authority section: SOA and NS records of class IN, their names and sizes
  exact; the Additional section: A/AAAA of class IN and one OPT record (root owner,
  no options, no extended rcode);
- every name: labels of at most 63 bytes, at most 255 bytes in all, compression
  pointers only to a label of a name read before in this message (backwards, as
  dnspython demands), at most :data:`MAX_HOPS` deep; each label is decompressed
  once, so reading is linear in the message's size;
- record counts that match the records, and no byte after the last record.

A :class:`Scanned` answer's :attr:`~Scanned.fingerprint` leaves record order and
TTLs out (CoreDNS's ``loadbalance`` shuffles records and its cache counts TTLs
down), so two answers with equal fingerprints say the same thing to the lookup
plan. TCP framing (RFC 1035 4.2.2) is here too. ``tests/test_dns_differential.py``
holds all of this against dnspython.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

import dns.ipv6
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from .plan import Addresses

_HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_RR = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_QR, _TC = 0x8000, 0x0200
_A, _AAAA, _SRV, _OPT, _NS, _SOA = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.SRV,
    dns.rdatatype.OPT,
    dns.rdatatype.NS,
    dns.rdatatype.SOA,
)
_ADDRESS_SIZE: dict[int, int] = {_A: 4, _AAAA: 16}
_ADDRESS_TEXT: dict[int, Callable[[bytes], str]] = {
    _A: socket.inet_ntoa,  # dnspython's text for 4 bytes (its own is Python: 2x slower)
    _AAAA: dns.ipv6.inet_ntoa,  # dnspython's own: its IPv6 text is not glibc's in places
}
_IN = dns.rdataclass.IN
# An answer record as BIND and CoreDNS write it: owner a pointer to the question, then
# type and class IN (:func:`unordered_body`), and its rdata length.
_RECORD_HEAD: dict[int, bytes] = {t: struct.pack("!HHH", 0xC00C, t, _IN) for t in (_A, _AAAA)}
_RDLENGTH: dict[int, bytes] = {t: struct.pack("!H", n) for t, n in _ADDRESS_SIZE.items()}
_MAX_TTL = 0x7FFFFFFF  # dnspython reads a larger TTL as 0 (RFC 2181 8)
_ROOT = -1  # the key of the root name (see _Names)

MAX_HOPS = 8
"""Compression pointers followed for one name, at most (dnspython allows 16)."""

# (rcode, answer records as (type, rdata), Additional A/AAAA as (owner, type, rdata)).
# SRV rdata is its priority, weight and port, then the target in lowercase wire form.
Fingerprint = tuple[int, frozenset[tuple[int, bytes]], frozenset[tuple[bytes, int, bytes]]]


class Scanned(NamedTuple):
    """An answer as :func:`scan` read it (a NamedTuple: made on every poll)."""

    rcode: int
    qtype: int
    records: tuple[tuple[int, bytes, int], ...]
    """The answer section: (type, rdata, ttl)."""
    extra: frozenset[tuple[bytes, int, bytes]]
    """A/AAAA records of the Additional section: (owner, type, rdata)."""

    @property
    def fingerprint(self) -> Fingerprint:
        """What the lookup plan reads of this answer, without order and TTLs."""
        answer = frozenset((rtype, rdata) for rtype, rdata, _ in self.records)
        return self.rcode, answer, self.extra

    def addresses(self) -> Addresses | None:
        """An A/AAAA answer as the plan reads it (None: NXDOMAIN); dnspython writes
        the addresses the same way."""
        if self.qtype not in _ADDRESS_SIZE:
            raise ValueError("only A/AAAA answers are read to addresses")
        if self.rcode == dns.rcode.NXDOMAIN:
            return None
        ttl = min((ttl for _, _, ttl in self.records), default=0)
        texts = [_ADDRESS_TEXT[rtype](rdata) for rtype, rdata, _ in self.records]
        return Addresses(tuple(texts), ttl)


def truncated(response: bytes, query: bytes, question_end: int) -> bool:
    """Whether ``response`` is a truncated answer to ``query`` (TC set, its ID and
    question): dnspython asks such a question again over TCP and ignores other
    datagrams with TC set."""
    if len(response) < 12 or response[:2] != query[:2]:
        return False
    flags = int.from_bytes(response[2:4], "big")
    if not (flags & _QR and flags & _TC) or (flags >> 11) & 0x000F:
        return False  # not a response, not truncated, or not to a standard query
    return response[12:question_end] == query[12:question_end]


def scan(response: bytes, query: bytes, question_end: int | None = None) -> Scanned | None:
    """Read ``response`` to ``query`` (our own wire form, whose question section
    ends at ``question_end`` when known); None when it is not in the subset this
    module reads (see above) and dnspython must judge it."""
    try:
        return _scan(response, query, question_end)
    except (struct.error, IndexError, _NotRead):
        return None


def unordered_body(response: bytes, query: bytes, end: int) -> bytes | None:
    """``response`` after its ID with its answer records sorted and their TTLs left
    out, when every answer record is an A/AAAA of the question's type and class IN,
    owned by a pointer to the question (``C0 0C``), with rdata of the type's size, as
    BIND and CoreDNS write them; None for any other shape (and for a message too
    short for its count). ``end`` is where ``query``'s question ends.

    Two such bodies are equal only when the messages differ at most in the order of
    those records and their TTLs (the record count and size are fixed by the header
    and the question the body starts with), which :attr:`Scanned.fingerprint` leaves
    out too: once one of them scanned to a fingerprint, every other order of it
    would scan to the same one. So a poll recognises CoreDNS's shuffled answers
    (``loadbalance``) and BIND's rotated ones without a scan."""
    qtype = int.from_bytes(query[end - 4 : end - 2], "big")
    size = _ADDRESS_SIZE.get(qtype)
    if size is None:
        return None
    step = 12 + size  # owner pointer, type, class, TTL, rdlength; then the rdata
    stop = end + int.from_bytes(response[6:8], "big") * step
    if len(response) < stop:
        return None
    head, rdlength = _RECORD_HEAD[qtype], _RDLENGTH[qtype]
    records = []
    for pos in range(end, stop, step):
        if response[pos : pos + 6] != head or response[pos + 10 : pos + 12] != rdlength:
            return None
        records.append(response[pos + 12 : pos + step])
    records.sort()
    return b"".join((response[2:end], *records, response[stop:]))


def question_end(query: bytes) -> int:
    """Where the question section of ``query`` (uncompressed, one question) ends."""
    pos = 12
    while query[pos]:
        pos += 1 + query[pos]
    return pos + 5


class _NotRead(Exception):
    """Outside the subset :func:`scan` reads."""


def _scan(response: bytes, query: bytes, end: int | None) -> Scanned:
    _, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(response)
    rcode = flags & 0x000F
    opcode = (flags >> 11) & 0x000F
    if not flags & _QR or flags & _TC or opcode != 0 or qdcount != 1:
        raise _NotRead
    if rcode != dns.rcode.NOERROR and (rcode != dns.rcode.NXDOMAIN or ancount):
        raise _NotRead  # NXDOMAIN with answers: dnspython raises AnswerForNXDOMAIN
    if end is None:
        end = question_end(query)
    if response[:2] != query[:2] or response[12:end] != query[12:end]:
        raise _NotRead  # not our ID or question: dnspython ignores the datagram
    qtype = struct.unpack_from("!H", query, end - 4)[0]
    if qtype not in _ADDRESS_SIZE and qtype != _SRV:
        raise _NotRead
    size = len(response)
    names = _Names(response)
    question, _ = names.read(12)
    qname = names.text(question)
    pos, records = end, []
    for _ in range(ancount):
        owner, pos = names.read(pos)
        rtype, rclass, ttl, rdlength = _RR.unpack_from(response, pos)
        start, pos = pos + _RR.size, pos + _RR.size + rdlength
        if pos > size or rtype != qtype or rclass != _IN:
            raise _NotRead
        if owner != question and names.text(owner) != qname:
            raise _NotRead
        ttl = 0 if ttl > _MAX_TTL else ttl
        if rtype == _SRV:
            target, after = names.read(start + 6)
            if after != pos:
                raise _NotRead  # the name does not end where its record does
            records.append((rtype, response[start : start + 6] + names.text(target), ttl))
        elif rdlength == _ADDRESS_SIZE[rtype]:
            records.append((rtype, response[start:pos], ttl))
        else:
            raise _NotRead
    for _ in range(nscount):
        _, pos = names.read(pos)
        rtype, rclass, _, rdlength = _RR.unpack_from(response, pos)
        start, pos = pos + _RR.size, pos + _RR.size + rdlength
        if rclass != _IN or pos > size:
            raise _NotRead
        if rtype == _SOA:  # two names, then serial, refresh, retry, expire, minimum
            after = names.read(names.read(start)[1])[1] + 20
        elif rtype == _NS:
            after = names.read(start)[1]
        else:
            raise _NotRead
        if after != pos:
            raise _NotRead
    extra, edns = set(), False
    for _ in range(arcount):
        owner, pos = names.read(pos)
        rtype, rclass, ttl, rdlength = _RR.unpack_from(response, pos)
        start, pos = pos + _RR.size, pos + _RR.size + rdlength
        if pos > size:
            raise _NotRead
        if rtype == _OPT:
            # One, owned by the root, without options (dnspython reads each option
            # by its code) and without an extended rcode (BADVERS, ...).
            if edns or owner != _ROOT or rdlength or ttl >> 24:
                raise _NotRead
            edns = True
        elif rtype in _ADDRESS_SIZE and rclass == _IN and rdlength == _ADDRESS_SIZE[rtype]:
            extra.add((names.text(owner), rtype, response[start:pos]))
        else:
            raise _NotRead
    if pos != size:
        raise _NotRead  # trailing bytes: dnspython's from_wire raises TrailingJunk
    return Scanned(rcode, qtype, tuple(records), frozenset(extra))


class _Names:
    """The names of one message, each label decompressed once.

    A name is known by a key: the offset of its first label, or ``_ROOT``. Every
    label read is remembered with how many pointers the rest of its name takes,
    the name's length on the wire from there, and its text. A pointer may only lead
    to such a label: one of a name read before, so backwards and never into the
    name being read (dnspython's two rules), and a chain of at most :data:`MAX_HOPS`.
    """

    __slots__ = ("_links", "_texts", "_wire")

    def __init__(self, wire: bytes) -> None:
        self._wire = wire
        self._links: dict[int, tuple[int, int]] = {}  # label -> (hops, length)
        self._texts: dict[int, bytes] = {_ROOT: b"\x00"}

    def read(self, pos: int) -> tuple[int, int]:
        """The key of the name at ``pos`` and the position after it."""
        wire, labels = self._wire, []
        while True:
            length = wire[pos]
            if length == 0:
                key, hops, size, after = _ROOT, 0, 1, pos + 1
                break
            if length & 0xC0 == 0xC0:
                key = (length & 0x3F) << 8 | wire[pos + 1]
                link = self._links.get(key)
                if link is None or link[0] >= MAX_HOPS:
                    raise _NotRead
                hops, size, after = link[0] + 1, link[1], pos + 2
                break
            if length & 0xC0:
                raise _NotRead  # label types 0x40 and 0x80
            labels.append(pos)
            pos += 1 + length
        text = self._texts[key]
        for label in reversed(labels):
            length = wire[label]
            size += 1 + length
            if size > 255:
                raise _NotRead  # dnspython: NameTooLong
            self._links[label] = (hops, size)
            text = wire[label : label + 1 + length].lower() + text
            self._texts[label] = text
            key = label
        return key, after

    def text(self, key: int) -> bytes:
        """The name ``key`` in lowercase uncompressed wire form."""
        return self._texts[key]


def frame(queries: list[bytes]) -> bytes:
    """Queries as one TCP stream: each prefixed with its length (RFC 1035 4.2.2)."""
    return b"".join(len(query).to_bytes(2, "big") + query for query in queries)


def unframe(buffer: bytearray) -> Iterator[bytes]:
    """The whole messages at the start of a TCP ``buffer``, removed from it."""
    while len(buffer) >= 2:
        size = int.from_bytes(buffer[:2], "big")
        if len(buffer) < 2 + size:
            return
        message = bytes(buffer[2 : 2 + size])
        del buffer[: 2 + size]
        yield message
