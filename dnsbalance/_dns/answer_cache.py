"""Repeat polls made cheap: most DNS polls bring back the answer of the last one.

A poller asks the same questions every few seconds and the answers almost never
change. For each question, :class:`AnswerCache` keeps the query's wire form and
the fingerprint of the last answer it adopted with the reply the plan got from it.
When every answer of a poll has the last fingerprint, the last result stands
without running the plan (:func:`repeat_plan`).

One rule holds on every path: an answer is adopted only when dnspython's resolver,
given the same bytes, returns the same reply. An answer that
:func:`dnsbalance._dns.wire.scan` reads (a strict subset of DNS that dnspython reads
the same way) is compared by its fingerprint and, when it changed, read off the
wire (A/AAAA) or parsed by dnspython (SRV). Any other answer is parsed by dnspython,
checked as its resolver checks a response (``is_response``, the rcode rules of
``_Resolution.query_result``, ``AnswerForNXDOMAIN``), and remembered by its bytes:
only the same bytes again (the ID aside) count as unchanged. What dnspython would
not take goes to dnspython's resolver (``FALLBACK``), which asks again, tries the
other servers and raises its usual errors; a question that fell back keeps no
fingerprint, so the next answer is read afresh. A truncated UDP answer is asked
again over TCP (``TRUNCATED``), and that question stays on TCP for a while.

:meth:`AnswerCache.recognise` is the poll clock's check: fingerprints and bytes
only, never a parse. This module decides; the sync and asyncio drivers in
``_discovery`` do the I/O.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Collection, Generator
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple, cast

import dns.exception
import dns.message
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from dnsbalance._endpoints import Endpoints
from dnsbalance._target import Target

from .plan import Question, Reply, lookup_plan
from .wire import Fingerprint, question_end, scan, truncated, unordered_body


class Shortcut(enum.Enum):
    """What the shortcut has instead of a reply."""

    FALLBACK = "ask dnspython's resolver instead"
    TIMEOUT = "no answer within the resolver's lifetime"
    TRUNCATED = "the UDP answer was truncated: ask again (over TCP)"


FALLBACK: Final = Shortcut.FALLBACK
TIMEOUT: Final = Shortcut.TIMEOUT
TRUNCATED: Final = Shortcut.TRUNCATED
Fallback = Literal[Shortcut.FALLBACK]

# After a truncated UDP answer, a question is asked over TCP this many times before
# UDP is tried again (a minute at the default 5 s interval).
TCP_POLLS = 12
# Answers remembered per question by their bytes, to recognise without a scan.
KNOWN_BODIES = 4

Batch = tuple[Question, ...]
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


class Query(NamedTuple):
    """One question on the wire, and whether it goes over TCP (a NamedTuple: made
    on every poll)."""

    wire: bytes
    tcp: bool
    question_end: int

    @property
    def id(self) -> bytes:
        return self.wire[:2]


@dataclass
class _Memory:
    template: bytes  # the query's wire form; each send gets a fresh ID
    question_end: int  # where its question section ends
    # What the last adopted answer looked like: its scanned fingerprint, or its
    # bytes after the ID when only dnspython read it; None: nothing adopted.
    fingerprint: Fingerprint | bytes | None = None
    reply: Reply = None
    repeated: bool = False  # the latest answer had the remembered fingerprint
    tcp_polls: int = 0  # ask over TCP this many more times (the answer was truncated)
    # The last few answers (after the ID) scanned to the remembered fingerprint: the
    # same bytes again need no scan. Several, as servers rotate records (BIND's
    # rrset-order, CoreDNS's loadbalance).
    bodies: list[bytes] = field(default_factory=list)
    # The adopted A/AAAA answer's records, order and TTLs aside (wire.unordered_body):
    # any order of them again needs no scan, however many records (3 come in 6
    # orders, 5 in 120: more than ``bodies`` holds).
    unordered: bytes | None = None

    def adopt(
        self, fingerprint: Fingerprint | bytes, reply: Reply, unordered: bytes | None = None
    ) -> None:
        self.fingerprint, self.reply, self.unordered = fingerprint, reply, unordered
        self.bodies.clear()

    def forget(self) -> None:
        self.fingerprint, self.reply, self.unordered = None, None, None
        self.bodies.clear()

    def seen(self, body: bytes) -> None:
        """``body`` scanned to the remembered fingerprint."""
        if body not in self.bodies:
            if len(self.bodies) >= KNOWN_BODIES:
                self.bodies.pop(0)
            self.bodies.append(body)


class AnswerCache:
    """For one poller: each question's query wire, last fingerprint and last reply,
    and the questions and result of the last lookup (what :func:`repeat_plan` replays).

    ``server`` is the (address, port) the shortcut asks, or None when the resolver
    cannot be shortcut (several servers, TSIG, EDNS options, not plain DNS): then
    every query is None and the driver asks dnspython. A question whose UDP answer
    came truncated is asked over TCP for the next :data:`TCP_POLLS` polls, then over
    UDP again (the answer may have shrunk). Not thread-safe: one poller drives it.
    """

    def __init__(self, resolver: dns.resolver.BaseResolver) -> None:
        self._resolver = resolver
        self._memory: dict[Question, _Memory] = {}
        self._last: tuple[tuple[Question, ...], Endpoints] | None = None
        self.server = _single_plain_server(resolver)

    def queries(self, batch: Batch, *, taken: Collection[bytes] = ()) -> list[Query | None]:
        """Each question on the wire, with fresh IDs distinct within the batch and
        from ``taken`` (others in flight on the same socket), or None where dnspython
        must ask."""
        queries: list[Query | None] = []
        ids: set[bytes] = set(taken)
        # IDs from the OS's random source, as dnspython's; one call for the batch.
        fresh = os.urandom(2 * len(batch))
        for i, question in enumerate(batch):
            memory = self._memory.get(question)
            if memory is None:
                template = self._template(question)
                memory = _Memory(template, question_end(template))
                self._memory[question] = memory
            memory.repeated = False
            if self.server is None:
                queries.append(None)
                continue
            query_id = fresh[2 * i : 2 * i + 2]
            while query_id in ids:  # IDs must tell the batch's answers apart
                query_id = os.urandom(2)
            ids.add(query_id)
            tcp = memory.tcp_polls > 0
            memory.tcp_polls = max(memory.tcp_polls - 1, 0)
            queries.append(Query(query_id + memory.template[2:], tcp, memory.question_end))
        return queries

    def replies(
        self,
        batch: Batch,
        queries: list[Query | None],
        responses: dict[bytes, bytes] | None,
    ) -> list[Reply | Shortcut]:
        """What the exchange of ``queries`` brought, by question: a reply, FALLBACK
        (ask dnspython), TRUNCATED (ask again: the next query goes over TCP) or
        TIMEOUT. ``responses`` maps a query's ID to its answer; None when the exchange
        failed outright (dnspython asks everything)."""
        replies: list[Reply | Shortcut] = []
        for question, query in zip(batch, queries, strict=True):
            if query is None or responses is None:
                self._memory[question].forget()
                self._last = None
                replies.append(FALLBACK)
            elif (response := responses.get(query.id)) is None:
                replies.append(TIMEOUT)
            else:
                replies.append(self.reply(question, query, response))
        return replies

    def reply(self, question: Question, query: Query, response: bytes) -> Reply | Shortcut:
        """The reply to hand the plan for ``response``, FALLBACK or TRUNCATED."""
        memory = self._memory[question]
        if _known(memory, query, response):
            memory.repeated = True
            return memory.reply
        scanned = scan(response, query.wire, query.question_end)
        if scanned is not None:
            seen: Fingerprint | bytes = scanned.fingerprint
            if seen == memory.fingerprint:
                memory.repeated = True
                memory.seen(response[2:])
                return memory.reply
            if question.rdtype in _ADDRESS_TYPES:
                reply: Reply | Fallback = scanned.addresses()
            else:
                reply = self._parse(question, query, response)
        elif not query.tcp and truncated(response, query.wire, query.question_end):
            memory.tcp_polls = TCP_POLLS  # the plan gets the TCP answer, read as any other
            return TRUNCATED
        else:
            seen = response[2:]
            if seen == memory.fingerprint and response[:2] == query.id:
                memory.repeated = True
                return memory.reply
            reply = self._parse(question, query, response)
        self._last = None  # the last result was read from other answers
        if reply is FALLBACK:
            memory.forget()
            return FALLBACK
        if scanned is None:
            memory.adopt(seen, reply)
        else:
            memory.adopt(seen, reply, unordered_body(response, query.wire, query.question_end))
            memory.seen(response[2:])
        return reply

    def recognise(
        self, batch: Batch, queries: list[Query | None], responses: dict[bytes, bytes]
    ) -> None:
        """Mark the questions of ``batch`` whose answer in ``responses`` is the last
        adopted one, by fingerprint or bytes; never parses (the poll clock's check,
        see :meth:`unchanged`)."""
        for question, query in zip(batch, queries, strict=True):
            if query is None or (response := responses.get(query.id)) is None:
                continue
            memory = self._memory[question]
            if isinstance(memory.fingerprint, bytes):
                same = response[2:] == memory.fingerprint
                memory.repeated = same and response[:2] == query.id
            elif memory.fingerprint is not None:
                if _known(memory, query, response):
                    memory.repeated = True
                    continue
                scanned = scan(response, query.wire, query.question_end)
                memory.repeated = scanned is not None and scanned.fingerprint == memory.fingerprint
                if memory.repeated:
                    memory.seen(response[2:])

    def replay(self) -> Batch:
        """The questions of the last lookup, when all of them may take the shortcut."""
        if self._last is None or self.server is None:
            return ()
        return self._last[0]

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
        """A lookup asked ``questions`` and found ``result``. Only their memory is
        kept, so pods' names that come and go (SRV targets) do not pile up."""
        self._last = (questions, result) if self.server is not None else None
        if len(self._memory) > len(questions):
            asked = set(questions)
            self._memory = {q: m for q, m in self._memory.items() if q in asked}

    def _parse(self, question: Question, query: Query, response: bytes) -> Reply | Fallback:
        """``response`` as dnspython's resolver reads it: the reply, or FALLBACK for
        anything its resolver would not return (then it asks and decides itself)."""
        if self.server is None:
            return FALLBACK
        try:
            message = dns.message.from_wire(response, raise_on_truncation=not query.tcp)
            request = dns.message.from_wire(query.wire)
        except Exception:  # dnspython ignores such a datagram, or drops the server
            return FALLBACK
        if not request.is_response(message):
            return FALLBACK
        return read_reply(question, message, self.server)

    def _template(self, question: Question) -> bytes:
        """The query dnspython's resolver would send (its flags and EDNS settings)."""
        resolver = self._resolver
        query = dns.message.make_query(question.name, question.rdtype, dns.rdataclass.IN)
        query.use_edns(resolver.edns, resolver.ednsflags, resolver.payload)
        if resolver.flags is not None:
            query.flags = resolver.flags
        return query.to_wire()


