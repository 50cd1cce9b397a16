"""Running the ``dnsbalance`` command in this process, as the CLI tests do."""

from __future__ import annotations

import io
from pathlib import Path

from dnsbalance.cli.main import main


def run(*argv: str) -> tuple[int, str, str]:
    """``dnsbalance ARGV``: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def convert(kubeconfig: Path, *argv: str) -> tuple[int, str, str]:
    """``dnsbalance convert-service ARGV --kubeconfig KUBECONFIG``."""
    return run("convert-service", *argv, "--kubeconfig", str(kubeconfig))
