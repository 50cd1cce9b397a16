# mypy: untyped-calls-exclude=demo_pb2_grpc
"""The demo gRPC server: every pod answers ``Demo`` with its own name.

It implements ``demo.DemoService`` (``demo.proto``, generated code beside this file)
on a synchronous grpc server and serves the standard health service
(``grpc.health.v1.Health``), SERVING while it runs.

Shutdown is graceful, the way dnsbalance clients need it (see the README's "Pod
termination"): on SIGTERM or SIGINT the health service turns NOT_SERVING (clients
with client-side health checking stop sending new calls at once), the server keeps
serving for ``--drain-seconds`` so that clients following cluster DNS see the pod
leave, then it stops accepting calls and lets running ones finish for ``--grace``
seconds, and exits 0. A second signal skips the rest of the drain.

    python server.py --port 8000 --name pod-a --drain-seconds 5 --grace 10

The name is ``--name``, else the environment variable ``POD_NAME``, else the host
name (a pod's host name is its name).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

import demo_pb2
import demo_pb2_grpc
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

log = logging.getLogger("demo.server")

SERVICE_NAME = "demo.DemoService"
MAX_STREAM_COUNT = 10_000
MAX_INTERVAL_MS = 60_000


class DemoService(demo_pb2_grpc.DemoServiceServicer):
    """``demo.DemoService``: answers with ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def Demo(self, request: demo_pb2.Empty, context: grpc.ServicerContext) -> demo_pb2.Response:
        return demo_pb2.Response(value=self.name)

    def DemoStream(
        self, request: demo_pb2.StreamRequest, context: grpc.ServicerContext
    ) -> Iterator[demo_pb2.Response]:
        """``count`` responses ``name:i``, ``interval_ms`` apart (both bounded)."""
        count = min(max(request.count, 0), MAX_STREAM_COUNT)
        interval = min(max(request.interval_ms, 0), MAX_INTERVAL_MS) / 1000
        for i in range(count):
            if i and interval:
                time.sleep(interval)
            if not context.is_active():
                return
            yield demo_pb2.Response(value=f"{self.name}:{i}")

    def Collect(
        self, request_iterator: Iterator[demo_pb2.Response], context: grpc.ServicerContext
    ) -> demo_pb2.Response:
        """``name:v1,v2,...`` of the values sent."""
        values = [request.value for request in request_iterator]
        return demo_pb2.Response(value=f"{self.name}:{','.join(values)}")

    def Chat(
        self, request_iterator: Iterator[demo_pb2.Response], context: grpc.ServicerContext
    ) -> Iterator[demo_pb2.Response]:
        """Each value sent, echoed as ``name:value``."""
        for request in request_iterator:
            yield demo_pb2.Response(value=f"{self.name}:{request.value}")


def bind_address(host: str, port: int) -> str:
    """``host:port``, bracketing a bare IPv6 address."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def build_server(
    name: str, address: str, *, workers: int = 16
) -> tuple[grpc.Server, health.HealthServicer, int]:
    """A started-ready (not started) server, its health servicer and the bound port."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="demo-rpc"),
        # One server per address: never share a port silently with another process.
        options=(("grpc.so_reuseport", 0),),
    )
    demo_pb2_grpc.add_DemoServiceServicer_to_server(DemoService(name), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port(address)  # raises RuntimeError when it cannot bind
    if not port:
        raise RuntimeError(f"could not bind {address}")
    return server, health_servicer, port


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="[::]", help="address to listen on (default: [::])")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--name", help="the value Demo answers (default: $POD_NAME, else the host name)"
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=5.0,
        help="after SIGTERM: seconds to keep serving while NOT_SERVING (default: 5)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="then: seconds running calls may take to finish (default: 10)",
    )
    parser.add_argument("--workers", type=int, default=16, help="RPC worker threads")
    args = parser.parse_args(argv)
    if args.drain_seconds < 0 or args.grace < 0:
        parser.error("--drain-seconds and --grace must not be negative")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0..65535")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    name: str = args.name or os.environ.get("POD_NAME") or socket.gethostname()
    stop = threading.Event()
    hurry = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        (hurry if stop.is_set() else stop).set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    address = bind_address(args.host, args.port)
    try:
        server, health_servicer, port = build_server(name, address, workers=args.workers)
    except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
        log.error("cannot listen on %s: %s", address, exc)
        return 1
    server.start()
    log.info("serving %s as %r on %s (port %d)", SERVICE_NAME, name, address, port)

    stop.wait()
    health_servicer.enter_graceful_shutdown()
    log.info("health NOT_SERVING; draining for %.1f s", args.drain_seconds)
    if hurry.wait(args.drain_seconds):
        log.info("second signal: drain cut short")
    log.info("stopping: running calls get %.1f s", args.grace)
    server.stop(args.grace).wait(args.grace + 5)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
