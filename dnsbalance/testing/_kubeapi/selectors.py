"""Label and field selectors with the grammar and error texts of k8s.io/apimachinery.

Label selectors: comma-separated requirements (AND), each one of ``key``, ``!key``,
``key=v``, ``key==v``, ``key!=v``, ``key in (a,b)``, ``key notin (a,b)``, ``key>N``,
``key<N``. ``!=`` and ``notin`` also match objects without the key. Keys are qualified
names (``prefix/name``), values label values; a bad selector raises :class:`SelectorError`
with the message the apiserver puts in its 400 BadRequest.

Field selectors: ``field=v``, ``field==v``, ``field!=v`` joined by commas (``\\,``, ``\\=``
and ``\\\\`` escape), over the fields a resource supports (:data:`FIELD_LABELS`: the
field label conversions of ``pkg/apis/core/v1`` for Services and Nodes, apimachinery's
``DefaultMetaV1FieldSelectorConversion`` for EndpointSlices), each refusing the others
with its own text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "FIELD_LABELS",
    "FieldSelector",
    "LabelSelector",
    "SelectorError",
    "field_value",
    "label_value_errors",
    "parse_field_selector",
    "parse_label_selector",
    "qualified_name_errors",
]


class SelectorError(ValueError):
    """A malformed selector; the message is the apiserver's."""


