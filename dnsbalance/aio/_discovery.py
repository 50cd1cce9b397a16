"""The asyncio driver of discovery: the same lookup plan, asked with dns.asyncresolver."""

from __future__ import annotations

from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.resolver

from dnsbalance._discovery import (
    Plan,
    Question,
    Reply,
    configure_resolver,
    lookup_plan,
    question_error,
    servers_for,
)
from dnsbalance._endpoints import Endpoint
from dnsbalance._target import Target, parse_target

__all__ = ["discover", "make_resolver"]


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
    return await run_plan(lookup_plan(target), resolver)


async def run_plan(plan: Plan, resolver: dns.asyncresolver.Resolver) -> tuple[Endpoint, ...]:
    """Drive a lookup plan with an asyncio resolver."""
    try:
        question = next(plan)
        while True:
            question = plan.send(await _ask(resolver, question))
    except StopIteration as stop:
        result: tuple[Endpoint, ...] = stop.value
        return result


async def _ask(resolver: dns.asyncresolver.Resolver, question: Question) -> Reply:
    try:
        return await resolver.resolve(
            question.name, question.rdtype, search=False, raise_on_no_answer=False
        )
    except dns.resolver.NXDOMAIN:
        return None
    except dns.exception.DNSException as exc:
        raise question_error(exc, question, resolver) from exc
