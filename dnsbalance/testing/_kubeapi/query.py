"""One request's query parameters and body, parsed as kube-apiserver does (400 otherwise)."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Mapping
from typing import Any

from .selectors import FIELD_LABELS, SelectorError, parse_field_selector, parse_label_selector
from .status import (
    bad_request,
)


def client_gone(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError as exc:
        raise bad_request(f"json: cannot unmarshal the request body: {exc}") from None


def int_param(query: Mapping[str, str], name: str) -> int:
    text = query.get(name, "")
    if not text:
        return 0
    try:
        return max(0, int(text))
    except ValueError:
        raise bad_request(f'invalid value for {name}: "{text}"') from None


def selectors_of(query: Mapping[str, str], resource: str = "endpoints") -> tuple[Any, Any]:
    supported, default_conversion = FIELD_LABELS[resource]
    try:
        labels = parse_label_selector(query.get("labelSelector", ""))
        fields = parse_field_selector(
            query.get("fieldSelector", ""), supported, default_conversion=default_conversion
        )
    except SelectorError as exc:
        raise bad_request(str(exc)) from None
    return labels, fields


def dry_run_of(query: Mapping[str, str]) -> bool:
    """``?dryRun=All`` of a create, update or patch (400 for another value)."""
    return _dry_run([query["dryRun"]] if "dryRun" in query else [])


def delete_options(query: Mapping[str, str], raw: bytes) -> tuple[bool, Any]:
    """The dry run and preconditions of a DELETE, read as handlers/delete.go reads them:
    from the body when it is not empty (``len(body) > 0``: ``{}`` counts), the query
    parameters then ignored; from the query parameters only when there is no body."""
    if not raw:
        return dry_run_of(query), None
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise bad_request("decoded object cannot be converted to DeleteOptions")
    dry = body.get("dryRun")
    values = [str(v) for v in dry] if isinstance(dry, list) else []
    return _dry_run(values), body.get("preconditions")


def _dry_run(values: list[str]) -> bool:
    for value in values:
        if value not in ("All", ""):
            raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return "All" in values
