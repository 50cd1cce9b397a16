"""The cluster tier: the session's real control plane (``control_plane``, in
tests/conftest.py: etcd, kube-apiserver, kube-controller-manager, CoreDNS, three Nodes in
three zones), a namespace per test, and pods with real gRPC backends on the pod network
(root).

Without the binaries (``bash scripts/build-controlplane``) or root, these tests skip,
and fail under ``CI=true``.
"""

from __future__ import annotations

import pytest

from dnsbalance.testing import ControlPlane

from .kit import require_pod_network


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
