"""metav1.Status bodies as kube-apiserver writes them, and the error that carries one.

Key order, reasons and messages follow ``k8s.io/apimachinery/pkg/api/errors``: a
``NotFound`` names the qualified resource (``endpointslices.discovery.k8s.io "x" not
found``), an ``Invalid`` names the qualified kind (``Service "x" is invalid: ...``) and
lists ``details.causes``, field values are rendered the way current servers render them
(strings quoted, lists as JSON: ``Invalid value: ["None"]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FieldError",
    "StatusError",
    "already_exists",
    "bad_request",
    "conflict",
    "expired",
    "expired_continue",
    "expired_in_etcd",
    "forbidden",
    "internal_error",
    "invalid",
    "not_found",
    "render_value",
    "status_for_code",
    "unauthorized",
]

JSON = dict[str, Any]

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

_GENERIC_MESSAGES: dict[int, str] = {
    429: "Too many requests, please try again later.",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted, "
    "but may still be processing the request",
}


class StatusError(Exception):
    """An API error: ``status`` is the metav1.Status body the server answers with."""

    def __init__(self, status: JSON) -> None:
        super().__init__(str(status.get("message", "")))
        self.status = status

    @property
    def code(self) -> int:
        return int(self.status["code"])

    @property
    def reason(self) -> str:
        return str(self.status.get("reason", ""))


def _status(code: int, message: str, reason: str | None, details: JSON | None = None) -> JSON:
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def _details(name: str | None, group: str, kind: str) -> JSON:
    details: JSON = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> StatusError:
    message = f'{_qualified(resource, group)} "{name}" not found'
    return StatusError(_status(404, message, "NotFound", _details(name, group, resource)))


def already_exists(resource: str, group: str, name: str) -> StatusError:
    message = f'{_qualified(resource, group)} "{name}" already exists'
    return StatusError(_status(409, message, "AlreadyExists", _details(name, group, resource)))


def conflict(resource: str, group: str, name: str, why: str) -> StatusError:
    message = f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}'
    return StatusError(_status(409, message, "Conflict", _details(name, group, resource)))


def forbidden(
    resource: str, group: str, name: str | None, verb: str, namespace: str | None, user: str
) -> StatusError:
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    why = f'User "{user}" cannot {verb} resource "{resource}" in API group "{group}" {scope}'
    target = _qualified(resource, group) + (f' "{name}"' if name else "")
    message = f"{target} is forbidden: {why}"
    return StatusError(_status(403, message, "Forbidden", _details(name, group, resource)))


def unauthorized() -> StatusError:
    return StatusError(_status(401, "Unauthorized", "Unauthorized"))


def bad_request(message: str) -> StatusError:
    return StatusError(_status(400, message, "BadRequest"))


def expired(message: str) -> StatusError:
    return StatusError(_status(410, message, "Expired"))


def expired_in_etcd(what: str) -> StatusError:
    """etcd3's 410 for a compacted ``"watch"`` or ``"list"`` resourceVersion."""
    return expired(f"The resourceVersion for the provided {what} is too old.")


def expired_continue(token: str) -> StatusError:
    """etcd3's 410 for a continue token too old: ``token`` goes on from the latest state."""
    error = expired(
        "The provided continue parameter is too old to display a consistent list result. You "
        "can start a new list without the continue parameter, or use the continue token in "
        "this response to retrieve the remainder of the results. Continuing with the "
        "provided token results in an inconsistent list - objects that were created, "
        "modified, or deleted between the time the first chunk was returned and now may show "
        "up in the list."
    )
    error.status["metadata"] = {"continue": token}
    return error


def internal_error(message: str) -> StatusError:
    return StatusError(
        _status(
            500,
            f"Internal error occurred: {message}",
            "InternalError",
            {"causes": [{"message": message}]},
        )
    )


def status_for_code(code: int, message: str | None = None) -> StatusError:
    """A Status for an arbitrary HTTP code (fault injection)."""
    if code == 500:
        return internal_error(message or "injected failure")
    text = message or _GENERIC_MESSAGES.get(code) or f"injected failure ({code})"
    return StatusError(_status(code, text, REASONS.get(code)))


def render_value(value: Any) -> str:
    """A field value as Go's field.Error renders it: strings quoted, lists as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: ``type`` is the cause reason, ``detail`` the Go message."""

    field: str
    type: str  # FieldValueInvalid, FieldValueRequired, ...
    detail: str
    value: Any = None

    @classmethod
    def invalid(cls, field: str, value: Any, detail: str) -> FieldError:
        return cls(field, "FieldValueInvalid", detail, value)

    @classmethod
    def required(cls, field: str, detail: str = "") -> FieldError:
        return cls(field, "FieldValueRequired", detail)

    @classmethod
    def forbidden(cls, field: str, detail: str) -> FieldError:
        return cls(field, "FieldValueForbidden", detail)

    @classmethod
    def duplicate(cls, field: str, value: Any) -> FieldError:
        return cls(field, "FieldValueDuplicate", "", value)

    @classmethod
    def not_supported(cls, field: str, value: Any, supported: list[str]) -> FieldError:
        listed = ", ".join(json.dumps(s) for s in supported)
        return cls(field, "FieldValueNotSupported", f"supported values: {listed}", value)

    def body(self) -> str:
        if self.type == "FieldValueInvalid":
            return f"Invalid value: {render_value(self.value)}: {self.detail}"
        if self.type == "FieldValueRequired":
            return f"Required value: {self.detail}" if self.detail else "Required value"
        if self.type == "FieldValueForbidden":
            return f"Forbidden: {self.detail}" if self.detail else "Forbidden"
        if self.type == "FieldValueTooMany":
            return f"Too many: {render_value(self.value)}: {self.detail}"
        if self.type == "FieldValueDuplicate":
            return f"Duplicate value: {render_value(self.value)}"
        return f"Unsupported value: {render_value(self.value)}: {self.detail}"

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> StatusError:
    """422 Invalid, as ``apierrors.NewInvalid(GroupKind, name, errs)``."""
    qualified_kind = f"{kind}.{group}" if group else kind
    if len(errors) == 1:
        aggregate = str(errors[0])
    else:
        aggregate = "[" + ", ".join(str(e) for e in errors) + "]"
    message = f'{qualified_kind} "{name}" is invalid: {aggregate}'
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
    details = _details(name, group, kind)
    details["causes"] = causes
    return StatusError(_status(422, message, "Invalid", details))
