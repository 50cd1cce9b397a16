"""The poll_lookup drivers (dnsbalance._dns.sync and .aio) and their repeat-answer
shortcut, against real DNS servers (BIND9, the embedded responder, and a relay on loopback that
behaves like CoreDNS: shuffled records, TTLs counting down, stray datagrams).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import dns.flags
import dns.ipv4
import dns.ipv6
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from dnsbalance import Endpoint, ResolutionError, parse_target
from dnsbalance._dns import aio as aio_discovery
from dnsbalance._dns.answer_cache import AnswerCache
from dnsbalance._dns.plan import lookup_plan
from dnsbalance._dns.sync import ask, make_resolver, poll_lookup, run_plan
from dnsbalance.testing import Pod

PORTS = {"grpc": 9000}


def lookup_for(dns_server: Any, target: str, timeout: float = 2.0) -> Any:
    parsed = parse_target(target, cluster_domain="cluster.local")
    return poll_lookup(parsed, make_resolver([dns_server.address], timeout=timeout))


def by_dnspython(dns_server: Any, target: str, timeout: float = 2.0) -> tuple[Endpoint, ...]:
    """The oracle: the lookup plan asked through dnspython's resolver alone."""
    resolver = make_resolver([dns_server.address], timeout=timeout)
    parsed = parse_target(target, cluster_domain="cluster.local")
    return run_plan(lookup_plan(parsed), partial(ask, resolver))


def test_polls_find_what_dnspython_finds(dns_server: Any, unique_service: str) -> None:
    target = f"{unique_service}.ns:8000"
    lookup = lookup_for(dns_server, target)
    assert lookup() == () == by_dnspython(dns_server, target)  # NXDOMAIN
    steps = [["10.9.0.1"], ["10.9.0.1", "fd00::9"], ["10.9.0.2", "10.9.0.1"], ["fd00::9"], []]
    for hosts in steps:
        dns_server.set_service(unique_service, "ns", [Pod(ip=h) for h in hosts])
        first, second = lookup(), lookup()
        oracle = by_dnspython(dns_server, target)
        assert first == second == oracle
        assert [ep.ttl for ep in first] == [ep.ttl for ep in oracle]
        assert sorted(ep.address for ep in first) == sorted(hosts)


def test_an_unchanged_answer_is_not_read_again(dns_server: Any, unique_service: str) -> None:
    dns_server.set_service(unique_service, "ns", [Pod(ip="10.9.1.1"), Pod(ip="10.9.1.2")])
    lookup = lookup_for(dns_server, f"{unique_service}.ns:8000")
    first = lookup()
    assert lookup() is first  # the remembered result itself: nothing was parsed
    dns_server.add_pod(unique_service, "ns", "10.9.1.3")
    third = lookup()
    assert [ep.address for ep in third] == ["10.9.1.1", "10.9.1.2", "10.9.1.3"]
    assert lookup() is third


def test_named_ports_are_read_every_time(dns_server: Any, unique_service: str) -> None:
    pods = [Pod(ip="10.9.2.1"), Pod(ip="10.9.2.2", hostname="web-0")]
    dns_server.set_service(unique_service, "ns", pods, ports=PORTS)
    target = f"{unique_service}.ns:grpc"
    lookup = lookup_for(dns_server, target)
    assert lookup() == lookup() == by_dnspython(dns_server, target)
    dns_server.set_service(unique_service, "ns", pods[:1], ports=PORTS)
    assert [ep.address for ep in lookup()] == ["10.9.2.1"]


def test_truncated_answers_go_over_tcp(dns_server: Any, unique_service: str) -> None:
    pods = [Pod(ip=f"10.{110 + i // 250}.{i % 250}.1") for i in range(300)]
    dns_server.set_service(unique_service, "ns", pods)
    target = f"{unique_service}.ns:8000"
    lookup = lookup_for(dns_server, target, timeout=5.0)
    first = lookup()
    assert first == by_dnspython(dns_server, target, timeout=5.0)
    assert len(first) == 300
    for _ in range(3):
        assert lookup() is first  # over TCP now, and still not parsed again
    dns_server.set_service(unique_service, "ns", pods[:2])
    assert len(lookup()) == 2


def test_a_truncated_question_stays_on_tcp(embedded_dns: Any, unique_service: str) -> None:
    pods = [Pod(ip=f"10.{120 + i // 250}.{i % 250}.1") for i in range(200)]
    embedded_dns.set_service(unique_service, "ns", pods)
    lookup = lookup_for(embedded_dns, f"{unique_service}.ns:8000", timeout=5.0)
    before = embedded_dns.queries
    lookup()  # A over UDP (truncated), A over TCP, AAAA over UDP
    assert embedded_dns.queries - before == 3
    before = embedded_dns.queries
    lookup()  # A over TCP and AAAA over UDP, at once
    assert embedded_dns.queries - before == 2


def test_errors_come_from_dnspython(embedded_dns: Any, unique_service: str) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.9.3.1")
    lookup = lookup_for(embedded_dns, f"{unique_service}.ns:8000", timeout=1.0)
    assert lookup()
    embedded_dns.fail_rcode = dns.rcode.SERVFAIL
    try:
        with pytest.raises(ResolutionError) as info:
            lookup()
    finally:
        embedded_dns.fail_rcode = None
    assert info.value.reason == "SERVFAIL"
    assert [ep.address for ep in lookup()] == ["10.9.3.1"]


