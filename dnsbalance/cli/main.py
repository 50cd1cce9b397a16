"""The ``dnsbalance`` command: parses arguments, calls library functions, prints.

argparse (standard library) rather than click: the CLI is a thin layer, and a
library that sits in every gRPC client should not pull a CLI framework into its
users' dependency trees. Options follow kubectl (``-n``, ``--kubeconfig``,
``--context``, ``-f``, ``-o``, ``--dry-run``).

Exit codes: 0 ok, 1 failed, 2 refused or bad usage. Results go to stdout; warnings,
progress and errors to stderr, so ``-o yaml`` output can be piped.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TextIO

from dnsbalance._exceptions import (
    ConfigError,
    ConversionError,
    DnsBalanceError,
    TargetError,
)
from dnsbalance._version import __version__

from .exits import EXIT_FAILED, EXIT_USAGE
from .parser import build_parser

__all__ = ["main"]


# -- main -------------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = out or sys.stdout
    err = err or sys.stderr
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help(out)
        return EXIT_USAGE
    logging.getLogger("dnsbalance").debug(  # what a bug report needs first
        "dnsbalance %s (Python %s): %s", __version__, sys.version.split()[0], args.command
    )
    try:
        _check_kubeconfig(getattr(args, "kubeconfig", None))
        code: int = args.handler(args, out, err)
    except (TargetError, ConfigError, ConversionError) as exc:
        print(f"dnsbalance: error: {exc}", file=err)
        return EXIT_USAGE
    except DnsBalanceError as exc:
        print(f"dnsbalance: error: {exc}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return code


def _check_kubeconfig(path: str | None) -> None:
    """An explicit --kubeconfig is not a fallback: one that cannot be read is a usage
    error naming it (the client would only say "Invalid kube-config file. No
    configuration found.")."""
    if path is None:
        return
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise ConfigError(f"--kubeconfig {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"--kubeconfig {path}: cannot be read ({exc.strerror or exc})") from exc
