"""Cluster DNS misbehaving under a mode="dns" channel: it fails, slows down,
truncates, flaps to NXDOMAIN and changes on every poll. Calls never notice."""

from __future__ import annotations

import logging
import statistics
import threading
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

import dnsbalance
from dnsbalance import BalancedChannel, PollPolicy, resolve_channel
from dnsbalance.testing import DNSResponder
from tests.kits.backends import Fleet, demo_pb2_grpc, wait_until
from tests.kits.reliability import Callers, CallLog, measured


def open_channel(
    server: DNSResponder, fleet: Fleet, service: str, **kwargs: object
) -> BalancedChannel:
    kwargs.setdefault("mode", "dns")
    return resolve_channel(
        f"{service}.ns:{fleet.port}",
        nameservers=[server.address],
        **kwargs,  # type: ignore[arg-type]
    )


def add_pods(server: DNSResponder, fleet: Fleet, service: str, n: int) -> list[str]:
    hosts = []
    for _ in range(n):
        backend = fleet.add()
        server.add_pod(service, "ns", backend.host)
        hosts.append(backend.host)
    return hosts


def poll_failures(caplog: pytest.LogCaptureFixture) -> int:
    return sum("DNS poll failed" in r.getMessage() for r in caplog.records)


def test_servfail_for_ten_polls_keeps_serving(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = add_pods(cluster_dns, fleet, unique_service, 2)
    log = CallLog()
    with open_channel(
        cluster_dns, fleet, unique_service, poll_policy=PollPolicy(interval=0.2, max_backoff=0.4)
    ) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert log.call(stub) in hosts
        with caplog.at_level(logging.WARNING, logger="dnsbalance"):
            cluster_dns.queries = 0
            cluster_dns.fail_rcode = dns_rcode("SERVFAIL")
            new = fleet.add()
            cluster_dns.add_pod(unique_service, "ns", new.host)  # hidden behind the SERVFAILs
            started = time.monotonic()
            for _ in range(5000):  # bounded: ~10 polls at <= 0.44 s, or 20 s
                if poll_failures(caplog) >= 10 or time.monotonic() - started > 20:
                    break
                log.call(stub)
                time.sleep(0.01)
            polls, queries = poll_failures(caplog), cluster_dns.queries
            assert polls >= 10
            assert queries >= 10  # each failed poll reached the server
            assert [ep.address for ep in channel.endpoints] == hosts
            assert channel.generation == 0
            cluster_dns.fail_rcode = None
        assert wait_until(lambda: new.host in {ep.address for ep in channel.endpoints}, 3.0)
        assert wait_until(lambda: log.call(stub) == new.host, 3.0)
    assert log.failed == 0, (log.error_kinds(), [str(e)[:400] for e in log.errors[:2]])
    measured(
        "SERVFAIL for 10 polls",
        f"{polls} failed polls ({queries} queries), set kept, {log.ok} calls ok, "
        "change behind the SERVFAILs applied after",
        log.failed,
    )


def dns_rcode(name: str) -> int:
    return int(dns.rcode.from_text(name))


def test_slow_dns_never_slows_calls(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """Answers take 2 s: polls are slow, calls stay at loopback latency."""
    add_pods(cluster_dns, fleet, unique_service, 2)
    with open_channel(
        cluster_dns,
        fleet,
        unique_service,
        poll_policy=PollPolicy(interval=0.2, max_backoff=0.4),
        dns_timeout=5.0,
    ) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        baseline = CallLog()
        for _ in range(200):
            baseline.call(stub)
        cluster_dns.queries = 0
        cluster_dns.delay = 2.0
        new = fleet.add()
        cluster_dns.add_pod(unique_service, "ns", new.host)
        added_at = time.monotonic()
        slow = CallLog()
        for _ in range(3000):  # bounded: ~6 s of calls or 3000 calls
            if time.monotonic() - added_at > 6.0:
                break
            slow.call(stub)
            time.sleep(0.002)
        assert cluster_dns.queries >= 2  # polls were running (each waited 2 s for its answer)
        assert wait_until(lambda: new.host in {ep.address for ep in channel.endpoints}, 10.0)
        used_after = time.monotonic() - added_at
        cluster_dns.delay = 0.0
    assert slow.failed == 0, slow.error_kinds()
    median = statistics.median(slow.latencies)
    worst = max(slow.latencies)
    # Loopback calls take ~1 ms; a call that waited on a poll would take ~2 s.
    assert median < 0.05, (median, statistics.median(baseline.latencies))
    assert worst < 1.5, worst
    measured(
        "DNS answers delayed 2 s",
        f"{slow.ok} calls: median {median * 1000:.1f} ms, max {worst * 1000:.0f} ms "
        f"(before: median {statistics.median(baseline.latencies) * 1000:.1f} ms); "
        f"new pod in the set after {used_after:.1f} s",
        slow.failed,
    )


def test_truncated_answers_200_pods(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """200 pods do not fit a UDP answer: TC is set, the poll retries over TCP, every
    endpoint is found, and calls go to the live ones."""
    live = add_pods(cluster_dns, fleet, unique_service, 3)
    dead = [f"127.1.{i // 200}.{i % 200 + 1}" for i in range(197)]  # nothing listens there
    cluster_dns.set_service(unique_service, "ns", [*live, *dead], ports={"grpc": fleet.port})
    query = dns.message.make_query(
        f"{unique_service}.ns.svc.cluster.local", "A", use_edns=0, payload=1232
    )
    host, port = cluster_dns.address.rsplit(":", 1)
    udp = dns.query.udp(query, host, port=int(port), timeout=2.0, ignore_trailing=True)
    assert udp.flags & dns.flags.TC
    assert not udp.answer
    assert (
        len(
            dnsbalance.discover(
                f"{unique_service}.ns:{fleet.port}", nameservers=[cluster_dns.address]
            )
        )
        == 200
    )
    cluster_dns.additional = False  # as BIND for large answers: SRV targets looked up separately
    by_srv = dnsbalance.discover(f"{unique_service}.ns:grpc", nameservers=[cluster_dns.address])
    assert len(by_srv) == 200
    assert {ep.port for ep in by_srv} == {fleet.port}
    log = CallLog()
    with open_channel(cluster_dns, fleet, unique_service, poll_interval=0.2) as channel:
        assert len(channel.endpoints) == 200
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        for _ in range(300):
            log.call(stub)
        time.sleep(0.5)  # a few polls over TCP: nothing changes
        assert channel.generation == 0
    assert log.failed == 0, (log.error_kinds(), [str(e)[:400] for e in log.errors[:2]])
    assert set(log.values) == set(live)
    measured(
        "200 pods: UDP answer truncated",
        "TC over UDP, retried over TCP (A and SRV without Additional): 200 endpoints; "
        f"{log.ok} calls on the 3 live pods",
        log.failed,
    )


def test_one_nxdomain_never_empties_the_channel(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """NXDOMAIN for exactly one poll, three times: no empty set, no rebuild."""
    hosts = add_pods(cluster_dns, fleet, unique_service, 2)
    changes: list[object] = []
    seen_sizes: set[int] = set()
    stop = threading.Event()
    with open_channel(
        cluster_dns,
        fleet,
        unique_service,
        poll_policy=PollPolicy(interval=1.0, max_backoff=2.0),
        on_change=lambda old, new: changes.append((old, new)),
    ) as channel:

        def watch_size() -> None:
            for _ in range(100_000):  # bounded; stopped below
                if stop.wait(0.005):
                    return
                seen_sizes.add(len(channel.endpoints))

        stub = demo_pb2_grpc.DemoServiceStub(channel)
        # Connected first: grpc's own resolver then has no reason to ask DNS again (it
        # re-resolves only when a connection fails). A channel that resolves at the very
        # moment DNS answers NXDOMAIN gets no address from grpc, whatever the poller knows.
        assert wait_until(lambda: CallLog().call(stub) == hosts[1], 5.0)
        monitor = threading.Thread(target=watch_size, name="rel-monitor", daemon=True)
        monitor.start()
        callers = Callers(stub, threads=2, interval=0.01)
        flaps = 0
        try:
            for _ in range(6):  # bounded: 3 confirmed flaps wanted
                if flaps == 3:
                    break
                cluster_dns.remove_service(unique_service, "ns")  # NXDOMAIN (with the SOA)
                before = cluster_dns.queries
                # One poll sees it; the next poll comes ~1 s later.
                assert wait_until(lambda b=before: cluster_dns.queries > b, 3.0, 0.001)  # type: ignore[misc]
                time.sleep(0.2)
                # Every query counted since was answered NXDOMAIN: one poll saw it (the
                # next comes ~1 s later, after the records are back).
                flaps += 1
                cluster_dns.set_service(unique_service, "ns", hosts)
                time.sleep(1.5)  # the next poll answers the full set again
        finally:
            log = callers.stop()
            stop.set()
            monitor.join(5)
        assert flaps == 3
        assert channel.generation == 0
        assert [ep.address for ep in channel.endpoints] == hosts
    assert changes == []
    assert seen_sizes == {2}
    assert log.failed == 0, (log.error_kinds(), [str(e)[:400] for e in log.errors[:2]])
    measured(
        "NXDOMAIN for one poll (x3)",
        f"set never emptied (sizes seen {sorted(seen_sizes)}), 0 rebuilds, {log.ok} calls ok",
        log.failed,
    )


def test_record_set_changing_every_poll(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """A different pod set on every poll for ~5 s (all pods stay up): the channel keeps
    up, no call fails, and there is at most one rebuild per change."""
    hosts = add_pods(cluster_dns, fleet, unique_service, 5)
    subsets = [hosts[i : i + 3] for i in range(3)] + [hosts[::2], hosts[1::2]]
    with open_channel(
        cluster_dns, fleet, unique_service, poll_policy=PollPolicy(interval=0.2, max_backoff=0.4)
    ) as channel:
        callers = Callers(demo_pb2_grpc.DemoServiceStub(channel), threads=4)
        published = 0
        try:
            started = time.monotonic()
            last = None
            for i in range(200):  # bounded: ~5 s
                if time.monotonic() - started > 5.0:
                    break
                before = cluster_dns.queries
                subset = subsets[i % len(subsets)]
                if subset != last:
                    cluster_dns.set_service(unique_service, "ns", subset)
                    published += 1
                    last = subset
                # Change again as soon as the next poll has asked.
                wait_until(lambda b=before: cluster_dns.queries >= b + 2, 1.0, 0.005)  # type: ignore[misc]
            final = sorted(last or ())
            assert wait_until(lambda: [ep.address for ep in channel.endpoints] == final, 3.0)
        finally:
            log = callers.stop()
        rebuilds = channel.generation
        assert wait_until(lambda: not channel._slots.retired, 5.0)
    assert log.failed == 0, (log.error_kinds(), [str(e)[:400] for e in log.errors[:2]])
    assert 5 <= rebuilds <= published, (rebuilds, published)
    measured(
        "record set changing on every poll (~5 s)",
        f"{published} changes published, {rebuilds} rebuilds, {log.ok} calls ok, "
        "old channels all drained",
        log.failed,
    )