_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_SUBDOMAIN_MSG = (
    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
    "'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def qualified_name_errors(key: str) -> list[str]:
    """content.IsLabelKey (1.37): what is wrong with a label key (empty when nothing)."""
    errors: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        return [
            "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character (e.g. 'MyName',  or "
            "'my.name',  or '123-abc', regex used for validation is "
            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain "
            "prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errors.append("prefix part must be no more than 253 bytes")
            if not _SUBDOMAIN_RE.match(prefix):
                errors.append(_SUBDOMAIN_MSG)
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 bytes")
    if not _NAME_RE.match(name):
        errors.append(_NAME_MSG)
    return errors


def label_value_errors(value: str) -> list[str]:
    """IsValidLabelValue: what is wrong with a label value (empty when nothing)."""
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 bytes")
    if not _VALUE_RE.match(value):
        errors.append(_VALUE_MSG)
    return errors


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- label selectors ------------------------------------------------------------------

_SYMBOLS = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")
_SPECIAL = set("=!(),><")
_WS = set(" \t\r\n")


def _lex(text: str) -> list[tuple[str, str]]:
    """Tokens as (kind, literal): kind is 'id', a symbol, or 'eos'."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in _WS:
            i += 1
        elif ch in _SPECIAL:
            for symbol in _SYMBOLS:
                if text.startswith(symbol, i):
                    tokens.append((symbol, symbol))
                    i += len(symbol)
                    break
        else:
            start = i
            while i < len(text) and text[i] not in _WS and text[i] not in _SPECIAL:
                i += 1
            tokens.append(("id", text[start:i]))
    tokens.append(("eos", ""))
    return tokens


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # in notin = == != exists !exists gt lt
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key, "")
        if self.op in ("in", "=", "=="):
            return has and value in self.values
        if self.op in ("notin", "!="):
            return not has or value not in self.values
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(self.values[0])
        return has and (number > bound if self.op == "gt" else number < bound)


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; the empty selector matches everything."""

    requirements: tuple[_Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        if token[0] != "eos":
            self.pos += 1
        return token

    def parse(self) -> LabelSelector:
        requirements: list[_Requirement] = []
        for _ in range(len(self.tokens) + 1):  # each round consumes at least one token
            kind, lit = self.peek()
            if kind == "eos":
                return LabelSelector(tuple(requirements))
            if kind not in ("id", "!"):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self.requirement())
            except SelectorError as exc:
                raise SelectorError(f"unable to parse requirement: {exc}") from None
            kind, lit = self.take()
            if kind == "eos":
                return LabelSelector(tuple(requirements))
            if kind != ",":
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            kind, lit = self.peek()
            if kind not in ("id", "!"):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")
        raise SelectorError("selector too long")  # pragma: no cover - loop is bounded above

    def requirement(self) -> _Requirement:
        negated = False
        kind, lit = self.take()
        if kind == "!":
            negated = True
            kind, lit = self.take()
        if kind != "id":
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        errors = qualified_name_errors(key)
        if errors:
            # NewRequirement's path for the key is a nil field.Path: Go prints <nil>
            raise SelectorError(f"<nil>: Invalid value: {_quote(key)}: {'; '.join(errors)}")
        if negated or self.peek()[0] in ("eos", ","):
            return _Requirement(key, "!exists" if negated else "exists", ())
        kind, lit = self.take()
        ops = {"=": "=", "==": "==", "!=": "!=", ">": "gt", "<": "lt"}
        if kind == "id" and lit in ("in", "notin"):
            op = lit
            values = self.value_set()
        elif kind in ops:
            op = ops[kind]
            values = self.exact_value()
        else:
            raise SelectorError(f"found '{lit}', expected: in, notin, =, ==, !=, gt, lt")
        return _make_requirement(key, op, values)

    def value_set(self) -> list[str]:
        kind, lit = self.take()
        if kind != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        kind, lit = self.peek()
        if kind == ")":
            self.take()
            return [""]
        if kind not in ("id", ","):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        for _ in range(len(self.tokens)):  # each round consumes a token
            kind, lit = self.take()
            if kind == "id":
                values.add(lit)
                after, after_lit = self.peek()
                if after == ")":
                    break
                if after != ",":
                    raise SelectorError(f"found '{after_lit}', expected: ',' or ')'")
            elif kind == ",":
                if not values:
                    values.add("")
                after = self.peek()[0]
                if after == ")":
                    values.add("")
                    break
                if after == ",":
                    self.take()
                    values.add("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")
        kind, lit = self.take()
        if kind != ")":
            raise SelectorError(f"found '{lit}', expected: ')'")
        return sorted(values)

    def exact_value(self) -> list[str]:
        kind, lit = self.peek()
        if kind in ("eos", ","):
            return [""]
        self.take()
        if kind != "id":
            raise SelectorError(f"found '{lit}', expected: identifier")
        return [lit]


def _make_requirement(key: str, op: str, values: list[str]) -> _Requirement:
    errors: list[str] = []
    if op in ("in", "notin") and not values:
        errors.append(
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
        )
    if op in ("gt", "lt"):
        for i, value in enumerate(values):
            if not re.fullmatch(r"[-+]?[0-9]+", value):
                errors.append(
                    f"values[{i}]: Invalid value: {_quote(value)}: for 'Gt', 'Lt' operators, "
                    "the value must be an integer"
                )
    for i, value in enumerate(values):
        problems = label_value_errors(value)
        if problems:
            errors.append(
                f"values[{i}][{key}]: Invalid value: {_quote(value)}: {'; '.join(problems)}"
            )
    if errors:
        raise SelectorError(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
    return _Requirement(key, op, tuple(values))


def parse_label_selector(text: str) -> LabelSelector:
    """Parse ``labelSelector``; raises :class:`SelectorError` on bad input."""
    return _LabelParser(text).parse()


# -- field selectors ------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSelector:
    """Parsed ``fieldSelector`` terms: (field, operator, value)."""

    terms: tuple[tuple[str, str, str], ...] = ()

    def matches(self, get: Callable[[str], str]) -> bool:
        for field, op, value in self.terms:
            actual = get(field)
            if (op == "!=") == (actual == value):
                return False
        return True

    def value_of(self, field: str) -> str | None:
        """The value a term pins ``field`` to with ``=``/``==``, if any."""
        for name, op, value in self.terms:
            if name == field and op != "!=":
                return value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(text: str, whole: str) -> str:
    out, escaped = [], False
    for ch in text:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(
                    f"invalid field selector: invalid escape sequence: \\{ch} in {whole!r}"
                )
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    if escaped:
        raise SelectorError(f"invalid field selector: unterminated escape sequence in {whole!r}")
    return "".join(out)


# Per resource: the field labels it serves, and whether it refuses the others in the
# words of DefaultMetaV1FieldSelectorConversion (else ``field label not supported: X``).
FIELD_LABELS: dict[str, tuple[tuple[str, ...], bool]] = {
    "services": (("metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"), False),
    "nodes": (("metadata.name", "spec.unschedulable"), False),
    "endpointslices": (("metadata.name", "metadata.namespace"), True),
    "endpoints": (("metadata.name", "metadata.namespace"), False),
}


def field_value(obj: Mapping[str, object], field: str) -> str:
    """The value a field selector compares, as the resource's selectable fields set it."""
    node: object = obj
    for part in field.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if field == "spec.unschedulable" or isinstance(node, bool):
        return "true" if node is True else "false"
    return "" if node is None else str(node)


def parse_field_selector(
    text: str, supported: tuple[str, ...], *, default_conversion: bool = False
) -> FieldSelector:
    """Parse ``fieldSelector`` over the ``supported`` field labels; ``default_conversion``
    words a refusal as apimachinery's default conversion does."""
    terms: list[tuple[str, str, str]] = []
    if not text.strip():
        return FieldSelector()
    for term in _split_unescaped(text, ","):
        found = None
        for i in range(len(term)):
            for op in ("!=", "==", "="):
                if term.startswith(op, i):
                    found = (term[:i], op, term[i + len(op) :])
                    break
            if found:
                break
        if found is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = found
        field = field.strip()
        if field not in supported:
            if default_conversion:
                raise SelectorError(
                    f'{_quote(field)} is not a known field selector: only "metadata.name", '
                    '"metadata.namespace"'
                )
            raise SelectorError(f"field label not supported: {field}")
        terms.append((field, "!=" if op == "!=" else "=", _unescape(value, text)))
    return FieldSelector(tuple(terms))
