"""The repeat-answer shortcut's memory (dnsbalance._dns.answer_cache), tested on
answers rendered by dnspython; the drivers that use it are tests/dns/test_poll_lookup.py's.
"""

from __future__ import annotations

import random
import struct
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
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsbalance._dns.answer_cache import AnswerCache
from dnsbalance._dns.plan import Question
from dnsbalance._dns.sync import make_resolver
from dnsbalance._dns.wire import Fingerprint, frame, scan, unframe

QNAME = "svc.ns.svc.cluster.local."
PORTS = {"grpc": 9000}


def exchange_of(
    addresses: list[str],
    *,
    rdtype: str = "A",
    ttl: int = 5,
    rcode: int = dns.rcode.NOERROR,
    flags: int = 0,
    extra: list[dns.rrset.RRset] | None = None,
) -> tuple[bytes, bytes]:
    """(query wire, response wire) with the answer records in the given order."""
    query = dns.message.make_query(QNAME, rdtype, use_edns=0, payload=1232)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    response.flags |= flags
    for address in addresses:  # one RRset per record keeps the given order on the wire
        response.answer.append(dns.rrset.from_text(QNAME, ttl, "IN", rdtype, address))
    response.answer.extend(extra or [])
    return query.to_wire(), response.to_wire(max_size=65535)


# -- the fingerprint, on rendered answers ------------------------------------------------


def fingerprint(response: bytes, query: bytes) -> Fingerprint | str | None:
    """The answer's fingerprint; "dnspython" when scan() leaves it to dnspython. The
    query takes the answer's ID, as the drivers only hand over answers by ID."""
    scanned = scan(response, response[:2] + query[2:])
    return "dnspython" if scanned is None else scanned.fingerprint


def test_order_and_ttl_do_not_matter() -> None:
    query, first = exchange_of(["10.0.0.1", "10.0.0.2", "10.0.0.3"], ttl=5)
    _, shuffled = exchange_of(["10.0.0.3", "10.0.0.1", "10.0.0.2"], ttl=2)
    assert first != shuffled
    assert fingerprint(first, query) == fingerprint(shuffled, query) is not None


def test_a_different_answer_has_a_different_fingerprint() -> None:
    query, three = exchange_of(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    _, two = exchange_of(["10.0.0.1", "10.0.0.2"])
    _, other = exchange_of(["10.0.0.1", "10.0.0.2", "10.0.0.4"])
    _, nodata = exchange_of([])
    _, nxdomain = exchange_of([], rcode=dns.rcode.NXDOMAIN)
    prints = [fingerprint(wire, query) for wire in (three, two, other, nodata, nxdomain)]
    assert None not in prints
    assert "dnspython" not in prints
    assert len(set(prints)) == 5  # NODATA and NXDOMAIN differ too


def test_an_uncompressed_owner_name_reads_the_same() -> None:
    query, compressed = exchange_of(["10.0.0.1"])
    owner = dns.name.from_text(QNAME).to_wire()
    assert compressed.count(b"\xc0\x0c") == 1
    uncompressed = compressed.replace(b"\xc0\x0c", owner)
    assert dns.message.from_wire(uncompressed).answer == dns.message.from_wire(compressed).answer
    assert fingerprint(uncompressed, query) == fingerprint(compressed, query)


def test_ipv6_answers() -> None:
    query, first = exchange_of(["fd00::1", "fd00::2"], rdtype="AAAA")
    _, second = exchange_of(["fd00::2", "fd00::1"], rdtype="AAAA", ttl=1)
    assert fingerprint(first, query) == fingerprint(second, query) is not None


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("truncated", "dnspython"),
        ("servfail", "dnspython"),
        ("refused", "dnspython"),
        ("not a response", "dnspython"),
        ("another question", "dnspython"),
        ("cut short", "dnspython"),
        ("garbage", "dnspython"),
        ("extended rcode", "dnspython"),
        ("cname", "dnspython"),  # dnspython follows CNAME chains
    ],
)
def test_what_is_left_to_dnspython(case: str, expected: object) -> None:
    query, wire = exchange_of(["10.0.0.1", "10.0.0.2"])
    if case == "truncated":
        _, wire = exchange_of(["10.0.0.1"], flags=dns.flags.TC)
    elif case == "servfail":
        _, wire = exchange_of([], rcode=dns.rcode.SERVFAIL)
    elif case == "refused":
        _, wire = exchange_of([], rcode=dns.rcode.REFUSED)
    elif case == "not a response":
        wire = query
    elif case == "another question":
        other = dns.message.make_query("other.ns.svc.cluster.local.", "A", use_edns=0, payload=1232)
        wire = dns.message.make_response(other).to_wire()
    elif case == "cut short":
        wire = wire[:-3]
    elif case == "garbage":
        wire = b"\x00\x01\x81"
    elif case == "extended rcode":
        _, wire = exchange_of(["10.0.0.1"], rcode=dns.rcode.BADVERS)
    elif case == "cname":
        cname = dns.rrset.from_text(QNAME, 5, "IN", "CNAME", "elsewhere.cluster.local.")
        _, wire = exchange_of([], extra=[cname])
    assert fingerprint(wire, query) is expected


