"""One list and one watch per Service per process (issue 25, part 2), counted on the fake
API's request log: channels that follow the same Service with the same API identity share
them, sync and asyncio alike; two identities never do; each channel still reads the
slices its own way and decides for itself (include_terminating, panic_mode, its port,
its on_change); the last close stops the watch and the next channel starts a fresh one.
Real grpc backends, the official client against FakeKubernetesAPI, the embedded DNS."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import dnsbalance.aio
from dnsbalance import BalancedChannel, Endpoint, KubernetesError, resolve_channel
from dnsbalance._kube.share import WATCHES
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI
from tests.kits.backends import Fleet, thread_names, wait_until

NS = "app"


def count(kube: FakeKubernetesAPI, verb: str, service: str | None = None) -> int:
    """EndpointSlice requests of ``verb`` (``list`` or ``watch``), of one Service or all."""
    selector = None if service is None else f"kubernetes.io/service-name={service}"
    return sum(
        1
        for r in kube.requests
        if r.verb == verb
        and r.resource == "endpointslices"
        and (selector is None or r.query.get("labelSelector") == selector)
    )


def publish(
    kube: FakeKubernetesAPI,
    dns: DNSResponder | None,
    service: str,
    port: int,
    hosts: list[str],
    *,
    terminating: tuple[str, ...] = (),
    not_ready: tuple[str, ...] = (),
) -> None:
    endpoints = []
    for host in hosts:
        if host in terminating:
            endpoints.append((host, False, True, True))  # (address, ready, serving, terminating)
        elif host in not_ready:
            endpoints.append((host, False, True, False))  # not ready, still serving
        else:
            endpoints.append((host, True, True, False))
    kube.apply_slice(
        f"{service}-a", NS, service, endpoints=endpoints, ports=[("grpc", port, "TCP")]
    )
    if dns is not None:
        ready = [h for h in hosts if h not in terminating and h not in not_ready]
        dns.set_service(service, NS, ready, ports={"grpc": port})


def addresses(channel: Any) -> list[str]:
    return [ep.address for ep in channel.endpoints]


def watch_threads() -> list[str]:
    return [name for name in thread_names() if name.startswith("dnsbalance-watch-")]


def test_twenty_channels_to_two_services_make_two_lists_and_two_watches(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
) -> None:
    """16 sync and 4 asyncio channels, modes "api" and "auto", 10 per Service: one list and
    one watch per Service. A slice change reaches the 10 channels of its Service, each
    calling its own on_change once; the other Service's channels see nothing."""
    services = [f"{unique_service}-a", f"{unique_service}-b"]
    backends = {s: [fleet.add().host, fleet.add().host] for s in services}
    for service in services:
        publish(kube, embedded_dns, service, fleet.port, backends[service])
    changes: Counter[int] = Counter()
    lock = threading.Lock()

    def counting(number: int) -> Any:
        def on_change(old: tuple[Endpoint, ...], new: tuple[Endpoint, ...]) -> None:
            with lock:
                changes[number] += 1

        return on_change

    def arguments(i: int) -> dict[str, Any]:
        return {
            "target": f"{services[i % 2]}.{NS}:grpc",
            "kubeconfig": kubeconfig,
            "nameservers": [embedded_dns.address],
            "mode": ("api", "auto")[(i // 2) % 2],
            "on_change": counting(i),
        }

    sync = [resolve_channel(**arguments(i)) for i in range(16)]
    added = fleet.add().host
    try:
        assert all(
            sorted(addresses(ch)) == sorted(backends[services[i % 2]]) for i, ch in enumerate(sync)
        )

        async def with_aio_channels() -> tuple[int, int, list[list[str]]]:
            aio = [await dnsbalance.aio.resolve_channel(**arguments(i)) for i in range(16, 20)]
            try:
                opened = (count(kube, "list"), count(kube, "watch"))
                publish(
                    kube, embedded_dns, services[0], fleet.port, [*backends[services[0]], added]
                )
                for ch in aio[0::2]:  # the two asyncio channels of the first Service
                    for _ in range(250):  # up to 5 s
                        if len(ch.endpoints) == 3:
                            break
                        await asyncio.sleep(0.02)
                return (*opened, [addresses(ch) for ch in aio])
            finally:
                for ch in aio:
                    await ch.close()

        lists, watches, aio_views = asyncio.run(with_aio_channels())
        assert (lists, watches) == (2, 2)
        assert count(kube, "list", services[0]) == count(kube, "list", services[1]) == 1
        assert [len(view) for view in aio_views] == [3, 2, 3, 2]
        first = [ch for i, ch in enumerate(sync) if i % 2 == 0]
        assert wait_until(lambda: all(len(ch.endpoints) == 3 for ch in first), 5.0)
        assert all(len(ch.endpoints) == 2 for i, ch in enumerate(sync) if i % 2 == 1)
        # on_change stays per channel: once for each channel of the Service that changed.
        assert wait_until(lambda: sum(changes.values()) >= 10, 5.0)
        assert sorted(changes) == [i for i in range(20) if i % 2 == 0]
        assert set(changes.values()) == {1}
        assert (count(kube, "list"), count(kube, "watch")) == (2, 2)
    finally:
        for ch in sync:
            ch.close()
    assert wait_until(lambda: kube.watch_count == 0, 5.0)
    assert wait_until(lambda: watch_threads() == [], 5.0), watch_threads()
    assert len(WATCHES) == 0


def test_each_channel_reads_the_shared_slices_its_own_way(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    """One watch; include_terminating, panic_mode and the port stay per channel."""
    a, b, c = fleet.add().host, fleet.add().host, fleet.add().host
    publish(kube, None, unique_service, fleet.port, [a, b, c], terminating=(b,), not_ready=(c,))
    target = f"{unique_service}.{NS}:grpc"
    with (
        resolve_channel(target, kubeconfig=kubeconfig, mode="api") as plain,
        resolve_channel(
            target, kubeconfig=kubeconfig, mode="api", include_terminating=True
        ) as draining,
        resolve_channel(target, kubeconfig=kubeconfig, mode="api", panic_mode=False) as strict,
        resolve_channel(
            f"{unique_service}.{NS}:{fleet.port}", kubeconfig=kubeconfig, mode="api"
        ) as numeric,
    ):
        assert addresses(plain) == addresses(strict) == addresses(numeric) == [a]
        assert sorted(addresses(draining)) == sorted([a, b])
        # Nothing ready, everything still serving: panic mode keeps calling them; the
        # channel with panic_mode=False empties.
        publish(kube, None, unique_service, fleet.port, [a, b, c], not_ready=(a, b, c))
        assert wait_until(lambda: addresses(strict) == [], 5.0)
        assert wait_until(lambda: sorted(addresses(plain)) == sorted([a, b, c]), 5.0)
        assert sorted(addresses(numeric)) == sorted([a, b, c])
        assert (count(kube, "list"), count(kube, "watch")) == (1, 1)


def two_user_kubeconfig(kube: FakeKubernetesAPI, path: Path) -> Path:
    """A kubeconfig with contexts ``alice`` (current) and ``bob``, each its own token."""
    kube.set_tokens(["alice-token", "bob-token"])
    kube.write_kubeconfig(path, token="alice-token", namespace=NS, context="alice")
    config = json.loads(path.read_text())
    config["users"].append({"name": "bob", "user": {"token": "bob-token"}})
    config["contexts"].append(
        {"name": "bob", "context": {"cluster": "alice", "user": "bob", "namespace": NS}}
    )
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("identities", ["two kubeconfigs", "two contexts", "two api_clients"])
def test_two_identities_never_share_a_watch(
    kube: FakeKubernetesAPI, tmp_path: Path, fleet: Fleet, unique_service: str, identities: str
) -> None:
    host = fleet.add().host
    publish(kube, None, unique_service, fleet.port, [host])
    target = f"{unique_service}.{NS}:grpc"
    clients = []
    if identities == "two kubeconfigs":  # the same server and bytes, two files
        one = kube.write_kubeconfig(tmp_path / "one" / "config", namespace=NS)
        two = kube.write_kubeconfig(tmp_path / "two" / "config", namespace=NS)
        arguments: list[dict[str, Any]] = [{"kubeconfig": one}, {"kubeconfig": two}]
    elif identities == "two contexts":
        path = two_user_kubeconfig(kube, tmp_path / "config")
        arguments = [
            {"kubeconfig": path, "context": "alice"},
            {"kubeconfig": path, "context": "bob"},
        ]
    else:  # configured alike, two objects
        clients = [kube.api_client(), kube.api_client()]
        arguments = [{"api_client": clients[0]}, {"api_client": clients[1]}]
    try:
        with (
            resolve_channel(target, mode="api", **arguments[0]) as first,
            resolve_channel(target, mode="api", **arguments[1]) as second,
        ):
            assert addresses(first) == addresses(second) == [host]
            assert count(kube, "list") == 2
            assert wait_until(lambda: count(kube, "watch") == 2, 5.0)
    finally:
        for client in clients:
            client.close()


def test_one_api_client_object_is_one_watch_and_stays_open_after_its_channels(
    kube: FakeKubernetesAPI, fleet: Fleet, unique_service: str
) -> None:
    host = fleet.add().host
    publish(kube, None, unique_service, fleet.port, [host])
    target = f"{unique_service}.{NS}:grpc"
    with kube.api_client() as client:
        with (
            resolve_channel(target, mode="api", api_client=client) as first,
            resolve_channel(target, mode="api", api_client=client) as second,
        ):
            assert addresses(first) == addresses(second) == [host]
            assert wait_until(lambda: count(kube, "watch") == 1, 5.0)
            assert count(kube, "list") == 1
        # The user's client is theirs: closing the channels did not close it.
        with resolve_channel(target, mode="api", api_client=client) as again:
            assert addresses(again) == [host]
        assert count(kube, "list") == 2  # the share had ended: a fresh list


def test_the_last_close_stops_the_watch_and_a_new_channel_starts_a_fresh_one(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str
) -> None:
    a, b = fleet.add().host, fleet.add().host
    publish(kube, None, unique_service, fleet.port, [a])
    target = f"{unique_service}.{NS}:grpc"
    first = resolve_channel(target, kubeconfig=kubeconfig, mode="api")
    second = resolve_channel(target, kubeconfig=kubeconfig, mode="api")
    assert wait_until(lambda: kube.watch_count == 1, 5.0)
    first.close()  # not the last: the watch goes on for the second
    publish(kube, None, unique_service, fleet.port, [a, b])
    assert wait_until(lambda: sorted(addresses(second)) == sorted([a, b]), 5.0)
    assert kube.watch_count == 1
    assert addresses(first) == [a]  # closed channels follow nothing
    second.close()  # the last: the watch stops
    assert wait_until(lambda: kube.watch_count == 0, 5.0)
    assert wait_until(lambda: watch_threads() == [], 5.0)
    with resolve_channel(target, kubeconfig=kubeconfig, mode="api") as third:
        assert sorted(addresses(third)) == sorted([a, b])
        assert wait_until(lambda: kube.watch_count == 1, 5.0)
    assert (count(kube, "list"), count(kube, "watch")) == (2, 2)


@pytest.mark.parametrize("anchored", [True, False], ids=["one-channel-stays", "all-come-and-go"])
def test_channels_opening_while_others_close(
    kube: FakeKubernetesAPI, kubeconfig: Path, fleet: Fleet, unique_service: str, anchored: bool
) -> None:
    """4 threads x 8 cycles open a channel, check its endpoints and close it. With one
    channel open throughout, all of them share its one list; without, shares end and
    start afresh under the race, and every channel still starts with the endpoints."""
    hosts = [fleet.add().host, fleet.add().host]
    publish(kube, None, unique_service, fleet.port, hosts)
    target = f"{unique_service}.{NS}:grpc"
    problems: list[str] = []

    def cycle() -> None:
        for _ in range(8):
            try:
                with resolve_channel(target, kubeconfig=kubeconfig, mode="api") as channel:
                    if sorted(addresses(channel)) != sorted(hosts):
                        problems.append(f"started with {addresses(channel)}")
            except Exception as exc:  # reported below, with the others
                problems.append(repr(exc))

    anchor: BalancedChannel | None = None
    if anchored:
        anchor = resolve_channel(target, kubeconfig=kubeconfig, mode="api")
    try:
        threads = [threading.Thread(target=cycle) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60.0)
        assert not any(t.is_alive() for t in threads)
        assert problems == []
        if anchored:
            assert count(kube, "list") == 1
            assert wait_until(lambda: kube.watch_count == 1, 5.0)
    finally:
        if anchor is not None:
            anchor.close()
    assert wait_until(lambda: kube.watch_count == 0, 5.0)
    assert wait_until(lambda: watch_threads() == [], 5.0), watch_threads()
    assert len(WATCHES) == 0


def test_a_channel_in_mode_api_joining_a_failing_watch_raises_its_error(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
) -> None:
    """Mode "auto" goes on with DNS while the API refuses; a mode "api" channel that joins
    that watch raises the API's error at once, as its own first list would have, and the
    "auto" channel picks the API up when it is allowed again."""
    host = fleet.add().host
    publish(kube, embedded_dns, unique_service, fleet.port, [host])
    kube.deny("list", "endpointslices", namespace=NS)
    target = f"{unique_service}.{NS}:grpc"
    with resolve_channel(
        target, kubeconfig=kubeconfig, nameservers=[embedded_dns.address], poll_interval=0.5
    ) as auto:
        assert addresses(auto) == [host]  # DNS alone
        with pytest.raises(KubernetesError) as raised:
            resolve_channel(target, kubeconfig=kubeconfig, mode="api")
        assert raised.value.status == 403
        kube.allow_all()
        other = fleet.add().host
        publish(kube, None, unique_service, fleet.port, [host, other])  # the API only
        # The API's word is taken once DNS has not caught up for its TTL + 1 s.
        assert wait_until(lambda: sorted(addresses(auto)) == sorted([host, other]), 15.0)
