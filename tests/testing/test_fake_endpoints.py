"""FakeKubernetesAPI's core/v1 Endpoints, read through the official kubernetes client:
derived from the EndpointSlices, so both views change in the same instant."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch

from dnsbalance.testing import FakeKubernetesAPI

NS = "app"


@pytest.fixture
def core(kube: FakeKubernetesAPI) -> Iterator[client.CoreV1Api]:
    config = client.Configuration()
    config.host = kube.url
    with client.ApiClient(config) as api:
        yield client.CoreV1Api(api)


def ips(subset: Any, field: str = "addresses") -> list[str]:
    return [a.ip for a in getattr(subset, field) or ()]


def test_endpoints_follow_slices_at_once(kube: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    kube.apply_slice(
        "web-a",
        NS,
        "web",
        endpoints=[("10.0.0.2", True, True, False), ("10.0.0.1", True, True, False)],
        ports=[("grpc", 8000, "TCP"), ("metrics", 9090, "TCP")],
    )
    kube.apply_slice(
        "web-b",
        NS,
        "web",
        endpoints=[
            ("10.0.0.3", False, False, False),  # not ready
            ("10.0.0.4", False, True, True),  # terminating: left out
        ],
        ports=[("grpc", 8000, "TCP"), ("metrics", 9090, "TCP")],
    )
    obj = core.read_namespaced_endpoints("web", NS)
    assert len(obj.subsets) == 1
    (subset,) = obj.subsets
    assert ips(subset) == ["10.0.0.1", "10.0.0.2"]
    assert ips(subset, "not_ready_addresses") == ["10.0.0.3"]
    assert [(p.name, p.port, p.protocol) for p in subset.ports] == [
        ("grpc", 8000, "TCP"),
        ("metrics", 9090, "TCP"),
    ]
    kube.apply_slice(
        "web-a",
        NS,
        "web",
        endpoints=[("10.0.0.9", True, True, False)],
        ports=[("grpc", 8001, "TCP")],
    )
    obj = core.read_namespaced_endpoints("web", NS)  # no lag: the very next read
    assert sorted((ips(s), s.ports[0].port) for s in obj.subsets) == [
        ([], 8000),
        (["10.0.0.9"], 8001),
    ]
    listed = core.list_namespaced_endpoints(NS)
    assert [i.metadata.name for i in listed.items] == ["web"]
    kube.delete("EndpointSlice", NS, "web-a")
    kube.delete("EndpointSlice", NS, "web-b")
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_endpoints("web", NS)
    assert info.value.status == 404


def test_1100_endpoints_are_truncated_to_1000_and_annotated(
    kube: FakeKubernetesAPI, core: client.CoreV1Api
) -> None:
    for n in range(11):
        kube.apply_slice(
            f"big-{n:02d}",
            NS,
            "big",
            endpoints=[(f"10.1.{n}.{i + 1}", True, True, False) for i in range(100)],
            ports=[("grpc", 8000, "TCP")],
        )
    obj = core.read_namespaced_endpoints("big", NS)
    assert sum(len(s.addresses) for s in obj.subsets) == 1000
    assert obj.metadata.annotations == {"endpoints.kubernetes.io/over-capacity": "truncated"}
    kube.delete("EndpointSlice", NS, "big-10")
    obj = core.read_namespaced_endpoints("big", NS)
    assert sum(len(s.addresses) for s in obj.subsets) == 1000
    assert not obj.metadata.annotations


def test_ready_addresses_are_kept_before_not_ready_ones(
    kube: FakeKubernetesAPI, core: client.CoreV1Api
) -> None:
    kube.apply_slice(
        "mix-a",
        NS,
        "mix",
        endpoints=[(f"10.2.0.{i}", False, False, False) for i in range(1, 101)],
        ports=[("grpc", 8000, "TCP")],
    )
    for n in range(1, 10):
        kube.apply_slice(
            f"mix-{n}",
            NS,
            "mix",
            endpoints=[(f"10.2.{n}.{i}", True, True, False) for i in range(1, 101)],
            ports=[("grpc", 8000, "TCP")],
        )
    (subset,) = core.read_namespaced_endpoints("mix", NS).subsets
    assert (len(subset.addresses), len(subset.not_ready_addresses)) == (900, 100)
    kube.apply_slice(
        "mix-b",
        NS,
        "mix",
        endpoints=[(f"10.3.0.{i}", True, True, False) for i in range(1, 51)],
        ports=[("grpc", 8000, "TCP")],
    )
    (subset,) = core.read_namespaced_endpoints("mix", NS).subsets
    assert (len(subset.addresses), len(subset.not_ready_addresses)) == (950, 50)


def test_watch_through_the_client_sees_slice_changes(
    kube: FakeKubernetesAPI, core: client.CoreV1Api
) -> None:
    kube.apply_slice(
        "w-a", NS, "w", endpoints=[("10.0.0.1", True, True, False)], ports=[("", 8000, "TCP")]
    )
    events: list[tuple[str, list[str]]] = []
    w = watch.Watch()
    done = threading.Event()

    def follow() -> None:
        for event in w.stream(
            core.list_namespaced_endpoints,
            NS,
            field_selector="metadata.name=w",
            timeout_seconds=10,
        ):
            obj = event["object"]
            events.append((event["type"], [ip for s in obj.subsets or () for ip in ips(s)]))
            if len(events) == 3:
                break
        done.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    for _ in range(100):
        if events:
            break
        done.wait(0.05)
    kube.apply_slice(
        "w-a",
        NS,
        "w",
        endpoints=[("10.0.0.1", True, True, False), ("10.0.0.2", True, True, False)],
        ports=[("", 8000, "TCP")],
    )
    for _ in range(100):  # changes in one poll round coalesce, as the controller's do
        if len(events) == 2:
            break
        done.wait(0.05)
    kube.delete("EndpointSlice", NS, "w-a")
    assert done.wait(10)
    w.stop()
    assert events == [
        ("ADDED", ["10.0.0.1"]),
        ("MODIFIED", ["10.0.0.1", "10.0.0.2"]),
        ("DELETED", ["10.0.0.1", "10.0.0.2"]),
    ]


def test_legacy_watch_path_as_kuberesolver_calls_it(kube: FakeKubernetesAPI) -> None:
    kube.apply_slice(
        "k-a", NS, "k", endpoints=[("10.0.0.1", True, True, False)], ports=[("grpc", 8000, "TCP")]
    )
    url = f"{kube.url}/api/v1/watch/namespaces/{NS}/endpoints/k"
    with urllib.request.urlopen(url, timeout=10) as response:  # no query, no token
        first = json.loads(response.readline())
        assert first["type"] == "ADDED"
        assert first["object"]["subsets"][0]["addresses"] == [{"ip": "10.0.0.1"}]
        kube.apply_slice(
            "k-a",
            NS,
            "k",
            endpoints=[("10.0.0.7", True, True, False)],
            ports=[("grpc", 8000, "TCP")],
        )
        second = json.loads(response.readline())
        assert second["type"] == "MODIFIED"
        assert second["object"]["subsets"][0]["addresses"] == [{"ip": "10.0.0.7"}]
        assert kube.cut_watches() >= 1


def test_endpoints_are_read_only(kube: FakeKubernetesAPI) -> None:
    request = urllib.request.Request(
        f"{kube.url}/api/v1/namespaces/{NS}/endpoints/x", data=b"{}", method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 405
    info.value.close()
