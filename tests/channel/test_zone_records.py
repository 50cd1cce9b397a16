"""The local DNS's quick answers (AddressNode + quick_reply) say what the general
answering path (answer + render) says, for every kind of question, and the local DNS
serves exactly what was published, over UDP and TCP."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from dnsbalance import Endpoint
from dnsbalance._channel import local_dns
from dnsbalance._channel.zone_records import (
    OUR_PAYLOAD,
    TCP_LIMIT,
    UDP_LIMIT,
    AddressNode,
    Snapshot,
    answer,
    build_snapshot,
    quick_reply,
    render,
)

ORIGIN = dns.name.from_text("dnsbalance.invalid")
NAME = dns.name.from_text("c7.dnsbalance.invalid")
V4 = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(1000)]
V6 = ["fd00::2", "fd00::1", "fd00::1"]  # unsorted, a duplicate


def snapshot(addresses: dict[dns.rdatatype.RdataType, list[str]]) -> Snapshot:
    node = AddressNode(NAME, 1, addresses)
    ns_address = dns.rrset.from_text("ns.dns.dnsbalance.invalid.", 1, "IN", "A", "127.0.0.1")
    return build_snapshot(ORIGIN, 1, 42, {NAME: node}, ns_address)


def slow_reply(wire: bytes, snap: Snapshot, *, tcp: bool) -> bytes:
    """What ZoneResponder answers without the quick path (its _handle, minus hooks)."""
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
    answer(response, snap, ORIGIN, query.question[0], with_additional=True)
    if tcp:
        limit = TCP_LIMIT
    elif query.edns >= 0:
        limit = max(UDP_LIMIT, min(query.payload, TCP_LIMIT))
    else:
        limit = UDP_LIMIT
    return render(response, limit)


def same(a: bytes, b: bytes) -> None:
    one, two = dns.message.from_wire(a), dns.message.from_wire(b)
    assert (one.id, one.flags, one.rcode(), one.edns) == (two.id, two.flags, two.rcode(), two.edns)
    assert one.question == two.question
    for section in ("answer", "authority", "additional"):
        ours, theirs = getattr(one, section), getattr(two, section)
        assert len(ours) == len(theirs)
        for rrset in ours:  # RRsets compare as sets, names without case
            assert rrset in theirs
            assert rrset.ttl == theirs[theirs.index(rrset)].ttl


CASES = {
    "3 A": {dns.rdatatype.A: V4[:3]},
    "1000 A": {dns.rdatatype.A: V4},
    "AAAA": {dns.rdatatype.AAAA: V6},
    "both": {dns.rdatatype.A: V4[:2], dns.rdatatype.AAAA: V6},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("rdtype", ["A", "AAAA", "TXT", "ANY", "SOA"])
@pytest.mark.parametrize("tcp", [False, True])
@pytest.mark.parametrize("qname", ["c7.dnsbalance.invalid.", "C7.DNSBalance.Invalid."])
def test_quick_reply_says_what_the_general_path_says(
    case: str, rdtype: str, tcp: bool, qname: str
) -> None:
    snap = snapshot(CASES[case])
    for flags in (dns.flags.RD, 0):
        query = dns.message.make_query(qname, rdtype, id=4242)
        query.flags = flags
        wire = query.to_wire()
        quick = quick_reply(wire, snap, tcp=tcp)
        if rdtype in ("A", "AAAA"):
            assert quick is not None
            same(quick, slow_reply(wire, snap, tcp=tcp))
        else:
            assert quick is None  # the general path answers it


def test_quick_reply_leaves_unusual_queries_to_the_general_path() -> None:
    snap = snapshot(CASES["3 A"])
    edns = dns.message.make_query(NAME, "A", use_edns=0).to_wire()
    other = dns.message.make_query("c8.dnsbalance.invalid.", "A").to_wire()
    chaos = dns.message.make_query(NAME, "A", rdclass="CH").to_wire()
    update = bytearray(dns.message.make_query(NAME, "A").to_wire())
    update[2] |= 0x28  # opcode UPDATE
    response = dns.message.make_response(dns.message.make_query(NAME, "A")).to_wire()
    for wire in (edns, other, chaos, bytes(update), response, b"", edns[:15]):
        assert quick_reply(wire, snap, tcp=False) is None


def test_a_large_udp_answer_is_truncated_and_complete_over_tcp() -> None:
    snap = snapshot(CASES["1000 A"])
    wire = dns.message.make_query(NAME, "A").to_wire()
    udp = quick_reply(wire, snap, tcp=False)
    assert udp is not None
    truncated = dns.message.from_wire(udp)
    assert truncated.flags & dns.flags.TC
    assert not truncated.answer
    tcp = quick_reply(wire, snap, tcp=True)
    assert tcp is not None
    assert sorted(r.address for r in dns.message.from_wire(tcp).answer[0]) == sorted(V4)


def test_the_local_dns_serves_exactly_what_was_published() -> None:
    name = local_dns.local_name()
    try:
        host, port = name.authority.rsplit(":", 1)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = int(port)

        def addresses(rdtype: str) -> list[str]:
            found = resolver.resolve(name.name, rdtype, raise_on_no_answer=False).rrset
            return sorted(r.address for r in found or ())

        name.publish([Endpoint(address=a, port=80) for a in V4])
        assert addresses("A") == sorted(V4)  # truncated over UDP, then TCP
        assert addresses("AAAA") == []
        name.publish([Endpoint(address=a, port=80) for a in [*V4[:2], *V6]])
        assert addresses("A") == sorted(V4[:2])
        assert addresses("AAAA") == ["fd00::1", "fd00::2"]
        query = dns.message.make_query(name.name, "ANY")
        any_answer = dns.query.udp(query, host, port=int(port), timeout=2).answer
        assert sorted(r.rdtype for r in any_answer) == [dns.rdatatype.A, dns.rdatatype.AAAA]
        name.publish([])
        with pytest.raises(dns.resolver.NXDOMAIN):
            resolver.resolve(name.name, "A")
    finally:
        name.close()
