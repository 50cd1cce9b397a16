"""The ``demo``, ``check`` and ``convert-service`` commands: call the library, print its answer."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from dnsbalance._dns.servers import servers_for
from dnsbalance._dns.sync import make_resolver
from dnsbalance._exceptions import (
    ConfigError,
)
from dnsbalance._kube.client import namespace_for
from dnsbalance._target import Target

from .check import (
    CheckResult,
    load_client_quietly,
    run_checks,
)
from .convert import convert_documents
from .convert_cluster import ConvertOptions, ConvertResult, convert_service
from .exits import EXIT_FAILED, EXIT_OK
from .manifests import dump_json, dump_json_list, dump_yaml, read_documents
from .resolve_command import target_from


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
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


# -- check ------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target = target_from(args)
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


def cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
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
    result = convert_documents(
        documents, strategy=args.strategy, force=args.force, preview=args.diff
    )
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
