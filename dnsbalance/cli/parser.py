"""The ``dnsbalance`` argument parser (argparse); each command names its handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from dnsbalance._version import __version__

from .commands import cmd_check, cmd_convert, cmd_demo
from .resolve_command import cmd_resolve


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
    # -v also after the subcommand (dnsbalance check X -v); SUPPRESS keeps the top-level
    # count when the subcommand gives none
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more logging (-v info, -vv debug)",
    )

    demo = commands.add_parser(
        "demo",
        parents=[verbose],
        help="see the problem and the fix side by side, on this machine (no cluster needed)",
        description=(
            "Runs gRPC backends on 127.0.77.x behind an embedded DNS server that publishes "
            "them as a headless Service would, and drives the same load through three "
            "clients: a plain channel to one address (ClusterIP), gRPC's own dns: resolver "
            "with round_robin, and dnsbalance. Two more backends appear part-way. Ends by "
            "itself."
        ),
    )
    demo.add_argument(
        "--backends", type=int, default=3, help="backends at the start (default 3; 1-20)"
    )
    demo.add_argument(
        "--duration", type=_positive, default=20.0, help="seconds in all (default 20; 4-600)"
    )
    demo.add_argument(
        "--no-live", action="store_true", help="plain text, one line per second (logs, CI)"
    )
    _add_output_option(demo)
    demo.set_defaults(handler=cmd_demo)

    resolve = commands.add_parser(
        "resolve",
        parents=[verbose],
        help="show the endpoints of a target as cluster DNS and the API see them",
        description="Show the endpoints of TARGET as cluster DNS publishes them and, when "
        "the Kubernetes API is reachable, as its EndpointSlices list them.",
    )
    resolve.add_argument(
        "target", metavar="TARGET", help="e.g. svc.ns:8000, kubernetes:///svc.ns:grpc"
    )
    _add_target_options(resolve)
    _add_api_options(resolve)
    _add_output_option(resolve)
    resolve.add_argument(
        "-w", "--watch", action="store_true", help="then print one line per change (Ctrl-C ends)"
    )
    resolve.add_argument(
        "--watch-seconds",
        type=_positive,
        metavar="N",
        help="with --watch: stop after N seconds (default: when interrupted)",
    )
    resolve.add_argument(
        "--interval",
        type=_positive,
        default=2.0,
        metavar="SECONDS",
        help="with --watch: seconds between DNS polls (default 2)",
    )
    resolve.set_defaults(handler=cmd_resolve)

    check = commands.add_parser(
        "check",
        parents=[verbose],
        help="preflight: DNS, headless Service, named ports, RBAC, gRPC resolver",
        description="Check what TARGET needs to be balanced: the name resolves, the Service "
        "is headless with named ports, this identity may list and watch EndpointSlices, "
        "and which gRPC DNS resolver is active. Exit 1 when a check fails.",
    )
    check.add_argument("target", metavar="TARGET", help="e.g. svc.ns:grpc")
    _add_target_options(check)
    _add_api_options(check)
    _add_output_option(check)
    check.set_defaults(handler=cmd_check)

    convert = commands.add_parser(
        "convert-service",
        parents=[verbose],
        help="make a Service headless (a twin, or in place)",
        description="Make Service NAME headless: --strategy twin (default) adds "
        "NAME-headless next to it; --strategy replace deletes and re-creates it headless "
        "(after writing a backup). With -f, convert the Services of a manifest offline.",
    )
    convert.add_argument("name", metavar="NAME", nargs="?", help="the Service to convert")
    convert.add_argument(
        "-f",
        "--filename",
        metavar="FILE",
        help="convert the Services of this YAML/JSON manifest offline ('-': stdin)",
    )
    convert.add_argument(
        "-n", "--namespace", help="namespace (default: the pod's, else the context's, else default)"
    )
    convert.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, in-cluster)")
    convert.add_argument("--context", help="kubeconfig context to use")
    convert.add_argument(
        "--strategy",
        choices=("twin", "replace"),
        default="twin",
        help="twin: add NAME-headless, the original stays (default); replace: delete and "
        "re-create NAME headless",
    )
    convert.add_argument("--twin-name", metavar="NAME", help="twin name (default NAME-headless)")
    convert.add_argument(
        "--backup-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="an existing folder where --strategy replace writes the backup (default: the "
        "current folder)",
    )
    convert.add_argument(
        "--delete-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="--strategy replace: how long to wait for a delete held by finalizers (a "
        "LoadBalancer's cloud clean-up) before leaving a ready-to-apply headless manifest "
        "(default 60)",
    )
    convert.add_argument(
        "--force",
        action="store_true",
        help="replace NodePort/LoadBalancer Services too (their external exposure is lost)",
    )
    convert.add_argument(
        "--dry-run",
        choices=("none", "client", "server"),
        nargs="?",
        const="client",
        default="none",
        help="client (the value when none is given): only say what would be done, reading "
        "only (needs get); server: send every write as a dry run (the API validates and "
        "admits it, nothing is stored). A dry run shows what --force would do instead of "
        "refusing",
    )
    output = convert.add_mutually_exclusive_group()
    output.add_argument(
        "-o", "--output", choices=("yaml", "json"), help="print the resulting objects"
    )
    output.add_argument(
        "--diff",
        action="store_true",
        help="preview: print a unified diff of the change (YAML) and change nothing, like "
        "kubectl diff; computed here from a read (needs only get), or with "
        "--dry-run=server from what the API answers",
    )
    convert.set_defaults(handler=cmd_convert)
    return parser


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nameserver",
        action="append",
        metavar="IP:PORT",
        help="DNS server (IP or IP:PORT) to ask instead of resolv.conf's (repeatable)",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        help="namespace when TARGET names none (a namespace in TARGET wins; default: the "
        "pod's, else the kubeconfig "
        "context's, else default)",
    )
    parser.add_argument("--cluster-domain", help="cluster domain (default: from resolv.conf)")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="DNS timeout in seconds (default 2)"
    )


def _add_api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.add_argument(
        "--mode",
        choices=("auto", "dns", "api"),
        default="auto",
        help="dns: DNS only; api: EndpointSlices only; auto (default): both when the API "
        "is reachable",
    )
