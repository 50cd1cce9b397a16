"""Topology: the fraction of calls that cross zones, and how soon calls spill over.

Six real gRPC backends (127.0.90.1-6, one port), two per zone (zone-a, zone-b,
zone-c); the client runs in zone-b. One EndpointSlice shaped as the EndpointSlice
controller writes it for ``trafficDistribution: PreferClose``
(staging/src/k8s.io/endpointslice/trafficdist/trafficdist.go: every ready endpoint
gets ``hints.forZones: [{name: <its zone>}]``), the same six in cluster DNS.
Contenders, measured in the same run:

- ClusterIP with kube-proxy honouring the hints: 0 by construction, not measured.
  kube-proxy on a zone-b node (pkg/proxy/topology.go: ``topologyModeFromHints``
  returns PreferSameZone when every ready endpoint is hinted and one is hinted for
  its zone, and ``availableForTopology`` keeps only those) never sends a packet out of
  zone-b while zone-b has a ready hinted endpoint;
- gRPC's own ``dns:`` resolver with round_robin: DNS carries no zones;
- kuberesolver v3 (the real Go client, benchmarks/kuberesolver/main.go): it reads
  core/v1 Endpoints, which have no hints;
- dnsbalance ``mode="api"``, ``zone="zone-b"``.

Figures: the fraction of calls answered outside zone-b (2/3 expected for a balancer
that ignores zones, target 0 for dnsbalance while zone-b has a ready hinted
endpoint), and for dnsbalance the seconds from the slice write that leaves zone-b
without a ready endpoint (its two servers keep running) to the first call answered
in another zone, and back when zone-b is ready again (median over trials).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from dnsbalance import resolve_channel
from dnsbalance.testing import Backend, FakeKubernetesAPI

from ._common import (
    CLUSTER_IP,
    DNSBALANCE,
    KUBERESOLVER,
    NATIVE,
    ROUND_ROBIN,
    Callers,
    Recorder,
    Suite,
    calls_per_backend,
    cluster_dns,
    wait_until,
)
from ._kuberesolver import GoClient, build

NS = "bench"
SERVICE = "zoned"
BLOCK = "127.0.90"
ZONES = ("zone-a", "zone-b", "zone-c")
CLIENT_ZONE = "zone-b"
SUMMARY = "cross-zone calls (3 zones x 2 pods, client in zone-b)"
SPILL = "spill-over: seconds to other zones when zone-b empties"


def zone_of(host: str) -> str:
    return ZONES[(int(host.rsplit(".", 1)[1]) - 1) // 2]


def prefer_close_slice(hosts: list[str], ready: set[str], port: int) -> dict[str, Any]:
    """The slice as trafficdist's preferCloseHeuristic writes it (hints on ready ones)."""
    endpoints = []
    for i, host in enumerate(hosts):
        up = host in ready
        endpoint: dict[str, Any] = {
            "addresses": [host],
            "conditions": {"ready": up, "serving": up, "terminating": False},
            "zone": zone_of(host),
            "nodeName": f"node-{zone_of(host)[-1]}{i % 2 + 1}",
        }
        if up:
            endpoint["hints"] = {"forZones": [{"name": zone_of(host)}]}
        endpoints.append(endpoint)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{SERVICE}-close",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": SERVICE},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}],
    }


def crossed(counts: dict[str, int]) -> tuple[float, int]:
    total = sum(counts.values())
    out = sum(n for host, n in counts.items() if zone_of(host) != CLIENT_ZONE)
    return (out / total if total else 0.0), total


def run(quick: bool) -> Suite:
    suite = Suite("topology")
    calls, trials = (600, 3) if quick else (6000, 10)
    backends: list[Backend] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-topology-") as tmp,
        cluster_dns() as (dns_server, label),
        FakeKubernetesAPI() as kube,
    ):
        kubeconfig = kube.write_kubeconfig(Path(tmp) / "kubeconfig", namespace=NS)
        try:
            port = 0
            for i in range(6):
                backend = Backend(f"{BLOCK}.{i + 1}", port).start()
                port = backend.port
                backends.append(backend)
                dns_server.add_pod(SERVICE, NS, backend.host)
            hosts = [b.host for b in backends]
            kube.put(prefer_close_slice(hosts, set(hosts), port))
            suite.note(
                f"DNS server: {label}; 6 backends on {BLOCK}.x, two per zone; the client "
                f"in {CLIENT_ZONE}; {calls} calls from 2 threads per contender; "
                f"{trials} spill-over trials"
            )
            suite.add(
                "ClusterIP + kube-proxy hints: calls out of zone",
                0.0,
                "fraction",
                shown="0 (by construction: pkg/proxy/topology.go)",
                column=CLUSTER_IP,
                summary=SUMMARY,
                cell="0 (kube-proxy's rule, not measured)",
            )
            _native(suite, dns_server, port, calls)
            _kuberesolver(suite, kube, port, calls)
            _dnsbalance(suite, kube, kubeconfig, hosts, port, calls, trials)
        finally:
            for backend in backends:
                backend.stop(0)
    return suite


