"""A kubernetes target without a port uses the Service's first port (kuberesolver's
rule), which only the API can tell: modes "api" and "auto" follow it, mode "dns"
refuses the target."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from dnsbalance import KubernetesError, TargetError, resolve_channel
from dnsbalance._kube.slices import SliceSet, first_port
from dnsbalance.testing import FakeKubernetesAPI
from dnsbalance.testing._kubeapi.builders import endpoint_slice
from tests.kits.backends import Fleet, call_counts, demo_pb2_grpc

NS = "app"


def slice_(name: str, ports: list[tuple[str, int, str]], *hosts: str) -> dict[str, Any]:
    return endpoint_slice(name, NS, "svc", [(h, True, True, False) for h in hosts], ports)


def test_first_port_is_the_first_tcp_port_of_the_slice_whose_name_sorts_first() -> None:
    a = slice_("svc-a", [("udp", 53, "UDP"), ("grpc", 8000, "TCP"), ("metrics", 9090, "TCP")])
    b = slice_("svc-b", [("metrics", 9090, "TCP"), ("grpc", 8001, "TCP")])
    for order in itertools.permutations([a, b]):
        assert first_port(order) == "grpc"
    assert first_port([slice_("svc-x", [("", 8080, "TCP")])]) == ""
    assert first_port([slice_("svc-x", [])]) is None


def test_slice_set_without_a_port_uses_each_slices_number_for_the_first_name() -> None:
    a = slice_("svc-a", [("grpc", 8000, "TCP"), ("metrics", 9090, "TCP")], "10.0.0.1")
    b = slice_("svc-b", [("metrics", 9090, "TCP"), ("grpc", 8001, "TCP")], "10.0.0.2")
    for order in itertools.permutations([a, b]):
        slices = SliceSet(None)
        for obj in order:
            slices.upsert(obj)
        assert [ep.hostport for ep in slices.usable()] == ["10.0.0.1:8000", "10.0.0.2:8001"]
    slices.delete(a)  # now svc-b sorts first: its first port, metrics
    assert [ep.hostport for ep in slices.usable()] == ["10.0.0.2:9090"]
    slices.reset([slice_("svc-c", [("", 7000, "TCP")], "10.0.0.3")])
    assert [ep.hostport for ep in slices.usable()] == ["10.0.0.3:7000"]


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Any:
    with FakeKubernetesAPI() as api:
        yield api, api.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)


@pytest.mark.parametrize("mode", ["api", "auto"])
@pytest.mark.parametrize("form", ["kubernetes:///{svc}.app", "kubernetes://app/{svc}"])
def test_no_port_target_dials_the_first_port(
    kubeconfig: Any, fleet: Fleet, unique_service: str, mode: str, form: str
) -> None:
    kube, path = kubeconfig
    for _ in range(2):
        fleet.add()
    hosts = sorted(fleet.backends)
    kube.apply_slice(
        f"{unique_service}-a",
        NS,
        unique_service,
        endpoints=[(h, True, True, False) for h in hosts],
        ports=[("grpc", fleet.port, "TCP"), ("metrics", 9, "TCP")],
    )
    target = form.format(svc=unique_service)
    with resolve_channel(target, mode=mode, kubeconfig=path) as channel:  # type: ignore[arg-type]
        assert sorted(ep.hostport for ep in channel.endpoints) == [
            f"{h}:{fleet.port}" for h in hosts
        ]
        counts = call_counts(demo_pb2_grpc.DemoServiceStub(channel), 40)
        assert sorted(counts) == hosts


def test_no_port_target_in_mode_dns_is_refused() -> None:
    with pytest.raises(TargetError) as info:
        resolve_channel("kubernetes:///svc.app", mode="dns")
    message = str(info.value)
    assert "add a port or a port name" in message
    assert 'mode="auto" or "api"' in message
    assert info.value.part == "port"


def test_no_port_target_in_mode_auto_without_api_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(KubernetesError):
        resolve_channel("kubernetes:///svc.app", mode="auto")


def test_dns_lookups_of_a_no_port_target_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    from dnsbalance import discover
    from dnsbalance.cli.main import main

    with pytest.raises(TargetError) as info:
        discover("kubernetes:///svc.app", nameservers=["127.0.0.1:9"])
    assert "add a port or a port name" in str(info.value)
    assert main(["check", "kubernetes:///svc.app", "--mode", "dns"]) == 2
    assert "add a port or a port name" in capsys.readouterr().err


def test_aio_no_port_target_in_mode_auto(
    kubeconfig: Any, fleet: Fleet, unique_service: str
) -> None:
    import asyncio

    from dnsbalance import aio

    kube, path = kubeconfig
    fleet.add()
    (host,) = fleet.backends
    kube.apply_slice(
        f"{unique_service}-a",
        NS,
        unique_service,
        endpoints=[(host, True, True, False)],
        ports=[("grpc", fleet.port, "TCP")],
    )

    async def check() -> list[str]:
        channel = await aio.resolve_channel(f"kubernetes://app/{unique_service}", kubeconfig=path)
        try:
            return [ep.hostport for ep in channel.endpoints]
        finally:
            await channel.close()

    assert asyncio.run(check()) == [f"{host}:{fleet.port}"]
    with pytest.raises(TargetError):
        asyncio.run(aio.resolve_channel("kubernetes:///svc.app", mode="dns"))
