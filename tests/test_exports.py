"""The public surface: __all__ lists exactly the public names, sorted."""

from __future__ import annotations

import subprocess
import sys

import dnsbalance


def test_all_is_sorted_and_complete() -> None:
    assert dnsbalance.__all__ == sorted(dnsbalance.__all__)
    public = {
        name
        for name in dir(dnsbalance)
        if not name.startswith("_") and name not in {"aio", "cli", "testing"}  # subpackages
    }
    assert public == set(dnsbalance.__all__) - {"__version__"}


def test_every_exception_derives_from_one_root() -> None:
    errors = [getattr(dnsbalance, n) for n in dnsbalance.__all__ if n.endswith("Error")]
    assert len(errors) == 7
    assert all(issubclass(e, dnsbalance.DnsBalanceError) for e in errors)


def test_import_does_not_load_the_kubernetes_client() -> None:
    """mode="dns" users pay nothing for the API side."""
    code = "import sys, dnsbalance, dnsbalance.testing; print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
