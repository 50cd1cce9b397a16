"""Helpers that make a test read like a cluster: namespaces, Nodes, Pods and Services.

There is no kubelet: a Pod is an API object scheduled by ``spec.nodeName`` whose
``status`` the test sets (``phase``, ``podIP``/``podIPs`` and the conditions the
EndpointSlice controller reads). With ``serve=True`` (the default) the pod also gets
a real gRPC backend at its IP on the pod network, whose replies name it
(``"<pod>.<namespace>"``). A graceful delete leaves the pod terminating, still
serving, until :meth:`ClusterObjects.remove_pod`, as nothing else finishes it.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .process import wait_until

if TYPE_CHECKING:
    import kubernetes.client

    from .podnet import PodNetwork

ZONE_LABEL = "topology.kubernetes.io/zone"
_namespaces = itertools.count(1)


@dataclass(frozen=True)
class PodRef:
    """A pod made by :meth:`ClusterObjects.add_pod`: where it is and what answers for it."""

    namespace: str
    name: str
    ip: str
    port: int
    served: bool

    @property
    def backend(self) -> str:
        """The name its backend's replies carry."""
        return f"{self.name}.{self.namespace}"

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_status(ip: str, *, ready: bool) -> dict[str, Any]:
    """A running pod's status at ``ip``, Ready or not (what a kubelet would write)."""
    flag = "True" if ready else "False"
    now = _now()
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
        ],
    }


