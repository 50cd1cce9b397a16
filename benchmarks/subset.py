"""Subsetting: a fleet of clients over a fleet of pods, each client dialing ``subset_size``.

Real grpc backends (one port, one loopback address each: 127.0.100.x, 127.0.101.x), one
Service in cluster DNS, and many dnsbalance channels in this one process, each with
``mode="dns"``, ``subset_size=k`` and its own ``subset_key`` (``client-<i>``: the same
subsets on every run). Cases:

- spread: C clients x P pods. Every client first calls until each pod of its subset
  has answered it (bounded), then makes exactly 4k calls (round_robin: 4 to each of its
  pods). Figures: connections per pod (distinct client connections that carried a
  call, counted server-side) and calls per pod, max / mean / min, against
  round_robin without subsetting, which gives every pod exactly C connections (each
  client connects to every pod: by construction, not measured) and C x 4k / P calls;
- one pod added, then one removed (the pod most clients had) in the first fleet:
  entries changed in each client's subset (target: at most 1, every client), how many
  clients changed, and the new connections the change opened (round_robin: C for a new
  pod, every client connects to it; 0 for a pod gone, every client is connected to every
  pod already, where a subset takes a replacement);
- a rolling replacement of every pod, subsetting on: each client calls at a steady rate
  while each pod in turn is replaced as in ``benchmarks/rolling.py`` (the new pod in
  DNS and in every client's set; the old pod out of DNS and of every client's set; then
  stopped with a 1 s grace). Figure: failed calls (target 0).
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from dnsbalance import BalancedChannel, resolve_channel
from dnsbalance.testing import Backend

from ._common import METHOD, Callers, Recorder, Suite, cluster_dns, wait_until

NS = "bench"
POLL = 1.0
WORKERS = 8  # threads making the clients' calls
CALLS_PER_MEMBER = 4
GRACE = 1.0


class _Pods:
    """The pods of one Service: one port, one address each in ``block``."""

    def __init__(self, dns: Any, service: str, block: str) -> None:
        self.dns, self.service, self.block = dns, service, block
        self.port = 0
        self.live: list[Backend] = []
        self.all: list[Backend] = []
        self._next = 1

    def add(self) -> Backend:
        backend = Backend(f"{self.block}.{self._next}", self.port, max_workers=4).start()
        self._next += 1
        self.port = backend.port
        self.live.append(backend)
        self.all.append(backend)
        self.dns.add_pod(self.service, NS, backend.host)
        return backend

    def leave_dns(self, backend: Backend) -> None:
        self.live.remove(backend)
        self.dns.remove_pod(self.service, NS, backend.host)

    def close(self) -> None:
        for backend in self.all:
            backend.stop(0)
        for backend in self.live:
            self.dns.remove_pod(self.service, NS, backend.host)


def _clients(pods: _Pods, count: int, size: int) -> list[BalancedChannel]:
    return [
        resolve_channel(
            f"{pods.service}.{NS}:{pods.port}",
            nameservers=[pods.dns.address],
            mode="dns",
            poll_interval=POLL,
            subset_size=size,
            subset_key=f"client-{i}",
        )
        for i in range(count)
    ]


def _warm(clients: list[BalancedChannel], size: int) -> int:
    """Every client calls until each pod of its subset answered (at most 50 x its size:
    round_robin starts on the first connection up). Returns failed calls."""

    def one(channel: BalancedChannel) -> int:
        demo = channel.unary_unary(METHOD)
        failed = 0
        seen: set[bytes] = set()
        for _ in range(50 * size):
            if len(seen) >= len(channel.subset):
                break
            try:
                seen.add(demo(b"", timeout=10))
            except grpc.RpcError:
                failed += 1
        return failed

    return _each(clients, one)


def _call_each(clients: list[BalancedChannel]) -> int:
    """Every client makes CALLS_PER_MEMBER calls per pod of its subset. Returns failed
    calls."""

    def one(channel: BalancedChannel) -> int:
        demo = channel.unary_unary(METHOD)
        failed = 0
        for _ in range(CALLS_PER_MEMBER * len(channel.subset)):
            try:
                demo(b"", timeout=10)
            except grpc.RpcError:
                failed += 1
        return failed

    return _each(clients, one)


def _each(clients: list[BalancedChannel], work: Any) -> int:
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="bench-subset") as pool:
        return sum(pool.map(work, clients))


def _spread(
    suite: Suite, dns: Any, block: str, clients: int, pods: int, size: int, keep: bool
) -> tuple[_Pods, list[BalancedChannel]] | None:
    service = f"subset-{clients}x{pods}"
    fleet = _Pods(dns, service, block)
    channels: list[BalancedChannel] = []
    try:
        for _ in range(pods):
            fleet.add()
        channels = _clients(fleet, clients, size)
        failed = _warm(channels, size)
        before = {b.host: b.calls for b in fleet.live}
        failed += _call_each(channels)
        connections = [b.connections for b in fleet.live]
        calls = [b.calls - before[b.host] for b in fleet.live]
    except BaseException:
        for channel in channels:
            channel.close()
        fleet.close()
        raise
    label = f"{clients} clients x {pods} pods, subset_size={size}"
    mean = clients * size / pods
    suite.add(
        f"{label}: connections per pod, max / mean / min",
        max(connections),
        "",
        shown=f"{max(connections)} / {statistics.mean(connections):.1f} / {min(connections)}",
        target=f"round_robin: {clients} / {clients} / {clients}",
        connections=connections,
        expected_mean=mean,
        summary=f"connections per pod, {label} (max / mean / min)",
        column="dnsbalance",
        cell=f"{max(connections)} / {statistics.mean(connections):.1f} / {min(connections)} "
        f"(round_robin: {clients} each)",
    )
    per_client = CALLS_PER_MEMBER * size
    suite.add(
        f"{label}: calls per pod ({per_client} per client), max / mean / min",
        max(calls),
        "",
        shown=f"{max(calls)} / {statistics.mean(calls):.1f} / {min(calls)}",
        target=f"round_robin: {clients * per_client / pods:g} each",
        calls=calls,
    )
    suite.add(f"{label}: max / mean connections per pod", max(connections) / mean, "x")
    suite.add(f"{label}: failed calls", failed, "calls", target="0")
    if keep:
        return fleet, channels
    for channel in channels:
        channel.close()
    fleet.close()
    return None


def _churn(suite: Suite, fleet: _Pods, channels: list[BalancedChannel], size: int) -> None:
    """One pod added, then the pod most clients dial removed: entries changed per client."""
    label = f"{len(channels)} clients x {len(fleet.live)} pods, subset_size={size}"

    def change(what: str, act: Any, count: int, expected: str, rr_opened: int) -> None:
        before = [set(c.subset) for c in channels]
        opened_before = sum(b.connections for b in fleet.all)
        act()
        settled = wait_until(lambda: all(len(c.endpoints) == count for c in channels), 30.0)
        failed = _warm(channels, size) + _call_each(channels)
        changed = [len(set(c.subset) - old) for c, old in zip(channels, before, strict=True)]
        opened = sum(b.connections for b in fleet.all) - opened_before
        suite.add(
            f"{label}: {what}: entries changed per client's subset, max",
            max(changed),
            "entries",
            target="<= 1, every client",
            changed=changed,
            settled=settled,
            summary=f"{what}: entries changed in a client's subset (max over clients)",
            column="dnsbalance",
            cell=f"{max(changed)} ({sum(1 for n in changed if n)} of {len(channels)} clients "
            f"changed one; {opened} new connections, round_robin: {rr_opened})",
        )
        suite.add(
            f"{label}: {what}: clients whose subset changed",
            sum(1 for n in changed if n),
            "clients",
            target=expected,
        )
        suite.add(
            f"{label}: {what}: new connections opened",
            opened,
            "connections",
            target=f"round_robin: {rr_opened}",
        )
        suite.add(f"{label}: {what}: failed calls", failed, "calls", target="0")

    count = len(fleet.live)
    share = len(channels) * size / (count + 1)
    change(
        "one pod added",
        fleet.add,
        count + 1,
        f"about {share:.1f} (C x k / (P + 1))",
        len(channels),  # every client connects to the new pod
    )
    most = max(fleet.live, key=lambda b: sum(1 for c in channels if b.host in _hosts(c.subset)))
    dialing = sum(1 for c in channels if most.host in _hosts(c.subset))
    change(
        "one pod removed",
        lambda: fleet.leave_dns(most),
        count,
        f"{dialing}: the clients that dialed it (the pod most clients dialed)",
        0,  # round_robin is connected to every pod already
    )
    most.stop(GRACE)


def _hosts(endpoints: tuple[Any, ...]) -> set[str]:
    return {ep.address for ep in endpoints}


def _rolling(suite: Suite, dns: Any, block: str, clients: int, pods: int, size: int) -> None:
    fleet = _Pods(dns, f"subset-roll-{clients}x{pods}", block)
    channels: list[BalancedChannel] = []
    recorder = Recorder()
    callers: list[Callers] = []
    try:
        for _ in range(pods):
            fleet.add()
        channels = _clients(fleet, clients, size)
        callers = [
            Callers(c, recorder, threads=1, rate=20.0, limit=300, name=f"subset-roll-{i}").start()
            for i, c in enumerate(channels)
        ]
        wait_until(lambda: len(recorder.calls) >= clients * 10, 10.0)
        start = time.monotonic()
        for old in list(fleet.live):
            new = fleet.add()
            wait_until(lambda new=new: all(new.host in _hosts(c.endpoints) for c in channels), 30.0)
            fleet.leave_dns(old)
            wait_until(
                lambda old=old: all(old.host not in _hosts(c.endpoints) for c in channels), 30.0
            )
            stopper = threading.Thread(target=old.stop, args=(GRACE,), daemon=True)
            stopper.start()
            stopper.join(GRACE + 5)
        time.sleep(1.0)
        end = time.monotonic()
    finally:
        for c in callers:
            c.stop()
        for channel in channels:
            channel.close()
        fleet.close()
    window = recorder.window(start, end)
    failed = [c for c in window if c.error]
    suite.add(
        f"rolling replacement of {pods} pods, {clients} clients, subset_size={size}: failed calls",
        len(failed),
        "calls",
        target="0",
        calls=len(window),
        seconds=round(end - start, 1),
        errors=sorted({c.error for c in failed}),
        summary="rolling replacement with subsetting: failed calls (of calls made)",
        column="dnsbalance",
        cell=f"{len(failed)} of {len(window)}",
    )


def run(quick: bool) -> Suite:
    suite = Suite("subset")
    if quick:
        spreads = [(20, 10, 3), (30, 6, 2)]
        rolling = (6, 4, 2)
    else:
        spreads = [(100, 50, 10), (200, 20, 5)]
        rolling = (20, 10, 3)
    with cluster_dns() as (dns, label):
        suite.note(
            f"DNS server: {label}; every client is a dnsbalance channel in this process, "
            f"mode=dns, poll {POLL:g} s, subset_key=client-<i> (reproducible subsets); pods "
            "on 127.0.100-102.x; connections are distinct client connections that carried "
            "a call, counted by each server"
        )
        first = _spread(suite, dns, "127.0.100", *spreads[0], keep=True)
        assert first is not None
        fleet, channels = first
        try:
            _churn(suite, fleet, channels, spreads[0][2])
        finally:
            for channel in channels:
                channel.close()
            fleet.close()
        _spread(suite, dns, "127.0.101", *spreads[1], keep=False)
        _rolling(suite, dns, "127.0.102", *rolling)
    return suite
