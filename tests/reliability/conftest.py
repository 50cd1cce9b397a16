"""Fixtures of the reliability suite: its own DNS servers (fault knobs are per server, so
no test can leave a fault on a server another test uses), the fake Kubernetes API, and
the table of what each fault cost, printed at the end of the run."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ holds backends.py (and tests/conftest.py puts it on sys.path first); this folder
# holds rel_support.py. Both are inserted here too, so a module of this folder can be run
# on its own from any working directory.
for _folder in (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from rel_support import MEASURED, NS  # noqa: E402

from dnsbalance.testing import DNSResponder, FakeKubernetesAPI  # noqa: E402


@pytest.fixture
def cluster_dns() -> Iterator[DNSResponder]:
    """An embedded cluster DNS of this test alone (its fault knobs affect nobody else)."""
    with DNSResponder(ttl=1) as server:
        yield server


@pytest.fixture
def kube() -> Iterator[FakeKubernetesAPI]:
    with FakeKubernetesAPI(bookmark_interval=0.5) as api:
        yield api


@pytest.fixture
def kubeconfig(kube: FakeKubernetesAPI, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The measured cost of each fault: what the README's reliability claims rest on."""
    if not MEASURED:
        return
    terminalreporter.section("reliability: fault | what happened | calls lost")
    for row in MEASURED:
        terminalreporter.write_line(f"{row.fault} | {row.happened} | {row.lost}")
