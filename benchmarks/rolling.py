"""Rolling replacement of all 5 backends under 8 concurrent callers, per contender.

Each contender has its own 5 backends (one port) and its own 8 callers (25 calls/s
each); the three run side by side, and one driver replaces the pods of all three in
lockstep, as a Deployment's rolling update would, one pod at a time:

1. the new pod starts and becomes ready: its DNS record is added (dnsbalance and
   gRPC ``dns:``), the kube-proxy stand-in adds it for new connections (ClusterIP);
2. the driver waits until the new pod serves dnsbalance's calls;
3. the old pod leaves DNS (and the proxy), and the driver waits until dnsbalance's
   channel no longer lists it: a pod must leave DNS before it stops (README);
4. the old pod stops gracefully (grpc ``stop(grace=1)``: GOAWAY, running calls finish).

dnsbalance polls every 1 s (``mode="dns"``). gRPC's own ``dns:`` channel gets the same
DNS changes; it re-resolves only when a connection fails and not sooner than 30 s after
its previous resolution, so its channel's age matters: the full run measures channels
31 s old (a long-running client; 3 trials) and fresh ones, 3 s old (a client that just
started; 1 trial); quick mode only fresh ones. What it does is reported as it happens,
failures included. ClusterIP is a plain channel to a kube-proxy stand-in
(:class:`~benchmarks._common.TcpProxy`: each new TCP connection to a random current pod).

Figures per contender: failed calls in the rolling window (from the first new pod to
1 s after the last old pod stopped; target 0), p99 latency in that window against the
steady state just before (10 s; 2 s for fresh channels), new TCP connections opened
(distinct peers, server-side; target 5 for dnsbalance: one per new pod), and how many
pods served its calls in the window's last second. Channels are made anew per trial.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import grpc

from dnsbalance import resolve_channel
from dnsbalance.testing import Backend

from ._common import (
    CLUSTER_IP,
    DNSBALANCE,
    NATIVE,
    ROUND_ROBIN,
    Call,
    Callers,
    Recorder,
    Suite,
    TcpProxy,
    cluster_dns,
    median,
    percentile,
    wait_until,
)

BLOCKS = {DNSBALANCE: "127.0.54", NATIVE: "127.0.55", CLUSTER_IP: "127.0.56"}
PODS = 5
CALLERS = 8
RATE = 25.0  # calls/s per caller
GRACE = 1.0
SETTLE = 1.0
NS = "bench"
SERVICES = {DNSBALANCE: "roll-d", NATIVE: "roll-n"}


class _Fleet:
    """One contender's pods, generation by generation, on one port."""

    def __init__(self, block: str) -> None:
        self.block = block
        self.port = 0
        self.all: list[Backend] = []
        self.current: list[Backend] = []

    def pod(self, generation: int, index: int) -> Backend:
        backend = Backend(f"{self.block}.{generation * 10 + index + 1}", self.port).start()
        self.port = backend.port
        self.all.append(backend)
        return backend

    def connections(self) -> int:
        return sum(b.connections for b in self.all)

    def stop_all(self) -> None:
        for b in self.all:
            b.stop(0)


def run(quick: bool) -> Suite:
    suite = Suite("rolling")
    # (label, trials, seconds from making the channels to the rolling replacement)
    phases = [("fresh channels", 1, 3.0)]
    if not quick:
        phases = [("channels 31 s old", 3, 31.0), ("fresh channels", 1, 3.0)]
    fleets = {name: _Fleet(block) for name, block in BLOCKS.items()}
    proxy: TcpProxy | None = None
    generation = 0
    with cluster_dns() as (dns_server, label):
        suite.note(
            f"DNS server: {label}; {PODS} pods per contender on 127.0.54-56.x, {CALLERS} "
            f"callers x {RATE:.0f} calls/s per contender; dnsbalance mode=dns poll 1 s; "
            "steady state: the last 10 s before the rolling replacement (2 s for fresh "
            f"channels); window: until "
            f"{SETTLE:.0f} s after the last old pod stopped"
        )
        suite.note(
            "channel age matters for gRPC dns: it re-resolves after a connection fails, but "
            "not sooner than 30 s after its previous resolution (at channel creation). "
            + (
                "Quick mode: fresh channels only (the rolling starts 3 s after they are made)."
                if quick
                else "Measured with channels 31 s old (a long-running client; 3 trials) and "
                "with fresh ones, 3 s old (a client that just started; 1 trial)."
            )
        )
        try:
            for name, fleet in fleets.items():
                for i in range(PODS):
                    pod = fleet.pod(0, i)
                    fleet.current.append(pod)
                    if name in SERVICES:
                        dns_server.add_pod(SERVICES[name], NS, pod.host)
            proxy = TcpProxy(
                f"{BLOCKS[CLUSTER_IP]}.200", [b.address for b in fleets[CLUSTER_IP].current]
            ).start()
            results = []
            for phase, trials, age in phases:
                outs = []
                for _ in range(trials):
                    generation += 1
                    outs.append(_trial(generation, fleets, proxy, dns_server, age))
                results.append((phase, outs))
        finally:
            if proxy is not None:
                proxy.close()
            for fleet in fleets.values():
                fleet.stop_all()
    for phase, outs in results:
        _report(suite, phase if len(results) > 1 else "", outs)
    return suite