def srv_exchange(
    records: list[tuple[int, str, str]], *, ttl: int = 5, extra_types: tuple[str, ...] = ("A",)
) -> tuple[bytes, bytes]:
    """An SRV answer: (port, target label, address) per pod, the addresses in the
    Additional section, everything in the given order."""
    name = "_grpc._tcp." + QNAME
    query = dns.message.make_query(name, "SRV", use_edns=0, payload=1232)
    response = dns.message.make_response(query)
    for port, label, _ in records:
        target = f"{label}.{QNAME}"
        response.answer.append(dns.rrset.from_text(name, ttl, "IN", "SRV", f"0 50 {port} {target}"))
    for _, label, address in records:
        for rdtype in extra_types:
            value = address if rdtype == "A" else '"hello"'
            response.additional.append(
                dns.rrset.from_text(f"{label}.{QNAME}", ttl, "IN", rdtype, value)
            )
    return query.to_wire(), response.to_wire(max_size=65535)


def test_srv_answers_are_fingerprinted_with_their_targets() -> None:
    pods = [(9000, "10-0-0-1", "10.0.0.1"), (9000, "web-0", "10.0.0.2")]
    query, first = srv_exchange(pods)
    _, shuffled = srv_exchange(pods[::-1], ttl=1)
    assert b"\xc0" in first  # the Additional owners point at the SRV targets
    assert fingerprint(first, query) == fingerprint(shuffled, query) is not None
    changed = [
        [(9001, "10-0-0-1", "10.0.0.1"), pods[1]],  # a port
        [(9000, "10-0-0-3", "10.0.0.1"), pods[1]],  # a target
        [(9000, "10-0-0-1", "10.0.0.9"), pods[1]],  # an address
        pods[:1],
    ]
    for other in changed:
        assert fingerprint(srv_exchange(other)[1], query) != fingerprint(first, query)
    _, with_txt = srv_exchange(pods, extra_types=("A", "TXT"))
    assert fingerprint(with_txt, query) == "dnspython"  # dnspython reads what scan does not


