"""MergeThread's topology step: after agreement, over the API's whole ready set, a
rebuild only when the chosen set changes (scripted poller and local name, as
tests/merge/test_thread.py)."""

from __future__ import annotations

from dataclasses import replace

from dnsbalance import Endpoint
from dnsbalance._kube.slices import ApiEndpoints
from dnsbalance._kube.topology import Placement
from dnsbalance._merge.thread import MergeThread
from tests.merge.test_thread import TARGET, RecordingName, ScriptedPoller


def zoned(i: int, zone: str) -> Endpoint:
    return Endpoint(address=f"10.0.0.{i}", port=8000, zone=zone, zone_hints=frozenset({zone}))


API = tuple(zoned(i, z) for i, z in ((1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")))
DNS = tuple(Endpoint(address=ep.address, port=8000, ttl=5) for ep in API)


def thread_for(placement: Placement) -> tuple[MergeThread, RecordingName]:
    name = RecordingName()
    thread = MergeThread(
        name="svc.ns:8000",
        mode="auto",
        namespace="ns",
        poller=ScriptedPoller(*DNS),
        local=name,  # type: ignore[arg-type]
        api_endpoints=ApiEndpoints(API, API),
        target=TARGET,
        placement=placement,
    )
    return thread, name


def test_auto_mode_dns_with_every_zone_is_no_discrepancy_and_the_zone_is_used() -> None:
    thread, _ = thread_for(Placement(zone="b"))
    endpoints, wake = thread.evaluate()
    assert [ep.address for ep in endpoints] == ["10.0.0.3", "10.0.0.4"]
    assert wake is None  # nothing pending: DNS and the API agree on all six
    assert thread.discrepancies == ()
    assert thread.topology is not None
    assert thread.topology.rule == "zone-hints"


def test_the_zone_learned_later_re_decides_and_publishes_once() -> None:
    thread, name = thread_for(Placement(node="node-b1", pending=True))
    first, _ = thread.evaluate()
    assert len(first) == 6
    assert thread.topology is not None
    assert thread.topology.rule.startswith("all: zone not known yet")
    thread.placement_changed(Placement(zone="b", node="node-b1"))
    second, _ = thread.evaluate()
    assert [ep.address for ep in second] == ["10.0.0.3", "10.0.0.4"]
    thread.evaluate()  # the same again: nothing new published
    assert len(name.published) == 2


def test_hints_that_change_but_choose_the_same_set_publish_nothing() -> None:
    thread, name = thread_for(Placement(zone="b"))
    thread.evaluate()
    lent = tuple(
        replace(ep, zone_hints=frozenset({"a"})) if ep.address == "10.0.0.5" else ep for ep in API
    )
    thread.api_view(ApiEndpoints(lent, lent), None)
    thread.evaluate()
    assert len(name.published) == 1


def test_topology_off_and_no_api_view() -> None:
    thread, _ = thread_for(Placement(zone="b", enabled=False))
    endpoints, _ = thread.evaluate()
    assert len(endpoints) == 6
    assert thread.topology is not None
    assert thread.topology.rule == "off"
    thread, _ = thread_for(Placement(zone="b"))
    thread.api_view(None, None)
    endpoints, _ = thread.evaluate()
    assert len(endpoints) == 6
    assert thread.topology is not None
    assert thread.topology.rule == "all: no API view (DNS carries no zones)"
