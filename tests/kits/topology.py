"""EndpointSlices shaped exactly as the EndpointSlice controller writes them for topology.

- ``auto_slice``: ``service.kubernetes.io/topology-mode: Auto``
  (staging/src/k8s.io/endpointslice/topologycache/topologycache.go ``AddHints``): each
  ready endpoint has exactly one ``forZones`` entry (its own zone unless
  ``redistributeHints`` lent it to another zone: ``hinted_for``); not-ready endpoints
  carry no ``hints``.
- ``prefer_close_slice``: ``trafficDistribution: PreferClose``/``PreferSameZone``/
  ``PreferSameNode`` (staging/src/k8s.io/endpointslice/trafficdist/trafficdist.go
  ``preferCloseHeuristic.update``): each ready endpoint with a zone gets
  ``forZones: [{name: zone}]``, with ``same_node`` also ``forNodes: [{name: nodeName}]``.
- ``plain_slice``: no topology (``defaultHeuristic`` removes every hint).

Every endpoint has ``zone``, ``nodeName``, ``targetRef`` and all three conditions set,
as ``podToEndpoint`` (staging/src/k8s.io/endpointslice/utils.go) writes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
ZONES = ("zone-a", "zone-b", "zone-c")


@dataclass(frozen=True)
class Pod:
    ip: str
    zone: str
    node: str
    ready: bool = True
    terminating: bool = False
    hinted_for: str | None = None  # Auto: a zone the controller lent this endpoint to

    @property
    def name(self) -> str:
        return "pod-" + self.ip.replace(".", "-")


def three_zones(first_octet: str = "127.0.0", start: int = 11) -> list[Pod]:
    """Two pods in each of zone-a/b/c, one per node (node-a1, node-a2, ...)."""
    pods = []
    n = start
    for zone in ZONES:
        letter = zone[-1]
        for i in (1, 2):
            pods.append(Pod(f"{first_octet}.{n}", zone, f"node-{letter}{i}"))
            n += 1
    return pods


def _endpoint(pod: Pod) -> JSON:
    ready = pod.ready and not pod.terminating
    return {
        "addresses": [pod.ip],
        "conditions": {
            "ready": ready,
            "serving": pod.ready,
            "terminating": pod.terminating,
        },
        "nodeName": pod.node,
        "zone": pod.zone,
        "targetRef": {"kind": "Pod", "namespace": "app", "name": pod.name},
    }


def _slice(name: str, service: str, endpoints: list[JSON], port: int) -> JSON:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "app",
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}],
    }


def auto_slice(
    pods: Iterable[Pod], *, service: str = "greeter", name: str | None = None, port: int = 50051
) -> JSON:
    endpoints = []
    for pod in pods:
        ep = _endpoint(pod)
        if ep["conditions"]["ready"]:
            ep["hints"] = {"forZones": [{"name": pod.hinted_for or pod.zone}]}
        endpoints.append(ep)
    return _slice(name or f"{service}-auto", service, endpoints, port)


def prefer_close_slice(
    pods: Iterable[Pod],
    *,
    same_node: bool = False,
    service: str = "greeter",
    name: str | None = None,
    port: int = 50051,
) -> JSON:
    endpoints = []
    for pod in pods:
        ep = _endpoint(pod)
        if ep["conditions"]["ready"]:
            hints: JSON = {"forZones": [{"name": pod.zone}]}
            if same_node:
                hints["forNodes"] = [{"name": pod.node}]
            ep["hints"] = hints
        endpoints.append(ep)
    return _slice(name or f"{service}-close", service, endpoints, port)


def plain_slice(
    pods: Iterable[Pod], *, service: str = "greeter", name: str | None = None, port: int = 50051
) -> JSON:
    return _slice(name or f"{service}-plain", service, [_endpoint(p) for p in pods], port)