def test_names_are_read_through_backward_pointers_only() -> None:
    query, wire = srv_exchange([(9000, "Web-0", "10.0.0.2")])
    scanned = scan(wire, query)
    assert scanned is not None
    assert scanned.extra == {
        (dns.name.from_text(f"web-0.{QNAME}").to_wire(), dns.rdatatype.A, bytes([10, 0, 0, 2]))
    }
    # An Additional owner that points at itself (a loop) is refused, not followed.
    owner_at = wire.rindex(b"\xc0")
    looped = wire[:owner_at] + bytes([0xC0 | owner_at >> 8, owner_at & 0xFF]) + wire[owner_at + 2 :]
    assert scan(looped, query) is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=40, unique=True),
    st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=40, unique=True),
    st.randoms(use_true_random=False),
    st.integers(0, 300),
)
def test_same_fingerprint_iff_same_addresses(
    left: list[int], right: list[int], rng: random.Random, ttl: int
) -> None:
    """The property the shortcut rests on: equal fingerprints mean dnspython would
    read the same addresses, whatever the order and TTLs on the wire."""
    as_text = [".".join(map(str, struct.pack("!I", n))) for n in left]
    other = [".".join(map(str, struct.pack("!I", n))) for n in right]
    shuffled = list(as_text)
    rng.shuffle(shuffled)
    query, a = exchange_of(as_text)
    _, b = exchange_of(shuffled, ttl=ttl)
    _, c = exchange_of(other, ttl=ttl)
    assert fingerprint(a, query) == fingerprint(b, query)
    assert (fingerprint(a, query) == fingerprint(c, query)) == (set(as_text) == set(other))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=4, max_size=4), max_size=30),
    st.lists(st.binary(min_size=16, max_size=16), max_size=30),
    st.integers(0, 2**31 - 1),
)
def test_addresses_read_as_dnspython_reads_them(v4: list[bytes], v6: list[bytes], ttl: int) -> None:
    for rdtype, packed, text in (("A", v4, dns.ipv4.inet_ntoa), ("AAAA", v6, dns.ipv6.inet_ntoa)):
        query, wire = exchange_of([text(p) for p in packed], rdtype=rdtype, ttl=ttl)
        scanned = scan(wire, query)
        assert scanned is not None
        reply = scanned.addresses()
        assert reply is not None
        assert not isinstance(reply, dns.resolver.Answer)
        parsed = dns.message.from_wire(wire)
        expected = {rd.address for rrset in parsed.answer for rd in rrset}
        assert set(reply.addresses) == expected
        assert reply.ttl == (ttl if packed else 0)


# -- the drivers, against real servers ---------------------------------------------------


def test_tcp_framing() -> None:
    stream = bytearray(frame([b"\x00\x01abc", b"\x00\x02"]))
    head, tail = stream[:4], stream[4:]
    assert list(unframe(head)) == []
    assert head == stream[:4]  # an incomplete message stays in the buffer
    head += tail
    assert list(unframe(head)) == [b"\x00\x01abc", b"\x00\x02"]
    assert head == bytearray()


def test_questions_stay_usable_as_keys() -> None:
    name = dns.name.from_text(QNAME)
    a, again = Question(name, dns.rdatatype.A), Question(name.canonicalize(), dns.rdatatype.A)
    assert a == again
    assert hash(a) == hash(again)
    assert a != Question(name, dns.rdatatype.AAAA)
    assert {a: 1}[again] == 1


# -- the asyncio driver ------------------------------------------------------------------


def test_memory_keeps_only_the_last_lookups_questions(embedded_dns: Any) -> None:
    cache = AnswerCache(make_resolver([embedded_dns.address]))
    names = [dns.name.from_text(f"web-{i}.{QNAME}") for i in range(5)]
    batch = tuple(Question(name, dns.rdatatype.A) for name in names)
    assert all(query is not None for query in cache.queries(batch))
    cache.remember(batch[:2], ())
    assert cache.replay() == batch[:2]
    assert len(cache._memory) == 2


