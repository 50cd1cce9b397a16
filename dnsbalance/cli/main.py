"""The ``dnsbalance`` command: parses arguments, calls library functions, prints.

argparse (standard library) rather than click: the CLI is a thin layer, and a
library that sits in every gRPC client should not pull a CLI framework into its
users' dependency trees. Options follow kubectl (``-n``, ``--kubeconfig``,
``--context``, ``-f``, ``-o``, ``--dry-run``).

Exit codes: 0 ok, 1 failed, 2 refused or bad usage. Results go to stdout; warnings,
progress and errors to stderr, so ``-o yaml`` output can be piped.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from dnsbalance._dns.servers import describe_servers, servers_for
from dnsbalance._dns.sync import discover, make_resolver
from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import (
    ConfigError,
    ConversionError,
    DnsBalanceError,
    KubernetesError,
    TargetError,
)
from dnsbalance._kube.client import namespace_for
from dnsbalance._target import Target, parse_target
from dnsbalance._version import __version__

from .check import (
    CheckResult,
    Row,
    ViewChange,
    compare,
    empty_cause,
    list_api_endpoints,
    load_client_quietly,
    run_checks,
    watch_views,
)
from .convert import convert_documents
from .convert_cluster import ConvertOptions, ConvertResult, convert_service
from .manifests import dump_json, dump_json_list, dump_yaml, read_documents

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
    demo.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )
    demo.set_defaults(handler=_cmd_demo)

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
    resolve.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )
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
    resolve.set_defaults(handler=_cmd_resolve)

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
    check.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )
    check.set_defaults(handler=_cmd_check)

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
        help="client (the value when none is given): only say what would be done; server: "
        "send the writes with dryRun=All",
    )
    output = convert.add_mutually_exclusive_group()
    output.add_argument(
        "-o", "--output", choices=("yaml", "json"), help="print the resulting objects"
    )
    output.add_argument(
        "--diff",
        action="store_true",
        help="preview: print a unified diff of the change (YAML) and change nothing, like "
        "kubectl diff (with --dry-run=server the API computes the result)",
    )
    convert.set_defaults(handler=_cmd_convert)
    return parser


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .demo_view import show_demo

    if not 1 <= args.backends <= 20:
        raise ConfigError(f"--backends must be 1 to 20, got {args.backends}")
    if not 4 <= args.duration <= 600:
        raise ConfigError(f"--duration must be 4 to 600 seconds, got {args.duration}")
    live = not args.no_live and args.output == "text" and out.isatty()
    result = show_demo(
        out, backends=args.backends, duration=args.duration, live=live, output=args.output
    )
    for client in result.clients:
        if client.failure is not None:
            print(
                f"dnsbalance: {client.name}: {client.errors} failed calls; the first: "
                f"{client.failure}",
                file=err,
            )
    ours = next(c for c in result.clients if c.name == "dnsbalance")
    if ours.spread is None and ours.errors == 0:
        print("dnsbalance: the dnsbalance client never balanced over every backend", file=err)
    return EXIT_OK if ours.ok else EXIT_FAILED


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


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
        help="namespace when TARGET names none (default: the pod's, else the kubeconfig "
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


def _target_from(args: argparse.Namespace) -> Target:
    namespace = args.namespace or namespace_for(kubeconfig=args.kubeconfig, context=args.context)
    return parse_target(args.target, namespace=namespace, cluster_domain=args.cluster_domain)


# -- resolve ----------------------------------------------------------------------------


def _cmd_resolve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.watch and args.watch_seconds is not None:
        raise ConfigError("--watch-seconds needs --watch")
    if not args.watch:
        return _resolve(args, out, err)
    try:
        return _resolve(args, out, err)
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends
        return EXIT_OK


def _resolve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target = _target_from(args)
    resolver = None
    if args.mode != "api":
        resolver = make_resolver(servers_for(target, args.nameserver), timeout=args.timeout)
    client, api_error = None, None
    if args.mode != "dns":
        client, api_error = load_client_quietly(kubeconfig=args.kubeconfig, context=args.context)
        if client is None and args.mode == "api":
            raise api_error or KubernetesError(
                "--mode api needs Kubernetes API access: pass --kubeconfig, set KUBECONFIG, "
                "or run in a pod"
            )
    try:
        dns_view = discover(target, resolver=resolver) if resolver is not None else None
        api_view = None
        if client is not None:
            try:
                api_view = list_api_endpoints(client, target)
            except KubernetesError as exc:
                if args.mode == "api":
                    raise
                api_error = exc
        if api_error is not None:
            print(f"dnsbalance: note: showing DNS only: {api_error}", file=err)
        report = _resolve_report(target, resolver, client, dns_view, api_view, api_error)
        report["cause"] = None
        if not report["rows"] and client is not None and api_error is None:
            report["cause"] = empty_cause(client, target)
        if args.output == "json":
            out.write(json.dumps(report) + "\n" if args.watch else dump_json(report))
        else:
            _print_resolve(out, target, report, dns_view, api_view)
        if not args.watch:
            return EXIT_OK
        out.flush()
        for change in watch_views(
            target,
            resolver=resolver,
            api_client=client,
            dns_view=dns_view,
            api_view=api_view,
            interval=args.interval,
            seconds=args.watch_seconds,
        ):
            _print_change(out, change, json_lines=args.output == "json")
        return EXIT_OK
    finally:
        if client is not None:
            client.close()


def _resolve_report(
    target: Target,
    resolver: Any,
    client: Any,
    dns_view: tuple[Endpoint, ...] | None,
    api_view: tuple[Endpoint, ...] | None,
    api_error: DnsBalanceError | None,
) -> dict[str, Any]:
    rows = compare(dns_view, api_view)
    report: dict[str, Any] = {"target": dataclasses.asdict(target)}
    report["dns"] = (
        None
        if dns_view is None
        else {
            "name": target.srv_name if target.port_name else target.fqdn,
            "server": describe_servers(resolver),
            "endpoints": [_endpoint_dict(ep) for ep in dns_view],
        }
    )
    report["api"] = (
        None
        if api_view is None and api_error is None
        else {
            "server": getattr(getattr(client, "configuration", None), "host", None),
            "endpoints": None if api_view is None else [_endpoint_dict(ep) for ep in api_view],
            "error": None if api_error is None else str(api_error),
        }
    )
    both = dns_view is not None and api_view is not None
    report["rows"] = [
        {**_endpoint_dict(row.endpoint), "dns": row.in_dns, "api": row.in_api} for row in rows
    ]
    report["disagreements"] = sum(not row.agrees for row in rows) if both else None
    return report


def _print_resolve(
    out: TextIO,
    target: Target,
    report: dict[str, Any],
    dns_view: tuple[Endpoint, ...] | None,
    api_view: tuple[Endpoint, ...] | None,
) -> None:
    if report["dns"] is not None:
        kind = "SRV" if target.port_name else "A/AAAA"
        out.write(f"{target} -> {report['dns']['name']} ({kind} via {report['dns']['server']})\n")
    if api_view is not None:
        out.write(
            f"{target} -> EndpointSlices of service/{target.service} in namespace "
            f"{target.namespace} (API {report['api']['server']})\n"
        )
    rows = compare(dns_view, api_view)
    if not rows:
        cause = report.get("cause") or "NXDOMAIN or no records"
        out.write(f"no ready endpoints ({cause})\n")
        if report["disagreements"] is not None:
            out.write("disagreements: 0\n")
        return
    header = ["ADDRESS", "PORT", "HOSTNAME"]
    if dns_view is not None:
        header.append("TTL")
    both = dns_view is not None and api_view is not None
    if both:
        header += ["DNS", "API"]
    table = [_row(row, ttl=dns_view is not None, marks=both) for row in rows]
    _print_table(out, header, table)
    if both:
        out.write(f"disagreements: {report['disagreements']}\n")


def _row(row: Row, *, ttl: bool, marks: bool) -> list[str]:
    cells = _endpoint_row(row.endpoint)
    if not ttl:
        cells = cells[:3]
    elif not row.in_dns:
        cells[3] = "-"
    if marks:
        cells += ["yes" if row.in_dns else "no", "yes" if row.in_api else "no"]
    return cells


def _print_change(out: TextIO, change: ViewChange, *, json_lines: bool) -> None:
    if json_lines:
        record: dict[str, Any] = {
            "elapsed": round(change.elapsed, 3),
            "source": change.source,
            "error": change.error,
            "disagreements": change.disagreements,
        }
        if change.change is not None:
            record["added"] = [_endpoint_dict(ep) for ep in change.change.added]
            record["removed"] = [_endpoint_dict(ep) for ep in change.change.removed]
            record["endpoints"] = [_endpoint_dict(ep) for ep in change.change.new]
        out.write(json.dumps(record) + "\n")
    elif change.change is None:
        out.write(f"{change.elapsed:7.1f}s {change.source.upper()} error: {change.error}\n")
    else:
        moved = [f"+{ep.hostport}" for ep in change.change.added]
        moved += [f"-{ep.hostport}" for ep in change.change.removed]
        out.write(
            f"{change.elapsed:7.1f}s {change.source.upper()} {change.change} "
            f"{' '.join(moved)}; disagreements: {change.disagreements}\n"
        )
    out.flush()


def _endpoint_dict(ep: Endpoint) -> dict[str, Any]:
    return {"address": ep.address, "port": ep.port, "hostname": ep.hostname, "ttl": ep.ttl}


def _endpoint_row(ep: Endpoint) -> list[str]:
    return [ep.address, str(ep.port), ep.hostname or "-", "-" if ep.ttl is None else str(ep.ttl)]


def _print_table(out: TextIO, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write(line.rstrip() + "\n")


# -- check ------------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target = _target_from(args)
    resolver = make_resolver(servers_for(target, args.nameserver), timeout=args.timeout)
    client, api_error = None, None
    if args.mode != "dns":  # mode dns never reads the API
        client, api_error = load_client_quietly(kubeconfig=args.kubeconfig, context=args.context)
    try:
        results = run_checks(
            target, resolver=resolver, api_client=client, api_error=api_error, mode=args.mode
        )
    finally:
        if client is not None:
            client.close()
    failed = any(r.status == "fail" for r in results)
    if args.output == "json":
        out.write(
            dump_json(
                {
                    "target": str(target),
                    "ok": not failed,
                    "checks": [dataclasses.asdict(r) for r in results],
                }
            )
        )
    else:
        _print_checks(out, target, results)
    return EXIT_FAILED if failed else EXIT_OK


def _print_checks(out: TextIO, target: Target, results: Sequence[CheckResult]) -> None:
    out.write(f"checks for {target}\n")
    for result in results:
        out.write(f"{result.status:<4}  {result.name}: {result.detail}\n")
        if result.fix and result.status != "ok":
            out.write(f"      fix: {result.fix}\n")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "warn", "fail")}
    out.write(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail\n")


# -- convert-service --------------------------------------------------------------------


def _cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.filename is not None:
        if args.name:
            raise ConfigError("give either NAME (a Service in the cluster) or -f FILE, not both")
        if args.dry_run == "server":
            raise ConfigError("--dry-run=server needs a cluster; -f works offline")
        return _convert_file(args, out, err)
    if not args.name:
        raise ConfigError("convert-service needs NAME (a Service in the cluster) or -f FILE")
    if args.backup_dir is not None and not args.backup_dir.exists():
        raise ConfigError(
            f"--backup-dir {args.backup_dir} does not exist: create it first (or leave "
            "--backup-dir out to write the backup in the current folder)"
        )
    dry_run = args.dry_run
    if args.diff and dry_run == "none":
        dry_run = "client"  # --diff is a preview: it never writes
    client, api_error = load_client_quietly(kubeconfig=args.kubeconfig, context=args.context)
    if client is None:
        raise api_error or ConfigError(
            "no Kubernetes API configuration: pass --kubeconfig, set KUBECONFIG, run in a "
            "pod, or convert a manifest offline with -f FILE"
        )
    told: list[str] = []

    def progress(message: str) -> None:
        told.append(message)
        print(f"dnsbalance: {message}", file=err, flush=True)

    try:
        namespace = args.namespace or namespace_for(
            kubeconfig=args.kubeconfig, context=args.context
        )
        options = ConvertOptions(
            strategy=args.strategy,
            dry_run=dry_run,
            force=args.force,
            twin_name=args.twin_name,
            backup_dir=args.backup_dir or Path(),
            delete_timeout=args.delete_timeout,
        )
        result = convert_service(
            client, namespace=namespace, name=args.name, options=options, progress=progress
        )
    finally:
        client.close()
    for warning in result.warnings:
        if f"warning: {warning}" not in told:
            print(f"dnsbalance: warning: {warning}", file=err)
    _print_convert_result(out, err, args, result, told)
    return EXIT_OK if result.ok else EXIT_FAILED


def _print_convert_result(
    out: TextIO, err: TextIO, args: argparse.Namespace, result: ConvertResult, told: list[str]
) -> None:
    steps = [step for step in result.steps if step not in told]
    if result.ok and result.target and result.action != "unchanged":
        steps.append(f"target for dnsbalance: {result.target}")
    if args.output is None and not args.diff:
        for step in steps:
            out.write(step + "\n")
        return
    for step in steps:
        print(f"dnsbalance: {step}", file=err)
    if args.diff:
        out.write(_diff(list(result.before), list(result.objects), result.name))
    elif args.output == "json":
        objects = list(result.objects)
        out.write(dump_json(objects[0]) if len(objects) == 1 else dump_json_list(objects))
    else:
        out.write(dump_yaml(result.objects))


def _convert_file(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    source = args.filename
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {source}: {exc}") from exc
    documents = read_documents(text, source=source)
    if not documents:
        print(f"dnsbalance: warning: {source} holds no documents; nothing to convert", file=err)
    values = _flatten([d.value for d in documents])
    if documents and not any(isinstance(v, dict) and v.get("kind") == "Service" for v in values):
        print(
            f"dnsbalance: warning: {source} holds no Service; nothing to convert (passed "
            "through unchanged)",
            file=err,
        )
    result = convert_documents(documents, strategy=args.strategy, force=args.force)
    for warning in result.warnings:
        print(f"dnsbalance: warning: {warning}", file=err)
    if args.diff:
        out.write(_diff([d.value for d in documents], result.documents, source))
    elif args.output == "json":
        out.write(dump_json_list(_flatten(result.documents)))
    else:
        out.write(dump_yaml(result.documents))
    return EXIT_OK


def _flatten(documents: Sequence[Any]) -> list[Any]:
    """Documents with ``kind: List`` items lifted out (one JSON List holds everything)."""
    flat: list[Any] = []
    for doc in documents:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            flat.extend(doc.get("items") or [])
        else:
            flat.append(doc)
    return flat


_SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def _diff_view(obj: Any) -> Any:
    """``obj`` without what the server sets (status, uid, resourceVersion, timestamps,
    managedFields, selfLink), so a diff shows only the change; keys are sorted in dump."""
    if not isinstance(obj, dict):
        return obj
    if obj.get("kind") == "List":
        return {**obj, "items": [_diff_view(i) for i in obj.get("items") or ()]}
    view = {k: v for k, v in obj.items() if k != "status"}
    metadata = view.get("metadata")
    if isinstance(metadata, dict):
        view["metadata"] = {
            k: v for k, v in metadata.items() if k not in (*_SERVER_SET, "selfLink")
        }
    return view


def _diff(before: Sequence[Any], after: Sequence[Any], name: str) -> str:
    old = _sorted_yaml([_diff_view(o) for o in before]).splitlines(keepends=True)
    new = _sorted_yaml([_diff_view(o) for o in after]).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, fromfile=f"a/{name}", tofile=f"b/{name}"))


def _sorted_yaml(objects: Sequence[Any]) -> str:
    return dump_yaml(json.loads(json.dumps(objects, sort_keys=True)))


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
