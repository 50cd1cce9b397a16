"""discover() against real DNS servers: BIND9 and the embedded responder."""

from __future__ import annotations

import time
from typing import Any

import dns.rcode
import pytest

from dnsbalance import ConfigError, Endpoint, ResolutionError, discover
from dnsbalance._dns.servers import parse_nameserver
from dnsbalance.testing import DNSResponder, Pod

PORTS = {"grpc": 9000, "metrics": 9100}


def addresses(endpoints: tuple[Endpoint, ...]) -> list[str]:
    return [ep.address for ep in endpoints]


def test_numeric_port_uses_a_records(dns_server: Any, unique_service: str) -> None:
    for ip in ("10.0.0.3", "10.0.0.1", "10.0.0.20"):
        dns_server.add_pod(unique_service, "ns", ip)
    found = discover(f"{unique_service}.ns:8000", nameservers=[dns_server.address])
    assert addresses(found) == ["10.0.0.1", "10.0.0.3", "10.0.0.20"]
    assert {ep.port for ep in found} == {8000}
    assert all(ep.hostname is None and ep.ttl == 5 for ep in found)


@pytest.mark.parametrize(
    "form",
    [
        "kubernetes:///{svc}.ns:8000",
        "kubernetes://ns/{svc}:8000",
        "dns:///{svc}.ns.svc.cluster.local:8000",
        "{svc}.ns:8000",
        "{svc}.ns.svc.cluster.local:8000",
    ],
)
def test_every_target_form(dns_server: Any, unique_service: str, form: str) -> None:
    dns_server.add_pod(unique_service, "ns", "10.1.0.1")
    found = discover(form.format(svc=unique_service), nameservers=[dns_server.address])
    assert addresses(found) == ["10.1.0.1"]


def test_namespace_default_and_dns_server_in_authority(
    dns_server: Any, unique_service: str
) -> None:
    dns_server.add_pod(unique_service, "default", "10.1.0.2")
    assert addresses(
        discover(f"kubernetes:///{unique_service}:8000", nameservers=[dns_server.address])
    )
    found = discover(f"dns://{dns_server.address}/{unique_service}.default.svc.cluster.local:80")
    assert addresses(found) == ["10.1.0.2"]


def test_ipv6_and_dual_stack(dns_server: Any, unique_service: str) -> None:
    dns_server.add_pod(unique_service, "ns", "fd00::2")
    dns_server.add_pod(unique_service, "ns", "10.2.0.1")
    dns_server.add_pod(unique_service, "ns", "fd00::1")
    found = discover(f"{unique_service}.ns:8000", nameservers=[dns_server.address])
    assert addresses(found) == ["10.2.0.1", "fd00::1", "fd00::2"]
    assert found[1].hostport == "[fd00::1]:8000"


def test_named_port_uses_srv(dns_server: Any, unique_service: str) -> None:
    dns_server.set_service(
        unique_service,
        "ns",
        [Pod(ip="10.3.0.2"), Pod(ip="10.3.0.1", hostname="web-0"), Pod(ip="fd00::3")],
        ports=PORTS,
    )
    found = discover(f"{unique_service}.ns:grpc", nameservers=[dns_server.address])
    assert [(ep.address, ep.port, ep.hostname) for ep in found] == [
        ("10.3.0.1", 9000, "web-0"),
        ("10.3.0.2", 9000, None),
        ("fd00::3", 9000, None),
    ]
    metrics = discover(f"{unique_service}.ns:metrics", nameservers=[dns_server.address])
    assert {ep.port for ep in metrics} == {9100}
    assert discover(f"{unique_service}.ns:nope", nameservers=[dns_server.address]) == ()


def test_srv_targets_resolved_when_additional_section_is_missing(embedded_dns: Any) -> None:
    """A server that leaves out the Additional section: dashed-IP targets are matched
    against the Service's own A records; hostname targets are looked up one by one."""
    pods = [Pod(ip="10.4.0.1"), Pod(ip="10.4.0.2"), Pod(ip="10.4.0.3", hostname="web-0")]
    embedded_dns.set_service("noextra", "ns", pods, ports=PORTS)
    embedded_dns.additional = False
    before = embedded_dns.queries
    try:
        found = discover("noextra.ns:grpc", nameservers=[embedded_dns.address])
    finally:
        embedded_dns.additional = True
    assert [(ep.address, ep.hostname) for ep in found] == [
        ("10.4.0.1", None),
        ("10.4.0.2", None),
        ("10.4.0.3", "web-0"),
    ]
    # SRV, the Service's A and AAAA, then A and AAAA of web-0 alone.
    assert embedded_dns.queries - before == 5


