"""dnsbalance through the real chain: pod status -> EndpointSlice controller -> (API watch
| CoreDNS) -> channel -> real gRPC backends at the pods' IPs, in every mode."""

from __future__ import annotations

import itertools

import grpc
import pytest

from dnsbalance.testing import ControlPlane
from tests.kits.backends import demo_pb2_grpc, wait_until

from .kit import MODES, Callers, call, counts, open_channel, stub_for, until_absent, until_seen

LABELS = {"app": "greeter"}
_pods = itertools.count(1)


def _service(cluster: ControlPlane, namespace: str, pods: int, **spec: object) -> list[str]:
    cluster.create_service(namespace, "greeter", selector=LABELS, **spec)
    refs = [_pod(cluster, namespace) for _ in range(pods)]
    cluster.wait_for_ready(namespace, "greeter", [r.ip for r in refs])
    return [r.backend for r in refs]


def _pod(cluster: ControlPlane, namespace: str, node: str = "node-a", ready: bool = True):  # type: ignore[no-untyped-def]
    return cluster.add_pod(namespace, f"pod-{next(_pods)}", node=node, labels=LABELS, ready=ready)


@pytest.mark.parametrize("mode", MODES)
def test_scale_up_new_pods_take_calls(cluster: ControlPlane, namespace: str, mode: str) -> None:
    first = _service(cluster, namespace, 2)
    with stub_for(open_channel(cluster, namespace, "greeter", mode)) as stub:
        assert set(counts(stub, 8)) == set(first)
        new = [_pod(cluster, namespace) for _ in range(2)]
        everyone = set(first) | {p.backend for p in new}
        assert until_seen(stub, everyone, timeout=20) == everyone


@pytest.mark.parametrize("mode", MODES)
def test_readiness_flips_are_followed(cluster: ControlPlane, namespace: str, mode: str) -> None:
    backends = _service(cluster, namespace, 3)
    flipped = cluster.pods(namespace)[1]
    with stub_for(open_channel(cluster, namespace, "greeter", mode)) as stub:
        assert until_seen(stub, set(backends), timeout=10) == set(backends)
        cluster.set_ready(namespace, flipped.name, False)
        assert until_absent(stub, flipped.backend, timeout=20)
        cluster.set_ready(namespace, flipped.name, True)
        assert until_seen(stub, set(backends), timeout=20) == set(backends)


@pytest.mark.parametrize("mode", MODES)
def test_rolling_replacement_under_8_callers_fails_no_call(
    cluster: ControlPlane, namespace: str, mode: str
) -> None:
    _service(cluster, namespace, 3)
    channel = open_channel(cluster, namespace, "greeter", mode)
    with stub_for(channel) as stub, Callers(stub, 8, max_seconds=120) as callers:
        for old in list(cluster.pods(namespace)):
            new = _pod(cluster, namespace)
            cluster.delete_pod(namespace, old.name)  # terminating: leaves the ready set
            live = {p.ip for p in cluster.pods(namespace) if p.name != old.name}
            cluster.wait_for_ready(namespace, "greeter", live)
            assert until_absent(stub, old.backend, timeout=20)  # the preStop sleep's job
            cluster.remove_pod(namespace, old.name)
            assert new.backend in until_seen(stub, {new.backend}, timeout=20)
    assert callers.failures == {}
    assert sum(callers.answers.values()) > 100
    assert set(callers.answers) >= {p.backend for p in cluster.pods(namespace)}


@pytest.mark.parametrize("mode", MODES)
def test_every_pod_not_ready(cluster: ControlPlane, namespace: str, mode: str) -> None:
    """As the README's "When nothing is ready" says: modes "api" and "auto" keep calling
    the listed pods still serving or in use (panic mode; the pods turn not ready one
    patch at a time, so the last ready ones were in use); "dns" sees NXDOMAIN and
    empties the set."""
    backends = _service(cluster, namespace, 2)
    with open_channel(cluster, namespace, "greeter", mode) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert until_seen(stub, set(backends), timeout=10) == set(backends)
        for pod in cluster.pods(namespace):
            cluster.set_ready(namespace, pod.name, False)
        cluster.wait_for_ready(namespace, "greeter", [])
        if mode == "dns":
            assert wait_until(lambda: channel.endpoints == (), 20)
            with pytest.raises(grpc.RpcError) as info:
                call(stub, timeout=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        else:
            assert wait_until(lambda: {d.kind for d in channel.discrepancies} == {"panic"}, 20)
            # Those were in use (the last ready ones): every call still succeeds.
            in_use = {f"{p.name}.{namespace}" for p in cluster.pods(namespace)
                      if p.ip in {e.address for e in channel.endpoints}}  # fmt: skip
            assert in_use
            assert set(counts(stub, 20)) == in_use
