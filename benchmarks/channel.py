"""BalancedChannel against a raw grpc channel to the same backends, in one run.

- Overhead: calls per second through BalancedChannel / through a raw round_robin
  ``dns:`` channel, interleaved A/B trials (target >= 0.98).
- Churn: new TCP connections opened per single scale-up (target 1), counted
  server-side as distinct client peers.
- The API modes' mechanism, measured both ways: a ``dns://`` target kept identical
  and answered by the in-process DNS (what dnsbalance does), against an explicit
  ``ipv4:`` address list rebuilt on each change.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio

import dnsbalance.aio
from dnsbalance import resolve_channel
from dnsbalance.testing import Backend

from ._common import DNSBALANCE, Suite, cluster_dns, median, spread

ROUND_ROBIN = (("grpc.service_config", '{"loadBalancingConfig":[{"round_robin":{}}]}'),)

METHOD = "/demo.DemoService/Demo"


def _cell(ratios: list[float]) -> str:
    """The median ratio with its min-max over the trials."""
    return f"{median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"


def _calls_per_second(channel: grpc.Channel, calls: int) -> float:
    demo = channel.unary_unary(METHOD)
    start = time.perf_counter()
    for _ in range(calls):
        demo(b"", timeout=5)
    return calls / (time.perf_counter() - start)


def interleaved_ratio(a: grpc.Channel, b: grpc.Channel, calls: int, block: int = 100) -> float:
    """Calls/s of ``a`` divided by calls/s of ``b``, from alternating blocks of calls, so
    the machine's drift and noise hit both alike."""
    call_a, call_b = a.unary_unary(METHOD), b.unary_unary(METHOD)
    spent = {"a": 0.0, "b": 0.0}
    for i in range(max(1, calls // block)):
        order = (("a", call_a), ("b", call_b)) if i % 2 else (("b", call_b), ("a", call_a))
        for name, call in order:
            start = time.perf_counter()
            for _ in range(block):
                call(b"", timeout=5)
            spent[name] += time.perf_counter() - start
    return spent["b"] / spent["a"]


def run(quick: bool) -> Suite:
    suite = Suite("channel")
    trials, calls = (3, 1000) if quick else (15, 4000)
    with cluster_dns() as (dns_server, label):
        suite.notes.append(f"DNS server: {label}; backends: grpc servers on 127.0.30.x")
        backends: list[Backend] = []
        port = 0
        try:
            for i in range(3):
                backend = Backend(f"127.0.30.{i + 1}", port).start()
                port = backend.port
                backends.append(backend)
                dns_server.add_pod("bench", "ns", backend.host)
            with resolve_channel(
                f"bench.ns:{port}", nameservers=[dns_server.address], mode="dns"
            ) as balanced:
                raw = grpc.insecure_channel(
                    balanced.target,
                    options=(
                        ("grpc.service_config", '{"loadBalancingConfig":[{"round_robin":{}}]}'),
                    ),
                )
                try:
                    _calls_per_second(balanced, 200)
                    _calls_per_second(raw, 200)
                    ratios = [interleaved_ratio(balanced, raw, calls) for _ in range(trials)]
                    raw_rate = _calls_per_second(raw, calls)
                    balanced_rate = _calls_per_second(balanced, calls)
                    slots, key = balanced._slots, balanced.unary_unary(METHOD)._key
                    start = time.perf_counter()
                    for _ in range(100_000):
                        slot, _ = slots.acquire_call(key)
                        slots.release(slot)
                    dispatch_us = (time.perf_counter() - start) / 100_000 * 1e6
                finally:
                    raw.close()
                suite.add(
                    "calls/s ratio BalancedChannel / raw channel (median)",
                    median(ratios),
                    "x",
                    target=">= 0.98",
                    trials=trials,
                    calls_per_trial=calls,
                    ratios=spread(ratios),
                    column=DNSBALANCE,
                    summary="overhead: calls/s through dnsbalance / raw grpc channel, sync",
                    cell=_cell(ratios),
                )
                suite.add("raw channel calls/s (one run)", raw_rate, "calls/s")
                suite.add("BalancedChannel calls/s (one run)", balanced_rate, "calls/s")
                suite.add(
                    "BalancedChannel dispatch cost per call (lock, count, lookup)",
                    dispatch_us,
                    "us",
                    per_call_us=1e6 / raw_rate,
                )

            opened = []
            for trial in range(2 if quick else 5):
                service = f"scale-{trial}"
                fleet = [Backend(f"127.0.{31 + trial}.{i + 1}", 0) for i in range(1)]
                fleet_port = fleet[0].port
                fleet += [Backend(f"127.0.{31 + trial}.{i + 2}", fleet_port) for i in range(2)]
                for b in fleet:
                    b.start()
                    dns_server.add_pod(service, "ns", b.host)
                try:
                    with resolve_channel(
                        f"{service}.ns:{fleet_port}",
                        nameservers=[dns_server.address],
                        mode="dns",
                        poll_interval=0.2,
                    ) as channel:
                        demo = channel.unary_unary(METHOD)
                        for _ in range(30):
                            demo(b"", timeout=5)
                        before = sum(b.connections for b in fleet)
                        new = Backend(f"127.0.{31 + trial}.9", fleet_port).start()
                        fleet.append(new)
                        dns_server.add_pod(service, "ns", new.host)
                        deadline = time.monotonic() + 5
                        while channel.generation < 1 and time.monotonic() < deadline:
                            time.sleep(0.01)
                        for _ in range(80):
                            demo(b"", timeout=5)
                        opened.append(sum(b.connections for b in fleet) - before)
                finally:
                    for b in fleet:
                        b.stop(0)
            aio_ratios = asyncio.run(_aio_ratios(dns_server.address, port, trials, calls))
            suite.add(
                "aio: calls/s ratio BalancedChannel / raw grpc.aio channel (median)",
                median(aio_ratios),
                "x",
                target=">= 0.98",
                trials=trials,
                calls_per_trial=calls,
                ratios=spread(aio_ratios),
                column=DNSBALANCE,
                summary="overhead: the same for dnsbalance.aio / raw grpc.aio channel",
                cell=_cell(aio_ratios),
            )
            local_dns, address_list = _api_mechanisms(2 if quick else 5)
            suite.add(
                "API mode, local DNS target: new connections per scale-up 3 -> 4 (median)",
                median(local_dns),
                "connections",
                target="1",
                trials=local_dns,
            )
            suite.add(
                "explicit ipv4: address list: new connections per scale-up 3 -> 4 (median)",
                median(address_list),
                "connections",
                trials=address_list,
            )
            suite.add(
                "new connections per single scale-up (median)",
                median(opened),
                "connections",
                target="1",
                trials=opened,
            )
        finally:
            for backend in backends:
                backend.stop(0)
    return suite


def _api_mechanisms(trials: int) -> tuple[list[int], list[int]]:
    """New connections per 3 -> 4 scale-up: mode "api" (the local DNS target) against
    rebuilding an explicit address list, as grpcio gives them."""
    import tempfile
    from pathlib import Path

    from dnsbalance.testing import FakeKubernetesAPI

    local_dns: list[int] = []
    address_list: list[int] = []
    for trial in range(trials):
        block = 40 + trial
        fleet = [Backend(f"127.0.{block}.1", 0).start()]
        port = fleet[0].port
        fleet += [Backend(f"127.0.{block}.{i}", port).start() for i in (2, 3, 4)]
        hosts = [b.host for b in fleet]
        try:
            with FakeKubernetesAPI() as kube, tempfile.TemporaryDirectory() as tmp:
                config = kube.write_kubeconfig(Path(tmp) / "kubeconfig", namespace="bench")
                ports = [("grpc", port, "TCP")]
                kube.apply_slice("api-a", "bench", "api", endpoints=hosts[:3], ports=ports)
                with resolve_channel("api.bench:grpc", kubeconfig=config, mode="api") as channel:
                    demo = channel.unary_unary(METHOD)
                    for _ in range(30):
                        demo(b"", timeout=5)
                    before = sum(b.connections for b in fleet)
                    kube.apply_slice("api-a", "bench", "api", endpoints=hosts, ports=ports)
                    deadline = time.monotonic() + 5
                    while channel.generation < 1 and time.monotonic() < deadline:
                        time.sleep(0.01)
                    for _ in range(80):
                        demo(b"", timeout=5)
                    local_dns.append(sum(b.connections for b in fleet) - before)
            for b in fleet:  # fresh counters: new backends for the other mechanism
                b.stop(0)
            fleet = [Backend(f"127.0.{block}.{i}", port).start() for i in (1, 2, 3, 4)]
            old = grpc.insecure_channel(
                "ipv4:" + ",".join(f"{h}:{port}" for h in hosts[:3]), options=ROUND_ROBIN
            )
            new = grpc.insecure_channel(
                "ipv4:" + ",".join(f"{h}:{port}" for h in hosts), options=ROUND_ROBIN
            )
            try:
                for _ in range(30):
                    old.unary_unary(METHOD)(b"", timeout=5)
                before = sum(b.connections for b in fleet)
                for _ in range(80):
                    new.unary_unary(METHOD)(b"", timeout=5)
                address_list.append(sum(b.connections for b in fleet) - before)
            finally:
                old.close()
                new.close()
        finally:
            for b in fleet:
                b.stop(0)
    return local_dns, address_list


async def _aio_ratios(nameserver: str, port: int, trials: int, calls: int) -> list[float]:
    """The asyncio twin of :func:`interleaved_ratio`, on one event loop."""
    balanced = await dnsbalance.aio.resolve_channel(
        f"bench.ns:{port}", nameservers=[nameserver], mode="dns"
    )
    raw = grpc.aio.insecure_channel(balanced.target, options=ROUND_ROBIN)
    try:
        call_a, call_b = balanced.unary_unary(METHOD), raw.unary_unary(METHOD)
        for call in (call_a, call_b):
            for _ in range(200):
                await call(b"", timeout=5)
        ratios = []
        for _ in range(trials):
            spent = {"a": 0.0, "b": 0.0}
            for i in range(max(1, calls // 100)):
                order = (("a", call_a), ("b", call_b)) if i % 2 else (("b", call_b), ("a", call_a))
                for name, call in order:
                    start = time.perf_counter()
                    for _ in range(100):
                        await call(b"", timeout=5)
                    spent[name] += time.perf_counter() - start
            ratios.append(spent["b"] / spent["a"])
        return ratios
    finally:
        await raw.close()
        await balanced.close()
