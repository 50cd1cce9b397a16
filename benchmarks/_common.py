"""Shared pieces of the benchmark suites: statistics, DNS servers, result records,
load generators and a kube-proxy stand-in."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import grpc

from dnsbalance.testing import BindServer, DNSResponder
from dnsbalance.testing._backend import decode_response
from dnsbalance.testing._clusterdns.bind import find_named

METHOD = "/demo.DemoService/Demo"
ROUND_ROBIN = (("grpc.service_config", '{"loadBalancingConfig":[{"round_robin":{}}]}'),)

# The contenders, as the summary table's columns.
CLUSTER_IP = "ClusterIP"
NATIVE = "gRPC dns: + round_robin"
KUBERESOLVER6 = "kuberesolver v6 (Go)"
KUBERESOLVER = "kuberesolver v3 (Go)"
DNSBALANCE = "dnsbalance"
COLUMNS = (CLUSTER_IP, NATIVE, KUBERESOLVER6, KUBERESOLVER, DNSBALANCE)


def fmt(value: Any) -> str:
    """A number as the tables show it: 3 decimals below 10, fewer above."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


@dataclass
class Suite:
    """The results of one suite: named figures, each with its unit and target.

    A figure may carry ``column`` (one of :data:`COLUMNS`) and ``summary`` (a row
    label): the markdown then also shows it in the side-by-side summary table.
    ``shown`` replaces the value in the tables (e.g. "not within 60 s").
    """

    name: str
    figures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self, figure: str, value: float | None, unit: str, *, target: str = "", **extra: Any
    ) -> None:
        self.figures.append(
            {"figure": figure, "value": value, "unit": unit, "target": target, **extra}
        )
        shown = display(self.figures[-1])
        print(f"  {figure}: {shown}" + (f"  (target {target})" if target else ""), flush=True)

    def trials(
        self,
        figure: str,
        values: Sequence[float],
        unit: str,
        *,
        target: str = "",
        **extra: Any,
    ) -> None:
        """A figure measured over repeated trials: the median, with min/max and the trials."""
        middle: float = median(values)
        if all(isinstance(v, int) for v in values) and float(middle).is_integer():
            middle = int(middle)
        self.add(
            figure,
            middle,
            unit,
            target=target,
            spread=spread(values),
            trials=[round(v, 6) if isinstance(v, float) else v for v in values],
            **extra,
        )

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)


def display(f: dict[str, Any]) -> str:
    """A figure's value as the tables show it: ``median (min-max)`` over several trials."""
    if f.get("shown"):
        return str(f["shown"])
    value, unit = f["value"], f["unit"]
    text = fmt(value)
    s = f.get("spread")
    if isinstance(s, dict) and len(f.get("trials") or ()) > 1 and s["min"] != s["max"]:
        text += f" ({fmt(s['min'])}-{fmt(s['max'])})"
    return f"{text} {unit}".strip()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation beyond the data)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": median(values), "min": min(values), "max": max(values)}


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], float]:
    """Wall seconds of each call, and process CPU seconds per call."""
    walls = []
    cpu_start = time.process_time()
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return walls, (time.process_time() - cpu_start) / repeat


@contextlib.contextmanager
def cluster_dns() -> Iterator[tuple[BindServer | DNSResponder, str]]:
    """BIND9 when ``named`` is installed, else the embedded responder (said in the output)."""
    named = find_named()
    if named is not None:
        with BindServer(named=named) as server:
            yield server, "BIND9 named"
    else:
        print("  named (BIND9) not found: using the embedded DNS responder", flush=True)
        with DNSResponder() as responder:
            yield responder, "embedded responder (named not installed)"


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; whether it came true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


# -- load -----------------------------------------------------------------------------


class Call(NamedTuple):
    start: float
    """time.monotonic() when the call started."""
    seconds: float
    backend: str
    """The name of the backend that answered ('' on error)."""
    error: str
    """The status code's name, or the exception's type ('' on success)."""


