"""Kubernetes manifests: reading and writing multi-document YAML or JSON.

Pure text <-> data, no file or cluster I/O (the CLI reads the file). Reading:

- YAML with one or more documents (``---``); empty documents are skipped, as kubectl
  does. Timestamps and dates stay strings (``creationTimestamp``, an annotation holding
  ``2024-01-01``): PyYAML's SafeLoader would turn them into ``datetime`` objects that are
  neither valid Kubernetes JSON nor writable as JSON.
- JSON: one object, or several concatenated (what ``kubectl create --dry-run=client -o
  json`` prints for many files).
- Every document remembers the line it starts on, and a syntax error names its line and
  column: ``manifest.yaml:12:3: invalid YAML: ...``.

Writing is deterministic (key order kept, no line folding), so golden files compare
byte for byte. Comments in the input are not kept (PyYAML drops them). What a Service
holds and whether it is well formed: :mod:`.service_spec`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from dnsbalance._exceptions import ConversionError

__all__ = ["Document", "dump_json", "dump_json_list", "dump_yaml", "read_documents"]

JSON = dict[str, Any]

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MAX_DOCUMENTS = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader without the implicit timestamp type: dates stay strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Dumper(yaml.SafeDumper):
    """SafeDumper that indents nothing unusual and never writes anchors/aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass(frozen=True)
class Document:
    """One document of a manifest: its value and the (1-based) line it starts on."""

    value: Any
    line: int


def read_documents(text: str, *, source: str = "-") -> list[Document]:
    """The documents of ``text`` (YAML, or JSON when it starts with ``{``).

    Raises ConversionError naming ``source``, the line and the column of a syntax error.
    """
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _read_json(text, source)
    return _read_yaml(text, source)


def _read_json(text: str, source: str) -> list[Document]:
    decoder = json.JSONDecoder()
    documents: list[Document] = []
    position = 0
    for _ in range(_MAX_DOCUMENTS):
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return documents
        line = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise ConversionError(
                f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
            ) from None
        documents.append(Document(value, line))
    raise ConversionError(f"{source}: more than {_MAX_DOCUMENTS} documents")


def _read_yaml(text: str, source: str) -> list[Document]:
    try:
        loader = _Loader(text)  # PyYAML's reader refuses control characters here already
    except yaml.YAMLError as exc:
        raise ConversionError(f"{source}: invalid YAML: {exc}") from None
    documents: list[Document] = []
    try:
        for _ in range(_MAX_DOCUMENTS):
            if not loader.check_node():
                return documents
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node said there is one
                continue
            value = loader.construct_document(node)
            if value is not None:
                documents.append(Document(value, node.start_mark.line + 1))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConversionError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConversionError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    raise ConversionError(f"{source}: more than {_MAX_DOCUMENTS} documents")


def dump_yaml(objects: Iterable[Any]) -> str:
    """YAML documents separated by ``---``, keys in their order, no folding, no aliases."""
    text: str = yaml.dump_all(
        list(objects),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
        explicit_start=False,
    )
    return text


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def dump_json_list(objects: Sequence[Any]) -> str:
    """A ``kind: List`` holding ``objects`` (what ``kubectl get -o json`` prints for many)."""
    return dump_json({"apiVersion": "v1", "kind": "List", "items": list(objects)})
