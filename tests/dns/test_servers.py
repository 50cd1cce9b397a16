"""The DNS test infrastructure itself: BIND9 and the embedded responder publish alike."""

from __future__ import annotations

import socket
import struct
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

import dnsbalance.testing
from dnsbalance._channel.zone_server import ZoneResponder
from dnsbalance._exceptions import ClosedError
from dnsbalance.testing import BindServer, DNSResponder, Pod, ServiceRegistry, service_rrsets

Server = BindServer | DNSResponder


def resolver(server: Server | ZoneResponder, lifetime: float = 3.0) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [dns.nameserver.Do53Nameserver(server.host, server.port)]
    res.lifetime = lifetime
    res.timeout = lifetime
    return res


def query(
    server: Server | ZoneResponder, name: str, rdtype: str, *, tcp: bool = False, edns: int = -1
) -> dns.message.Message:
    """One raw query, no retry: shows exactly what the server sent."""
    q = dns.message.make_query(name, rdtype, use_edns=edns)
    if tcp:
        return dns.query.tcp(q, server.host, port=server.port, timeout=5)
    return dns.query.udp(q, server.host, port=server.port, timeout=2, raise_on_truncation=False)


def fqdn(svc: str, ns: str = "ns") -> str:
    return f"{svc}.{ns}.svc.cluster.local."


def texts(rrset: dns.rrset.RRset | None) -> list[str]:
    assert rrset is not None
    return sorted(rdata.to_text() for rdata in rrset)


# -- both servers ------------------------------------------------------------------


def test_a_records_after_add_pod(dns_server: Server, unique_service: str) -> None:
    for ip in ("10.244.1.5", "10.244.2.6"):
        dns_server.add_pod(unique_service, "ns", ip)
    answer = resolver(dns_server).resolve(fqdn(unique_service), "A")
    assert texts(answer.rrset) == ["10.244.1.5", "10.244.2.6"]
    assert answer.rrset is not None
    assert answer.rrset.ttl == 5
    assert answer.response.flags & dns.flags.AA


def test_srv_dashed_ip_targets_with_additional(dns_server: Server, unique_service: str) -> None:
    dns_server.set_service(unique_service, "ns", ["10.244.1.5", "10.244.2.6"], ports={"grpc": 9000})
    answer = resolver(dns_server).resolve(f"_grpc._tcp.{fqdn(unique_service)}", "SRV")
    assert texts(answer.rrset) == [
        f"0 50 9000 10-244-1-5.{fqdn(unique_service)}",
        f"0 50 9000 10-244-2-6.{fqdn(unique_service)}",
    ]
    additional = {(r.name.to_text(), r.rdtype): texts(r) for r in answer.response.additional}
    assert additional == {
        (f"10-244-1-5.{fqdn(unique_service)}", dns.rdatatype.A): ["10.244.1.5"],
        (f"10-244-2-6.{fqdn(unique_service)}", dns.rdatatype.A): ["10.244.2.6"],
    }


def test_hostname_targets(dns_server: Server, unique_service: str) -> None:
    pods = [Pod(ip="10.1.0.1", hostname="web-0"), Pod(ip="10.1.0.2")]
    dns_server.set_service(unique_service, "ns", pods, ports={"grpc": 9000, "metrics": 9100})
    res = resolver(dns_server)
    srv = res.resolve(f"_metrics._tcp.{fqdn(unique_service)}", "SRV")
    assert texts(srv.rrset) == [
        f"0 50 9100 10-1-0-2.{fqdn(unique_service)}",
        f"0 50 9100 web-0.{fqdn(unique_service)}",
    ]
    assert texts(res.resolve(f"web-0.{fqdn(unique_service)}", "A").rrset) == ["10.1.0.1"]


def test_aaaa_for_ipv6_pods(dns_server: Server, unique_service: str) -> None:
    dns_server.set_service(unique_service, "ns", ["fd00::1", "10.2.0.1", "fd00::"], {"grpc": 80})
    res = resolver(dns_server)
    assert texts(res.resolve(fqdn(unique_service), "AAAA").rrset) == ["fd00::", "fd00::1"]
    assert texts(res.resolve(fqdn(unique_service), "A").rrset) == ["10.2.0.1"]
    srv = res.resolve(f"_grpc._tcp.{fqdn(unique_service)}", "SRV")
    targets = sorted(rdata.target.labels[0].decode() for rdata in srv)
    assert targets == ["10-2-0-1", "fd00--0", "fd00--1"]
    assert {rdata.weight for rdata in srv} == {33}
    assert texts(res.resolve(f"fd00--1.{fqdn(unique_service)}", "AAAA").rrset) == ["fd00::1"]


