"""kuberesolver v6 and v3 side by side with dnsbalance on the fake API: same backends,
same changes, one run. The fault figures live here, since only FakeKubernetesAPI can
inject them; cluster_watch measures the rest against a real kube-apiserver.

Lanes, each with its own Service and its own real gRPC backends (so connections and
calls are counted per client), all fed by one FakeKubernetesAPI and one DNS server;
every change is written to every lane's Service in the same loop (within ~1 ms):

- kuberesolver v6.0.1 (Go, benchmarks/kuberesolver6/main.go): ``kubernetes:///svc.ns:port``,
  round_robin, ``NewInsecureK8sClient``; it watches EndpointSlices on the deprecated
  ``/apis/discovery.k8s.io/v1/watch/...`` path, without a resourceVersion;
- kuberesolver v3.1.1 (Go, benchmarks/kuberesolver/main.go), the same way; it watches
  core/v1 Endpoints, which the fake derives from the EndpointSlices in the same instant;
- dnsbalance ``mode="api"`` and ``mode="auto"`` (the DNS records change with the
  slices, no lag), and ``mode="dns"`` (poll_interval 1 s) where the API plays no part.

Figures: spread over 5 backends; seconds from the API write to the new pod's first
call (p50/p95) and the new connections it cost; failed calls in a rolling
replacement of 5 pods under 8 callers; recovery (write to first call on a new pod)
after a watch cut, after an ERROR 410 event (history compacted, then the watches cut:
a resuming watcher is told 410), after an HTTP 410, and after 5 s of HTTP 500 (from
the API's return); failed calls while every pod is not ready with its server up; and
how many of a Service's 1,100 endpoints (11 slices of 100) each client connects to
(plain TCP listeners that count connections; kuberesolver v3 reads Endpoints, which
hold at most 1,000).

ClusterIP and gRPC's ``dns:`` resolver do not talk to the API: their spread, new-pod
and rolling figures are the spread, discovery_time and rolling suites' (same run).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from dnsbalance import resolve_channel
from dnsbalance.testing import Backend, FakeKubernetesAPI

from ._common import (
    DNSBALANCE,
    KUBERESOLVER,
    KUBERESOLVER6,
    Callers,
    Recorder,
    Suite,
    cluster_dns,
    percentile,
    wait_until,
)
from ._kuberesolver import GoClient, build
from ._kuberesolver6 import build as build_v6
from ._podlisten import PodListeners, slices_note

NS = "bench"
KR, KR6 = "kuberesolver v3", "kuberesolver v6"
API, AUTO, DNS = "dnsbalance api", "dnsbalance auto", "dnsbalance dns"
BLOCKS = {KR: "127.0.70", API: "127.0.71", AUTO: "127.0.72", DNS: "127.0.73", KR6: "127.0.74"}
GO = (KR6, KR)
API_SERVER = "fake API"  # said in every summary row: cluster_watch's rows ran on a real one
# Seconds to wait for a new pod's first call: v6 re-watches after 1, 2, 4, 8 or 16 s
# (its back-off doubles after every watch end, then starts over), so 20 s sees it all.
BOUND = 20.0


def _column(name: str) -> str:
    return {KR: KUBERESOLVER, KR6: KUBERESOLVER6}.get(name, DNSBALANCE)


def _mode(name: str) -> str:
    return "" if name in GO else f"{name.split()[-1]}: "


WIDE = "127.0.80"  # the 1,100 listeners: 127.0.80.1 - 127.0.84.100


class Lane:
    """One contender: its Service, backends, client and the calls it made."""

    def __init__(self, name: str, dns_server: Any) -> None:
        self.name = name
        self.service = {KR: "kr", KR6: "kr6"}.get(name) or name.split()[-1]
        self.dns = dns_server
        self.backends: dict[str, Backend] = {}
        self.ready: set[str] = set()
        self.recorder = Recorder()
        self.port = 0
        self._next = 1
        self.client: Any = None
        self.channel: grpc.Channel | None = None

    def add(self) -> str:
        host = f"{BLOCKS[self.name]}.{self._next}"
        self._next += 1
        backend = Backend(host, self.port).start()
        self.port = backend.port
        self.backends[host] = backend
        return host

    def publish(self, kube: FakeKubernetesAPI, ready: set[str], terminating: set[str] = set()):  # noqa: B006
        """Write the slice (and the DNS records) with ``ready`` hosts, the others of
        ours not ready (terminating ones flagged as such)."""
        endpoints = []
        for host in sorted(self.backends):
            if host in ready:
                endpoints.append((host, True, True, False))
            elif host in terminating:
                endpoints.append((host, False, True, True))
            else:
                endpoints.append((host, False, False, False))
        kube.apply_slice(
            f"{self.service}-a", NS, self.service, endpoints, [("grpc", self.port, "TCP")]
        )
        for host in self.ready - ready:
            with contextlib.suppress(KeyError):
                self.dns.remove_pod(self.service, NS, host)
        for host in ready - self.ready:
            self.dns.add_pod(self.service, NS, host)
        self.ready = set(ready)

    def drop(self, host: str) -> None:
        self.backends.pop(host).stop(0.5)

    def connections(self) -> int:
        return sum(b.connections for b in self.backends.values())

    def used_since(self, since: float) -> set[str]:
        return {c.backend for c in self.recorder.window(since, time.monotonic() + 1) if c.backend}

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
        if self.channel is not None:
            self.channel.close()
        for backend in self.backends.values():
            backend.stop(0)


def _start(
    lane: Lane, kube: FakeKubernetesAPI, binaries: dict[str, Path], kubeconfig: Path, callers: int
) -> None:
    target = f"kubernetes:///{lane.service}.{NS}:{lane.port}"
    if lane.name in GO:
        lane.client = GoClient(
            binaries[lane.name],
            kube.url,
            target,
            lane.recorder,
            callers=callers,
            interval_ms=40,
            limit=600,
        ).start()
        return
    mode = lane.name.split()[-1]
    if mode == "dns":
        lane.channel = resolve_channel(
            f"{lane.service}.{NS}:{lane.port}",
            mode="dns",
            nameservers=[lane.dns.address],
            poll_interval=1.0,
        )
    else:
        lane.channel = resolve_channel(
            target, mode=mode, kubeconfig=kubeconfig, nameservers=[lane.dns.address]
        )
    lane.client = Callers(
        lane.channel, lane.recorder, threads=callers, rate=25.0, limit=600, name=lane.name
    ).start()


def _first_calls(
    lanes: list[Lane],
    kube: FakeKubernetesAPI,
    timeout: float,
    before: Callable[[], None] = lambda: None,
) -> dict[str, float | None]:
    """Add a pod to every lane, write; seconds from each lane's write to the new pod's
    first answer (None: not within ``timeout``). ``before`` runs first (the fault)."""
    before()
    new: dict[str, tuple[str, float]] = {}
    for lane in lanes:
        host = lane.add()
        written = time.monotonic()
        lane.publish(kube, lane.ready | {host})
        new[lane.name] = (host, written)
    out: dict[str, float | None] = {}
    for lane in lanes:
        host, written = new[lane.name]
        first = lane.recorder.wait_first(host, max(0.1, written + timeout - time.monotonic()))
        out[lane.name] = None if first is None else max(0.0, first - written)
    return out


def _retire_newest(lanes: list[Lane], kube: FakeKubernetesAPI, keep: int) -> None:
    for lane in lanes:
        extra = sorted(lane.backends, key=lambda h: int(h.rsplit(".", 1)[1]))[keep:]
        lane.publish(kube, lane.ready - set(extra))
    time.sleep(1.0)
    for lane in lanes:
        for host in sorted(lane.backends, key=lambda h: int(h.rsplit(".", 1)[1]))[keep:]:
            lane.drop(host)


def run(quick: bool) -> Suite:
    suite = Suite("kube_watch")
    trials = 3 if quick else 10
    # a fault's trial waits out kuberesolver v6's own recovery (8-16 s after a 410):
    # one each in --quick, which CI runs for errors, not figures
    fault_trials = 1 if quick else trials
    with tempfile.TemporaryDirectory(prefix="bench-kr-") as tmp:
        binaries: dict[str, Path] = {}
        for name, (binary, why) in ((KR6, build_v6()), (KR, build())):
            if binary is None:
                suite.note(f"{name} column skipped: {why}")
            else:
                binaries[name] = binary
        names = [n for n in GO if n in binaries] + [API, AUTO, DNS]
        with cluster_dns() as (dns_server, label), FakeKubernetesAPI() as kube:
            kubeconfig = kube.write_kubeconfig(Path(tmp) / "kubeconfig", namespace=NS)
            suite.note(
                f"DNS server: {label}; lanes {', '.join(names)}; each change written to "
                f"every lane's Service in one loop; {trials} trials per figure "
                f"({fault_trials} per fault)"
            )
            lanes = [Lane(n, dns_server) for n in names]
            try:
                _measure(suite, lanes, kube, binaries, kubeconfig, trials, fault_trials)
            finally:
                for lane in lanes:
                    lane.stop()
            _wide(suite, kube, binaries, kubeconfig, dns_server, names)
    return suite


def _cell(values: list[float | None], unit: str = "s") -> str:
    got = [v for v in values if v is not None]
    if not got:
        return f"not within {BOUND:.0f} s"
    text = f"p50 {percentile(got, 50):.3f} / p95 {percentile(got, 95):.3f} {unit}"
    if len(got) < len(values):
        text += f" ({len(values) - len(got)} of {len(values)} not within {BOUND:.0f} s)"
    return text


def _report(
    suite: Suite, label: str, name: str, values: list[float | None], target: str = "", **extra: Any
) -> None:
    got = [v for v in values if v is not None]
    column = _column(name)
    mode = _mode(name)
    suite.add(
        f"{name}: {label}",
        percentile(got, 95) if got else None,
        "s",
        target=target if name == API else "",
        shown=_cell(values),
        cell=mode + _cell(values),
        column=column,
        summary=f"{label} ({API_SERVER})",
        trials=[None if v is None else round(v, 4) for v in values],
        **extra,
    )


def _measure(
    suite: Suite,
    lanes: list[Lane],
    kube: FakeKubernetesAPI,
    binaries: dict[str, Path],
    kubeconfig: Path,
    trials: int,
    fault_trials: int,
) -> None:
    for lane in lanes:
        for _ in range(5):
            lane.add()
        lane.publish(kube, set(lane.backends))
    for lane in lanes:
        _start(lane, kube, binaries, kubeconfig, callers=8)
    wait_until(
        lambda: all(lane.used_since(time.monotonic() - 1) == set(lane.backends) for lane in lanes),
        15,
    )
    # spread over the 5 backends, 3 s of calls
    start = time.monotonic()
    time.sleep(3.0)
    for lane in lanes:
        counts: dict[str, int] = {}
        for c in lane.recorder.window(start, start + 3.0):
            if c.backend:
                counts[c.backend] = counts.get(c.backend, 0) + 1
        per = [counts.get(h, 0) for h in lane.backends]
        ratio = max(per) / min(per) if min(per) else None
        column = _column(lane.name)
        mode = _mode(lane.name)
        suite.add(
            f"{lane.name}: spread max/min over 5 backends (8 callers, 3 s)",
            ratio,
            "x",
            shown=None if ratio else f"{sum(1 for n in per if n)} of 5 used",
            cell=mode + (f"{ratio:.3f} x" if ratio else "unbounded"),
            column=column,
            summary=f"spread: max/min calls per backend (5 backends, 8 callers; {API_SERVER})",
        )

    # a new pod: write to first call, and the connections it cost
    latencies: dict[str, list[float | None]] = {lane.name: [] for lane in lanes}
    conns: dict[str, list[int]] = {lane.name: [] for lane in lanes}
    for _ in range(trials):
        before = {lane.name: lane.connections() for lane in lanes}
        for name, value in _first_calls(lanes, kube, BOUND).items():
            latencies[name].append(value)
        time.sleep(0.5)
        for lane in lanes:
            conns[lane.name].append(lane.connections() - before[lane.name])
        _retire_newest(lanes, kube, keep=5)
    kr95 = None
    headline = next((n for n in GO if [v for v in latencies.get(n, []) if v is not None]), None)
    if headline is not None:
        kr95 = percentile([v for v in latencies[headline] if v is not None], 95)
    target = f"<= {max(1.5 * kr95, 0.020):.3f} s (1.5x kuberesolver p95 or 20 ms)" if kr95 else ""
    for name, values in latencies.items():
        _report(
            suite, "new pod: seconds from the API write to its first call", name, values, target
        )
    for name, values in conns.items():
        suite.trials(
            f"{name}: new connections per added pod",
            values,
            "connections",
            column=_column(name),
            summary=f"new connections per added pod ({API_SERVER})",
            cell=_mode(name) + f"{sorted(values)[len(values) // 2]} (max {max(values)})",
        )

    # rolling replacement of all 5 under 8 callers
    start = time.monotonic()
    for _ in range(5):
        oldest = {
            lane.name: min(lane.backends, key=lambda h: int(h.rsplit(".", 1)[1])) for lane in lanes
        }
        for lane in lanes:
            host = lane.add()
            lane.publish(
                kube, (lane.ready - {oldest[lane.name]}) | {host}, terminating={oldest[lane.name]}
            )
        time.sleep(1.5)
        for lane in lanes:
            lane.drop(oldest[lane.name])
            lane.publish(kube, lane.ready)
    end = time.monotonic()
    for lane in lanes:
        window = lane.recorder.window(start, end)
        failed = sum(1 for c in window if c.error)
        suite.add(
            f"{lane.name}: failed calls in a rolling replacement of 5 (8 callers)",
            failed,
            "calls",
            target="0 where kuberesolver has 0" if lane.name == API else "",
            cell=_mode(lane.name) + f"{failed} of {len(window)}",
            column=_column(lane.name),
            summary=f"rolling replacement of 5 pods, 8 callers: failed calls ({API_SERVER})",
        )

    # recovery after faults: write a new pod right after the fault, time to its first call
    watchers = [lane for lane in lanes if lane.name != DNS]

    def cut() -> None:
        kube.cut_watches()

    def error_410() -> None:
        kube.compact()
        kube.cut_watches()

    def http_410() -> None:
        kube.expired_as_http_410 = True
        kube.compact()
        kube.cut_watches()

    faults = [("a watch cut", cut), ("an ERROR 410 event", error_410), ("an HTTP 410", http_410)]
    for label, fault in faults:
        values: dict[str, list[float | None]] = {lane.name: [] for lane in watchers}
        for _ in range(fault_trials):
            for name, value in _first_calls(watchers, kube, BOUND, before=fault).items():
                values[name].append(value)
            kube.expired_as_http_410 = False
            _retire_newest(watchers, kube, keep=5)
        for name, got in values.items():
            _report(
                suite,
                f"recovery after {label}: write to first call on a new pod",
                name,
                got,
                "faster than kuberesolver" if name == API else "",
            )

    outage: dict[str, list[float | None]] = {lane.name: [] for lane in watchers}
    early: set[str] = set()
    for _ in range(max(1, fault_trials // 3)):
        kube.fail_next(10**7, code=500)
        kube.cut_watches()
        new = {}
        time.sleep(0.2)
        for lane in watchers:
            host = lane.add()
            lane.publish(kube, lane.ready | {host})
            new[lane.name] = host
        time.sleep(4.8)
        kube.clear_failures()
        back = time.monotonic()
        for lane in watchers:
            first = lane.recorder.wait_first(
                new[lane.name], max(0.1, back + BOUND - time.monotonic())
            )
            if first is not None and first < back:
                early.add(lane.name)
            outage[lane.name].append(None if first is None else max(0.0, first - back))
        _retire_newest(watchers, kube, keep=5)
    for name in sorted(early):
        suite.note(f"{name}: the new pod served calls during the 500 outage already (0 s)")
    for name, got in outage.items():
        _report(
            suite,
            "recovery after 5 s of HTTP 500: API's return to first call on a new pod",
            name,
            got,
            "<= 1 s" if name == API else "",
        )

    # every pod not ready, servers still up
    start = time.monotonic()
    for lane in lanes:
        lane.publish(kube, set())
    time.sleep(3.0)
    end = time.monotonic()
    for lane in lanes:
        lane.publish(kube, set(lane.backends))
    for lane in lanes:
        window = lane.recorder.window(start + 0.5, end)
        failed = sum(1 for c in window if c.error)
        suite.add(
            f"{lane.name}: failed calls while every pod is not ready (3 s)",
            failed,
            "calls",
            cell=_mode(lane.name) + f"{failed} of {len(window)}",
            column=_column(lane.name),
            summary=f"every pod not ready, servers up: failed calls (3 s; {API_SERVER})",
        )


def _wide(
    suite: Suite,
    kube: FakeKubernetesAPI,
    binaries: dict[str, Path],
    kubeconfig: Path,
    dns_server: Any,
    names: list[str],
) -> None:
    count = 1100
    hosts = [f"127.0.{80 + i // 250}.{i % 250 + 1}" for i in range(count)]
    wide = PodListeners()
    try:
        port = wide.listen(hosts)
        for n in range(11):
            kube.apply_slice(
                f"wide-{n:02d}",
                NS,
                "wide",
                [(h, True, True, False) for h in hosts[n * 100 : (n + 1) * 100]],
                [("grpc", port, "TCP")],
            )
        for name in names:
            if name == DNS:
                continue  # 1,100 A records: the scale suite's subject, not the API's
            wide.reset()
            recorder = Recorder()
            target = f"kubernetes:///wide.{NS}:{port}"
            if name in GO:
                client: Any = GoClient(
                    binaries[name],
                    kube.url,
                    target,
                    recorder,
                    interval_ms=50,
                    limit=120,
                    timeout=0.5,
                ).start()
                channel = None
            else:
                try:
                    channel = resolve_channel(
                        target,
                        mode=name.split()[-1],
                        kubeconfig=kubeconfig,
                        nameservers=[dns_server.address],
                    )
                except Exception as exc:  # reported, not fatal
                    suite.note(f"{name}: 1,100 endpoints: {type(exc).__name__}: {exc}")
                    continue
                client = Callers(
                    channel, recorder, rate=20.0, timeout=0.5, limit=120, name="wide"
                ).start()
            held = wide.held_when_steady()
            used, ever = len(held), len(wide.seen())
            if used < count:
                sets = [set(hosts[n * 100 : (n + 1) * 100]) for n in range(11)]
                suite.note(slices_note(name, held, ever, sets))
            client.stop()
            if channel is not None:
                channel.close()
            wait_until(lambda: not wide.open(), 15, step=0.2)  # the next starts clean
            suite.add(
                f"{name}: endpoints with an open connection, of a Service's {count}",
                used,
                "endpoints",
                ever_connected=ever,
                target=f"{count}" if name == API else "",
                cell=_mode(name) + f"{used} of {count}",
                column=_column(name),
                summary=f"a Service of {count} endpoints: endpoints each client connects to "
                f"({API_SERVER})",
            )
    finally:
        wide.close()
