"""The demo (examples/demo) run for real: server.py as three processes on 127.0.251.x (one
port, as pods of one Service), client.py as a process balancing over them through the
embedded cluster DNS (``dnsbalance.testing.DNSResponder``), and the generated code
reproduced by generate.sh.

- ``/getResponse`` through dnsbalance names all three servers; with ``--plain`` (one
  ``grpc.insecure_channel`` over the same three addresses, pick_first) it names one.
- A server's graceful shutdown: SIGTERM turns its health NOT_SERVING, it keeps serving
  for ``--drain-seconds``, exits 0 within drain + grace, and the client's calls keep
  succeeding while it leaves DNS.

Every process is started by this module and killed by its PID in a ``finally``; every
wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dnsbalance.testing import DNSResponder
from tests.kits.backends import demo_pb2, demo_pb2_grpc

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"
BLOCK = "127.0.251"  # conftest's fleets use 127.0.2.x .. 127.0.249.x
SERVICE, NAMESPACE = "grpc-server-service", "example"
NAMES = ("pod-a", "pod-b", "pod-c")
STARTUP_TIMEOUT = 15.0


# -- processes ------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """This environment without what would change how grpc dials (proxies, resolver)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and k != "GRPC_DNS_RESOLVER"
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """One example script in a subprocess; its output goes to a file (never a full pipe)."""

    def __init__(self, script: str, *args: str) -> None:
        self.args = [sys.executable, str(DEMO / script), *args]
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in kill())
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=DEMO,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL this process (by its PID) if it still runs, and reap it."""
        try:
            if self.alive():
                self.proc.kill()
            self.proc.wait(10)
        finally:
            self._log.close()


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    """A list to start processes into; each one is killed on the way out."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            process.kill()


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    if not condition():
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


def free_port(hosts: list[str]) -> int:
    """A TCP port free on every host (tried a bounded number of times)."""
    for _ in range(50):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            first.bind((hosts[0], 0))
            port: int = first.getsockname()[1]
            try:
                for host in hosts[1:]:
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind((host, port))
            except OSError:
                continue
            return port
    pytest.fail("no TCP port free on all of " + ", ".join(hosts))


# -- gRPC and HTTP helpers ------------------------------------------------------------


