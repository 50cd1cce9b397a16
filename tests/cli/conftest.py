"""The ``cluster`` fixture: the API server the CLI tests written against
:class:`tests.kits.cluster.Cluster` run on.

Today one: FakeKubernetesAPI (the ``kube`` fixture). A real control plane joins by
adding a param here that builds a :class:`Cluster` from its kubeconfig (with ``fake``
None); the tests need no change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsbalance.testing import FakeKubernetesAPI
from tests.kits import NS
from tests.kits.cluster import Cluster


@pytest.fixture(params=["fake"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Cluster:
    kube: FakeKubernetesAPI = request.getfixturevalue("kube")
    path = kube.write_kubeconfig(tmp_path / "cluster-kubeconfig", namespace=NS)
    return Cluster(kubeconfig=path, namespace=NS, fake=kube)
