"""Endpoint discovery through cluster DNS: the sync driver.

What to ask and how to read the answers is the lookup plan (:mod:`dnsbalance._dns.plan`).
This module asks its questions: straight over UDP (TCP for answers too big for UDP)
with the wire forms and answer reading of :mod:`dnsbalance._dns.answer_cache`, which for a
poller also skips answers equal to the last ones; and through dnspython's resolver
(:func:`ask`) for everything unusual: several nameservers, TSIG, error rcodes,
malformed answers, a failed exchange. :func:`poll_lookup` is a poller's lookup,
:func:`discover` a single one. The asyncio driver is :mod:`dnsbalance._dns.aio`.

SERVFAIL, REFUSED and timeouts raise :class:`~dnsbalance.ResolutionError`. Queries
carry EDNS with a 1232-byte payload so answers of up to ~70 addresses fit in one
UDP datagram.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Generator, Sequence
from typing import Protocol, TypeVar

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from dnsbalance._endpoints import Endpoint, Endpoints
from dnsbalance._target import Target, parse_target

from .answer_cache import (
    TIMEOUT,
    TRUNCATED,
    AnswerCache,
    Batch,
    Query,
    Shortcut,
    by_transport,
    repeat_plan,
)
from .plan import Question, Reply
from .servers import configure_resolver, question_error, question_timeout, servers_for
from .wire import frame, unframe


def make_resolver(
    nameservers: Sequence[str] | None = None, *, timeout: float = 2.0
) -> dns.resolver.Resolver:
    """A new sync resolver configured for discovery (see :func:`configure_resolver`)."""
    return configure_resolver(
        dns.resolver.Resolver(configure=not nameservers), nameservers, timeout=timeout
    )


def discover(
    target: str | Target,
    *,
    nameservers: Sequence[str] | None = None,
    cluster_domain: str | None = None,
    timeout: float = 2.0,
    resolver: dns.resolver.Resolver | None = None,
) -> tuple[Endpoint, ...]:
    """The ready endpoints of ``target`` as cluster DNS publishes them, sorted.

    ``nameservers`` overrides resolv.conf (and a DNS server named in the target);
    ``resolver`` lets you pass a configured ``dns.resolver.Resolver`` instead.
    Returns ``()`` for NXDOMAIN. Raises ResolutionError, TargetError, ConfigError.
    """
    if isinstance(target, str):
        target = parse_target(target, cluster_domain=cluster_domain)
    if resolver is None:
        resolver = make_resolver(servers_for(target, nameservers), timeout=timeout)
    return poll_lookup(target, resolver)()


Q = TypeVar("Q")
A = TypeVar("A")


def run_plan(plan: Generator[Q, A, Endpoints], ask_question: Callable[[Q], A]) -> Endpoints:
    """Drive a plan, answering what it yields with ``ask_question``."""
    try:
        question = next(plan)
        while True:
            question = plan.send(ask_question(question))
    except StopIteration as stop:
        result: Endpoints = stop.value
        return result


def ask(resolver: dns.resolver.Resolver, question: Question) -> Reply:
    """Ask dnspython's resolver: every server, TCP after truncation, its errors."""
    try:
        return resolver.resolve(
            question.name, question.rdtype, search=False, raise_on_no_answer=False
        )
    except dns.resolver.NXDOMAIN:
        return None
    except dns.exception.DNSException as exc:
        raise question_error(exc, question, resolver) from exc


def poll_lookup(target: Target, resolver: dns.resolver.Resolver) -> PollLookup:
    """A poller's lookup of ``target`` (see :class:`PollLookup`)."""
    return PollLookup(target, resolver)


class PollLookup:
    """A poller's lookup of ``target``: each call finds what :func:`discover` finds;
    from the second on, the last lookup's questions go out together, and answers
    equal to the last ones are not read again (:mod:`dnsbalance._dns.answer_cache`).
    :meth:`repeat` is the cheap check the poll clock runs. One poller drives it."""

    def __init__(self, target: Target, resolver: dns.resolver.Resolver) -> None:
        self._target = target
        self._resolver = resolver
        self._cache = AnswerCache(resolver)

    def __call__(self) -> Endpoints:
        return run_plan(repeat_plan(self._cache, self._target), self._ask_batch)

    def repeat(self, timeout: float) -> Endpoints | None:
        """The last result, when the last lookup's questions, asked again within
        ``timeout``, all bring back the last answers; else None (a change, a slow or
        failing server, anything for dnspython: poll in full). Never raises."""
        cache = self._cache
        questions = cache.replay()
        if not questions:
            return None
        queries = cache.queries(questions)
        answers = send(cache.server, queries, min(timeout, self._resolver.lifetime))
        if answers is None or len(answers) != len(questions):
            return None
        cache.recognise(questions, queries, answers)
        return cache.unchanged(questions)

    def repeat_start(self, timeout: float, wire: RoundWire) -> RepeatExchange | None:
        """:meth:`repeat`'s questions sent now on ``wire``, the poll clock's round (its
        one socket per server; IDs kept distinct from the round's others), which hands
        the answers over as they come: one sleep for a round of polls, not one per
        poll. None when :meth:`repeat` must be used instead (no last lookup, a
        question over TCP or for dnspython, a failed send)."""
        cache = self._cache
        questions = cache.replay()
        server = cache.server
        if not questions or server is None:
            return None
        queries = cache.queries(questions, taken=wire.ids_in_use(server))
        if any(query is None or query.tcp for query in queries):
            return None
        exchange = RepeatExchange(
            cache, questions, queries, time.monotonic() + min(timeout, self._resolver.lifetime)
        )
        wires = [query.wire for query in queries if query is not None]
        if not wire.send(server, wires, exchange.take):
            return None
        return exchange

    def _ask_batch(self, batch: Batch) -> tuple[Reply, ...]:
        cache, resolver = self._cache, self._resolver
        queries = cache.queries(batch)
        replies = cache.replies(batch, queries, send(cache.server, queries, resolver.lifetime))
        again = [i for i, reply in enumerate(replies) if reply is TRUNCATED]
        if again:  # truncated over UDP: the cache now has them asked over TCP
            retried = self._ask_batch(tuple(batch[i] for i in again))
            for i, answer in zip(again, retried, strict=True):
                replies[i] = answer
        settled = []
        for question, reply in zip(batch, replies, strict=True):
            if reply is TIMEOUT:
                raise question_timeout(question, resolver)
            settled.append(ask(resolver, question) if isinstance(reply, Shortcut) else reply)
        return tuple(settled)


