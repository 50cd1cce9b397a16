"""The ``resolve`` command: a target's endpoints as DNS and the API see them, once or watched."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, TextIO

from dnsbalance._dns.servers import describe_servers, servers_for
from dnsbalance._dns.sync import discover, make_resolver
from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import (
    ConfigError,
    DnsBalanceError,
    KubernetesError,
)
from dnsbalance._kube.client import namespace_for
from dnsbalance._settings import api_only, check_port_for_mode
from dnsbalance._target import Target, parse_target

from .check import load_client_quietly
from .exits import EXIT_OK
from .manifests import dump_json
from .views import Row, ViewChange, compare, empty_cause, list_api_endpoints, watch_views


def target_from(args: argparse.Namespace) -> Target:
    namespace = args.namespace or namespace_for(kubeconfig=args.kubeconfig, context=args.context)
    return parse_target(args.target, namespace=namespace, cluster_domain=args.cluster_domain)


# -- resolve ----------------------------------------------------------------------------


def cmd_resolve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.watch and args.watch_seconds is not None:
        raise ConfigError("--watch-seconds needs --watch")
    if not args.watch:
        return _resolve(args, out, err)
    try:
        return _resolve(args, out, err)
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends
        return EXIT_OK


def _resolve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target = target_from(args)
    check_port_for_mode(target, args.mode)
    need_api = api_only(target, args.mode)  # the library's rule: mode api, or no port
    resolver = None
    if not need_api:
        resolver = make_resolver(servers_for(target, args.nameserver), timeout=args.timeout)
    client, api_error = None, None
    if args.mode != "dns":
        client, api_error = load_client_quietly(kubeconfig=args.kubeconfig, context=args.context)
        if client is None and need_api:
            why = (
                "--mode api needs the Kubernetes API"
                if args.mode == "api"
                else "a target without a port needs the Kubernetes API (DNS cannot tell "
                "the Service's first port)"
            )
            raise api_error or KubernetesError(
                f"{why}: pass --kubeconfig, set KUBECONFIG, or run in a pod"
            )
    try:
        dns_view = discover(target, resolver=resolver) if resolver is not None else None
        api_view = None
        if client is not None:
            try:
                api_view = list_api_endpoints(client, target)
            except KubernetesError as exc:
                if need_api:
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
