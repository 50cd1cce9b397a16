"""Topology hints written by the real EndpointSlice controller, and terminating pods."""

from __future__ import annotations

import itertools

import pytest
from kubernetes import client

from dnsbalance.testing import ControlPlane
from tests.conftest import NODES
from tests.kits.backends import demo_pb2_grpc, wait_until

from .kit import counts, open_channel, until_only

LABELS = {"app": "zonal"}
_pods = itertools.count(1)


def _hinted(cluster: ControlPlane, namespace: str, service: str) -> bool:
    """Every endpoint of the Service's slices carries zone hints."""
    slices = client.DiscoveryV1Api(cluster.admin).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    endpoints = [e for s in slices.items for e in s.endpoints or ()]
    return bool(endpoints) and all(e.hints and e.hints.for_zones for e in endpoints)


@pytest.mark.parametrize("mode", ["api", "auto"])
def test_calls_stay_in_zone_then_spill_over(
    cluster: ControlPlane, namespace: str, mode: str
) -> None:
    cluster.create_service(namespace, "zonal", selector=LABELS, trafficDistribution="PreferClose")
    by_zone: dict[str, set[str]] = {}
    for node, zone in NODES.items():
        for _ in range(2):
            pod = cluster.add_pod(namespace, f"z-{next(_pods)}", node=node, labels=LABELS)
            by_zone.setdefault(zone, set()).add(pod.backend)
    cluster.wait_for_ready(namespace, "zonal", [p.ip for p in cluster.pods(namespace)])
    assert wait_until(lambda: _hinted(cluster, namespace, "zonal"), 20)
    everyone = set().union(*by_zone.values())
    with open_channel(cluster, namespace, "zonal", mode, zone="zone-a") as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert wait_until(lambda: len(channel.endpoints) == 2, 10)
        assert set(counts(stub, 60)) == by_zone["zone-a"]  # no call leaves the zone
        for pod in cluster.pods(namespace):
            if pod.backend in by_zone["zone-a"]:
                cluster.set_ready(namespace, pod.name, False)
        spilled = everyone - by_zone["zone-a"]
        assert until_only(stub, spilled, timeout=20) == spilled


@pytest.mark.parametrize("include_terminating", [False, True])
def test_a_graceful_delete_shows_as_terminating(
    cluster: ControlPlane, namespace: str, include_terminating: bool
) -> None:
    cluster.create_service(namespace, "term", selector=LABELS)
    pods = [
        cluster.add_pod(namespace, f"t-{next(_pods)}", node="node-b", labels=LABELS)
        for _ in range(3)
    ]
    cluster.wait_for_ready(namespace, "term", [p.ip for p in pods])
    leaving = pods[0]
    with open_channel(
        cluster, namespace, "term", "api", include_terminating=include_terminating
    ) as channel:
        assert wait_until(lambda: len(channel.endpoints) == 3, 10)
        cluster.delete_pod(namespace, leaving.name, grace_seconds=300)
        slices = client.DiscoveryV1Api(cluster.admin)

        def terminating() -> bool:
            items = slices.list_namespaced_endpoint_slice(
                namespace, label_selector="kubernetes.io/service-name=term"
            ).items
            for item in items:
                for e in item.endpoints or ():
                    if e.addresses[0] == leaving.ip:
                        c = e.conditions
                        return bool(c.terminating and c.serving and not c.ready)
            return False

        assert wait_until(terminating, 20)
        want = {p.ip for p in pods} if include_terminating else {p.ip for p in pods[1:]}
        assert wait_until(lambda: {e.address for e in channel.endpoints} == want, 10)
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        seen = set(counts(stub, 30))
        assert (leaving.backend in seen) is include_terminating
