"""``dnsbalance demo``: the problem and the fix, side by side, on loopback.

N gRPC backends (127.0.77.x, one port) play a Service's pods; the embedded DNS
responder publishes them as a headless Service would. Three clients send the
same steady load:

1. ``clusterip``: a plain channel to one address, as a ClusterIP Service gives
   you (kube-proxy pins the one HTTP/2 connection to one pod);
2. ``grpc-dns``: gRPC's own ``dns:`` resolver with round_robin on the headless
   Service: balanced, but it never re-resolves while its backends are healthy;
3. ``dnsbalance``: :func:`dnsbalance.resolve_channel`.

Part-way through, two more pods appear. The run ends by itself; the result is
plain data (:class:`DemoResult`) that the CLI draws or prints.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from dnsbalance._channel.config import service_config_json
from dnsbalance._demo_proto import METHOD, decode_response
from dnsbalance._wiring import resolve_channel
from dnsbalance.testing import Backend, DNSResponder

__all__ = ["CLIENTS", "DESCRIPTIONS", "DemoResult", "DemoState", "run_demo"]

CLIENTS = ("clusterip", "grpc-dns", "dnsbalance")
DESCRIPTIONS = {
    "clusterip": "plain channel to one address (what a ClusterIP Service gives you)",
    "grpc-dns": "gRPC's dns: resolver + round_robin on the headless Service (balanced, "
    "never uses new backends)",
    "dnsbalance": "dnsbalance.resolve_channel (mode dns)",
}
SERVICE, NAMESPACE = "demo", "default"
BLOCK = "127.0.77"


@dataclass
class DemoState:
    """What the demo has seen so far; the live view reads it while the run goes on."""

    backends: list[str] = field(default_factory=list)
    calls: dict[str, Counter[str]] = field(default_factory=lambda: {c: Counter() for c in CLIENTS})
    errors: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    """The first failure of each client that had one (type and message)."""
    started: float = field(default_factory=time.monotonic)
    scaled_at: float | None = None
    new_backends: list[str] = field(default_factory=list)
    first_use: dict[str, dict[str, float]] = field(default_factory=lambda: {c: {} for c in CLIENTS})
    timeline: dict[str, list[Counter[str]]] = field(
        default_factory=lambda: {c: [] for c in CLIENTS}
    )
    """Calls per backend in each second of the run, per client."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, client: str, backend: str) -> None:
        now = time.monotonic()
        second = int(now - self.started)
        with self.lock:
            self.calls[client][backend] += 1
            buckets = self.timeline[client]
            while len(buckets) <= second:
                buckets.append(Counter())
            buckets[second][backend] += 1
            if (
                self.scaled_at is not None
                and backend in self.new_backends
                and backend not in self.first_use[client]
            ):
                self.first_use[client][backend] = now - self.scaled_at

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class ClientResult:
    name: str
    description: str
    calls: dict[str, int]
    calls_settled: dict[str, int]
    """Calls per backend once the scale-up has settled (the end of the run)."""
    errors: int
    spread: float | None
    """max/min of ``calls_settled`` over all backends; None: some backend got none."""
    timeline: list[dict[str, int]]
    """Calls per backend in each second of the run."""
    seconds_to_use_new_backends: float | None
    """From the scale-up until every new backend had served a call; None: never."""
    failure: str | None = None
    """The first failed call's error, when a call failed."""
    first_balanced: bool = False
    """Every backend of the start got calls (grpc-dns: balanced over those, not the new)."""

    @property
    def ok(self) -> bool:
        """No failed call and balanced over every backend."""
        return self.errors == 0 and self.spread is not None


@dataclass(frozen=True)
class DemoResult:
    backends: list[str]
    new_backends: list[str]
    duration: float
    scale_up_at: float
    clients: list[ClientResult]

    def as_dict(self) -> dict[str, Any]:
        return {
            "backends": self.backends,
            "new_backends": self.new_backends,
            "duration_s": round(self.duration, 2),
            "scale_up_at_s": round(self.scale_up_at, 2),
            "clients": {
                c.name: {
                    "description": c.description,
                    "calls": c.calls,
                    "calls_settled": c.calls_settled,
                    "errors": c.errors,
                    "failure": c.failure,
                    "spread": None if c.spread is None else round(c.spread, 3),
                    "seconds_to_use_new_backends": None
                    if c.seconds_to_use_new_backends is None
                    else round(c.seconds_to_use_new_backends, 2),
                    "timeline": c.timeline,
                }
                for c in self.clients
            },
        }


