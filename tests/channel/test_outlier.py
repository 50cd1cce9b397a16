"""``outlier_detection=`` end to end: a backend that stays up (and in DNS) but fails its
calls is ejected by grpc's own policy, in both drivers; ejection starts afresh on a
rebuild (documented); health checking still works under it. Real grpc backends on
127.0.N.x failing on demand (``Backend.fail_every``), the embedded DNS server.

Also run by the lower-bounds step of ``scripts/check``: grpcio 1.63, the declared
minimum, must accept and enforce the policy."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import grpc
import pytest

import dnsbalance.aio
from dnsbalance import resolve_channel
from dnsbalance.testing import Backend, DNSResponder
from tests.kits.backends import Fleet, demo_pb2, demo_pb2_grpc, new_fleet

QUIET = 200  # calls in a row without a failure: the failing backend is ejected


def start(dns: DNSResponder, fleet: Fleet, service: str, n: int, **kwargs: Any) -> list[Backend]:
    backends = [fleet.add(**kwargs) for _ in range(n)]
    for backend in backends:
        dns.add_pod(service, "ns", backend.host)
    return backends


def open_channel(dns: DNSResponder, fleet: Fleet, service: str, **kwargs: Any) -> Any:
    return resolve_channel(
        f"{service}.ns:{fleet.port}", nameservers=[dns.address], mode="dns", **kwargs
    )


def calls(stub: demo_pb2_grpc.DemoServiceStub, n: int) -> tuple[Counter[str], int]:
    """``n`` calls: answers per backend, and failures."""
    seen: Counter[str] = Counter()
    codes: set[grpc.StatusCode] = set()
    failed = 0
    for _ in range(n):
        try:
            seen[stub.Demo(demo_pb2.Empty(), timeout=5).value] += 1
        except grpc.RpcError as exc:
            codes.add(exc.code())
            failed += 1
    assert codes <= {grpc.StatusCode.UNAVAILABLE}, codes
    return seen, failed


def until_quiet(stub: demo_pb2_grpc.DemoServiceStub, *, seconds: float = 20.0) -> int:
    """Calls until QUIET succeed in a row (bounded: 40,000 calls or ``seconds``);
    returns how many failed before that."""
    failed = in_a_row = 0
    deadline = time.monotonic() + seconds
    for _ in range(40_000):
        if in_a_row >= QUIET or time.monotonic() > deadline:
            break
        try:
            stub.Demo(demo_pb2.Empty(), timeout=5)
        except grpc.RpcError:
            failed += 1
            in_a_row = 0
        else:
            in_a_row += 1
        time.sleep(0.001)  # about 1,000 calls a second: each 1 s sweep has enough calls
    assert in_a_row >= QUIET, f"still failing after {seconds} s ({failed} failed)"
    return failed


@pytest.mark.parametrize("every", [1, 2], ids=["every-call", "every-other-call"])
def test_a_ready_backend_that_fails_is_ejected_and_gets_no_more_calls(
    embedded_dns: DNSResponder, fleet: Fleet, unique_service: str, every: int
) -> None:
    bad, *good = start(embedded_dns, fleet, unique_service, 3)
    bad.fail_every = every
    with open_channel(embedded_dns, fleet, unique_service, outlier_detection=True) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert until_quiet(stub) > 0  # it failed some calls before the first sweep
        before = bad.calls
        seen, failed = calls(stub, 300)
        assert (failed, bad.calls - before) == (0, 0)
        assert set(seen) == {b.host for b in good}
        assert len(channel.endpoints) == 3  # still in DNS: ejection is grpc's, not ours


def test_without_it_round_robin_keeps_sending_a_failing_backend_its_share(
    embedded_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    bad, *_ = start(embedded_dns, fleet, unique_service, 3)
    bad.fail_every = 1
    with open_channel(embedded_dns, fleet, unique_service) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        calls(stub, 30)  # until round_robin has every connection up
        _, failed = calls(stub, 900)
    assert 290 <= failed <= 310  # its third, call after call


def test_a_rebuild_starts_ejection_afresh(
    embedded_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """The policy's state lives in the grpc channel; a rebuild is a new grpc channel, so
    the failing backend is called again until the next sweep (README: what it costs)."""
    bad, *_ = start(embedded_dns, fleet, unique_service, 3)
    bad.fail_every = 1
    with open_channel(embedded_dns, fleet, unique_service, outlier_detection=True) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        until_quiet(stub)
        channel.rebuild()
        _, failed = calls(stub, 30)
        assert failed >= 1  # called again: nothing ejected in the new channel
        assert until_quiet(stub) >= 0  # and ejected again at a sweep
        before = bad.calls
        assert calls(stub, 100)[1] == 0
        assert bad.calls == before


def test_health_checking_still_works_under_it(
    embedded_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    not_serving, serving = start(embedded_dns, fleet, unique_service, 2, health=True)
    not_serving.set_serving(False)
    with open_channel(
        embedded_dns, fleet, unique_service, health_check=True, outlier_detection=True
    ) as channel:
        seen, failed = calls(demo_pb2_grpc.DemoServiceStub(channel), 100)
    assert (dict(seen), failed) == ({serving.host: 100}, 0)
    assert not_serving.calls == 0


def test_a_mapping_configures_it(
    embedded_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    bad, *_ = start(embedded_dns, fleet, unique_service, 3)
    bad.fail_every = 1
    config = {
        "interval": 0.5,
        "baseEjectionTime": "30s",
        "failurePercentageEjection": {"threshold": 90, "minimumHosts": 3, "requestVolume": 5},
    }
    with open_channel(embedded_dns, fleet, unique_service, outlier_detection=config) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        until_quiet(stub)
        before = bad.calls
        assert calls(stub, 100)[1] == 0
        assert bad.calls == before


def test_aio_ejects_a_failing_backend(embedded_dns: DNSResponder, unique_service: str) -> None:
    fleet = new_fleet()  # sync servers: the client is what is under test
    try:
        bad, *good = start(embedded_dns, fleet, unique_service, 3)
        bad.fail_every = 1

        async def main() -> tuple[int, Counter[str]]:
            async with await dnsbalance.aio.resolve_channel(
                f"{unique_service}.ns:{fleet.port}",
                nameservers=[embedded_dns.address],
                mode="dns",
                outlier_detection=True,
            ) as channel:
                stub = demo_pb2_grpc.DemoServiceStub(channel)
                failed = in_a_row = 0
                deadline = time.monotonic() + 20
                for _ in range(40_000):  # bounded: 40,000 calls or 20 s
                    if in_a_row >= QUIET or time.monotonic() > deadline:
                        break
                    try:
                        await stub.Demo(demo_pb2.Empty(), timeout=5)
                    except grpc.RpcError:
                        failed += 1
                        in_a_row = 0
                    else:
                        in_a_row += 1
                    await asyncio.sleep(0.001)
                assert in_a_row >= QUIET, failed
                seen: Counter[str] = Counter()
                for _ in range(200):
                    seen[(await stub.Demo(demo_pb2.Empty(), timeout=5)).value] += 1
                return failed, seen

        before = bad.calls
        failed, seen = asyncio.run(main())
        assert failed > 0
        assert set(seen) == {b.host for b in good}
        assert bad.calls - before == failed  # every call it got failed, none after
    finally:
        fleet.close()
