"""The EndpointSlice watcher against the fake API as a real server fails: a watch
forbidden while list works, 429 with Retry-After, short 5xx outages, an unreachable
API (issue 14, items 1-3). The official client over HTTP; real grpc backends."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from dnsbalance import resolve_channel
from dnsbalance.testing import FakeKubernetesAPI
from tests.kits.backends import Fleet, wait_until

NS = "app"


def publish(kube: FakeKubernetesAPI, service: str, port: int, hosts: list[str]) -> None:
    kube.apply_slice(f"{service}-a", NS, service, endpoints=hosts, ports=[("grpc", port, "TCP")])


def requests(kube: FakeKubernetesAPI, verb: str) -> list[Any]:
    return [r for r in kube.requests if r.verb == verb and r.resource == "endpointslices"]


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_watch_forbidden_while_list_works_warns_once_and_relists_at_the_poll_interval(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: Any,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = fleet.add(), fleet.add()
    for backend in (a, b):
        embedded_dns.add_pod(unique_service, NS, backend.host, ports={"grpc": fleet.port})
    publish(kube, unique_service, fleet.port, [a.host, b.host])
    kube.deny("watch", "endpointslices", namespace=NS)  # a Role with get/list only
    with (
        caplog.at_level(logging.DEBUG, logger="dnsbalance"),
        resolve_channel(
            f"{unique_service}.{NS}:grpc",
            kubeconfig=kubeconfig,
            nameservers=[embedded_dns.address],
            poll_interval=2.0,
        ) as channel,
    ):
        time.sleep(5.0)
        lists, watches = len(requests(kube, "list")), len(requests(kube, "watch"))
        # One list, then one every poll interval (2 s): not a list+watch a second.
        assert 2 <= lists <= 4, lists
        assert watches == 1, watches  # retried once a minute, not on every list
        warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in warned] == [
            f"dnsbalance-watch-{unique_service}.{NS}: can list but not watch "
            f'endpointslices.discovery.k8s.io in namespace "{NS}" (HTTP 403 Forbidden): '
            're-listing every 2 s instead; add "watch" to the Role\'s verbs '
            "(manifests/rbac.yaml) to follow changes within a second"
        ]
        assert not messages(caplog, "using DNS only")  # list works: no false fallback
        # The set still follows the API, at the poll interval.
        publish(kube, unique_service, fleet.port, [a.host])
        assert wait_until(lambda: [ep.address for ep in channel.endpoints] == [a.host], 4.0)


def test_429_on_watch_honours_retry_after_and_keeps_the_resource_version(
    kube: FakeKubernetesAPI, kubeconfig: Path, unique_service: str, caplog: pytest.LogCaptureFixture
) -> None:
    publish(kube, unique_service, 80, ["10.5.0.1"])
    with (
        caplog.at_level(logging.WARNING),
        resolve_channel(f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api") as ch,
    ):
        assert wait_until(lambda: kube.watch_count == 1, 3.0)
        kube.reset_log()
        kube.fail_next(2, code=429, verb="watch", retry_after=2)
        kube.cut_watches()
        time.sleep(3.0)
        watches = requests(kube, "watch")
        # Cut -> 429 -> (Retry-After 2 s) -> 429: two requests in 3 s, not one a second.
        assert [r.status for r in watches] == [429, 429], watches
        publish(kube, unique_service, 80, ["10.5.0.1", "10.5.0.2"])
        assert wait_until(lambda: len(ch.endpoints) == 2, 4.0)
        # The watch resumed from its resourceVersion: no re-list after a retryable failure.
        assert requests(kube, "list") == []
        assert all(r.query.get("resourceVersion") for r in requests(kube, "watch"))
    # Mode api says once that it keeps the last endpoints, not once per retry.
    assert len(messages(caplog, "keeping the last endpoints")) == 1, caplog.records


def test_a_short_5xx_outage_is_over_within_about_a_second(
    kube: FakeKubernetesAPI, kubeconfig: Path, unique_service: str
) -> None:
    publish(kube, unique_service, 80, ["10.6.0.1"])
    with resolve_channel(f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api") as ch:
        assert wait_until(lambda: kube.watch_count == 1, 3.0)
        kube.fail_next(10_000, code=500, resource="endpointslices")
        kube.cut_watches()
        time.sleep(5.0)  # an apiserver rolling restart
        kube.clear_failures()
        publish(kube, unique_service, 80, ["10.6.0.1", "10.6.0.2"])
        # Retries stay about a second apart in the first seconds of an outage
        # (kuberesolver: a fixed 1 s); doubling from 1 s would wait until ~7 s.
        assert wait_until(lambda: len(ch.endpoints) == 2, 1.5)


def test_unreachable_api_logs_only_dnsbalance_lines(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: Any,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = fleet.add()
    embedded_dns.add_pod(unique_service, NS, backend.host, ports={"grpc": fleet.port})
    kubeconfig.write_text(kubeconfig.read_text().replace(kube.url, "http://127.0.0.1:9"))
    with (
        caplog.at_level(logging.DEBUG),
        resolve_channel(
            f"{unique_service}.{NS}:grpc",
            kubeconfig=kubeconfig,
            nameservers=[embedded_dns.address],
            poll_interval=0.5,
        ) as channel,
    ):
        assert [ep.address for ep in channel.endpoints] == [backend.host]
        time.sleep(3.0)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud, "the fallback to DNS is said once"
    assert {r.name.split(".")[0] for r in loud} == {"dnsbalance"}, [
        (r.name, r.getMessage()) for r in loud
    ]
    assert len(messages(caplog, "using DNS only")) == 1


def test_service_port_instead_of_the_pods_port_is_warned_once(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: Any,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Service port 8000, targetPort 43343: ``svc:8000`` (the Service port) dials
    nothing; the API knows the pods' port and dnsbalance says which target to use."""
    embedded_dns.add_pod(unique_service, NS, "127.0.0.9", ports={"grpc": 43343})
    kube.apply_slice(
        f"{unique_service}-a",
        NS,
        unique_service,
        endpoints=["127.0.0.9"],
        ports=[("grpc", 43343, "TCP")],
    )
    with (
        caplog.at_level(logging.WARNING, logger="dnsbalance"),
        resolve_channel(
            f"{unique_service}.{NS}:8000",
            kubeconfig=kubeconfig,
            nameservers=[embedded_dns.address],
            poll_interval=0.5,
        ),
    ):
        assert wait_until(lambda: bool(messages(caplog, "is none of the ports")), 5.0)
        kube.apply_slice(  # more changes: still one warning
            f"{unique_service}-a",
            NS,
            unique_service,
            endpoints=["127.0.0.9", "127.0.0.10"],
            ports=[("grpc", 43343, "TCP")],
        )
        time.sleep(0.5)
    assert messages(caplog, "is none of the ports") == [
        f"dnsbalance-watch-{unique_service}.{NS}: port 8000 is none of the ports the pods of "
        f"{unique_service}.{NS} serve (grpc=43343): every call will fail. A headless Service "
        "is dialed at the pods' (target) port, not the Service port; use the target "
        f"{unique_service}.{NS}:grpc"
    ]


