"""Endpoint discovery through cluster DNS (dnspython).

What to ask and how to read the answers is written once, as a *lookup plan*: a
generator that yields DNS questions and receives the answers. The sync driver
here (:func:`discover`) and the asyncio driver only do the I/O, the way
dnspython's own ``_Resolution`` is shared by its two resolvers.

- Numeric port: A and AAAA of ``<svc>.<ns>.svc.<domain>``.
- Named port: SRV ``_<name>._tcp.<svc>.<ns>.svc.<domain>``; target addresses come
  from the Additional section when present, else from A/AAAA queries.
- NXDOMAIN is an empty answer (a headless Service with no ready endpoint);
  NODATA for AAAA is normal. SERVFAIL, REFUSED and timeouts raise
  :class:`~dnsbalance.ResolutionError`. Truncated UDP answers are retried over TCP
  by dnspython; queries carry EDNS with a 1232-byte payload so answers of up to
  ~70 addresses still fit in one UDP datagram.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from dns.rdtypes.IN.SRV import SRV

from ._endpoints import Endpoint, dashed_ip, normalize
from ._exceptions import ConfigError, resolution_error
from ._target import Target, parse_target

__all__ = [
    "Question",
    "configure_resolver",
    "discover",
    "lookup_plan",
    "make_resolver",
    "parse_nameserver",
    "run_plan",
    "servers_for",
]

EDNS_PAYLOAD = 1232


@dataclass(frozen=True)
class Question:
    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType


# The answer sent back into a plan: an Answer (rrset None for NODATA) or None for NXDOMAIN.
Reply = dns.resolver.Answer | None
Plan = Generator[Question, Reply, tuple[Endpoint, ...]]


def lookup_plan(target: Target) -> Plan:
    """The questions that find ``target``'s ready endpoints, and how to read the answers."""
    name = dns.name.from_text(target.fqdn)
    if target.port_name is None:
        assert isinstance(target.port, int)
        return (yield from _address_plan(name, target.port, hostname=None))
    return (yield from _srv_plan(dns.name.from_text(target.srv_name), name))


def _address_plan(name: dns.name.Name, port: int, *, hostname: str | None) -> Plan:
    found: list[Endpoint] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        reply = yield Question(name, rdtype)
        if reply is None:  # NXDOMAIN: the name has no records of any type
            break
        found.extend(_addresses(reply, port, hostname))
    return normalize(found)


def _addresses(reply: dns.resolver.Answer, port: int, hostname: str | None) -> list[Endpoint]:
    if reply.rrset is None:
        return []
    ttl = reply.rrset.ttl
    return [Endpoint(address=rd.address, port=port, hostname=hostname, ttl=ttl) for rd in reply]


def _srv_plan(srv_name: dns.name.Name, service_name: dns.name.Name) -> Plan:
    reply = yield Question(srv_name, dns.rdatatype.SRV)
    if reply is None or reply.rrset is None:
        return ()
    srv_ttl = reply.rrset.ttl
    # Target addresses that came in the Additional section, by name.
    extra: dict[dns.name.Name, list[tuple[str, int]]] = {}
    for rrset in reply.response.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            extra.setdefault(rrset.name, []).extend((rd.address, rrset.ttl) for rd in rrset)
    records = [rd for rd in reply if isinstance(rd, SRV) and rd.port != 0]
    missing = [rd for rd in records if rd.target not in extra]
    if missing:
        # No Additional records (BIND leaves them out of large answers, some servers
        # always do). One A/AAAA lookup of the Service name gives every ready address;
        # a target named by the dashed form of one of them (CoreDNS's name for a pod
        # without hostname) is that address. Only targets with a real hostname are
        # looked up one by one, so 1000 endpoints cost 3 queries, not 2001.
        by_dashed = {
            dashed_ip(ep.address): ep
            for ep in (yield from _address_plan(service_name, 0, hostname=None))
        }
        for rd in missing:
            label = _hostname(rd.target, service_name)
            known = by_dashed.get(label) if label is not None else None
            if known is not None:
                extra[rd.target] = [(known.address, known.ttl or srv_ttl)]
            else:
                extra[rd.target] = [
                    (ep.address, ep.ttl or srv_ttl)
                    for ep in (yield from _address_plan(rd.target, rd.port, hostname=None))
                ]
    found: list[Endpoint] = []
    for rd in records:
        hostname = _hostname(rd.target, service_name)
        for address, ttl in extra[rd.target]:
            found.append(
                Endpoint(
                    address=address,
                    port=rd.port,
                    hostname=None if hostname == dashed_ip(address) else hostname,
                    ttl=min(ttl, srv_ttl),
                )
            )
    return normalize(found)


