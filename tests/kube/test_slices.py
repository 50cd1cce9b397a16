"""Reading EndpointSlices: pure (dnsbalance._kube.slices), and how what they say
meets DNS (ready and terminating endpoints, ports) in agree()."""

from __future__ import annotations

from typing import Any

from dnsbalance import Endpoint
from dnsbalance._kube.slices import SliceSet, read_slice
from dnsbalance._merge.agree import MergeState, agree, dialable

E1 = Endpoint(address="10.0.0.1", port=8000)


def addrs(endpoints: tuple[Endpoint, ...]) -> list[str]:
    return [e.address for e in endpoints]


def slice_(
    name: str,
    endpoints: list[dict[str, Any]],
    *,
    address_type: str = "IPv4",
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "svc"}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports
        if ports is not None
        else [{"name": "grpc", "port": 9000, "protocol": "TCP"}],
    }


def ep_(ip: str, **conditions: bool | None) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": {k: v for k, v in conditions.items() if v is not None}}


def test_readiness_rules() -> None:
    obj = slice_(
        "a",
        [
            ep_("10.0.0.1"),  # nil conditions: ready
            ep_("10.0.0.2", ready=True),
            ep_("10.0.0.3", ready=False),
            ep_("10.0.0.4", ready=False, serving=True, terminating=True),
            ep_("10.0.0.5", ready=False, serving=False, terminating=True),
            # publishNotReadyAddresses: the controller writes ready=true while terminating
            ep_("10.0.0.6", ready=True, serving=True, terminating=True),
        ],
    )
    read = read_slice(obj, 9000)
    assert addrs(read.usable) == ["10.0.0.1", "10.0.0.2", "10.0.0.6"]  # `ready` as written
    assert addrs(read.unusable) == ["10.0.0.3", "10.0.0.4", "10.0.0.5"]
    draining = read_slice(obj, 9000, include_terminating=True)
    assert addrs(draining.usable) == ["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.6"]


def test_ready_terminating_endpoints_agree_with_dns() -> None:
    """publishNotReadyAddresses: CoreDNS publishes ready-and-terminating endpoints, so
    dnsbalance uses them too and reports no "in DNS but not ready" discrepancy."""
    obj = slice_("a", [ep_("10.0.0.1"), ep_("10.0.0.2", ready=True, terminating=True)])
    api = read_slice(obj, 9000).usable
    dns = (Endpoint(address="10.0.0.1", port=9000), Endpoint(address="10.0.0.2", port=9000))
    first = agree(MergeState(), mode="auto", dns=dns, api=api, now=0.0, window=6.0)
    later = agree(first.state, mode="auto", dns=dns, api=api, now=60.0, window=6.0)
    assert addrs(later.endpoints) == ["10.0.0.1", "10.0.0.2"]
    assert later.discrepancies == ()


def test_only_the_first_address_of_an_endpoint_is_used() -> None:
    obj = slice_(
        "a",
        [
            {"addresses": ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "conditions": {"ready": True}},
            {"addresses": ["10.0.0.4"]},
            {"addresses": ["bad", "10.0.0.5"]},  # the first is the address: no fallback
            {"addresses": []},
        ],
    )
    assert addrs(read_slice(obj, 9000).usable) == ["10.0.0.1", "10.0.0.4"]


def test_ports_numeric_named_missing_and_hostnames() -> None:
    obj = slice_("a", [{"addresses": ["10.0.0.1"], "hostname": "web-0"}])
    assert read_slice(obj, 9000).usable == (
        Endpoint(address="10.0.0.1", port=9000, hostname="web-0"),
    )
    assert read_slice(obj, 8000).usable == ()  # never dialed at a port the slice lacks
    portless = slice_("p", [ep_("10.0.0.1")], ports=[])
    assert read_slice(portless, 8000).usable[0].port == 8000  # hand-made, no ports
    assert read_slice(obj, "grpc").usable[0].port == 9000
    assert read_slice(obj, "metrics").usable == ()
    unnamed = slice_("b", [ep_("10.0.0.1")], ports=[{"name": "", "port": 80}, {"port": None}])
    assert read_slice(unnamed, "grpc").usable == ()
    udp = slice_("c", [ep_("10.0.0.1")], ports=[{"name": "grpc", "port": 53, "protocol": "UDP"}])
    assert read_slice(udp, "grpc").usable == ()


