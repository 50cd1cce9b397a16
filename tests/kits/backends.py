"""Real gRPC backends on 127.0.0.x for the channel tests, and a client stub.

Every backend of one fleet listens on the same port on its own loopback address,
as pods of one Service do on their own IPs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from dnsbalance.testing import AioBackend, Backend

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "demo"))
if os.environ.get("DNSBALANCE_DEMO_STUBS"):  # stubs generated for an older grpcio (lower bounds)
    sys.path.insert(0, os.environ["DNSBALANCE_DEMO_STUBS"])

import demo_pb2
import demo_pb2_grpc

__all__ = [
    "AioFleet",
    "Fleet",
    "call_counts",
    "demo_pb2",
    "demo_pb2_grpc",
    "new_aio_fleet",
    "new_fleet",
    "rss_kib",
    "thread_names",
    "wait_until",
]

_next_block = iter(range(2, 250))
_block_lock = threading.Lock()


def new_fleet() -> Fleet:
    """A fleet on a loopback block no other fleet of this process uses."""
    with _block_lock:
        return Fleet(next(_next_block))


class Fleet:
    """Backends on 127.0.<block>.1..N, one port shared by all."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.port = 0
        self.backends: dict[str, Backend] = {}
        self._next_host = 1

    def add(self, **kwargs: Any) -> Backend:
        host = f"127.0.{self.block}.{self._next_host}"
        self._next_host += 1
        backend = Backend(host, self.port, name=host, **kwargs).start()
        self.port = backend.port
        self.backends[host] = backend
        return backend

    def stop(self, host: str, grace: float = 1.0) -> None:
        self.backends[host].stop(grace)

    def close(self) -> None:
        for backend in self.backends.values():
            backend.stop(0)

    def calls(self) -> dict[str, int]:
        return {host: b.calls for host, b in self.backends.items()}


class AioFleet:
    """Like :class:`Fleet`, with grpc.aio servers (create and use it on one event loop)."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.port = 0
        self.backends: dict[str, AioBackend] = {}
        self._next_host = 1

    async def add(self) -> AioBackend:
        host = f"127.0.{self.block}.{self._next_host}"
        self._next_host += 1
        backend = await AioBackend(host, self.port, name=host).start()
        self.port = backend.port
        self.backends[host] = backend
        return backend

    async def stop(self, host: str, grace: float = 1.0) -> None:
        await self.backends[host].stop(grace)

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.stop(0)

    def calls(self) -> dict[str, int]:
        return {host: b.calls for host, b in self.backends.items()}


def new_aio_fleet() -> AioFleet:
    with _block_lock:
        return AioFleet(next(_next_block))


def call_counts(stub: demo_pb2_grpc.DemoServiceStub, n: int, timeout: float = 5.0) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(n):
        counts[stub.Demo(demo_pb2.Empty(), timeout=timeout).value] += 1
    return counts


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until true or ``timeout`` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


def rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def grpc_error_code(exc: BaseException) -> grpc.StatusCode | None:
    return exc.code() if isinstance(exc, grpc.RpcError) else None
