"""resolve_channel(mode="api"|"auto"): the official client against the fake API server,
real grpc backends, and real BIND for the DNS side."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from dnsbalance import BalancedChannel, KubernetesError, resolve_channel
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI
from tests.kits.backends import Fleet, call_counts, demo_pb2, demo_pb2_grpc, wait_until

NS = "app"


def publish(
    kube: FakeKubernetesAPI,
    service: str,
    fleet: Fleet,
    hosts: list[str],
    *,
    slice_name: str | None = None,
    not_ready: tuple[str, ...] = (),
    terminating: tuple[str, ...] = (),
) -> None:
    endpoints = []
    for host in hosts:
        if host in terminating:
            endpoints.append((host, False, True, True))
        elif host in not_ready:
            endpoints.append((host, False, False, False))
        else:
            endpoints.append((host, True, True, False))
    kube.apply_slice(
        slice_name or f"{service}-a",
        NS,
        service,
        endpoints=endpoints,
        ports=[("grpc", fleet.port, "TCP")],
    )


def api_channel(service: str, fleet: Fleet, kubeconfig: Path, **kwargs: Any) -> BalancedChannel:
    kwargs.setdefault("mode", "api")
    return resolve_channel(f"{service}.{NS}:grpc", kubeconfig=kubeconfig, **kwargs)


def addresses(channel: BalancedChannel) -> list[str]:
    return [ep.address for ep in channel.endpoints]


def test_api_mode_follows_slices_with_one_new_connection(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    for _ in range(3):
        fleet.add()
    hosts = sorted(fleet.backends)
    publish(kube, unique_service, fleet, hosts)
    with api_channel(unique_service, fleet, kubeconfig) as channel:
        assert addresses(channel) == hosts
        assert channel.target.startswith("dns://127.0.0.1:")
        assert channel.target.endswith(f".dnsbalance.invalid:{fleet.port}")
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        counts = call_counts(stub, 300)
        assert set(counts) == set(hosts)
        assert all(90 <= n <= 110 for n in counts.values()), counts
        new = fleet.add()
        changed_at = time.monotonic()
        publish(kube, unique_service, fleet, [*hosts, new.host])
        assert wait_until(lambda: stub.Demo(demo_pb2.Empty()).value == new.host, 3.0, 0.005)
        used_after = time.monotonic() - changed_at
        assert used_after < 2.0  # watch-driven; the benchmark reports the real number
        call_counts(stub, 100)
    # The local DNS keeps the target identical: one new connection, none to the old.
    assert [b.connections for b in fleet.backends.values()] == [1, 1, 1, 1]


def test_api_mode_drops_not_ready_and_terminating(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    for _ in range(3):
        fleet.add()
    a, b, c = sorted(fleet.backends)
    publish(kube, unique_service, fleet, [a, b, c])
    with api_channel(unique_service, fleet, kubeconfig) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        publish(kube, unique_service, fleet, [a, b, c], not_ready=(b,), terminating=(c,))
        assert wait_until(lambda: addresses(channel) == [a], 2.0)
        assert set(call_counts(stub, 50)) == {a}
    with api_channel(unique_service, fleet, kubeconfig, include_terminating=True) as draining:
        assert addresses(draining) == [a, c]


def test_api_mode_merges_250_endpoints_in_three_slices_and_handles_deleted(
    kube: FakeKubernetesAPI, kubeconfig: Path, unique_service: str
) -> None:
    def slice_of(block: int, count: int) -> list[tuple[str, bool]]:
        return [(f"10.{block}.0.{i}", True) for i in range(1, count + 1)]

    for name, block, count in (("a", 1, 100), ("b", 2, 100), ("c", 3, 50)):
        kube.apply_slice(
            f"{unique_service}-{name}",
            NS,
            unique_service,
            endpoints=slice_of(block, count),
            ports=[("grpc", 9000, "TCP")],
        )
    kube.apply_slice("other-a", NS, "other", endpoints=["10.9.0.1"], ports=[("grpc", 9000, "TCP")])
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api"
    ) as channel:
        assert len(channel.endpoints) == 250
        assert {ep.port for ep in channel.endpoints} == {9000}
        kube.delete("EndpointSlice", NS, f"{unique_service}-b")
        assert wait_until(lambda: len(channel.endpoints) == 150, 3.0)
        assert not any(ep.address.startswith("10.2.") for ep in channel.endpoints)
        kube.apply_slice(
            f"{unique_service}-c",
            NS,
            unique_service,
            endpoints=slice_of(3, 60),
            ports=[("grpc", 9000, "TCP")],
        )
        assert wait_until(lambda: len(channel.endpoints) == 160, 3.0)


def test_watch_survives_cuts_and_410s(
    kube: FakeKubernetesAPI, kubeconfig: Path, unique_service: str
) -> None:
    kube.apply_slice(
        f"{unique_service}-a",
        NS,
        unique_service,
        endpoints=["10.4.0.1"],
        ports=[("grpc", 80, "TCP")],
    )
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api"
    ) as channel:
        for i in range(2, 6):
            assert wait_until(lambda: kube.watch_count > 0, 3.0)
            expire = i % 2 == 1
            if expire:  # hold the watcher's reconnection until the history is gone
                kube.delay(0.5, verb="watch")
            kube.cut_watches()
            kube.apply_slice(
                f"{unique_service}-a",
                NS,
                unique_service,
                endpoints=[f"10.4.0.{n}" for n in range(1, i + 1)],
                ports=[("grpc", 80, "TCP")],
            )
            if expire:
                kube.compact()  # the resumed watch gets 410 Expired and lists again
            assert wait_until(lambda n=i: len(channel.endpoints) == n, 5.0), i  # type: ignore[misc]
            kube.delay(0, verb="watch")
    lists = [r for r in kube.requests if r.verb == "list" and r.resource == "endpointslices"]
    assert len(lists) >= 3  # the first, and one after each 410


def test_api_mode_refuses_without_permission_or_api(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    kube.deny("list", "endpointslices", namespace=NS)
    with pytest.raises(KubernetesError) as info:
        resolve_channel(f"svc.{NS}:grpc", kubeconfig=kubeconfig, mode="api")
    assert info.value.status == 403
    assert 'cannot list resource "endpointslices"' in str(info.value)
    with pytest.raises(KubernetesError, match="needs Kubernetes API access"):
        resolve_channel(f"svc.{NS}:grpc", mode="api")
    dead = kube.write_kubeconfig(tmp_path / "dead", namespace=NS)
    dead.write_text(dead.read_text().replace(kube.url, "http://127.0.0.1:9"))
    with pytest.raises(KubernetesError, match="unreachable"):
        resolve_channel(f"svc.{NS}:grpc", kubeconfig=dead, mode="api")


def test_auto_falls_back_to_dns_with_one_warning_and_recovers(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: Any,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for _ in range(2):
        backend = fleet.add()
        embedded_dns.add_pod(unique_service, NS, backend.host, ports={"grpc": fleet.port})
    publish(kube, unique_service, fleet, sorted(fleet.backends))
    kube.deny("*", "endpointslices", namespace=NS)
    with (
        caplog.at_level(logging.WARNING, logger="dnsbalance"),
        resolve_channel(
            f"{unique_service}.{NS}:grpc",
            kubeconfig=kubeconfig,
            nameservers=[embedded_dns.address],
            poll_interval=0.2,
        ) as channel,
    ):
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert set(call_counts(stub, 20)) == set(fleet.backends)
        time.sleep(1.5)  # the watcher retries (forbidden again): still one warning
        warnings = [r.getMessage() for r in caplog.records if "using DNS only" in r.getMessage()]
        assert warnings == [
            f"kubernetes:///{unique_service}.{NS}:grpc: cannot list "
            f'endpointslices.discovery.k8s.io in namespace "{NS}" (HTTP 403 Forbidden): using '
            'DNS only; apply manifests/rbac.yaml or pass mode="dns"'
        ]
        # A Role is added: the next retry reads the API, and the API's word counts again.
        kube.allow_all()
        assert wait_until(
            lambda: any("readable again" in r.getMessage() for r in caplog.records), 6.0
        )
        hosts = sorted(fleet.backends)
        publish(kube, unique_service, fleet, hosts, not_ready=(hosts[0],))
        assert wait_until(lambda: addresses(channel) == hosts[1:], 2.0)


def test_auto_without_configuration_is_dns_only(
    embedded_dns: Any, fleet: Fleet, unique_service: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = fleet.add()
    embedded_dns.add_pod(unique_service, NS, backend.host)
    with (
        caplog.at_level(logging.WARNING, logger="dnsbalance"),
        resolve_channel(
            f"{unique_service}.{NS}:{fleet.port}", nameservers=[embedded_dns.address]
        ) as channel,
    ):
        assert addresses(channel) == [backend.host]
        assert stub_value(channel) == backend.host
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "no Kubernetes API configuration (not in a pod, no KUBECONFIG): using DNS only; "
        'pass mode="dns" to say so'
    ]


def stub_value(channel: BalancedChannel) -> str:
    return str(demo_pb2_grpc.DemoServiceStub(channel).Demo(demo_pb2.Empty(), timeout=5).value)


def test_auto_scale_up_at_api_speed_and_api_removal_within_a_second(
    kube: FakeKubernetesAPI, kubeconfig: Path, bind_server: Any, fleet: Fleet, unique_service: str
) -> None:
    """API adds a pod: used at once, before DNS lists it (as mode "api"; DNS is
    cross-checked). API marks a pod not ready while DNS still lists it: no new calls
    within 1 s."""
    for _ in range(3):
        backend = fleet.add()
        bind_server.add_pod(unique_service, NS, backend.host)
    hosts = sorted(fleet.backends)
    publish(kube, unique_service, fleet, hosts)
    with resolve_channel(
        f"{unique_service}.{NS}:{fleet.port}",
        kubeconfig=kubeconfig,
        nameservers=[bind_server.address],
        poll_interval=5.0,
    ) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert set(call_counts(stub, 30)) == set(hosts)
        new = fleet.add()
        publish(kube, unique_service, fleet, [*hosts, new.host])
        assert wait_until(lambda: new.host in addresses(channel), 3.0)
        call_counts(stub, 8)
        assert new.calls > 0
        assert new.host not in [p.ip for p in bind_server.pods(unique_service, NS)]
        bind_server.add_pod(unique_service, NS, new.host)

        sick = hosts[0]
        publish(kube, unique_service, fleet, [*hosts, new.host], not_ready=(sick,))
        marked = time.monotonic()
        assert wait_until(lambda: sick not in addresses(channel), 1.0)
        assert time.monotonic() - marked <= 1.0
        before = fleet.backends[sick].calls
        call_counts(stub, 100)
        assert fleet.backends[sick].calls == before
        assert sick in [p.ip for p in bind_server.pods(unique_service, NS)]  # DNS still lists it


def test_discrepancies_after_ttl_plus_one(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    both, dns_only, api_only = (fleet.add().host for _ in range(3))
    kube.apply_slice(
        f"{unique_service}-a",
        NS,
        unique_service,
        endpoints=[both, api_only],
        ports=[("grpc", fleet.port, "TCP")],
    )
    # Its own DNS server with a 1 s TTL keeps the test short: the window is 2 s.
    with (
        DNSResponder(ttl=1) as dns_server,
        caplog.at_level(logging.WARNING, logger="dnsbalance"),
    ):
        dns_server.set_service(unique_service, NS, [both, dns_only])
        with resolve_channel(
            f"{unique_service}.{NS}:{fleet.port}",
            kubeconfig=kubeconfig,
            nameservers=[dns_server.address],
            poll_interval=0.5,
        ) as channel:
            # The API's word at once: its ready endpoint is used while DNS lacks it, and
            # the one it does not list is not, while DNS lists it.
            assert addresses(channel) == sorted([both, api_only])
            assert wait_until(lambda: len(channel.discrepancies) == 2, 4.0)
            kinds = {(d.endpoint.address, d.kind) for d in channel.discrepancies}
            assert kinds == {(dns_only, "dns-only"), (api_only, "api-only")}
            assert addresses(channel) == sorted([both, api_only])
    logged = [r.getMessage() for r in caplog.records if "disagree" in r.getMessage()]
    assert len(logged) == 2


def test_in_cluster_token_rotation(fleet: Fleet, unique_service: str, tmp_path: Path) -> None:
    """A pod's service account over https; the token file rotates, the old token is
    refused at once, and the channel keeps following the API without a restart."""
    with FakeKubernetesAPI(tls=True, tokens={"token-1"}) as kube:
        account = kube.write_service_account(tmp_path / "sa", "token-1", NS)
        fleet.add()
        publish(kube, unique_service, fleet, sorted(fleet.backends))
        from dnsbalance._kube.client import load_api_client

        client = load_api_client(service_account_dir=account, environ=kube.incluster_environ())
        assert client is not None
        try:
            with resolve_channel(
                f"{unique_service}.{NS}:grpc", mode="api", api_client=client
            ) as channel:
                assert wait_until(lambda: kube.watch_count > 0, 3.0)
                # the pod readiness side is done too (the fake serves no pods: it stops)
                assert wait_until(lambda: any(r.status == 404 for r in kube.requests), 3.0)
                # As kubelet does: the new token is in the file before the old one expires.
                (account / "token").write_text("token-2")
                kube.rotate_token("token-1", "token-2")
                kube.cut_watches()  # the next request must carry the new token
                second = fleet.add()
                publish(kube, unique_service, fleet, sorted(fleet.backends))
                assert wait_until(lambda: second.host in addresses(channel), 5.0)
        finally:
            client.close()
        refused = [r for r in kube.requests if r.status == 401]
        assert refused == []  # the new token was used before the old one was ever refused
