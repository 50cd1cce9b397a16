"""Scale: 1000 endpoints, 100 idle channels, 1000 rebuilds.

- **Discover + rebuild, 1000 endpoints** (target <= 50 ms median): a Service of 1000
  pods in BIND, all of them real and reachable: one grpc server listening on the 1000
  addresses 127.0.60-63.1-250 (one port). A BalancedChannel (built as
  ``resolve_channel`` builds it, with its default 5 s ready timeout, but without a
  poller, so nothing else touches it) is connected to all 1000. Each trial changes DNS
  (the 1000th pod leaves, or comes back: 999 <-> 1000), then times ``discover()``
  (A and AAAA, over TCP: the answer does not fit in UDP) plus ``update()`` to what it
  found. ``update()`` builds a new channel with the same target, which grpc resolves
  itself (the same 1000 records), shares the 999 surviving connections and is READY at
  once; the old channel drains off the caller's path. That is the real cost of a poll
  that finds a change. (Against unreachable endpoints ``update()`` would instead wait
  its ready timeout, 5 s, and measure nothing but that.) Beside it, grpc's own floor:
  one more channel of the same plan, timed from its creation to READY (the part of
  ``update()`` that is grpc's). Before each of the two measurements the last rebuild's
  old channel has been closed by the drainer and 0.2 s have passed, as between two
  real polls (seconds apart): a measurement never shares the 2 cores with the close
  of the 1000-address channel before it (which it did until 2026-12-07: on one tree
  and a quiet machine, 50.7 ms median then, 38.7 ms with the pause).
- **Idle CPU** (target <= 0.2 s per 60 s for 100 channels, 0.33% of a core): 100
  balanced channels, each to its own Service of 3 pods (127.0.57.1-3), default
  poll_interval 5 s, connected, then idle for 60 s in 4 windows (10 s in 2 in quick mode),
  each scaled to 60 s, median reported: ``time.process_time()`` of this process, less
  the same process's idle CPU measured before the channels existed. The cost of the
  DNS lookups alone is measured too (a poller's lookup in a tight loop: A and AAAA
  asked together, the unchanged answer not read again; see dnsbalance._dns.answer_cache).
- **Rebuilds** (target: flat): OS threads and RSS of the process before and after
  1000 ``channel.rebuild()`` (200 in quick mode), each measured once grpc's
  connectivity-polling threads have settled.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

import dnsbalance
from dnsbalance import discover
from dnsbalance._channel.local_dns import local_name
from dnsbalance._channel.sync import BalancedChannel, wait_ready
from dnsbalance._dns.sync import make_resolver, poll_lookup
from dnsbalance._settings import settings_for
from dnsbalance.testing import Backend, Pod
from dnsbalance.testing._backend import SERVICE, encode_response

from ._common import (
    DNSBALANCE,
    METHOD,
    Suite,
    cluster_dns,
    cpu_by_group,
    median,
    percentile,
    process_status,
    settled_status,
    thread_cpu,
    timed,
    wait_until,
)

BIG = 1000
BIG_HOSTS = [f"127.0.{60 + i // 250}.{i % 250 + 1}" for i in range(BIG)]
IDLE_BLOCK = "127.0.57"
IDLE_CHANNELS = 100
IDLE_WINDOWS = 4
NS = "bench"
SETTLE = 0.2  # seconds of quiet before each 1000-endpoint measurement


def run(quick: bool) -> Suite:
    suite = Suite("scale")
    with cluster_dns() as (dns_server, label):
        suite.note(f"DNS server: {label}")
        _thousand(suite, dns_server, trials=10 if quick else 20)
        fleet = [Backend(f"{IDLE_BLOCK}.1", 0)]
        fleet += [Backend(f"{IDLE_BLOCK}.{i}", fleet[0].port) for i in (2, 3)]
        try:
            for b in fleet:
                b.start()
            _rebuilds(suite, dns_server, fleet, 200 if quick else 1000)
            _idle(suite, dns_server, fleet, 10.0 if quick else 60.0, 2 if quick else IDLE_WINDOWS)
        finally:
            for b in fleet:
                b.stop(0)
    return suite


class _ManyAddresses:
    """One grpc server of the demo service listening on many addresses (one port)."""

    def __init__(self, hosts: list[str]) -> None:
        self._server = grpc.server(ThreadPoolExecutor(8), options=(("grpc.so_reuseport", 0),))
        handler = grpc.unary_unary_rpc_method_handler(self._demo)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Demo": handler}),)
        )
        self.port = self._server.add_insecure_port(f"{hosts[0]}:0")
        for host in hosts[1:]:
            if not self._server.add_insecure_port(f"{host}:{self.port}"):
                raise OSError(f"could not bind {host}:{self.port}")

    def _demo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return encode_response("many")

    def __enter__(self) -> _ManyAddresses:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(0).wait()


def _thousand(suite: Suite, dns_server: Any, trials: int) -> None:
    with _ManyAddresses(BIG_HOSTS) as server:
        dns_server.set_service("big", NS, [Pod(ip=h) for h in BIG_HOSTS])
        settings = settings_for(
            f"big.{NS}:{server.port}", nameservers=[dns_server.address], mode="dns"
        )
        resolver = make_resolver([dns_server.address], timeout=5.0)
        found = discover(settings.target, resolver=resolver)
        assert len(found) == BIG, len(found)
        local = local_name()  # as resolve_channel wires mode "dns"
        local.publish(found)
        plan = settings.local_plan(local)
        factory = settings.channel_factory(grpc.insecure_channel, grpc.secure_channel)
        channel = BalancedChannel(name=settings.name, plan=plan, factory=factory, endpoints=found)
        try:
            demo = channel.unary_unary(METHOD)
            for _ in range(2 * BIG):  # round_robin connects to every pod
                demo(b"", timeout=10)
            walls: dict[str, list[float]] = {"discover": [], "update": [], "total": [], "grpc": []}
            failed = 0
            for trial in range(trials):
                _settle(channel)
                if trial % 2 == 0:
                    dns_server.remove_pod("big", NS, BIG_HOSTS[-1])
                else:
                    dns_server.add_pod("big", NS, BIG_HOSTS[-1])
                expected = BIG - 1 if trial % 2 == 0 else BIG
                start = time.perf_counter()
                endpoints = discover(settings.target, resolver=resolver)
                middle = time.perf_counter()
                local.publish(endpoints)
                changed = channel.update(endpoints)
                end = time.perf_counter()
                if not changed or len(endpoints) != expected:
                    failed += 1
                walls["discover"].append((middle - start) * 1000)
                walls["update"].append((end - middle) * 1000)
                walls["total"].append((end - start) * 1000)
                for _ in range(20):  # a few calls on the new channel between trials
                    demo(b"", timeout=10)
                # grpc's own floor: one more channel of the same plan (target on the
                # local DNS, options), from its creation to READY, nothing else.
                _settle(channel)
                start = time.perf_counter()
                alone = factory(plan(endpoints))
                try:
                    if not wait_ready(alone, 10.0, lambda: False):
                        failed += 1
                finally:
                    walls["grpc"].append((time.perf_counter() - start) * 1000)
                    alone.close()
        finally:
            channel.close()
            local.close()
    suite.note(
        f"1000 endpoints: {trials} trials alternating 1000 -> 999 and 999 -> 1000 endpoints, "
        "after 2000 calls over the 1000 pods"
    )
    suite.trials(
        "discover() + update(), 1000 endpoints (reachable), median",
        walls["total"],
        "ms",
        target="<= 50 ms",
        p95=percentile(walls["total"], 95),
        column=DNSBALANCE,
        summary="discover + rebuild, 1000 endpoints, median",
    )
    suite.trials("of which discover(), 1000 A records over TCP", walls["discover"], "ms")
    suite.trials("of which publish + update() (new channel READY, swap)", walls["update"], "ms")
    suite.trials(
        "grpc alone, same run: a new channel of the same plan (local DNS, options), created "
        "to READY",
        walls["grpc"],
        "ms",
    )
    suite.add("failed or unchanged updates", failed, "trials", target="0")


def _settle(channel: BalancedChannel) -> None:
    """Let the last rebuild's old channel be closed (by the drainer, on its own thread)
    before the next measurement: polls that find a change are seconds apart, so a
    rebuild never shares the CPU with the close of the one before it."""
    wait_until(lambda: not channel._slots.retired, 5.0)
    time.sleep(SETTLE)


def _rebuilds(suite: Suite, dns_server: Any, fleet: list[Backend], rebuilds: int) -> None:
    for b in fleet:
        dns_server.add_pod("rebuild", NS, b.host)
    with dnsbalance.resolve_channel(
        f"rebuild.{NS}:{fleet[0].port}", nameservers=[dns_server.address], mode="dns"
    ) as channel:
        demo = channel.unary_unary(METHOD)
        for _ in range(30):
            channel.rebuild()
            demo(b"", timeout=5)
        before = settled_status()
        walls, _ = timed(channel.rebuild, rebuilds)
        for _ in range(10):
            demo(b"", timeout=5)
        after = settled_status()
        generation = channel.generation
    suite.note(
        f"rebuilds: {rebuilds} rebuilds (generation {generation}); before/after measured once "
        "the thread count had been steady for 1 s"
    )
    suite.add(
        f"OS threads before / after {rebuilds} rebuilds",
        after["os_threads"] - before["os_threads"],
        "threads",
        target="flat",
        before=before,
        after=after,
        shown=f"{before['os_threads']} / {after['os_threads']}",
        column=DNSBALANCE,
        summary=f"OS threads before / after {rebuilds} rebuilds",
    )
    grew = (after["rss_kb"] - before["rss_kb"]) / 1024
    suite.add(
        f"RSS before / after {rebuilds} rebuilds",
        grew,
        "MiB",
        target="flat",
        shown=f"{before['rss_kb'] / 1024:.1f} / {after['rss_kb'] / 1024:.1f} MiB",
        column=DNSBALANCE,
        summary=f"RSS before / after {rebuilds} rebuilds",
    )
    suite.add(
        "rebuild() wall time, median",
        median(walls) * 1000,
        "ms",
        p95_ms=percentile(walls, 95) * 1000,
    )


def _idle(suite: Suite, dns_server: Any, fleet: list[Backend], window: float, windows: int) -> None:
    port = fleet[0].port
    for i in range(IDLE_CHANNELS):
        dns_server.set_service(f"idle-{i}", NS, [b.host for b in fleet])
    # This process's CPU while idle without the channels: backends, BIND's client, ...
    quiet = min(5.0, window * 0.3)
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(quiet)
    baseline = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    channels = []
    try:
        for i in range(IDLE_CHANNELS):
            channels.append(
                dnsbalance.resolve_channel(
                    f"idle-{i}.{NS}:{port}", nameservers=[dns_server.address], mode="dns"
                )
            )
        for channel in channels:
            channel.unary_unary(METHOD)(b"", timeout=5)
        wait_until(lambda: False, 1.0, step=0.5)  # let the first calls' threads settle
        threads = process_status()
        per_thread, started = thread_cpu(), time.monotonic()
        per_minute = []  # one figure per window: the median resists a noisy neighbour
        for _ in range(windows):
            cpu0, wall0 = time.process_time(), time.monotonic()
            time.sleep(window / windows)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            per_minute.append((cpu / wall - baseline) * 60)
        wall = time.monotonic() - started
        groups = cpu_by_group(per_thread, thread_cpu(), _thread_group)
        rebuilt = sum(ch.generation for ch in channels)
    finally:
        for channel in channels:
            channel.close()
    target = dnsbalance.parse_target(f"idle-0.{NS}:{port}", cluster_domain="cluster.local")
    lookup = poll_lookup(target, make_resolver([dns_server.address], timeout=5.0))
    lookup()
    _, per_poll = timed(lookup, 200)
    polls_per_minute = IDLE_CHANNELS * 60 / 5.0
    suite.note(
        f"idle: {IDLE_CHANNELS} channels idle for {wall:.0f} s in {windows} windows, "
        "each scaled to 60 s; baseline "
        f"{baseline * 60:.2f} CPU s/min without them; {rebuilt} rebuilds during the windows; "
        f"{threads['threads']} Python / {threads['os_threads']} OS threads with the channels"
    )
    suite.trials(
        f"CPU of {IDLE_CHANNELS} idle balanced channels (poll 5 s) per 60 s",
        per_minute,
        "CPU s",
        target="<= 0.2 CPU s",
        window_s=wall,
        baseline_cpu_s_per_min=baseline * 60,
        column=DNSBALANCE,
        summary="CPU of 100 idle channels (poll 5 s) per 60 s",
    )
    suite.add(
        "DNS lookups alone (tight loop): CPU per unchanged poll x 1200 polls/min",
        per_poll * polls_per_minute,
        "CPU s",
        per_poll_ms=per_poll * 1000,
    )
    scaled = {name: round(seconds / wall * 60, 3) for name, seconds in groups.items()}
    suite.add(
        "the same CPU per 60 s by thread: dnsbalance pollers",
        scaled.get("dnsbalance pollers", 0.0),
        "CPU s",
        by_thread=scaled,
    )
    suite.note(
        "idle CPU per 60 s by thread (scheduler run time from /proc/self/task/*/schedstat): "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in sorted(scaled.items()))
    )


def _thread_group(name: str) -> str:
    if name.startswith("dnsbalance-poll"):
        return "dnsbalance pollers"
    if name.startswith("dnsbalance-"):
        return "other dnsbalance threads"
    if name == "native":
        return "grpc core and other native threads"
    if name.startswith("backend-"):
        return "backend servers"
    return "other Python threads"
