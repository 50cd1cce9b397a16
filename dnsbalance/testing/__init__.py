"""Fakes for testing code that uses dnsbalance, without a Kubernetes cluster.

- :class:`DNSResponder`: a real DNS server on loopback, in this process, that
  publishes headless Services exactly as cluster DNS (CoreDNS) does: A/AAAA per
  ready pod, SRV per named port with the targets' addresses, NXDOMAIN once no pod
  is left. It has fault knobs (``fail_rcode``, ``delay``, ``drop``, ``additional``)
  and counts ``queries``. Point dnsbalance (or any resolver) at its ``address``.
- :class:`BindServer`: the same publishing API on a real BIND9 ``named`` (when it is
  installed), changed through RFC 2136 dynamic updates.
- :class:`ServiceRegistry` and :func:`service_rrsets`: the same records as plain
  data (dnspython RRsets), to feed another DNS server or to assert on.
- :class:`Pod`: one ready endpoint, an IP and an optional hostname.
- :class:`ControlPlane`: a REAL control plane on loopback (etcd, kube-apiserver,
  kube-controller-manager with the EndpointSlice controller, CoreDNS) built by
  ``scripts/build-controlplane``, with a pod network (root) whose pods run real gRPC
  backends; :class:`ControlPlaneError` names a component that failed.
- :class:`FakeKubernetesAPI`: a small kube-apiserver over real HTTP(S) for Services
  and EndpointSlices (list, watch with bookmarks and 410s, CRUD, RBAC denials,
  token checks, faults), driven by the unmodified official ``kubernetes`` client.
  The documentation of :mod:`dnsbalance.testing._kubeapi` says what is faithful
  and what is simplified.
- :class:`Backend`: a real gRPC server of the demo service (``examples/demo/demo.proto``)
  on a loopback address, answering with its name and counting the connections it
  served; start several on 127.0.0.x with one port to play a Service's pods.
  :class:`AioBackend` is the same on a ``grpc.aio`` server.

``FakeKubernetesAPI`` is imported on first use, so the DNS fakes do not load the
Kubernetes client.
"""

from typing import TYPE_CHECKING, Any

from ._backend import AioBackend, Backend
from ._clusterdns.bind import BindServer
from ._clusterdns.records import Pod, ServiceRegistry, service_rrsets
from ._clusterdns.responder import DNSResponder
from ._controlplane.assets import ControlPlaneError
from ._controlplane.cluster import PodRef
from ._controlplane.server import ControlPlane

if TYPE_CHECKING:
    from ._kubeapi.server import FakeKubernetesAPI, RequestRecord

__all__ = [
    "AioBackend",
    "Backend",
    "BindServer",
    "ControlPlane",
    "ControlPlaneError",
    "DNSResponder",
    "FakeKubernetesAPI",
    "Pod",
    "PodRef",
    "RequestRecord",
    "ServiceRegistry",
    "service_rrsets",
]


def __getattr__(name: str) -> Any:
    if name in ("FakeKubernetesAPI", "RequestRecord"):
        from ._kubeapi import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
