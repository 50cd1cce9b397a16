"""Topology-aware routing end to end: the real client against FakeKubernetesAPI, real grpc
backends on 127.0.N.x tagged with zones, slices shaped as the EndpointSlice controller
writes them (tests/kits/topology.py). Three zones, two pods each, a client in zone-b."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import dnsbalance.aio
from dnsbalance import BalancedChannel, resolve_channel
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI
from tests.kits.backends import (
    AioFleet,
    Fleet,
    call_counts,
    demo_pb2,
    demo_pb2_grpc,
    new_aio_fleet,
    wait_until,
)
from tests.kits.topology import Pod, auto_slice, plain_slice, prefer_close_slice

NS = "app"
SPREAD_WITHIN = 2.0  # seconds; the "within a second", measured in benchmarks/topology.py


def zoned(hosts: list[str]) -> list[Pod]:
    """hosts[0:2] in zone-a, [2:4] zone-b, [4:6] zone-c, one node each."""
    return [
        Pod(host, f"zone-{'abc'[i // 2]}", f"node-{'abc'[i // 2]}{i % 2 + 1}")
        for i, host in enumerate(hosts)
    ]


def six(fleet: Fleet) -> list[Pod]:
    for _ in range(6):
        fleet.add()
    return zoned(sorted(fleet.backends, key=lambda h: int(h.rsplit(".", 1)[1])))


def put(kube: FakeKubernetesAPI, obj: dict[str, Any]) -> None:
    kube.put(obj)


def addresses(channel: Any) -> list[str]:
    return [ep.address for ep in channel.endpoints]


def ips(pods: list[Pod]) -> list[str]:
    return sorted(p.ip for p in pods if p.ready)


def test_a_client_in_zone_b_stays_there_spills_over_and_returns(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    pods = six(fleet)
    zone_b = [pods[2].ip, pods[3].ip]
    slice_of = {"service": unique_service, "port": fleet.port}
    put(kube, auto_slice(pods, **slice_of))
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api", zone="zone-b"
    ) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        # every call lands in zone b
        assert addresses(channel) == zone_b
        assert set(call_counts(stub, 300)) == set(zone_b)
        topology = channel.topology
        assert topology is not None
        assert (topology.rule, topology.zone, topology.in_zone, topology.out_of_zone) == (
            "zone-hints",
            "zone-b",
            2,
            0,
        )
        # a zone-b pod goes not ready: the other takes all
        pods[2] = replace(pods[2], ready=False)
        put(kube, auto_slice(pods, **slice_of))
        assert wait_until(lambda: addresses(channel) == [pods[3].ip], 2.0)
        assert set(call_counts(stub, 100)) == {pods[3].ip}
        # both go: calls spread to all zones
        pods[3] = replace(pods[3], ready=False)
        changed = time.monotonic()
        put(kube, auto_slice(pods, **slice_of))
        assert wait_until(lambda: addresses(channel) == ips(pods), SPREAD_WITHIN, 0.005)
        spread = time.monotonic() - changed
        assert set(call_counts(stub, 200)) == set(ips(pods))
        assert spread < SPREAD_WITHIN
        assert channel.topology is not None
        assert channel.topology.rule == "all: none hinted for zone zone-b"
        assert channel.topology.out_of_zone == 4
        # they come back: zone b again
        pods[2] = replace(pods[2], ready=True)
        pods[3] = replace(pods[3], ready=True)
        put(kube, auto_slice(pods, **slice_of))
        assert wait_until(lambda: addresses(channel) == zone_b, 2.0)
        # hints removed (topology-mode annotation dropped): every zone
        put(kube, plain_slice(pods, **slice_of, name=f"{unique_service}-auto"))
        assert wait_until(lambda: len(channel.endpoints) == 6, 2.0)
        assert set(call_counts(stub, 300)) == set(ips(pods))
        assert channel.topology is not None
        assert channel.topology.rule == "all: no hints"


def test_a_hint_change_that_keeps_the_set_rebuilds_nothing(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    pods = six(fleet)
    put(kube, auto_slice(pods, service=unique_service, port=fleet.port))
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api", zone="zone-b"
    ) as channel:
        generation = channel.generation
        # The same hints rewritten as PreferClose writes them (same endpoints chosen),
        # and a zone-a pod's readiness flapping: the zone-b set stays, no rebuild.
        same = {"service": unique_service, "port": fleet.port, "name": f"{unique_service}-auto"}
        put(kube, prefer_close_slice(pods, **same))
        flapped = [replace(p, ready=False) if p is pods[0] else p for p in pods]
        put(kube, prefer_close_slice(flapped, **same))
        assert wait_until(
            lambda: channel.topology is not None and channel.topology.available == 5, 2.0
        )
        assert addresses(channel) == [pods[2].ip, pods[3].ip]
        assert channel.generation == generation


def test_the_zone_from_the_node_named_by_node_name(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    fleet: Fleet,
    unique_service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pods = six(fleet)
    put(kube, prefer_close_slice(pods, service=unique_service, port=fleet.port, same_node=True))
    kube.apply_node("node-b2", zone="zone-b")
    monkeypatch.setenv("NODE_NAME", "node-b2")
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api"
    ) as channel:
        # PreferSameNode: the pod on this node
        assert addresses(channel) == [pods[3].ip]
        assert channel.topology is not None
        assert (channel.topology.rule, channel.topology.zone, channel.topology.node) == (
            "node-hints",
            "zone-b",
            "node-b2",
        )
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert set(call_counts(stub, 50)) == {pods[3].ip}
    nodes = [(r.verb, r.path) for r in kube.requests if r.resource == "nodes"]
    assert nodes == [("get", "/api/v1/nodes/node-b2")]  # read once


def test_node_forbidden_uses_every_zone_with_one_info_line(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    fleet: Fleet,
    unique_service: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pods = six(fleet)
    put(kube, auto_slice(pods, service=unique_service, port=fleet.port))
    kube.apply_node("node-b1", zone="zone-b")
    kube.deny("get", "nodes")
    monkeypatch.setenv("NODE_NAME", "node-b1")
    caplog.set_level(logging.INFO, logger="dnsbalance")
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api"
    ) as channel:
        assert wait_until(lambda: len(channel.endpoints) == 6, 2.0)
        assert channel.topology is not None
        assert channel.topology.rule == "all: no zone known"
    zone_lines = [r for r in caplog.records if "zone" in r.getMessage()]
    assert len(zone_lines) == 1, [r.getMessage() for r in zone_lines]
    assert zone_lines[0].levelno == logging.INFO
    assert "calls use every zone" in zone_lines[0].getMessage()
    assert "manifests/rbac-topology.yaml" in zone_lines[0].getMessage()


def test_no_zone_known_says_why_once_at_info(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pods = six(fleet)
    put(kube, auto_slice(pods, service=unique_service, port=fleet.port))
    caplog.set_level(logging.INFO, logger="dnsbalance")
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api"
    ) as channel:
        assert len(channel.endpoints) == 6
    lines = [r.getMessage() for r in caplog.records if "topology" in r.getMessage()]
    assert len(lines) == 1
    assert "all: no zone known" in lines[0]
    assert "DNSBALANCE_ZONE" in lines[0]


def test_local_policy_keeps_calls_on_the_node(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    fleet: Fleet,
    unique_service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pods = six(fleet)
    put(kube, plain_slice(pods, service=unique_service, port=fleet.port))
    service = kube.service(unique_service, NS, ports=[("grpc", fleet.port)], cluster_ip="None")
    service["spec"]["internalTrafficPolicy"] = "Local"
    kube.put(service)
    kube.apply_node("node-c1", zone="zone-c")
    monkeypatch.setenv("NODE_NAME", "node-c1")
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api"
    ) as channel:
        assert addresses(channel) == [pods[4].ip]
        assert channel.topology is not None
        assert channel.topology.rule == "local-policy"
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api", topology=False
    ) as every:
        assert len(every.endpoints) == 6
        assert every.topology is not None
        assert every.topology.rule == "off"


def test_auto_mode_dns_lists_every_zone_and_that_is_no_discrepancy(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    pods = six(fleet)
    put(kube, auto_slice(pods, service=unique_service, port=fleet.port))
    with DNSResponder(ttl=1) as dns:  # window: TTL + 1 s = 2 s
        dns.set_service(unique_service, NS, [p.ip for p in pods])
        with resolve_channel(
            f"{unique_service}.{NS}:{fleet.port}",
            kubeconfig=kubeconfig,
            nameservers=[dns.address],
            poll_interval=0.5,
            zone="zone-b",
        ) as channel:
            assert addresses(channel) == [pods[2].ip, pods[3].ip]
            time.sleep(2.5)  # past the window: a disagreement would be reported by now
            assert channel.discrepancies == ()
            stub = demo_pb2_grpc.DemoServiceStub(channel)
            assert set(call_counts(stub, 100)) == {pods[2].ip, pods[3].ip}


def test_mode_dns_has_no_topology(fleet: Fleet, unique_service: str) -> None:
    fleet.add()
    with DNSResponder() as dns:
        dns.set_service(unique_service, NS, sorted(fleet.backends))
        with resolve_channel(
            f"{unique_service}.{NS}:{fleet.port}",
            mode="dns",
            nameservers=[dns.address],
            zone="zone-b",
        ) as channel:
            assert channel.topology is None


# -- asyncio ----------------------------------------------------------------------------


def test_asyncio_client_in_zone_b(
    kube: FakeKubernetesAPI, kubeconfig: Path, unique_service: str
) -> None:
    async def main() -> None:
        fleet: AioFleet = new_aio_fleet()
        try:
            for _ in range(6):
                await fleet.add()
            pods = zoned(sorted(fleet.backends, key=lambda h: int(h.rsplit(".", 1)[1])))
            zone_b = [pods[2].ip, pods[3].ip]
            slice_of = {"service": unique_service, "port": fleet.port}
            put(kube, prefer_close_slice(pods, **slice_of))
            async with await dnsbalance.aio.resolve_channel(
                f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api", zone="zone-b"
            ) as channel:
                stub = demo_pb2_grpc.DemoServiceStub(channel)

                async def landed(n: int) -> Counter[str]:
                    replies = [await stub.Demo(demo_pb2.Empty(), timeout=5) for _ in range(n)]
                    return Counter(r.value for r in replies)

                async def until(condition: Any, timeout: float) -> bool:
                    deadline = time.monotonic() + timeout
                    while time.monotonic() < deadline:
                        if condition():
                            return True
                        await asyncio.sleep(0.01)
                    return bool(condition())

                assert addresses(channel) == zone_b
                assert set(await landed(100)) == set(zone_b)
                assert channel.topology is not None
                assert channel.topology.rule == "zone-hints"
                pods[2] = replace(pods[2], ready=False)
                put(kube, prefer_close_slice(pods, **slice_of))
                assert await until(lambda: addresses(channel) == [pods[3].ip], 2.0)
                assert set(await landed(50)) == {pods[3].ip}
                pods[3] = replace(pods[3], ready=False)
                put(kube, prefer_close_slice(pods, **slice_of))
                assert await until(lambda: addresses(channel) == ips(pods), SPREAD_WITHIN)
                assert set(await landed(100)) == set(ips(pods))
                put(kube, plain_slice(pods, **slice_of, name=f"{unique_service}-close"))
                pods[2] = replace(pods[2], ready=True)
                pods[3] = replace(pods[3], ready=True)
                put(kube, plain_slice(pods, **slice_of, name=f"{unique_service}-close"))
                assert await until(lambda: len(channel.endpoints) == 6, 2.0)
                assert set(await landed(200)) == set(ips(pods))
        finally:
            await fleet.close()

    asyncio.run(main())


def test_zone_argument_is_checked_at_the_door(kubeconfig: Path) -> None:
    from dnsbalance import ConfigError

    with pytest.raises(ConfigError, match="zone must be a zone name"):
        resolve_channel("svc.app:grpc", kubeconfig=kubeconfig, zone="zone b")
    with pytest.raises(ConfigError, match="topology must be True"):
        resolve_channel("svc.app:grpc", kubeconfig=kubeconfig, topology="ignore")  # type: ignore[arg-type]


def test_channel_class_has_topology() -> None:
    assert isinstance(BalancedChannel.topology, property)
    assert isinstance(dnsbalance.aio.BalancedChannel.topology, property)


def test_metrics_count_endpoints_in_and_out_of_the_zone(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    import prometheus_client

    def sample(zone: str, placement: str) -> float | None:
        labels = {"target": target, "zone": zone, "placement": placement}
        return prometheus_client.REGISTRY.get_sample_value("dnsbalance_topology_endpoints", labels)

    pods = six(fleet)
    target = f"kubernetes:///{unique_service}.{NS}:grpc"
    put(kube, auto_slice(pods, service=unique_service, port=fleet.port))
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api", zone="zone-b"
    ):
        assert (sample("zone-b", "in_zone"), sample("zone-b", "out_of_zone")) == (2, 0)
        pods[2] = replace(pods[2], ready=False)
        pods[3] = replace(pods[3], ready=False)
        put(kube, auto_slice(pods, service=unique_service, port=fleet.port))
        assert wait_until(lambda: sample("zone-b", "out_of_zone") == 4, 2.0)
        assert sample("zone-b", "in_zone") == 0