def test_families_and_bad_data() -> None:
    v6 = slice_("v6", [ep_("fd00::1")], address_type="IPv6")
    assert addrs(read_slice(v6, 9000).usable) == ["fd00::1"]
    fqdn = slice_("f", [ep_("example.com")], address_type="FQDN")
    assert read_slice(fqdn, 80).usable == ()
    junk = slice_("j", [{"addresses": ["not-an-ip", 7]}, "nonsense", {"addresses": None}])
    assert read_slice(junk, 80).usable == ()  # type: ignore[arg-type]


def test_slices_merge_by_name_and_deleted_slice_takes_only_its_own() -> None:
    slices = SliceSet(9000)
    a = slice_("svc-a", [ep_(f"10.0.1.{i}") for i in range(1, 101)])
    b = slice_("svc-b", [ep_(f"10.0.2.{i}") for i in range(1, 101)])
    c = slice_("svc-c", [ep_(f"10.0.3.{i}") for i in range(1, 51)])
    slices.reset([a, b, c])
    assert len(slices.usable()) == 250
    slices.delete(b)
    assert len(slices.usable()) == 150
    assert not any(e.address.startswith("10.0.2.") for e in slices.usable())
    # MODIFIED replaces one slice's endpoints only.
    slices.upsert(slice_("svc-c", [ep_("10.0.3.1", ready=False)]))
    assert len(slices.usable()) == 100
    assert addrs(tuple(set(slices.view().listed) - set(slices.usable()))) == ["10.0.3.1"]
    # An endpoint moving between slices is never lost.
    slices.upsert(slice_("svc-a", [ep_("10.0.9.9")] + a["endpoints"]))
    assert len(slices.usable()) == 101
    assert tuple(sorted(slices._slices)) == ("svc-a", "svc-c")


def test_port_mismatch_names_the_pods_ports() -> None:
    from dnsbalance._kube.slices import port_mismatch, suggested_port

    served = (("grpc", 43343),)
    assert port_mismatch(8000, [served]) == served
    assert port_mismatch(43343, [served]) == ()
    assert port_mismatch("grpc", [served]) == ()  # a name is looked up, never mismatched
    assert port_mismatch(8000, [()]) == ()  # hand-made slices without ports say nothing
    assert port_mismatch(8000, [served, (("grpc", 9090),)]) == (("grpc", 9090), ("grpc", 43343))
    assert suggested_port(served) == "grpc"
    assert suggested_port((("", 9000),)) == "9000"
    assert suggested_port((("grpc", 1), ("metrics", 2))) == "grpc"
    slices = SliceSet(8000)
    slices.upsert(slice_("a", [ep_("10.0.0.1")], ports=[{"name": "grpc", "port": 43343}]))
    assert slices.port_mismatch() == served


def test_a_numeric_port_follows_each_slice_through_the_port_name() -> None:
    """targetPort `grpc` moves from 8080 to 9090 in a rollout: the controller writes a
    slice per mapping. Target :8080 dials the new pod at 9090 (its slice's number for
    the same name), never at 8080; a slice with neither is left out."""
    from dnsbalance._kube.slices import numeric_port

    old = slice_("a", [ep_("10.0.0.1")], ports=[{"name": "grpc", "port": 8080}])
    new = slice_("b", [ep_("10.0.0.2")], ports=[{"name": "grpc", "port": 9090}])
    other = slice_("c", [ep_("10.0.0.3")], ports=[{"name": "metrics", "port": 9100}])
    slices = SliceSet(8080)
    slices.reset([new, other])
    assert slices.usable() == ()  # nothing says 9090 is what 8080 is called yet
    slices.upsert(old)
    assert [(e.address, e.port) for e in slices.usable()] == [
        ("10.0.0.1", 8080),
        ("10.0.0.2", 9090),
    ]
    slices.delete(old)  # the name is known no more: the 9090 pod is not guessed at
    assert slices.usable() == ()
    assert numeric_port((), 80, frozenset()) == 80
    assert numeric_port((("grpc", 80),), 80, frozenset()) == 80
    assert numeric_port((("grpc", 81),), 80, frozenset({"grpc"})) == 81
    assert numeric_port((("grpc", 81),), 80, frozenset()) is None
    kept, left = dialable((E1, Endpoint(address="10.0.0.9", port=9090)), 8000)
    assert kept == (E1,)
    assert [e.port for e in left] == [9090]
    assert dialable((E1,), None) == ((E1,), ())
