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

from dnsbalance._exceptions import ConfigError, ResolutionError, resolution_error
from dnsbalance._target import Target

from .plan import Question

EDNS_PAYLOAD = 1232


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
        raise ConfigError(
            f"bad nameserver {text!r}: expected IP or IP:PORT (e.g. 10.96.0.10, "
            "127.0.0.1:5353, [::1]:5353); host names are not accepted"
        ) from None
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
            names.append(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
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