def run_demo(
    *,
    backends: int = 3,
    added: int = 2,
    duration: float = 20.0,
    rate: float = 100.0,
    poll_interval: float = 1.0,
    on_tick: Callable[[DemoState], None] | None = None,
    tick: float = 0.25,
) -> DemoResult:
    """Run the simulation (``duration`` seconds, bounded) and return what each client did.

    ``rate``: calls per second per client. ``on_tick(state)`` is called every ``tick``
    seconds on the caller's thread (for a live view).
    """
    if not 1 <= backends <= 50:
        raise ValueError("backends must be 1 to 50")
    if not 4.0 <= duration <= 600.0:
        raise ValueError("duration must be 4 to 600 seconds")
    state = DemoState()
    servers: list[Backend] = []
    stop = threading.Event()
    with DNSResponder() as dns_server:
        try:
            port = 0
            for i in range(backends + added):
                server = Backend(f"{BLOCK}.{i + 1}", port, name=f"pod-{i + 1}", max_workers=8)
                port = server.port
                servers.append(server)
            for server in servers[:backends]:
                server.start()
                dns_server.add_pod(SERVICE, NAMESPACE, server.host)
            state.backends = [s.name for s in servers[:backends]]
            channels = _clients(dns_server.address, servers[0].address, port, poll_interval)
            workers = [
                threading.Thread(
                    target=_load,
                    args=(name, channel, state, stop, rate, duration + 5),
                    name=f"demo-{name}",
                    daemon=True,
                )
                for name, channel in channels.items()
            ]
            state.started = time.monotonic()
            for worker in workers:
                worker.start()
            scale_up_at = duration * 0.4
            deadline = state.started + duration
            while time.monotonic() < deadline:
                if state.scaled_at is None and state.elapsed() >= scale_up_at:
                    for server in servers[backends:]:
                        server.start()
                    with state.lock:
                        state.new_backends = [s.name for s in servers[backends:]]
                        state.backends += state.new_backends
                        state.scaled_at = time.monotonic()
                    for server in servers[backends:]:
                        dns_server.add_pod(SERVICE, NAMESPACE, server.host)
                if on_tick is not None:
                    on_tick(state)
                time.sleep(min(tick, max(0.0, deadline - time.monotonic())))
            stop.set()
            for worker in workers:
                worker.join(5)
            if on_tick is not None:
                on_tick(state)
            for channel in channels.values():
                channel.close()
        finally:
            stop.set()
            for server in servers:
                server.stop(0)
    return _result(state, duration, scale_up_at, settle=scale_up_at + 2 * poll_interval + 1)


def _clients(
    dns_address: str, first_backend: str, port: int, poll_interval: float
) -> dict[str, grpc.Channel]:
    round_robin = (("grpc.service_config", service_config_json(None)),)
    fqdn = f"{SERVICE}.{NAMESPACE}.svc.cluster.local:{port}"
    return {
        "clusterip": grpc.insecure_channel(first_backend),
        "grpc-dns": grpc.insecure_channel(f"dns://{dns_address}/{fqdn}", options=round_robin),
        "dnsbalance": resolve_channel(
            f"{SERVICE}.{NAMESPACE}:{port}",
            nameservers=[dns_address],
            mode="dns",
            poll_interval=poll_interval,
        ),
    }


def _load(
    name: str,
    channel: grpc.Channel,
    state: DemoState,
    stop: threading.Event,
    rate: float,
    limit: float,
) -> None:
    """Steady calls at ``rate`` per second until ``stop`` (or ``limit`` seconds)."""
    demo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    interval = 1.0 / rate
    next_at = time.monotonic()
    end = next_at + limit
    while not stop.is_set() and time.monotonic() < end:
        try:
            state.record(name, decode_response(demo(b"", timeout=2)))
        except Exception as exc:  # every failed call counts, whatever grpcio raised
            with state.lock:
                state.errors[name] += 1
                if name not in state.failures:
                    state.failures[name] = _failure_text(exc)
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            stop.wait(pause)
        elif pause < -1.0:
            next_at = time.monotonic()  # fell behind: do not burst to catch up


def _failure_text(exc: Exception) -> str:
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if isinstance(exc, grpc.RpcError) and callable(code) and callable(details):
        return f"{code().name}: {details()}"  # a grpc.Call too
    return f"{type(exc).__name__}: {exc}"


def _result(state: DemoState, duration: float, scale_up_at: float, settle: float) -> DemoResult:
    clients = []
    with state.lock:
        first = [b for b in state.backends if b not in state.new_backends]
        for name in CLIENTS:
            buckets = state.timeline[name]
            # Whole seconds after the scale-up has settled; the last (partial) one left out.
            window = buckets[int(settle) + 1 : int(duration)] or buckets[int(scale_up_at) + 1 :]
            settled = {b: sum(bucket[b] for bucket in window) for b in state.backends}
            counts = list(settled.values())
            spread = max(counts) / min(counts) if counts and min(counts) > 0 else None
            used = state.first_use[name]
            seconds = (
                max(used.values())
                if state.new_backends and all(b in used for b in state.new_backends)
                else None
            )
            clients.append(
                ClientResult(
                    name=name,
                    description=DESCRIPTIONS[name],
                    calls={b: state.calls[name][b] for b in state.backends},
                    calls_settled=settled,
                    errors=state.errors[name],
                    failure=state.failures.get(name),
                    first_balanced=bool(first) and all(state.calls[name][b] > 0 for b in first),
                    spread=spread,
                    seconds_to_use_new_backends=seconds,
                    timeline=[{b: bucket[b] for b in state.backends} for bucket in buckets],
                )
            )
    return DemoResult(
        backends=list(state.backends),
        new_backends=list(state.new_backends),
        duration=duration,
        scale_up_at=scale_up_at,
        clients=clients,
    )
