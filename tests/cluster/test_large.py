"""A Service of 250 pods: the real controller splits it into 3+ slices, and every pod
takes calls in every mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from dnsbalance.testing import ControlPlane
from tests.kits.backends import demo_pb2_grpc

from .kit import MODES, open_channel, require_pod_network, until_seen

PODS = 250
LABELS = {"app": "big"}


@pytest.fixture(scope="module")
def big_service(control_plane: ControlPlane) -> Iterator[tuple[str, set[str]]]:
    require_pod_network(control_plane)
    namespace = control_plane.create_namespace()
    control_plane.create_service(namespace, "big", selector=LABELS)
    ips = control_plane.pod_network.allocate(PODS)
    pods = [
        control_plane.add_pod(
            namespace, f"big-{i}", node=f"node-{'abc'[i % 3]}", labels=LABELS, ip=ip
        )
        for i, ip in enumerate(ips)
    ]
    control_plane.wait_for_ready(namespace, "big", [p.ip for p in pods], timeout=60)
    yield namespace, {p.backend for p in pods}
    for pod in pods:
        control_plane.remove_pod(namespace, pod.name, grace=0)


def test_the_controller_writes_three_or_more_slices(
    control_plane: ControlPlane, big_service: tuple[str, set[str]]
) -> None:
    namespace, _ = big_service
    slices = client.DiscoveryV1Api(control_plane.admin).list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=big"
    )
    assert len(slices.items) >= 3
    assert sum(len(s.endpoints or ()) for s in slices.items) == PODS


@pytest.mark.parametrize("mode", MODES)
def test_every_pod_takes_calls(
    control_plane: ControlPlane, big_service: tuple[str, set[str]], mode: str
) -> None:
    namespace, backends = big_service
    with open_channel(control_plane, namespace, "big", mode) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        seen = until_seen(stub, backends, timeout=60, batch=PODS)
        assert len(channel.endpoints) == PODS
        assert seen == backends