class RoundWire(Protocol):
    """What a repeat poll sends on: the poll clock's round
    (``dnsbalance._poll.clock.UdpRound``)."""

    def ids_in_use(self, server: tuple[str, int]) -> set[bytes]: ...

    def send(
        self, server: tuple[str, int], messages: Sequence[bytes], receiver: Callable[[bytes], None]
    ) -> bool: ...


class RepeatExchange:
    """A repeat poll's questions in flight: the round hands it each answer
    (:meth:`take`), then :meth:`finish` settles it."""

    def __init__(
        self, cache: AnswerCache, questions: Batch, queries: list[Query | None], deadline: float
    ) -> None:
        self._cache = cache
        self._questions = questions
        self._queries = queries
        self.deadline = deadline
        self._waiting = {query.id for query in queries if query is not None}
        self._answers: dict[bytes, bytes] = {}

    @property
    def complete(self) -> bool:
        return not self._waiting

    def take(self, response: bytes) -> None:
        """An answer to one of this poll's queries (the round matched its ID)."""
        if response[:2] in self._waiting:
            self._waiting.discard(response[:2])
            self._answers[response[:2]] = response

    def finish(self) -> Endpoints | None:
        """The last result when every answer came and is the last one (as
        :meth:`PollLookup.repeat`), else None."""
        if self._waiting:
            return None
        self._cache.recognise(self._questions, self._queries, self._answers)
        return self._cache.unchanged(self._questions)


def send(
    server: tuple[str, int] | None, queries: list[Query | None], timeout: float
) -> dict[bytes, bytes] | None:
    """The answers to ``queries`` by ID, over UDP and TCP as each says; None when the
    exchange failed outright (then dnspython asks them all)."""
    udp, tcp = by_transport(queries)
    if server is None:
        return None
    try:
        answers = exchange(server, udp, timeout) if udp else {}
        if tcp:
            answers.update(exchange_tcp(server, tcp, timeout))
    except OSError:  # e.g. an ICMP "port unreachable", a refused connection
        return None
    return answers


def exchange(
    server: tuple[str, int], queries: Sequence[bytes], timeout: float
) -> dict[bytes, bytes]:
    """Send ``queries`` over UDP from one new socket (a fresh random source port, as
    dnspython uses) and collect the answers by ID (their first two bytes) until all
    arrived or ``timeout`` passed. The socket is connected, so only the server's
    datagrams reach it. Raises OSError."""
    host, port = server
    deadline = time.monotonic() + timeout
    waiting = {query[:2] for query in queries}
    answers: dict[bytes, bytes] = {}
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        for query in queries:
            sock.send(query)
        wait = timeout
        sock.settimeout(wait)
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if remaining < wait - 0.05:  # settimeout is a system call: only when it matters
                wait = remaining
                sock.settimeout(wait)
            try:
                response = sock.recv(65535)
            except TimeoutError:
                break
            if response[:2] in waiting:
                waiting.discard(response[:2])
                answers[response[:2]] = response
    return answers


def exchange_tcp(
    server: tuple[str, int], queries: Sequence[bytes], timeout: float
) -> dict[bytes, bytes]:
    """:func:`exchange` over one new TCP connection (the queries pipelined, answers
    in any order). A connection closed before every answer came raises
    ConnectionError; other failures raise OSError."""
    host, port = server
    deadline = time.monotonic() + timeout
    waiting = {query[:2] for query in queries}
    answers: dict[bytes, bytes] = {}
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(frame(list(queries)))
            buffer = bytearray()
            while waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"{host}:{port} closed the connection")
                buffer += chunk
                for message in unframe(buffer):
                    if message[:2] in waiting:
                        waiting.discard(message[:2])
                        answers[message[:2]] = message
    except TimeoutError:
        pass
    return answers
