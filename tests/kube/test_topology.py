"""Topology rules (dnsbalance._kube.topology.choose) on slices shaped as the EndpointSlice
controller writes them, read through the real slice reader; and the reading itself."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from dnsbalance._endpoints import Endpoint, diff, normalize
from dnsbalance._kube.slices import SliceSet, read_slice
from dnsbalance._kube.topology import TopologyChoice, choose
from tests.kits.topology import (
    auto_slice,
    plain_slice,
    prefer_close_slice,
    three_zones,
)


def usable(*slices: dict[str, Any], include_terminating: bool = False) -> tuple[Endpoint, ...]:
    view = SliceSet("grpc", include_terminating=include_terminating)
    view.reset(slices)
    return view.usable()


def ips(choice: TopologyChoice) -> list[str]:
    return [ep.address for ep in choice.endpoints]


ZONE_B = ["127.0.0.13", "127.0.0.14"]
ALL = [f"127.0.0.{n}" for n in range(11, 17)]


# -- topology-mode: Auto --------------------------------------------------------------


def test_auto_all_hinted_keeps_the_client_in_its_zone() -> None:
    choice = choose(usable(auto_slice(three_zones())), zone="zone-b", node="node-b1")
    assert ips(choice) == ZONE_B
    assert (choice.rule, choice.in_zone, choice.out_of_zone) == ("zone-hints", 2, 0)
    assert choice.available == 6
    assert choice.subset
    assert "zone-hints (zone zone-b, node node-b1): 2 of 6 endpoints" in str(choice)


def test_auto_an_endpoint_lent_to_another_zone_is_used_there_and_counted_out_of_zone() -> None:
    # redistributeHints: zone-a has more than its share, zone-b less: one zone-a endpoint
    # is hinted for zone-b only.
    pods = three_zones()
    pods[1] = replace(pods[1], hinted_for="zone-b")
    choice = choose(usable(auto_slice(pods)), zone="zone-b")
    assert ips(choice) == ["127.0.0.12", *ZONE_B]
    assert (choice.in_zone, choice.out_of_zone) == (2, 1)
    assert ips(choose(usable(auto_slice(pods)), zone="zone-a")) == ["127.0.0.11"]


def test_auto_one_ready_endpoint_without_a_hint_means_every_endpoint() -> None:
    # A pod that just became ready before the controller's next sync: no hint yet.
    obj = auto_slice(three_zones())
    del obj["endpoints"][4]["hints"]
    choice = choose(usable(obj), zone="zone-b")
    assert ips(choice) == ALL
    assert choice.rule == "all: not every endpoint hinted"
    assert (choice.in_zone, choice.out_of_zone) == (2, 4)
    assert not choice.subset


def test_auto_a_not_ready_endpoint_without_hints_does_not_turn_hints_off() -> None:
    # The controller hints ready endpoints only; kube-proxy looks at ready ones only.
    pods = three_zones()
    pods[0] = replace(pods[0], ready=False)
    obj = auto_slice(pods)
    assert "hints" not in obj["endpoints"][0]
    choice = choose(usable(obj), zone="zone-b")
    assert (ips(choice), choice.rule) == (ZONE_B, "zone-hints")


def test_auto_hints_removed_means_every_endpoint() -> None:
    choice = choose(usable(plain_slice(three_zones())), zone="zone-b")
    assert (ips(choice), choice.rule) == (ALL, "all: no hints")


def test_no_zone_known_means_every_endpoint() -> None:
    choice = choose(usable(auto_slice(three_zones())), zone=None)
    assert (ips(choice), choice.rule) == (ALL, "all: no zone known")
    assert (choice.in_zone, choice.out_of_zone) == (0, 6)


def test_hints_over_several_slices_are_judged_together() -> None:
    pods = three_zones()
    first = auto_slice(pods[:3], name="greeter-1")
    second = plain_slice(pods[3:], name="greeter-2")  # not hinted yet
    assert choose(usable(first, second), zone="zone-b").rule == "all: not every endpoint hinted"
    second = auto_slice(pods[3:], name="greeter-2")
    assert ips(choose(usable(first, second), zone="zone-b")) == ZONE_B


# -- trafficDistribution: PreferClose / PreferSameNode -------------------------------


def test_prefer_close_keeps_the_client_in_its_zone() -> None:
    choice = choose(usable(prefer_close_slice(three_zones())), zone="zone-b", node="node-b2")
    assert (ips(choice), choice.rule) == (ZONE_B, "zone-hints")


def test_prefer_close_one_zone_b_pod_not_ready_the_other_takes_all() -> None:
    pods = three_zones()
    pods[2] = replace(pods[2], ready=False)
    choice = choose(usable(prefer_close_slice(pods)), zone="zone-b")
    assert (ips(choice), choice.rule) == (["127.0.0.14"], "zone-hints")


def test_prefer_close_none_hinted_for_my_zone_means_every_ready_endpoint() -> None:
    pods = three_zones()
    pods[2] = replace(pods[2], ready=False)
    pods[3] = replace(pods[3], ready=False)
    choice = choose(usable(prefer_close_slice(pods)), zone="zone-b")
    assert ips(choice) == ["127.0.0.11", "127.0.0.12", "127.0.0.15", "127.0.0.16"]
    assert choice.rule == "all: none hinted for zone zone-b"


def test_a_zone_with_no_endpoint_at_all_gets_every_endpoint() -> None:
    choice = choose(usable(prefer_close_slice(three_zones())), zone="zone-d")
    assert (ips(choice), choice.rule) == (ALL, "all: none hinted for zone zone-d")


def test_prefer_same_node_prefers_the_client_node() -> None:
    obj = prefer_close_slice(three_zones(), same_node=True)
    assert obj["endpoints"][2]["hints"] == {
        "forZones": [{"name": "zone-b"}],
        "forNodes": [{"name": "node-b1"}],
    }
    choice = choose(usable(obj), zone="zone-b", node="node-b1")
    assert (ips(choice), choice.rule) == (["127.0.0.13"], "node-hints")


def test_prefer_same_node_with_no_endpoint_on_my_node_falls_back_to_the_zone() -> None:
    obj = prefer_close_slice(three_zones(), same_node=True)
    choice = choose(usable(obj), zone="zone-b", node="node-b9")
    assert (ips(choice), choice.rule) == (ZONE_B, "zone-hints")
    # and without a node known, the zone hints decide as well
    assert choose(usable(obj), zone="zone-b").rule == "zone-hints"


def test_node_hints_apply_even_without_a_zone() -> None:
    obj = prefer_close_slice(three_zones(), same_node=True)
    choice = choose(usable(obj), zone=None, node="node-c2")
    assert (ips(choice), choice.rule) == (["127.0.0.16"], "node-hints")


def test_one_endpoint_without_a_node_hint_skips_node_hints() -> None:
    obj = prefer_close_slice(three_zones(), same_node=True)
    del obj["endpoints"][0]["hints"]["forNodes"]
    choice = choose(usable(obj), zone="zone-b", node="node-b1")
    assert (ips(choice), choice.rule) == (ZONE_B, "zone-hints")


# -- internalTrafficPolicy: Local, and topology off ------------------------------------


def test_local_policy_uses_node_local_endpoints_only() -> None:
    eps = usable(prefer_close_slice(three_zones()))
    choice = choose(eps, zone="zone-b", node="node-b2", internal_traffic_policy="Local")
    assert (ips(choice), choice.rule) == (["127.0.0.14"], "local-policy")


def test_local_policy_with_nothing_on_my_node_is_no_endpoint_as_kube_proxy() -> None:
    eps = usable(prefer_close_slice(three_zones()))
    choice = choose(eps, zone="zone-b", node="node-x", internal_traffic_policy="Local")
    assert (choice.endpoints, choice.rule, choice.available) == ((), "local-policy", 6)


def test_local_policy_without_a_node_known_uses_every_endpoint() -> None:
    eps = usable(prefer_close_slice(three_zones()))
    choice = choose(eps, zone="zone-b", internal_traffic_policy="Local")
    assert (ips(choice), choice.rule) == (ALL, "all: Local policy, no node known")


def test_cluster_policy_is_the_hint_rules() -> None:
    eps = usable(prefer_close_slice(three_zones()))
    choice = choose(eps, zone="zone-b", node="node-b2", internal_traffic_policy="Cluster")
    assert choice.rule == "zone-hints"


def test_topology_off_uses_every_endpoint() -> None:
    eps = usable(auto_slice(three_zones()))
    choice = choose(eps, zone="zone-b", node="node-b1", enabled=False)
    assert (ips(choice), choice.rule) == (ALL, "off")


def test_terminating_endpoints_used_by_include_terminating_have_no_say() -> None:
    pods = three_zones()
    pods[0] = replace(pods[0], terminating=True)
    eps = usable(auto_slice(pods), include_terminating=True)
    assert len(eps) == 6
    assert not eps[0].ready
    choice = choose(eps, zone="zone-b")
    assert (ips(choice), choice.rule) == (ZONE_B, "zone-hints")
    # with every endpoint terminating there is nothing ready: every one is used
    all_gone = [replace(p, terminating=True) for p in pods]
    eps = usable(auto_slice(all_gone), include_terminating=True)
    assert choose(eps, zone="zone-b").rule == "all: no ready endpoint"


def test_no_endpoints() -> None:
    choice = choose((), zone="zone-b")
    assert (choice.endpoints, choice.available, choice.subset) == ((), 0, False)


# -- reading the slices ------------------------------------------------------------------


def test_slices_carry_zone_node_and_hints_on_the_endpoint() -> None:
    (ep, *_) = read_slice(prefer_close_slice(three_zones(), same_node=True), "grpc").usable
    assert (ep.zone, ep.node_name) == ("zone-a", "node-a1")
    assert (ep.zone_hints, ep.node_hints, ep.ready) == (
        frozenset({"zone-a"}),
        frozenset({"node-a1"}),
        True,
    )


def test_topology_takes_no_part_in_equality_hash_or_order() -> None:
    plain = Endpoint(address="127.0.0.11", port=50051)
    rich = replace(plain, zone="zone-a", node_name="node-a1", zone_hints=frozenset({"zone-b"}))
    assert plain == rich
    assert hash(plain) == hash(rich)
    assert plain.sort_key() == rich.sort_key()
    assert diff((plain,), (rich,)) is None
    assert normalize([rich, plain]) == (rich,)


def test_a_hint_change_is_no_endpoint_change() -> None:
    before = usable(auto_slice(three_zones()))
    after = usable(plain_slice(three_zones()))
    assert diff(before, after) is None


def bad(mutate: Any) -> Endpoint:
    obj = prefer_close_slice(three_zones()[:1], same_node=True)
    mutate(obj["endpoints"][0])
    (ep,) = read_slice(obj, "grpc").usable
    return ep


@pytest.mark.parametrize(
    "zone",
    ["Zone B!", "-zone", "z" * 64, 7, ["zone-a"]],
)
def test_a_zone_the_api_would_refuse_is_dropped(zone: Any) -> None:
    ep = bad(lambda e: e.update(zone=zone))
    assert ep.zone is None
    assert ep.address == "127.0.0.11"


@pytest.mark.parametrize("node", ["Node_A1", "node..a", "n" * 254, 3])
def test_a_node_name_the_api_would_refuse_is_dropped(node: Any) -> None:
    assert bad(lambda e: e.update(nodeName=node)).node_name is None


@pytest.mark.parametrize(
    "hints",
    [
        {"forZones": [{"name": "bad zone"}]},
        {"forZones": [{"name": f"z{i}"} for i in range(9)]},  # maxZoneHints = 8
        {"forZones": [{"name": "zone-a"}, {"name": "zone-a"}]},  # duplicate
        {"forZones": [{}]},
        {"forZones": "zone-a"},
        {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "Node A"}]},
        "zone-a",
    ],
)
def test_an_endpoint_with_any_bad_hint_keeps_none(hints: Any) -> None:
    ep = bad(lambda e: e.update(hints=copy.deepcopy(hints)))
    assert (ep.zone_hints, ep.node_hints) == (frozenset(), frozenset())
    assert ep.zone == "zone-a"  # the rest of the endpoint stands


def test_a_bad_hint_on_one_endpoint_turns_hints_off_for_the_service() -> None:
    obj = auto_slice(three_zones())
    obj["endpoints"][0]["hints"] = {"forZones": [{"name": "not a zone"}]}
    assert choose(usable(obj), zone="zone-b").rule == "all: not every endpoint hinted"


def test_several_zone_hints_are_kept() -> None:
    ep = bad(lambda e: e.update(hints={"forZones": [{"name": "zone-a"}, {"name": "zone-b"}]}))
    assert ep.zone_hints == frozenset({"zone-a", "zone-b"})


# -- applying the choice to the agreed set (the merge thread's step) --------------------


def test_applied_keeps_the_agreed_endpoints_of_the_zone_and_counts_by_the_api() -> None:
    from dnsbalance._kube.topology import Placement, applied, decide

    api = usable(auto_slice(three_zones()))
    dns_objects = tuple(Endpoint(address=ep.address, port=ep.port, ttl=5) for ep in api)
    choice = applied(dns_objects, decide(api, Placement(zone="zone-b")), api)
    assert ips(choice) == ZONE_B
    assert all(ep.ttl == 5 for ep in choice.endpoints)  # the agreed (DNS) objects
    assert (choice.in_zone, choice.out_of_zone, choice.rule) == (2, 0, "zone-hints")


def test_applied_takes_the_api_word_when_none_of_the_zone_is_agreed_yet() -> None:
    from dnsbalance._kube.topology import Placement, applied, decide

    api = usable(auto_slice(three_zones()))
    agreed = tuple(ep for ep in api if ep.zone != "zone-b")  # DNS lags the new zone-b pods
    choice = applied(agreed, decide(api, Placement(zone="zone-b")), api)
    assert ips(choice) == ZONE_B


def test_applied_leaves_the_agreed_set_alone_when_every_endpoint_is_used() -> None:
    from dnsbalance._kube.topology import Placement, applied, decide

    api = usable(plain_slice(three_zones()))
    agreed = api[:4]
    choice = applied(agreed, decide(api, Placement(zone="zone-b")), api)
    assert (choice.endpoints, choice.rule) == (agreed, "all: no hints")
    assert (choice.in_zone, choice.out_of_zone) == (2, 2)


def test_a_pending_node_lookup_is_its_own_rule() -> None:
    from dnsbalance._kube.topology import Placement, decide

    api = usable(auto_slice(three_zones()))
    choice = decide(api, Placement(node="node-b1", pending=True))
    assert choice.rule == "all: zone not known yet (reading Node node-b1)"
    assert decide(api, Placement(node="node-b1")).rule == "all: no zone known"
