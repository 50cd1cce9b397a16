"""Differential tests: dnsbalance reads DNS answers exactly as dnspython does.

Hypothesis builds responses, valid (1-2,000 records, shuffled, mixed-case and
compressed owners, CNAME chains, A+AAAA, TTL 0 and huge, EDNS with and without
options, SRV with and without Additional targets) and hostile (flags, opcodes and
rcodes, wrong ID or question, truncation at any byte, byte flips, bad counts,
trailing bytes, pointer loops, bad labels, long names, short rdata, OPT and TSIG
misplaced, records of other owners, classes and types, duplicates, NXDOMAIN with
answers, empty and random messages). The same bytes go to dnsbalance and to
dnspython; they must agree on the reply or dnsbalance must leave the question to
dnspython's resolver, and no exception may escape.

- Pure: :meth:`AnswerCache.reply` against :func:`dns_oracle.dnspython_reads`,
  fresh and after an earlier answer (the fingerprint path), and the clock's
  :meth:`~AnswerCache.recognise`.
- Network: a loopback server answering with the bytes, under each driver (first
  poll, repeated polls, the clock's ``repeat()``, ``discover()``, asyncio), held
  against dnspython's own resolver on the same server; sequences of answers
  check that polls after a fallback follow the current answer.

CI runs a fixed seed and a bounded number of examples. For a long local run:
``DNSBALANCE_FUZZ_EXAMPLES=20000 pytest tests/dns/test_differential.py`` (random
seeds, every example counted in the summary line hypothesis prints with
``--hypothesis-show-statistics``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsbalance import DnsBalanceError, Endpoint, ResolutionError, discover, parse_target
from dnsbalance._dns import aio as aio_discovery
from dnsbalance._dns.answer_cache import TRUNCATED, AnswerCache, Shortcut
from dnsbalance._dns.plan import Addresses, Question, _name, lookup_plan
from dnsbalance._dns.sync import ask, make_resolver, poll_lookup, run_plan
from dnsbalance._target import Target
from tests.kits.dns_oracle import TRUNCATED as ORACLE_TRUNCATED
from tests.kits.dns_oracle import Rejected, dnspython_reads
from tests.kits.dns_wire import (
    AAAA,
    CH,
    CNAME,
    HS,
    NS,
    POINTER_TO_QUESTION,
    QR,
    SOA,
    SRV,
    TC,
    TSIG,
    TXT,
    A,
    message,
    name,
    opt,
    rr,
    soa_rdata,
    srv_rdata,
)
from tests.kits.scripted_dns import ScriptedDNS

SERVICE = "svc.ns.svc.cluster.local."
SRV_NAME = "_grpc._tcp.svc.ns.svc.cluster.local."
DOMAIN = "cluster.local"
QNAMES = {A: SERVICE, AAAA: SERVICE, SRV: SRV_NAME}
SVC_IN_SRV_QUESTION = 12 + len("\x05_grpc\x04_tcp")  # where "svc.ns..." starts in it

LONG_RUN = int(os.environ.get("DNSBALANCE_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int) -> Callable[[Any], Any]:
    """Bounded and seeded in CI; ``DNSBALANCE_FUZZ_EXAMPLES`` for long random runs."""
    return settings(
        max_examples=LONG_RUN or examples,
        derandomize=not LONG_RUN,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- building responses ------------------------------------------------------------------


def random_case(text: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


@dataclass
class Recipe:
    """How to answer one query: records by section, then byte-level mutations.
    A function of the query, since every query has its own ID."""

    rcode: int = dns.rcode.NOERROR
    answer: list[Callable[[bytes], bytes]] = field(default_factory=list)
    authority: list[Callable[[bytes], bytes]] = field(default_factory=list)
    additional: list[Callable[[bytes], bytes]] = field(default_factory=list)
    flags: int = QR
    mutations: list[Callable[[bytes, bytes], bytes]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # what hypothesis shows

    def __call__(self, query: bytes) -> bytes:
        wire = message(
            query,
            rcode=self.rcode,
            flags=self.flags,
            answer=[part(query) for part in self.answer],
            authority=[part(query) for part in self.authority],
            additional=[part(query) for part in self.additional],
        )
        for mutate in self.mutations:
            wire = mutate(query, wire)
        return wire

    def __repr__(self) -> str:
        return f"Recipe({', '.join(self.labels)})"


def owner_name(style: str, text: str, seed: int) -> Callable[[bytes], bytes]:
    """The question's name as an owner: a pointer to the question, or written out
    in lowercase or mixed case."""
    if style == "pointer":
        return lambda query: POINTER_TO_QUESTION
    written = name(random_case(text, random.Random(seed)) if style == "mixed" else text)
    return lambda query: written


def target_name(label: str, compressed: bool) -> bytes:
    """A pod name under the Service: written out, or a label and a pointer to the
    Service name inside the SRV question."""
    if compressed:
        return (
            bytes([len(label)]) + label.encode() + struct.pack("!H", 0xC000 | SVC_IN_SRV_QUESTION)
        )
    return name(f"{label}.svc.ns.svc.cluster.local")


def addresses_of(qtype: int, count: int, pool: int, seed: int) -> list[bytes]:
    """``count`` addresses drawn from ``pool`` distinct ones (duplicates when pool
    is small)."""
    rng = random.Random(seed)
    picks = [rng.randrange(pool) for _ in range(count)]
    if qtype == AAAA:
        return [ipaddress.IPv6Address(0xFD00 << 112 | n).packed for n in picks]
    return [ipaddress.IPv4Address(0x0A000000 | n).packed for n in picks]


TTLS = st.sampled_from([0, 1, 5, 30, 86400, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])


@st.composite
def valid_recipes(draw: st.DrawFn, qtype: int, most: int = 2000) -> Recipe:
    recipe = Recipe()
    qname = QNAMES[qtype]
    kind = draw(st.sampled_from(["records", "records", "records", "nodata", "nxdomain", "cname"]))
    recipe.labels.append(kind)
    soa = draw(st.booleans())
    if kind == "nxdomain":
        recipe.rcode = dns.rcode.NXDOMAIN
    size = draw(st.sampled_from(["few"] * 6 + ["some"] * 3 + ["many"]))
    count = draw(
        {
            "few": st.integers(1, 8),
            "some": st.integers(9, 120),
            "many": st.sampled_from([1000, 2000]),
        }[size]
    )
    count = min(count, most, 1000 if qtype == SRV else 2000)
    if kind in ("records", "cname"):
        recipe.labels.append(f"{count} records")
        ttl = draw(TTLS)
        seed = draw(st.integers(0, 2**16))
        style = draw(st.sampled_from(["pointer", "pointer", "lower", "mixed"]))
        owner: Callable[[bytes], bytes] = owner_name(style, qname, seed)
        if kind == "cname":
            alias = name(f"alias-{seed % 7}.ns.svc.cluster.local")
            recipe.answer.append(lambda q, a=alias: rr(POINTER_TO_QUESTION, CNAME, a))
            owner = lambda q, a=alias: a  # noqa: E731
        if qtype == SRV:
            compressed = draw(st.booleans())
            with_additional = draw(st.sampled_from(["all", "none", "some"]))
            rng = random.Random(seed)
            for i in range(count):
                label = f"10-0-{i // 250}-{i % 250 + 1}" if rng.random() < 0.7 else f"web-{i}"
                target = target_name(label, compressed)
                port = rng.choice([0, 8000, 9000, 65535])
                rdata = srv_rdata(
                    port, target, priority=rng.randrange(3), weight=rng.randrange(100)
                )
                recipe.answer.append(lambda q, o=owner, r=rdata, t=ttl: rr(o(q), SRV, r, ttl=t))
                if with_additional == "all" or (with_additional == "some" and rng.random() < 0.5):
                    address = ipaddress.IPv4Address(0x0A000000 | (i + 1)).packed
                    written = name(f"{label}.svc.ns.svc.cluster.local")
                    recipe.additional.append(
                        lambda q, w=written, a=address, t=ttl: rr(w, A, a, ttl=t)
                    )
        else:
            pool = draw(st.sampled_from([count, max(1, count // 2), 3]))
            family = draw(st.sampled_from([qtype, qtype, A if qtype == AAAA else AAAA]))
            for address in addresses_of(qtype, count, pool, seed):
                recipe.answer.append(lambda q, o=owner, a=address, t=ttl: rr(o(q), qtype, a, ttl=t))
            if family != qtype:  # records of the other family under the same name
                recipe.labels.append("other family")
                other = addresses_of(family, 2, 2, seed)
                recipe.answer.extend(lambda q, o=owner, a=a: rr(o(q), family, a) for a in other)
        order = draw(st.permutations(range(len(recipe.answer))))
        recipe.answer = [recipe.answer[i] for i in order]
    if soa or kind in ("nodata", "nxdomain"):
        recipe.authority.append(lambda q: rr(name(DOMAIN), SOA, soa_rdata()))
    if draw(st.booleans()):
        recipe.authority.append(lambda q: rr(name(DOMAIN), NS, name("ns.dns.cluster.local")))
    edns = draw(st.sampled_from(["opt", "opt", "none", "option"]))
    if edns != "none":
        options = b"\x00\x0a\x00\x08" + bytes(8) if edns == "option" else b""  # a COOKIE
        recipe.additional.append(lambda q: opt(options=options))
    recipe.labels.append(edns)
    return recipe


def _set_flags(bits: int, clear: int = 0) -> Callable[[bytes, bytes], bytes]:
    def mutate(query: bytes, wire: bytes) -> bytes:
        if len(wire) < 4:
            return wire
        flags = (int.from_bytes(wire[2:4], "big") & ~clear) | bits
        return wire[:2] + flags.to_bytes(2, "big") + wire[4:]

    return mutate


def _counts(section: int, delta: int) -> Callable[[bytes, bytes], bytes]:
    def mutate(query: bytes, wire: bytes) -> bytes:
        at = 4 + 2 * section
        if len(wire) < at + 2:
            return wire
        value = (int.from_bytes(wire[at : at + 2], "big") + delta) % 65536
        return wire[:at] + value.to_bytes(2, "big") + wire[at + 2 :]

    return mutate


def _self_pointer_record(query: bytes, wire_so_far_len: int) -> bytes:
    return rr(struct.pack("!H", 0xC000 | wire_so_far_len), SOA, soa_rdata())


HOSTILE_RECORDS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "forward pointer": ("authority", lambda q: rr(b"\xc3\xff", SOA, soa_rdata())),
    "label type 0x40": ("authority", lambda q: rr(b"\x40\x00", SOA, soa_rdata())),
    "label type 0x80": ("additional", lambda q: rr(b"\x80\x00", A, bytes(4))),
    "name over 255": (
        "authority",
        lambda q: rr((b"\x3f" + b"a" * 63) * 5 + b"\x00", NS, name("x")),
    ),
    "3-byte SOA": ("authority", lambda q: rr(name(DOMAIN), SOA, b"\x00\x00\x00")),
    "TXT overrun": ("additional", lambda q: rr(name(DOMAIN), TXT, b"\x05ab")),
    "A of 5 bytes": ("answer", lambda q: rr(POINTER_TO_QUESTION, A, bytes(5))),
    "AAAA of 4 bytes": ("answer", lambda q: rr(POINTER_TO_QUESTION, AAAA, bytes(4))),
    "SRV target overruns": (
        "answer",
        lambda q: rr(POINTER_TO_QUESTION, SRV, srv_rdata(1, b"\x05ab")),
    ),
    "OPT non-root owner": ("additional", lambda q: opt(owner=name("x"))),
    "second OPT": ("additional", lambda q: opt()),
    "OPT in answer": ("answer", lambda q: opt()),
    "OPT extended rcode": ("additional", lambda q: opt(ext_rcode=1)),
    "TSIG without key": (
        "additional",
        lambda q: rr(name("key"), TSIG, name("hmac-sha256") + bytes(16), rclass=255, ttl=0),
    ),
    "other owner": ("answer", lambda q: rr(name("evil.example"), A, bytes([192, 0, 2, 66]))),
    "class CH A": (
        "answer",
        lambda q: rr(POINTER_TO_QUESTION, A, name("x") + b"\x00\x05", rclass=CH),
    ),
    "class HS A": (
        "answer",
        lambda q: rr(POINTER_TO_QUESTION, A, bytes([192, 0, 2, 7]), rclass=HS),
    ),
    "CH A in additional": (
        "additional",
        lambda q: rr(name("t.svc.ns.svc.cluster.local"), A, name("x") + b"\x00\x05", rclass=CH),
    ),
    "TXT in answer": ("answer", lambda q: rr(POINTER_TO_QUESTION, TXT, b"\x03abc")),
    "duplicate A": ("answer", lambda q: rr(POINTER_TO_QUESTION, A, bytes([10, 0, 0, 1]))),
    "empty rdata": ("answer", lambda q: rr(POINTER_TO_QUESTION, A, b"")),
}


@st.composite
def hostile_recipes(draw: st.DrawFn, qtype: int, most: int = 2000) -> Recipe:
    recipe = draw(valid_recipes(qtype, most))
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(
            st.sampled_from(
                [
                    "record",
                    "record",
                    "flags",
                    "rcode",
                    "id",
                    "question",
                    "cut",
                    "flip",
                    "trailing",
                    "count",
                    "nxdomain+answer",
                    "bytes",
                ]
            )
        )
        recipe.labels.append(kind)
        if kind == "record":
            label = draw(st.sampled_from(sorted(HOSTILE_RECORDS)))
            section, make = HOSTILE_RECORDS[label]
            getattr(recipe, section).append(make)
            recipe.labels.append(label)
        elif kind == "flags":
            recipe.mutations.append(
                draw(
                    st.sampled_from(
                        [
                            _set_flags(0, clear=QR),
                            _set_flags(TC),
                            _set_flags(0x0800),
                            _set_flags(0x7800),
                        ]
                    )
                )
            )
        elif kind == "rcode":
            recipe.rcode = draw(st.integers(0, 15))
        elif kind == "nxdomain+answer":
            recipe.rcode = dns.rcode.NXDOMAIN
            recipe.answer.append(
                lambda q: rr(POINTER_TO_QUESTION, qtype, bytes(16 if qtype == AAAA else 4))
            )
        elif kind == "id":
            recipe.mutations.append(lambda q, w: bytes([w[0] ^ 0x55]) + w[1:] if w else w)
        elif kind == "question":
            recipe.mutations.append(
                lambda q, w: w[:14] + bytes([w[14] ^ 0x01]) + w[15:] if len(w) > 14 else w
            )
        elif kind == "cut":
            where = draw(st.floats(0, 1))
            recipe.mutations.append(lambda q, w, f=where: w[: int(len(w) * f)])
        elif kind == "flip":
            where, value = draw(st.floats(0, 1)), draw(st.integers(0, 255))
            recipe.mutations.append(
                lambda q, w, f=where, v=value: (
                    w[: int((len(w) - 1) * f)] + bytes([v]) + w[int((len(w) - 1) * f) + 1 :]
                )
            )
        elif kind == "trailing":
            junk = draw(st.binary(min_size=1, max_size=8))
            recipe.mutations.append(lambda q, w, j=junk: w + j)
        elif kind == "count":
            section, delta = draw(st.integers(0, 3)), draw(st.sampled_from([-1, 1, 7]))
            recipe.mutations.append(_counts(section, delta))
        else:
            junk = draw(st.binary(max_size=64))
            keep = draw(st.booleans())  # keep our ID, so the driver takes it for the answer
            recipe.mutations.append(lambda q, w, j=junk, k=keep: (q[:2] if k else b"") + j)
    return recipe


def recipes(qtype: int, most: int = 2000) -> st.SearchStrategy[Recipe]:
    return st.one_of(valid_recipes(qtype, most), hostile_recipes(qtype, most))


# -- comparing readings --------------------------------------------------------------------


def reading(reply: Any) -> Any:
    """What the lookup plan reads of a reply: addresses and TTL of an A/AAAA answer,
    the records and IN Additional addresses of an SRV answer, or NXDOMAIN."""
    if reply is None:
        return "NXDOMAIN"
    if isinstance(reply, Addresses):
        return ("addresses", sorted(set(reply.addresses)), reply.ttl if reply.addresses else None)
    assert isinstance(reply, dns.resolver.Answer)
    if reply.rrset is None:
        return ("addresses", [], None) if reply.rdtype != SRV else ("srv", [], [], None)
    if reply.rdtype in (A, AAAA):
        return ("addresses", sorted({rd.address for rd in reply}), reply.rrset.ttl)
    extra = sorted(
        (rrset.name.to_text().lower(), rd.address)
        for rrset in reply.response.additional
        if rrset.rdclass == dns.rdataclass.IN and rrset.rdtype in (A, AAAA)
        for rd in rrset
    )
    records = sorted((rd.priority, rd.weight, rd.port, rd.target.to_text().lower()) for rd in reply)
    return ("srv", records, extra, reply.rrset.ttl)


def without_ttl(value: Any) -> Any:
    return value[:-1] if isinstance(value, tuple) else value


REJECTIONS: list[str] = []  # why dnspython rejected, shown when an assertion fails


def oracle(query: bytes, response: bytes, tcp: bool = False) -> Any:
    try:
        reply = dnspython_reads(query, response, tcp=tcp)
    except Rejected as exc:
        REJECTIONS.append(str(exc))
        return "rejected"
    return "truncated" if reply is ORACLE_TRUNCATED else reading(reply)


def through_cache(
    cache: AnswerCache, qtype: int, recipe: Recipe, tcp: bool = False
) -> tuple[Any, bytes, bytes, bool]:
    question = Question(_name(QNAMES[qtype]), dns.rdatatype.RdataType(qtype))
    (query,) = cache.queries((question,))
    assert query is not None
    if tcp:
        query = query._replace(tcp=True)
    response = recipe(query.wire)
    reply = cache.reply(question, query, response)  # must never raise
    return reply, query.wire, response, query.tcp


def check_agrees(
    reply: Any, query: bytes, response: bytes, *, repeated: bool = False, tcp: bool = False
) -> str:
    """Assert dnsbalance's reply for ``response`` is dnspython's; the path taken."""
    expected = oracle(query, response, tcp)
    if reply is TRUNCATED:
        assert expected == "truncated", (expected, response)
        return "truncated"
    if isinstance(reply, Shortcut):  # FALLBACK: dnspython's resolver decides
        return "fallback"
    assert expected not in ("rejected", "truncated"), (
        f"adopted what dnspython rejects ({REJECTIONS[-1:]}): {response[:200]!r}..."
    )
    got = reading(reply)
    if repeated:  # a repeated fingerprint keeps the TTLs it was first read with
        assert without_ttl(got) == without_ttl(expected), (got, expected)
    else:
        assert got == expected, (got, expected)
    return "adopted"


QTYPES = st.sampled_from([A, AAAA, SRV])


@fuzz(1000)
@given(qtype=QTYPES, recipe=st.data())
def test_one_answer_reads_as_dnspython_reads_it(qtype: int, recipe: st.DataObject) -> None:
    first = recipe.draw(recipes(qtype), label="first")
    cache = AnswerCache(make_resolver(["127.0.0.1:53"]))
    reply, query, response, tcp = through_cache(cache, qtype, first)
    check_agrees(reply, query, response, tcp=tcp)


@fuzz(600)
@given(qtype=QTYPES, data=st.data())
def test_an_answer_after_another_reads_as_dnspython_reads_it(
    qtype: int, data: st.DataObject
) -> None:
    """The fingerprint path: a second answer (the same recipe, shuffled again, or
    another) after a first that was adopted or not; and the clock's check."""
    cache = AnswerCache(make_resolver(["127.0.0.1:53"]))
    first = data.draw(recipes(qtype), label="first")
    second = data.draw(st.one_of(st.just(first), recipes(qtype)), label="second")
    tcp = data.draw(st.booleans(), label="tcp")
    through_cache(cache, qtype, first, tcp=tcp)
    question = Question(_name(QNAMES[qtype]), dns.rdatatype.RdataType(qtype))
    # The clock's check first: it may only say "the same as the adopted one".
    queries = cache.queries((question,))
    query = queries[0]
    assert query is not None
    if tcp:
        query = query._replace(tcp=True)
        queries = [query]
    response = second(query.wire)
    memory = cache._memory[question]
    adopted = memory.fingerprint is not None
    cache.recognise((question,), queries, {query.id: response})
    recognised = memory.repeated
    reply = cache.reply(question, query, response)
    path = check_agrees(reply, query.wire, response, repeated=memory.repeated, tcp=query.tcp)
    if recognised:
        assert adopted
        assert path == "adopted"
        assert without_ttl(reading(reply)) == without_ttl(oracle(query.wire, response, query.tcp))