def test_srv_without_additional_scales(embedded_dns: Any) -> None:
    pods = [Pod(ip=f"10.5.{i // 250}.{i % 250 + 1}") for i in range(300)]
    embedded_dns.set_service("noextra-big", "ns", pods, ports=PORTS)
    embedded_dns.additional = False
    before = embedded_dns.queries
    try:
        found = discover("noextra-big.ns:grpc", nameservers=[embedded_dns.address], timeout=5)
    finally:
        embedded_dns.additional = True
    assert len(found) == 300
    assert embedded_dns.queries - before <= 6  # UDP answers truncated, retried over TCP


def test_nxdomain_is_empty(dns_server: Any, unique_service: str) -> None:
    assert discover(f"{unique_service}.ns:8000", nameservers=[dns_server.address]) == ()
    dns_server.add_pod(unique_service, "ns", "10.5.0.1")
    assert discover(f"{unique_service}.ns:8000", nameservers=[dns_server.address])
    dns_server.remove_pod(unique_service, "ns", "10.5.0.1")
    assert discover(f"{unique_service}.ns:8000", nameservers=[dns_server.address]) == ()
    assert discover(f"{unique_service}.ns:grpc", nameservers=[dns_server.address]) == ()


def test_servfail_raises_with_server_and_reason(dns_server: Any) -> None:
    embedded = isinstance(dns_server, DNSResponder)
    if embedded:  # the embedded responder fails on demand
        dns_server.fail_rcode = dns.rcode.SERVFAIL
        target = "svc.ns:8000"
    else:  # BIND answers SERVFAIL for a zone it could not load
        target = "svc.ns.svc.broken.local:8000"
    try:
        with pytest.raises(ResolutionError) as info:
            discover(target, nameservers=[dns_server.address], timeout=1.0)
    finally:
        if embedded:
            dns_server.fail_rcode = None
    assert info.value.reason == "SERVFAIL"
    assert info.value.server == dns_server.address
    assert dns_server.address in str(info.value)


def test_refused_outside_the_zone(embedded_dns: Any) -> None:
    with pytest.raises(ResolutionError) as info:
        discover("svc.ns.svc.other.zone:80", nameservers=[embedded_dns.address])
    assert info.value.reason == "REFUSED"


def test_timeout_on_a_silent_server(silent_dns: str) -> None:
    started = time.monotonic()
    with pytest.raises(ResolutionError) as info:
        discover("svc.ns:8000", nameservers=[silent_dns], timeout=0.5)
    assert info.value.reason == "timeout"
    assert time.monotonic() - started < 2.0
    assert silent_dns in str(info.value)


def test_truncated_answers_are_retried_over_tcp(dns_server: Any, unique_service: str) -> None:
    pods = [Pod(ip=f"10.{100 + i // 250}.{i % 250}.1") for i in range(1000)]
    dns_server.set_service(unique_service, "ns", pods, ports=PORTS)
    found = discover(f"{unique_service}.ns:8000", nameservers=[dns_server.address], timeout=5.0)
    assert len(found) == 1000
    assert addresses(found) == sorted(addresses(found), key=lambda a: tuple(map(int, a.split("."))))
    srv = discover(f"{unique_service}.ns:grpc", nameservers=[dns_server.address], timeout=5.0)
    assert len(srv) == 1000
    assert {ep.port for ep in srv} == {9000}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.96.0.10", ("10.96.0.10", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_parse_nameserver(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    "text", ["dns.example", "1.2.3.4:x", "[::1", "[::1]x", "1.2.3.4:70000", ""]
)
def test_bad_nameserver(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_nameserver(text)


def test_bad_timeout() -> None:
    with pytest.raises(ConfigError):
        discover("svc.ns:80", nameservers=["127.0.0.1"], timeout=0)
