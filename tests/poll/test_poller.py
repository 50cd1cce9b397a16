"""The DNS poller's thread driver against a real DNS server (the embedded responder)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dns.rcode
import pytest

from dnsbalance import Change, ClosedError, DnsPoller, Endpoint, PollPolicy, discover, parse_target
from dnsbalance._dns.sync import PollLookup, make_resolver, poll_lookup
from dnsbalance._poll.clock import CLOCK
from tests.kits.backends import wait_until

# How long a test waits for a poller or the clock to do what it must: an upper bound for
# a busy machine, never a timing claim (see tests/poll/test_clock.py).
LIVENESS = 20.0


def poller_for(dns_server: Any, service: str, **policy: Any) -> tuple[DnsPoller, list[Change]]:
    changes: list[Change] = []
    lookup = poll_lookup(
        parse_target(f"{service}.ns:8000", cluster_domain="cluster.local"),
        make_resolver([dns_server.address], timeout=0.5),
    )
    poller = DnsPoller(
        lookup,
        policy=PollPolicy(**{"interval": 0.2, "jitter": 0.0, **policy}),
        on_change=changes.append,
        name=f"test-poller-{service}",
    )
    return poller, changes


def addresses(poller: DnsPoller) -> list[str]:
    return [ep.address for ep in poller.endpoints]


def test_reports_only_real_changes(embedded_dns: Any, unique_service: str) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.7.0.1")
    poller, changes = poller_for(embedded_dns, unique_service)
    poller.poll_once()
    poller.start()
    try:
        time.sleep(0.7)  # several polls, nothing changes
        assert len(changes) == 1
        embedded_dns.add_pod(unique_service, "ns", "10.7.0.2")
        assert wait_until(lambda: len(changes) == 2, LIVENESS)
        assert [ep.address for ep in changes[1].added] == ["10.7.0.2"]
    finally:
        poller.stop()


def test_errors_keep_last_known_good_and_back_off(
    embedded_dns: Any, unique_service: str, caplog: pytest.LogCaptureFixture
) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.7.1.1")
    poller, changes = poller_for(embedded_dns, unique_service, max_backoff=1.0)
    assert poller.poll_once().change is not None
    embedded_dns.fail_rcode = dns.rcode.SERVFAIL
    try:
        with caplog.at_level(logging.WARNING, logger="dnsbalance"):
            delays = [poller.poll_once().delay for _ in range(4)]
    finally:
        embedded_dns.fail_rcode = None
    assert delays == [0.4, 0.8, 1.0, 1.0]  # exponential, capped
    assert addresses(poller) == ["10.7.1.1"]
    assert poller.state.error_streak == 4
    assert "SERVFAIL" in caplog.records[0].getMessage()
    embedded_dns.drop = True  # timeouts: the same
    try:
        assert poller.poll_once().change is None
    finally:
        embedded_dns.drop = False
    assert addresses(poller) == ["10.7.1.1"]
    assert poller.poll_once().delay == 0.2  # recovered
    assert len(changes) == 1


def test_nxdomain_must_be_confirmed(embedded_dns: Any, unique_service: str) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.7.2.1")
    poller, changes = poller_for(embedded_dns, unique_service)
    poller.poll_once()
    embedded_dns.remove_pod(unique_service, "ns", "10.7.2.1")
    assert poller.poll_once().change is None
    assert addresses(poller) == ["10.7.2.1"]
    change = poller.poll_once().change
    assert change is not None
    assert change.new == ()
    assert len(changes) == 2


def test_stop_joins_within_a_second_and_poll_now_wakes(
    embedded_dns: Any, unique_service: str
) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.7.3.1")
    poller, changes = poller_for(embedded_dns, unique_service, interval=30.0, max_backoff=30.0)
    poller.poll_once()
    poller.start()
    embedded_dns.add_pod(unique_service, "ns", "10.7.3.2")
    poller.poll_now()
    assert wait_until(lambda: len(changes) == 2, LIVENESS)
    started = time.monotonic()
    poller.stop()
    assert time.monotonic() - started < 1.0
    assert not poller.running
    assert f"test-poller-{unique_service}" not in [t.name for t in threading.enumerate()]
    with pytest.raises(ClosedError):
        poller.poll_once()
    poller.stop()  # idempotent


def test_a_failing_callback_never_kills_the_poller(embedded_dns: Any, unique_service: str) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.7.4.1")
    poller, _ = poller_for(embedded_dns, unique_service)

    def boom(change: Change) -> None:
        raise RuntimeError("callback bug")

    poller.on_change = boom
    poller.poll_once()  # logged, not raised
    poller.start()
    try:
        embedded_dns.add_pod(unique_service, "ns", "10.7.4.2")
        assert wait_until(lambda: len(poller.endpoints) == 2, LIVENESS)
        assert poller.running
    finally:
        poller.stop()


class Counted:
    """A real poll lookup, counting which path each poll took."""

    def __init__(self, lookup: PollLookup) -> None:
        self.lookup = lookup
        self.full: list[str] = []  # thread names
        self.repeats: list[str] = []

    def __call__(self) -> tuple[Endpoint, ...]:
        self.full.append(threading.current_thread().name)
        return self.lookup()

    def repeat(self, timeout: float) -> tuple[Endpoint, ...] | None:
        self.repeats.append(threading.current_thread().name)
        return self.lookup.repeat(timeout)


def test_the_clock_settles_unchanged_polls_and_hands_over_changes(
    embedded_dns: Any, unique_service: str
) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.7.3.1")
    target = parse_target(f"{unique_service}.ns:8000", cluster_domain="cluster.local")
    counted = Counted(poll_lookup(target, make_resolver([embedded_dns.address], timeout=0.5)))
    seen: list[str] = []
    poller = DnsPoller(
        counted,
        policy=PollPolicy(interval=0.2, jitter=0.0),
        on_change=lambda change: seen.append(threading.current_thread().name),
        name=f"test-poller-{unique_service}",
    )
    poller.poll_once()
    poller.start()
    try:
        assert wait_until(lambda: len(counted.repeats) >= 4, LIVENESS)
        assert counted.full == ["MainThread"]  # only the first poll ran in full
        assert set(counted.repeats) == {"dnsbalance-poll-clock"}
        embedded_dns.add_pod(unique_service, "ns", "10.7.3.2")
        assert wait_until(lambda: len(seen) == 2, LIVENESS)
        assert seen[1] == f"test-poller-{unique_service}"  # the change: on its own thread
        assert [ep.address for ep in poller.endpoints] == ["10.7.3.1", "10.7.3.2"]
        repeats = len(counted.repeats)
        assert wait_until(lambda: len(counted.repeats) > repeats + 2, LIVENESS)  # settled again
    finally:
        poller.stop()
    assert wait_until(lambda: CLOCK.pending() == 0, LIVENESS)
    assert wait_until(
        lambda: "dnsbalance-poll-clock" not in {t.name for t in threading.enumerate()}, LIVENESS
    )


def test_lookups_without_repeat_poll_on_their_own_thread(
    embedded_dns: Any, unique_service: str
) -> None:
    embedded_dns.add_pod(unique_service, "ns", "10.7.4.1")
    threads: list[str] = []

    def lookup() -> tuple[Endpoint, ...]:
        threads.append(threading.current_thread().name)
        return discover(f"{unique_service}.ns:8000", nameservers=[embedded_dns.address])

    poller = DnsPoller(lookup, policy=PollPolicy(interval=0.2, jitter=0.0), name="own-thread")
    poller.poll_once()
    poller.start()
    try:
        assert wait_until(lambda: len(threads) >= 4, LIVENESS)
    finally:
        poller.stop()
    assert set(threads[1:]) == {"own-thread"}
