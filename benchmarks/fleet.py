"""Fleet: what each client costs, measured here, multiplied out to a fleet.

Measured on this machine, with FakeKubernetesAPI (the official client over HTTP), the
embedded DNS responder (it counts the messages it receives, UDP and TCP) and real grpc
servers, all in this process except where said:

- **API requests per channel**: N channels in mode "api" following one Service, without
  sharing (each with its own kubeconfig file: separate identities, which is also how
  every channel behaved before issue 25) and with sharing (one kubeconfig); lists and
  watches counted on the fake's request log.
- **Bytes per slice event**: the watch line of a MODIFIED EndpointSlice of 100 endpoints
  (the controller's largest slice), shaped as the EndpointSlice controller writes it
  (targetRef, nodeName, zone, conditions, owner reference, one managedFields entry), as
  the fake sends it. A real API server's object is of the same shape and size.
- **DNS messages per poll** of a Service of 1,000 pods (A over TCP: it does not fit in
  UDP; AAAA), through a poller's own lookup, and per poll interval for N mode "dns"
  channels without sharing (N Services) and with sharing (one Service).
- **RSS and CPU per idle channel**, mode "auto" (the default: a watch, a DNS poller and
  a merge thread), poll 5 s, not connected, each following a Service of 1,000 pods (10
  slices of 100 in the API, 1,000 A records in DNS): N channels without sharing (N Services, N
  kubeconfigs) and with (one of each). RSS is this process's; CPU is that of the
  ``dnsbalance-*`` threads only (the fake API and the DNS responder run in this
  process too).
- **Connections per channel**: c channels in one process to one Service of 10 pods,
  client-side TCP connections counted in /proc/net/tcp; and a plain ``grpc`` channel.
- **RSS per connection**: one channel connected to 200 pods, served by one grpc server
  in another process listening on 200 addresses, against one connected to 10 pods.

Multiplied (``fleet.md``): 1,000 client pods x 4 processes x 5 upstream Services of
1,000 pods, with the assumptions written in the table. Figures taken from source code
rather than measured (kuberesolver v6's resync, the API server's watch timeout,
dnsbalance's own watch timeout) and modelled ones (subsetting, slice writes per pod
replaced, nodes) are marked so.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

import dnsbalance
from dnsbalance._dns.sync import make_resolver, poll_lookup
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI, Pod

from ._common import (
    METHOD,
    Suite,
    display,
    median,
    process_status,
    thread_cpu,
    wait_until,
)
from .fleet_model import Measured, table
from .scale import _ManyAddresses

NS = "fleet"
RESULTS = Path(__file__).resolve().parent / "results"
POLL = 5.0
WIDE = 200  # pods of the Service one channel connects to, for RSS per connection
WIDE_HOSTS = [f"127.0.{70 + i // 250}.{i % 250 + 1}" for i in range(WIDE)]
NARROW_HOSTS = [f"127.0.74.{i + 1}" for i in range(10)]
SERVICE_LABEL = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"
OWNER_UID = "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"
THOUSAND = [f"127.0.{80 + i // 250}.{i % 250 + 1}" for i in range(1000)]

SERVER = """
import sys
from concurrent.futures import ThreadPoolExecutor
import grpc
hosts = sys.argv[1:]
server = grpc.server(ThreadPoolExecutor(4), options=(("grpc.so_reuseport", 0),))
handler = grpc.unary_unary_rpc_method_handler(lambda request, context: b"")
server.add_generic_rpc_handlers(
    (grpc.method_handlers_generic_handler("demo.DemoService", {"Demo": handler}),)
)
port = server.add_insecure_port(f"{hosts[0]}:0")
for host in hosts[1:]:
    if not server.add_insecure_port(f"{host}:{port}"):
        sys.exit(f"could not bind {host}:{port}")
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop(0)
"""


def run(quick: bool, out: Path = RESULTS) -> Suite:
    suite = Suite("fleet")
    n = 10 if quick else 40
    m = Measured()
    with FakeKubernetesAPI() as kube, DNSResponder() as dns, tempfile.TemporaryDirectory() as tmp:
        _api_requests(suite, m, kube, Path(tmp), n)
        _slice_event_bytes(suite, m, kube)
        _dns_messages(suite, m, dns, n, window=3.0 if quick else 10.0)
        _idle(suite, m, kube, dns, Path(tmp), n, window=6.0 if quick else 60.0)
        _connections(suite, m, dns)
    _connection_rss(suite, m, quick)
    rows, notes = table(m)
    for note in notes:
        suite.note(note)
    stem = "quick.fleet" if quick else "fleet"
    (out / f"{stem}.md").write_text(_markdown(rows, notes, suite.figures))
    (out / f"{stem}.json").write_text(json.dumps({"measured": m.as_dict(), "rows": rows}, indent=2))
    print(f"  wrote {out / stem}.md", flush=True)
    return suite


# -- measurements ----------------------------------------------------------------------


def _count(kube: FakeKubernetesAPI, verb: str) -> int:
    return sum(1 for r in kube.requests if r.verb == verb and r.resource == "endpointslices")


def _publish(
    kube: FakeKubernetesAPI | None, dns: DNSResponder | None, service: str, pods: int = 3
) -> None:
    """A Service of ``pods`` pods (3, or 1,000 in 10 slices as the controller writes
    them) in the API and/or DNS; port 8000."""
    hosts = ["127.0.77.1", "127.0.77.2", "127.0.77.3"] if pods == 3 else THOUSAND[:pods]
    if kube is not None:
        for i in range(0, len(hosts), 100):
            kube.put(_controller_slice(service, hosts[i : i + 100], name=f"s{i // 100}"))
    if dns is not None:
        dns.set_service(service, NS, [Pod(ip=h) for h in hosts])


def _api_requests(suite: Suite, m: Measured, kube: FakeKubernetesAPI, tmp: Path, n: int) -> None:
    """Lists and watches of n mode "api" channels to one Service, unshared and shared."""
    for shared in (False, True):
        service = f"api-{'shared' if shared else 'own'}"
        _publish(kube, None, service)
        configs = [
            kube.write_kubeconfig(tmp / f"{service}-{0 if shared else i}", namespace=NS)
            for i in range(n)
        ]
        kube.reset_log()
        channels = [
            dnsbalance.resolve_channel(f"{service}.{NS}:8000", kubeconfig=cfg, mode="api")
            for cfg in configs
        ]
        try:
            expected = 1 if shared else n
            wait_until(lambda e=expected: _count(kube, "watch") >= e, 10.0)  # type: ignore[misc]
            lists, watches = _count(kube, "list"), _count(kube, "watch")
        finally:
            for channel in channels:
                channel.close()
        label = "with sharing" if shared else "without sharing"
        suite.add(f"{n} channels, one Service, {label}: lists", lists, "")
        suite.add(f"{n} channels, one Service, {label}: watches", watches, "")
        if shared:
            m.shared_lists, m.shared_watches = lists, watches
        else:
            m.own_lists_per_channel, m.own_watches_per_channel = lists / n, watches / n


def _controller_slice(
    service: str, hosts: list[str], *, ready: bool = True, name: str = "x7k2p"
) -> dict[str, Any]:
    """A slice as the EndpointSlice controller writes it (k8s 1.30), of up to 100
    endpoints; ``ready=False``: the first one is not ready."""
    endpoints = []
    for i, host in enumerate(hosts):
        endpoints.append(
            {
                "addresses": [host],
                "conditions": {"ready": ready or i > 0, "serving": True, "terminating": False},
                "nodeName": f"ip-10-0-{i % 64}-{i % 200}.eu-west-1.compute.internal",
                "zone": f"eu-west-1{'abc'[i % 3]}",
                "targetRef": {
                    "kind": "Pod",
                    "namespace": NS,
                    "name": f"{service}-7d9c8b6f5-{i:05x}",
                    "uid": f"3f1c2a7e-5b6d-4e8f-9a0b-{i:012x}",
                },
            }
        )
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{name}",
            "generateName": f"{service}-",
            "namespace": NS,
            "labels": {
                SERVICE_LABEL: service,
                MANAGED_BY: "endpointslice-controller.k8s.io",
                "app.kubernetes.io/name": service,
            },
            "annotations": {TRIGGER: "2026-12-02T02:38:00Z"},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": service,
                    "uid": OWNER_UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "discovery.k8s.io/v1",
                    "time": "2026-12-02T02:38:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:addressType": {},
                        "f:endpoints": {},
                        "f:metadata": {
                            "f:annotations": {".": {}, f"f:{TRIGGER}": {}},
                            "f:generateName": {},
                            "f:labels": {".": {}, f"f:{MANAGED_BY}": {}, f"f:{SERVICE_LABEL}": {}},
                            "f:ownerReferences": {".": {}, f'k:{{"uid":"{OWNER_UID}"}}': {}},
                        },
                        "f:ports": {},
                    },
                }
            ],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "grpc", "port": 8000, "protocol": "TCP"}],
    }


def _slice_event_bytes(suite: Suite, m: Measured, kube: FakeKubernetesAPI) -> None:
    """The bytes of one MODIFIED event of a 100-endpoint slice on a watch stream."""
    from kubernetes.client import DiscoveryV1Api

    hosts = [f"127.0.90.{i + 1}" for i in range(100)]
    kube.put(_controller_slice("wide", hosts))
    with kube.api_client() as client:
        api = DiscoveryV1Api(client)
        listed = api.list_namespaced_endpoint_slice(
            NS, label_selector="kubernetes.io/service-name=wide"
        )
        resp = api.list_namespaced_endpoint_slice(
            NS,
            label_selector="kubernetes.io/service-name=wide",
            watch=True,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=10,
            _preload_content=False,
        )
        try:
            kube.put(_controller_slice("wide", hosts, ready=False))  # one endpoint not ready
            size = 0
            for line in resp.stream(65536):
                size += len(line)
                if b"\n" in line:
                    break
        finally:
            resp.close()
            resp.release_conn()
    m.event_bytes = size
    suite.add("watch event of a 100-endpoint EndpointSlice (MODIFIED)", size, "bytes")


def _dns_messages(suite: Suite, m: Measured, dns: DNSResponder, n: int, window: float) -> None:
    """Messages per poll of 1,000 pods; messages per interval of n channels, shared or not."""
    dns.set_service("thousand", NS, [Pod(ip=h) for h in THOUSAND])
    target = dnsbalance.parse_target(f"thousand.{NS}:8000", cluster_domain="cluster.local")
    lookup = poll_lookup(target, make_resolver([dns.address], timeout=5.0))
    assert len(lookup()) == 1000
    polls = 20
    dns.queries = 0
    for _ in range(polls):
        lookup()
    m.dns_per_poll_1000 = dns.queries / polls
    suite.add("DNS messages per poll, 1,000 pods (A over TCP, AAAA)", m.dns_per_poll_1000, "")
    interval = 1.0
    for shared in (False, True):
        services = [f"dns-{'shared' if shared else i}" for i in range(n)]
        for service in set(services):
            _publish(None, dns, service)
        channels = [
            dnsbalance.resolve_channel(
                f"{s}.{NS}:8000", nameservers=[dns.address], mode="dns", poll_interval=interval
            )
            for s in services
        ]
        try:
            dns.queries = 0
            started = time.monotonic()
            time.sleep(window)
            per_interval = dns.queries / ((time.monotonic() - started) / interval)
        finally:
            for channel in channels:
                channel.close()
        label = "with sharing (one Service)" if shared else f"without sharing ({n} Services)"
        suite.add(f"DNS messages per poll interval, {n} channels, {label}", per_interval, "")
        if shared:
            m.dns_shared_per_interval = per_interval
        else:
            m.dns_own_per_interval_per_channel = per_interval / n


def _dnsbalance_cpu(before: dict[int, tuple[str, float]]) -> float:
    after = thread_cpu()
    return sum(
        seconds - before.get(tid, (name, 0.0))[1]
        for tid, (name, seconds) in after.items()
        if name.startswith("dnsbalance-")
    )


def _rss_kib() -> int:
    gc.collect()
    time.sleep(0.3)
    return process_status()["rss_kb"]


def _idle(
    suite: Suite,
    m: Measured,
    kube: FakeKubernetesAPI,
    dns: DNSResponder,
    tmp: Path,
    n: int,
    window: float,
) -> None:
    """RSS and CPU per idle mode "auto" channel to a Service of 1,000 pods, without and
    with sharing."""
    for shared in (False, True):
        services = [f"idle-{'shared' if shared else i}" for i in range(n)]
        for service in set(services):
            _publish(kube, dns, service, pods=1000)
        configs = [
            kube.write_kubeconfig(tmp / f"idle-{'shared' if shared else i}", namespace=NS)
            for i in range(n)
        ]
        before = _rss_kib()
        channels = [
            dnsbalance.resolve_channel(
                f"{s}.{NS}:8000", kubeconfig=c, nameservers=[dns.address], poll_interval=POLL
            )
            for s, c in zip(services, configs, strict=True)
        ]
        try:
            rss = (_rss_kib() - before) / n
            cpu0, started = thread_cpu(), time.monotonic()
            time.sleep(window)
            cpu = _dnsbalance_cpu(cpu0) / (time.monotonic() - started) * 60 / n
        finally:
            for channel in channels:
                channel.close()
        label = "with sharing" if shared else "without sharing"
        suite.add(f"idle mode-auto channel, {label}: RSS", rss, "KiB", cpu_s_per_min=cpu)
        suite.add(f"idle mode-auto channel, {label}: CPU per minute", cpu * 1000, "ms")
        if shared:
            m.rss_shared_kib, m.cpu_shared_s_min = rss, cpu
        else:
            m.rss_own_kib, m.cpu_own_s_min = rss, cpu


def established(port: int) -> int:
    """Client-side TCP connections (ESTABLISHED) to ``port`` on this host."""
    count = 0
    for table_path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table_path).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def _connections(suite: Suite, m: Measured, dns: DNSResponder) -> None:
    """Connections of c=4 channels to one Service of 10 pods; of a plain grpc channel."""
    c = 4
    with _ManyAddresses(NARROW_HOSTS) as server:
        dns.set_service("narrow", NS, NARROW_HOSTS)
        target = f"narrow.{NS}:{server.port}"
        channels = [
            dnsbalance.resolve_channel(target, nameservers=[dns.address], mode="dns")
            for _ in range(c)
        ]
        try:
            for channel in channels:
                channel.unary_unary(METHOD)(b"", timeout=5)
            wait_until(lambda: established(server.port) >= c * len(NARROW_HOSTS), 10.0)
            time.sleep(0.5)
            per_channel = established(server.port) / c
        finally:
            for channel in channels:
                channel.close()
        m.conns_per_channel_per_pod = per_channel / len(NARROW_HOSTS)
        suite.add(
            f"connections per channel, {c} channels in one process, 10 pods",
            per_channel,
            "",
        )
        wait_until(lambda: established(server.port) == 0, 5.0)
        plain = grpc.insecure_channel(f"{NARROW_HOSTS[0]}:{server.port}")
        try:
            plain.unary_unary(METHOD)(b"", timeout=5)
            wait_until(lambda: established(server.port) >= 1, 5.0)
            m.plain_conns = established(server.port)
        finally:
            plain.close()
        suite.add("connections of a plain grpc channel (ClusterIP)", m.plain_conns, "")
        if "subset_size" in inspect.signature(dnsbalance.resolve_channel).parameters:
            m.subset_measured = _subset(suite, dns, target, server.port)


def _subset(suite: Suite, dns: DNSResponder, target: str, port: int) -> float:
    """Connections with ``subset_size=3`` out of 10 pods, when the argument exists."""
    wait_until(lambda: established(port) == 0, 5.0)
    channel = dnsbalance.resolve_channel(
        target,
        nameservers=[dns.address],
        mode="dns",
        subset_size=3,  # type: ignore[call-arg]
    )
    try:
        channel.unary_unary(METHOD)(b"", timeout=5)
        wait_until(lambda: established(port) >= 3, 5.0)
        time.sleep(0.5)
        found = established(port)
    finally:
        channel.close()
    suite.add("connections of a channel with subset_size=3, 10 pods", found, "")
    return found / 3


@contextlib.contextmanager
def _server_process(hosts: list[str]) -> Iterator[int]:
    """A grpc server in another process listening on ``hosts`` (one port)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, *hosts],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _connection_rss(suite: Suite, m: Measured, quick: bool) -> None:
    """RSS of one channel connected to 200 pods, less one connected to 10, per
    connection; the median of 3 trials (1 in quick mode)."""
    slopes = []
    with DNSResponder() as dns, _server_process(WIDE_HOSTS) as port:
        for trial in range(1 if quick else 3):
            growth = {}
            for hosts in (WIDE_HOSTS[:10], WIDE_HOSTS):
                name = f"rss-{trial}-{len(hosts)}"
                dns.set_service(name, NS, hosts)
                before = _rss_kib()
                channel = dnsbalance.resolve_channel(
                    f"{name}.{NS}:{port}", nameservers=[dns.address], mode="dns"
                )
                try:
                    channel.unary_unary(METHOD)(b"", timeout=5)
                    wait_until(lambda h=hosts: established(port) >= len(h), 20.0)  # type: ignore[misc]
                    time.sleep(1.0)
                    growth[len(hosts)] = _rss_kib() - before
                finally:
                    channel.close()
                wait_until(lambda: established(port) == 0, 10.0)
            slopes.append((growth[WIDE] - growth[10]) / (WIDE - 10))
    m.rss_per_conn_kib = median(slopes)
    suite.trials("RSS per connection (200 pods less 10, one channel)", slopes, "KiB")


def _markdown(rows: list[dict[str, Any]], notes: list[str], figures: list[dict[str, Any]]) -> str:
    lines = [
        "# A fleet of dnsbalance clients",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        "`python -m benchmarks fleet` on this machine; multiplied to the fleet below "
        "(benchmarks/fleet_model.py).",
        "",
        "| figure | dnsbalance, no sharing | dnsbalance, sharing | dnsbalance, sharing + "
        "subsetting | kuberesolver v6 | kube-proxy (ClusterIP) | how |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        cells = [row["figure"], *row["values"], row["how"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", *[f"- {note}" for note in notes], "", "Measured here:", ""]
    lines += [f"- {f['figure']}: {display(f)}" for f in figures]
    return "\n".join(lines) + "\n"