def _report(suite: Suite, phase: str, outs: list[dict[str, Any]]) -> None:
    suffix = f" ({phase})" if phase else ""
    prefix = f"{phase}: " if phase else ""
    suite.trials(
        f"rolling replacement of 5 pods: duration{suffix}", [o["seconds"] for o in outs], "s"
    )
    for name in (CLUSTER_IP, NATIVE, DNSBALANCE):
        r = {key: [o[name][key] for o in outs] for key in outs[0][name]}
        errors: Counter[str] = Counter()
        for each in r["errors"]:
            errors.update(each)
        ours = name == DNSBALANCE
        suite.trials(
            f"{name}: failed calls during the rolling replacement{suffix}",
            r["failed"],
            "calls",
            target="0" if ours else "",
            column=name,
            summary="rolling replacement of 5 pods: failed calls (of calls made)",
            cell=f"{prefix}{_cell(r['failed'])} of ~{median(r['calls']):.0f}",
            errors=dict(errors),
            calls=r["calls"],
        )
        if any(r["failing_at_end"]):
            first = [round(x, 1) for x in r["first_failure_s"] if x is not None]
            suite.note(
                f"{name}{suffix}: calls failed from {first} s into the rolling replacement "
                "(per trial) and were all still failing at the end of the window: once the "
                "last old pod stopped it knew no live pod, and grpc re-resolves only after a "
                "failure and not sooner than 30 s after its previous resolution"
            )
        suite.trials(f"{name}: p99 latency, steady state{suffix}", r["p99_steady"], "ms")
        suite.trials(
            f"{name}: p99 latency during the rolling replacement{suffix}", r["p99_roll"], "ms"
        )
        ratios = [a / b for a, b in zip(r["p99_roll"], r["p99_steady"], strict=True)]
        suite.trials(
            f"{name}: p99 during rolling / p99 steady{suffix}",
            ratios,
            "x",
            column=name,
            summary="rolling replacement: p99 latency during / steady (successful calls)",
            cell=f"{prefix}{median(ratios):.2f} ({median(r['p99_roll']):.1f} / "
            f"{median(r['p99_steady']):.1f} ms)",
        )
        suite.trials(
            f"{name}: new connections per rolling replacement of 5{suffix}",
            r["opened"],
            "connections",
            target="5" if ours else "",
            column=name,
            summary="new connections per rolling replacement of 5 pods",
            cell=f"{prefix}{_cell(r['opened'])}",
        )
        spread_end = r["spread_end"]
        suite.add(
            f"{name}: pods serving its calls in the last second of the window{suffix}",
            median(spread_end),
            "pods",
            trials=spread_end,
            column=name,
            summary="pods serving calls at the end of the rolling replacement (of 5)",
            cell=f"{prefix}{_cell(spread_end)}",
        )


def _cell(values: list[int]) -> str:
    text = f"{median(values):g}"
    if len(values) > 1 and min(values) != max(values):
        text += f" ({min(values)}-{max(values)})"
    return text


