"""URL routing of FakeKubernetesAPI: path and method to resource, namespace, name and verb.

Also the discovery documents (``/version``, ``/api``, ``/apis``, group and group-version
resource lists) the client or kubectl-like tools may ask for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import kinds
from .endpoints import ENDPOINTS
from .kinds import Resource

__all__ = ["Route", "discovery_document", "route"]

JSON = dict[str, Any]

_NOT_FOUND: JSON = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "the server could not find the requested resource",
    "reason": "NotFound",
    "details": {},
    "code": 404,
}
_NOT_ALLOWED: JSON = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "the server does not allow this method on the requested resource",
    "reason": "MethodNotAllowed",
    "details": {},
    "code": 405,
}
_SSAR_GROUP = "authorization.k8s.io"
_GROUPS = {"discovery.k8s.io": [kinds.ENDPOINT_SLICES], _SSAR_GROUP: []}
_DISCOVERY_PATHS = {
    "/version",
    "/api",
    "/apis",
    "/api/v1",
    "/healthz",
    "/livez",
    "/readyz",
    *(f"/apis/{g}" for g in _GROUPS),
    *(f"/apis/{g}/v1" for g in _GROUPS),
}


@dataclass(frozen=True)
class Route:
    """What a request addresses. ``verb``/``resource``/``group`` are RBAC's."""

    kind: str  # resource, watch, ssar, document, missing, not-allowed
    path: str
    res: Resource | None = None
    namespace: str | None = None
    name: str | None = None
    verb: str | None = None
    resource: str | None = None
    group: str = ""
    document: JSON | None = None


def _resource_route(method: str, path: str, res: Resource, rest: list[str], watch: bool) -> Route:
    namespace: str | None = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3 and rest[2] == res.resource:
        namespace, rest = rest[1], rest[3:]
    elif rest[:1] == [res.resource]:
        rest = rest[1:]
    else:
        return Route("missing", path, document=_NOT_FOUND)
    if len(rest) > 1 or (rest and not rest[0]):
        return Route("missing", path, document=_NOT_FOUND)
    name = rest[0] if rest else None
    if name is None:
        verbs = {"GET": "watch" if watch else "list", "POST": "create"}
    else:
        verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    verb = verbs.get(method)
    if res.namespaced is False and namespace is not None:  # cluster-scoped: never namespaced
        return Route("missing", path, document=_NOT_FOUND)
    if verb is None or (namespace is None and res.namespaced and verb not in ("list", "watch")):
        kind, document = "not-allowed", _NOT_ALLOWED
    else:
        kind, document = ("watch" if verb == "watch" else "resource"), None
    return Route(
        kind,
        path,
        res=res,
        namespace=namespace,
        name=name,
        verb=verb,
        resource=res.resource,
        group=res.group,
        document=document,
    )


def _is_endpoints(parts: list[str]) -> bool:
    return parts[:3] == ["api", "v1", "endpoints"] or (
        parts[:3] == ["api", "v1", "namespaces"] and parts[4:5] == [ENDPOINTS.resource]
    )


def _endpoints_route(method: str, clean: str, parts: list[str], watch: bool) -> Route:
    """core/v1 Endpoints (read-only, derived from the slices), also on the legacy
    ``/api/v1/watch/...`` path and as a watch of one object (``.../endpoints/NAME?watch=1``)."""
    legacy = parts[2:3] == ["watch"]
    rest = parts[3:] if legacy else parts[2:]
    if legacy and not _is_endpoints(["api", "v1", *rest]):
        return Route("missing", clean, document=_NOT_FOUND)
    found = _resource_route(method, clean, ENDPOINTS, rest, watch or legacy)
    if found.kind == "missing":
        return found
    if found.verb not in ("get", "list", "watch"):  # a view of the slices: no writes
        return Route("not-allowed", clean, document=_NOT_ALLOWED, resource=ENDPOINTS.resource)
    if found.verb == "get" and (watch or legacy):
        return Route(
            "watch", clean, ENDPOINTS, found.namespace, found.name, "watch", ENDPOINTS.resource
        )
    return found


