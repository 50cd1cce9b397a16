"""dnsbalance.aio.resolve_channel(): the sync tests' mirror, with grpc.aio servers and BIND.

Each test runs its own event loop (asyncio.run), so nothing leaks between tests.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

import dnsbalance.aio
from dnsbalance import ClosedError, Endpoint
from dnsbalance.aio import BalancedChannel
from dnsbalance.testing import FakeKubernetesAPI
from tests.kits.backends import AioFleet, demo_pb2, demo_pb2_grpc, new_aio_fleet


def run(test: Callable[[AioFleet], Awaitable[None]]) -> None:
    async def main() -> None:
        fleet = new_aio_fleet()
        try:
            await test(fleet)
        finally:
            await fleet.close()

    asyncio.run(main())


async def start_fleet(dns: Any, fleet: AioFleet, service: str, n: int) -> None:
    for _ in range(n):
        dns.add_pod(service, "ns", (await fleet.add()).host)


async def open_channel(dns: Any, fleet: AioFleet, service: str, **kw: Any) -> BalancedChannel:
    kw.setdefault("poll_interval", 0.5)
    kw.setdefault("mode", "dns")
    return await dnsbalance.aio.resolve_channel(
        f"{service}.ns:{fleet.port}", nameservers=[dns.address], **kw
    )


async def counts(stub: demo_pb2_grpc.DemoServiceStub, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        seen[(await stub.Demo(demo_pb2.Empty(), timeout=5)).value] += 1
    return seen


async def eventually(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def test_calls_spread_evenly(bind_server: Any, unique_service: str) -> None:
    async def test(fleet: AioFleet) -> None:
        await start_fleet(bind_server, fleet, unique_service, 3)
        async with await open_channel(bind_server, fleet, unique_service) as channel:
            seen = await counts(demo_pb2_grpc.DemoServiceStub(channel), 3000)
        assert sorted(seen) == sorted(fleet.backends)
        assert all(abs(n - 1000) <= 20 for n in seen.values()), seen

    run(test)


def test_scale_up_within_poll_interval_with_one_new_connection(
    bind_server: Any, unique_service: str
) -> None:
    async def test(fleet: AioFleet) -> None:
        await start_fleet(bind_server, fleet, unique_service, 3)
        changes: list[tuple[tuple[Endpoint, ...], tuple[Endpoint, ...]]] = []
        channel = await open_channel(
            bind_server,
            fleet,
            unique_service,
            poll_interval=1.0,
            on_change=lambda old, new: changes.append((old, new)),
        )
        try:
            stub = demo_pb2_grpc.DemoServiceStub(channel)
            await counts(stub, 300)
            new = await fleet.add()
            added = time.monotonic()
            bind_server.add_pod(unique_service, "ns", new.host)
            for _ in range(2000):  # bounded: 2000 calls or 3 s
                await stub.Demo(demo_pb2.Empty(), timeout=5)
                if new.calls or time.monotonic() - added > 3.0:
                    break
                await asyncio.sleep(0.002)
            assert new.calls > 0
            assert time.monotonic() - added <= 1.0 + 1.0
            assert set(await counts(stub, 400)) == set(fleet.backends)
            assert channel.generation == 1
            assert len(changes) == 1
        finally:
            await channel.close()
        assert [b.connections for b in fleet.backends.values()] == [1, 1, 1, 1]

    run(test)


def test_rolling_replacement_under_8_tasks_drops_no_call(
    bind_server: Any, unique_service: str
) -> None:
    async def test(fleet: AioFleet) -> None:
        await start_fleet(bind_server, fleet, unique_service, 3)
        old_hosts = list(fleet.backends)
        errors: list[BaseException] = []
        done = asyncio.Event()
        async with await open_channel(bind_server, fleet, unique_service) as channel:
            stub = demo_pb2_grpc.DemoServiceStub(channel)

            async def caller() -> int:
                n = 0
                deadline = time.monotonic() + 60
                while not done.is_set() and time.monotonic() < deadline and n < 100_000:
                    try:
                        await stub.Demo(demo_pb2.Empty(), timeout=5)
                        n += 1
                    except Exception as exc:
                        errors.append(exc)
                return n

            callers = [asyncio.create_task(caller()) for _ in range(8)]
            try:
                for old in old_hosts:
                    new = await fleet.add()
                    bind_server.add_pod(unique_service, "ns", new.host)
                    assert await eventually(lambda b=new: b.calls > 0, 3.0)  # type: ignore[misc]
                    # Leave DNS, let clients move off, then stop gracefully.
                    bind_server.remove_pod(unique_service, "ns", old)
                    assert await eventually(
                        lambda h=old: h not in {e.address for e in channel.endpoints},  # type: ignore[misc]
                        3.0,
                    )
                    # The drain window: stop once the pod has had no call for 0.2 s.
                    for _ in range(15):
                        seen = fleet.calls().get(old, 0)
                        await asyncio.sleep(0.2)
                        if fleet.calls().get(old, 0) == seen:
                            break
                    await fleet.stop(old, grace=2.0)
                before = fleet.calls()
                await asyncio.sleep(0.3)
                after = fleet.calls()
            finally:
                done.set()
                total = sum(await asyncio.gather(*callers))
        assert errors == []
        assert total > 1000
        assert {h for h in fleet.backends if after[h] > before[h]} == set(fleet.backends) - set(
            old_hosts
        )

    run(test)


def test_stream_across_rebuild_and_every_call_shape(embedded_dns: Any, unique_service: str) -> None:
    async def test(fleet: AioFleet) -> None:
        await start_fleet(embedded_dns, fleet, unique_service, 2)
        async with await open_channel(
            embedded_dns, fleet, unique_service, poll_interval=0.2
        ) as channel:
            stub = demo_pb2_grpc.DemoServiceStub(channel)
            stream = stub.DemoStream(demo_pb2.StreamRequest(count=20, interval_ms=50), timeout=10)
            responses = aiter(stream)
            first = await anext(responses)
            embedded_dns.add_pod(unique_service, "ns", (await fleet.add()).host)
            assert await eventually(lambda: channel.generation == 1, 3.0)
            rest = [r.value async for r in responses]
            name = first.value.split(":")[0]
            assert [first.value, *rest] == [f"{name}:{i}" for i in range(20)]
            values = [demo_pb2.Response(value=v) for v in "abc"]
            assert (await stub.Collect(iter(values))).value.endswith(":a,b,c")
            echoed = [r.value async for r in stub.Chat(iter(values))]
            assert [v.split(":")[1] for v in echoed] == ["a", "b", "c"]
            await channel.rebuild()
            assert channel.generation == 2
            assert (await stub.Demo(demo_pb2.Empty())).value in fleet.backends
            assert channel.get_state() == grpc.ChannelConnectivity.READY
            await channel.channel_ready()

    run(test)


def test_close_during_in_flight_calls(embedded_dns: Any, unique_service: str) -> None:
    async def test(fleet: AioFleet) -> None:
        await start_fleet(embedded_dns, fleet, unique_service, 2)
        channel = await open_channel(embedded_dns, fleet, unique_service)
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        streams = [
            stub.DemoStream(demo_pb2.StreamRequest(count=100, interval_ms=100), timeout=30)
            for _ in range(4)
        ]
        for stream in streams:
            assert (await stream.read()).value
        started = time.monotonic()
        await channel.close()
        assert time.monotonic() - started < 3.0
        for stream in streams:
            with pytest.raises(asyncio.CancelledError):
                await stream.read()
        with pytest.raises(ClosedError):
            stub.Demo(demo_pb2.Empty())
        await channel.close()  # idempotent
        ours = [t for t in asyncio.all_tasks() if t.get_name().startswith("dnsbalance-")]
        assert ours == []

    run(test)


def test_close_with_grace_lets_calls_finish(embedded_dns: Any, unique_service: str) -> None:
    async def test(fleet: AioFleet) -> None:
        await start_fleet(embedded_dns, fleet, unique_service, 1)
        channel = await open_channel(embedded_dns, fleet, unique_service)
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        stream = stub.DemoStream(demo_pb2.StreamRequest(count=5, interval_ms=50), timeout=10)
        responses = aiter(stream)
        assert (await anext(responses)).value
        closing = asyncio.create_task(channel.close(grace=5.0))
        assert len([r async for r in responses]) == 4
        await closing

    run(test)


def test_api_mode(unique_service: str, tmp_path: Path) -> None:
    async def test(fleet: AioFleet) -> None:
        with FakeKubernetesAPI() as kube:
            kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="app")
            for _ in range(2):
                await fleet.add()
            ports = [("grpc", fleet.port, "TCP")]
            kube.apply_slice(
                f"{unique_service}-a",
                "app",
                unique_service,
                endpoints=list(fleet.backends),
                ports=ports,
            )
            async with await dnsbalance.aio.resolve_channel(
                f"{unique_service}.app:grpc", kubeconfig=kubeconfig, mode="api"
            ) as channel:
                stub = demo_pb2_grpc.DemoServiceStub(channel)
                assert set(await counts(stub, 20)) == set(fleet.backends)
                new = await fleet.add()
                kube.apply_slice(
                    f"{unique_service}-a",
                    "app",
                    unique_service,
                    endpoints=list(fleet.backends),
                    ports=ports,
                )
                assert await eventually(lambda: len(channel.endpoints) == 3, 3.0)
                await counts(stub, 30)
                assert new.calls > 0
            assert [b.connections for b in fleet.backends.values()] == [1, 1, 1]

    run(test)


def test_unclosed_channel_warns(embedded_dns: Any, unique_service: str) -> None:
    async def test(fleet: AioFleet) -> None:
        await start_fleet(embedded_dns, fleet, unique_service, 1)
        channel = await open_channel(embedded_dns, fleet, unique_service)
        closer = channel.close
        with pytest.warns(ResourceWarning, match="unclosed"):
            channel.__del__()
        await closer()  # then close it for real, so the loop ends clean
        del channel
        gc.collect()

    run(test)
