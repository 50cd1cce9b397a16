"""Repeat polls made cheap: most DNS polls bring back the answer of the last one.

A poller asks the same questions every few seconds and the answers almost never
change. Parsing an answer with dnspython costs far more than asking it (about
0.3 ms against 0.04 ms for three A records), so for each question this module
keeps the query's wire form and a *fingerprint* of the last answer: its rcode
and the set of (type, rdata) of its answer records, read straight off the wire.
Order and TTLs are left out, because CoreDNS's ``loadbalance`` shuffles records
and its cache counts TTLs down. When the fingerprint of a new answer is the last
one's, the last parsed reply is the answer; otherwise dnspython parses it.

Only what can be read safely is fingerprinted: A and AAAA answers owned by the
question's name (no CNAME, no name compression other than a pointer to the
question). Anything unusual — a truncated answer, an rcode other than NOERROR or
NXDOMAIN, a question that is not ours, a malformed message — goes back to
dnspython's resolver (``FALLBACK``), which retries over TCP, tries the other
servers and raises its usual errors. SRV answers carry names, so they are
parsed every time.

This module decides; the sync and asyncio drivers in ``_discovery`` do the I/O.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import Final, Literal, cast

import dns.exception
import dns.message
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from ._endpoints import Endpoint
from ._plan import Question, Reply, lookup_plan
from ._target import Target

__all__ = ["FALLBACK", "TIMEOUT", "AnswerCache", "Shortcut", "fingerprint", "repeat_plan"]


class Shortcut(enum.Enum):
    """What the shortcut has instead of a reply."""

    FALLBACK = "ask dnspython's resolver instead"
    TIMEOUT = "no answer within the resolver's lifetime"


FALLBACK: Final = Shortcut.FALLBACK
TIMEOUT: Final = Shortcut.TIMEOUT
Fallback = Literal[Shortcut.FALLBACK]

_HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_RR = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_QR, _TC = 0x8000, 0x0200
_POINTER_TO_QUESTION = b"\xc0\x0c"
_ADDRESS_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})
_OPT = dns.rdatatype.OPT
# After a truncated answer, questions skip the UDP shortcut this many times
# (dnspython asks them over TCP) before trying it again.
TRUNCATED_SKIPS = 10

Fingerprint = tuple[int, frozenset[tuple[int, bytes]]]
Endpoints = tuple[Endpoint, ...]
Batch = tuple[Question, ...]


def fingerprint(response: bytes, query: bytes) -> Fingerprint | Fallback | None:
    """What of ``response`` to ``query`` a lookup plan reads, without order and TTLs.

    None: a usable answer that is not fingerprinted (parse it); FALLBACK: an answer
    dnspython's resolver must handle (truncated, an error rcode, not our question,
    malformed).
    """
    try:
        return _scan(response, query)
    except (struct.error, IndexError):
        return FALLBACK


def _scan(response: bytes, query: bytes) -> Fingerprint | Fallback | None:
    _, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(response)
    rcode = flags & 0x000F
    opcode = (flags >> 11) & 0x000F
    if not flags & _QR or flags & _TC or opcode != 0 or qdcount != 1:
        return FALLBACK
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return FALLBACK
    end = _skip_name(query, 12) + 4  # the query's question section ends here
    if response[12:end] != query[12:end]:
        return FALLBACK
    qtype = struct.unpack_from("!H", query, end - 4)[0]
    qname = query[12 : end - 4]
    pos, records, plain = end, set(), qtype in _ADDRESS_TYPES
    for _ in range(ancount):
        if response.startswith(_POINTER_TO_QUESTION, pos):
            owner_is_question, pos = True, pos + 2
        elif response.startswith(qname, pos):
            owner_is_question, pos = True, pos + len(qname)
        else:
            owner_is_question, pos = False, _skip_name(response, pos)
        rtype, rclass, _, rdlength = _RR.unpack_from(response, pos)
        pos += _RR.size
        rdata = response[pos : pos + rdlength]
        if len(rdata) != rdlength:
            return FALLBACK
        pos += rdlength
        if not owner_is_question or rtype != qtype or rclass != dns.rdataclass.IN:
            plain = False
        records.add((rtype, rdata))
    for _ in range(nscount + arcount):
        pos = _skip_name(response, pos)
        rtype, _, ttl, rdlength = _RR.unpack_from(response, pos)
        pos += _RR.size + rdlength
        if rtype == _OPT and ttl >> 24:  # an extended rcode (BADVERS, ...)
            return FALLBACK
    if pos > len(response):
        return FALLBACK
    return (rcode, frozenset(records)) if plain else None


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


@dataclass
class _Memory:
    template: bytes  # the query's wire form; each send gets a fresh ID
    fingerprint: Fingerprint | None = None
    reply: Reply = None
    repeated: bool = False  # the latest answer had the remembered fingerprint
    skips: int = 0


class AnswerCache:
    """For one poller: each question's query wire, last fingerprint and last reply,
    and the questions and result of the last lookup (what :func:`repeat_plan` replays).

    ``server`` is the (address, port) the shortcut asks, or None when the resolver
    cannot be shortcut (several servers, TSIG, EDNS options, not plain DNS): then
    every :meth:`query` is None and the driver asks dnspython. Not thread-safe: one
    poller drives it.
    """

    def __init__(self, resolver: dns.resolver.BaseResolver) -> None:
        self._resolver = resolver
        self._memory: dict[Question, _Memory] = {}
        self._last: tuple[tuple[Question, ...], Endpoints] | None = None
        self.server = _single_plain_server(resolver)

    def queries(self, batch: Batch) -> list[bytes | None]:
        """The wire form of each question, with fresh IDs distinct within the batch,
        or None where dnspython must ask."""
        queries: list[bytes | None] = []
        ids: set[bytes] = set()
        # IDs from the OS's random source, as dnspython's; one call for the batch.
        fresh = os.urandom(2 * len(batch) + 8)
        for question in batch:
            memory = self._memory.get(question)
            if memory is None:
                memory = self._memory[question] = _Memory(self._template(question))
            memory.repeated = False
            if self.server is None or memory.skips:
                memory.skips = max(memory.skips - 1, 0)
                queries.append(None)
                continue
            query_id, fresh = fresh[:2], fresh[2:]
            while query_id in ids or len(query_id) < 2:
                query_id = os.urandom(2)
            ids.add(query_id)
            queries.append(query_id + memory.template[2:])
        return queries

    def replies(
        self,
        batch: Batch,
        queries: list[bytes | None],
        responses: dict[bytes, bytes] | None,
    ) -> list[Reply | Shortcut]:
        """What the exchange of ``queries`` brought, by question: a reply, FALLBACK
        (ask dnspython) or TIMEOUT. ``responses`` maps a query's ID bytes to its
        answer; None when the exchange failed outright (dnspython asks everything)."""
        replies: list[Reply | Shortcut] = []
        for question, query in zip(batch, queries, strict=True):
            if query is None or responses is None:
                replies.append(FALLBACK)
            elif (response := responses.get(query[:2])) is None:
                replies.append(TIMEOUT)
            else:
                replies.append(self.reply(question, query, response))
        return replies

    def reply(self, question: Question, query: bytes, response: bytes) -> Reply | Fallback:
        """The reply to hand the plan for ``response``, or FALLBACK: ask dnspython."""
        memory = self._memory[question]
        seen = fingerprint(response, query)
        if seen is FALLBACK:
            if len(response) >= 4 and response[2] & (_TC >> 8):
                memory.skips = TRUNCATED_SKIPS
            return FALLBACK
        if seen is not None and seen == memory.fingerprint:
            memory.repeated = True
            return memory.reply
        reply = self._parse(question, response)
        if reply is not FALLBACK:
            memory.fingerprint, memory.reply = seen, reply
            self._last = None  # the last result was read from other answers
        return reply

    def replay(self) -> Batch:
        """The questions of the last lookup, when all of them may take the shortcut."""
        if self._last is None or self.server is None:
            return ()
        questions = self._last[0]
        if any(self._memory[q].skips for q in questions):
            return ()
        return questions

    def unchanged(self, questions: tuple[Question, ...]) -> Endpoints | None:
        """The last lookup's result when ``questions`` (its questions) were all just
        answered as before; else None."""
        last = self._last
        if last is None or last[0] != questions:
            return None
        if all(self._memory[q].repeated for q in questions):
            return last[1]
        return None

    def remember(self, questions: tuple[Question, ...], result: Endpoints) -> None:
        """A lookup asked ``questions`` and found ``result``."""
        self._last = (questions, result) if self.server is not None else None

    def _parse(self, question: Question, response: bytes) -> Reply | Fallback:
        try:
            message = dns.message.from_wire(response)
        except dns.exception.DNSException:
            return FALLBACK
        if not isinstance(message, dns.message.QueryMessage) or self.server is None:
            return FALLBACK
        if message.rcode() == dns.rcode.NXDOMAIN:
            return None
        address, port = self.server
        try:
            return dns.resolver.Answer(
                question.name, question.rdtype, dns.rdataclass.IN, message, address, port
            )
        except dns.exception.DNSException:
            return FALLBACK

    def _template(self, question: Question) -> bytes:
        """The query dnspython's resolver would send (its flags and EDNS settings)."""
        resolver = self._resolver
        query = dns.message.make_query(question.name, question.rdtype, dns.rdataclass.IN)
        query.use_edns(resolver.edns, resolver.ednsflags, resolver.payload)
        if resolver.flags is not None:
            query.flags = resolver.flags
        return query.to_wire()