class Recorder:
    """Every call one contender made, and when each backend first answered it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.first: dict[str, float] = {}

    def add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            if call.backend and call.backend not in self.first:
                self.first[call.backend] = call.start + call.seconds

    def first_answer(self, backend: str) -> float | None:
        """When ``backend`` first finished a call (time.monotonic()), or None."""
        with self._lock:
            return self.first.get(backend)

    def wait_first(self, backend: str, timeout: float) -> float | None:
        wait_until(lambda: self.first_answer(backend) is not None, timeout)
        return self.first_answer(backend)

    def window(self, start: float, end: float) -> list[Call]:
        """Calls that started in [start, end)."""
        with self._lock:
            return [c for c in self.calls if start <= c.start < end]


class CallSink(Protocol):
    """Where :class:`Callers` put each call: a :class:`Recorder`, or anything that takes
    calls as it does (``benchmarks._pyclient`` prints them)."""

    def add(self, call: Call) -> None: ...


class Callers:
    """``threads`` threads calling ``channel`` (paced at ``rate`` calls/s each; 0: back to
    back) into a :class:`CallSink` until :meth:`stop`, or ``limit`` seconds at most."""

    def __init__(
        self,
        channel: grpc.Channel,
        recorder: CallSink,
        *,
        threads: int = 1,
        rate: float = 0.0,
        limit: float = 120.0,
        timeout: float = 5.0,
        name: str = "caller",
    ) -> None:
        self.recorder = recorder
        self._demo = channel.unary_unary(METHOD)
        self._stop = threading.Event()
        self._rate, self._limit, self._timeout = rate, limit, timeout
        self._threads = [
            threading.Thread(target=self._run, name=f"bench-{name}-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout + 2)

    def __enter__(self) -> Callers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        interval = 1.0 / self._rate if self._rate else 0.0
        now = time.monotonic()
        end = now + self._limit
        next_at = now + random.random() * interval  # threads out of step
        while not self._stop.is_set() and time.monotonic() < end:
            if interval:
                pause = next_at - time.monotonic()
                if pause > 0 and self._stop.wait(pause):
                    return
                next_at = max(next_at + interval, time.monotonic() - 1.0)
            start = time.monotonic()
            try:
                answer = self._demo(b"", timeout=self._timeout)
            except grpc.RpcError as exc:
                code = exc.code() if callable(getattr(exc, "code", None)) else None
                error = code.name if code is not None else type(exc).__name__
                self.recorder.add(Call(start, time.monotonic() - start, "", error))
            except Exception as exc:  # e.g. a closed channel: counted, never fatal
                self.recorder.add(Call(start, time.monotonic() - start, "", type(exc).__name__))
            else:
                self.recorder.add(
                    Call(start, time.monotonic() - start, decode_response(answer), "")
                )


def calls_per_backend(
    channel: grpc.Channel, calls: int, threads: int
) -> tuple[dict[str, int], int, float]:
    """``calls`` back-to-back calls split over ``threads`` threads: answers per backend,
    errors, and wall seconds."""
    demo = channel.unary_unary(METHOD)
    counts: dict[str, int] = {}
    errors = 0
    lock = threading.Lock()

    def work(n: int) -> None:
        nonlocal errors
        mine: dict[str, int] = {}
        failed = 0
        for _ in range(n):
            try:
                name = decode_response(demo(b"", timeout=10))
            except grpc.RpcError:
                failed += 1
            else:
                mine[name] = mine.get(name, 0) + 1
        with lock:
            errors += failed
            for name, count in mine.items():
                counts[name] = counts.get(name, 0) + count

    share = [calls // threads + (i < calls % threads) for i in range(threads)]
    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in share]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return counts, errors, time.perf_counter() - start


# -- a kube-proxy stand-in ------------------------------------------------------------------


class TcpProxy:
    """What a ClusterIP gives a client, on loopback: one address whose every new TCP
    connection goes to a backend picked at random among the current ones (kube-proxy's
    iptables mode); bytes pass through untouched, so HTTP/2 GOAWAYs reach the client.

    ``add``/``remove`` change the backends for new connections only, as endpoint
    changes do for kube-proxy; established connections stay until either side closes.
    """

    def __init__(self, host: str, backends: Sequence[str] = (), seed: int = 8) -> None:
        self._backends = list(backends)
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.1)
        self.address = f"{host}:{self._listener.getsockname()[1]}"
        self._acceptor = threading.Thread(target=self._accept, name="bench-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def add(self, backend: str) -> None:
        with self._lock:
            self._backends.append(backend)

    def remove(self, backend: str) -> None:
        with self._lock:
            self._backends.remove(backend)

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(2)
        self._listener.close()
        self.cut()

    def cut(self) -> None:
        """Close every connection open now (both sides); new ones are still accepted."""
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(2)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                backend = self._random.choice(self._backends) if self._backends else None
            if backend is None:
                client.close()
                continue
            host, port = backend.rsplit(":", 1)
            try:
                upstream = socket.create_connection((host, int(port)), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets |= {client, upstream}
                self._threads = [t for t in self._threads if t.is_alive()]
                for src, dst in ((client, upstream), (upstream, client)):
                    pump = threading.Thread(
                        target=self._pump, args=(src, dst), name="bench-proxy-pump", daemon=True
                    )
                    self._threads.append(pump)
                    pump.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            for sock in (src, dst):
                if sock in self._sockets:
                    self._sockets.discard(sock)
                    sock.close()


# -- the process and the machine -------------------------------------------------------------


def process_status() -> dict[str, int]:
    """OS threads and resident memory (kB) of this process, from /proc (Linux)."""
    out = {"threads": threading.active_count(), "rss_kb": 0, "os_threads": 0}
    with contextlib.suppress(OSError):
        for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115
            key, _, value = line.partition(":")
            if key == "Threads":
                out["os_threads"] = int(value)
            elif key == "VmRSS":
                out["rss_kb"] = int(value.split()[0])
    return out


def settled_status(limit: float = 10.0) -> dict[str, int]:
    """Process status once the thread count has stopped changing for 1 s (bounded)."""
    gc.collect()
    last = process_status()
    stable_since = time.monotonic()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and time.monotonic() - stable_since < 1.0:
        time.sleep(0.1)
        now = process_status()
        if now["os_threads"] != last["os_threads"]:
            stable_since = time.monotonic()
        last = now
    gc.collect()
    return process_status()


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of each OS thread of this process (the scheduler's precise run time,
    /proc/self/task/TID/schedstat), by thread id, with the Python thread's name
    ('native' for threads Python did not start, e.g. grpc's). Linux only; empty elsewhere.
    """
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                nanoseconds = int(open(f"/proc/self/task/{entry}/schedstat").read().split()[0])  # noqa: SIM115
                out[int(entry)] = (names.get(int(entry), "native"), nanoseconds / 1e9)
    return out