def _hostname(target: dns.name.Name, service_name: dns.name.Name) -> str | None:
    """The pod hostname of an SRV target ``<host>.<svc>.<ns>.svc.<domain>``, if it is one."""
    if not target.is_subdomain(service_name) or target == service_name:
        return None
    label = target.relativize(service_name).labels[0]
    return label.decode("ascii", errors="replace").lower()


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"10.96.0.10"``, ``"127.0.0.1:5353"``, ``"::1"`` or ``"[::1]:5353"`` -> (host, port)."""
    host, port = text.strip(), 53
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :] if end > 0 else "?"
        host = host[1:end]
        if rest:
            if not rest.startswith(":") or not _is_port_text(rest[1:]):
                raise ConfigError(f"bad nameserver {text!r}: expected [ADDRESS]:PORT")
            port = _port_number(rest[1:])
    elif host.count(":") == 1:
        host, port_text = host.split(":")
        if not _is_port_text(port_text):
            raise ConfigError(f"bad nameserver {text!r}: the port must be a number")
        port = _port_number(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"bad nameserver {text!r}: expected an IP address, HOST:PORT") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"bad nameserver {text!r}: port out of range")
    return host, port


def _is_port_text(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` alone takes '²', which int() refuses)."""
    return text.isascii() and text.isdigit()


def _port_number(digits: str) -> int:
    """0 (out of range) past 5 digits, which keeps int() from its 4300-digit limit."""
    return int(digits) if len(digits) <= 5 else 0


def servers_for(target: Target, nameservers: Sequence[str] | None) -> tuple[str, ...] | None:
    """The DNS servers to ask: ``nameservers`` when given, else the server a ``dns://``
    target names, else None (resolv.conf's)."""
    if nameservers:
        return tuple(nameservers)
    return (target.dns_server,) if target.dns_server else None


R = TypeVar("R", bound=dns.resolver.BaseResolver)


def make_resolver(
    nameservers: Sequence[str] | None = None, *, timeout: float = 2.0
) -> dns.resolver.Resolver:
    """A new sync resolver configured for discovery (see :func:`configure_resolver`)."""
    return configure_resolver(
        dns.resolver.Resolver(configure=not nameservers), nameservers, timeout=timeout
    )


def configure_resolver(resolver: R, nameservers: Sequence[str] | None, *, timeout: float) -> R:
    """Set ``resolver`` up for discovery: no cache (every poll must reach the server),
    EDNS on, ``timeout`` as the lifetime, and ``nameservers`` (``host[:port]``
    strings) in place of resolv.conf's when given."""
    if timeout <= 0:
        raise ConfigError(f"timeout must be positive, got {timeout}")
    if nameservers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port)
            for host, port in map(parse_nameserver, nameservers)
        ]
    resolver.cache = None
    resolver.lifetime = timeout
    resolver.timeout = timeout
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    return resolver


def describe_servers(resolver: dns.resolver.BaseResolver) -> str:
    names = []
    for ns in resolver.nameservers:
        if isinstance(ns, dns.nameserver.Nameserver):
            address, port = ns.answer_nameserver(), ns.answer_port()
            names.append(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
        else:
            names.append(str(ns))
    return ", ".join(names) or "(no nameserver)"


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
    return run_plan(lookup_plan(target), resolver)


def run_plan(plan: Plan, resolver: dns.resolver.Resolver) -> tuple[Endpoint, ...]:
    """Drive a lookup plan with a sync resolver."""
    try:
        question = next(plan)
        while True:
            question = plan.send(ask(resolver, question))
    except StopIteration as stop:
        result: tuple[Endpoint, ...] = stop.value
        return result


def ask(resolver: dns.resolver.Resolver, question: Question) -> Reply:
    try:
        return resolver.resolve(
            question.name, question.rdtype, search=False, raise_on_no_answer=False
        )
    except dns.resolver.NXDOMAIN:
        return None
    except dns.exception.DNSException as exc:
        raise question_error(exc, question, resolver) from exc


def question_error(
    exc: dns.exception.DNSException, question: Question, resolver: dns.resolver.BaseResolver
) -> Exception:
    return resolution_error(
        exc,
        qname=question.name.to_text(omit_final_dot=True),
        rdtype=dns.rdatatype.to_text(question.rdtype),
        servers=describe_servers(resolver),
    )
