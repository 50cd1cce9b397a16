"""Pure logic of the API side: reading EndpointSlices and merging DNS with the API."""

from __future__ import annotations

from typing import Any

from dnsbalance import Endpoint
from dnsbalance._kube.slices import SliceSet, read_slice
from dnsbalance._merge.agree import MergeState, agree


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


def addrs(endpoints: tuple[Endpoint, ...]) -> list[str]:
    return [e.address for e in endpoints]


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


E1, E2, E3 = (Endpoint(address=f"10.0.0.{i}", port=8000) for i in (1, 2, 3))


def test_auto_uses_what_both_agree_on() -> None:
    result = agree(MergeState(), mode="auto", dns=(E1, E2), api=(E1, E2), now=0, window=6)
    assert result.endpoints == (E1, E2)
    assert result.discrepancies == ()
    assert not result.repoll_dns


def test_auto_new_api_endpoint_waits_for_dns_then_for_the_window() -> None:
    first = agree(MergeState(), mode="auto", dns=(E1,), api=(E1, E2), now=10.0, window=6)
    assert first.endpoints == (E1,)
    assert first.repoll_dns
    assert first.next_deadline == 16.0
    # DNS agrees 1 s later: used at once.
    agreed = agree(first.state, mode="auto", dns=(E1, E2), api=(E1, E2), now=11.0, window=6)
    assert agreed.endpoints == (E1, E2)
    assert not agreed.repoll_dns
    # DNS never agrees: the API's word is taken after the window, as a discrepancy.
    still = agree(first.state, mode="auto", dns=(E1,), api=(E1, E2), now=15.9, window=6)
    assert still.endpoints == (E1,)
    late = agree(still.state, mode="auto", dns=(E1,), api=(E1, E2), now=16.0, window=6)
    assert late.endpoints == (E1, E2)
    assert [(d.endpoint, d.kind, d.since) for d in late.discrepancies] == [(E2, "api-only", 10.0)]
    assert "ready in the API but not in DNS" in str(late.discrepancies[0])


def test_auto_drops_what_the_api_says_is_not_ready_even_if_dns_lists_it() -> None:
    first = agree(MergeState(), mode="auto", dns=(E1, E2, E3), api=(E1, E2), now=0.0, window=6)
    assert first.endpoints == (E1, E2)
    assert first.discrepancies == ()
    later = agree(first.state, mode="auto", dns=(E1, E2, E3), api=(E1, E2), now=6.0, window=6)
    assert [(d.endpoint, d.kind) for d in later.discrepancies] == [(E3, "dns-only")]
    gone = agree(later.state, mode="auto", dns=(E1, E2), api=(E1, E2), now=7.0, window=6)
    assert gone.discrepancies == ()
    assert gone.state.dns_only_since == {}


def test_auto_without_api_view_is_dns_only() -> None:
    pending = agree(MergeState(), mode="auto", dns=(E1,), api=(E1, E2), now=0.0, window=6)
    fallback = agree(pending.state, mode="auto", dns=(E1, E3), api=None, now=1.0, window=6)
    assert fallback.endpoints == (E1, E3)
    assert fallback.state.api_only_since == {}
    assert agree(MergeState(), mode="auto", dns=None, api=None, now=0, window=6).endpoints == ()


def test_api_mode_is_the_api_and_keeps_its_set_only_while_the_api_is_unreadable() -> None:
    one = agree(MergeState(), mode="api", dns=None, api=(E2, E1), now=0, window=6)
    assert one.endpoints == (E1, E2)
    empty = agree(one.state, mode="api", dns=None, api=(), now=1, window=6)
    assert empty.endpoints == ()  # nothing listed: slices gone (panic needs listed ones)
    lost = agree(one.state, mode="api", dns=None, api=None, now=1, window=6)
    assert lost.endpoints == (E1, E2)
    assert agree(MergeState(), mode="api", dns=(E3,), api=(E1,), now=0, window=6).endpoints == (E1,)


def test_hostname_from_either_side_survives() -> None:
    named = Endpoint(address="10.0.0.1", port=8000, hostname="web-0")
    result = agree(MergeState(), mode="auto", dns=(E1,), api=(named,), now=0, window=6)
    assert result.endpoints[0].hostname == "web-0"
    result = agree(MergeState(), mode="auto", dns=(named,), api=(E1,), now=0, window=6)
    assert result.endpoints[0].hostname == "web-0"


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


def test_panic_mode_keeps_listed_endpoints_when_none_is_ready() -> None:
    from dnsbalance._kube.slices import ApiEndpoints

    a, b, c = (Endpoint(address=f"10.0.0.{i}", port=9000) for i in (1, 2, 3))
    last = MergeState(endpoints=(a, b))
    none_ready = ApiEndpoints((), listed=(a, b, c), serving=(c,))

    def decide(state: MergeState, mode: Any, api: Any, now: float = 5.0, **kw: Any) -> Any:
        kw.setdefault("listed", getattr(api, "listed", ()))
        kw.setdefault("serving", getattr(api, "serving", ()))
        return agree(state, mode=mode, dns=(), api=api, now=now, window=6.0, **kw)

    for mode in ("api", "auto"):
        result = decide(last, mode, none_ready)
        assert result.panic
        assert result.endpoints == (a, b, c)  # serving + last known
        assert {d.kind for d in result.discrepancies} == {"panic"}
        assert "panic mode" in str(result.discrepancies[0])
        again = decide(result.state, mode, none_ready, now=9.0, serving=())
        assert again.endpoints == (a, b, c)
        assert again.discrepancies[0].since == 5.0
        # Slices gone or empty: the channel is emptied, whatever was used before.
        gone = decide(last, mode, ApiEndpoints())
        assert gone.endpoints == ()
        assert not gone.panic
        # The knob: off empties the channel.
        off = decide(last, mode, none_ready, panic_mode=False)
        assert off.endpoints == ()
        assert not off.panic
    # Endpoints listed but neither serving nor in the last set are never called.
    assert decide(MergeState(), "api", ApiEndpoints((), (a,), ())).endpoints == ()


def test_a_numeric_port_follows_each_slice_through_the_port_name() -> None:
    """targetPort `grpc` moves from 8080 to 9090 in a rollout: the controller writes a
    slice per mapping. Target :8080 dials the new pod at 9090 (its slice's number for
    the same name), never at 8080; a slice with neither is left out."""
    from dnsbalance._kube.slices import numeric_port
    from dnsbalance._merge.agree import dialable

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
