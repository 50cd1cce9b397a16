"""Helpers of the reliability suite: callers that count every call, the fault table, slices
and certificates."""

from __future__ import annotations

import datetime
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import kubernetes_validate
import pytest

from dnsbalance import BalancedChannel, resolve_channel
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI
from tests.kits import NS
from tests.kits.backends import Fleet, demo_pb2, demo_pb2_grpc

__all__ = [
    "MEASURED",
    "NS",
    "CallLog",
    "Callers",
    "Certificates",
    "Cluster",
    "Measured",
    "addresses",
    "calling",
    "channel_threads",
    "fallback_warnings",
    "measured",
    "publish_slice",
    "requests_of",
    "validate",
]


def validate(obj: object) -> None:
    """Valid for Kubernetes 1.29 (the oldest schema the dev pin ships), unknown fields refused."""
    kubernetes_validate.validate(obj, "1.29", strict=True)


@dataclass(frozen=True)
class Measured:
    fault: str
    happened: str
    lost: str


MEASURED: list[Measured] = []


def measured(fault: str, happened: str, lost: object) -> None:
    """One row of the table printed at the end of the run (see conftest.py)."""
    MEASURED.append(Measured(fault, happened, str(lost)))


@dataclass
class CallLog:
    """Every call's outcome: values answered, errors by kind, latencies (thread-safe)."""

    values: Counter[str] = field(default_factory=Counter)
    errors: list[BaseException] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ok(self) -> int:
        with self.lock:
            return sum(self.values.values())

    @property
    def failed(self) -> int:
        with self.lock:
            return len(self.errors)

    def error_kinds(self) -> Counter[str]:
        with self.lock:
            return Counter(describe_error(e) for e in self.errors)

    def call(self, stub: demo_pb2_grpc.DemoServiceStub, timeout: float = 5.0) -> str | None:
        started = time.monotonic()
        try:
            value = str(stub.Demo(demo_pb2.Empty(), timeout=timeout).value)
        except Exception as exc:
            with self.lock:
                self.errors.append(exc)
            return None
        finally:
            elapsed = time.monotonic() - started
            with self.lock:
                self.latencies.append(elapsed)
        with self.lock:
            self.values[value] += 1
        return value

    def percentile(self, fraction: float) -> float:
        with self.lock:
            ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"RpcError {exc.code().name}"
    return type(exc).__name__


class Callers:
    """``threads`` threads calling ``Demo`` until stopped (``interval`` s apart each),
    each bounded by ``max_calls`` and ``deadline`` seconds."""

    def __init__(
        self,
        stub: demo_pb2_grpc.DemoServiceStub,
        *,
        threads: int = 4,
        interval: float = 0.0,
        timeout: float = 5.0,
        max_calls: int = 1_000_000,
        deadline: float = 120.0,
        log: CallLog | None = None,
    ) -> None:
        self.log = log or CallLog()
        self._stop = threading.Event()
        self._stub = stub
        self._interval = interval
        self._timeout = timeout
        self._max_calls = max_calls
        self._deadline = deadline
        self._threads = [
            threading.Thread(target=self._run, name=f"rel-caller-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        ends = time.monotonic() + self._deadline
        for _ in range(self._max_calls):
            if self._stop.is_set() or time.monotonic() > ends:
                return
            self.log.call(self._stub, self._timeout)
            if self._interval:
                self._stop.wait(self._interval)

    def stop(self, timeout: float = 15.0) -> CallLog:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a caller hangs"
        return self.log

    def join(self, timeout: float) -> CallLog:
        """Wait for the callers to finish by themselves (``max_calls``)."""
        ends = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, ends - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "callers did not finish"
        return self.log


def channel_threads(service: str) -> list[str]:
    """The dnsbalance threads (poll, drain, merge, watch) of a channel on ``service``."""
    return sorted(
        t.name
        for t in threading.enumerate()
        if t.name.startswith(("dnsbalance-poll-", "dnsbalance-drain-", "dnsbalance-merge-"))
        or t.name.startswith("dnsbalance-watch-")
        if f"{service}." in t.name
    )


def publish_slice(
    kube: FakeKubernetesAPI,
    service: str,
    hosts: Iterable[str],
    port: int,
    *,
    not_ready: Iterable[str] = (),
    name: str | None = None,
) -> None:
    """One EndpointSlice of ``service`` in NS with ``hosts`` (ready unless ``not_ready``)."""
    sick = set(not_ready)
    kube.apply_slice(
        name or f"{service}-a",
        NS,
        service,
        endpoints=[(h, h not in sick, h not in sick, False) for h in hosts],
        ports=[("grpc", port, "TCP")],
    )


class Certificates:
    """A CA and server certificates it signs, made with ``cryptography`` (PEM bytes)."""

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ec, self._oid = x509, hashes, ec, NameOID
        self._serialization = serialization
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dnsbalance test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self._name = name
        self.ca = self._pem(
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    def _pem(self, cert: object) -> bytes:
        return cert.public_bytes(self._serialization.Encoding.PEM)  # type: ignore[attr-defined,no-any-return]

    def server(self, dns_name: str) -> tuple[bytes, bytes]:
        """(private key, certificate) for ``dns_name`` (in the SAN, as grpc requires)."""
        x509, oid = self._x509, self._oid
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(oid.COMMON_NAME, dns_name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .sign(self._key, self._hashes.SHA256())
        )
        key_pem = key.private_bytes(
            self._serialization.Encoding.PEM,
            self._serialization.PrivateFormat.PKCS8,
            self._serialization.NoEncryption(),
        )
        return key_pem, self._pem(cert)


class Cluster:
    """Backends, the Service's slice and its DNS records, changed together."""

    def __init__(
        self, kube: FakeKubernetesAPI, dns: DNSResponder, fleet: Fleet, service: str, n: int
    ) -> None:
        self.kube, self.dns, self.fleet, self.service = kube, dns, fleet, service
        self.hosts = [fleet.add().host for _ in range(n)]

    def publish(self, hosts: list[str], *, api: bool = True, dns: bool = True) -> None:
        if api:
            publish_slice(self.kube, self.service, hosts, self.fleet.port)
        if dns:
            self.dns.set_service(self.service, NS, hosts, ports={"grpc": self.fleet.port})

    def api_channel(self, kubeconfig: Path) -> BalancedChannel:
        return resolve_channel(f"{self.service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api")

    def auto_channel(self, kubeconfig: Path) -> BalancedChannel:
        return resolve_channel(
            f"{self.service}.{NS}:grpc",
            kubeconfig=kubeconfig,
            nameservers=[self.dns.address],
            poll_interval=0.2,
        )


@contextmanager
def calling(*channels: BalancedChannel, interval: float = 0.01) -> Iterator[CallLog]:
    """Two callers per channel, all counted in one log."""
    log = CallLog()
    callers = [
        Callers(demo_pb2_grpc.DemoServiceStub(ch), threads=2, interval=interval, log=log)
        for ch in channels
    ]
    try:
        yield log
    finally:
        for each in callers:
            each.stop()


def addresses(channel: BalancedChannel) -> list[str]:
    return [ep.address for ep in channel.endpoints]


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "using DNS only" in r.getMessage()]


def requests_of(kube: FakeKubernetesAPI, verb: str, status: int | None = None) -> int:
    return sum(
        1
        for r in kube.requests
        if r.verb == verb and r.resource == "endpointslices" and status in (None, r.status)
    )