def answered(
    cache: AnswerCache, batch: tuple[Question, ...], addresses: list[str], *, ttl: int = 5
) -> tuple[list[Any], dict[bytes, bytes]]:
    """The batch's (one) query, and an answer with ``addresses`` in that order under
    its ID, as a driver hands them to the cache."""
    queries = cache.queries(batch)
    query = queries[0]
    assert query is not None
    _, response = exchange_of(addresses, ttl=ttl)
    return queries, {query.id: query.id + response[2:]}


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The calls the answer cache makes to wire.scan from now on (scan itself runs)."""
    import dnsbalance._dns.answer_cache as answer_cache

    calls: list[tuple[Any, ...]] = []
    real_scan = answer_cache.scan
    monkeypatch.setattr(answer_cache, "scan", lambda *args: calls.append(args) or real_scan(*args))
    return calls


def test_answers_seen_before_are_recognised_and_forgotten_when_the_answer_changes() -> None:
    """The poll clock recognises answers by their bytes once scanned (servers rotate
    records, so several orders count); an order seen under the old addresses never
    counts once the answer has changed."""
    cache = AnswerCache(make_resolver(["127.0.0.1"]))
    question = Question(dns.name.from_text(QNAME), dns.rdatatype.A)
    batch = (question,)

    def answer_with(addresses: list[str]) -> tuple[list[Any], dict[bytes, bytes]]:
        return answered(cache, batch, addresses)

    def recognised(addresses: list[str]) -> bool:
        queries, responses = answer_with(addresses)
        cache.recognise(batch, queries, responses)
        return cache.unchanged(batch) is not None

    old = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    queries, responses = answer_with(old)
    assert cache.replies(batch, queries, responses)[0] is not None  # adopted
    cache.remember(batch, ())
    rotations = [old[i:] + old[:i] for i in range(3)]
    for _ in range(2):  # first scanned, then known by their bytes: the same reading
        assert all(recognised(order) for order in rotations)
    assert not recognised(["10.0.0.1", "10.0.0.2"])
    queries, responses = answer_with(["10.0.0.1", "10.0.0.2"])  # the answer changes
    cache.replies(batch, queries, responses)
    cache.remember(batch, ())
    assert not any(recognised(order) for order in rotations)
    assert recognised(["10.0.0.2", "10.0.0.1"])


def test_query_ids_avoid_those_taken_on_the_same_socket() -> None:
    """The poll clock sends a round's questions to one server from one socket: a
    query's ID must differ from every other in flight there (the round's ``taken``)."""
    cache = AnswerCache(make_resolver(["127.0.0.1:53"]))
    batch = tuple(
        Question(dns.name.from_text(f"s{i}.ns.svc.cluster.local."), dns.rdatatype.A)
        for i in range(8)
    )
    free = {struct.pack("!H", n) for n in range(0, 65536, 4096)}  # 16 IDs left
    taken = {struct.pack("!H", n) for n in range(65536)} - free
    queries = cache.queries(batch, taken=taken)
    ids = [query.id for query in queries if query is not None]
    assert len(ids) == len(batch)
    assert len(set(ids)) == len(ids)
    assert set(ids) <= free


# -- answers recognised whatever their order ----------------------------------------------


def test_every_order_of_the_last_answer_is_recognised_without_a_scan(
    scans: list[tuple[Any, ...]],
) -> None:
    """CoreDNS's ``loadbalance`` shuffles an answer's records on every reply (BIND's
    rrset-order rotates them): 3 records come in 6 orders, 5 in 120. The poll clock
    recognises each as the last answer by its records, order and TTLs aside, without
    scanning it (a scan was half of an idle poller's CPU)."""
    import itertools

    cache = AnswerCache(make_resolver(["127.0.0.1"]))
    question = Question(dns.name.from_text(QNAME), dns.rdatatype.A)
    batch = (question,)
    old = [f"10.0.0.{i}" for i in range(1, 6)]
    queries, responses = answered(cache, batch, old)
    assert cache.replies(batch, queries, responses)[0] is not None  # adopted
    cache.remember(batch, ())
    scans.clear()
    orders = list(itertools.permutations(old))
    for i, order in enumerate(orders):
        queries, responses = answered(cache, batch, list(order), ttl=5 + i % 7)
        cache.recognise(batch, queries, responses)
        assert cache.unchanged(batch) is not None, order
    assert scans == []
    queries, responses = answered(cache, batch, old[:4])  # a pod left: scanned, not recognised
    cache.recognise(batch, queries, responses)
    assert cache.unchanged(batch) is None
    assert len(scans) == 1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=30, unique=True),
    st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=30, unique=True),
    st.randoms(use_true_random=False),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["A", "AAAA"]),
)
def test_an_unordered_body_stands_for_one_fingerprint(
    left: list[int], right: list[int], rng: random.Random, ttl: int, rdtype: str
) -> None:
    """What the order-free recognition rests on: two answers with equal unordered
    bodies scan to the same fingerprint (and every order and TTL of one answer has
    the same body)."""
    from dnsbalance._dns.wire import question_end, unordered_body

    def text(n: int) -> str:
        if rdtype == "A":
            return dns.ipv4.inet_ntoa(struct.pack("!I", n))
        return dns.ipv6.inet_ntoa(struct.pack("!QQ", n, n * 7919))

    first = [text(n) for n in left]
    shuffled = list(first)
    rng.shuffle(shuffled)
    query, a = exchange_of(first, rdtype=rdtype)
    _, b = exchange_of(shuffled, rdtype=rdtype, ttl=ttl)
    _, c = exchange_of([text(n) for n in right], rdtype=rdtype, ttl=ttl)
    end = question_end(query)
    keys = [unordered_body(wire, query, end) for wire in (a, b, c)]
    assert None not in keys
    assert keys[0] == keys[1]
    prints = [fingerprint(wire, query) for wire in (a, b, c)]
    assert prints[0] == prints[1]
    assert (keys[0] == keys[2]) == (prints[0] == prints[2]) == (set(left) == set(right))