def _known(memory: _Memory, query: Query, response: bytes) -> bool:
    """Whether ``response`` is one of the scanned answers behind ``memory``'s
    fingerprint again, by its bytes or its records in another order (never a scan)."""
    if not isinstance(memory.fingerprint, tuple) or response[:2] != query.id:
        return False
    if response[2:] in memory.bodies:
        return True
    return memory.unordered is not None and memory.unordered == unordered_body(
        response, query.wire, query.question_end
    )


def read_reply(
    question: Question, message: dns.message.Message, server: tuple[str, int]
) -> Reply | Fallback:
    """What dnspython's resolver returns for ``message``, a response to
    ``question``: the rules of ``dns.resolver._Resolution.query_result`` for one
    name without search. NOERROR: the Answer (CNAMEs followed; its construction
    raising means the server is dropped); NXDOMAIN: None, unless the message also
    answers the question (``AnswerForNXDOMAIN``); any other rcode: FALLBACK."""
    if not isinstance(message, dns.message.QueryMessage):
        return FALLBACK
    rcode = message.rcode()
    address, port = server
    try:
        if rcode == dns.rcode.NOERROR:
            return dns.resolver.Answer(
                question.name, question.rdtype, dns.rdataclass.IN, message, address, port
            )
        if rcode == dns.rcode.NXDOMAIN:
            dns.resolver.Answer(question.name, dns.rdatatype.ANY, dns.rdataclass.IN, message)
            return None
    except Exception:  # as query_result: "the nameserver is no good"
        return FALLBACK
    return FALLBACK


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


def by_transport(queries: list[Query | None]) -> tuple[list[bytes], list[bytes]]:
    """The wire forms to send over UDP, and over TCP."""
    udp = [query.wire for query in queries if query is not None and not query.tcp]
    tcp = [query.wire for query in queries if query is not None and query.tcp]
    return udp, tcp


def _single_plain_server(resolver: dns.resolver.BaseResolver) -> tuple[str, int] | None:
    servers = resolver.nameservers
    if len(servers) != 1 or resolver.keyring is not None or resolver.ednsoptions:
        return None
    server = servers[0]
    if not isinstance(server, dns.nameserver.Do53Nameserver):
        return None
    return server.answer_nameserver(), server.answer_port()
