"""Fixtures of the reliability suite: its own DNS servers (fault knobs are per server, so
no test can leave a fault on a server another test uses), the fake Kubernetes API, and
the table of what each fault cost, printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dnsbalance.testing import DNSResponder
from tests.kits.reliability import MEASURED


@pytest.fixture
def cluster_dns() -> Iterator[DNSResponder]:
    """An embedded cluster DNS of this test alone (its fault knobs affect nobody else)."""
    with DNSResponder(ttl=1) as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The measured cost of each fault: what the README's reliability claims rest on."""
    if not MEASURED:
        return
    terminalreporter.section("reliability: fault | what happened | calls lost")
    for row in MEASURED:
        terminalreporter.write_line(f"{row.fault} | {row.happened} | {row.lost}")