class ClusterObjects:
    """The cluster helpers :class:`~.server.ControlPlane` offers (admin rights)."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], PodRef] = {}

    @property
    def admin(self) -> kubernetes.client.ApiClient:
        raise NotImplementedError

    @property
    def pod_network(self) -> PodNetwork:
        raise NotImplementedError

    def _core(self) -> kubernetes.client.CoreV1Api:
        from kubernetes import client

        return client.CoreV1Api(self.admin)

    # -- namespaces and nodes ----------------------------------------------------------

    def create_namespace(self, name: str | None = None, *, timeout: float = 30.0) -> str:
        """A new namespace (``name``, else ``test-N``), once its default ServiceAccount
        exists (pods are refused before)."""
        from kubernetes import client

        name = name or f"test-{next(_namespaces)}"
        core = self._core()
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        wait_until(
            f"the default ServiceAccount of namespace {name}",
            lambda: has_default_account(core, name),
            timeout=timeout,
            interval=0.02,
        )
        return name

    def add_node(
        self, name: str, *, zone: str | None = None, labels: Mapping[str, str] | None = None
    ) -> None:
        """A Node object (no kubelet), with ``topology.kubernetes.io/zone`` when given."""
        from kubernetes import client

        all_labels = {"kubernetes.io/hostname": name, **(labels or {})}
        if zone is not None:
            all_labels[ZONE_LABEL] = zone
        self._core().create_node(
            client.V1Node(metadata=client.V1ObjectMeta(name=name, labels=all_labels))
        )

    # -- pods --------------------------------------------------------------------------

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        node: str,
        labels: Mapping[str, str],
        ready: bool = True,
        port: int = 50051,
        port_name: str = "grpc",
        serve: bool = True,
        ip: str | None = None,
    ) -> PodRef:
        """A Pod on ``node`` with a container port ``port_name``/``port``, running at
        an IP of the pod network (``ip`` to choose one) and Ready as asked. With
        ``serve`` its gRPC backend starts first, so a Ready pod always answers."""
        from kubernetes import client

        address = ip or self.pod_network.allocate()[0]
        if serve:
            self.pod_network.serve(f"{name}.{namespace}", address, port)
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=dict(labels)),
            spec=client.V1PodSpec(
                node_name=node,
                containers=[
                    client.V1Container(
                        name="server",
                        image="dnsbalance.invalid/demo:never-pulled",
                        ports=[client.V1ContainerPort(name=port_name, container_port=port)],
                    )
                ],
            ),
        )
        core = self._core()
        core.create_namespaced_pod(namespace, pod)
        status = {"status": pod_status(address, ready=ready)}
        core.patch_namespaced_pod_status(name, namespace, status)
        ref = PodRef(namespace, name, address, port, serve)
        self._pods[(namespace, name)] = ref
        return ref

    def set_ready(self, namespace: str, name: str, ready: bool) -> None:
        """Flip the pod's Ready (and ContainersReady) condition."""
        ref = self._pods[(namespace, name)]
        self._core().patch_namespaced_pod_status(
            name, namespace, {"status": pod_status(ref.ip, ready=ready)}
        )

    def delete_pod(self, namespace: str, name: str, *, grace_seconds: int = 30) -> None:
        """A graceful delete: the pod stays, terminating and still serving, until
        :meth:`remove_pod` (no kubelet finishes it)."""
        self._core().delete_namespaced_pod(name, namespace, grace_period_seconds=grace_seconds)

    def remove_pod(self, namespace: str, name: str, *, grace: float = 1.0) -> None:
        """Delete the pod at once and stop its backend (GOAWAY, ``grace`` seconds)."""
        from kubernetes import client

        ref = self._pods.pop((namespace, name))
        try:
            self._core().delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        if ref.served:
            self.pod_network.stop_serving(ref.backend, grace)

    def pods(self, namespace: str) -> list[PodRef]:
        """The pods :meth:`add_pod` made in ``namespace`` and not removed."""
        return [ref for (ns, _), ref in self._pods.items() if ns == namespace]

    # -- services and slices ----------------------------------------------------------

    def create_service(
        self,
        namespace: str,
        name: str,
        *,
        selector: Mapping[str, str] | None,
        ports: Sequence[tuple[str, int, int | str]] = (("grpc", 8000, "grpc"),),
        headless: bool = True,
        **spec: Any,
    ) -> dict[str, Any]:
        """A Service (headless by default) with ``(name, port, targetPort)`` ports;
        ``spec`` adds fields in the API's camelCase (``trafficDistribution=...``)."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "ports": [
                    {"name": n, "port": p, "targetPort": t, "protocol": "TCP"} for n, p, t in ports
                ],
                **spec,
            },
        }
        if selector is not None:
            body["spec"]["selector"] = dict(selector)
        if headless:
            body["spec"]["clusterIP"] = "None"
        created: dict[str, Any] = self._core().api_client.sanitize_for_serialization(
            self._core().create_namespaced_service(namespace, cast("Any", body))
        )
        return created

    def ready_addresses(self, namespace: str, service: str) -> set[str]:
        """The ready endpoints' addresses in the Service's EndpointSlices, now."""
        return {
            address for address, ready in self.listed_addresses(namespace, service).items() if ready
        }

    def listed_addresses(self, namespace: str, service: str) -> dict[str, bool]:
        """Every endpoint address in the Service's EndpointSlices now, and whether it is
        ready (a nil ``ready`` counts as true)."""
        from kubernetes import client

        slices = client.DiscoveryV1Api(self.admin).list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        listed: dict[str, bool] = {}
        for item in slices.items:
            for endpoint in item.endpoints or ():
                conditions = endpoint.conditions
                ready = conditions is None or conditions.ready is not False
                listed.update(dict.fromkeys(endpoint.addresses, ready))
        return listed

    def wait_for_ready(
        self, namespace: str, service: str, addresses: Iterable[str], *, timeout: float = 30.0
    ) -> float:
        """Wait until the slices' ready addresses are exactly ``addresses``; the seconds
        it took."""
        want = set(addresses)
        return wait_until(
            f"slices of {namespace}/{service} with ready {sorted(want)}",
            lambda: self.ready_addresses(namespace, service) == want,
            timeout=timeout,
            interval=0.02,
        )


def has_default_account(core: kubernetes.client.CoreV1Api, namespace: str) -> bool:
    """Whether the serviceaccount controller has made ``namespace``'s default account."""
    from kubernetes import client

    try:
        core.read_namespaced_service_account("default", namespace)
    except client.ApiException:
        return False
    return True
