"""Backends misbehaving behind a mode="dns" channel: killed with SIGKILL mid-stream, a
socket that accepts TCP and never speaks HTTP/2, every backend gone and back."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from dnsbalance import BalancedChannel, resolve_channel
from dnsbalance.testing import Backend, DNSResponder
from tests.kits.backends import Fleet, demo_pb2, demo_pb2_grpc, wait_until
from tests.kits.reliability import Callers, CallLog, measured

REPO = Path(__file__).resolve().parents[2]

SERVER = textwrap.dedent(
    """
    import sys
    from dnsbalance.testing import Backend

    backend = Backend(sys.argv[1], int(sys.argv[2]), name=sys.argv[1]).start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes stdin (or kills us)
    backend.stop(0)
    """
)


@contextmanager
def backend_process(host: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A demo backend in its own process (so it can be SIGKILLed), ready when yielded."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, host, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        assert ready, "the backend process did not start within 30 s"
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read() if proc.stderr else ""
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def open_channel(server: DNSResponder, fleet: Fleet, service: str) -> BalancedChannel:
    return resolve_channel(
        f"{service}.ns:{fleet.port}", nameservers=[server.address], mode="dns", poll_interval=0.5
    )


def test_backend_sigkilled_mid_stream(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """kill -9 of one pod: its streams fail UNAVAILABLE, the other streams finish, calls
    go on on the survivors (DNS still lists the dead pod, as it would for a while)."""
    survivors = [fleet.add().host for _ in range(2)]
    victim = f"127.0.{fleet.block}.200"
    with backend_process(victim, fleet.port) as proc:
        for host in [*survivors, victim]:
            cluster_dns.add_pod(unique_service, "ns", host)
        with open_channel(cluster_dns, fleet, unique_service) as channel:
            stub = demo_pb2_grpc.DemoServiceStub(channel)
            everyone = {*survivors, victim}
            assert wait_until(
                lambda: (
                    {stub.Demo(demo_pb2.Empty(), timeout=5).value for _ in range(9)} == everyone
                ),
                10.0,
            )  # connected to all three
            request = demo_pb2.StreamRequest(count=100, interval_ms=20)
            streams = [stub.DemoStream(request, timeout=30) for _ in range(6)]
            firsts = [next(s).value.split(":")[0] for s in streams]
            assert victim in firsts, firsts  # round robin over 3: 2 of the 6
            during = Callers(stub, threads=2, interval=0.005)
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            codes = []
            finished = []
            for stream, first in zip(streams, firsts, strict=True):
                if first == victim:
                    with pytest.raises(grpc.RpcError) as info:
                        list(stream)
                    codes.append(info.value.code())  # type: ignore[attr-defined]
                else:
                    finished.append(len(list(stream)))
            at_kill = during.stop()
            after = CallLog()
            for _ in range(300):
                after.call(stub)
    assert codes == [grpc.StatusCode.UNAVAILABLE] * firsts.count(victim)
    assert finished == [99] * (6 - firsts.count(victim))  # the rest of each stream
    assert after.failed == 0, after.error_kinds()
    assert set(after.values) == set(survivors)
    # Unary calls in flight on the victim at the instant of the kill may fail (at most
    # one per caller thread, or two if a call was picked before grpc saw the socket
    # close); nothing else does.
    assert at_kill.failed <= 4, at_kill.error_kinds()
    assert set(at_kill.error_kinds()) <= {"RpcError UNAVAILABLE"}
    measured(
        "backend SIGKILLed mid-stream",
        f"its {len(codes)} streams failed UNAVAILABLE, {len(finished)} others completed; "
        f"{at_kill.ok} concurrent calls ok ({at_kill.failed} in flight on it failed); "
        f"{after.ok}/300 later calls ok",
        f"{len(codes)} streams + {at_kill.failed} calls (those on the killed pod)",
    )


def test_backend_that_never_speaks_http2(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """A pod whose port accepts TCP (the kernel completes the handshake) but nothing
    ever reads or writes: calls with a deadline all succeed on the others, and rebuilds
    do not wait on it."""
    hosts = [fleet.add().host for _ in range(2)]
    hole = f"127.0.{fleet.block}.201"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((hole, fleet.port))
        listener.listen(64)  # never accept()ed
        for host in [hole, *hosts]:
            cluster_dns.add_pod(unique_service, "ns", host)
        log = CallLog()
        started = time.monotonic()
        with open_channel(cluster_dns, fleet, unique_service) as channel:
            assert hole in {ep.address for ep in channel.endpoints}
            stub = demo_pb2_grpc.DemoServiceStub(channel)
            for _ in range(300):
                log.call(stub, timeout=2.0)
            rebuilt_at = time.monotonic()
            for _ in range(3):
                channel.rebuild()
            rebuild_seconds = (time.monotonic() - rebuilt_at) / 3
            for _ in range(100):
                log.call(stub, timeout=2.0)
        elapsed = time.monotonic() - started
    assert log.failed == 0, log.error_kinds()
    assert set(log.values) == set(hosts)
    assert rebuild_seconds < 2.0  # READY as soon as one endpoint is: no wait on the hole
    assert log.percentile(0.99) < 0.5
    measured(
        "backend accepts TCP, never speaks HTTP/2",
        f"{log.ok} calls (2 s deadline) all on the 2 good pods, p99 "
        f"{log.percentile(0.99) * 1000:.1f} ms; rebuild {rebuild_seconds * 1000:.0f} ms; "
        f"{elapsed:.1f} s in all",
        log.failed,
    )


def test_all_backends_gone_then_back(
    cluster_dns: DNSResponder, fleet: Fleet, unique_service: str
) -> None:
    """Every pod stops: calls fail fast with UNAVAILABLE (no hang). They come back on the
    same addresses: calls succeed again without touching the channel."""
    hosts = [fleet.add().host for _ in range(3)]
    for host in hosts:
        cluster_dns.add_pod(unique_service, "ns", host)
    with open_channel(cluster_dns, fleet, unique_service) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert {stub.Demo(demo_pb2.Empty(), timeout=5).value for _ in range(30)} == set(hosts)
        for host in hosts:
            fleet.stop(host, grace=0)
        down = CallLog()
        # The first calls may find the subchannels reconnecting; then they fail at once.
        for _ in range(30):
            down.call(stub, timeout=10.0)
            time.sleep(0.05)
        for host in hosts:
            fleet.backends[host] = Backend(host, fleet.port, name=host).start()
        back_at = time.monotonic()
        up = CallLog()
        for _ in range(2000):  # bounded: until a call succeeds, or 30 s
            if up.call(stub, timeout=10.0) is not None or time.monotonic() - back_at > 30:
                break
            time.sleep(0.05)
        recovered = time.monotonic() - back_at
        assert up.ok == 1
        assert wait_until(
            lambda: {stub.Demo(demo_pb2.Empty(), timeout=5).value for _ in range(30)} == set(hosts),
            30.0,
            0.2,
        )
        assert channel.generation == 0
    assert down.ok == 0
    assert set(down.error_kinds()) == {"RpcError UNAVAILABLE"}
    assert max(down.latencies) < 2.0, max(down.latencies)  # fail fast, never hang
    assert recovered < 30.0
    measured(
        "every backend gone, then back",
        f"{down.failed} calls failed fast with UNAVAILABLE (slowest "
        f"{max(down.latencies) * 1000:.0f} ms); first call ok {recovered:.1f} s after they "
        f"returned ({up.failed} failed before), all 3 used again, no rebuild",
        f"{down.failed} (no backend to serve them)",
    )