BatchPlan = Generator[Batch, tuple[Reply, ...], Endpoints]


def repeat_plan(cache: AnswerCache, target: Target) -> BatchPlan:
    """A poller's lookup of ``target``: the lookup plan, asked in batches.

    First the last lookup's questions go out together (one round trip); when every
    answer is the last one, the result is the last result, without running the
    plan. Otherwise the plan runs, using the answers just received, one question a
    batch for the rest. The driver answers each batch, in order.
    """
    known: dict[Question, Reply] = {}
    questions = cache.replay()
    if questions:
        replies = yield questions
        result = cache.unchanged(questions)
        if result is not None:
            return result
        known = dict(zip(questions, replies, strict=True))
    plan, asked = lookup_plan(target), []
    try:
        question = next(plan)
        while True:
            asked.append(question)
            reply = known[question] if question in known else (yield (question,))[0]
            question = plan.send(reply)
    except StopIteration as stop:
        result = cast(Endpoints, stop.value)
    cache.remember(tuple(asked), result)
    return result


def _single_plain_server(resolver: dns.resolver.BaseResolver) -> tuple[str, int] | None:
    servers = resolver.nameservers
    if len(servers) != 1 or resolver.keyring is not None or resolver.ednsoptions:
        return None
    server = servers[0]
    if not isinstance(server, dns.nameserver.Do53Nameserver):
        return None
    return server.answer_nameserver(), server.answer_port()
