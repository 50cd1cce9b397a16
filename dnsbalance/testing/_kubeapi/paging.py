"""resourceVersions, continue tokens and a list's or watch's options, parsed, made and
checked as kube-apiserver does."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping

from .status import FieldError, bad_request, invalid

# A continue token's resourceVersion meaning "continue at the latest": what a 410 for
# a continue token too old offers instead (etcd3's handleCompactedErrorForPaging).
LATEST = -1


def parse_rv(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f'invalid resource version "{text}"') from None
    if value < 0:
        raise bad_request(f'invalid resource version "{text}"')
    return value


def encode_continue(rv: int, key: tuple[str, str]) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(key)})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion "
            "(version meta.k8s.io/v1)"
        ) from None


def validate_list_options(query: Mapping[str, str], *, watch: bool) -> None:
    """ValidateListOptions (apimachinery's internalversion validation): a 422 Invalid on
    ``ListOptions.meta.k8s.io``."""
    match = query.get("resourceVersionMatch", "")
    send = "sendInitialEvents" in query
    errors: list[FieldError] = []
    if watch:
        if send and match != "NotOlderThan":
            errors.append(
                FieldError.forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )
            )
        if match and not send:
            errors.append(
                FieldError.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is "
                    "provided",
                )
            )
        if match and match != "NotOlderThan":
            errors.append(FieldError.not_supported("resourceVersionMatch", match, ["NotOlderThan"]))
    else:
        if match and not query.get("resourceVersion"):
            errors.append(
                FieldError.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
            )
        if match and query.get("continue"):
            errors.append(
                FieldError.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                )
            )
        if match and match not in ("Exact", "NotOlderThan"):
            errors.append(
                FieldError.not_supported(
                    "resourceVersionMatch", match, ["Exact", "NotOlderThan", ""]
                )
            )
        if send:
            errors.append(
                FieldError.forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list")
            )
    if errors:
        raise invalid("ListOptions", "meta.k8s.io", "", errors)


def watch_start(query: Mapping[str, str], current: Callable[[], int]) -> int | None:
    """Where a watch starts: after this resourceVersion, or ``None`` to send the current
    objects first (no resourceVersion, ``0``, or ``sendInitialEvents=true``);
    ``sendInitialEvents=false`` without one starts from ``current()``, now. Its options
    are checked first (:func:`validate_list_options`)."""
    validate_list_options(query, watch=True)
    text = query.get("resourceVersion", "")
    send = query.get("sendInitialEvents")
    initial = send in ("1", "t", "T", "true", "TRUE", "True")
    if initial or text in ("", "0"):
        return current() if send is not None and not initial else None
    try:
        return int(text)
    except ValueError:
        raise bad_request(f'invalid resource version "{text}"') from None
