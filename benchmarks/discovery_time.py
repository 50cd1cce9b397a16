"""Discovery: a new ready backend appears; how long until it serves its first call?

Each channel runs on 3 backends with a caller sending ~300 calls/s (20/s for the
many gRPC-native channels); then a 4th backend appears and the clock runs from the
moment the change is made (the DNS update is sent, or the EndpointSlice written)
until the new backend has answered a call. 10 trials (3 in quick mode), one new
backend each, which is then taken away again (and counts the connections it cost).

- dnsbalance ``mode="dns"``, poll_interval 1 s: the DNS record appears (target p95 <=
  1.5 s);
- ``mode="auto"``, poll_interval 5 s, DNS lagging the API by 1 s: the EndpointSlice is
  written, the DNS record 1 s later; the API-triggered re-polls find it (target <= 1.5 s);
- ``mode="api"`` (watch-driven, like kuberesolver): the slice is written (<= 0.5 s);
- gRPC's own ``dns:`` resolver with round_robin: the DNS record appears; observed for
  60 s (10 s in quick mode), all trials at once, each on its own Service;
- the same with ``grpc.max_connection_age_ms`` 2000 (grace 1000) on the servers, the
  usual work-around: the GOAWAYs make grpc re-resolve, but not sooner than 30 s after
  its previous resolution. In the full run these channels are 1 to 31 s old, evenly
  spread, when the record appears (the new pod lands at a random point of grpc's 30 s
  cycle, as for long-running clients); in quick mode all are 1 s old;
- ClusterIP (through a kube-proxy stand-in): the new pod gets only new connections.

The gRPC-native observations run in the background while the dnsbalance trials run
one after the other, so both see the same (noisy) machine.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from dnsbalance import resolve_channel
from dnsbalance.testing import Backend, BindServer, DNSResponder, FakeKubernetesAPI

from ._common import (
    CLUSTER_IP,
    DNSBALANCE,
    NATIVE,
    ROUND_ROBIN,
    Callers,
    Recorder,
    Suite,
    TcpProxy,
    cluster_dns,
    percentile,
    wait_until,
)

BLOCK = "127.0.51"  # dnsbalance trials: base .1-.3, new backends .10 on
NATIVE_BLOCK = "127.0.52"  # gRPC dns: (and ClusterIP at .200): base .1-.3, new .4
AGED_BLOCK = "127.0.53"  # gRPC dns: + max_connection_age: base .1-.3, new .4
NS = "bench"
MAX_AGE = (("grpc.max_connection_age_ms", 2000), ("grpc.max_connection_age_grace_ms", 1000))
SUMMARY = "new backend: first call after it appears, p50 / p95"
SUMMARY_TARGET = "dns, auto: <= 1.5 s p95; api: <= 0.5 s p95"
DnsServer = BindServer | DNSResponder


def run(quick: bool) -> Suite:
    suite = Suite("discovery_time")
    trials = 3 if quick else 10
    bound = 10.0 if quick else 60.0
    with (
        cluster_dns() as (dns_server, label),
        FakeKubernetesAPI() as kube,
        tempfile.TemporaryDirectory() as tmp,
    ):
        suite.note(
            f"DNS server: {label}; API: FakeKubernetesAPI; {trials} trials per contender; "
            f"gRPC-native channels observed for {bound:.0f} s"
            + (
                " (quick mode: a shorter bound than the full run's 60 s; every channel 1 s "
                "old when the record appears)"
                if quick
                else "; the max_connection_age channels 1 to 31 s old when the record "
                "appears, evenly spread over grpc's 30 s re-resolution cycle"
            )
        )
        config = kube.write_kubeconfig(Path(tmp) / "kubeconfig", namespace=NS)
        watch = _Background(dns_server, trials, bound, stagger=0.0 if quick else 30.0)
        try:
            watch.start()
            modes = {mode: _mode_trials(mode, dns_server, kube, config, trials) for mode in MODES}
            background = watch.finish()
        finally:
            watch.close()
    for mode, (latencies, opened, errors) in modes.items():
        _report(
            suite,
            f"dnsbalance mode={mode} ({MODES[mode]['what']})",
            latencies,
            bound=10.0,
            target=MODES[mode]["target"],
            column=DNSBALANCE,
            label=f"mode={mode}",
        )
        suite.trials(
            f"dnsbalance mode={mode}: new connections per single scale-up",
            opened,
            "connections",
            target="1",
            **(
                {"column": DNSBALANCE, "summary": "new connections per single scale-up"}
                if mode == "dns"
                else {}
            ),
        )
        suite.add(
            f"dnsbalance mode={mode}: failed calls",
            sum(errors.values()),
            "calls",
            target="0",
            errors=dict(errors),
        )
    for name, (latencies, errors, extra) in background.items():
        column = CLUSTER_IP if name == "clusterip" else NATIVE
        what = {
            "clusterip": "ClusterIP through a kube-proxy stand-in",
            "native": "gRPC dns: + round_robin",
            "aged": "gRPC dns: + round_robin, servers with max_connection_age 2 s",
        }[name]
        label = {"clusterip": "", "native": "", "aged": "with max_connection_age 2 s"}[name]
        _report(suite, what, latencies, bound=bound, target="", column=column, label=label)
        suite.add(f"{what}: failed calls", errors, "calls", **extra)
        if extra.get("note"):
            suite.note(f"{what}: {extra['note']}")
    return suite


MODES: dict[str, dict[str, Any]] = {
    "dns": {"what": "poll 1 s", "target": "<= 1.5 s"},
    "auto": {"what": "DNS 1 s behind the API, poll 5 s", "target": "<= 1.5 s"},
    "api": {"what": "watch", "target": "<= 0.5 s"},
}


def _report(
    suite: Suite,
    what: str,
    latencies: list[float | None],
    *,
    bound: float,
    target: str,
    column: str,
    label: str,
) -> None:
    found = [x for x in latencies if x is not None]
    missed = len(latencies) - len(found)
    prefix = f"{label}: " if label else ""
    if not found:
        suite.add(
            f"{what}: first call to a new backend",
            None,
            "s",
            target=target,
            shown=f"not within {bound:.0f} s (0 of {len(latencies)} trials)",
            trials=latencies,
            column=column,
            summary=SUMMARY,
            cell=f"{prefix}not within {bound:.0f} s (0 of {len(latencies)})",
        )
        return
    # a trial that never saw the new backend counts as slower than any that did
    ranked = [x if x is not None else math.inf for x in latencies]
    p50, p95 = percentile(ranked, 50), percentile(ranked, 95)
    p50_text = f"{p50:.2f}" if p50 != math.inf else f"> {bound:.0f}"
    p95_text = f"{p95:.2f}" if p95 != math.inf else f"> {bound:.0f}"
    shown = f"{prefix}{p50_text} / {p95_text} s"
    if missed:
        shown += f" ({missed} of {len(latencies)} not within {bound:.0f} s)"
    suite.add(
        f"{what}: first call to a new backend, p50",
        p50 if p50 != math.inf else None,
        "s",
        shown=None if p50 != math.inf else f"> {bound:.0f} s",
        trials=[None if x is None else round(x, 4) for x in latencies],
        spread={"median": p50 if p50 != math.inf else None, "min": min(found), "max": max(found)},
    )
    suite.add(
        f"{what}: first call to a new backend, p95",
        p95 if p95 != math.inf else None,
        "s",
        shown=None if p95 != math.inf else f"> {bound:.0f} s",
        target=target,
        not_within_bound=missed,
        column=column,
        summary=SUMMARY,
        cell=shown,
        **({"summary_target": SUMMARY_TARGET} if column == DNSBALANCE else {}),
    )


def _connections(backends: list[Backend]) -> int:
    return sum(b.connections for b in backends)


def _mode_trials(
    mode: str, dns_server: DnsServer, kube: FakeKubernetesAPI, config: Path, trials: int
) -> tuple[list[float | None], list[int], Counter[str]]:
    """Sequential scale-ups of one dnsbalance channel; (seconds to first call or None,
    new connections per scale-up, failed calls)."""
    offset = {"dns": 10, "auto": 40, "api": 70}[mode]
    service = f"new-{mode}"
    base = [Backend(f"{BLOCK}.{offset + i}", 0) for i in range(1)]
    port = base[0].port
    base += [Backend(f"{BLOCK}.{offset + i}", port) for i in (1, 2)]
    ports = [("grpc", port, "TCP")]
    slice_name = f"{service}-a"
    channel: Any = None
    latencies: list[float | None] = []
    opened: list[int] = []
    recorder = Recorder()
    events: list[tuple[float, str]] = []
    callers: Callers | None = None
    try:
        for b in base:
            b.start()
            if mode != "api":
                dns_server.add_pod(service, NS, b.host)
        if mode != "dns":
            kube.apply_slice(slice_name, NS, service, endpoints=[b.host for b in base], ports=ports)
        target = f"{service}.{NS}:{port}"
        if mode == "dns":
            channel = resolve_channel(
                target, nameservers=[dns_server.address], mode="dns", poll_interval=1.0
            )
        elif mode == "auto":
            channel = resolve_channel(
                target,
                nameservers=[dns_server.address],
                kubeconfig=config,
                mode="auto",
                poll_interval=5.0,
            )
        else:
            channel = resolve_channel(target, kubeconfig=config, mode="api")
        started = time.monotonic()
        callers = Callers(channel, recorder, rate=300, limit=300, name=mode).start()
        wait_until(lambda: all(recorder.first_answer(b.name) for b in base), 5)
        for trial in range(trials):
            new = Backend(f"{BLOCK}.{offset + 3 + trial}", port).start()
            hosts = [b.host for b in base]
            before = _connections([*base, new])
            try:
                t0 = time.monotonic()
                events.append((t0, f"trial {trial}: new backend added"))
                if mode == "dns":
                    dns_server.add_pod(service, NS, new.host)
                else:
                    kube.apply_slice(
                        slice_name, NS, service, endpoints=[*hosts, new.host], ports=ports
                    )
                if mode == "auto":  # DNS lags the API by 1 s
                    time.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
                    dns_server.add_pod(service, NS, new.host)
                first = recorder.wait_first(new.name, 10.0)
                latencies.append(None if first is None else first - t0)
                time.sleep(0.1)  # a few more calls on the new set
                opened.append(_connections([*base, new]) - before)
            finally:
                events.append((time.monotonic(), f"trial {trial}: new backend removed"))
                if mode != "dns":
                    kube.apply_slice(slice_name, NS, service, endpoints=hosts, ports=ports)
                if mode != "api":
                    dns_server.remove_pod(service, NS, new.host)
                wait_until(lambda h=new.host: all(ep.address != h for ep in channel.endpoints), 10)
                events.append((time.monotonic(), f"trial {trial}: new backend stopping"))
                new.stop(1.0)
                events.append((time.monotonic(), f"trial {trial}: new backend stopped"))
    finally:
        if callers is not None:
            callers.stop()
        if channel is not None:
            channel.close()
        for b in base:
            b.stop(0)
        if mode != "dns":
            kube.delete("EndpointSlice", NS, slice_name)
    failed = [c for c in recorder.calls if c.error]
    errors = Counter(c.error for c in failed)
    for call in failed[:5]:  # say when, against what the driver did
        at, what = max(((t, w) for t, w in events if t <= call.start), default=(started, "start"))
        print(f"  {mode}: call failed ({call.error}) {call.start - at:.3f} s after '{what}'")
    return latencies, opened, errors


class _Background:
    """The gRPC-native channels (and ClusterIP ones), one per trial, each on its own
    Service. A driver thread makes them; the new backend appears for all at once, and
    they are watched until each has used it or ``bound`` seconds have passed.

    With ``stagger`` (full mode: 30 s) the max_connection_age channels are made at even
    intervals over the ``stagger`` seconds before the record appears, so their ages (1 to
    31 s) cover grpc's whole 30 s re-resolution cycle, as for clients that have been
    running for a while: the new pod appears at a random point in the cycle.
    """

    def __init__(self, dns_server: DnsServer, trials: int, bound: float, stagger: float) -> None:
        self.dns = dns_server
        self.trials = trials
        self.bound = bound
        self.stagger = stagger
        self.backends: dict[str, list[Backend]] = {}
        self.ports: dict[str, int] = {}
        self.channels: list[grpc.Channel] = []
        self.callers: list[Callers] = []
        self.recorders: dict[str, list[Recorder]] = {"clusterip": [], "native": [], "aged": []}
        self.made: dict[str, list[float]] = {"clusterip": [], "native": [], "aged": []}
        self.proxy: TcpProxy | None = None
        self.t0 = 0.0
        self.before: dict[str, int] = {}
        self._stop = threading.Event()
        self._driver = threading.Thread(target=self._drive, name="bench-native", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> None:
        for name, block, options in (
            ("native", NATIVE_BLOCK, ()),
            ("aged", AGED_BLOCK, MAX_AGE),
        ):
            fleet = [Backend(f"{block}.1", 0, options=options)]
            port = fleet[0].port
            fleet += [Backend(f"{block}.{i}", port, options=options) for i in (2, 3, 4)]
            self.backends[name], self.ports[name] = fleet, port
            for b in fleet:
                b.start()
            for trial in range(self.trials):
                for b in fleet[:3]:
                    self.dns.add_pod(f"{name}-{trial}", NS, b.host)
        native = self.backends["native"]
        self.proxy = TcpProxy(f"{NATIVE_BLOCK}.200", [b.address for b in native[:3]]).start()
        self._driver.start()

    def _drive(self) -> None:
        proxy = self.proxy
        assert proxy is not None
        try:
            began = time.monotonic()
            for trial in range(self.trials):
                self._watch("native", self._native("native", trial))
                self._watch("clusterip", grpc.insecure_channel(proxy.address))
            for trial in range(self.trials):
                at = began + trial * self.stagger / self.trials
                if self._stop.wait(max(0.0, at - time.monotonic())):
                    return
                self._watch("aged", self._native("aged", trial))
            if self._stop.wait(1.0):  # the youngest channel is 1 s old when the record appears
                return
            everyone = [r for group in self.recorders.values() for r in group]
            wait_until(lambda: all(r.first for r in everyone), 5)
            self.before = {n: sum(b.connections for b in f) for n, f in self.backends.items()}
            self.t0 = time.monotonic()
            for name in ("native", "aged"):
                for trial in range(self.trials):
                    self.dns.add_pod(f"{name}-{trial}", NS, self.backends[name][3].host)
            proxy.add(self.backends["native"][3].address)
        except BaseException as exc:  # reported by finish()
            self.failure = exc

    def _native(self, name: str, trial: int) -> grpc.Channel:
        fqdn = f"{name}-{trial}.{NS}.svc.cluster.local:{self.ports[name]}"
        return grpc.insecure_channel(f"dns://{self.dns.address}/{fqdn}", options=ROUND_ROBIN)

    def _watch(self, name: str, channel: grpc.Channel) -> None:
        recorder = Recorder()
        self.channels.append(channel)
        self.recorders[name].append(recorder)
        self.made[name].append(time.monotonic())
        limit = self.stagger + self.bound + 60
        self.callers.append(Callers(channel, recorder, rate=20, limit=limit).start())

    def finish(self) -> dict[str, tuple[list[float | None], int, dict[str, Any]]]:
        self._driver.join(self.stagger + 30)
        if self.failure is not None:
            raise self.failure
        news = {"native": self.backends["native"][3], "aged": self.backends["aged"][3]}
        news["clusterip"] = news["native"]
        wait_until(
            lambda: all(
                r.first_answer(news[name].name) is not None
                for name, group in self.recorders.items()
                for r in group
            ),
            max(0.0, self.t0 + self.bound - time.monotonic()),
            step=0.1,
        )
        window = time.monotonic() - self.t0
        out: dict[str, tuple[list[float | None], int, dict[str, Any]]] = {}
        for name, group in self.recorders.items():
            latencies: list[float | None] = []
            for recorder in group:
                first = recorder.first_answer(news[name].name)
                seconds = None if first is None else first - self.t0
                latencies.append(None if seconds is None or seconds > self.bound else seconds)
            errors = sum(1 for r in group for c in r.calls if c.error)
            extra: dict[str, Any] = {
                "channel_ages_s": [round(self.t0 - m, 1) for m in self.made[name]]
            }
            if name == "aged":
                fleet = self.backends["aged"]
                opened = sum(b.connections for b in fleet) - self.before["aged"]
                extra["connections_opened_in_window"] = opened
                extra["note"] = (
                    f"{opened} new connections in {window:.0f} s by {self.trials} channels: "
                    "max_connection_age reconnects to every backend every ~2 s"
                )
            out[name] = (latencies, errors, extra)
        return out

    def close(self) -> None:
        self._stop.set()
        if self._driver.is_alive():
            self._driver.join(5)
        for callers in self.callers:
            callers.stop()
        for channel in self.channels:
            channel.close()
        if self.proxy is not None:
            self.proxy.close()
        for fleet in self.backends.values():
            for b in fleet:
                b.stop(0)