@pytest.mark.parametrize("qtype", [A, AAAA, SRV])
def test_valid_answers_take_the_fast_path(qtype: int) -> None:
    """Not vacuous: the shapes CoreDNS and BIND send are read without dnspython's
    parse (A/AAAA) or at least without a fallback, and recognised when repeated."""
    rng = random.Random(qtype)
    for count in (1, 3, 70, 1000):
        cache = AnswerCache(make_resolver(["127.0.0.1:53"]))
        recipe = Recipe(labels=["coredns"])
        if qtype == SRV:
            for i in range(min(count, 200)):
                target = target_name(f"10-0-0-{i % 250 + 1}", compressed=True)
                recipe.answer.append(
                    lambda q, t=target: rr(POINTER_TO_QUESTION, SRV, srv_rdata(9000, t))
                )
                address = bytes([10, 0, 0, i % 250 + 1])
                recipe.additional.append(
                    lambda q, i=i, a=address: rr(
                        name(f"10-0-0-{i % 250 + 1}.svc.ns.svc.cluster.local"), A, a
                    )
                )
        else:
            for address in addresses_of(qtype, count, count, rng.randrange(1000)):
                recipe.answer.append(lambda q, a=address: rr(POINTER_TO_QUESTION, qtype, a))
        recipe.additional.append(lambda q: opt())
        reply, query, response, _ = through_cache(cache, qtype, recipe)
        assert check_agrees(reply, query, response) == "adopted"
        rng.shuffle(recipe.answer)
        reply, query, response, _ = through_cache(cache, qtype, recipe)
        question = Question(_name(QNAMES[qtype]), dns.rdatatype.RdataType(qtype))
        assert cache._memory[question].repeated
        assert check_agrees(reply, query, response, repeated=True) == "adopted"


