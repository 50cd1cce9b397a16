"""discover() latency and CPU, and a poller's CPU per unchanged poll, against a real
DNS server on loopback.

A poller's lookup (``poll_lookup``) asks its questions together and does not parse
an answer equal to the last one (dnsbalance._dns.answer_cache); answers too big for UDP go
over TCP through dnspython every time, as discover() does.

Targets: 3 endpoints under 2 ms (median); 1000 endpoints under 60 ms (median).

Reading answers (no server): the wire reader (dnsbalance._dns.wire.scan) against
dnspython's parse of the same bytes, for a small poll, a 1000-record answer, and a
64 KB SRV answer whose targets all point into one long chain of compression
pointers (hostile: reading stays linear, the chain is refused at its 9th hop).
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from dnsbalance import discover, parse_target
from dnsbalance._dns.answer_cache import read_reply
from dnsbalance._dns.plan import Question
from dnsbalance._dns.sync import make_resolver, poll_lookup
from dnsbalance._dns.wire import scan
from dnsbalance.testing import Pod

from ._common import Suite, cluster_dns, median, percentile, timed

TARGETS_MS = {3: 2.0, 1000: 60.0}


def run(quick: bool) -> Suite:
    suite = Suite("discovery")
    with cluster_dns() as (dns_server, label):
        suite.notes.append(f"DNS server: {label}")
        resolver = make_resolver([dns_server.address], timeout=5.0)
        for n in (3, 100, 1000):
            service = f"bench-{n}"
            pods = [Pod(ip=f"10.{20 + i // 250}.{i % 250}.1") for i in range(n)]
            dns_server.set_service(service, "ns", pods, ports={"grpc": 9000})
            for port, kind in ((8000, "A/AAAA"), ("grpc", "SRV")):
                target = parse_target(f"{service}.ns:{port}", cluster_domain="cluster.local")
                found = discover(target, resolver=resolver)
                assert len(found) == n, (n, kind, len(found))
                repeat = {3: 200, 100: 100, 1000: 30}[n] // (4 if quick else 1)
                walls, cpu = timed(lambda t=target: discover(t, resolver=resolver), repeat)
                target_ms = TARGETS_MS.get(n) if kind == "A/AAAA" else None
                suite.add(
                    f"discover {n} endpoints ({kind}) median",
                    median(walls) * 1000,
                    "ms",
                    target=f"<= {target_ms} ms" if target_ms else "",
                    p95_ms=percentile(walls, 95) * 1000,
                    runs=repeat,
                )
                suite.add(f"discover() CPU per call, {n} endpoints ({kind})", cpu * 1000, "ms")
                lookup = poll_lookup(target, resolver)
                assert lookup() == found
                _, poll_cpu = timed(lookup, repeat)
                suite.add(
                    f"poller CPU per unchanged poll, {n} endpoints ({kind})", poll_cpu * 1000, "ms"
                )
    _reading(suite, quick)
    return suite


def _answer(qtype: str, records: list[str], name: str) -> tuple[bytes, bytes]:
    query = dns.message.make_query(name, qtype, use_edns=0, payload=1232)
    response = dns.message.make_response(query)
    if records:
        response.answer.append(dns.rrset.from_text_list(name, 5, "IN", qtype, records))
    return query.to_wire(), response.to_wire(max_size=65535)


def _chain(query: bytes, records: int) -> bytes:
    """An SRV answer whose targets each add a label and point at the one before."""
    header = bytearray(query[:12])
    header[2:4] = b"\x81\x00"
    body, pos, previous = bytearray(query[12:]), len(query), 23
    for i in range(records):
        target = bytes([1, 97 + i % 26, 0xC0 | previous >> 8, previous & 0xFF])
        rdata = bytes(6) + target
        record = b"\xc0\x0c" + (33).to_bytes(2, "big") + b"\x00\x01" + bytes(4)
        record += len(rdata).to_bytes(2, "big") + rdata
        previous = pos + 2 + 10 + 6
        body += record
        pos += len(record)
        if pos > 65000:
            records = i + 1
            break
    header[6:8] = records.to_bytes(2, "big")
    header[10:12] = b"\x00\x00"
    return bytes(header) + bytes(body)


def _reading(suite: Suite, quick: bool) -> None:
    name = "svc.ns.svc.cluster.local."
    srv_name = "_grpc._tcp." + name
    small_query, small = _answer("A", [f"10.0.0.{i}" for i in range(1, 4)], name)
    big_query, big = _answer("A", [f"10.{i // 250}.{i % 250}.1" for i in range(1000)], name)
    srv_query = dns.message.make_query(srv_name, "SRV", use_edns=0, payload=1232).to_wire()
    chained = _chain(srv_query, 10_000)
    question = Question(dns.name.from_text(name), dns.rdatatype.A)

    def by_dnspython(query: bytes, response: bytes) -> object:
        message = dns.message.from_wire(response, raise_on_truncation=True)
        dns.message.from_wire(query).is_response(message)
        return read_reply(question, message, ("127.0.0.1", 53))

    repeat = 200 if quick else 1000
    for label, query, response in (
        ("3 A records", small_query, small),
        ("1000 A records", big_query, big),
    ):
        walls, _ = timed(
            lambda q=query, r=response: scan(r, q), repeat // (10 if "1000" in label else 1)
        )
        suite.add(f"wire reader, {label}, median", median(walls) * 1e6, "us")
        walls, _ = timed(
            lambda q=query, r=response: by_dnspython(q, r), repeat // (10 if "1000" in label else 1)
        )
        suite.add(f"dnspython parse of the same, {label}, median", median(walls) * 1e6, "us")
    walls, _ = timed(lambda: scan(chained, srv_query), repeat // 10)
    suite.add(
        f"wire reader, {len(chained) // 1024} KB SRV answer of pointer chains, median",
        median(walls) * 1e6,
        "us",
        target="linear (was 80-120 ms)",
    )
    walls, _ = timed(lambda: scan(big, big_query), repeat // 10)
    per_byte_plain = median(walls) / len(big)
    suite.notes.append(
        f"wire reader: {per_byte_plain * 1e9:.1f} ns/byte on a plain 1000-record answer"
    )