def test_nxdomain_after_last_pod_removed(dns_server: Server, unique_service: str) -> None:
    dns_server.add_pod(unique_service, "ns", "10.3.0.1", ports={"grpc": 9000})
    dns_server.add_pod(unique_service, "ns", "10.3.0.2")
    dns_server.remove_pod(unique_service, "ns", "10.3.0.1")
    assert texts(resolver(dns_server).resolve(fqdn(unique_service), "A").rrset) == ["10.3.0.2"]
    dns_server.remove_pod(unique_service, "ns", "10.3.0.2")
    for name, rdtype in [
        (fqdn(unique_service), "A"),
        (f"_grpc._tcp.{fqdn(unique_service)}", "SRV"),
        (f"10-3-0-2.{fqdn(unique_service)}", "A"),
    ]:
        with pytest.raises(dns.resolver.NXDOMAIN):
            resolver(dns_server).resolve(name, rdtype)
        reply = query(dns_server, name, rdtype)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]
        assert reply.flags & dns.flags.AA


def test_remove_service(dns_server: Server, unique_service: str) -> None:
    dns_server.set_service(unique_service, "ns", ["10.3.1.1"], ports={"grpc": 9000})
    dns_server.remove_service(unique_service, "ns")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver(dns_server).resolve(f"_grpc._tcp.{fqdn(unique_service)}", "SRV")