# -- through the drivers, on a real socket --------------------------------------------------


@dataclass
class Served:
    """The script of a loopback DNS server: each question type's current recipe;
    the Service name's A/AAAA (looked up for SRV targets) answer .5 and nothing."""

    recipes: dict[int, Recipe]

    def __call__(self, query: bytes, tcp: bool) -> bytes | None:
        try:
            question = dns.message.from_wire(query).question[0]
        except Exception:
            return None
        recipe = self.recipes.get(question.rdtype)
        if recipe is not None and question.name == _name(QNAMES[question.rdtype]):
            return recipe(query)
        if question.rdtype == A:  # other names: SRV targets, the Service under SRV
            return message(query, answer=[rr(POINTER_TO_QUESTION, A, bytes([10, 0, 0, 5]))])
        return message(query)


LIFETIME = 0.1


def by_dnspython(server: str, target: Target) -> Any:
    """The plan, every question asked by dnspython's own resolver (no shortcut)."""
    resolver = make_resolver([server], timeout=LIFETIME)
    try:
        return run_plan(lookup_plan(target), lambda question: ask(resolver, question))
    except ResolutionError:
        return "error"


def by_dnsbalance(lookup: Callable[[], tuple[Endpoint, ...]]) -> Any:
    try:
        return lookup()
    except ResolutionError:
        return "error"
    except DnsBalanceError as exc:  # pragma: no cover - only ResolutionError is expected
        raise AssertionError(f"unexpected {exc!r}") from exc


