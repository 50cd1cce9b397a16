"""A real gRPC backend for tests and the demo: ``demo.DemoService`` without protobuf.

It speaks the wire format of ``examples/demo/demo.proto`` (so the generated
``DemoServiceStub`` works against it) with hand-encoded messages, which keeps
protobuf out of dnsbalance's runtime dependencies. Each backend answers with its
own name and records the peers (one per client TCP connection) it served. Faults on
demand, for ``Demo`` calls, while the server stays up (a pod that is Ready but
failing, or slow): ``fail_every`` (0 never, 1 every call, 2 every other call, ...)
answers with ``fail_code`` (UNAVAILABLE), ``delay`` seconds before each answer.

Methods (``/demo.DemoService/...``): ``Demo(Empty) -> Response{value}``,
``DemoStream(StreamRequest{count, interval_ms}) -> stream Response``,
``Collect(stream Response) -> Response`` (joins the values),
``Chat(stream Response) -> stream Response`` (echoes each value with the name).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import grpc
import grpc.aio

from dnsbalance._demo_proto import (
    SERVICE,
    decode_response,
    encode_response,
    stream_request,
)

__all__ = ["AioBackend", "Backend", "decode_response", "encode_response"]


class _HasPeer(Protocol):
    def peer(self) -> str: ...


class _DemoService:
    """The demo service's handlers and what they count, for either kind of server."""

    def __init__(self, host: str, name: str | None) -> None:
        self.host = host
        self.name = name or host
        self._lock = threading.Lock()
        self.calls = 0
        self.peers: Counter[str] = Counter()
        self.port = 0
        self.fail_every = 0
        self.fail_code = grpc.StatusCode.UNAVAILABLE
        self.delay = 0.0
        self.failures = 0

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Distinct client connections that carried at least one call."""
        with self._lock:
            return len(self.peers)

    def _handler(self) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "Demo": grpc.unary_unary_rpc_method_handler(self._demo),
            "DemoStream": grpc.unary_stream_rpc_method_handler(self._demo_stream),
            "Collect": grpc.stream_unary_rpc_method_handler(self._collect),
            "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _bind(self, server: Any, port: int, credentials: grpc.ServerCredentials | None) -> None:
        bind = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
        if credentials is None:
            self.port = server.add_insecure_port(bind)
        else:
            self.port = server.add_secure_port(bind, credentials)
        if not self.port:
            raise OSError(f"could not bind {bind}")

    def _count(self, context: _HasPeer) -> int:
        with self._lock:
            self.calls += 1
            self.peers[context.peer()] += 1
            return self.calls

    def _failing(self, number: int) -> str | None:
        """Why call ``number`` fails on purpose (``fail_every``), or None."""
        every = self.fail_every
        if not every or number % every:
            return None
        with self._lock:
            self.failures += 1
        return f"{self.name}: failing on purpose (fail_every={every})"

    def _demo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        number = self._count(context)
        if self.delay:
            time.sleep(self.delay)
        why = self._failing(number)
        if why is not None:
            context.abort(self.fail_code, why)
        return encode_response(self.name)

    def _demo_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._count(context)
        count, interval_ms = stream_request(request)
        for i in range(count):
            if i and interval_ms:
                time.sleep(interval_ms / 1000)
            yield encode_response(f"{self.name}:{i}")

    def _collect(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self._count(context)
        values = [decode_response(r) for r in requests]
        return encode_response(f"{self.name}:{','.join(values)}")

    def _chat(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._count(context)
        for request in requests:
            yield encode_response(f"{self.name}:{decode_response(request)}")


class Backend(_DemoService):
    """One gRPC server on ``host:port`` (port 0 picks one) named ``name``.

    ``calls`` counts calls served (``failures``: those failed on purpose), ``peers``
    the distinct client connections seen (``ipv4:127.0.0.1:PORT``: one per TCP
    connection). ``health=True`` adds the
    standard health service (needs grpcio-health-checking); ``set_serving``
    flips it. Server option ``grpc.so_reuseport`` is off, so two backends can
    never silently share one address.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str | None = None,
        health: bool = False,
        server_credentials: grpc.ServerCredentials | None = None,
        max_workers: int = 16,
        options: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        super().__init__(host, name)
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix=f"backend-{self.name}")
        self._server = grpc.server(self._executor, options=(("grpc.so_reuseport", 0), *options))
        self._server.add_generic_rpc_handlers((self._handler(),))
        self._health: Any = None
        if health:
            from grpc_health.v1 import health as health_mod
            from grpc_health.v1 import health_pb2_grpc

            self._health = health_mod.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
            self.set_serving(True)
        self._bind(self._server, port, server_credentials)
        self._stopped = False

    def start(self) -> Backend:
        self._server.start()
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop gracefully: refuse new calls (GOAWAY), let running ones finish for ``grace``."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stop(grace).wait()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def set_serving(self, serving: bool) -> None:
        from grpc_health.v1 import health_pb2

        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self._health.set("", status)

    def __enter__(self) -> Backend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(0)


class AioBackend(_DemoService):
    """The same service on a ``grpc.aio`` server with native async handlers, for asyncio
    tests. ``await start()``, ``await stop(grace)``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str | None = None,
        server_credentials: grpc.ServerCredentials | None = None,
        max_workers: int = 16,
        options: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        super().__init__(host, name)
        self._server = grpc.aio.server(options=(("grpc.so_reuseport", 0), *options))
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "Demo": grpc.unary_unary_rpc_method_handler(self._demo_async),
            "DemoStream": grpc.unary_stream_rpc_method_handler(self._demo_stream_async),
            "Collect": grpc.stream_unary_rpc_method_handler(self._collect_async),
            "Chat": grpc.stream_stream_rpc_method_handler(self._chat_async),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self._bind(self._server, port, server_credentials)
        self._stopped = False

    async def start(self) -> AioBackend:
        await self._server.start()
        return self

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop gracefully: refuse new calls, let running ones finish for ``grace``."""
        if self._stopped:
            return
        self._stopped = True
        await self._server.stop(grace)

    async def _demo_async(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        number = self._count(context)
        if self.delay:
            await asyncio.sleep(self.delay)
        why = self._failing(number)
        if why is not None:
            await context.abort(self.fail_code, why)
        return encode_response(self.name)

    async def _demo_stream_async(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        self._count(context)
        count, interval_ms = stream_request(request)
        for i in range(count):
            if i and interval_ms:
                await asyncio.sleep(interval_ms / 1000)
            yield encode_response(f"{self.name}:{i}")

    async def _collect_async(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        self._count(context)
        values = [decode_response(r) async for r in requests]
        return encode_response(f"{self.name}:{','.join(values)}")

    async def _chat_async(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        self._count(context)
        async for request in requests:
            yield encode_response(f"{self.name}:{decode_response(request)}")

    async def __aenter__(self) -> AioBackend:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(0)
