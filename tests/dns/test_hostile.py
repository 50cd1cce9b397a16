"""End to end: a hostile DNS server under a real channel (issue 13).

The server answers every other query with a hostile message that names an extra
backend (.9), in one of the forms dnspython's resolver refuses; the good answers
name .1 and .2, then .1, .2 and .3. A real ``resolve_channel(mode="dns")`` calls
real backends meanwhile: its endpoints only ever hold addresses of good answers,
and no call reaches .9, which only hostile answers name.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
from collections.abc import Callable

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsbalance import resolve_channel
from tests.kits.backends import Fleet, demo_pb2, demo_pb2_grpc, wait_until
from tests.kits.dns_wire import (
    POINTER_TO_QUESTION,
    SOA,
    A,
    message,
    name,
    opt,
    rr,
    soa_rdata,
)
from tests.kits.scripted_dns import ScriptedDNS


def ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def a_records(query: bytes, hosts: list[str]) -> list[bytes]:
    return [rr(POINTER_TO_QUESTION, A, ip(h), ttl=1) for h in hosts]


HOSTILE: dict[str, Callable[[bytes, list[str], str], bytes]] = {
    "trailing bytes": lambda q, good, evil: message(q, answer=a_records(q, [*good, evil])) + b"\0",
    "nxdomain with answers": lambda q, good, evil: message(
        q, rcode=dns.rcode.NXDOMAIN, answer=a_records(q, [evil])
    ),
    "bad authority": lambda q, good, evil: message(
        q, answer=a_records(q, [*good, evil]), authority=[rr(b"\x40\x00", SOA, soa_rdata())]
    ),
    "OPT with an owner": lambda q, good, evil: message(
        q, answer=a_records(q, [*good, evil]), additional=[opt(owner=name("x"))]
    ),
    "answer count short": lambda q, good, evil: (
        message(q, answer=a_records(q, [*good, evil]), counts=(1, len(good), 0, 0))
        + rr(POINTER_TO_QUESTION, A, ip(evil))
    ),
}


@pytest.mark.parametrize("form", list(HOSTILE))
def test_a_hostile_server_never_reaches_a_call(fleet: Fleet, form: str) -> None:
    backends = [fleet.add() for _ in range(4)]
    good_hosts = [b.host for b in backends[:2]]
    later_host, evil_host = backends[2].host, backends[3].host
    good = list(good_hosts)
    turns = itertools.count()
    lock = threading.Lock()

    def script(query: bytes, tcp: bool) -> bytes:
        question = dns.message.from_wire(query).question[0]
        if question.rdtype != dns.rdatatype.A:
            return message(query, authority=[rr(name("cluster.local"), SOA, soa_rdata())])
        with lock:
            hostile = next(turns) % 2 == 1
            hosts = list(good)
        return (
            HOSTILE[form](query, hosts, evil_host)
            if hostile
            else message(query, answer=a_records(query, hosts))
        )

    seen: set[str] = set()
    with ScriptedDNS(script) as server:
        channel = resolve_channel(
            f"svc.ns:{fleet.port}",
            nameservers=[server.address],
            mode="dns",
            poll_interval=0.2,
            dns_timeout=0.3,
        )
        with channel:
            stub = demo_pb2_grpc.DemoServiceStub(channel)
            for round_ in range(60):  # bounded: about 6 s
                if round_ == 20:
                    with lock:
                        good.append(later_host)
                for _ in range(10):
                    stub.Demo(demo_pb2.Empty(), timeout=5)
                seen.update(e.address for e in channel.endpoints)
                threading.Event().wait(0.1)
                if round_ > 25 and backends[2].calls > 0 and round_ > 40:
                    break
            assert wait_until(lambda: len(channel.endpoints) == 3, 5.0)
    assert seen <= {*good_hosts, later_host}, seen
    assert backends[3].calls == 0, fleet.calls()
    assert backends[2].calls > 0  # the good change was followed
