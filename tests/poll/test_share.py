"""One DNS poller per question per process (issue 25, part 2), counted by a DNS server of
this test alone (DNSResponder counts the messages it receives): channels asking the same
name, record plan and nameservers with the same timeout and poll policy share a poller;
asyncio channels share among themselves on one loop, never with sync ones; the last
close stops the poller. Real grpc backends, real DNS."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import dnsbalance.aio
from dnsbalance import BalancedChannel, Endpoint, resolve_channel
from dnsbalance._poll.share import POLLERS
from dnsbalance.testing import DNSResponder
from tests.kits.backends import Fleet, thread_names, wait_until

NS = "app"
QUESTIONS = 2  # a numeric port asks A and AAAA


@pytest.fixture
def dns() -> Iterator[DNSResponder]:
    """A DNS server of this test alone, so its query count is this test's."""
    with DNSResponder() as server:
        yield server


def addresses(channel: Any) -> list[str]:
    return sorted(ep.address for ep in channel.endpoints)


def poll_threads(service: str) -> list[str]:
    return [n for n in thread_names() if n.startswith(f"dnsbalance-poll-{service}")]


def test_twenty_channels_to_two_services_send_one_poll_per_service(
    dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """20 mode "dns" channels (16 sync, 4 asyncio), 10 per Service. Opening them: one
    poll per Service for the sync channels and one for the asyncio ones (4 + 4 queries,
    not 40). Then, polling every 0.5 s: the queries over a measured span are at most
    what 2 pollers can send (every poller polls at most once per 0.4 s: the interval
    less its 10% jitter and the poll clock's 0.05 s rounding), a tenth of what 20
    would; each channel of the Service that changes calls its own on_change once."""
    services = [f"{unique_service}-a", f"{unique_service}-b"]
    hosts = {s: [fleet.add().host, fleet.add().host] for s in services}
    for service in services:
        dns.set_service(service, NS, hosts[service])
    changes: Counter[int] = Counter()
    lock = threading.Lock()

    def arguments(i: int, interval: float) -> dict[str, Any]:
        def on_change(old: tuple[Endpoint, ...], new: tuple[Endpoint, ...]) -> None:
            with lock:
                changes[i] += 1

        return {
            "target": f"{services[i % 2]}.{NS}:{fleet.port}",
            "nameservers": [dns.address],
            "mode": "dns",
            "poll_interval": interval,
            "on_change": on_change,
        }

    # Opening, with polls far apart (30 s): only the opening polls are counted.
    dns.queries = 0
    sync = [resolve_channel(**arguments(i, 30.0)) for i in range(16)]
    try:
        assert dns.queries == 2 * QUESTIONS
        for i, channel in enumerate(sync):
            assert addresses(channel) == sorted(hosts[services[i % 2]])

        async def open_aio() -> int:
            aio = [await dnsbalance.aio.resolve_channel(**arguments(i, 30.0)) for i in range(4)]
            try:
                return dns.queries
            finally:
                for channel in aio:
                    await channel.close()

        assert asyncio.run(open_aio()) == 4 * QUESTIONS  # the asyncio pollers: 2 more
    finally:
        for channel in sync:
            channel.close()
    assert len(POLLERS) == 0

    # Polling every 0.5 s.
    changes.clear()
    channels = [resolve_channel(**arguments(i, 0.5)) for i in range(20)]
    try:
        dns.queries = 0
        started = time.monotonic()
        assert wait_until(lambda: dns.queries >= 2 * QUESTIONS * 4, 15.0)  # 4 rounds
        queries, span = dns.queries, time.monotonic() - started
        most = 2 * QUESTIONS * (span / 0.4 + 1)
        assert queries <= most, (queries, span)
        assert queries < 20 * QUESTIONS * 4  # what 20 pollers send in 4 rounds
        added = fleet.add().host
        dns.set_service(services[0], NS, [*hosts[services[0]], added])
        grown = sorted([*hosts[services[0]], added])
        assert wait_until(lambda: all(addresses(ch) == grown for ch in channels[0::2]), 10.0), [
            addresses(ch) for ch in channels[0::2]
        ]
        assert all(addresses(ch) == sorted(hosts[services[1]]) for ch in channels[1::2])
        assert sorted(changes) == list(range(0, 20, 2))
        assert set(changes.values()) == {1}
    finally:
        for channel in channels:
            channel.close()
    assert len(POLLERS) == 0
    assert wait_until(lambda: poll_threads(unique_service) == [], 5.0)


def test_what_makes_two_polls(dns: DNSResponder, fleet: Fleet, unique_service: str) -> None:
    """Another port, nameserver, poll interval, timeout or record plan is another poller
    (each opening poll counted); the same arguments once more are not."""
    host = fleet.add().host
    dns.set_service(unique_service, NS, [host], ports={"grpc": fleet.port})
    with DNSResponder() as other_dns:
        other_dns.set_service(unique_service, NS, [host], ports={"grpc": fleet.port})
        target = f"{unique_service}.{NS}:{fleet.port}"
        base: dict[str, Any] = {"nameservers": [dns.address], "mode": "dns", "poll_interval": 30.0}
        dns.queries = 0
        opened: list[BalancedChannel] = []
        try:
            for target_, extra, queries in [
                (target, {}, 2),  # the first: A and AAAA
                (target, {}, 0),  # the same: shared
                (f"{unique_service}.{NS}:{fleet.port + 1}", {}, 2),  # another port
                (target, {"poll_interval": 20.0}, 2),  # another policy
                (target, {"dns_timeout": 1.0}, 2),  # another timeout
                (f"{unique_service}.{NS}:grpc", {}, 1),  # SRV (targets in Additional)
                (target, {"nameservers": [other_dns.address]}, 0),  # counted below
            ]:
                before = dns.queries
                opened.append(resolve_channel(target_, **{**base, **extra}))
                assert dns.queries - before == queries, (target_, extra)
            assert other_dns.queries == 2
            assert all(addresses(ch) == [host] for ch in opened)
        finally:
            for channel in opened:
                channel.close()
    assert len(POLLERS) == 0


def test_a_channel_joins_the_current_set_and_the_last_close_stops_the_poller(
    dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    a, b, c = fleet.add().host, fleet.add().host, fleet.add().host
    dns.set_service(unique_service, NS, [a])
    arguments: dict[str, Any] = {
        "target": f"{unique_service}.{NS}:{fleet.port}",
        "nameservers": [dns.address],
        "mode": "dns",
        "poll_interval": 0.3,
    }
    first = resolve_channel(**arguments)
    dns.set_service(unique_service, NS, [a, b])
    assert wait_until(lambda: addresses(first) == sorted([a, b]), 5.0)
    second = resolve_channel(**arguments)  # joins: the current set, no poll of its own
    assert addresses(second) == sorted([a, b])
    first.close()  # not the last: the poller goes on for the second
    dns.set_service(unique_service, NS, [a, b, c])
    assert wait_until(lambda: addresses(second) == sorted([a, b, c]), 5.0)
    assert addresses(first) == sorted([a, b])
    assert len(poll_threads(unique_service)) == 1
    second.close()
    assert wait_until(lambda: poll_threads(unique_service) == [], 5.0)
    assert len(POLLERS) == 0
    dns.queries = 0
    with resolve_channel(**arguments) as third:  # a fresh poller
        assert addresses(third) == sorted([a, b, c])
        assert dns.queries >= QUESTIONS


def test_channels_opening_while_others_close(
    dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """4 threads x 10 cycles open a mode "dns" channel, check its set, close it; no
    poller is left behind and every channel started with the set."""
    hosts = [fleet.add().host, fleet.add().host]
    dns.set_service(unique_service, NS, hosts)
    target = f"{unique_service}.{NS}:{fleet.port}"
    problems: list[str] = []

    def cycle() -> None:
        for _ in range(10):
            try:
                with resolve_channel(
                    target, nameservers=[dns.address], mode="dns", poll_interval=0.2
                ) as channel:
                    if addresses(channel) != sorted(hosts):
                        problems.append(f"started with {addresses(channel)}")
            except Exception as exc:  # reported below, with the others
                problems.append(repr(exc))

    threads = [threading.Thread(target=cycle) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60.0)
    assert not any(t.is_alive() for t in threads)
    assert problems == []
    assert len(POLLERS) == 0
    assert wait_until(lambda: poll_threads(unique_service) == [], 5.0)