def assert_same(got: Any, expected: Any) -> None:
    if expected == "error" or got == "error":
        assert got == expected
        return
    assert got == expected
    assert all(isinstance(e.address, str) and ipaddress.ip_address(e.address) for e in got)


TARGETS = {A: "svc.ns:80", AAAA: "svc.ns:80", SRV: "svc.ns:grpc"}


def small(qtype: int) -> st.SearchStrategy[Recipe]:
    """Recipes whose answers fit a UDP datagram (the server sends what they make)."""
    return recipes(qtype, most=40)


@fuzz(25)
@given(qtype=QTYPES, data=st.data())
def test_polls_follow_the_current_answer(qtype: int, data: st.DataObject) -> None:
    """A sequence of answers, good and hostile, under one poller: after every poll
    (first, repeated, after a fallback) dnsbalance finds what dnspython's resolver
    finds on the same server, or both fail; the clock's repeat() may only confirm."""
    sequence = data.draw(st.lists(small(qtype), min_size=2, max_size=4), label="answers")
    target = parse_target(TARGETS[qtype], cluster_domain=DOMAIN)
    served = Served({})
    with ScriptedDNS(served) as server:
        lookup = poll_lookup(target, make_resolver([server.address], timeout=LIFETIME))
        for recipe in sequence:
            served.recipes = {qtype: recipe}
            expected = by_dnspython(server.address, target)
            repeated = lookup.repeat(LIFETIME)
            if repeated is not None:  # the clock confirmed the last adopted answers
                assert repeated == expected
            got = by_dnsbalance(lookup)
            assert_same(got, expected)


