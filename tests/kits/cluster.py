"""A cluster under test reached only through a kubeconfig and the official client.

Tests written against :class:`Cluster` run unchanged against FakeKubernetesAPI or a real
kube-apiserver: the ``cluster`` fixture (tests/cli/conftest.py) says which. What only
the fake can do (inject a failure, read its request log, play a controller) goes
through :attr:`Cluster.fake`, which is None on a real server; tests that need it say so
with :meth:`Cluster.need_fake`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from dnsbalance.testing import FakeKubernetesAPI

JSON = dict[str, Any]
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MIRRORING_CONTROLLER = "endpointslicemirroring-controller.k8s.io"


@dataclass
class Cluster:
    """``kubeconfig`` reaches the API server; ``namespace`` is the tests' (and the
    kubeconfig context's) namespace."""

    kubeconfig: Path
    namespace: str
    fake: FakeKubernetesAPI | None = None

    def need_fake(self) -> FakeKubernetesAPI:
        """The fake, or skip: the test injects what a real server cannot be told to do."""
        if self.fake is None:
            pytest.skip("needs FakeKubernetesAPI (fault injection or its request log)")
        return self.fake

    @contextmanager
    def core(self) -> Iterator[Any]:
        with config.new_client_from_config(config_file=str(self.kubeconfig)) as api_client:
            yield client.CoreV1Api(api_client)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self.core() as core:
            resp = getattr(core, method)(*args, _preload_content=False, **kwargs)
            try:
                return json.loads(resp.data)
            finally:
                resp.release_conn()

    def create_service(self, body: JSON) -> JSON:
        """Create ``body`` in :attr:`namespace`; the object as the API answered it."""
        created: JSON = self._call("create_namespaced_service", self.namespace, body)
        return created

    def replace_service(self, body: JSON) -> JSON:
        name = body["metadata"]["name"]
        replaced: JSON = self._call("replace_namespaced_service", name, self.namespace, body)
        return replaced

    def service(self, name: str) -> JSON | None:
        try:
            found: JSON = self._call("read_namespaced_service", name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def endpoints(self, name: str) -> JSON | None:
        """``Endpoints/<name>``, or None."""
        try:
            found: JSON = self._call("read_namespaced_endpoints", name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def write_endpoints(self, name: str, addresses: list[str], port: tuple[str, int]) -> None:
        """Hand-written Endpoints for a selector-less Service ``name``, and the slices the
        EndpointSlice mirroring controller makes of them. The fake has no mirroring
        controller and serves Endpoints as a view of slices, so there the mirrored slice
        is written and the Endpoints follow from it; a real server gets the Endpoints."""
        if self.fake is not None:
            self.fake.apply_slice(
                f"{name}-mirrored",
                self.namespace,
                name,
                endpoints=addresses,
                ports=[(port[0], port[1], "TCP")],
                labels={MANAGED_BY: MIRRORING_CONTROLLER},
            )
            return
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": self.namespace},
            "subsets": [
                {
                    "addresses": [{"ip": ip} for ip in addresses],
                    "ports": [{"name": port[0], "port": port[1], "protocol": "TCP"}],
                }
            ],
        }
        self._call("create_namespaced_endpoints", self.namespace, body)

    def services(self) -> dict[str, JSON]:
        """Every Service of the namespace by name, as listed (uid, resourceVersion and all)."""
        listed = self._call("list_namespaced_service", self.namespace)
        return {item["metadata"]["name"]: item for item in listed["items"]}
