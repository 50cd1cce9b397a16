"""The asyncio driver of discovery: the same lookup plan, asked with dns.asyncresolver
(and, for pollers, through the repeat-answer shortcut first)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import TypeVar

import dns.asyncresolver
import dns.exception
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
from .servers import (
    configure_resolver,
    question_error,
    question_timeout,
    servers_for,
)
from .wire import frame


def make_resolver(
    nameservers: Sequence[str] | None = None, *, timeout: float = 2.0
) -> dns.asyncresolver.Resolver:
    """A new asyncio resolver configured for discovery (no cache, EDNS, ``timeout``)."""
    return configure_resolver(
        dns.asyncresolver.Resolver(configure=not nameservers), nameservers, timeout=timeout
    )


async def discover(
    target: str | Target,
    *,
    nameservers: Sequence[str] | None = None,
    cluster_domain: str | None = None,
    timeout: float = 2.0,
    resolver: dns.asyncresolver.Resolver | None = None,
) -> tuple[Endpoint, ...]:
    """:func:`dnsbalance.discover`, without blocking the event loop."""
    if isinstance(target, str):
        target = parse_target(target, cluster_domain=cluster_domain)
    if resolver is None:
        resolver = make_resolver(servers_for(target, nameservers), timeout=timeout)
    return await poll_lookup(target, resolver)()


Q = TypeVar("Q")
A = TypeVar("A")


async def run_plan(
    plan: Generator[Q, A, Endpoints], ask_question: Callable[[Q], Awaitable[A]]
) -> Endpoints:
    """Drive a plan, answering what it yields with ``ask_question``."""
    try:
        question = next(plan)
        while True:
            question = plan.send(await ask_question(question))
    except StopIteration as stop:
        result: Endpoints = stop.value
        return result


async def ask(resolver: dns.asyncresolver.Resolver, question: Question) -> Reply:
    try:
        return await resolver.resolve(
            question.name, question.rdtype, search=False, raise_on_no_answer=False
        )
    except dns.resolver.NXDOMAIN:
        return None
    except dns.exception.DNSException as exc:
        raise question_error(exc, question, resolver) from exc


def poll_lookup(
    target: Target, resolver: dns.asyncresolver.Resolver
) -> Callable[[], Awaitable[Endpoints]]:
    """:func:`dnsbalance._dns.sync.poll_lookup` for the event loop."""
    cache = AnswerCache(resolver)

    async def ask_batch(batch: Batch) -> tuple[Reply, ...]:
        queries = cache.queries(batch)
        answers = await send(cache.server, queries, resolver.lifetime)
        replies = cache.replies(batch, queries, answers)
        again = [i for i, reply in enumerate(replies) if reply is TRUNCATED]
        if again:  # truncated over UDP: the cache now has them asked over TCP
            retried = await ask_batch(tuple(batch[i] for i in again))
            for i, answer in zip(again, retried, strict=True):
                replies[i] = answer
        settled = []
        for question, reply in zip(batch, replies, strict=True):
            if reply is TIMEOUT:
                raise question_timeout(question, resolver)
            settled.append(await ask(resolver, question) if isinstance(reply, Shortcut) else reply)
        return tuple(settled)

    def lookup() -> Awaitable[Endpoints]:
        return run_plan(repeat_plan(cache, target), ask_batch)

    return lookup


async def send(
    server: tuple[str, int] | None, queries: list[Query | None], timeout: float
) -> dict[bytes, bytes] | None:
    """:func:`dnsbalance._dns.sync.send` on the event loop."""
    udp, tcp = by_transport(queries)
    if server is None:
        return None
    try:
        answers = await exchange(server, udp, timeout) if udp else {}
        if tcp:
            answers.update(await exchange_tcp(server, tcp, timeout))
    except OSError:  # e.g. an ICMP "port unreachable", a refused connection
        return None
    return answers


async def exchange(
    server: tuple[str, int], queries: Sequence[bytes], timeout: float
) -> dict[bytes, bytes]:
    """:func:`dnsbalance._dns.sync.exchange` on the event loop."""
    host, port = server
    loop = asyncio.get_running_loop()
    waiting = {query[:2] for query in queries}
    answers: dict[bytes, bytes] = {}
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))  # a UDP connect only sets the peer: it never blocks
        for query in queries:
            await loop.sock_sendall(sock, query)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while waiting:
                    response = await loop.sock_recv(sock, 65535)
                    if response[:2] in waiting:
                        waiting.discard(response[:2])
                        answers[response[:2]] = response
    return answers


async def exchange_tcp(
    server: tuple[str, int], queries: Sequence[bytes], timeout: float
) -> dict[bytes, bytes]:
    """:func:`dnsbalance._dns.sync.exchange_tcp` on the event loop."""
    host, port = server
    waiting = {query[:2] for query in queries}
    answers: dict[bytes, bytes] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(frame(list(queries)))
                await writer.drain()
                while waiting:
                    try:
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        message = await reader.readexactly(size)
                    except asyncio.IncompleteReadError as exc:
                        raise ConnectionError(f"{host}:{port} closed the connection") from exc
                    if message[:2] in waiting:
                        waiting.discard(message[:2])
                        answers[message[:2]] = message
            finally:
                writer.close()
    return answers
