"""Open and close: what a short-lived channel costs, and what an idle one wakes up for.

- **Open + close of one mode-"dns" channel** (target <= 20 ms, median): ``resolve_channel``
  (its first poll of cluster DNS, the process's local DNS started since no other channel
  holds it, the grpc channel, the poller's and drainer's threads), then ``close()``,
  cycle after cycle, each half timed; a call every 20th cycle, as
  tests/reliability/test_load.py does. 1,000 cycles (200 in quick mode) after 50 to warm
  up.
- **Threads and RSS across those cycles** (target: flat): before and after, each once the
  thread count has been steady for 1 s.
- **The local DNS of an idle channel** (target: 0 wake-ups): one channel open and idle
  (no call, default 5 s poll of cluster DNS) for 10 s (3 s in quick mode): how often the
  local DNS server's threads woke up (voluntary context switches) and their CPU time,
  from /proc/self/task/*.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import dnsbalance
from dnsbalance.testing import Backend

from ._common import (
    DNSBALANCE,
    METHOD,
    Suite,
    cluster_dns,
    median,
    percentile,
    settled_status,
    thread_cpu,
    thread_wakeups,
)

BLOCK = "127.0.58"
NS = "bench"
WARM_UP = 50


def run(quick: bool) -> Suite:
    suite = Suite("lifecycle")
    with cluster_dns() as (dns_server, label), Backend(f"{BLOCK}.1", 0) as backend:
        suite.note(f"DNS server: {label}; one backend on {BLOCK}.1")
        dns_server.add_pod("lifecycle", NS, backend.host)
        target = f"lifecycle.{NS}:{backend.port}"
        _open_close(suite, dns_server.address, target, 200 if quick else 1000)
        _idle(suite, dns_server.address, target, 3.0 if quick else 10.0)
    return suite


def _open_close(suite: Suite, nameserver: str, target: str, cycles: int) -> None:
    opens: list[float] = []
    closes: list[float] = []

    def cycle(i: int) -> None:
        start = time.perf_counter()
        channel = dnsbalance.resolve_channel(target, nameservers=[nameserver], mode="dns")
        opened = time.perf_counter()
        if i % 20 == 0:
            channel.unary_unary(METHOD)(b"", timeout=5)
        closing = time.perf_counter()
        channel.close()
        closed = time.perf_counter()
        opens.append((opened - start) * 1000)
        closes.append((closed - closing) * 1000)

    for i in range(WARM_UP):
        cycle(i)
    opens.clear()
    closes.clear()
    before = settled_status()
    started = time.monotonic()
    for i in range(cycles):
        cycle(i)
    wall = time.monotonic() - started
    after = settled_status()
    totals = [o + c for o, c in zip(opens, closes, strict=True)]
    suite.note(
        f"open/close: {cycles} cycles of a mode-dns channel in {wall:.1f} s after {WARM_UP} "
        "to warm up, a call every 20th (not timed)"
    )
    suite.trials(
        "open + close of one mode-dns channel, median",
        totals,
        "ms",
        target="<= 20 ms",
        p95=percentile(totals, 95),
        column=DNSBALANCE,
        summary="open + close of one mode-dns channel, median",
    )
    suite.add(
        "of which open (resolve_channel), median", median(opens), "ms", p95=percentile(opens, 95)
    )
    suite.add("of which close(), median", median(closes), "ms", p95=percentile(closes, 95))
    suite.add(
        f"OS threads before / after {cycles} open/close cycles",
        after["os_threads"] - before["os_threads"],
        "threads",
        target="flat",
        shown=f"{before['os_threads']} / {after['os_threads']}",
    )
    suite.add(
        f"RSS before / after {cycles} open/close cycles",
        (after["rss_kb"] - before["rss_kb"]) / 1024,
        "MiB",
        target="flat",
        shown=f"{before['rss_kb'] / 1024:.1f} / {after['rss_kb'] / 1024:.1f} MiB",
    )


def _idle(suite: Suite, nameserver: str, target: str, seconds: float) -> None:
    with dnsbalance.resolve_channel(target, nameservers=[nameserver], mode="dns") as channel:
        channel.unary_unary(METHOD)(b"", timeout=5)
        port = urlsplit(channel.target).port  # dns://127.0.0.1:PORT/...: the local DNS
        time.sleep(0.5)  # the call's own wake-ups are over

        def ours(name: str) -> bool:
            return name.startswith("dnsbalance-dns-") and name.endswith(f"-{port}")

        wakes, cpu, started = thread_wakeups(), thread_cpu(), time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - started
        woke = sum(
            n - wakes.get(tid, (name, 0))[1]
            for tid, (name, n) in thread_wakeups().items()
            if ours(name)
        )
        spent = sum(
            s - cpu.get(tid, (name, 0.0))[1]
            for tid, (name, s) in thread_cpu().items()
            if ours(name)
        )
        threads = sorted(name for _, (name, _n) in wakes.items() if ours(name))
    suite.note(f"idle: one channel idle {wall:.1f} s; local DNS threads {', '.join(threads)}")
    suite.add(
        "local DNS of an idle channel: wake-ups per second",
        woke / wall,
        "/s",
        target="0",
        column=DNSBALANCE,
        summary="local DNS of an idle channel: wake-ups per second",
    )
    suite.add("local DNS of an idle channel: CPU per 60 s", spent / wall * 60, "CPU s")
