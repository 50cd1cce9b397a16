"""Fixtures of the CLI tests: a kubeconfig for the fake API (``kube``, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsbalance.testing import FakeKubernetesAPI
from tests.kits.cli import NS


@pytest.fixture
def kubeconfig(kube: FakeKubernetesAPI, tmp_path: Path) -> Path:
    """A kubeconfig whose current context is ``kube``, namespace ``app``."""
    return kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
