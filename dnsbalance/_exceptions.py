"""The exceptions dnsbalance raises, and the one place third-party errors are translated.

Hierarchy::

    DnsBalanceError
    ├── TargetError        a target string that is not a Kubernetes service target
    ├── ConfigError        arguments or environment that cannot work together
    ├── ResolutionError    DNS did not answer usefully (SERVFAIL, REFUSED, timeout, ...)
    ├── KubernetesError    the Kubernetes API refused or failed a request
    ├── ConversionError    a Service that cannot be converted to a headless one
    └── ClosedError        a channel or poller used after close()

NXDOMAIN is not an error: cluster DNS answers it for a headless Service with no
ready endpoint, so discovery returns an empty tuple for it.
"""

from __future__ import annotations

import json

import dns.exception
import dns.resolver

from ._endpoints import host_port


class DnsBalanceError(Exception):
    """Root of every exception dnsbalance raises on purpose."""


class TargetError(DnsBalanceError, ValueError):
    """A target string could not be parsed; ``part`` names what is wrong."""

    def __init__(self, message: str, *, target: str, part: str) -> None:
        super().__init__(f"invalid target {target!r}: {message}")
        self.target = target
        self.part = part


class ConfigError(DnsBalanceError, ValueError):
    """Arguments or environment that cannot work; the message says how to fix it."""


class ResolutionError(DnsBalanceError):
    """DNS gave no usable answer: SERVFAIL, REFUSED, timeout, or a broken reply.

    ``server`` is the nameserver (``host:port``, or several joined by ``, ``),
    ``reason`` a short machine-friendly word (``SERVFAIL``, ``REFUSED``,
    ``timeout``, ``network``, ``malformed``), ``qname`` and ``rdtype`` the question.
    """

    def __init__(self, *, qname: str, rdtype: str, server: str, reason: str, detail: str) -> None:
        super().__init__(f"{rdtype} {qname} via {server}: {reason} ({detail})")
        self.qname = qname
        self.rdtype = rdtype
        self.server = server
        self.reason = reason
        self.detail = detail


class KubernetesError(DnsBalanceError):
    """The Kubernetes API failed or refused a request."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


def api_error(
    exc: BaseException, *, verb: str, resource: str, namespace: str | None = None
) -> KubernetesError:
    """Translate a kubernetes-client or urllib3 failure into a :class:`KubernetesError`
    whose message says what was attempted and what the API answered (never a credential:
    only the Status body's message is used)."""
    where = f' in namespace "{namespace}"' if namespace else ""
    status = getattr(exc, "status", None)
    if isinstance(exc, KubernetesError):
        return exc
    if _is_api_exception(exc) and isinstance(status, int) and status > 0:
        reason = str(getattr(exc, "reason", "") or "")
        message = reason
        body = getattr(exc, "body", None)
        if body:
            try:
                parsed = json.loads(body)
            except (TypeError, ValueError):
                parsed = None
            if isinstance(parsed, dict):
                message = str(parsed.get("message") or message)
                reason = str(parsed.get("reason") or reason)
        return KubernetesError(
            f"cannot {verb} {resource}{where}: HTTP {status} {reason}: {message}",
            status=status,
            reason=reason,
        )
    detail = str(getattr(exc, "reason", "") or "") if status == 0 else str(exc)
    return KubernetesError(
        f"cannot {verb} {resource}{where}: the Kubernetes API is unreachable "
        f"({type(exc).__name__}: {detail[:300]})",
        status=None,
        reason="Unreachable",
    )


def _is_api_exception(exc: BaseException) -> bool:
    """Whether ``exc`` is the Kubernetes client's ApiException (or a subclass such as
    ForbiddenException), without importing the client for users who never load it."""
    return any(
        cls.__name__ == "ApiException" and cls.__module__.startswith("kubernetes.")
        for cls in type(exc).__mro__
    )


class ConversionError(DnsBalanceError):
    """A Service (or manifest) that cannot be turned into a headless one."""


class ClosedError(DnsBalanceError, RuntimeError):
    """An object was used after ``close()``."""


def resolution_error(
    exc: dns.exception.DNSException, *, qname: str, rdtype: str, servers: str
) -> ResolutionError:
    """Translate a dnspython failure into a :class:`ResolutionError` (use ``raise ... from``)."""
    reason, server = "error", servers
    if isinstance(exc, dns.exception.Timeout):
        reason = "timeout"
    elif isinstance(exc, dns.exception.FormError):
        reason = "malformed"
    elif isinstance(exc, dns.resolver.NoNameservers):
        # Each error is (server, tcp, port, failure, response); failure is an rcode's
        # text (SERVFAIL, REFUSED, ...) or the exception met on the way.
        errors = exc.kwargs.get("errors") or []
        if errors:
            server = ", ".join(dict.fromkeys(_server_text(e[0], e[2]) for e in errors))
            reason = _failure_reason(errors[-1][3])
        else:
            reason = "no nameserver answered"
    return ResolutionError(
        qname=qname, rdtype=rdtype, server=server, reason=reason, detail=str(exc)
    )


def _server_text(name: str | None, port: int) -> str:
    """dnspython names a server ``Do53:10.0.0.1@53``; we say ``10.0.0.1:53``."""
    address = str(name or "?")
    if address.startswith("Do53:"):
        address = address[len("Do53:") :].rsplit("@", 1)[0]
    return host_port(address, port)


def _failure_reason(failure: object) -> str:
    if isinstance(failure, str):
        return failure
    if isinstance(failure, dns.exception.Timeout):
        return "timeout"
    if isinstance(failure, dns.exception.FormError):
        return "malformed"
    if isinstance(failure, OSError | EOFError):
        return "network"
    return type(failure).__name__
