"""``subset_size=`` end to end: real grpc backends on 127.0.N.x, the embedded DNS server or
FakeKubernetesAPI, both drivers. The subset expected is computed with the same pure
ranking (tests/channel/test_subset.py holds its properties), so each test knows whether
a change reaches the client's subset."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

import dnsbalance.aio
from dnsbalance import Endpoint, resolve_channel
from dnsbalance._channel.subset import Subsetting
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI
from tests.kits import NS
from tests.kits.backends import (
    Fleet,
    call_counts,
    demo_pb2,
    demo_pb2_grpc,
    new_fleet,
    wait_until,
)
from tests.kits.topology import Pod, plain_slice, prefer_close_slice

Changes = list[tuple[tuple[Endpoint, ...], tuple[Endpoint, ...]]]


def hosts_of(endpoints: tuple[Endpoint, ...]) -> set[str]:
    return {ep.address for ep in endpoints}


def key_where(size: int, before: list[str], after: list[str], *, changes: bool) -> str:
    """A subset_key whose subset of ``before`` does (``changes``) or does not change when
    the set becomes ``after``: so one test covers both paths, deterministically."""
    old = [Endpoint(address=h, port=1) for h in before]
    new = [Endpoint(address=h, port=1) for h in after]
    for i in range(500):
        subsetting = Subsetting.keyed(size, f"client-{i}")
        if (hosts_of(subsetting.pick(old)) != hosts_of(subsetting.pick(new))) == changes:
            return f"client-{i}"
    raise AssertionError("no such key in 500")


def start(dns: DNSResponder, fleet: Fleet, service: str, n: int) -> list[str]:
    for _ in range(n):
        dns.add_pod(service, "ns", fleet.add().host)
    return list(fleet.backends)


def open_dns_channel(dns: DNSResponder, fleet: Fleet, service: str, **kwargs: Any) -> Any:
    return resolve_channel(
        f"{service}.ns:{fleet.port}",
        nameservers=[dns.address],
        mode="dns",
        poll_interval=0.2,
        **kwargs,
    )


@pytest.mark.parametrize("subset_changes", [True, False], ids=["into-subset", "outside"])
def test_dns_mode_dials_its_subset_and_a_new_pod_changes_it_by_at_most_one(
    embedded_dns: DNSResponder, fleet: Fleet, unique_service: str, subset_changes: bool
) -> None:
    hosts = start(embedded_dns, fleet, unique_service, 6)
    seventh = f"127.0.{fleet.block}.7"
    key = key_where(3, hosts, [*hosts, seventh], changes=subset_changes)
    expected = Subsetting.keyed(3, key)
    changes: Changes = []
    with open_dns_channel(
        embedded_dns,
        fleet,
        unique_service,
        subset_size=3,
        subset_key=key,
        on_change=lambda old, new: changes.append((old, new)),
    ) as channel:
        assert hosts_of(channel.endpoints) == set(hosts)  # the whole set
        assert channel.subset == expected.pick(channel.endpoints)
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert set(call_counts(stub, 300)) == hosts_of(channel.subset)
        dialed = {h for h, b in fleet.backends.items() if b.connections}
        assert dialed == hosts_of(channel.subset)
        before = channel.subset

        new = fleet.add()
        assert new.host == seventh
        embedded_dns.add_pod(unique_service, "ns", new.host)
        assert wait_until(lambda: len(channel.endpoints) == 7, 5.0)
        assert channel.subset == expected.pick(channel.endpoints)
        assert len(set(channel.subset) - set(before)) == (1 if subset_changes else 0)
        assert channel.generation == (1 if subset_changes else 0)
        # on_change sees the whole sets, as channel.endpoints does, rebuild or not
        assert [(len(old), len(new)) for old, new in changes] == [(6, 7)]
        assert set(call_counts(stub, 300)) == hosts_of(channel.subset)
    connections = sum(b.connections for b in fleet.backends.values())
    assert connections == 3 + (1 if subset_changes else 0)  # the subset's, and one more


def test_a_pod_of_the_subset_leaving_is_replaced_by_one_from_outside(
    embedded_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    hosts = start(embedded_dns, fleet, unique_service, 5)
    with open_dns_channel(
        embedded_dns, fleet, unique_service, subset_size=2, subset_key="pod-a"
    ) as channel:
        before = channel.subset
        gone = before[0].address
        embedded_dns.remove_pod(unique_service, "ns", gone)
        assert wait_until(lambda: len(channel.endpoints) == 4, 5.0)
        after = channel.subset
        assert len(after) == 2
        assert gone not in hosts_of(after)
        assert len(set(after) - set(before)) == 1
        assert channel.generation == 1
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert set(call_counts(stub, 100)) == hosts_of(after)
    assert set(hosts) - {gone} >= hosts_of(after)


def test_fewer_endpoints_than_the_subset_size_dials_them_all(
    embedded_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    hosts = start(embedded_dns, fleet, unique_service, 2)
    with open_dns_channel(embedded_dns, fleet, unique_service, subset_size=5) as channel:
        assert hosts_of(channel.subset) == hosts_of(channel.endpoints) == set(hosts)
        assert set(call_counts(demo_pb2_grpc.DemoServiceStub(channel), 60)) == set(hosts)


def test_without_subset_size_nothing_changes(
    embedded_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    start(embedded_dns, fleet, unique_service, 4)
    with open_dns_channel(embedded_dns, fleet, unique_service) as channel:
        assert channel.subset == channel.endpoints
        assert len(channel.endpoints) == 4


def test_a_change_outside_the_subset_is_logged_and_counted_without_a_rebuild(
    embedded_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hosts = start(embedded_dns, fleet, unique_service, 4)
    key = key_where(2, hosts, [*hosts, f"127.0.{fleet.block}.5"], changes=False)
    target = f"kubernetes:///{unique_service}.ns:{fleet.port}"
    with (
        caplog.at_level(logging.INFO, logger="dnsbalance"),
        open_dns_channel(
            embedded_dns, fleet, unique_service, subset_size=2, subset_key=key
        ) as channel,
    ):

        def sample(name: str) -> float | None:
            return prometheus_client.REGISTRY.get_sample_value(name, {"target": target})

        assert (sample("dnsbalance_endpoints"), sample("dnsbalance_subset_endpoints")) == (4, 2)
        embedded_dns.add_pod(unique_service, "ns", fleet.add().host)
        assert wait_until(lambda: len(channel.endpoints) == 5, 5.0)
        assert wait_until(lambda: sample("dnsbalance_endpoints") == 5, 2.0)
        assert sample("dnsbalance_subset_endpoints") == 2
        assert sample("dnsbalance_rebuilds_total") in (None, 0)
    lines = [r.getMessage() for r in caplog.records if "subset unchanged" in r.getMessage()]
    assert lines == [
        f"{target}: 4 -> 5 endpoints, dialing 2 (subset_size 2): subset unchanged, no rebuild"
    ]


# -- modes "api" and "auto": drawn after the agreement, topology and panic mode ----------


def nine_in_three_zones(fleet: Fleet) -> list[Pod]:
    for _ in range(9):
        fleet.add()
    hosts = sorted(fleet.backends, key=lambda h: int(h.rsplit(".", 1)[1]))
    return [Pod(h, f"zone-{'abc'[i // 3]}", f"node-{i}") for i, h in enumerate(hosts)]


def test_api_mode_draws_the_subset_from_the_zone_topology_chose(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    pods = nine_in_three_zones(fleet)
    zone_b = {p.ip for p in pods if p.zone == "zone-b"}
    kube.put(prefer_close_slice(pods, service=unique_service, port=fleet.port))
    with resolve_channel(
        f"{unique_service}.{NS}:grpc",
        kubeconfig=kubeconfig,
        mode="api",
        zone="zone-b",
        subset_size=2,
        subset_key="client-1",
    ) as channel:
        assert hosts_of(channel.endpoints) == zone_b  # what topology chose
        assert channel.subset == Subsetting.keyed(2, "client-1").pick(channel.endpoints)
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert set(call_counts(stub, 200)) == hosts_of(channel.subset)
        assert hosts_of(channel.subset) <= zone_b


def test_panic_mode_draws_the_subset_from_the_endpoints_still_serving(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    pods = nine_in_three_zones(fleet)[:6]
    every = {p.ip for p in pods}
    slice_of = {"service": unique_service, "port": fleet.port, "name": f"{unique_service}-p"}
    kube.put(plain_slice(pods, **slice_of))
    with resolve_channel(
        f"{unique_service}.{NS}:grpc",
        kubeconfig=kubeconfig,
        mode="api",
        subset_size=3,
        subset_key="client-2",
    ) as channel:
        expected = Subsetting.keyed(3, "client-2")
        assert channel.subset == expected.pick(channel.endpoints)
        # every pod terminating but still serving: none ready, panic mode keeps them
        kube.put(plain_slice([replace(p, terminating=True) for p in pods], **slice_of))
        assert wait_until(lambda: any(d.kind == "panic" for d in channel.discrepancies), 5.0)
        assert hosts_of(channel.endpoints) == every
        assert channel.subset == expected.pick(channel.endpoints)
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert set(call_counts(stub, 100)) == hosts_of(channel.subset)


def test_auto_mode_subsets_the_agreed_set(
    embedded_dns: DNSResponder,
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    fleet: Fleet,
    unique_service: str,
) -> None:
    pods = nine_in_three_zones(fleet)[:5]
    for pod in pods:
        embedded_dns.add_pod(unique_service, NS, pod.ip)
    kube.put(plain_slice(pods, service=unique_service, port=fleet.port))
    with resolve_channel(
        f"{unique_service}.{NS}:{fleet.port}",
        kubeconfig=kubeconfig,
        nameservers=[embedded_dns.address],
        poll_interval=0.2,
        subset_size=2,
        subset_key="client-3",
    ) as channel:
        assert hosts_of(channel.endpoints) == {p.ip for p in pods}
        assert channel.subset == Subsetting.keyed(2, "client-3").pick(channel.endpoints)
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert set(call_counts(stub, 100)) == hosts_of(channel.subset)


# -- the asyncio driver -------------------------------------------------------------------


def test_aio_dials_its_subset_and_follows_changes(
    embedded_dns: DNSResponder, unique_service: str
) -> None:
    fleet = new_fleet()  # sync servers: the client is what is under test
    try:
        hosts = start(embedded_dns, fleet, unique_service, 6)
        seventh = f"127.0.{fleet.block}.7"
        key = key_where(3, hosts, [*hosts, seventh], changes=True)
        expected = Subsetting.keyed(3, key)
        changes: Changes = []

        async def main() -> None:
            async with await dnsbalance.aio.resolve_channel(
                f"{unique_service}.ns:{fleet.port}",
                nameservers=[embedded_dns.address],
                mode="dns",
                poll_interval=0.2,
                subset_size=3,
                subset_key=key,
                on_change=lambda old, new: changes.append((old, new)),
            ) as channel:
                assert hosts_of(channel.endpoints) == set(hosts)
                assert channel.subset == expected.pick(channel.endpoints)
                stub = demo_pb2_grpc.DemoServiceStub(channel)
                seen = {(await stub.Demo(demo_pb2.Empty(), timeout=5)).value for _ in range(60)}
                assert seen == hosts_of(channel.subset)
                embedded_dns.add_pod(unique_service, "ns", fleet.add().host)
                for _ in range(250):  # bounded: 5 s
                    if len(channel.endpoints) == 7:
                        break
                    await asyncio.sleep(0.02)
                assert channel.subset == expected.pick(channel.endpoints)
                assert channel.generation == 1
                seen = {(await stub.Demo(demo_pb2.Empty(), timeout=5)).value for _ in range(60)}
                assert seen == hosts_of(channel.subset)

        asyncio.run(main())
        assert [(len(old), len(new)) for old, new in changes] == [(6, 7)]
        assert sum(b.connections for b in fleet.backends.values()) == 4
    finally:
        fleet.close()