def test_answers_of_another_shape_have_no_unordered_body() -> None:
    """Only answers whose every record is an A/AAAA of the question's type, owned by
    a pointer to the question, of the type's size, are read without a scan."""
    from dnsbalance._dns.wire import question_end, unordered_body
    from tests.kits.dns_wire import CNAME, POINTER_TO_QUESTION, message, name, rr

    query = dns.message.make_query(QNAME, "A", use_edns=0, payload=1232).to_wire()
    end = question_end(query)
    good = rr(POINTER_TO_QUESTION, dns.rdatatype.A, bytes([10, 0, 0, 1]))
    cases = {
        "uncompressed owner": [rr(name(QNAME), dns.rdatatype.A, bytes([10, 0, 0, 1]))],
        "a CNAME first": [rr(POINTER_TO_QUESTION, CNAME, name("other.ns.svc.cluster.local")), good],
        "class CH": [rr(POINTER_TO_QUESTION, dns.rdatatype.A, bytes(4), rclass=3)],
        "AAAA in an A answer": [rr(POINTER_TO_QUESTION, dns.rdatatype.AAAA, bytes(16))],
        "rdata of 5 bytes": [rr(POINTER_TO_QUESTION, dns.rdatatype.A, bytes(5))],
    }
    for case, answer in cases.items():
        assert unordered_body(message(query, answer=answer), query, end) is None, case
    assert unordered_body(message(query, answer=[good]), query, end) is not None
    short = message(query, answer=[good], counts=(1, 2, 0, 0))  # a record missing
    assert unordered_body(short, query, end) is None
    srv = dns.message.make_query("_grpc._tcp." + QNAME, "SRV").to_wire()
    assert unordered_body(message(srv, answer=[]), srv, question_end(srv)) is None


def test_a_poller_lookup_reads_a_reordered_unchanged_answer_without_a_scan(
    scans: list[tuple[Any, ...]],
) -> None:
    """The poller's own lookups (an answer over TCP, which the clock leaves to them: a
    Service of more than ~28 pods) get the same shortcut: a 1000-record answer in
    another order is the last reply, not a scan of 16 KB (1-2 ms of CPU a poll)."""
    cache = AnswerCache(make_resolver(["127.0.0.1"]))
    question = Question(dns.name.from_text(QNAME), dns.rdatatype.A)
    batch = (question,)
    addresses = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(1000)]

    def replies_for(order: list[str]) -> list[Any]:
        return cache.replies(batch, *answered(cache, batch, order))

    first = replies_for(addresses)[0]
    scans.clear()
    rng = random.Random(7)
    for _ in range(3):
        order = list(addresses)
        rng.shuffle(order)
        assert replies_for(order)[0] is first
    assert scans == []
    changed = replies_for(addresses[1:])[0]  # a pod left: read anew
    assert changed is not first
    assert len(scans) == 1
