"""discover() latency and CPU, and a poller's CPU per unchanged poll, against a real
DNS server on loopback.

A poller's lookup (``poll_lookup``) asks its questions together and does not parse
an answer equal to the last one (dnsbalance._repeat); answers too big for UDP go
over TCP through dnspython every time, as discover() does.

Targets: 3 endpoints under 2 ms (median); 1000 endpoints under 60 ms (median).
"""

from __future__ import annotations

from dnsbalance import discover, parse_target
from dnsbalance._discovery import make_resolver, poll_lookup
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
    return suite
