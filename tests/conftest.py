"""Shared fixtures: a clean environment, real DNS servers (BIND9 and the embedded one),
the fake Kubernetes API (``kube``; a test folder or module needing other settings
defines its own)."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dnsbalance.testing import (
    BindServer,
    ControlPlane,
    ControlPlaneError,
    DNSResponder,
    FakeKubernetesAPI,
)
from dnsbalance.testing._clusterdns.bind import find_named
from tests.kits import NS
from tests.kits.backends import Fleet, new_fleet

_NAMED_HINT = "named (BIND9) is required under CI: apt-get install -y bind9"


@pytest.fixture(autouse=True)
def _clean_kubernetes_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's kubeconfig or in-cluster variables never leak into a test."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("NODE_NAME", raising=False)  # nor a pod's node or zone (topology)
    monkeypatch.delenv("DNSBALANCE_ZONE", raising=False)
    for name in list(os.environ):
        if name.startswith(("KUBERNETES_SERVICE_", "KUBERNETES_PORT")):
            monkeypatch.delenv(name, raising=False)


# -- DNS servers ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def bind_server() -> Iterator[BindServer]:
    """A real BIND9 named on 127.0.0.1 serving cluster.local (and a broken.local)."""
    named = find_named()
    if named is None:
        if os.environ.get("CI") == "true":
            pytest.fail(_NAMED_HINT)
        pytest.skip(_NAMED_HINT.replace("required under CI", "not installed"))
    with BindServer(named=named) as server:
        yield server


@pytest.fixture(scope="session")
def embedded_dns() -> Iterator[DNSResponder]:
    """dnsbalance.testing.DNSResponder on 127.0.0.1, cluster.local."""
    with DNSResponder() as server:
        yield server


@pytest.fixture(
    params=[pytest.param("bind", marks=pytest.mark.bind), "embedded"], ids=["bind", "embedded"]
)
def dns_server(request: pytest.FixtureRequest) -> BindServer | DNSResponder:
    """Each test runs against both servers; they share the publishing API."""
    if request.param == "bind":
        server: BindServer | DNSResponder = request.getfixturevalue("bind_server")
    else:
        server = request.getfixturevalue("embedded_dns")
    return server


_service_numbers = itertools.count(1)


@pytest.fixture
def unique_service() -> str:
    """A Service name (DNS-1035 label) no other test of the session uses."""
    return f"svc-{next(_service_numbers)}"


@pytest.fixture
def silent_dns() -> Iterator[str]:
    """``127.0.0.1:PORT`` where UDP is bound and TCP listens, but nothing ever answers."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind(("127.0.0.1", 0))
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            tcp.listen(16)  # connections complete in the kernel; nobody accepts them
        except OSError:
            udp.close()
            tcp.close()
            continue
        with udp, tcp:
            yield f"127.0.0.1:{udp.getsockname()[1]}"
        return
    pytest.fail("no port free for both UDP and TCP")


# -- gRPC backends -----------------------------------------------------------------


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """Real gRPC backends on their own 127.0.N.x block, sharing one port; all stopped after."""
    backends = new_fleet()
    yield backends
    backends.close()


# -- the Kubernetes API ----------------------------------------------------------------


@pytest.fixture
def kube() -> Iterator[FakeKubernetesAPI]:
    """A FakeKubernetesAPI of this test alone; bookmarks every 0.5 s."""
    with FakeKubernetesAPI(bookmark_interval=0.5) as api:
        yield api


@pytest.fixture
def kubeconfig(kube: FakeKubernetesAPI, tmp_path: Path) -> Path:
    """A kubeconfig for ``kube`` whose namespace is ``NS``."""
    return kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)


# -- the real control plane ------------------------------------------------------------

ZONES = ("zone-a", "zone-b", "zone-c")
NODES = {f"node-{zone[-1]}": zone for zone in ZONES}


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The session's real control plane (``dnsbalance.testing.ControlPlane``), with Nodes
    ``node-a/b/c`` in ``zone-a/b/c``. Without its binaries the tests that use it skip,
    and fail under ``CI=true``."""
    try:
        plane = ControlPlane()
    except ControlPlaneError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real control plane must run under CI: {exc}")
        pytest.skip(str(exc))
    with plane:
        for node, zone in NODES.items():
            plane.add_node(node, zone=zone)
        yield plane
