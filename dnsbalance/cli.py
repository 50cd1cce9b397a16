"""The ``dnsbalance`` command: parses arguments, calls library functions, prints.

argparse (standard library) rather than click: the CLI is a thin layer, and a
library that sits in every gRPC client should not pull a CLI framework into its
users' dependency trees. Exit codes: 0 ok, 1 failure, 2 bad usage or refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ._discovery import describe_servers, discover, make_resolver
from ._endpoints import Endpoint
from ._exceptions import ConfigError, DnsBalanceError, TargetError
from ._target import Target, parse_target
from ._version import __version__

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnsbalance",
        description="Client-side load balancing for gRPC clients in Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"dnsbalance {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    resolve = commands.add_parser(
        "resolve",
        help="show the endpoints of a target as cluster DNS publishes them",
        description="Show the endpoints of TARGET as cluster DNS publishes them.",
    )
    resolve.add_argument(
        "target", metavar="TARGET", help="e.g. svc.ns:8000, kubernetes:///svc.ns:grpc"
    )
    _add_target_options(resolve)
    resolve.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )
    resolve.set_defaults(handler=_cmd_resolve)
    return parser


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nameserver",
        action="append",
        metavar="HOST:PORT",
        help="DNS server to ask instead of resolv.conf's (repeatable)",
    )
    parser.add_argument("-n", "--namespace", help="namespace when TARGET names none")
    parser.add_argument("--cluster-domain", help="cluster domain (default: from resolv.conf)")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="DNS timeout in seconds (default 2)"
    )


def _target_from(args: argparse.Namespace) -> Target:
    return parse_target(args.target, namespace=args.namespace, cluster_domain=args.cluster_domain)


def _cmd_resolve(args: argparse.Namespace, out: TextIO) -> int:
    target = _target_from(args)
    servers = args.nameserver or ([target.dns_server] if target.dns_server else None)
    resolver = make_resolver(servers, timeout=args.timeout)
    endpoints = discover(target, resolver=resolver)
    report = {
        "target": dataclasses.asdict(target),
        "dns": {
            "name": target.srv_name if target.port_name else target.fqdn,
            "server": describe_servers(resolver),
            "endpoints": [_endpoint_dict(ep) for ep in endpoints],
        },
    }
    if args.output == "json":
        json.dump(report, out, indent=2)
        out.write("\n")
        return EXIT_OK
    kind = "SRV" if target.port_name else "A/AAAA"
    out.write(f"{target} -> {report['dns']['name']} ({kind} via {report['dns']['server']})\n")
    if not endpoints:
        out.write("no ready endpoints (NXDOMAIN or no records)\n")
        return EXIT_OK
    _print_table(
        out, ["ADDRESS", "PORT", "HOSTNAME", "TTL"], [_endpoint_row(ep) for ep in endpoints]
    )
    return EXIT_OK


def _endpoint_dict(ep: Endpoint) -> dict[str, Any]:
    return {"address": ep.address, "port": ep.port, "hostname": ep.hostname, "ttl": ep.ttl}


def _endpoint_row(ep: Endpoint) -> list[str]:
    return [ep.address, str(ep.port), ep.hostname or "-", "-" if ep.ttl is None else str(ep.ttl)]


def _print_table(out: TextIO, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        out.write("\n")


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = out or sys.stdout
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help(out)
        return EXIT_USAGE
    try:
        code: int = args.handler(args, out)
    except (TargetError, ConfigError) as exc:
        print(f"dnsbalance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DnsBalanceError as exc:
        print(f"dnsbalance: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return code
