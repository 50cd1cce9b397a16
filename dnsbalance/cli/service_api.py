"""Service calls in one namespace for ``convert-service``: JSON in and out, KubernetesError."""

from __future__ import annotations

import json
from typing import Any, Literal

from dnsbalance._exceptions import ConversionError, KubernetesError, api_error
from dnsbalance._kube.client import _kubernetes

JSON = dict[str, Any]


REQUEST_TIMEOUT = (5, 30)


# -- the API --------------------------------------------------------------------------

FIELD_MANAGER = "dnsbalance"
"""The ``fieldManager`` of every create and update (else the server names the writer
after the client's User-Agent, ``OpenAPI-Generator``). A DELETE has none."""

Writes = Literal["none", "dry-run", "real"]


class ServiceAPI:
    """Service calls in one namespace, answering JSON dicts; errors as KubernetesError.

    ``writes``: ``"none"`` (reads only: a write is a bug, refused before it is sent),
    ``"dry-run"`` (every write carries ``dryRun: [All]`` where the server reads it: the
    query of a create or update, the DeleteOptions body of a delete, since a DELETE
    with a body takes its options from the body alone) or ``"real"``.
    """

    def __init__(self, api_client: Any, namespace: str, *, writes: Writes = "none") -> None:
        client, _, _ = _kubernetes()
        self._core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.writes = writes

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
            resource = "endpoints" if "endpoints" in method else "services"
            raise api_error(exc, verb=verb, resource=resource, namespace=self.namespace) from exc
        if not isinstance(body, dict):
            raise KubernetesError(f"{verb} services: the API answered no JSON object")
        return body

    def _dry(self, dry_run: bool | None) -> bool:
        """Whether this write is a dry run; refuses any write of a read-only API."""
        if self.writes == "none":
            raise ConversionError("internal error: a preview tried to write to the API")
        return self.writes == "dry-run" if dry_run is None else dry_run

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

    def find_endpoints(self, name: str) -> JSON | None:
        """``Endpoints/<name>``, or None when there is none (raises KubernetesError)."""
        try:
            obj = self._call("get", "read_namespaced_endpoints", name, self.namespace)
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", "Endpoints")
        return obj

    def create(self, body: JSON, *, dry_run: bool | None = None) -> JSON:
        """Create ``body``; ``dry_run`` None: as ``writes`` says. ``dry_run=False`` is a real
        write even on a dry-run API: the one use is putting back a Service a server
        deleted although it was asked for a dry run."""
        dry = self._dry(dry_run)
        return self._call(
            "create",
            "create_namespaced_service",
            self.namespace,
            body,
            dry_run="All" if dry else None,
            field_manager=FIELD_MANAGER,
        )

    def replace(self, name: str, body: JSON) -> JSON:
        dry = self._dry(None)
        return self._call(
            "update",
            "replace_namespaced_service",
            name,
            self.namespace,
            body,
            dry_run="All" if dry else None,
            field_manager=FIELD_MANAGER,
        )

    def delete(self, obj: JSON, *, dry_run: bool | None = None) -> JSON:
        """Delete ``obj`` if it is unchanged (uid and resourceVersion preconditions). The
        dry run goes in the DeleteOptions body: with a body, the server reads no query."""
        dry = self._dry(dry_run)
        metadata = obj["metadata"]
        options: JSON = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
        }
        if dry:
            options["dryRun"] = ["All"]
        return self._call(
            "delete",
            "delete_namespaced_service",
            metadata["name"],
            self.namespace,
            body=options,
        )