def test_nodata_for_aaaa_on_ipv4_only_service(dns_server: Server, unique_service: str) -> None:
    dns_server.add_pod(unique_service, "ns", "10.4.0.1", ports={"grpc": 9000})
    res = resolver(dns_server)
    with pytest.raises(dns.resolver.NoAnswer):
        res.resolve(fqdn(unique_service), "AAAA")
    answer = res.resolve(fqdn(unique_service), "AAAA", raise_on_no_answer=False)
    assert answer.rrset is None
    assert answer.response.rcode() == dns.rcode.NOERROR
    assert [r.rdtype for r in answer.response.authority] == [dns.rdatatype.SOA]
    # An empty non-terminal (a name with names below it) is NODATA too, not NXDOMAIN.
    reply = query(dns_server, f"_tcp.{fqdn(unique_service)}", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer


def test_1000_pods_truncated_over_udp_complete_over_tcp(
    dns_server: Server, unique_service: str
) -> None:
    pods = [Pod(ip=f"10.{100 + i // 250}.{i % 250}.1") for i in range(1000)]
    dns_server.set_service(unique_service, "ns", pods, ports={"grpc": 9000})
    srv_name = f"_grpc._tcp.{fqdn(unique_service)}"
    for name, rdtype in [(fqdn(unique_service), "A"), (srv_name, "SRV")]:
        reply = query(dns_server, name, rdtype)
        assert reply.flags & dns.flags.TC
        assert len(reply.to_wire()) <= 512
        answer = resolver(dns_server, lifetime=5).resolve(name, rdtype)
        assert answer.rrset is not None
        assert len(answer.rrset) == 1000
    assert {rdata.weight for rdata in answer} == {1}  # 100 // 1000, at least 1
    tcp = query(dns_server, srv_name, "SRV", tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 1000


def test_refused_outside_the_zone(dns_server: Server) -> None:
    assert query(dns_server, "svc.ns.svc.example.org.", "A").rcode() == dns.rcode.REFUSED
    with pytest.raises(dns.resolver.NoNameservers, match="REFUSED"):
        resolver(dns_server).resolve("svc.ns.svc.example.org.", "A")


def test_apex_soa_and_ns(dns_server: Server) -> None:
    res = resolver(dns_server)
    soa = res.resolve("cluster.local.", "SOA").rrset
    assert soa is not None
    assert soa[0].mname.to_text() == "ns.dns.cluster.local."
    assert texts(res.resolve("cluster.local.", "NS").rrset) == ["ns.dns.cluster.local."]


# -- BIND only ---------------------------------------------------------------------


@pytest.mark.bind
def test_bind_servfail_for_a_zone_that_failed_to_load(bind_server: BindServer) -> None:
    name = f"svc.ns.svc.{bind_server.broken_zone}."
    assert query(bind_server, name, "A").rcode() == dns.rcode.SERVFAIL
    with pytest.raises(dns.resolver.NoNameservers, match="SERVFAIL"):
        resolver(bind_server).resolve(name, "A")


# -- the embedded responder --------------------------------------------------------


def test_fail_rcode(embedded_dns: DNSResponder, unique_service: str) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.5.0.1")
    embedded_dns.fail_rcode = dns.rcode.SERVFAIL
    try:
        assert query(embedded_dns, fqdn(unique_service), "A").rcode() == dns.rcode.SERVFAIL
        with pytest.raises(dns.resolver.NoNameservers, match="SERVFAIL"):
            resolver(embedded_dns).resolve(fqdn(unique_service), "A")
    finally:
        embedded_dns.fail_rcode = None
    assert texts(resolver(embedded_dns).resolve(fqdn(unique_service), "A").rrset) == ["10.5.0.1"]


def test_drop_times_out_and_counts(embedded_dns: DNSResponder, unique_service: str) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.5.0.2")
    before = embedded_dns.queries
    embedded_dns.drop = True
    try:
        started = time.monotonic()
        with pytest.raises(dns.resolver.LifetimeTimeout):
            resolver(embedded_dns, lifetime=0.3).resolve(fqdn(unique_service), "A")
        assert time.monotonic() - started < 1.5
    finally:
        embedded_dns.drop = False
    assert embedded_dns.queries > before


def test_delay(embedded_dns: DNSResponder, unique_service: str) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.5.0.3")
    embedded_dns.delay = 0.2
    try:
        started = time.monotonic()
        resolver(embedded_dns).resolve(fqdn(unique_service), "A")
        assert time.monotonic() - started >= 0.2
    finally:
        embedded_dns.delay = 0.0


def test_additional_knob(embedded_dns: DNSResponder, unique_service: str) -> None:
    embedded_dns.set_service(unique_service, "ns", ["10.5.0.4"], ports={"grpc": 1})
    embedded_dns.additional = False
    try:
        reply = query(embedded_dns, f"_grpc._tcp.{fqdn(unique_service)}", "SRV")
    finally:
        embedded_dns.additional = True
    assert reply.answer
    assert not reply.additional


def test_silent_dns_times_out(silent_dns: str) -> None:
    host, port = silent_dns.rsplit(":", 1)
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [dns.nameserver.Do53Nameserver(host, int(port))]
    res.lifetime = 0.3
    with pytest.raises(dns.resolver.LifetimeTimeout):
        res.resolve("svc.ns.svc.cluster.local.", "A")
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(dns.message.make_query("x.", "A"), host, port=int(port), timeout=0.3)


def test_edns_payload_is_honoured(embedded_dns: DNSResponder, unique_service: str) -> None:
    embedded_dns.set_service(unique_service, "ns", [f"10.6.0.{i}" for i in range(1, 101)])
    plain = query(embedded_dns, fqdn(unique_service), "A")
    assert plain.flags & dns.flags.TC
    assert not plain.answer
    assert plain.edns < 0
    small = query(embedded_dns, fqdn(unique_service), "A", edns=0)  # dnspython: payload 1232
    assert small.flags & dns.flags.TC
    assert small.edns == 0
    big = dns.message.make_query(fqdn(unique_service), "A", use_edns=0, payload=4096)
    reply = dns.query.udp(big, embedded_dns.host, port=embedded_dns.port, timeout=2)
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 100


def test_1000_srv_with_additional_fit_in_one_tcp_message() -> None:
    with ZoneResponder("cluster.local") as server:
        server.replace(
            service_rrsets(
                service="big",
                namespace="ns",
                zone="cluster.local",
                pods=[Pod(ip=f"10.7.{i // 250}.{i % 250}") for i in range(1000)],
                ports={"grpc": 9000},
            )
        )
        started = time.monotonic()
        reply = query(server, "_grpc._tcp.big.ns.svc.cluster.local.", "SRV", tcp=True)
        elapsed = time.monotonic() - started
    assert len(reply.answer[0]) == 1000
    assert not reply.flags & dns.flags.TC
    assert 0 < len(reply.additional) < 1000  # what fits after the SRV records
    assert len(reply.to_wire()) <= 65535
    assert elapsed < 2.0


def test_malformed_queries(embedded_dns: DNSResponder) -> None:
    address = (embedded_dns.host, embedded_dns.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        # A header claiming a question that is cut short: FORMERR, id and RD echoed.
        sock.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03abc", address)
        reply = sock.recv(512)
        assert reply[:2] == b"\x12\x34"
        flags = struct.unpack("!H", reply[2:4])[0]
        assert flags & dns.flags.QR
        assert flags & dns.flags.RD
        assert flags & 0xF == dns.rcode.FORMERR
        # Not even a header: no reply, and the server keeps serving.
        sock.sendto(b"\x00", address)
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(512)
    assert query(embedded_dns, "cluster.local.", "SOA").answer


def test_tcp_several_queries_per_connection(embedded_dns: DNSResponder) -> None:
    with socket.create_connection((embedded_dns.host, embedded_dns.port), timeout=2) as sock:
        for i in range(3):
            wire = dns.message.make_query("cluster.local.", "SOA", id=i).to_wire()
            sock.sendall(struct.pack("!H", len(wire)) + wire)
        for i in range(3):
            (length,) = struct.unpack("!H", _recv_exact(sock, 2))
            assert dns.message.from_wire(_recv_exact(sock, length)).id == i


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = b""
    for _ in range(100):
        if len(buf) == size:
            return buf
        chunk = sock.recv(size - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    raise AssertionError("short read")


def test_ipv6_loopback_and_lifecycle() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = ZoneResponder("example.test", host="::1")
    with server:
        assert server.address == f"[::1]:{server.port}"
        server.replace([dns.rrset.from_text("a.example.test.", 5, "IN", "A", "10.0.0.1")])
        assert texts(query(server, "a.example.test.", "A", tcp=True).answer[0]) == ["10.0.0.1"]
        ns = query(server, "example.test.", "NS")
        assert [(r.name.to_text(), texts(r)) for r in ns.additional] == [
            ("ns.dns.example.test.", ["::1"])
        ]
    server.close()  # idempotent
    with pytest.raises(ClosedError):
        server.start()


def test_replace_scoped_by_names_and_validation() -> None:
    with ZoneResponder("zone.test") as server:
        server.replace(
            [
                dns.rrset.from_text("a.zone.test.", 5, "IN", "A", "10.0.0.1"),
                dns.rrset.from_text("b.zone.test.", 5, "IN", "A", "10.0.0.2"),
            ]
        )
        server.replace(
            [dns.rrset.from_text("c.zone.test.", 5, "IN", "A", "10.0.0.3")],
            names=[dns.name.from_text("a.zone.test.")],
        )
        assert query(server, "a.zone.test.", "A").rcode() == dns.rcode.NXDOMAIN
        assert query(server, "b.zone.test.", "A").answer
        assert query(server, "c.zone.test.", "A").answer
        with pytest.raises(ValueError, match="not in zone"):
            server.replace([dns.rrset.from_text("x.other.", 5, "IN", "A", "10.0.0.1")])
        with pytest.raises(ValueError, match="SOA and NS"):
            server.replace([dns.rrset.from_text("zone.test.", 5, "IN", "NS", "ns.zone.test.")])
        server.replace([])
        assert query(server, "b.zone.test.", "A").rcode() == dns.rcode.NXDOMAIN


# -- records, pure ------------------------------------------------------------------


def as_text(rrsets: list[dns.rrset.RRset]) -> list[str]:
    return [line for rrset in rrsets for line in sorted(rrset.to_text().splitlines())]


def test_service_rrsets_exact_records() -> None:
    rrsets = service_rrsets(
        service="web",
        namespace="default",
        zone="cluster.local",
        pods=[Pod(ip="10.244.1.5"), Pod(ip="10.244.2.6", hostname="web-1"), Pod(ip="fd00::1")],
        ports={"grpc": 50051, "http": 8080},
    )
    z = "web.default.svc.cluster.local."
    assert as_text(rrsets) == [
        f"{z} 5 IN A 10.244.1.5",
        f"{z} 5 IN A 10.244.2.6",
        f"{z} 5 IN AAAA fd00::1",
        f"_grpc._tcp.{z} 5 IN SRV 0 33 50051 10-244-1-5.{z}",
        f"_grpc._tcp.{z} 5 IN SRV 0 33 50051 fd00--1.{z}",
        f"_grpc._tcp.{z} 5 IN SRV 0 33 50051 web-1.{z}",
        f"_http._tcp.{z} 5 IN SRV 0 33 8080 10-244-1-5.{z}",
        f"_http._tcp.{z} 5 IN SRV 0 33 8080 fd00--1.{z}",
        f"_http._tcp.{z} 5 IN SRV 0 33 8080 web-1.{z}",
        f"10-244-1-5.{z} 5 IN A 10.244.1.5",
        f"fd00--1.{z} 5 IN AAAA fd00::1",
        f"web-1.{z} 5 IN A 10.244.2.6",
    ]


@pytest.mark.parametrize(("count", "weight"), [(1, 100), (2, 50), (3, 33), (7, 14), (101, 1)])
def test_srv_weight_as_coredns(count: int, weight: int) -> None:
    pods = [Pod(ip=f"10.0.{i // 250}.{i % 250}") for i in range(count)]
    rrsets = service_rrsets(
        service="s", namespace="n", zone="cluster.local", pods=pods, ports={"p": 1}
    )
    srv = next(r for r in rrsets if r.rdtype == dns.rdatatype.SRV)
    assert {rdata.weight for rdata in srv} == {weight}


@pytest.mark.parametrize(
    ("ip", "label"),
    [
        ("10.244.1.5", "10-244-1-5"),
        ("fd00::1", "fd00--1"),
        ("FD00:0:0:0:0:0:0:1", "fd00--1"),  # canonical (compressed, lower-case) text
        ("fd00::", "fd00--0"),  # CoreDNS appends 0 to a trailing dash
        ("2001:db8:1:2:3:4:5:6", "2001-db8-1-2-3-4-5-6"),
    ],
)
def test_dashed_targets(ip: str, label: str) -> None:
    assert Pod(ip=ip).target == label


def test_no_pods_no_records_and_no_unnamed_ports() -> None:
    assert service_rrsets(service="s", namespace="n", zone="c.l", pods=[], ports={"p": 1}) == []
    only_a = service_rrsets(
        service="s", namespace="n", zone="c.l", pods=[Pod(ip="1.2.3.4")], ports={}
    )
    assert [r.rdtype for r in only_a] == [dns.rdatatype.A, dns.rdatatype.A]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"service": "Bad_Name"}, "service name"),
        ({"service": "1abc"}, "service name"),
        ({"namespace": "-ns"}, "namespace"),
        ({"ports": {"": 80}}, "port name"),
        ({"ports": {"grpc": 0}}, "not a port number"),
        ({"ports": {"x" * 64: 80}}, "port name"),
    ],
)
def test_service_rrsets_rejects_invalid(kwargs: dict[str, object], error: str) -> None:
    args: dict[str, object] = {
        "service": "s",
        "namespace": "n",
        "zone": "cluster.local",
        "pods": [Pod(ip="10.0.0.1")],
        "ports": {"grpc": 80},
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=error):
        service_rrsets(**args)  # type: ignore[arg-type]


