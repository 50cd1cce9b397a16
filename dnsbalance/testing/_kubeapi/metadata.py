"""Metadata rules of the store: timestamps, name characters, generation, Go-style lists."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from . import kinds
from .kinds import Resource

JSON = dict[str, Any]


CONFLICT_MESSAGE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def go_strings(items: list[str]) -> str:
    """A []string as Go's %#v prints it."""
    return "[]string{" + ", ".join(json.dumps(i) for i in items) + "}"


def timestamp_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_changed(res: Resource, obj: JSON, old: JSON) -> bool:
    if res is kinds.SERVICES:
        return bool(obj.get("spec") != old.get("spec"))

    def strip(o: JSON) -> JSON:
        return {k: v for k, v in o.items() if k not in ("metadata", "kind", "apiVersion")}

    return bool(
        strip(obj) != strip(old) or obj["metadata"].get("labels") != old["metadata"].get("labels")
    )