def _trial(
    generation: int, fleets: dict[str, _Fleet], proxy: TcpProxy, dns_server: Any, age: float
) -> dict[str, Any]:
    """Make the channels, let them run ``age`` seconds (the last 10 s of them, at most
    ``age`` - 1 s, are the steady state), replace every pod, go on SETTLE seconds; the
    figures per contender."""
    d, n = fleets[DNSBALANCE], fleets[NATIVE]
    made = time.monotonic()
    channels: dict[str, Any] = {
        DNSBALANCE: resolve_channel(
            f"{SERVICES[DNSBALANCE]}.{NS}:{d.port}",
            nameservers=[dns_server.address],
            mode="dns",
            poll_interval=1.0,
        ),
        NATIVE: grpc.insecure_channel(
            f"dns://{dns_server.address}/{SERVICES[NATIVE]}.{NS}.svc.cluster.local:{n.port}",
            options=ROUND_ROBIN,
        ),
        CLUSTER_IP: grpc.insecure_channel(proxy.address),
    }
    recorders = {name: Recorder() for name in channels}
    callers = [
        Callers(ch, recorders[name], threads=CALLERS, rate=RATE, limit=120, name=f"roll-{name}")
        for name, ch in channels.items()
    ]
    out: dict[str, Any] = {}
    try:
        for c in callers:
            c.start()
        wait_until(
            lambda: all(
                len(r.first) >= (1 if name == CLUSTER_IP else PODS) for name, r in recorders.items()
            ),
            5,
        )
        steady = min(10.0, age - 1.0)
        time.sleep(max(0.0, made + age - steady - time.monotonic()))
        steady_start = time.monotonic()
        time.sleep(steady)
        before = {name: fleet.connections() for name, fleet in fleets.items()}
        roll_start = time.monotonic()
        events: list[tuple[float, str]] = [(roll_start, "rolling replacement starts")]
        for i in range(PODS):
            _replace(
                generation, i, fleets, proxy, dns_server, channels[DNSBALANCE], recorders, events
            )
        roll_end = time.monotonic()
        time.sleep(SETTLE)
        end = time.monotonic()
    finally:
        for c in callers:
            c.stop()
        for ch in channels.values():
            ch.close()
    out["seconds"] = roll_end - roll_start
    for name, recorder in recorders.items():
        base = [c.seconds for c in recorder.window(steady_start, roll_start) if not c.error]
        calls = recorder.window(roll_start, end)
        ok = [c.seconds for c in calls if not c.error]
        _explain(name, [c for c in calls if c.error], events)
        out[name] = {
            "failed": sum(1 for c in calls if c.error),
            "calls": len(calls),
            "p99_steady": percentile(base, 99) * 1000,
            "p99_roll": percentile(ok, 99) * 1000 if ok else float("nan"),
            "opened": fleets[name].connections() - before[name],
            "errors": Counter(c.error for c in calls if c.error),
            "first_failure_s": min((c.start - roll_start for c in calls if c.error), default=None),
            "failing_at_end": all(c.error for c in recorder.window(end - 0.5, end)),
            "spread_end": len({c.backend for c in recorder.window(end - 1.0, end) if c.backend}),
        }
    return out


def _explain(name: str, failed: list[Call], events: list[tuple[float, str]]) -> None:
    """Print when the first few failed calls started, against what the driver did."""
    for call in failed[:3]:
        at, what = max((e for e in events if e[0] <= call.start), default=events[0])
        print(f"  {name}: call failed ({call.error}) {call.start - at:.3f} s after '{what}'")
    if len(failed) > 3:
        print(f"  {name}: ... {len(failed) - 3} more failed calls")


def _replace(
    generation: int,
    index: int,
    fleets: dict[str, _Fleet],
    proxy: TcpProxy,
    dns_server: Any,
    balanced: Any,
    recorders: dict[str, Recorder],
    events: list[tuple[float, str]],
) -> None:
    """Replace pod ``index`` of every contender: new pod ready, old pod out, old pod stopped.
    What the driver did, and when, goes to ``events``."""
    old = {name: fleet.current[index] for name, fleet in fleets.items()}
    new = {name: fleet.pod(generation, index) for name, fleet in fleets.items()}
    for name, fleet in fleets.items():
        fleet.current[index] = new[name]
    for name, service in SERVICES.items():
        dns_server.add_pod(service, NS, new[name].host)
    proxy.add(new[CLUSTER_IP].address)
    events.append((time.monotonic(), f"pod {index}: new pod added"))
    recorders[DNSBALANCE].wait_first(new[DNSBALANCE].name, 10)
    events.append((time.monotonic(), f"pod {index}: new pod served dnsbalance"))
    for name, service in SERVICES.items():
        dns_server.remove_pod(service, NS, old[name].host)
    proxy.remove(old[CLUSTER_IP].address)
    gone = old[DNSBALANCE].host
    wait_until(lambda: all(ep.address != gone for ep in balanced.endpoints), 10)
    events.append((time.monotonic(), f"pod {index}: old pod out of DNS and of dnsbalance"))
    stoppers = [
        threading.Thread(target=pod.stop, args=(GRACE,), daemon=True) for pod in old.values()
    ]
    for s in stoppers:
        s.start()
    for s in stoppers:
        s.join(GRACE + 5)
    events.append((time.monotonic(), f"pod {index}: old pod stopped"))