@pytest.mark.parametrize("mode", ["auto", "api"])
def test_nothing_ready_panics_and_slices_gone_empties(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: Any,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    """One policy for modes auto and api: every pod not ready (servers still up) keeps
    the listed endpoints called with one WARNING; the slices gone empty the channel."""
    from tests.kits.backends import call_counts, demo_pb2_grpc

    hosts = sorted(fleet.add().host for _ in range(2))
    for host in hosts:
        embedded_dns.add_pod(unique_service, NS, host, ports={"grpc": fleet.port})
    publish(kube, unique_service, fleet.port, hosts)
    with (
        caplog.at_level(logging.WARNING, logger="dnsbalance"),
        resolve_channel(
            f"{unique_service}.{NS}:grpc",
            kubeconfig=kubeconfig,
            nameservers=[embedded_dns.address],
            poll_interval=0.2,
            mode=mode,  # type: ignore[arg-type]
        ) as channel,
    ):
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert set(call_counts(stub, 20)) == set(hosts)
        # Readiness fails everywhere at once: the API lists them not ready, DNS drops them.
        kube.apply_slice(
            f"{unique_service}-a",
            NS,
            unique_service,
            endpoints=[(h, False, False, False) for h in hosts],
            ports=[("grpc", fleet.port, "TCP")],
        )
        for host in hosts:
            embedded_dns.remove_pod(unique_service, NS, host)
        assert wait_until(lambda: bool(messages(caplog, "panic mode")), 3.0)
        time.sleep(1.0)  # two NXDOMAINs and more: the channel still calls both
        counts = call_counts(stub, 40)
        assert set(counts) == set(hosts), counts
        assert [ep.address for ep in channel.endpoints] == hosts
        assert {d.kind for d in channel.discrepancies} == {"panic"}
        assert len(messages(caplog, "panic mode")) == 1
        kube.delete("EndpointSlice", NS, f"{unique_service}-a")  # the Service is gone
        assert wait_until(lambda: channel.endpoints == (), 3.0)


def test_an_endpoint_is_never_dialed_at_a_port_its_slice_does_not_list(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rollout moves targetPort `grpc` from P1 to P2: one slice per mapping. Target :P1
    must not send the new pod's calls to P1 on its address, where something else may
    listen (here another server): that endpoint is left out, with a WARNING, since the
    channel dials one port. Counted on the backends, not read off .endpoints."""
    from dnsbalance.testing import Backend
    from tests.kits.backends import call_counts, demo_pb2_grpc, new_fleet

    block = new_fleet().block
    old = Backend(f"127.0.{block}.1", 0, name="old").start()
    new = Backend(f"127.0.{block}.2", 0, name="new").start()
    wrong = Backend(f"127.0.{block}.2", old.port, name="wrong").start()
    try:
        kube.apply_slice(
            f"{unique_service}-a",
            NS,
            unique_service,
            endpoints=[old.host],
            ports=[("grpc", old.port, "TCP")],
        )
        kube.apply_slice(
            f"{unique_service}-b",
            NS,
            unique_service,
            endpoints=[new.host],
            ports=[("grpc", new.port, "TCP")],
        )
        with (
            caplog.at_level(logging.WARNING, logger="dnsbalance"),
            resolve_channel(
                f"{unique_service}.{NS}:{old.port}", kubeconfig=kubeconfig, mode="api"
            ) as channel,
        ):
            counts = call_counts(demo_pb2_grpc.DemoServiceStub(channel), 60)
        assert counts == {"old": 60}, counts
        assert wrong.calls == 0
        assert len(messages(caplog, "left out")) == 1
        assert f"serve this port at {new.port}" in messages(caplog, "left out")[0]
    finally:
        for backend in (old, new, wrong):
            backend.stop(0)
