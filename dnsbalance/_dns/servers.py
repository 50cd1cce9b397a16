"""Which DNS servers to ask and how to set dnspython's resolver up: shared by the sync
and asyncio drivers, with the translation of a failed question into ResolutionError."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TypeVar

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from dnsbalance._endpoints import host_port
from dnsbalance._exceptions import ConfigError, ResolutionError, resolution_error
from dnsbalance._target import HostPortError, Target, split_host_port

from .plan import Question

EDNS_PAYLOAD = 1232


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"10.96.0.10"``, ``"127.0.0.1:5353"``, ``"::1"`` or ``"[::1]:5353"`` -> (host, port)."""
    try:
        host, port = split_host_port(text.strip(), 53)
    except HostPortError as exc:
        if exc.problem == "bracket" or text.strip().startswith("["):
            raise ConfigError(f"bad nameserver {text!r}: expected [ADDRESS]:PORT") from None
        raise ConfigError(f"bad nameserver {text!r}: the port must be a number") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"bad nameserver {text!r}: expected IP or IP:PORT (e.g. 10.96.0.10, "
            "127.0.0.1:5353, [::1]:5353); host names are not accepted"
        ) from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"bad nameserver {text!r}: port out of range")
    return host, port


def servers_for(target: Target, nameservers: Sequence[str] | None) -> tuple[str, ...] | None:
    """The DNS servers to ask: ``nameservers`` when given, else the server a ``dns://``
    target names, else None (resolv.conf's). One string is one server; an empty list is
    refused (None means resolv.conf's)."""
    if isinstance(nameservers, str):
        return (nameservers,)
    if nameservers is not None:
        if not nameservers:
            raise ConfigError("nameservers=[] names no DNS server: pass None for resolv.conf's")
        return tuple(nameservers)
    return (target.dns_server,) if target.dns_server else None


R = TypeVar("R", bound=dns.resolver.BaseResolver)


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
            names.append(host_port(address, port))
        else:
            names.append(str(ns))
    return ", ".join(names) or "(no nameserver)"


def question_error(
    exc: dns.exception.DNSException, question: Question, resolver: dns.resolver.BaseResolver
) -> Exception:
    return resolution_error(
        exc,
        qname=question.name.to_text(omit_final_dot=True),
        rdtype=dns.rdatatype.to_text(question.rdtype),
        servers=describe_servers(resolver),
    )


def question_timeout(question: Question, resolver: dns.resolver.BaseResolver) -> ResolutionError:
    """No answer within the resolver's lifetime (the repeat-answer shortcut's timeout)."""
    return ResolutionError(
        qname=question.name.to_text(omit_final_dot=True),
        rdtype=dns.rdatatype.to_text(question.rdtype),
        server=describe_servers(resolver),
        reason="timeout",
        detail=f"no answer in {resolver.lifetime:g} s",
    )
