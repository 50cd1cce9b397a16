"""The real kuberesolver v3.1.1 (Go, Debian's package) and v6.0.1 (Go, from the module
proxy) against FakeKubernetesAPI: the fake's core/v1 Endpoints are what v3 needs, its
EndpointSlice watch what v6 needs, and the benchmarks' clients work. Needs go (and
Debian's Go sources for v3; scripts/check installs them as root and builds the
clients into ~/.cache/dnsbalance/); skips without them,
fails under CI=true."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks._common import Recorder
from benchmarks._kuberesolver import GoClient, build
from benchmarks._kuberesolver6 import build as build6
from dnsbalance.testing import FakeKubernetesAPI
from tests.kits.backends import Fleet, wait_until

NS = "app"


@pytest.fixture(scope="module")
def binary() -> Path:
    path, why = build()  # cached: built once per main.go, Go version and Debian sources
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"kuberesolver client not built: {why}")
        pytest.skip(f"kuberesolver client not built: {why}")
    return path


@pytest.fixture
def kube() -> Iterator[FakeKubernetesAPI]:
    with FakeKubernetesAPI() as api:
        yield api


def publish(kube: FakeKubernetesAPI, service: str, fleet: Fleet, hosts: list[str]) -> None:
    kube.apply_slice(
        f"{service}-a",
        NS,
        service,
        endpoints=[(h, True, True, False) for h in hosts],
        ports=[("grpc", fleet.port, "TCP")],
    )


def used(recorder: Recorder, since: float = 0.0) -> set[str]:
    """Backends that answered calls started since ``since``."""
    return {c.backend for c in recorder.window(since, time.monotonic() + 1) if c.backend}


@pytest.mark.parametrize("form", ["kubernetes:///{svc}.app:{port}", "kubernetes://app/{svc}"])
def test_kuberesolver_follows_the_fake_endpoints(
    binary: Path, kube: FakeKubernetesAPI, fleet: Fleet, unique_service: str, form: str
) -> None:
    for _ in range(2):
        fleet.add()
    hosts = sorted(fleet.backends)
    publish(kube, unique_service, fleet, hosts)
    recorder = Recorder()
    target = form.format(svc=unique_service, port=fleet.port)
    with GoClient(binary, kube.url, target, recorder, callers=2, limit=60):
        assert wait_until(lambda: used(recorder) == set(hosts), 10)
        new = fleet.add().host
        publish(kube, unique_service, fleet, [*hosts, new])
        assert wait_until(lambda: new in used(recorder), 10)
        kube.cut_watches()  # kuberesolver watches again after 1 s
        publish(kube, unique_service, fleet, [new])
        assert wait_until(lambda: used(recorder, time.monotonic() - 0.3) == {new}, 10)
    assert not [c for c in recorder.calls if c.error]
    paths = {r.path for r in kube.requests if r.resource == "endpoints"}
    assert f"/api/v1/watch/namespaces/{NS}/endpoints/{unique_service}" in paths


def test_authority_without_slash_is_not_a_kuberesolver_target(
    binary: Path, kube: FakeKubernetesAPI, fleet: Fleet, unique_service: str
) -> None:
    """grpc-go 1.33 hands kubernetes://svc.ns:port (no '/') to its default resolver, as
    kuberesolver v3's TestParseTargets expects: no call succeeds, the API is never
    asked. A current grpc-go parses targets as URLs and kuberesolver v6 reads this form
    (tests/cluster/test_kuberesolver6_targets.py), so dnsbalance accepts it, as v6 does."""
    fleet.add()
    publish(kube, unique_service, fleet, sorted(fleet.backends))
    recorder = Recorder()
    target = f"kubernetes://{unique_service}.{NS}:{fleet.port}"
    with GoClient(binary, kube.url, target, recorder, interval_ms=100, limit=30, timeout=0.5):
        assert wait_until(lambda: len(recorder.calls) >= 3, 10)
    assert all(c.error for c in recorder.calls)
    assert not [r for r in kube.requests if r.resource == "endpoints"]


@pytest.fixture(scope="module")
def binary6() -> Path:
    path, why = build6()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"kuberesolver v6 client not built: {why}")
        pytest.skip(f"kuberesolver v6 client not built: {why}")
    return path


def test_kuberesolver6_follows_the_fake_slices(
    binary6: Path, kube: FakeKubernetesAPI, fleet: Fleet, unique_service: str
) -> None:
    """The real kuberesolver v6 on the fake: the deprecated slice watch path works,
    changes arrive, and after a cut it watches again (the fault benchmarks need all
    three)."""
    for _ in range(2):
        fleet.add()
    hosts = sorted(fleet.backends)
    publish(kube, unique_service, fleet, hosts)
    recorder = Recorder()
    target = f"kubernetes://{unique_service}.{NS}:{fleet.port}"  # v6 reads this form
    with GoClient(binary6, kube.url, target, recorder, callers=2, limit=60):
        assert wait_until(lambda: used(recorder) == set(hosts), 10)
        new = fleet.add().host
        publish(kube, unique_service, fleet, [*hosts, new])
        assert wait_until(lambda: new in used(recorder), 10)
        kube.cut_watches()  # v6 watches again after 1 s (then 2, 4, 8, 16 s)
        publish(kube, unique_service, fleet, [new])
        assert wait_until(lambda: used(recorder, time.monotonic() - 0.3) == {new}, 10)
    assert not [c for c in recorder.calls if c.error]
    paths = {r.path for r in kube.requests if r.resource == "endpointslices"}
    assert f"/apis/discovery.k8s.io/v1/watch/namespaces/{NS}/endpointslices" in paths
