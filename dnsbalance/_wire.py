"""Reading DNS answers straight off the wire, as far as discovery needs.

dnspython parses a whole message into objects: about 0.3 ms for three A records,
40 ms for a thousand. A poller only needs to know whether an answer is the last
one again, and for A/AAAA answers, which addresses it holds. :func:`scan` reads
that much, strictly, and gives up (``None``) on anything it does not fully
understand, which then goes to dnspython:

- the header: a response to a standard query, not truncated, NOERROR or NXDOMAIN,
  no extended rcode in the OPT record, with exactly our question echoed back;
- A/AAAA questions: answer records of the question's name (a pointer to the
  question or the name itself), type and class IN, of the right size;
- SRV questions: SRV answer records of the question's name, their target names
  (decompressed, lowercased), and the A/AAAA records of the Additional section;
- any other record in the answer or Additional section: not *plain* (parsed by
  dnspython). The Authority section (the SOA of NODATA/NXDOMAIN) is skipped.

A :class:`Scanned` answer's :attr:`~Scanned.fingerprint` leaves record order and
TTLs out (CoreDNS's ``loadbalance`` shuffles records and its cache counts TTLs
down), so two answers with equal fingerprints say the same thing to the lookup
plan. TCP framing (RFC 1035 4.2.2) is here too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

import dns.ipv4
import dns.ipv6
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from ._plan import Addresses

__all__ = ["Fingerprint", "Scanned", "frame", "question_end", "scan", "truncated", "unframe"]

_HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_RR = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_QR, _TC = 0x8000, 0x0200
_POINTER_TO_QUESTION = b"\xc0\x0c"
_A, _AAAA, _SRV, _OPT = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.SRV,
    dns.rdatatype.OPT,
)
_ADDRESS_SIZE: dict[int, int] = {_A: 4, _AAAA: 16}
_ADDRESS_TEXT: dict[int, Callable[[bytes], str]] = {
    _A: dns.ipv4.inet_ntoa,
    _AAAA: dns.ipv6.inet_ntoa,
}
_IN = dns.rdataclass.IN

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
    plain: bool
    """Nothing in the answer or Additional section that :func:`scan` does not read."""

    @property
    def fingerprint(self) -> Fingerprint | None:
        """What the lookup plan reads of this answer, without order and TTLs; None
        when it is not plain."""
        if not self.plain:
            return None
        answer = frozenset((rtype, rdata) for rtype, rdata, _ in self.records)
        return self.rcode, answer, self.extra

    def addresses(self) -> Addresses | None:
        """A plain A/AAAA answer as the plan reads it (None: NXDOMAIN); dnspython
        writes the addresses the same way."""
        if not self.plain or self.qtype not in _ADDRESS_SIZE:
            raise ValueError("only plain A/AAAA answers are read to addresses")
        if self.rcode == dns.rcode.NXDOMAIN:
            return None
        ttl = min((ttl for _, _, ttl in self.records), default=0)
        texts = [_ADDRESS_TEXT[rtype](rdata) for rtype, rdata, _ in self.records]
        return Addresses(tuple(texts), ttl)


def truncated(response: bytes) -> bool:
    """Whether ``response`` has the TC flag (too big for UDP)."""
    return len(response) >= 4 and bool(int.from_bytes(response[2:4], "big") & _TC)


def scan(response: bytes, query: bytes, question_end: int | None = None) -> Scanned | None:
    """Read ``response`` to ``query`` (our own wire form, whose question section
    ends at ``question_end`` when known); None when dnspython's resolver must handle
    it (truncated, an error rcode, not our question, malformed)."""
    try:
        return _scan(response, query, question_end)
    except (struct.error, IndexError):
        return None


def question_end(query: bytes) -> int:
    """Where the question section of ``query`` (uncompressed, one question) ends."""
    return _skip_name(query, 12) + 4


def _scan(response: bytes, query: bytes, end: int | None) -> Scanned | None:
    _, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(response)
    rcode = flags & 0x000F
    opcode = (flags >> 11) & 0x000F
    if not flags & _QR or flags & _TC or opcode != 0 or qdcount != 1:
        return None
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None
    if end is None:
        end = question_end(query)
    if response[12:end] != query[12:end]:
        return None
    qtype = struct.unpack_from("!H", query, end - 4)[0]
    qname = query[12 : end - 4]
    plain = qtype in _ADDRESS_SIZE or qtype == _SRV
    pos, records = end, []
    for _ in range(ancount):
        if response.startswith(_POINTER_TO_QUESTION, pos):
            owner_is_question, pos = True, pos + 2
        elif response.startswith(qname, pos):
            owner_is_question, pos = True, pos + len(qname)
        else:
            owner_is_question, pos = False, _skip_name(response, pos)
        rtype, rclass, ttl, rdlength = _RR.unpack_from(response, pos)
        start, pos = pos + _RR.size, pos + _RR.size + rdlength
        if pos > len(response):
            return None
        if not owner_is_question or rtype != qtype or rclass != _IN:
            plain = False
        elif plain and rtype == _SRV:
            if rdlength < 7:
                return None
            target, after = _read_name(response, start + 6)
            if after != pos:
                return None  # malformed: the name overruns its record
            records.append((rtype, response[start : start + 6] + target, ttl))
            continue
        elif plain and rdlength != _ADDRESS_SIZE[rtype]:
            return None  # malformed
        records.append((rtype, response[start:pos], ttl))
    for _ in range(nscount):
        pos = _skip_name(response, pos)
        pos += _RR.size + _RR.unpack_from(response, pos)[3]
    extra = set()
    for _ in range(arcount):
        owner, pos = _read_name(response, pos)
        rtype, rclass, ttl, rdlength = _RR.unpack_from(response, pos)
        start, pos = pos + _RR.size, pos + _RR.size + rdlength
        if rtype == _OPT:
            if ttl >> 24:  # an extended rcode (BADVERS, ...)
                return None
        elif qtype == _SRV and rtype in _ADDRESS_SIZE and rclass == _IN:
            if rdlength != _ADDRESS_SIZE[rtype]:
                return None
            extra.add((owner, rtype, response[start:pos]))
        elif qtype == _SRV:
            plain = False  # the plan reads the Additional section of SRV answers
    if pos > len(response):
        return None
    return Scanned(rcode, qtype, tuple(records), frozenset(extra), plain)


def _skip_name(wire: bytes, pos: int) -> int:
    """The position after the (possibly compressed) name at ``pos``."""
    for _ in range(128):  # a name has at most 127 labels
        length = wire[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length & 0xC0:
            raise IndexError("bad label type")
        pos += 1 + length
    raise IndexError("name too long")


def _read_name(wire: bytes, pos: int) -> tuple[bytes, int]:
    """The name at ``pos`` in lowercase uncompressed wire form, and the position
    after it. Pointers must point backwards (as dnspython requires), so reading
    always ends."""
    labels: list[bytes] = []
    after = None
    for _ in range(256):
        length = wire[pos]
        if length == 0:
            labels.append(b"\x00")
            return b"".join(labels), pos + 1 if after is None else after
        if length & 0xC0 == 0xC0:
            target = (length & 0x3F) << 8 | wire[pos + 1]
            if target >= pos:
                raise IndexError("forward pointer")
            if after is None:
                after = pos + 2
            pos = target
            continue
        if length & 0xC0:
            raise IndexError("bad label type")
        label = wire[pos : pos + 1 + length]
        if len(label) != 1 + length:
            raise IndexError("name cut short")
        labels.append(label.lower())
        pos += 1 + length
    raise IndexError("name too long")


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