def thread_wakeups() -> dict[int, tuple[str, int]]:
    """How often each OS thread of this process has slept and been woken (voluntary
    context switches, /proc/self/task/TID/status), by thread id, with the Python
    thread's name ('native' for others). Linux only; empty elsewhere."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out: dict[int, tuple[str, int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError, ValueError):
                for line in open(f"/proc/self/task/{entry}/status").read().splitlines():  # noqa: SIM115
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[int(entry)] = (names.get(int(entry), "native"), int(line.split()[1]))
    return out


def cpu_by_group(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    group: Callable[[str], str],
) -> dict[str, float]:
    """CPU seconds spent between two :func:`thread_cpu` readings, summed by
    ``group(thread name)`` (threads that ended in between are not counted)."""
    out: dict[str, float] = {}
    for tid, (name, seconds) in after.items():
        spent = seconds - before.get(tid, (name, 0.0))[1]
        key = group(name)
        out[key] = round(out.get(key, 0.0) + spent, 3)
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "system": platform.platform(terse=True),
    }
    with contextlib.suppress(OSError):
        cpuinfo = open("/proc/cpuinfo").read()  # noqa: SIM115
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        if found:
            info["cpu_model"] = found.group(1).strip()
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = open("/proc/meminfo").read()  # noqa: SIM115
        info["memory_gib"] = round(int(meminfo.split("MemTotal:")[1].split()[0]) / 2**20, 1)
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    info["grpcio"] = grpc.__version__
    with contextlib.suppress(ImportError):
        import dns.version

        info["dnspython"] = dns.version.version
    named = find_named()
    if named:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            version = subprocess.run(
                [named, "-v"], capture_output=True, text=True, timeout=5, check=False
            ).stdout.split()
            info["named"] = " ".join(version[:2])
    return info


def describe(m: dict[str, Any]) -> str:
    """One line: the machine, as latest.md and the README show it."""
    cpu = f"{m['cpus']} CPUs" + (f" ({m['cpu_model']})" if m.get("cpu_model") else "")
    parts = [f"{m['system']} ({m['machine']})", cpu]
    if m.get("memory_gib"):
        parts.append(f"{m['memory_gib']} GiB RAM")
    soft = [f"Python {m['python']}", f"grpcio {m.get('grpcio', '?')}"]
    if m.get("dnspython"):
        soft.append(f"dnspython {m['dnspython']}")
    if m.get("named"):
        soft.append(m["named"])
    line = ", ".join(parts) + "; " + ", ".join(soft)
    if m.get("load_average"):
        line += f"; load average at start {m['load_average'][0]} (shared machine)"
    return line
