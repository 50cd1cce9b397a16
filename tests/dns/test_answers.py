"""Regression tests for issue 13: dnsbalance adopts a DNS answer only when dnspython's
resolver, given the same bytes, would return the same set.

Each class the differential fuzzer found has its tests here: a stale set after a
fallback, Additional records of other classes in SRV answers, NXDOMAIN carrying
answers, malformed messages, and the cost of reading (linear, nothing slow on the
poll clock's thread). The hypothesis-driven differential test is
``test_dns_differential.py``.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any
from unittest import mock

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsbalance import Endpoint, ResolutionError, discover, parse_target
from dnsbalance._dns.answer_cache import FALLBACK, AnswerCache
from dnsbalance._dns.plan import Question, _name
from dnsbalance._dns.sync import make_resolver, poll_lookup
from dnsbalance._dns.wire import scan
from tests.kits.dns_oracle import Rejected, dnspython_reads
from tests.kits.dns_wire import (
    AAAA,
    CH,
    CNAME,
    HS,
    NS,
    POINTER_TO_QUESTION,
    SOA,
    SRV,
    TSIG,
    TXT,
    A,
    message,
    name,
    opt,
    position_after_question,
    rr,
    soa_rdata,
    srv_rdata,
)
from tests.kits.scripted_dns import ScriptedDNS

SERVICE = "svc.ns.svc.cluster.local."
SRV_NAME = "_grpc._tcp.svc.ns.svc.cluster.local."
DOMAIN = "cluster.local"


def ip4(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def a_answer(query: bytes, *addresses: str, ttl: int = 5) -> bytes:
    return message(query, answer=[rr(POINTER_TO_QUESTION, A, ip4(a), ttl=ttl) for a in addresses])


def nodata(query: bytes) -> bytes:
    return message(query, authority=[rr(name(DOMAIN), SOA, soa_rdata())])


def question_of(query: bytes) -> tuple[str, int]:
    parsed = dns.message.from_wire(query)
    return parsed.question[0].name.to_text().lower(), parsed.question[0].rdtype


# -- reading one answer, without a network ------------------------------------------------


def read(build: Callable[[bytes], bytes], rdtype: dns.rdatatype.RdataType = A) -> Any:
    """What the poll shortcut makes of the response ``build(query)`` gives, and
    what dnspython makes of it (its Reply, or the Rejected it raises)."""
    question = Question(_name(SERVICE), rdtype)
    cache = AnswerCache(make_resolver(["127.0.0.1:53"]))
    (query,) = cache.queries((question,))
    assert query is not None
    response = build(query.wire)
    try:
        oracle: Any = dnspython_reads(query.wire, response)
    except Rejected as exc:
        oracle = exc
    return cache.reply(question, query, response), oracle


def _self_pointer(query: bytes) -> bytes:
    """An Authority record whose owner is a pointer to itself (a loop)."""
    at = len(a_answer(query, "10.0.0.1"))
    return rr(bytes([0xC0 | at >> 8, at & 0xFF]), SOA, soa_rdata())


MALFORMED: dict[str, Callable[[bytes], bytes]] = {
    "trailing bytes": lambda q: a_answer(q, "10.0.0.1") + b"\x00",
    "authority owner: forward pointer": lambda q: message(
        q,
        answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))],
        authority=[rr(b"\xc3\xff", SOA, soa_rdata())],
    ),
    "authority owner: pointer loop": lambda q: message(
        q, answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))], authority=[_self_pointer(q)]
    ),
    "authority owner: label type 0x40": lambda q: message(
        q,
        answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))],
        authority=[rr(b"\x40\x00", SOA, soa_rdata())],
    ),
    "authority owner: over 255 bytes": lambda q: message(
        q,
        answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))],
        authority=[rr((b"\x3f" + b"a" * 63) * 5 + b"\x00", SOA, soa_rdata())],
    ),
    "authority: 3-byte SOA": lambda q: message(
        q,
        answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))],
        authority=[rr(name(DOMAIN), SOA, b"\x00\x00\x00")],
    ),
    "additional: TXT string overruns its rdata": lambda q: message(
        q,
        answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))],
        additional=[rr(name(DOMAIN), TXT, b"\x05ab")],
    ),
    "additional: A of 5 bytes": lambda q: message(
        q,
        answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))],
        additional=[rr(name(DOMAIN), A, b"\x01\x02\x03\x04\x05")],
    ),
    "OPT with a non-root owner": lambda q: message(
        q, answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))], additional=[opt(owner=name("x"))]
    ),
    "OPT twice": lambda q: message(
        q, answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))], additional=[opt(), opt()]
    ),
    "OPT in the authority section": lambda q: message(
        q, answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))], authority=[opt()]
    ),
    "TSIG without a key": lambda q: message(
        q,
        answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))],
        additional=[rr(name("key"), TSIG, name("hmac-sha256") + bytes(16), rclass=255, ttl=0)],
    ),
    "answer count one short": lambda q: message(
        q,
        answer=[
            rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1")),
            rr(POINTER_TO_QUESTION, A, ip4("10.0.0.2")),
        ],
        counts=(1, 1, 0, 0),
    ),
    "additional count one short": lambda q: message(
        q,
        answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))],
        additional=[opt()],
        counts=(1, 1, 0, 0),
    ),
    "answer count one too many": lambda q: message(
        q, answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))], counts=(1, 2, 0, 0)
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_messages_are_never_adopted(case: str) -> None:
    reply, oracle = read(MALFORMED[case])
    assert isinstance(oracle, Rejected), f"dnspython accepts {case!r}: {oracle}"
    assert reply is FALLBACK, f"{case}: adopted {reply!r}"


def test_nxdomain_with_answer_records_is_an_error_not_nxdomain() -> None:
    reply, oracle = read(
        lambda q: message(
            q,
            rcode=dns.rcode.NXDOMAIN,
            answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))],
            authority=[rr(name(DOMAIN), SOA, soa_rdata())],
        )
    )
    assert isinstance(oracle, Rejected)
    assert reply is FALLBACK


def test_nxdomain_at_the_end_of_a_cname_chain_is_nxdomain() -> None:
    reply, oracle = read(
        lambda q: message(
            q,
            rcode=dns.rcode.NXDOMAIN,
            answer=[rr(POINTER_TO_QUESTION, CNAME, name("gone.ns.svc.cluster.local"))],
            authority=[rr(name(DOMAIN), SOA, soa_rdata())],
        )
    )
    assert oracle is None
    assert reply is None


def test_a_valid_answer_is_read_on_the_fast_path() -> None:
    reply, oracle = read(
        lambda q: message(
            q,
            answer=[
                rr(POINTER_TO_QUESTION, A, ip4("10.0.0.2")),
                rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1")),
            ],
            authority=[rr(name(DOMAIN), NS, name("ns.dns.cluster.local"))],
            additional=[opt()],
        )
    )
    assert sorted(reply.addresses) == sorted(rd.address for rd in oracle)


@pytest.mark.parametrize("rclass", [CH, HS, 99])
def test_srv_additional_records_of_other_classes_are_not_addresses(rclass: int) -> None:
    """An Additional ``A`` of class CH parses as a Chaosnet address (an int); of HS
    or an unknown class as generic rdata. Neither is an endpoint: the target's
    address comes from an IN lookup."""
    target = name("10-0-0-5.svc.ns.svc.cluster.local")
    ch_rdata = name("x") + b"\x00\x05" if rclass == CH else ip4("10.9.9.9")

    def script(query: bytes, tcp: bool) -> bytes:
        qname, rdtype = question_of(query)
        if rdtype == SRV:
            return message(
                query,
                answer=[rr(POINTER_TO_QUESTION, SRV, srv_rdata(9000, target))],
                additional=[rr(target, A, ch_rdata, rclass=rclass)],
            )
        if qname == SERVICE and rdtype == A:
            return a_answer(query, "10.0.0.5")
        return nodata(query)

    with ScriptedDNS(script) as server:
        found = discover("svc.ns:grpc", nameservers=[server.address], cluster_domain=DOMAIN)
        resolver = make_resolver([server.address], timeout=1.0)
        resolver.nameservers = resolver.nameservers * 2  # dnspython alone: no shortcut
        only_dnspython = discover(
            parse_target("svc.ns:grpc", cluster_domain=DOMAIN), resolver=resolver
        )
    expected = (Endpoint(address="10.0.0.5", port=9000),)
    assert found == expected
    assert only_dnspython == expected


def test_every_endpoint_address_is_an_ip_of_its_record_family() -> None:
    with pytest.raises(ValueError, match="address"):
        Endpoint(address=5, port=80)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="address"):
        Endpoint(address="not-an-ip", port=80)


# -- polls after a fallback follow the current answer ---------------------------------------


class Phases:
    """A server script: the answer of the current phase; in phase "fallback", the
    first A query gets SERVFAIL and the next one (dnspython's) the other set."""

    def __init__(self) -> None:
        self.phase = "two"
        self.first_in_phase = True

    def set(self, phase: str) -> None:
        self.phase, self.first_in_phase = phase, True

    def __call__(self, query: bytes, tcp: bool) -> bytes:
        _, rdtype = question_of(query)
        if rdtype != A:
            return nodata(query)
        if self.phase == "fallback":
            if self.first_in_phase:
                self.first_in_phase = False
                return message(query, rcode=dns.rcode.SERVFAIL)
            return a_answer(query, "10.0.0.2", "10.0.0.3", "10.0.0.4")
        return a_answer(query, "10.0.0.2", "10.0.0.3")


def addresses(endpoints: tuple[Endpoint, ...]) -> list[str]:
    return [e.address for e in endpoints]


@pytest.fixture
def phased() -> Iterator[tuple[Phases, ScriptedDNS]]:
    phases = Phases()
    with ScriptedDNS(phases) as server:
        yield phases, server


def test_a_fallback_leaves_no_fingerprint_behind(phased: tuple[Phases, ScriptedDNS]) -> None:
    phases, server = phased
    target = parse_target("svc.ns:80", cluster_domain=DOMAIN)
    lookup = poll_lookup(target, make_resolver([server.address], timeout=1.0))
    assert addresses(lookup()) == ["10.0.0.2", "10.0.0.3"]
    phases.set("fallback")
    assert addresses(lookup()) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    phases.set("two")
    assert addresses(lookup()) == ["10.0.0.2", "10.0.0.3"]
    assert addresses(lookup()) == ["10.0.0.2", "10.0.0.3"]
    phases.set("fallback")
    assert addresses(lookup()) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    phases.set("two")
    assert lookup.repeat(1.0) is None  # the clock cannot settle it: the set changed
    assert addresses(lookup()) == ["10.0.0.2", "10.0.0.3"]
    assert addresses(lookup.repeat(1.0) or ()) == ["10.0.0.2", "10.0.0.3"]


def test_async_polls_after_a_fallback_follow_the_answer(phased: tuple[Phases, ScriptedDNS]) -> None:
    import asyncio

    from dnsbalance._dns import aio as aio_discovery

    phases, server = phased
    target = parse_target("svc.ns:80", cluster_domain=DOMAIN)

    async def polls() -> list[list[str]]:
        lookup = aio_discovery.poll_lookup(
            target, aio_discovery.make_resolver([server.address], timeout=1.0)
        )
        seen = [addresses(await lookup())]
        phases.set("fallback")
        seen.append(addresses(await lookup()))
        phases.set("two")
        seen.append(addresses(await lookup()))
        seen.append(addresses(await lookup()))
        return seen

    assert asyncio.run(polls()) == [
        ["10.0.0.2", "10.0.0.3"],
        ["10.0.0.2", "10.0.0.3", "10.0.0.4"],
        ["10.0.0.2", "10.0.0.3"],
        ["10.0.0.2", "10.0.0.3"],
    ]


def test_nxdomain_with_answers_through_a_poll_raises() -> None:
    def script(query: bytes, tcp: bool) -> bytes:
        return message(
            query, rcode=dns.rcode.NXDOMAIN, answer=[rr(POINTER_TO_QUESTION, A, ip4("10.0.0.1"))]
        )

    with ScriptedDNS(script) as server:
        lookup = poll_lookup(
            parse_target("svc.ns:80", cluster_domain=DOMAIN),
            make_resolver([server.address], timeout=0.3),
        )
        with pytest.raises(ResolutionError):
            lookup()


# -- cost --------------------------------------------------------------------------------


def srv_answer(query: bytes, chain: int, records: int) -> bytes:
    """An SRV answer of ``chain + records`` records. The first ``chain`` targets form
    one chain of backward pointers (each a new label and a pointer to the target
    before it); the other ``records`` targets are a pointer to the chain's last link
    (so with ``chain=0`` every target is a label and a pointer into the question)."""
    pos = position_after_question(query)
    answer, previous = [], 12 + len("\x05_grpc\x04_tcp")  # "svc.ns..." in the question
    for i in range(chain + records):
        label = b"\x01" + bytes([97 + i % 26])
        pointer = bytes([0xC0 | previous >> 8, previous & 0xFF])
        answer.append(rr(POINTER_TO_QUESTION, SRV, srv_rdata(9000 + i % 7, label + pointer)))
        if i < chain:  # the target sits after owner, type/class/ttl/rdlength, SRV's 6
            previous = pos + 2 + 10 + 6
        pos += len(answer[-1])
    return message(query, answer=answer)


def lines_run(function: Callable[[], object]) -> int:
    """How many lines of dnsbalance's code ``function`` runs (deterministic, unlike time)."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if "dnsbalance" in frame.f_code.co_filename:
            if event == "line":
                count += 1
            return tracer
        return None

    sys.settrace(tracer)
    try:
        function()
    finally:
        sys.settrace(None)
    return count


def test_reading_costs_the_same_whatever_the_pointers() -> None:
    """Names that point into a long chain of pointers cost no more to read than
    names of one hop: every name is decompressed once."""
    query = dns.message.make_query(SRV_NAME, "SRV", use_edns=0, payload=1232).to_wire()
    plain, chained = srv_answer(query, 0, 600), srv_answer(query, 100, 500)
    assert abs(len(plain) - len(chained)) < 10
    work_plain = lines_run(lambda: scan(plain, query))
    work_chained = lines_run(lambda: scan(chained, query))
    assert work_chained <= 2 * work_plain, (work_plain, work_chained)


def test_the_clock_never_parses_with_dnspython() -> None:
    """A changed answer that needs dnspython is handed to the poller's own thread:
    the clock's ``repeat()`` says "not settled" without parsing it."""
    answers = {"n": 2}

    def script(query: bytes, tcp: bool) -> bytes:
        _, rdtype = question_of(query)
        if rdtype == SRV:
            targets = [name(f"pod-{i}.svc.ns.svc.cluster.local") for i in range(answers["n"])]
            return message(
                query,
                answer=[rr(POINTER_TO_QUESTION, SRV, srv_rdata(9000, t)) for t in targets],
                additional=[rr(t, A, ip4(f"10.0.1.{i + 1}")) for i, t in enumerate(targets)],
            )
        return nodata(query)

    with ScriptedDNS(script) as server:
        lookup = poll_lookup(
            parse_target("svc.ns:grpc", cluster_domain=DOMAIN),
            make_resolver([server.address], timeout=1.0),
        )
        assert len(lookup()) == 2
        answers["n"] = 3
        parse, parsed_on = dns.message.from_wire, []

        def spy(*args: Any, **kwargs: Any) -> Any:
            parsed_on.append(threading.current_thread().name)
            return parse(*args, **kwargs)

        result: list[object] = ["not run"]
        clock = threading.Thread(
            target=lambda: result.__setitem__(0, lookup.repeat(1.0)), name="clock"
        )
        with mock.patch.object(dns.message, "from_wire", spy):
            clock.start()
            clock.join(5.0)
        assert result == [None]
        assert "clock" not in parsed_on
        assert len(lookup()) == 3


def test_addresses_keep_their_family() -> None:
    reply, oracle = read(
        lambda q: message(
            q, answer=[rr(POINTER_TO_QUESTION, AAAA, ipaddress.IPv6Address("fd00::1").packed)]
        ),
        rdtype=AAAA,
    )
    assert list(reply.addresses) == ["fd00::1"] == [rd.address for rd in oracle]


def test_the_same_bytes_under_another_id_are_not_our_answer() -> None:
    """An answer only dnspython reads (a CNAME chain) is remembered by its bytes;
    the same bytes with another ID are no answer to this query (found by the
    differential test)."""
    alias = name("alias.ns.svc.cluster.local")

    def chain(query: bytes) -> bytes:
        return message(
            query,
            answer=[rr(POINTER_TO_QUESTION, CNAME, alias), rr(alias, A, ip4("10.0.0.1"))],
        )

    question = Question(_name(SERVICE), A)
    cache = AnswerCache(make_resolver(["127.0.0.1:53"]))
    (first,) = cache.queries((question,))
    assert first is not None
    assert cache.reply(question, first, chain(first.wire)) is not FALLBACK
    (second,) = cache.queries((question,))
    assert second is not None
    other_id = bytes([second.wire[0] ^ 0x55]) + chain(second.wire)[1:]
    cache.recognise((question,), [second], {second.id: other_id})
    assert not cache._memory[question].repeated
    assert cache.reply(question, second, other_id) is FALLBACK


def test_a_truncated_answer_to_another_opcode_is_not_retried_over_tcp() -> None:
    """dnspython asks again over TCP only for a truncated response to its query; TC on
    a message of another opcode is ignored (found by the differential test)."""
    reply, oracle = read(lambda q: message(q, flags=0x8000 | 0x0800 | 0x0200))
    assert isinstance(oracle, Rejected)
    assert reply is FALLBACK


def test_endpoints_read_from_addresses_keep_each_answers_ttl_and_hostname() -> None:
    # ttl and hostname take no part in equality; endpoints reused from an earlier
    # answer must still carry this answer's values.
    from dnsbalance._dns.plan import Addresses, _addresses

    first = _addresses(Addresses(("10.0.0.1", "10.0.0.2"), 5), 80, None)
    again = _addresses(Addresses(("10.0.0.1", "10.0.0.2"), 7), 80, "pod-a")
    other_port = _addresses(Addresses(("10.0.0.1",), 7), 81, "pod-a")
    assert [(ep.ttl, ep.hostname, ep.port) for ep in first] == [(5, None, 80)] * 2
    assert [(ep.ttl, ep.hostname, ep.port) for ep in again] == [(7, "pod-a", 80)] * 2
    assert [(ep.ttl, ep.hostname, ep.port) for ep in other_port] == [(7, "pod-a", 81)]


def test_a_thousand_addresses_are_read_without_making_a_thousand_endpoints_again() -> None:
    # A poll that finds one pod changed among 1000 makes one new Endpoint, not 1000
    # (2-4 ms of a 1000-endpoint rebuild's budget); the rest are the last poll's.
    from dnsbalance._dns.plan import Addresses, _addresses

    texts = tuple(f"10.1.{i // 250}.{i % 250 + 1}" for i in range(1000))
    before = _addresses(Addresses(texts, 30), 8000, None)
    after = _addresses(Addresses((*texts[1:], "10.9.9.9"), 30), 8000, None)
    reused = {id(ep) for ep in before} & {id(ep) for ep in after}
    assert len(reused) == 999


def test_an_a_record_reads_as_dnspython_writes_it() -> None:
    # The fast path writes A rdata with socket.inet_ntoa; dnspython is the oracle.
    import random

    import dns.ipv4

    from dnsbalance._dns.wire import _ADDRESS_TEXT

    rng = random.Random(4)
    samples = [
        bytes([a, b, c, d])
        for a in (0, 1, 127, 255)
        for b in (0, 255)
        for c in (0, 9)
        for d in (0, 10, 255)
    ]
    samples += [rng.randbytes(4) for _ in range(2000)]
    for rdata in samples:
        assert _ADDRESS_TEXT[A](rdata) == dns.ipv4.inet_ntoa(rdata)
