# mypy: untyped-calls-exclude=demo_pb2_grpc
"""The demo client: an HTTP front end that shows where its gRPC calls land.

``GET /getResponse`` makes 10 ``Demo`` calls and answers with the distinct values
(the names of the pods that served them) as a JSON list, like the Go example this
demo comes from. Through one plain gRPC channel to a Kubernetes Service every call
reaches the same pod, so that list has one name; through
``dnsbalance.resolve_channel`` it has every ready pod's. ``GET /healthz`` answers 200.

    python client.py                                  # in the cluster
    python client.py --plain --target grpc-server-service.example:8000   # one name
    python client.py --mode dns --nameserver 127.0.0.1:5353 --cluster-domain cluster.local

The channel is made once at start-up (its stubs follow every rebuild) and closed on
SIGTERM or SIGINT, after the HTTP server has stopped; the process then exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeAlias

import demo_pb2
import demo_pb2_grpc
import grpc

import dnsbalance

log = logging.getLogger("demo.client")

DEFAULT_TARGET = "kubernetes:///grpc-server-service.example:8000"
CALLS = 10

if TYPE_CHECKING:  # grpc's classes are generic in its type stubs only
    DemoMethod: TypeAlias = grpc.UnaryUnaryMultiCallable[demo_pb2.Empty, demo_pb2.Response]


def demo_method(channel: grpc.Channel) -> DemoMethod:
    """The channel's ``Demo`` method, typed (grpcio-tools generates untyped stubs)."""
    method: DemoMethod = demo_pb2_grpc.DemoServiceStub(channel).Demo
    return method


def plain_target(target: str) -> str:
    """What plain grpc dials for ``target``: kuberesolver's ``kubernetes:`` scheme is
    unknown to grpc, so it becomes ``dns:///<service FQDN>:<port>``."""
    if not target.startswith("kubernetes:"):
        return target
    parsed = dnsbalance.parse_target(target)
    if isinstance(parsed.port, str):
        raise ValueError(f"--plain needs a numeric port, not {parsed.port!r}")
    return f"dns:///{parsed.fqdn}:{parsed.port}"


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    if args.plain:
        target = plain_target(args.target)
        log.info("plain grpc channel to %s (no client-side balancing)", target)
        return grpc.insecure_channel(target)
    channel = dnsbalance.resolve_channel(
        args.target,
        mode=args.mode,
        poll_interval=args.poll_interval,
        nameservers=args.nameserver or None,
        cluster_domain=args.cluster_domain,
        health_check=args.health_check,
    )
    log.info(
        "dnsbalance channel to %s (mode %s): %d endpoint(s)",
        args.target,
        args.mode,
        len(channel.endpoints),
    )
    return channel


class DemoHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that knows the ``Demo`` method to call."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        demo: DemoMethod,
        *,
        rpc_timeout: float,
        family: socket.AddressFamily = socket.AF_INET,
    ) -> None:
        self.address_family = family
        self.demo = demo
        self.rpc_timeout = rpc_timeout
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server: DemoHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/getResponse":
            self._get_response()
        elif path == "/healthz":
            self._reply(HTTPStatus.OK, "ok")
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})

    def _get_response(self) -> None:
        values: list[str] = []
        try:
            for _ in range(CALLS):
                values.append(
                    self.server.demo(demo_pb2.Empty(), timeout=self.server.rpc_timeout).value
                )
        except grpc.RpcError as exc:  # every RpcError a call raises is also a grpc.Call
            code, details = exc.code().name, exc.details() or ""
            log.warning("call %d of %d failed: %s %s", len(values) + 1, CALLS, code, details)
            self._reply(HTTPStatus.BAD_GATEWAY, {"error": code, "message": details})
            return
        except dnsbalance.DnsBalanceError as exc:  # e.g. the channel closed under the call
            self._reply(
                HTTPStatus.SERVICE_UNAVAILABLE, {"error": type(exc).__name__, "message": str(exc)}
            )
            return
        self._reply(HTTPStatus.OK, list(dict.fromkeys(values)))

    def _reply(self, status: HTTPStatus, body: Any) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode() + b"\n"
        self.send_response(status)
        kind = "text/plain" if isinstance(body, str) else "application/json"
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def parse_listen(text: str) -> tuple[str, int, socket.AddressFamily]:
    """``:8080``, ``127.0.0.1:8080`` or ``[::]:8080`` -> (host, port, family)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected [HOST]:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1], int(port_text), socket.AF_INET6
    if ":" in host:
        raise ValueError(f"bracket an IPv6 address: [{host}]:{port_text}")
    return host or "0.0.0.0", int(port_text), socket.AF_INET


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--listen", default=":8080", help="HTTP [HOST]:PORT (default: :8080)")
    parser.add_argument(
        "--target", default=DEFAULT_TARGET, help=f"gRPC target (default: {DEFAULT_TARGET})"
    )
    parser.add_argument(
        "--mode",
        choices=("auto", "dns", "api"),
        default="auto",
        help="dnsbalance discovery mode (default: auto)",
    )
    parser.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="DNS server to poll instead of resolv.conf's (repeatable; for local runs)",
    )
    parser.add_argument("--cluster-domain", help="cluster domain (default: from resolv.conf)")
    parser.add_argument(
        "--poll-interval", type=float, default=5.0, help="seconds between DNS polls (default: 5)"
    )
    parser.add_argument(
        "--health-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="grpc client-side health checking: skip NOT_SERVING pods (default: on)",
    )
    parser.add_argument(
        "--rpc-timeout", type=float, default=5.0, help="deadline of each call in seconds"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="a plain grpc.insecure_channel(target), without dnsbalance, for comparison",
    )
    args = parser.parse_args(argv)
    try:
        args.listen_address = parse_listen(args.listen)
        if args.plain:
            plain_target(args.target)
    except (ValueError, dnsbalance.DnsBalanceError) as exc:
        parser.error(str(exc))
    if args.rpc_timeout <= 0:
        parser.error("--rpc-timeout must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        channel = open_channel(args)
    except dnsbalance.DnsBalanceError as exc:
        log.error("cannot open a channel to %s: %s", args.target, exc)
        return 1
    with channel:
        host, port, family = args.listen_address
        try:
            httpd = DemoHTTPServer(
                (host, port), demo_method(channel), rpc_timeout=args.rpc_timeout, family=family
            )
        except OSError as exc:
            log.error("cannot listen on %s: %s", args.listen, exc)
            return 1
        serving = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
        serving.start()
        log.info("listening on http://%s:%d", host, httpd.server_address[1])
        stop.wait()
        httpd.shutdown()
        httpd.server_close()
        serving.join(5)
    log.info("channel closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
