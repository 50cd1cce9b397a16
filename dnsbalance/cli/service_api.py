"""Service calls in one namespace for ``convert-service``: JSON in and out, KubernetesError."""

from __future__ import annotations

import json
from typing import Any

from dnsbalance._exceptions import KubernetesError, api_error
from dnsbalance._kube.client import _kubernetes

JSON = dict[str, Any]


REQUEST_TIMEOUT = (5, 30)


# -- the API --------------------------------------------------------------------------


class ServiceAPI:
    """Service calls in one namespace, answering JSON dicts; errors as KubernetesError."""

    def __init__(self, api_client: Any, namespace: str, *, dry_run: bool) -> None:
        client, _, _ = _kubernetes()
        self._core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self._dry_run = "All" if dry_run else None

    def _call(self, verb: str, method: str, *args: Any, **kwargs: Any) -> JSON:
        try:
            resp = getattr(self._core, method)(
                *args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs
            )
            try:
                body = json.loads(resp.data)
            finally:
                resp.release_conn()
        except Exception as exc:
            raise api_error(exc, verb=verb, resource="services", namespace=self.namespace) from exc
        if not isinstance(body, dict):
            raise KubernetesError(f"{verb} services: the API answered no JSON object")
        return body

    def get(self, name: str) -> JSON:
        try:
            obj = self._call("get", "read_namespaced_service", name, self.namespace)
        except KubernetesError as exc:
            if exc.status == 404:
                raise KubernetesError(
                    f'Service "{name}" not found in namespace "{self.namespace}"',
                    status=404,
                    reason="NotFound",
                ) from exc
            raise
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", "Service")
        return obj

    def find(self, name: str) -> JSON | None:
        try:
            return self.get(name)
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, body: JSON, *, dry_run: bool | None = None) -> JSON:
        dry = self._dry_run if dry_run is None else ("All" if dry_run else None)
        return self._call("create", "create_namespaced_service", self.namespace, body, dry_run=dry)

    def replace(self, name: str, body: JSON) -> JSON:
        return self._call(
            "update",
            "replace_namespaced_service",
            name,
            self.namespace,
            body,
            dry_run=self._dry_run,
        )

    def delete(self, obj: JSON) -> JSON:
        metadata = obj["metadata"]
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
        }
        return self._call(
            "delete",
            "delete_namespaced_service",
            metadata["name"],
            self.namespace,
            body=options,
            dry_run=self._dry_run,
        )