def test_a_silent_server_times_out_once(silent_dns: str) -> None:
    target = parse_target("svc.ns:8000", cluster_domain="cluster.local")
    lookup = poll_lookup(target, make_resolver([silent_dns], timeout=0.5))
    started = time.monotonic()
    with pytest.raises(ResolutionError) as info:
        lookup()
    assert info.value.reason == "timeout"
    assert silent_dns in str(info.value)
    assert time.monotonic() - started < 1.5  # the shortcut's wait, not its and dnspython's


def test_nothing_listening(unique_service: str) -> None:
    """ICMP port unreachable on the connected socket: dnspython has the last word."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    target = parse_target(f"{unique_service}.ns:8000", cluster_domain="cluster.local")
    with pytest.raises(ResolutionError):
        poll_lookup(target, make_resolver([closed], timeout=0.3))()


def test_several_nameservers_skip_the_shortcut(embedded_dns: Any, unique_service: str) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.9.4.1")
    resolver = make_resolver([embedded_dns.address, embedded_dns.address])
    assert AnswerCache(resolver).server is None
    target = parse_target(f"{unique_service}.ns:8000", cluster_domain="cluster.local")
    assert [ep.address for ep in poll_lookup(target, resolver)()] == ["10.9.4.1"]


class CoreDNSLike:
    """A relay on loopback in front of a real server that answers like CoreDNS with
    ``loadbalance`` and ``cache``: records shuffled, TTLs counting down. Before each
    answer it sends a datagram with the wrong ID and a runt, which must be ignored."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._rng = random.Random(7)
        self._ttl = 30
        self._thread = threading.Thread(target=self._run, name="coredns-like", daemon=True)

    def __enter__(self) -> CoreDNSLike:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _run(self) -> None:
        deadline = time.monotonic() + 60  # bounded, whatever the test does
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                query, client = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
                upstream.settimeout(2)
                upstream.sendto(query, self._upstream)
                answer = dns.message.from_wire(upstream.recv(65535))
            self._ttl = self._ttl - 1 if self._ttl > 1 else 30
            records = [
                dns.rrset.from_rdata_list(rrset.name, self._ttl, [rd])
                for rrset in answer.answer
                for rd in rrset
            ]
            self._rng.shuffle(records)
            answer.answer = records
            wire = answer.to_wire()
            wrong_id = bytes([wire[0] ^ 0xFF]) + wire[1:]
            self._sock.sendto(wrong_id, client)
            self._sock.sendto(b"\x00", client)
            self._sock.sendto(wire, client)


@pytest.fixture
def coredns_like(embedded_dns: Any) -> Iterator[CoreDNSLike]:
    with CoreDNSLike(embedded_dns.address) as relay:
        yield relay


def test_shuffled_answers_with_ttls_counting_down(
    embedded_dns: Any, coredns_like: CoreDNSLike, unique_service: str
) -> None:
    hosts = [f"10.9.5.{i}" for i in range(1, 8)]
    embedded_dns.set_service(unique_service, "ns", [Pod(ip=h) for h in hosts])
    lookup = lookup_for(coredns_like, f"{unique_service}.ns:8000")
    first = lookup()
    assert [ep.address for ep in first] == hosts
    for _ in range(5):
        assert lookup() is first
    embedded_dns.remove_pod(unique_service, "ns", hosts[0])
    assert [ep.address for ep in lookup()] == hosts[1:]


def test_async_polls_match_and_repeat(dns_server: Any, unique_service: str) -> None:
    target = parse_target(f"{unique_service}.ns:8000", cluster_domain="cluster.local")

    async def scenario() -> None:
        resolver = aio_discovery.make_resolver([dns_server.address], timeout=2.0)
        lookup = aio_discovery.poll_lookup(target, resolver)
        assert await lookup() == ()
        dns_server.set_service(unique_service, "ns", [Pod(ip="10.9.6.1"), Pod(ip="fd00::6")])
        first = await lookup()
        assert first == by_dnspython(dns_server, f"{unique_service}.ns:8000")
        assert first == await aio_discovery.discover(target, resolver=resolver)
        assert await lookup() is first
        dns_server.add_pod(unique_service, "ns", "10.9.6.2")
        assert [ep.address for ep in await lookup()] == ["10.9.6.1", "10.9.6.2", "fd00::6"]

    asyncio.run(scenario())


def test_async_shuffled_answers_and_timeouts(
    coredns_like: CoreDNSLike, embedded_dns: Any, silent_dns: str, unique_service: str
) -> None:
    embedded_dns.set_service(unique_service, "ns", [Pod(ip=f"10.9.7.{i}") for i in (1, 2, 3)])
    target = parse_target(f"{unique_service}.ns:8000", cluster_domain="cluster.local")

    async def scenario() -> None:
        relay = aio_discovery.make_resolver([coredns_like.address], timeout=2.0)
        lookup = aio_discovery.poll_lookup(target, relay)
        first = await lookup()
        assert len(first) == 3
        assert await lookup() is first
        silent = aio_discovery.poll_lookup(
            target, aio_discovery.make_resolver([silent_dns], timeout=0.5)
        )
        started = time.monotonic()
        with pytest.raises(ResolutionError) as info:
            await silent()
        assert info.value.reason == "timeout"
        assert time.monotonic() - started < 1.5

    asyncio.run(scenario())
