"""Third-party errors are translated in one place, with context and no credentials."""

from __future__ import annotations

import json

import dns.exception
import dns.resolver
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException, ForbiddenException

from dnsbalance import DnsBalanceError, KubernetesError, ResolutionError
from dnsbalance._exceptions import api_error, resolution_error

STATUS_403 = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": 'endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:app:'
    'dnsbalance" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the '
    'namespace "app"',
    "reason": "Forbidden",
    "details": {"group": "discovery.k8s.io", "kind": "endpointslices"},
    "code": 403,
}


def test_api_exception_keeps_status_reason_and_the_apis_message() -> None:
    for cls in (ApiException, ForbiddenException):
        exc = cls(status=403, reason="Forbidden", body=json.dumps(STATUS_403))
        error = api_error(exc, verb="list", resource="endpointslices", namespace="app")
        assert isinstance(error, KubernetesError)
        assert isinstance(error, DnsBalanceError)
        assert error.status == 403
        assert error.reason == "Forbidden"
        assert str(error) == (
            'cannot list endpointslices in namespace "app": HTTP 403 Forbidden: '
            + STATUS_403["message"]
        )


def test_api_exception_without_json_body() -> None:
    error = api_error(
        ApiException(status=502, reason="Bad Gateway", body="<html>"), verb="watch", resource="x"
    )
    assert error.status == 502
    assert str(error) == "cannot watch x: HTTP 502 Bad Gateway: Bad Gateway"


def test_transport_errors_are_unreachable() -> None:
    for exc in (
        urllib3.exceptions.MaxRetryError(None, "/apis", "Connection refused"),  # type: ignore[arg-type]
        urllib3.exceptions.ProtocolError("Response ended prematurely"),
        ApiException(status=0, reason="SSLError: certificate verify failed"),
        ConnectionRefusedError(111, "refused"),
    ):
        error = api_error(exc, verb="list", resource="endpointslices", namespace="app")
        assert error.status is None
        assert error.reason == "Unreachable"
        assert "the Kubernetes API is unreachable" in str(error)


def test_no_credential_in_the_message() -> None:
    exc = ApiException(
        status=401, reason="Unauthorized", body=json.dumps({"message": "Unauthorized"})
    )
    exc.headers = {"Authorization": "Bearer sekret-token"}  # even if headers carried one
    assert "sekret" not in str(api_error(exc, verb="list", resource="x"))


def test_kubernetes_error_passes_through() -> None:
    original = KubernetesError("as is", status=410)
    assert api_error(original, verb="list", resource="x") is original


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (dns.resolver.LifetimeTimeout(timeout=1.0, errors=[]), "timeout"),
        (dns.exception.Timeout(), "timeout"),
        (dns.exception.FormError(), "malformed"),
    ],
)
def test_resolution_errors(exc: dns.exception.DNSException, reason: str) -> None:
    error = resolution_error(
        exc, qname="svc.ns.svc.cluster.local", rdtype="A", servers="10.0.0.1:53"
    )
    assert isinstance(error, ResolutionError)
    assert error.reason == reason
    assert error.server == "10.0.0.1:53"
    assert str(error).startswith("A svc.ns.svc.cluster.local via 10.0.0.1:53: " + reason)