def route(method: str, path: str, *, watch: bool) -> Route:
    """Route ``method path``; ``watch`` is the ``?watch=`` flag."""
    clean = "/" + path.strip("/")
    parts = clean.strip("/").split("/")
    if clean in _DISCOVERY_PATHS:
        if method != "GET":
            return Route("not-allowed", clean, document=_NOT_ALLOWED, verb="get")
        return Route("document", clean, verb="get")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4 and method == "GET":
        # Namespaces are not stored, but every one exists: kubectl reads the namespace
        # after a 404 to tell "services \"web\" not found" from a missing namespace.
        return Route("document", clean, verb="get", document=_namespace(parts[3]))
    if parts[:3] == ["api", "v1", "watch"] or _is_endpoints(parts):
        return _endpoints_route(method, clean, parts, watch)
    if parts[:3] == ["api", "v1", "nodes"] or (
        parts[:3] == ["api", "v1", "namespaces"] and parts[4:5] == ["nodes"]
    ):  # cluster-scoped: nodes.py
        return _resource_route(method, clean, kinds.NODES, parts[2:], watch)
    if parts[:2] == ["api", "v1"]:
        return _resource_route(method, clean, kinds.SERVICES, parts[2:], watch)
    if parts[:3] == ["apis", "discovery.k8s.io", "v1"]:
        if parts[3:4] == ["watch"] and method == "GET":
            # The deprecated watch path a real server still serves (kuberesolver v6's).
            return _resource_route(method, clean, kinds.ENDPOINT_SLICES, parts[4:], True)
        return _resource_route(method, clean, kinds.ENDPOINT_SLICES, parts[3:], watch)
    if parts == ["apis", _SSAR_GROUP, "v1", "selfsubjectaccessreviews"]:
        allowed = method == "POST"
        return Route(
            "ssar" if allowed else "not-allowed",
            clean,
            verb="create" if allowed else None,
            resource="selfsubjectaccessreviews",
            group=_SSAR_GROUP,
            document=None if allowed else _NOT_ALLOWED,
        )
    return Route("missing", clean, document=_NOT_FOUND)


def _namespace(name: str) -> JSON:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _resource_list(group_version: str, resources: list[Resource], extra: list[JSON]) -> JSON:
    listed = [
        {
            "name": r.resource,
            "singularName": r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            **({"shortNames": ["svc"]} if r is kinds.SERVICES else {}),
            **({"shortNames": ["no"]} if r is kinds.NODES else {}),
            **({"shortNames": ["ep"]} if r is ENDPOINTS else {}),
        }
        for r in resources
    ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": listed + extra,
    }


def _group(name: str) -> JSON:
    version = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [version], "preferredVersion": version}


def discovery_document(path: str, url: str) -> Any:
    """The answer to a GET of a discovery path (see ``_DISCOVERY_PATHS``)."""
    if path == "/version":
        return {
            "major": "1",
            "minor": "37",
            "gitVersion": "v1.37.2",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-04-23T00:00:00Z",
            "goVersion": "go1.24.2",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    if path in ("/healthz", "/livez", "/readyz"):
        return "ok"
    if path == "/api":
        server = url.split("://", 1)[1]
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
        }
    if path == "/apis":
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [_group(g) for g in _GROUPS],
        }
    if path == "/api/v1":
        return _resource_list("v1", [kinds.SERVICES, ENDPOINTS, kinds.NODES], [])
    group = path.split("/")[2]
    if path.endswith("/v1"):
        extra = []
        if group == _SSAR_GROUP:
            extra = [
                {
                    "name": "selfsubjectaccessreviews",
                    "singularName": "selfsubjectaccessreview",
                    "namespaced": False,
                    "kind": "SelfSubjectAccessReview",
                    "verbs": ["create"],
                }
            ]
        return _resource_list(f"{group}/v1", _GROUPS[group], extra)
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group)}
