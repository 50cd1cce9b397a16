"""The ``cluster`` fixture: the API server the CLI tests written against
:class:`tests.kits.cluster.Cluster` run on: FakeKubernetesAPI (the ``kube`` fixture)
and the session's real control plane (``control_plane``, tests/conftest.py), so every
such test runs against both. On the real server the tests share namespace ``app``
(``NS``), emptied of Services and Endpoints after each test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from dnsbalance.testing import ControlPlane, FakeKubernetesAPI
from tests.kits import NS
from tests.kits.cluster import Cluster


@pytest.fixture(params=["fake", "real"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    if request.param == "fake":
        kube: FakeKubernetesAPI = request.getfixturevalue("kube")
        path = kube.write_kubeconfig(tmp_path / "cluster-kubeconfig", namespace=NS)
        yield Cluster(kubeconfig=path, namespace=NS, fake=kube)
        return
    plane: ControlPlane = request.getfixturevalue("control_plane")
    core = client.CoreV1Api(plane.admin)
    if NS not in {n.metadata.name for n in core.list_namespace().items}:
        plane.create_namespace(NS)
    path = plane.write_kubeconfig(tmp_path / "cluster-kubeconfig", namespace=NS, user="admin")
    yield Cluster(kubeconfig=path, namespace=NS)
    _empty(core)


@contextlib.contextmanager
def _gone_already() -> Iterator[None]:
    """A 404: the object went between the list and the call."""
    try:
        yield
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def _empty(core: client.CoreV1Api) -> None:
    """Delete every Service and Endpoints of ``NS``, finalizers first, and wait (10 s at
    most) until the API lists none."""
    for service in core.list_namespaced_service(NS).items:
        name = service.metadata.name
        with _gone_already():
            if service.metadata.finalizers:
                core.patch_namespaced_service(name, NS, {"metadata": {"finalizers": None}})
            core.delete_namespaced_service(name, NS)
    for endpoints in core.list_namespaced_endpoints(NS).items:
        with _gone_already():  # the endpoints controller may have deleted it meanwhile
            core.delete_namespaced_endpoints(endpoints.metadata.name, NS)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not core.list_namespaced_service(NS).items:
            return
        time.sleep(0.05)
    raise AssertionError(f"Services of {NS} still listed 10 s after their delete")
