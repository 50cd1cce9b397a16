"""The preflight of ``dnsbalance check`` (the DNS-vs-API views are :mod:`.views`).

- :func:`run_checks` answers, one :class:`CheckResult` each: does the name resolve, is
  the Service headless, are its ports named, may this identity list and watch
  EndpointSlices (and, optionally, read the Service's pods: a pod's readiness before its
  EndpointSlice, ``manifests/rbac-pods.yaml``), which gRPC DNS resolver is active. Each
  result carries its fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.resolver

from dnsbalance._channel.config import grpc_dns_resolver
from dnsbalance._dns.servers import describe_servers
from dnsbalance._dns.sync import discover
from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import DnsBalanceError, KubernetesError, ResolutionError
from dnsbalance._kube import pod_watch, pods
from dnsbalance._kube.client import load_api_client
from dnsbalance._settings import api_only, check_port_for_mode
from dnsbalance._target import Target

from .check_ports import ports_verdict
from .convert_access import access_review
from .service_api import ServiceAPI
from .service_spec import is_headless, selector_of, service_type
from .views import compare, list_api_endpoints

__all__ = [
    "RBAC_MANIFEST",
    "CheckResult",
    "load_client_quietly",
    "run_checks",
]

Status = Literal["ok", "warn", "fail"]

RBAC_MANIFEST = "manifests/rbac.yaml"
PODS_MANIFEST = "manifests/rbac-pods.yaml"
# The service and ports lines read the Service (get on services): not a need of the
# library, so not in rbac.yaml (issue 22: least privilege for every client pod).
GET_SERVICES_FIX = (
    "dnsbalance does not need it at run time: run check as yourself (--kubeconfig), or add "
    'get on services to the Role (apiGroups: [""], resources: ["services"], verbs: ["get"])'
)


# -- preflight ------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One preflight check: ``status`` ok, warn (works, but see ``detail``) or fail."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass
class _Facts:
    """What the checks learned, for the checks that come after."""

    service: dict[str, Any] | None = None
    dns: tuple[Endpoint, ...] | None = None
    api_view: tuple[Endpoint, ...] | None = None
    list_denied: KubernetesError | None = None
    service_error: KubernetesError | None = None
    results: list[CheckResult] = field(default_factory=list)

    def add(self, name: str, status: Status, detail: str, fix: str | None = None) -> None:
        self.results.append(CheckResult(name, status, detail, fix))


def run_checks(
    target: Target,
    *,
    resolver: dns.resolver.Resolver,
    api_client: Any | None,
    api_error: DnsBalanceError | None = None,
    mode: Literal["auto", "dns", "api"] = "auto",
    grpc_resolver: str | None = None,
) -> list[CheckResult]:
    """Preflight checks for ``target`` (see the module docstring). ``api_client`` None
    means no API configuration was found (``api_error`` when it could not be loaded).

    Mode dns never reads the API (``api_client`` is ignored). In modes auto and api the
    API is probed with the request the library makes (list the target's EndpointSlices):
    unreachable, 401 and 403 are ``fail`` lines whose fix matches the cause."""
    check_port_for_mode(target, mode)
    facts = _Facts()
    usable: Any | None = None
    if mode == "dns":
        facts.add(
            "api",
            "ok",
            "not used: mode dns never reads the Kubernetes API (so the Service, ports and "
            "RBAC are not checked)",
        )
    else:
        usable = _check_api(facts, target, api_client, api_error, mode)
    if usable is not None:
        _fetch_service(facts, target, usable)
    if target.port is None:
        facts.add(
            "dns",
            "ok",
            f"not asked: {target} names no port, so the Service's first port is used, which "
            "only the API can tell (the library then reads the EndpointSlices alone)",
        )
    else:
        _check_dns(facts, target, resolver)
    if mode != "dns":
        _check_service(facts, target, usable)
        _check_ports(facts, target)
    if mode == "dns":
        facts.add("rbac", "ok", "not needed: mode dns never reads the Kubernetes API")
    elif usable is None:
        facts.add("rbac", "warn", "not checked: no usable Kubernetes API access (see api)")
    else:
        _check_rbac(facts, target, usable, mode)
        if not any(r.name == "rbac" and r.status == "fail" for r in facts.results):
            _check_pods(facts, target, usable)
    _check_grpc(facts, grpc_resolver or grpc_dns_resolver())
    order = ["dns", "api", "service", "ports", "rbac", "pods", "endpoints", "grpc-resolver"]
    return sorted(facts.results, key=lambda r: order.index(r.name) if r.name in order else 99)


def _check_api(
    facts: _Facts,
    target: Target,
    api_client: Any | None,
    api_error: DnsBalanceError | None,
    mode: str,
) -> Any | None:
    """The api line; returns the client when the API answered (a 403 included: that is
    the rbac line's to report), else None."""
    if api_error is not None:
        facts.add(
            "api",
            "fail",
            str(api_error),
            "fix the kubeconfig (--kubeconfig, --context) or the pod's service account",
        )
        return None
    if api_client is None:
        facts.add(
            "api",
            "fail" if api_only(target, mode) else "warn",
            "no Kubernetes API configuration (not in a pod, no KUBECONFIG): the Service "
            "and RBAC checks are skipped; "
            + (
                "the library needs the API for this target (mode api, or no port)"
                if api_only(target, mode)
                else "mode auto will use DNS only"
            ),
            "pass --kubeconfig/--context, or run in the pod",
        )
        return None
    host = getattr(getattr(api_client, "configuration", None), "host", "?")
    try:
        facts.api_view = list_api_endpoints(api_client, target)
    except KubernetesError as exc:
        if exc.status is None:
            facts.add(
                "api",
                "fail",
                f"cannot reach the Kubernetes API at {host}: {exc}",
                "check the server address in the kubeconfig (--kubeconfig, --context) and "
                "the network path to it (VPN, firewall, proxy); `kubectl cluster-info` "
                "should answer",
            )
            return None
        if exc.status == 401:
            facts.add(
                "api",
                "fail",
                f"the Kubernetes API at {host} rejected the credentials (HTTP 401 "
                "Unauthorized): the token or certificate is wrong or expired",
                "renew the credentials: log in again or put a valid token in the "
                "kubeconfig (--kubeconfig, --context); in a pod, check the service "
                "account token is mounted",
            )
            return None
        if exc.status == 403:
            facts.list_denied = exc
            facts.add("api", "ok", f"reachable at {host}, credentials accepted")
            return api_client
        facts.add(
            "api",
            "fail",
            f"the Kubernetes API at {host} failed the EndpointSlice list: {exc}",
            "retry; if it persists, look at the API server's health (kubectl get --raw /readyz)",
        )
        return None
    facts.add("api", "ok", f"reachable at {host}, credentials accepted")
    return api_client


def _fetch_service(facts: _Facts, target: Target, api_client: Any) -> None:
    try:
        facts.service = ServiceAPI(api_client, target.namespace).get(target.service)
    except KubernetesError as exc:
        if exc.status == 404:
            facts.add(
                "service",
                "fail",
                f'Service "{target.service}" not found in namespace "{target.namespace}"',
                "check the name and the namespace (-n, or svc.ns in the target)",
            )
        else:
            facts.service_error = exc
            facts.add(
                "service",
                "warn",
                f"not checked: {exc}",
                GET_SERVICES_FIX if exc.status == 403 else None,
            )


def _check_dns(facts: _Facts, target: Target, resolver: dns.resolver.Resolver) -> None:
    name = target.srv_name if target.port_name else target.fqdn
    via = describe_servers(resolver)
    try:
        endpoints = discover(target, resolver=resolver)
    except ResolutionError as exc:
        facts.add(
            "dns",
            "fail",
            str(exc),
            "check --nameserver, or cluster DNS (kubectl -n kube-system get pods -l "
            "k8s-app=kube-dns)",
        )
        return
    facts.dns = endpoints
    cluster_ip = _cluster_ip(facts.service)
    if not endpoints:
        kind = "SRV" if target.port_name else "A/AAAA"
        facts.add(
            "dns",
            "fail",
            f"{name} has no {kind} records via {via} (NXDOMAIN: no ready pod, or no such Service)",
            f"check the pods are ready: kubectl -n {target.namespace} get endpointslices "
            f"-l kubernetes.io/service-name={target.service}",
        )
    elif cluster_ip is not None and {ep.address for ep in endpoints} == {cluster_ip}:
        facts.add(
            "dns",
            "fail",
            f"{name} answers the cluster IP {cluster_ip}: one virtual IP, so gRPC pins one pod",
            f"make it headless: dnsbalance convert-service {target.service} -n {target.namespace}",
        )
    elif facts.service is None and len({ep.address for ep in endpoints}) == 1:
        facts.add(
            "dns",
            "warn",
            f"{name} via {via}: one address ({endpoints[0].hostport}): without the API the "
            "Service cannot be seen, and a ClusterIP Service answers with its single virtual "
            "IP just as a headless Service with one ready pod does",
            f"run check with API access (--kubeconfig) or look: kubectl -n {target.namespace} "
            f"get service {target.service} (CLUSTER-IP should be None)",
        )
    else:
        shown = ", ".join(ep.hostport for ep in endpoints[:3])
        more = f" and {len(endpoints) - 3} more" if len(endpoints) > 3 else ""
        facts.add("dns", "ok", f"{name} via {via}: {shown}{more}")


def _cluster_ip(service: Mapping[str, Any] | None) -> str | None:
    if service is None or is_headless(service):
        return None
    ip = (service.get("spec") or {}).get("clusterIP")
    return ip if isinstance(ip, str) and ip else None


def _check_service(facts: _Facts, target: Target, api_client: Any | None) -> None:
    if any(r.name == "service" for r in facts.results):
        return  # not found, or not readable: already said
    service = facts.service
    if service is None:
        facts.add("service", "warn", "not checked: no Kubernetes API access")
        return
    spec = service.get("spec") or {}
    kind = service_type(service)
    what = f'service/{target.service} (namespace "{target.namespace}")'
    if kind == "ExternalName":
        facts.add(
            "service",
            "fail",
            f"{what} is an ExternalName alias of {spec.get('externalName')}: no endpoints",
            "point the target at the Service of the pods themselves",
        )
    elif not is_headless(service):
        facts.add(
            "service",
            "fail",
            f"{what} is not headless ({kind}, clusterIP {spec.get('clusterIP')}): DNS gives "
            "one virtual IP and every call lands on one pod",
            f"dnsbalance convert-service {target.service} -n {target.namespace} (adds "
            f"{target.service}-headless; --strategy replace converts it in place)",
        )
    elif not selector_of(service):
        facts.add(
            "service",
            "warn",
            f"{what} is headless but has no selector: its endpoints must be managed by hand",
            "add a selector, or keep writing its EndpointSlices yourself",
        )
    else:
        selector = ",".join(f"{k}={v}" for k, v in sorted(selector_of(service).items()))
        facts.add("service", "ok", f"{what} is headless (clusterIP: None), selector {selector}")


def _check_ports(facts: _Facts, target: Target) -> None:
    service = facts.service
    if service is not None and service_type(service) == "ExternalName":
        facts.add("ports", "warn", "not checked: an ExternalName Service has no ports to dial")
        return
    if service is None:
        denied = facts.service_error is not None and facts.service_error.status == 403
        facts.add(
            "ports",
            "warn",
            "not checked: the Service could not be read"
            + (
                f" (check reads it with get on services, which {RBAC_MANIFEST} does not grant)"
                if denied
                else ""
            ),
            GET_SERVICES_FIX if denied else None,
        )
        return
    verdict = ports_verdict(service, target)
    facts.add("ports", verdict.status, verdict.detail, verdict.fix)


def _check_rbac(facts: _Facts, target: Target, api_client: Any, mode: str) -> None:
    denied: list[str] = []
    try:
        for verb in ("list", "watch"):
            if not access_review(
                api_client,
                verb=verb,
                resource="endpointslices",
                group="discovery.k8s.io",
                namespace=target.namespace,
            ):
                denied.append(verb)
    except KubernetesError as exc:
        if facts.list_denied is None:
            facts.add("rbac", "warn", f"could not ask (SelfSubjectAccessReview failed: {exc})")
            return
        denied = []
    if facts.list_denied is not None and "list" not in denied:
        denied.insert(0, "list")
    if "list" in denied:
        facts.add(
            "rbac",
            "fail",
            f"this identity cannot {', '.join(denied)} endpointslices.discovery.k8s.io in "
            f'namespace "{target.namespace}"'
            + (": mode auto falls back to DNS only" if mode == "auto" else ""),
            f"apply {RBAC_MANIFEST} (get, list, watch on endpointslices, bound to this "
            'identity), or use mode="dns"',
        )
        return
    if denied:  # list without watch: the library re-lists (dnsbalance._kube.watch)
        facts.add(
            "rbac",
            "warn",
            "may list but not watch endpointslices.discovery.k8s.io in namespace "
            f'"{target.namespace}": dnsbalance re-lists them every poll interval (5 s by '
            "default) instead of following changes within a second, and logs one WARNING",
            f'add "watch" to the Role\'s verbs ({RBAC_MANIFEST})',
        )
        _check_endpoints(facts, target, api_client)
        return
    facts.add(
        "rbac",
        "ok",
        f'may list and watch endpointslices.discovery.k8s.io in namespace "{target.namespace}"',
    )
    _check_endpoints(facts, target, api_client)


def _check_pods(facts: _Facts, target: Target, api_client: Any) -> None:
    """The pods line: whether the library may read a pod's readiness before its
    EndpointSlice. Optional (``list pods`` reads pod specs), so never a warning when not
    granted: the line says what that costs and which manifest grants it."""
    if facts.service is not None and pods.selector_of(facts.service) is None:
        facts.add(
            "pods",
            "ok",
            "not used: the Service has no selector, so its EndpointSlices are not the "
            "controller's and alone decide",
        )
        return
    try:
        denied = [
            f"{verb} {resource}"
            for verb, resource in pod_watch.ACCESS
            if not access_review(
                api_client, verb=verb, resource=resource, namespace=target.namespace
            )
        ]
    except KubernetesError as exc:
        facts.add("pods", "warn", f"could not ask (SelfSubjectAccessReview failed: {exc})")
        return
    if denied:
        facts.add(
            "pods",
            "ok",
            f"not granted (cannot {', '.join(denied)}), and optional: the EndpointSlices "
            "alone decide, so a pod is called once the EndpointSlice controller marks it "
            f"ready; {PODS_MANIFEST} grants it",
            f"apply {PODS_MANIFEST} (it lets the pods' specs be read: optional)",
        )
        return
    facts.add(
        "pods",
        "ok",
        f'may get the Service and list and watch its pods in namespace "{target.namespace}": '
        "a pod made Ready is called before its EndpointSlice says so",
    )


def _check_endpoints(facts: _Facts, target: Target, api_client: Any) -> None:
    api_view = facts.api_view
    if api_view is None:
        try:
            api_view = list_api_endpoints(api_client, target)
        except KubernetesError as exc:
            facts.add("endpoints", "warn", f"cannot list the EndpointSlices: {exc}")
            return
    if not api_view:
        facts.add(
            "endpoints",
            "warn",
            "the API lists no ready endpoint for this target",
            "check the pods' readiness and the Service's selector",
        )
        return
    if facts.dns is None:
        facts.add("endpoints", "ok", f"the API lists {len(api_view)} ready endpoints")
        return
    rows = compare(facts.dns, api_view)
    disagree = [row for row in rows if not row.agrees]
    if disagree:
        cluster_ip = _cluster_ip(facts.service)
        if cluster_ip is not None and cluster_ip in {ep.address for ep in facts.dns}:
            fix = (  # not a lag: DNS answers the Service's virtual IP, the API the pods
                f"DNS answers the Service's cluster IP {cluster_ip}, the API its pods: make "
                "the Service headless (dnsbalance convert-service)"
            )
        else:
            fix = (
                "DNS lags the API by about its TTL: run again, or watch with "
                "`dnsbalance resolve TARGET --watch`"
            )
        facts.add(
            "endpoints",
            "warn",
            f"DNS and the API disagree on {len(disagree)} of {len(rows)} endpoints "
            f"({', '.join(str(r.endpoint) for r in disagree[:3])})",
            fix,
        )
    else:
        facts.add("endpoints", "ok", f"DNS and the API agree on {len(rows)} endpoints")


def _check_grpc(facts: _Facts, resolver: str) -> None:
    if resolver == "native":
        facts.add(
            "grpc-resolver",
            "warn",
            "native (GRPC_DNS_RESOLVER=native): grpc ignores the DNS server in a dns:// "
            "target, so dnsbalance dials address lists and every change reconnects to every "
            "backend",
            "unset GRPC_DNS_RESOLVER (or set it to ares)",
        )
    else:
        facts.add("grpc-resolver", "ok", "c-ares (grpcio's default)")


def load_client_quietly(
    *, kubeconfig: str | None, context: str | None
) -> tuple[Any | None, DnsBalanceError | None]:
    """``load_api_client``'s client, or its error as a value."""
    try:
        return load_api_client(kubeconfig=kubeconfig, context=context), None
    except DnsBalanceError as exc:
        return None, exc
