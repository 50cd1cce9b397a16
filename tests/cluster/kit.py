"""What the cluster tests share: a channel per mode on the real chain, and call counting."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import grpc
import pytest

import dnsbalance
from dnsbalance.testing import ControlPlane
from tests.kits.backends import demo_pb2, demo_pb2_grpc

MODES = ("api", "auto", "dns")


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under ``CI=true``: CI must run the cluster tier."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the cluster tier must run under CI: {reason}")
    pytest.skip(reason)


def require_pod_network(cluster: ControlPlane) -> None:
    """The pod network, made now (it needs root), so its errors surface here."""
    if os.geteuid() != 0:
        unavailable("the pod network needs root (ip netns)")
    cluster.pod_network  # noqa: B018


DNS_POLL = 1.0  # mode "dns": poll CoreDNS every second (TTL 5, cache 30: answers age <= 5 s)


def open_channel(
    cluster: ControlPlane, namespace: str, service: str, mode: str, **kwargs: Any
) -> dnsbalance.BalancedChannel:
    """``<service>.<namespace>:grpc`` in ``mode``: DNS from the control plane's CoreDNS,
    the API through its admin kubeconfig (never handed to mode "dns")."""
    if mode != "dns":
        kwargs.setdefault("kubeconfig", cluster.kubeconfig)
    return dnsbalance.resolve_channel(
        f"{service}.{namespace}:grpc",
        mode=mode,  # type: ignore[arg-type]
        nameservers=[cluster.dns_address],
        cluster_domain="cluster.local",
        poll_interval=DNS_POLL,
        **kwargs,
    )


def call(stub: demo_pb2_grpc.DemoServiceStub, timeout: float = 5.0) -> str:
    value: str = stub.Demo(demo_pb2.Empty(), timeout=timeout).value
    return value


def counts(stub: demo_pb2_grpc.DemoServiceStub, n: int) -> Counter[str]:
    return Counter(call(stub) for _ in range(n))


def until_seen(
    stub: demo_pb2_grpc.DemoServiceStub, want: set[str], *, timeout: float, batch: int = 8
) -> set[str]:
    """Call in batches until every backend in ``want`` answered (or ``timeout``); the
    backends that answered since the first batch in which all of ``want`` had."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        batch_seen = set(counts(stub, batch))
        seen = batch_seen if want <= batch_seen else seen | batch_seen
        if want <= seen:
            break
    return seen


def until_only(
    stub: demo_pb2_grpc.DemoServiceStub, want: set[str], *, timeout: float, batch: int = 40
) -> set[str]:
    """Call in batches until one batch is answered by exactly ``want`` (or ``timeout``);
    the last batch's backends."""
    deadline = time.monotonic() + timeout
    seen = set(counts(stub, batch))
    while seen != want and time.monotonic() < deadline:
        seen = set(counts(stub, batch))
    return seen


def until_absent(
    stub: demo_pb2_grpc.DemoServiceStub, gone: str, *, timeout: float, streak: int = 30
) -> bool:
    """Call until ``gone`` has not answered ``streak`` calls in a row (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    run = 0
    while time.monotonic() < deadline:
        run = 0 if call(stub) == gone else run + 1
        if run >= streak:
            return True
    return False


class Callers:
    """``n`` threads calling Demo until stopped (bounded: ``max_seconds``), counting
    answers per backend and failures by status code."""

    def __init__(self, stub: demo_pb2_grpc.DemoServiceStub, n: int, max_seconds: float) -> None:
        self._stub = stub
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answers: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [
            threading.Thread(target=self._run, name=f"caller-{i}", daemon=True) for i in range(n)
        ]

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                value = call(self._stub)
            except grpc.RpcError as exc:
                with self._lock:
                    self.failures[str(exc.code())] += 1  # type: ignore[attr-defined]
                continue
            with self._lock:
                self.answers[value] += 1
            time.sleep(0.002)

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


@contextmanager
def stub_for(channel: dnsbalance.BalancedChannel) -> Iterator[demo_pb2_grpc.DemoServiceStub]:
    with channel:
        yield demo_pb2_grpc.DemoServiceStub(channel)
