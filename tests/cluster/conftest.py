"""The cluster tier: one real control plane per test session (``ControlPlane``: etcd,
kube-apiserver, kube-controller-manager, CoreDNS), a namespace per test, three Nodes in
three zones, and pods with real gRPC backends on the pod network (root).

Without the binaries (``bash scripts/build-controlplane``) or root, these tests skip,
and fail under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dnsbalance.testing import ControlPlane, ControlPlaneError

from .kit import require_pod_network, unavailable

ZONES = ("zone-a", "zone-b", "zone-c")
NODES = {f"node-{zone[-1]}": zone for zone in ZONES}


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The session's control plane, with Nodes ``node-a/b/c`` in ``zone-a/b/c``."""
    try:
        plane = ControlPlane()
    except ControlPlaneError as exc:
        unavailable(str(exc))
        raise
    with plane:
        for node, zone in NODES.items():
            plane.add_node(node, zone=zone)
        yield plane


@pytest.fixture
def cluster(control_plane: ControlPlane) -> ControlPlane:
    """The control plane, with the pod network made (needs root) and every component
    checked alive."""
    control_plane.check()
    require_pod_network(control_plane)
    return control_plane


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    """A namespace of the test's own."""
    return control_plane.create_namespace()
