"""What ``convert-service`` may do: the verbs each strategy needs, asked up front (SSAR)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dnsbalance._exceptions import ConfigError, KubernetesError, api_error
from dnsbalance._kube.client import _kubernetes

from .convert import (
    Strategy,
)
from .service_api import FIELD_MANAGER, REQUEST_TIMEOUT

RBAC_CONVERT_MANIFEST = "manifests/rbac-convert.yaml"
VERBS: dict[Strategy, tuple[str, ...]] = {
    "twin": ("get", "create", "update"),
    "replace": ("get", "create", "delete"),
}


def access_review(
    api_client: Any, *, verb: str, resource: str, namespace: str, group: str = ""
) -> bool:
    """Whether this identity may ``verb`` ``resource`` in ``namespace`` (a
    SelfSubjectAccessReview). Raises KubernetesError when the review itself fails."""
    client, _, _ = _kubernetes()
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": namespace,
                "verb": verb,
                "group": group,
                "resource": resource,
            }
        },
    }
    try:
        resp = client.AuthorizationV1Api(api_client).create_self_subject_access_review(
            body,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
            field_manager=FIELD_MANAGER,
        )
        try:
            answer = json.loads(resp.data)
        finally:
            resp.release_conn()
    except Exception as exc:
        raise api_error(
            exc, verb="create", resource="selfsubjectaccessreviews.authorization.k8s.io"
        ) from exc
    status = answer.get("status") if isinstance(answer, dict) else None
    return bool(isinstance(status, dict) and status.get("allowed") is True)


def rbac_hint(strategy: Strategy, namespace: str) -> str:
    return (
        f"convert-service --strategy {strategy} needs {', '.join(VERBS[strategy])} on "
        f'services in namespace "{namespace}": apply {RBAC_CONVERT_MANIFEST} '
        "(or ask a cluster admin)"
    )


@dataclass(frozen=True)
class Access:
    """What the access reviews said: ``answered`` False when they could not be asked;
    ``denied`` the verbs this identity lacks."""

    answered: bool
    denied: tuple[str, ...] = ()

    def missing(self, strategy: Strategy, namespace: str) -> str:
        return (
            f'not allowed to {", ".join(self.denied)} services in namespace "{namespace}"; '
            + rbac_hint(strategy, namespace)
        )


def preflight(api_client: Any, namespace: str, strategy: Strategy, *, refuse: bool) -> Access:
    """Ask a SelfSubjectAccessReview per verb ``strategy`` needs. ``refuse``: raise
    ConfigError when one is denied (a real run or a server dry run); a client-side
    preview only reports it."""
    denied = []
    try:
        for verb in VERBS[strategy]:
            if not access_review(api_client, verb=verb, resource="services", namespace=namespace):
                denied.append(verb)
    except KubernetesError:
        return Access(answered=False)
    access = Access(answered=True, denied=tuple(denied))
    if denied and refuse:
        raise ConfigError(access.missing(strategy, namespace))
    return access


def with_hint(exc: KubernetesError, strategy: Strategy, namespace: str) -> KubernetesError:
    if exc.status in (401, 403):
        return KubernetesError(
            f"{exc}; {rbac_hint(strategy, namespace)}", status=exc.status, reason=exc.reason
        )
    return exc
