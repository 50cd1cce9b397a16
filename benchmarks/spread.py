"""Spread: how evenly each contender spreads calls over 10 backends.

10 backends (127.0.50.1-10, one port), 10,000 calls from 4 threads per trial (2,000
in quick mode), answers counted by the backend's name; figure: max/min calls per
backend (target for dnsbalance <= 1.05). Contenders, measured in the same run with
the trials interleaved:

- ClusterIP: a plain channel to one address (kube-proxy pins its one connection to
  one pod; here the address is a pod's, the effect is the same);
- gRPC's own ``dns://<server>/<fqdn>:<port>`` target with round_robin;
- dnsbalance, ``mode="dns"``.

Each channel is made once and warmed up (every backend answered) before the trials.
"""

from __future__ import annotations

import grpc

from dnsbalance import resolve_channel
from dnsbalance.testing import Backend

from ._common import (
    CLUSTER_IP,
    DNSBALANCE,
    NATIVE,
    ROUND_ROBIN,
    Suite,
    calls_per_backend,
    cluster_dns,
)

BLOCK = "127.0.50"
BACKENDS = 10
THREADS = 4


def run(quick: bool) -> Suite:
    suite = Suite("spread")
    trials, calls = (3, 2000) if quick else (5, 10_000)
    backends: list[Backend] = []
    channels: dict[str, grpc.Channel] = {}
    with cluster_dns() as (dns_server, label):
        suite.note(
            f"DNS server: {label}; {BACKENDS} backends on {BLOCK}.x; {calls} calls from "
            f"{THREADS} threads per trial, {trials} trials per contender, interleaved"
        )
        try:
            port = 0
            for i in range(BACKENDS):
                backend = Backend(f"{BLOCK}.{i + 1}", port).start()
                port = backend.port
                backends.append(backend)
                dns_server.add_pod("spread", "bench", backend.host)
            fqdn = f"spread.bench.svc.cluster.local:{port}"
            channels[CLUSTER_IP] = grpc.insecure_channel(backends[0].address)
            channels[NATIVE] = grpc.insecure_channel(
                f"dns://{dns_server.address}/{fqdn}", options=ROUND_ROBIN
            )
            channels[DNSBALANCE] = resolve_channel(
                f"spread.bench:{port}", nameservers=[dns_server.address], mode="dns"
            )
            for channel in channels.values():  # warm up: connect to every backend
                calls_per_backend(channel, 40 * BACKENDS, 1)
            ratios: dict[str, list[float]] = {name: [] for name in channels}
            rates: dict[str, list[float]] = {name: [] for name in channels}
            used: dict[str, list[int]] = {name: [] for name in channels}
            errors = dict.fromkeys(channels, 0)
            names = list(channels)
            for trial in range(trials):
                for name in names[trial % 3 :] + names[: trial % 3]:  # rotate the order
                    counts, failed, seconds = calls_per_backend(channels[name], calls, THREADS)
                    per_backend = [counts.get(b.name, 0) for b in backends]
                    errors[name] += failed
                    used[name].append(sum(1 for n in per_backend if n))
                    rates[name].append(calls / seconds)
                    if min(per_backend) > 0:
                        ratios[name].append(max(per_backend) / min(per_backend))
        finally:
            for channel in channels.values():
                channel.close()
            for backend in backends:
                backend.stop(0)
    for name in channels:
        target = "<= 1.05" if name == DNSBALANCE else ""
        figure = f"{name}: max/min calls per backend"
        if len(ratios[name]) == trials:
            suite.trials(
                figure,
                ratios[name],
                "x",
                target=target,
                column=name,
                summary=f"spread: max/min calls per backend ({BACKENDS} backends, 4 threads)",
            )
        else:
            suite.add(
                figure,
                None,
                "x",
                target=target,
                shown=f"unbounded: {min(used[name])} of {BACKENDS} backends got calls",
                backends_used=used[name],
                column=name,
                summary=f"spread: max/min calls per backend ({BACKENDS} backends, 4 threads)",
            )
        suite.trials(
            f"{name}: calls/s from {THREADS} threads",
            rates[name],
            "calls/s",
            note="servers in the same process: not a throughput benchmark",
        )
        suite.add(f"{name}: failed calls", errors[name], "calls", target="0")
    return suite
