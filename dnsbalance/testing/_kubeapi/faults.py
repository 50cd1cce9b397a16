"""Authentication, authorization and fault rules of FakeKubernetesAPI, and its request log.

Pure state behind one lock each; the HTTP side asks :class:`Faults` what to do with a
request (who is it, is it allowed, should it wait or fail) and records what it answered
in :class:`RequestLog`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["DEFAULT_USER", "Faults", "RequestLog", "RequestRecord", "field_manager_of"]

DEFAULT_USER = "system:serviceaccount:app:dnsbalance"


class RequestRecord(NamedTuple):
    """One answered request. ``verb``/``resource`` are RBAC's (``list``, ``endpointslices``).
    ``field_manager``: for a create, update or patch, the manager the server records in
    ``managedFields`` (``?fieldManager=``, else the User-Agent up to its first ``/``, as
    kube-apiserver's managerOrUserAgent: ``OpenAPI-Generator`` for the Python client);
    None for other requests."""

    method: str
    path: str
    query: dict[str, str]
    verb: str | None
    resource: str | None
    status: int
    field_manager: str | None = None


def field_manager_of(query: dict[str, str], user_agent: str) -> str:
    """managerOrUserAgent (handlers/create.go): the query's fieldManager, else the
    printable characters of the User-Agent before its first '/', at most 128 bytes."""
    if query.get("fieldManager"):
        return query["fieldManager"]
    prefix = ""
    for char in user_agent.split("/")[0]:
        if not char.isprintable():
            continue
        if len((prefix + char).encode()) > 128:
            break
        prefix += char
    return prefix


class RequestLog:
    """A thread-safe, bounded log of :class:`RequestRecord`."""

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._limit = limit

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            if len(self._records) > self._limit:
                del self._records[: len(self._records) - self._limit]

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()


@dataclass(frozen=True)
class _Deny:
    verb: str
    resource: str
    namespace: str | None
    group: str | None
    code: int

    def matches(self, verb: str, resource: str, group: str, namespace: str | None) -> bool:
        return (
            self.verb in ("*", verb)
            and self.resource in ("*", resource)
            and (self.group is None or self.group == group)
            and (self.namespace is None or self.namespace == namespace)
        )


@dataclass
class _Failure:
    remaining: int
    code: int
    verb: str | None
    resource: str | None
    retry_after: int | None = None
    dry_run: bool | None = None


class Injected(NamedTuple):
    """An injected failure to answer: its code and ``Retry-After`` seconds (or None)."""

    code: int
    retry_after: int | None


class Faults:
    """Tokens, deny rules, injected failures and delays; safe to change while serving."""

    def __init__(self, tokens: Iterable[str] | None, username: str) -> None:
        self._lock = threading.Lock()
        self._tokens: frozenset[str] | None = None if tokens is None else frozenset(tokens)
        self.username = username
        self._denies: list[_Deny] = []
        self._failures: list[_Failure] = []
        self._delays: dict[tuple[str | None, str | None], float] = {}

    # -- authentication -------------------------------------------------------------

    @property
    def tokens(self) -> frozenset[str] | None:
        with self._lock:
            return self._tokens

    def set_tokens(self, tokens: Iterable[str] | None) -> None:
        with self._lock:
            self._tokens = None if tokens is None else frozenset(tokens)

    def rotate_token(self, old: str, new: str) -> None:
        with self._lock:
            current = set(self._tokens or ())
            current.discard(old)
            current.add(new)
            self._tokens = frozenset(current)

    def authenticated(self, authorization: str | None) -> bool:
        """``Authorization: Bearer <token>`` (scheme case-insensitive, as the apiserver)."""
        with self._lock:
            tokens = self._tokens
        if tokens is None:
            return True
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        return scheme.lower() == "bearer" and token.strip() in tokens

    # -- authorization --------------------------------------------------------------

    def deny(
        self, verb: str, resource: str, *, namespace: str | None, group: str | None, code: int
    ) -> None:
        with self._lock:
            self._denies.append(_Deny(verb, resource, namespace, group, code))

    def allow_all(self) -> None:
        with self._lock:
            self._denies.clear()

    def denied(self, verb: str, resource: str, group: str, namespace: str | None) -> int | None:
        """The code to answer (403 unless set otherwise), or None when allowed."""
        with self._lock:
            for rule in self._denies:
                if rule.matches(verb, resource, group, namespace):
                    return rule.code
        return None

    # -- failures and delays --------------------------------------------------------

    def fail_next(
        self,
        n: int,
        code: int,
        verb: str | None,
        resource: str | None,
        retry_after: int | None = None,
        dry_run: bool | None = None,
    ) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        if retry_after is None and code == 429:
            retry_after = 1  # API Priority and Fairness and max-in-flight always send one
        with self._lock:
            if n:
                self._failures.append(_Failure(n, code, verb, resource, retry_after, dry_run))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def take_failure(
        self, verb: str | None, resource: str | None, *, dry_run: bool = False
    ) -> Injected | None:
        """Consume one matching injected failure."""
        with self._lock:
            for failure in self._failures:
                if failure.verb not in (None, verb) or failure.resource not in (None, resource):
                    continue
                if failure.dry_run not in (None, dry_run):
                    continue
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return Injected(failure.code, failure.retry_after)
        return None

    def set_delay(self, seconds: float, verb: str | None, resource: str | None) -> None:
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            if seconds == 0:
                self._delays.pop((verb, resource), None)
            else:
                self._delays[(verb, resource)] = seconds

    def delay_for(self, verb: str | None, resource: str | None) -> float:
        with self._lock:
            return max(
                (
                    seconds
                    for (v, r), seconds in self._delays.items()
                    if v in (None, verb) and r in (None, resource)
                ),
                default=0.0,
            )
