"""Load and concurrency: many threads across forced rebuilds, close() racing calls and
rebuilds, a thousand channels opened and closed, and a fork."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from dnsbalance import BalancedChannel, ClosedError, resolve_channel
from dnsbalance._channel.base import _Slot
from dnsbalance.testing import DNSResponder
from tests.kits.backends import Fleet, demo_pb2, demo_pb2_grpc, rss_kib, wait_until
from tests.kits.reliability import Callers, channel_threads, measured

REPO = Path(__file__).resolve().parents[2]


def start(server: DNSResponder, fleet: Fleet, service: str, n: int = 3) -> list[str]:
    hosts = [fleet.add().host for _ in range(n)]
    for host in hosts:
        server.add_pod(service, "ns", host)
    return hosts


def open_channel(server: DNSResponder, fleet: Fleet, service: str) -> BalancedChannel:
    return resolve_channel(
        f"{service}.ns:{fleet.port}", nameservers=[server.address], mode="dns", poll_interval=5.0
    )


def record_channels(channel: BalancedChannel) -> list[grpc.Channel]:
    """Every grpc channel the BalancedChannel makes from now on (to check each is closed)."""
    made: list[grpc.Channel] = []
    factory = channel._factory

    def recording(plan: Any) -> grpc.Channel:
        made.append(factory(plan))
        return made[-1]

    channel._factory = recording
    return made


def is_closed(channel: grpc.Channel) -> bool:
    try:
        channel.unary_unary("/demo.DemoService/Demo")(b"", timeout=1.0)
    except ValueError as exc:
        return "closed channel" in str(exc)
    except grpc.RpcError:
        return False
    return False


def test_16_threads_2000_calls_each_across_100_rebuilds(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    hosts = start(cluster_dns, fleet, unique_service)
    channel = open_channel(cluster_dns, fleet, unique_service)
    made = record_channels(channel)
    first = channel._slots.current.channel
    stub = demo_pb2_grpc.DemoServiceStub(channel)
    assert wait_until(
        lambda: {stub.Demo(demo_pb2.Empty(), timeout=5).value for _ in range(9)} == set(hosts),
        5.0,
    )
    started = time.monotonic()
    callers = Callers(stub, threads=16, max_calls=2000, deadline=180.0)
    rebuild_errors: list[BaseException] = []

    def rebuild() -> None:
        for i in range(1, 101):  # one rebuild every ~300 calls, spread over the run
            wait_until(lambda i=i: callers.log.ok + callers.log.failed >= i * 300, 60.0, 0.002)  # type: ignore[misc]
            try:
                channel.rebuild()
            except BaseException as exc:  # reported below
                rebuild_errors.append(exc)

    rebuilder = threading.Thread(target=rebuild, name="rel-rebuilder", daemon=True)
    rebuilder.start()
    log = callers.join(180.0)
    rebuilder.join(60.0)
    elapsed = time.monotonic() - started
    assert not rebuilder.is_alive()
    assert rebuild_errors == []
    assert log.failed == 0, log.error_kinds()
    assert log.ok == 16 * 2000
    assert set(log.values) == set(hosts)
    assert channel.generation == 100
    assert len(made) == 100
    assert wait_until(lambda: not channel._slots.retired, 5.0), len(channel._slots.retired)
    assert all(is_closed(ch) for ch in [first, *made[:-1]])  # every old channel closed
    channel.close()
    assert not channel._slots.retired
    assert is_closed(made[-1])
    assert wait_until(lambda: channel_threads(unique_service) == [], 5.0)
    measured(
        "16 threads x 2,000 calls, 100 forced rebuilds",
        f"{log.ok} calls ok in {elapsed:.1f} s ({log.ok / elapsed:.0f}/s), p99 "
        f"{log.percentile(0.99) * 1000:.1f} ms; 101 grpc channels all closed, no thread left",
        log.failed,
    )


def test_close_racing_calls_and_rebuilds(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """close() while 8 threads call (unary, future, stream) and another rebuilds: calls
    before it succeed, calls it interrupts are CANCELLED (as grpc's close does), calls
    after it raise ClosedError. Nothing hangs, nothing else is raised."""
    hosts = start(cluster_dns, fleet, unique_service)
    outcomes: Counter[str] = Counter()
    after_close: Counter[str] = Counter()
    unexpected: list[str] = []
    lock = threading.Lock()
    for _ in range(5):
        channel = open_channel(cluster_dns, fleet, unique_service)
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert stub.Demo(demo_pb2.Empty(), timeout=5).value in hosts
        closed = threading.Event()

        def call(kind: int, stub: Any = stub) -> None:
            if kind == 0:
                stub.Demo(demo_pb2.Empty(), timeout=5)
            elif kind == 1:
                stub.Demo.future(demo_pb2.Empty(), timeout=5).result()
            else:
                assert len(list(stub.DemoStream(demo_pb2.StreamRequest(count=3), timeout=5))) == 3

        def caller(n: int, closed: threading.Event = closed) -> None:
            extra = 0
            for i in range(100_000):  # bounded; ends 20 calls after close
                done = closed.is_set()
                if done:
                    extra += 1
                    if extra > 20:
                        return
                try:
                    call((i + n) % 3)
                    outcome = "ok"
                except ClosedError:
                    outcome = "ClosedError"
                except grpc.RpcError as exc:
                    outcome = f"RpcError {exc.code().name}"  # type: ignore[attr-defined]
                except BaseException as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with lock:
                    (after_close if done else outcomes)[outcome] += 1
                    if outcome not in ("ok", "ClosedError", "RpcError CANCELLED") or (
                        done and outcome != "ClosedError"
                    ):
                        unexpected.append(f"{'after' if done else 'around'} close: {outcome}")
                if outcome == "ClosedError" and not done:
                    closed.wait(0.01)  # close() is still returning: no busy loop meanwhile

        def rebuilder(channel: BalancedChannel = channel) -> None:
            for _ in range(10_000):  # bounded
                if channel.closed:
                    return
                try:
                    channel.rebuild()
                except BaseException as exc:
                    with lock:
                        unexpected.append(f"rebuild: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(8)]
        threads.append(threading.Thread(target=rebuilder, daemon=True))
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        channel.close()
        close_seconds = time.monotonic() - started
        closed.set()
        for thread in threads:
            thread.join(15.0)
        assert not any(t.is_alive() for t in threads), "a call or rebuild hangs after close"
        assert close_seconds < 5.0
        assert wait_until(lambda: channel_threads(unique_service) == [], 5.0)
    assert unexpected == [], Counter(unexpected)
    assert after_close == Counter({"ClosedError": 5 * 8 * 20})
    assert outcomes["ok"] > 20
    measured(
        "close() racing calls and rebuilds (x5)",
        f"before/at close: {dict(outcomes)}; after close: {dict(after_close)}; nothing hung",
        f"{outcomes['RpcError CANCELLED']} cancelled by close (documented)",
    )


@pytest.mark.parametrize("shape", ["unary", "future", "stream"])
def test_call_that_loses_the_race_with_close_gets_closed_error(
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    monkeypatch: pytest.MonkeyPatch,
    shape: str,
) -> None:
    """The narrowest race, made certain: a call has taken its slot (so close() cannot
    refuse it any more) but not yet reached grpc when close() closes the grpc channel.
    It must raise ClosedError like any call after close, not grpc's ValueError."""
    start(cluster_dns, fleet, unique_service, 1)
    channel = open_channel(cluster_dns, fleet, unique_service)
    stub = demo_pb2_grpc.DemoServiceStub(channel)
    stub.Demo(demo_pb2.Empty(), timeout=5)
    taken, go_on = threading.Event(), threading.Event()
    original = _Slot.callable

    class Held:
        """grpc's multicallable, held back just before the call reaches grpc."""

        def __init__(self, real: Any) -> None:
            self._real = real

        def __getattr__(self, name: str) -> Any:
            return self._hold(getattr(self._real, name))

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self._hold(self._real)(*args, **kwargs)

        @staticmethod
        def _hold(function: Any) -> Any:
            def held(*args: Any, **kwargs: Any) -> Any:
                taken.set()
                go_on.wait(10.0)
                return function(*args, **kwargs)

            return held

    monkeypatch.setattr(_Slot, "callable", lambda self, key: Held(original(self, key)))
    raised: list[BaseException] = []

    def call() -> None:
        try:
            if shape == "unary":
                stub.Demo(demo_pb2.Empty(), timeout=5)
            elif shape == "future":
                stub.Demo.future(demo_pb2.Empty(), timeout=5).result()
            else:
                list(stub.DemoStream(demo_pb2.StreamRequest(count=3), timeout=5))
        except BaseException as exc:
            raised.append(exc)

    caller = threading.Thread(target=call, name="rel-racer", daemon=True)
    caller.start()
    assert taken.wait(10.0)
    channel.close()
    go_on.set()
    caller.join(10.0)
    assert not caller.is_alive()
    assert len(raised) == 1
    assert isinstance(raised[0], ClosedError), repr(raised[0])
    assert channel._slots.current.inflight == 0


def settled_threads(timeout: float = 5.0) -> int:
    """The thread count once it has stopped falling for 0.3 s (grpc's connectivity
    threads end up to ~0.2 s after their channel closes)."""
    deadline = time.monotonic() + timeout
    count = len(threading.enumerate())
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = len(threading.enumerate())
        if now >= count:
            return now
        count = now
    return count


def test_1000_open_close_cycles_leak_nothing(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    hosts = start(cluster_dns, fleet, unique_service, 2)

    def cycle(call: bool) -> None:
        with open_channel(cluster_dns, fleet, unique_service) as channel:
            if call:
                stub = demo_pb2_grpc.DemoServiceStub(channel)
                assert stub.Demo(demo_pb2.Empty(), timeout=5).value in hosts

    for i in range(100):  # warm up allocator, grpc pools and the DNS server's threads
        cycle(call=i % 10 == 0)
    gc.collect()
    threads_before, rss_before = settled_threads(), rss_kib()
    started = time.monotonic()
    for i in range(1000):
        cycle(call=i % 20 == 0)
    elapsed = time.monotonic() - started
    gc.collect()
    assert wait_until(lambda: len(threading.enumerate()) <= threads_before, 5.0), (
        threads_before,
        sorted(t.name for t in threading.enumerate()),
    )
    threads_after, rss_after = settled_threads(), rss_kib()
    grown = (rss_after - rss_before) / 1024
    assert grown < 20, (rss_before, rss_after)
    assert channel_threads(unique_service) == []
    measured(
        "1,000 open/close cycles (mode dns, a call every 20th)",
        f"{elapsed:.1f} s; threads {threads_before} -> {threads_after}; RSS "
        f"{rss_before // 1024} -> {rss_after // 1024} MiB ({grown:+.1f})",
        0,
    )


FORK_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import dnsbalance
    from dnsbalance.testing._backend import decode_response

    target, nameserver, parent_first = sys.argv[1], sys.argv[2], sys.argv[3] == "1"

    def names(channel, n=20):
        call = channel.unary_unary("/demo.DemoService/Demo")
        return sorted({decode_response(call(b"", timeout=5)) for _ in range(n)})

    parent = None
    if parent_first:  # the parent has a channel (and its threads) when it forks
        parent = dnsbalance.resolve_channel(target, nameservers=[nameserver], mode="dns")
        names(parent)
    pid = os.fork()
    if pid == 0:
        try:
            with dnsbalance.resolve_channel(target, nameservers=[nameserver], mode="dns") as ch:
                print(json.dumps(names(ch)), flush=True)
            os._exit(0)
        except BaseException as exc:
            print(f"child failed: {exc!r}", file=sys.stderr, flush=True)
            os._exit(1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("child hung", file=sys.stderr, flush=True)
        sys.exit(3)
    if parent is not None:
        names(parent)  # the parent's channel still works after the fork
        parent.close()
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.parametrize(
    ("parent_first", "fork_support"),
    [(False, False), (True, True)],
    ids=["channels-after-fork", "GRPC_ENABLE_FORK_SUPPORT"],
)
def test_child_process_creates_its_own_channel_after_fork(
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    parent_first: bool,
    fork_support: bool,
) -> None:
    """The documented rule: create channels after fork (a pre-fork server's post-fork
    hook), or set GRPC_ENABLE_FORK_SUPPORT=1 to fork with a channel open. Run in a fresh
    interpreter, so the fork does not copy this test process's threads."""
    hosts = start(cluster_dns, fleet, unique_service, 2)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
    if fork_support:
        env["GRPC_ENABLE_FORK_SUPPORT"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            FORK_CHILD,
            f"{unique_service}.ns:{fleet.port}",
            cluster_dns.address,
            "1" if parent_first else "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == sorted(hosts)
    how = "channel open, GRPC_ENABLE_FORK_SUPPORT=1" if fork_support else "no channel before fork"
    measured(
        f"fork ({how})",
        "the child's own channel reached both pods; the parent's still worked",
        0,
    )