def _native(suite: Suite, dns_server: Any, port: int, calls: int) -> None:
    fqdn = f"{SERVICE}.{NS}.svc.cluster.local:{port}"
    channel = grpc.insecure_channel(f"dns://{dns_server.address}/{fqdn}", options=ROUND_ROBIN)
    try:
        calls_per_backend(channel, 60, 1)  # warm up: connect to every backend
        counts, failed, _ = calls_per_backend(channel, calls, 2)
    finally:
        channel.close()
    fraction, total = crossed(counts)
    suite.add(
        "gRPC dns: + round_robin: calls out of zone",
        fraction,
        "fraction",
        target="",
        calls=total,
        failed=failed,
        column=NATIVE,
        summary=SUMMARY,
    )


def _kuberesolver(suite: Suite, kube: FakeKubernetesAPI, port: int, calls: int) -> None:
    binary, why = build()
    if binary is None:
        suite.note(f"kuberesolver column skipped: {why}")
        return
    recorder = Recorder()
    target = f"kubernetes:///{SERVICE}.{NS}:{port}"
    client = GoClient(binary, kube.url, target, recorder, callers=2, interval_ms=2, limit=120)
    with client:
        wait_until(lambda: len(recorder.first) == 6, 10.0)
        since = time.monotonic()
        wait_until(lambda: len(recorder.window(since, time.monotonic() + 1)) >= calls, 60.0, 0.05)
        got = recorder.window(since, time.monotonic() + 1)
    counts: dict[str, int] = {}
    for call in got:
        if call.backend:
            counts[call.backend] = counts.get(call.backend, 0) + 1
    fraction, total = crossed(counts)
    suite.add(
        "kuberesolver v3: calls out of zone",
        fraction,
        "fraction",
        calls=total,
        failed=sum(1 for c in got if c.error),
        column=KUBERESOLVER,
        summary=SUMMARY,
    )


def _dnsbalance(
    suite: Suite,
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    hosts: list[str],
    port: int,
    calls: int,
    trials: int,
) -> None:
    channel = resolve_channel(
        f"{SERVICE}.{NS}:grpc", mode="api", kubeconfig=kubeconfig, zone=CLIENT_ZONE
    )
    zone_b = {h for h in hosts if zone_of(h) == CLIENT_ZONE}
    spill: list[float] = []
    back: list[float] = []
    try:
        counts, failed, _ = calls_per_backend(channel, calls, 2)
        fraction, total = crossed(counts)
        suite.add(
            "dnsbalance: calls out of zone",
            fraction,
            "fraction",
            target="0",
            calls=total,
            failed=failed,
            rule=channel.topology.rule if channel.topology else None,
            column=DNSBALANCE,
            summary=SUMMARY,
        )
        recorder = Recorder()
        with Callers(channel, recorder, threads=2, rate=200.0, limit=300, name="topology"):
            for _ in range(trials):
                written = time.monotonic()
                kube.put(prefer_close_slice(hosts, set(hosts) - zone_b, port))
                spill.append(_first_out(recorder, written, lambda h: zone_of(h) != CLIENT_ZONE))
                written = time.monotonic()
                kube.put(prefer_close_slice(hosts, set(hosts), port))
                back.append(_first_out(recorder, written, lambda h: zone_of(h) == CLIENT_ZONE))
                wait_until(lambda: {ep.address for ep in channel.endpoints} == zone_b, 5.0)
                time.sleep(0.2)
        errors = sum(1 for c in recorder.calls if c.error)
    finally:
        channel.close()
    suite.trials(
        "dnsbalance: seconds from the slice write to the first call in another zone",
        spill,
        "s",
        target="< 1",
        column=DNSBALANCE,
        summary=SPILL,
    )
    suite.trials(
        "dnsbalance: seconds from zone-b ready again to its first call",
        back,
        "s",
        target="< 1",
    )
    suite.add("dnsbalance: failed calls during the spill-over trials", errors, "calls", target="0")


def _first_out(recorder: Recorder, since: float, where: Any) -> float:
    """Seconds from ``since`` to the first call that started after it and was answered by
    a backend ``where`` accepts (10 s at most)."""

    def found() -> float | None:
        for call in recorder.window(since, time.monotonic() + 1):
            if call.backend and where(call.backend):
                return call.start + call.seconds - since
        return None

    wait_until(lambda: found() is not None, 10.0)
    return found() or 10.0