def test_pod_validation() -> None:
    with pytest.raises(ValueError, match="not an IPv4 or IPv6"):
        Pod(ip="10.0.0")
    with pytest.raises(ValueError, match="hostname"):
        Pod(ip="10.0.0.1", hostname="Web_0")


def test_service_registry() -> None:
    reg = ServiceRegistry()
    reg.set_service("a", "ns", ["10.0.0.1"], ports={"grpc": 9000})
    reg.add_pod("a", "ns", Pod(ip="10.0.0.2", hostname="h"))
    reg.add_pod("a", "ns", Pod(ip="10.0.0.2"))  # replaces by IP
    assert reg.pods("a", "ns") == (Pod(ip="10.0.0.1"), Pod(ip="10.0.0.2"))
    assert reg.ports("a", "ns") == {"grpc": 9000}  # remembered by add_pod
    reg.add_pod("b", "ns", "fd00::1", ports={"x": 1})
    assert len(reg.rrsets()) == len(reg.rrsets("a", "ns")) + len(reg.rrsets("b", "ns"))
    reg.remove_pod("a", "ns", "10.0.0.1")
    with pytest.raises(KeyError):
        reg.remove_pod("a", "ns", "10.0.0.1")
    reg.remove_pod("a", "ns", "10.0.0.2")
    assert reg.rrsets("a", "ns") == []
    assert reg.ports("a", "ns") == {"grpc": 9000}
    reg.remove_service("a", "ns")
    with pytest.raises(KeyError):
        reg.remove_service("a", "ns")
    assert reg.pods("a", "ns") == ()


def test_testing_exports() -> None:
    assert dnsbalance.testing.__all__ == sorted(dnsbalance.testing.__all__)
    public = {n for n in dir(dnsbalance.testing) if not n.startswith("_")}
    assert set(dnsbalance.testing.__all__) <= public