def health_status(address: str, timeout: float = 1.0) -> int | None:
    """The server's overall health status, or None when it does not answer."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return None
        return int(reply.status)


def http_get(port: int, path: str, timeout: float = 30.0) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(body) if kind.startswith("application/json") else body
    finally:
        connection.close()


def answers(port: int, path: str) -> bool:
    try:
        return http_get(port, path, timeout=2.0)[0] == 200
    except OSError:
        return False


def distinct_values(port: int) -> list[str]:
    status, body = http_get(port, "/getResponse")
    assert status == 200, body
    assert isinstance(body, list)
    return body


def values_until(port: int, expected: set[str], timeout: float) -> list[str]:
    """/getResponse until its values are exactly ``expected`` (round_robin connects to
    new backends in the background), or fail with the last answer."""
    deadline = time.monotonic() + timeout
    values = distinct_values(port)
    while set(values) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        values = distinct_values(port)
    assert set(values) == expected
    return values


# -- the demo, started once for the module ----------------------------------------------


class Demo:
    def __init__(self, dns: DNSResponder, port: int, hosts: list[str]) -> None:
        self.dns = dns
        self.port = port
        self.hosts = hosts
        self.servers: dict[str, Process] = {}

    def address(self, host: str) -> str:
        return f"{host}:{self.port}"

    def start_server(self, started: list[Process], host: str, name: str, *extra: str) -> Process:
        server = Process(
            "server.py", "--host", host, "--port", str(self.port), "--name", name, *extra
        )
        started.append(server)
        self.servers[name] = server
        return server

    def wait_serving(self, name: str, host: str) -> None:
        server = self.servers[name]

        def serving() -> bool:
            if not server.alive():
                pytest.fail(f"server {name} exited {server.proc.returncode}:\n{server.output()}")
            return health_status(self.address(host)) == health_pb2.HealthCheckResponse.SERVING

        wait_for(serving, STARTUP_TIMEOUT, f"server {name} on {host} to serve")

    def start_client(self, started: list[Process], *args: str) -> tuple[Process, int]:
        http_port = free_port(["127.0.0.1"])
        client = Process("client.py", "--listen", f"127.0.0.1:{http_port}", *args)
        started.append(client)

        def up() -> bool:
            if not client.alive():
                pytest.fail(f"client exited {client.proc.returncode}:\n{client.output()}")
            return answers(http_port, "/healthz")

        wait_for(up, STARTUP_TIMEOUT, "the client's /healthz")
        return client, http_port


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    hosts = [f"{BLOCK}.{i}" for i in range(1, 5)]  # .4: the server the shutdown test adds
    with DNSResponder() as dns, processes() as started:
        state = Demo(dns, free_port(hosts), hosts)
        for host, name in zip(hosts, NAMES, strict=False):
            state.start_server(started, host, name)
        for host, name in zip(hosts, NAMES, strict=False):
            state.wait_serving(name, host)
            dns.add_pod(SERVICE, NAMESPACE, host)
        yield state


@pytest.fixture(scope="module")
def balanced_client(demo: Demo) -> Iterator[int]:
    """client.py through dnsbalance (mode dns, the embedded DNS); its HTTP port."""
    with processes() as started:
        client, port = demo.start_client(
            started,
            "--target",
            f"kubernetes:///{SERVICE}.{NAMESPACE}:{demo.port}",
            "--mode",
            "dns",
            "--nameserver",
            demo.dns.address,
            "--cluster-domain",
            "cluster.local",
            "--poll-interval",
            "0.3",
        )
        yield port
        client.signal(signal.SIGTERM)
        assert client.wait(10) == 0, client.output()
        assert "channel closed" in client.output()


# -- tests ------------------------------------------------------------------------------


def test_balanced_client_reaches_every_server(balanced_client: int) -> None:
    values = values_until(balanced_client, set(NAMES), timeout=10)
    assert len(values) == 3
    # Once connected, round_robin spreads every batch of 10 calls over all three.
    for _ in range(3):
        assert sorted(distinct_values(balanced_client)) == sorted(NAMES)


def test_client_health_and_unknown_paths(balanced_client: int) -> None:
    assert http_get(balanced_client, "/healthz") == (200, "ok\n")
    status, body = http_get(balanced_client, "/nope")
    assert status == 404
    assert body == {"error": "no such path: /nope"}


def test_plain_client_reaches_one_server(demo: Demo) -> None:
    """The same three addresses through a plain grpc channel: pick_first, one server."""
    target = "ipv4:" + ",".join(demo.address(h) for h in demo.hosts[:3])
    with processes() as started:
        client, port = demo.start_client(started, "--plain", "--target", target)
        seen = {tuple(distinct_values(port)) for _ in range(3)}
        assert len(seen) == 1
        (values,) = seen
        assert len(values) == 1
        assert values[0] in NAMES
        client.signal(signal.SIGTERM)
        assert client.wait(10) == 0, client.output()


def test_server_drains_then_exits_and_the_client_never_fails(
    demo: Demo, balanced_client: int
) -> None:
    host, name, drain, grace = demo.hosts[3], "pod-d", 3.0, 1.0
    with processes() as started:
        server = demo.start_server(
            started, host, name, "--drain-seconds", str(drain), "--grace", str(grace)
        )
        demo.wait_serving(name, host)
        demo.dns.add_pod(SERVICE, NAMESPACE, host)
        try:
            values_until(balanced_client, {*NAMES, name}, timeout=10)
            server.signal(signal.SIGTERM)
            sent = time.monotonic()
            wait_for(
                lambda: (
                    health_status(demo.address(host)) == health_pb2.HealthCheckResponse.NOT_SERVING
                ),
                drain / 2,
                "NOT_SERVING during the drain",
            )
            # Still in DNS, but the client's health checking already skips it...
            values_until(balanced_client, set(NAMES), timeout=drain / 2)
            for _ in range(3):
                assert sorted(distinct_values(balanced_client)) == sorted(NAMES)
            # ...while it still serves whoever calls it (clients following DNS only).
            assert server.alive()
            with grpc.insecure_channel(demo.address(host)) as channel:
                stub = demo_pb2_grpc.DemoServiceStub(channel)
                assert stub.Demo(demo_pb2.Empty(), timeout=2).value == name
        finally:
            # Kubernetes: the terminating pod leaves DNS (and the EndpointSlices).
            demo.dns.remove_pod(SERVICE, NAMESPACE, host)
        for _ in range(5):
            assert set(distinct_values(balanced_client)) <= set(NAMES)
        assert server.wait(drain + grace + 5) == 0, server.output()
        elapsed = time.monotonic() - sent
        assert drain - 0.2 <= elapsed <= drain + grace + 5, "it drained, then stopped"
        log = server.output()
        assert "received SIGTERM" in log
        assert f"health NOT_SERVING; draining for {drain:.1f} s" in log
        assert log.rstrip().endswith("stopped")
    # The next calls go to the three that are left.
    assert sorted(values_until(balanced_client, set(NAMES), timeout=10)) == sorted(NAMES)


def test_server_streaming_and_client_streaming_methods(demo: Demo) -> None:
    with grpc.insecure_channel(demo.address(demo.hosts[0])) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        stream = stub.DemoStream(demo_pb2.StreamRequest(count=3, interval_ms=10), timeout=5)
        assert [r.value for r in stream] == ["pod-a:0", "pod-a:1", "pod-a:2"]
        sent = iter([demo_pb2.Response(value=v) for v in ("x", "y")])
        assert stub.Collect(sent, timeout=5).value == "pod-a:x,y"
        chat = stub.Chat(iter([demo_pb2.Response(value=v) for v in ("hi", "yo")]), timeout=5)
        assert [r.value for r in chat] == ["pod-a:hi", "pod-a:yo"]


def test_server_exits_1_when_it_cannot_listen(demo: Demo) -> None:
    """The port is taken (a running server, and no SO_REUSEPORT): exit 1, with a message."""
    with processes() as started:
        clash = demo.start_server(started, demo.hosts[0], "clash")
        assert clash.wait(STARTUP_TIMEOUT) == 1
        assert "cannot listen on" in clash.output()


# -- the generated code ---------------------------------------------------------------------


def test_generate_sh_reproduces_the_committed_code(tmp_path: Path) -> None:
    grpc_tools = pytest.importorskip("grpc_tools")
    from importlib.metadata import version

    committed = (DEMO / "demo_pb2_grpc.py").read_text(encoding="utf-8")
    match = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'$", committed, re.MULTILINE)
    assert match is not None
    installed = version("grpcio-tools")
    if installed != match.group(1):
        pytest.skip(
            f"grpcio-tools {installed} is installed; the code was generated with "
            f"{match.group(1)}, and each version writes its own version checks"
        )
    assert grpc_tools.__name__ == "grpc_tools"
    for name in ("generate.sh", "demo.proto"):
        shutil.copy2(DEMO / name, tmp_path / name)
    done = subprocess.run(
        ["bash", str(tmp_path / "generate.sh")],
        env={**child_env(), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    generated = sorted(p.name for p in tmp_path.glob("demo_pb2*"))
    assert generated == ["demo_pb2.py", "demo_pb2.pyi", "demo_pb2_grpc.py"]
    for name in generated:
        assert (tmp_path / name).read_bytes() == (DEMO / name).read_bytes(), name