@fuzz(15)
@given(qtype=QTYPES, data=st.data())
def test_discover_and_the_asyncio_driver_agree(qtype: int, data: st.DataObject) -> None:
    recipe = data.draw(small(qtype), label="answer")
    target = parse_target(TARGETS[qtype], cluster_domain=DOMAIN)
    served = Served({qtype: recipe})
    with ScriptedDNS(served) as server:
        expected = by_dnspython(server.address, target)
        found = by_dnsbalance(
            lambda: discover(target, nameservers=[server.address], timeout=LIFETIME)
        )
        assert_same(found, expected)

        async def twice() -> list[Any]:
            lookup = aio_discovery.poll_lookup(
                target, aio_discovery.make_resolver([server.address], timeout=LIFETIME)
            )
            seen = []
            for _ in range(2):
                try:
                    seen.append(await lookup())
                except ResolutionError:
                    seen.append("error")
            return seen

        for got in asyncio.run(twice()):
            assert_same(got, expected)


def test_the_oracle_is_dnspythons_resolver() -> None:
    """dns_oracle.dnspython_reads (no socket) says what dns.resolver says over one."""
    rng = random.Random(7)
    cases: list[Recipe] = []
    for label, (section, make) in sorted(HOSTILE_RECORDS.items()):
        recipe = Recipe(
            labels=[label], answer=[lambda q: rr(POINTER_TO_QUESTION, A, bytes([10, 0, 0, 1]))]
        )
        getattr(recipe, section).append(make)
        cases.append(recipe)
    cases.append(
        Recipe(
            labels=["plain"], answer=[lambda q: rr(POINTER_TO_QUESTION, A, bytes([10, 0, 0, 9]))]
        )
    )
    cases.append(Recipe(labels=["nxdomain"], rcode=dns.rcode.NXDOMAIN))
    rng.shuffle(cases)
    for recipe in cases:
        served = Served({A: recipe, AAAA: Recipe(labels=["nodata"])})
        with ScriptedDNS(served) as server:
            resolver = make_resolver([server.address], timeout=LIFETIME)
            query = dns.message.make_query(SERVICE, "A", use_edns=0, payload=1232).to_wire()
            expected = oracle(query, recipe(query))
            try:
                answer = resolver.resolve(SERVICE, "A", search=False, raise_on_no_answer=False)
                real: Any = reading(answer)
            except dns.resolver.NXDOMAIN:
                real = "NXDOMAIN"
            except dns.exception.DNSException:
                real = "rejected"
            assert real == expected, recipe
