"""dnspython as the oracle: what its stub resolver makes of given response bytes.

:func:`dnspython_reads` runs the very steps ``dns.resolver.Resolver.resolve`` runs
on one datagram (``dns.query.receive_udp``'s ``from_wire`` and ``is_response``
checks with ``ignore_errors``, then ``_Resolution.query_result``), without a
socket, so thousands of generated messages can be judged per second. The network
tests hold this oracle against the real resolver on a loopback server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from dnsbalance import Endpoint
from dnsbalance._dns.plan import Question, Reply, lookup_plan
from dnsbalance._dns.sync import run_plan
from dnsbalance._target import Target


class Rejected(Exception):
    """dnspython's resolver does not take this answer: it ignores the datagram (and
    times out), drops the server (and raises NoNameservers), or raises."""


@dataclasses.dataclass(frozen=True)
class Truncated:
    """A truncated UDP answer to our query: dnspython asks again over TCP."""


TRUNCATED = Truncated()


def dnspython_reads(query: bytes, response: bytes, *, tcp: bool = False) -> Reply | Truncated:
    """The Reply dnspython's resolver returns for ``response`` to ``query`` (None:
    NXDOMAIN), TRUNCATED, or raises Rejected."""
    request = dns.message.from_wire(query)
    try:
        message = dns.message.from_wire(response, raise_on_truncation=not tcp)
    except dns.message.Truncated as exc:
        if request.is_response(exc.message()):
            return TRUNCATED
        raise Rejected("ignored: truncated, not a response to our query") from exc
    except Exception as exc:  # receive_udp(ignore_errors=True) ignores it
        raise Rejected(f"ignored: {type(exc).__name__}") from exc
    if not request.is_response(message):
        raise Rejected("ignored: not a response to our query")
    question = request.question[0]
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", 53)]
    resolver.cache = None
    resolution = dns.resolver._Resolution(
        resolver, question.name, question.rdtype, dns.rdataclass.IN, tcp, False, False
    )
    resolution.next_request()
    resolution.next_nameserver()
    try:
        answer, done = resolution.query_result(message, None)  # type: ignore[arg-type]
    except dns.exception.DNSException as exc:
        raise Rejected(f"raised {type(exc).__name__}") from exc
    if answer is not None:
        return answer
    if done:
        return None  # NXDOMAIN
    raise Rejected(f"server dropped: {resolution.errors[-1][3]}")


def plan_by_oracle(
    target: Target, answer: Callable[[Question], tuple[bytes, bytes]]
) -> tuple[Endpoint, ...]:
    """The lookup plan, every question answered by dnspython's reading of the bytes
    ``answer(question)`` gives (query, response). Raises Rejected."""

    def ask(question: Question) -> Reply:
        query, response = answer(question)
        reply = dnspython_reads(query, response)
        if isinstance(reply, Truncated):
            raise Rejected("truncated")
        return reply

    return run_plan(lookup_plan(target), ask)


def same_endpoints(a: tuple[Endpoint, ...], b: tuple[Endpoint, ...]) -> bool:
    """Equal as endpoint sets, TTLs included."""
    return a == b and [e.ttl for e in a] == [e.ttl for e in b]


def query_for(name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.QueryMessage:
    """The query dnsbalance sends (EDNS 0, payload 1232), as dnspython writes it."""
    query = dns.message.make_query(dns.name.from_text(name), rdtype, use_edns=0, payload=1232)
    assert isinstance(query, dns.message.QueryMessage)
    return query
